"""Serials, names, tokens: the small pure rules."""

from __future__ import annotations

import pytest

from ca import serials, tokens, validate
from ca.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("AB", "AB"), ("ab", "AB"), ("00ab", "AB"), ("0xAB", "AB"), ("a:b", "AB"),
     ("01:23:45", "12345"), (" 7F ", "7F")],
    ids=["upper", "lower", "leading-zeros", "0x", "colon", "colons", "spaces"],
)
def test_serials_have_one_canonical_form(text: str, canonical: str) -> None:
    assert serials.canonical(text) == canonical


@pytest.mark.parametrize("text", ["", "0", "00", "xyz", "1" * 41, "-1", "12 34", "../1"])
def test_bad_serials_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="serial"):
        serials.parse(text)


def test_serial_text_refuses_non_positive_numbers() -> None:
    # RFC 5280, 4.1.2.2: a serial is a positive integer
    with pytest.raises(ValueError, match="not positive"):
        serials.to_text(0)


@pytest.mark.parametrize("login", ["alice", "a", "Bob.Smith", "svc-backup_01", "x" * 64])
def test_safe_logins_are_accepted(login: str) -> None:
    assert validate.login(login) == login


@pytest.mark.parametrize(
    "login",
    ["", "../x", "a/b", "a\\b", "a\x00b", "a\r\nb", "\u202egnp.exe", "x" * 65, "x" * 10_000,
     ".hidden", "-rf", "a b", "アリス", "a;b", "a'b", "a..b", "alice."],
    ids=["empty", "dotdot", "slash", "backslash", "nul", "crlf", "rtl-override", "65",
         "10k", "leading-dot", "leading-dash", "space", "non-ascii", "semicolon", "quote",
         "inner-dotdot", "trailing-dot"],
)
def test_unsafe_logins_are_refused(login: str) -> None:
    with pytest.raises(InvalidInput, match="login"):
        validate.login(login)


@pytest.mark.parametrize("name", ["root", "api", "Acme", "a_b", "-x", "", "x" * 64, "a.b"])
def test_unsafe_or_reserved_tenant_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        validate.tenant_name(name)


@pytest.mark.parametrize("email", ["alice@example.com", "a.b+tag@sub.example.co.jp"])
def test_plain_addresses_are_accepted(email: str) -> None:
    assert validate.email(email) == email


@pytest.mark.parametrize(
    "email",
    ["alice", "alice@", "@example.com", "a@b", "a b@example.com", "a@example.com\r\nBcc: x",
     "a@exa_mple.com", "a" * 250 + "@example.com", "a..b@example.com"],
)
def test_malformed_addresses_are_refused(email: str) -> None:
    with pytest.raises(InvalidInput, match="e-mail"):
        validate.email(email)


@pytest.mark.parametrize("text", ["a\x00b", "a\u202eb", "a\nb", "a\x1bb"])
def test_display_text_refuses_control_and_override_characters(text: str) -> None:
    with pytest.raises(InvalidInput, match="U\\+"):
        validate.display_text(text, field="display_name")


def test_display_text_keeps_ordinary_unicode() -> None:
    assert validate.display_text(" 山田 太郎 ", field="display_name") == "山田 太郎"


def test_tokens_are_long_random_and_stored_only_as_digests() -> None:
    made = {tokens.generate() for _ in range(100)}
    assert len(made) == 100
    token = made.pop()
    assert token.startswith("tgt_") and len(token) >= 4 + 43  # 256 bits in base64url
    assert tokens.digest(token) != token and len(tokens.digest(token)) == 64
    assert token not in tokens.display_prefix(token) or len(tokens.display_prefix(token)) < 12
