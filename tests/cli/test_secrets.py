"""Secrets never reach the terminal: not in normal output, not in error lines, and not in the
tracebacks that --debug prints."""

from __future__ import annotations

import secrets

import pytest

from tests.support.cli import Cli, Env, Result
from tests.support.environment import PASSPHRASE


def debug(cli: Cli, *argv: str) -> Result:
    return cli("--debug", *argv)


def test_a_whole_debug_session_never_prints_the_passphrase(env: Env, cli: Cli) -> None:
    results = [
        debug(cli, "init", "--key-type", "ec-p256"),
        debug(cli, "user", "add", "alice", "--email", "alice@example.com", "--allow"),
        debug(cli, "cert", "issue", "alice", "--json"),
        debug(cli, "ca", "show", "--tenant", "default", "--json"),
        debug(cli, "tenant", "create", "acme", "--key-type", "ec-p256"),
        debug(cli, "token", "create", "--role", "admin"),
    ]
    assert all(r.code == 0 for r in results), [r.err for r in results]
    failures = [
        debug(cli, "cert", "issue", "mallory"),
        debug(cli, "cert", "issue", "alice", "--expires", "2026-02-30"),
        debug(cli, "init"),
    ]
    assert all(r.code != 0 and "Traceback" in r.err for r in failures), "--debug had no effect"
    for result in results + failures:
        assert PASSPHRASE not in result.out + result.err


def test_a_wrong_passphrase_is_named_but_neither_passphrase_is_shown(
        ready_sqlite: Env, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    monkeypatch.setenv("TEGATA_KEY_PASSPHRASE", wrong)
    result = debug(cli, "cert", "issue", "alice")
    assert result.code != 0 and "TEGATA_KEY_PASSPHRASE" in result.err
    assert "Traceback" in result.err
    assert wrong not in result.out + result.err
    assert PASSPHRASE not in result.out + result.err


@pytest.mark.parametrize("value", ["short-" + secrets.token_hex(2), "  ChangeMe  "],
                         ids=["too-short", "placeholder"])
def test_a_refused_passphrase_is_not_echoed(sqlite_env: Env, cli: Cli,
                                            monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TEGATA_KEY_PASSPHRASE", value)
    result = debug(cli, "init", "--key-type", "ec-p256")
    assert result.code != 0 and "TEGATA_KEY_PASSPHRASE" in result.err
    assert value.strip() not in result.out + result.err


@pytest.mark.parametrize("mode", [0o644, 0o600], ids=["open-to-others", "private"])
def test_a_passphrase_file_is_never_echoed(sqlite_env: Env, cli: Cli,
                                           monkeypatch: pytest.MonkeyPatch, mode: int) -> None:
    # 0644 is refused; 0600 holding a too-short passphrase is refused for its content
    content = PASSPHRASE if mode == 0o644 else "tiny-" + secrets.token_hex(2)
    path = sqlite_env.data_dir.parent / "passphrase"
    path.write_text(content + "\n", encoding="utf-8")
    path.chmod(mode)
    monkeypatch.delenv("TEGATA_KEY_PASSPHRASE")
    monkeypatch.setenv("TEGATA_KEY_PASSPHRASE_FILE", str(path))
    result = debug(cli, "init", "--key-type", "ec-p256")
    assert result.code != 0 and "TEGATA_KEY_PASSPHRASE_FILE" in result.err
    assert content not in result.out + result.err


def test_the_database_password_is_redacted_even_with_debug(
        sqlite_env: Env, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    password = "pw-" + secrets.token_hex(8)
    monkeypatch.setenv("TEGATA_DATABASE_URL",
                       f"postgresql+psycopg://tegata:{password}@127.0.0.1:1/tegata")
    result = debug(cli, "tenant", "list")
    assert result.code != 0 and "TEGATA_DATABASE_URL" in result.err
    assert password not in result.out + result.err
    assert PASSPHRASE not in result.out + result.err


@pytest.mark.parametrize(("url", "said"), [
    ("postgresql+psycopg://postgres:s3cr3t@[::1/x",
     "tegata: error: TEGATA_DATABASE_URL: not a URL: Invalid IPv6 URL"),
    ("postgresql+psycopg://postgres:s3cr3t@127.0.0.1:99999/x",
     "tegata: error: TEGATA_DATABASE_URL: not a URL: Port out of range 0-65535"),
    ("postgresql+psycopg://postgres:s3@cr3t@127.0.0.1/x",  # the driver would try host cr3t@…
     "tegata: error: TEGATA_DATABASE_URL: an @ in the user name or password must be written "
     "%40"),
], ids=["unclosed-ipv6", "port-99999", "at-in-password"])
def test_a_malformed_database_url_is_a_configuration_mistake_without_its_password(
        sqlite_env: Env, cli: Cli, monkeypatch: pytest.MonkeyPatch, url: str,
        said: str) -> None:
    """A mistyped URL is the deployment's to fix (78), in one line, the password kept out;
    never an internal error (70) or an outage (69)."""
    monkeypatch.setenv("TEGATA_DATABASE_URL", url)
    result = cli("user", "list", "--tenant", "default")
    assert (result.code, result.out, result.err.strip()) == (78, "", said)
    assert "cr3t" not in result.err
