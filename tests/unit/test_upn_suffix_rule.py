"""The UPN suffix rule: a DNS domain name, IDNA 2008, within DNS limits;
every refusal names the rule and quotes the value escaped and cut short."""

from __future__ import annotations

import pytest

from ca import validate
from ca.errors import InvalidInput

LABEL_63 = "a" * 63

# (typed, stored)
ACCEPTED = [
    ("example.co.jp", "example.co.jp"),
    ("EXAMPLE.Co.JP", "example.co.jp"),  # DNS names are case-insensitive: stored lowercase
    ("corp.example", "corp.example"),
    ("例え.jp", "例え.jp"),  # Unicode stays Unicode, as entered in Active Directory
    # a full-width dot and letters, as a Japanese input method types them
    ("例え\uff0e\uff4a\uff50", "例え.jp"),
    ("株式会社アクメ.jp", "株式会社アクメ.jp"),
    ("xn--r8jz45g.jp", "xn--r8jz45g.jp"),  # A-labels stay A-labels
    ("XN--R8JZ45G.JP", "xn--r8jz45g.jp"),
    ("a-b.example", "a-b.example"),
    (f"{LABEL_63}.example", f"{LABEL_63}.example"),  # 63: the longest label
    (".".join([LABEL_63] * 3 + ["a" * 61]), ".".join([LABEL_63] * 3 + ["a" * 61])),  # 253
]

# (typed, what the message must say after "must be a DNS domain name such as example.co.jp: ")
REFUSED = [
    ("example .co.jp", "no spaces and no '@'"),
    (" example.co.jp", "no spaces and no '@'"),
    ("example.co.jp\n", "no spaces and no '@'"),
    ("alice@example.co.jp", "no spaces and no '@'"),
    ("@example.co.jp", "no spaces and no '@'"),
    ("example.co.jp.", "no final '.'"),
    ("localhost", "at least two labels"),
    ("例え", "at least two labels"),
    ("192.0.2.1", "not an IP address"),
    ("a_b.example", "labels of letters, digits and hyphens"),
    ("-a.example", "labels of letters, digits and hyphens"),
    ("a-.example", "labels of letters, digits and hyphens"),
    ("ab--c.example", "labels of letters, digits and hyphens"),  # "--" at 3-4: A-labels only
    ("xn--abc.jp", "labels of letters, digits and hyphens"),  # not a valid A-label
    ("a..example", "labels of letters, digits and hyphens"),
    ("\u202etxt.exe", "labels of letters, digits and hyphens"),
    ("a\x00.example", "labels of letters, digits and hyphens"),
    (f"{'a' * 64}.example", "labels of letters, digits and hyphens"),  # label over 63
    (".".join([LABEL_63] * 3 + ["a" * 62]), "at most 253 characters"),  # 254
    ("a" * 100_000, "at most 253 characters"),
    # 79 characters typed, 255 once each label is in its xn-- form (31 characters)
    (".".join(["株式会社アクメ例え"] * 8), "at most 253 characters in its IDNA (xn--) form"),
]


@pytest.mark.parametrize(("typed", "stored"), ACCEPTED, ids=[repr(a[0][:20]) for a in ACCEPTED])
def test_a_dns_domain_is_accepted_in_its_canonical_form(typed: str, stored: str) -> None:
    assert validate.upn_suffix(typed) == stored


@pytest.mark.parametrize(("typed", "rule"), REFUSED, ids=[repr(r[0][:20]) for r in REFUSED])
def test_anything_else_is_refused_naming_the_rule(typed: str, rule: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate.upn_suffix(typed)

    message = refused.value.message
    assert refused.value.field == "upn_suffix"
    assert message.startswith(f"UPN suffix {typed[:64]!r}" if len(typed) <= 64 else
                              f"UPN suffix {(typed[:64] + '…')!r}")
    assert message.split(" must be a DNS domain name such as example.co.jp: ")[1].startswith(
        rule), message
    assert len(message) < 300 and "\n" not in message and "\x00" not in message


def test_an_empty_suffix_is_refused_rather_than_read_as_clearing() -> None:
    with pytest.raises(InvalidInput) as refused:
        validate.upn_suffix("")
    assert (refused.value.field, refused.value.message) == (
        "upn_suffix", "the UPN suffix is empty; clear the setting to have no UPN")
