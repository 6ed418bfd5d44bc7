"""Drive the real ``tegata`` command: in-process through ``cli.main.main`` where that is
enough, as a child process where a real process, its environment and its sockets matter.

Every test gets its own data directory and database; ``TEGATA_*`` comes only from here.
The runner and its helpers are in tests/support/cli.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ca.clock import FixedClock
from ca.service import Service, build_service
from ca.settings import Settings
from tests.moments import MOMENTS
from tests.support.cli import (
    ERROR_PREFIX,
    Cli,
    Env,
    Result,
    _reset_state,
    configure,
    initialise,
)
from tests.support.databases import Templates

__all__ = ["ERROR_PREFIX", "Cli", "Env", "Result", "initialise"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> Env:
    """Both databases: the embedded SQLite default (no TEGATA_DATABASE_URL), or PostgreSQL."""
    return configure(monkeypatch, tmp_path, None if db_url.startswith("sqlite") else db_url)


@pytest.fixture
def sqlite_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Env:
    """The embedded SQLite default only: for checks where the database makes no difference."""
    return configure(monkeypatch, tmp_path, None)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    yield Cli(capsys)
    _reset_state()


def _migrated(env: Env, templates: Templates) -> None:
    """The embedded SQLite file as ``tegata init`` would leave its schema (a copy of the
    session's template: `init` then finds nothing to migrate); PostgreSQL's ``db_url`` is a
    copy of the template already."""
    if env.database_url is None:
        env.data_dir.mkdir(mode=0o700)  # as the service makes it
        assert env.sqlite_file is not None
        templates.sqlite_copy(env.sqlite_file)


@pytest.fixture
def ready(env: Env, cli: Cli, templates: Templates) -> Env:
    _migrated(env, templates)
    initialise(cli)
    return env


@pytest.fixture
def ready_sqlite(sqlite_env: Env, cli: Cli, templates: Templates) -> Env:
    _migrated(sqlite_env, templates)
    initialise(cli)
    return sqlite_env


@pytest.fixture
def cli_clock(monkeypatch: pytest.MonkeyPatch) -> FixedClock:
    """A fixed clock that every command's service reads (time moved by the test)."""
    fixed = FixedClock(MOMENTS.start)

    def service(settings: Settings) -> Service:
        return build_service(settings, clock=fixed)

    monkeypatch.setattr("cli.context.build_service", service)
    return fixed
