"""`tegata db upgrade` (and `serve --migrate`) under a wrong passphrase changes nothing: the
passphrase is checked against the key directory before the first migration, so the database
stays at the revision of the release the operator may go back to (from an
outside tester). A schema behind this release stops `tegata serve` with the configuration
exit code (78) and the fix in one line, not as an unreachable database (69)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from ca.db import migrate
from ca.sealing import DATA_PROTECTION_FILE
from tests.integration.test_data_protection import as_the_previous_release_left_it
from tests.support.cli import Cli, Env
from tests.support.environment import PASSPHRASE

WRONG = "wrong-but-long-enough-passphrase"
BEHIND = "0005"
NOT_CURRENT = ("the database schema is not current: run `tegata db upgrade` (or start with "
               "TEGATA_MIGRATE_ON_START=true)")


def revision(env: Env) -> str:
    assert env.sqlite_file is not None
    with sqlite3.connect(env.sqlite_file) as conn:
        (found,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(found)


def at_an_older_revision(env: Env, *, legacy_key: bool) -> dict[str, bytes]:
    """The deployment's key directory with its database back at revision 0005 (an
    earlier release's schema); with ``legacy_key``, the data-protection key in the clear as
    that release left it. Returns the key directory's files, to see that nothing moved."""
    if legacy_key:
        as_the_previous_release_left_it(env.key_dir)
    assert env.sqlite_file is not None
    for suffix in ("", "-wal", "-shm"):
        Path(f"{env.sqlite_file}{suffix}").unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{env.sqlite_file}")
    try:
        migrate.upgrade(engine, BEHIND)
    finally:
        engine.dispose()
    assert revision(env) == BEHIND
    return {p.name: p.read_bytes() for p in sorted(env.key_dir.iterdir())}


def key_files(env: Env) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(env.key_dir.iterdir())}


@pytest.mark.parametrize("legacy_key", [False, True], ids=["wrapped-key", "key-in-the-clear"])
@pytest.mark.parametrize("command", [("db", "upgrade"), ("serve", "--migrate")],
                         ids=["db-upgrade", "serve-migrate"])
def test_a_wrong_passphrase_migrates_nothing(
        ready_sqlite: Env, cli: Cli, monkeypatch: pytest.MonkeyPatch, legacy_key: bool,
        command: tuple[str, ...]) -> None:
    keys = at_an_older_revision(ready_sqlite, legacy_key=legacy_key)
    before = ready_sqlite.dump()
    monkeypatch.setenv("TEGATA_KEY_PASSPHRASE", WRONG)

    refused = cli(*command)

    message = refused.error()
    assert refused.code == 78
    if legacy_key:  # the key in the clear: the CA key beside it decides
        first = sorted(ready_sqlite.key_dir.glob("*.key.pem"))[0]  # the issuing CA's
        assert message == (f"CA key file {first}: wrong passphrase (TEGATA_KEY_PASSPHRASE); the "
                           "data-protection key is wrapped only under the right one")
    else:
        assert message == (f"data-protection key {ready_sqlite.key_dir / DATA_PROTECTION_FILE}:"
                           " wrong passphrase (TEGATA_KEY_PASSPHRASE) or the file was altered")
    assert WRONG not in refused.err and PASSPHRASE not in refused.err
    assert (revision(ready_sqlite), ready_sqlite.dump(), key_files(ready_sqlite)) == (
        BEHIND, before, keys)

    monkeypatch.setenv("TEGATA_KEY_PASSPHRASE", PASSPHRASE)
    out = cli.ok("db", "upgrade").out
    assert out == ("data-protection key wrapped under the CA key passphrase\n"
                   if legacy_key else "") + "database schema is current\n"
    assert revision(ready_sqlite) == migrate.head_revision()


@pytest.mark.parametrize("command", [("serve",), ("tenant", "list"), ("cert", "list")],
                         ids=["serve", "tenant-list", "cert-list"])
def test_a_schema_behind_exits_78_and_says_what_to_run(
        ready_sqlite: Env, cli: Cli, command: tuple[str, ...]) -> None:
    """The domain says the schema is not current; the CLI, for every command alike, says
    what to run (an API client is told only that the service is unavailable)."""
    keys = at_an_older_revision(ready_sqlite, legacy_key=False)
    before = ready_sqlite.dump()

    refused = cli(*command)

    assert (refused.code, refused.error()) == (78, NOT_CURRENT)
    assert (revision(ready_sqlite), ready_sqlite.dump(), key_files(ready_sqlite)) == (
        BEHIND, before, keys)
