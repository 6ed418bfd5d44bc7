"""Errors from ``tegata``: one line on stderr, ``tegata: error: ...``, a non-zero exit, no
traceback, and nothing changed.

Refusals that depend on the database's state run on both databases; pure input checks run
on the embedded SQLite only, since the database plays no part in them.
"""

from __future__ import annotations

import pytest

from tests.support.cli import Cli, Env

HOSTILE_LOGINS = ["../x", "a/b", "a\x00b", "a\r\nb", "\u202egnp.exe", "a" * 10_240]


def test_issuing_for_an_unknown_user_names_the_user(ready: Env, cli: Cli) -> None:
    message = cli("cert", "issue", "mallory").error()
    assert "mallory" in message
    assert ready.rows("certificates") == []


def test_issuing_in_an_unknown_tenant_names_the_tenant(ready: Env, cli: Cli) -> None:
    message = cli("cert", "issue", "alice", "--tenant", "nowhere").error()
    assert "nowhere" in message
    assert ready.rows("certificates") == []


def test_a_user_added_without_allow_gets_no_certificate(ready: Env, cli: Cli) -> None:
    cli.ok("user", "add", "bob", "--email", "bob@example.com")
    message = cli("cert", "issue", "bob").error()
    assert "bob" in message and "secure-access" in message
    assert ready.rows("certificates") == []


def test_init_twice_says_already_initialised_and_writes_no_key(ready: Env, cli: Cli) -> None:
    keys = ready.key_files()
    roots = [r for r in ready.rows("authorities") if r["kind"] == "root"]

    assert "already initialised" in cli("init", "--key-type", "ec-p256").error()

    assert ready.key_files() == keys
    assert [r for r in ready.rows("authorities") if r["kind"] == "root"] == roots


@pytest.mark.parametrize("email", ["not-an-email", "alice@", "alice@example", "a b@example.com",
                                   "alice@example.com\nBcc: x@example.com"],
                         ids=["no-at", "no-domain", "no-tld", "space", "header-injection"])
def test_a_bad_email_is_refused(ready_sqlite: Env, cli: Cli, email: str) -> None:
    message = cli("user", "add", "bob", "--email", email, "--allow").error()
    assert "e-mail" in message
    assert [u["login"] for u in ready_sqlite.rows("users")] == ["alice"]


@pytest.mark.parametrize("login", HOSTILE_LOGINS,
                         ids=["dot-dot", "slash", "nul", "crlf", "bidi-override", "10kB"])
def test_a_hostile_login_is_refused_in_one_short_printable_line(ready_sqlite: Env, cli: Cli,
                                                                login: str) -> None:
    message = cli("user", "add", login, "--email", "x@example.com", "--allow").error()
    assert message.startswith("login ")
    assert len(message) < 300
    assert message.isprintable(), repr(message)  # no raw CR, LF, NUL or bidi override
    assert [u["login"] for u in ready_sqlite.rows("users")] == ["alice"]


@pytest.mark.parametrize("login", HOSTILE_LOGINS,
                         ids=["dot-dot", "slash", "nul", "crlf", "bidi-override", "10kB"])
def test_issuing_for_a_hostile_login_is_one_short_printable_line(ready_sqlite: Env, cli: Cli,
                                                                 login: str) -> None:
    message = cli("cert", "issue", login).error()
    assert len(message) < 300
    assert message.isprintable(), repr(message)


@pytest.mark.parametrize(("args", "expected"), [
    (["--expires", "2020-01-01"], "expiry 2020-01-01 is before today"),
    (["--expires", "2026-02-30"], "expiry 2026-02-30 is not a date"),
    (["--expires", "9999-12-31"], "requested 9999-12-31, latest allowed 9999-12-30"),
    (["--expires", "31/12/2030"], "is not of the form YYYY-MM-DD"),
    (["--tz", "Mars/Base"], "'Mars/Base' is not an IANA time zone"),
    (["--tz", "../../etc/passwd"], "is not an IANA time zone"),
], ids=["before-today", "not-a-date", "after-latest", "not-iso", "unknown-zone",
        "path-as-zone"])
def test_a_bad_expiry_or_zone_is_refused_naming_the_rule(ready_sqlite: Env, cli: Cli,
                                                         args: list[str], expected: str) -> None:
    assert expected in cli("cert", "issue", "alice", *args).error()
    assert ready_sqlite.rows("certificates") == []


BEFORE_INIT = [
    ["tenant", "list"],
    ["ca", "show"],
    ["user", "add", "alice", "--email", "alice@example.com", "--allow"],
    ["cert", "issue", "alice"],
    ["token", "create", "--role", "admin"],
]
BEFORE_INIT_IDS = ["tenant-list", "ca-show", "user-add", "cert-issue", "token-create"]


@pytest.mark.parametrize("argv", BEFORE_INIT, ids=BEFORE_INIT_IDS)
def test_a_command_before_init_fails_in_one_line(env: Env, cli: Cli, argv: list[str]) -> None:
    cli(*argv).error()
    assert env.key_files() == []


@pytest.mark.parametrize("schema", [False, True], ids=["fresh", "after-db-upgrade"])
def test_a_command_before_init_says_to_run_tegata_init(env: Env, cli: Cli, schema: bool) -> None:
    # Someone who has not run `tegata init` must be told so, not that a database they never
    # configured cannot be reached, that it needs `tegata db upgrade`, or that a tenant is missing.
    if schema:
        cli.ok("db", "upgrade")
    assert "tegata init" in cli("cert", "issue", "alice").error()
