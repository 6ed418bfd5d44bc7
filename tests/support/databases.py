"""Template databases: the schema is migrated once per test session (once per xdist worker)
and each test that wants a migrated database gets a copy of it — a file copy for SQLite,
``CREATE DATABASE … TEMPLATE …`` for PostgreSQL. Migrating is most of what a small test
costs (alembic's start-up and every migration's DDL); a copy is a fraction of it.

A template holds the schema only, at the head revision: no CA, no keys, no data-protection
key. Tests that want an empty database, or that exercise migrations themselves, do not use
a template (the ``db_url`` fixture gives them an empty one).
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from ca.db import migrate
from ca.db.engine import make_engine
from tests.support.environment import IN_CI, PG_URL, unavailable


def _migrate(url: str) -> None:
    """What ``Service.upgrade_database`` does to a database, on an engine made as the
    service makes its own (SQLite in WAL mode and all)."""
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def downgrade(engine: Engine, revision: str) -> None:
    """Take a database back to an earlier alembic revision (tests of a migration's upgrade
    over data made before it)."""
    config = migrate.alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _postgres_url(name: str) -> str:
    assert PG_URL is not None
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


class Templates:
    """The session's template databases, each made on first use."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._sqlite: Path | None = None
        self._admin: Engine | None = None
        self._postgres: str | None = None
        self.migrated: set[str] = set()  # the URLs made from a template
        self._ddl_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tegata-ddl")
        self._next: dict[bool, Future[str]] = {}
        self._failed_drops: list[str] = []

    # --- SQLite ---------------------------------------------------------------------------

    def sqlite_copy(self, path: Path) -> None:
        """A migrated SQLite database at ``path`` (which must not exist yet)."""
        if self._sqlite is None:
            template = self._directory / "template.db"
            _migrate(f"sqlite:///{template}")
            # the last connection closed has checkpointed the WAL: the file is the database
            assert not template.with_name("template.db-wal").exists()
            self._sqlite = template
        assert not path.exists(), f"{path} exists already"
        shutil.copyfile(self._sqlite, path)
        self.migrated.add(f"sqlite:///{path}")

    # --- PostgreSQL -----------------------------------------------------------------------

    def _admin_engine(self) -> Engine:
        if self._admin is None:
            assert PG_URL is not None
            self._admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
        return self._admin

    def _ddl(self, statement: str) -> None:
        with self._admin_engine().connect() as conn:
            conn.execute(text(statement))

    def _create(self, migrated: bool) -> str:
        """(on the DDL thread) a new database, empty or from the migrated template."""
        name = "tegata_t_" + secrets.token_hex(6)
        clause = f' TEMPLATE "{self._postgres_template()}"' if migrated else ""
        self._ddl(f'CREATE DATABASE "{name}"{clause}')
        return name

    def _drop(self, name: str) -> None:
        """(on the DDL thread) a test's database, dropped; a failure is told at the end."""
        try:
            self._ddl(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:  # reported by close(), which fails the session's teardown
            self._failed_drops.append(f"{name}: {exc}")

    def postgres_database(self, *, migrated: bool) -> Iterator[str]:
        """A new PostgreSQL database for one test, empty or a copy of the migrated template;
        dropped afterwards.

        CREATE and DROP DATABASE are mostly the server's fsyncs (half a second to a second
        each on a busy machine): they run on one DDL thread of their own, so that the next
        test's database is made and the last one's dropped while a test runs, not between
        tests. Every test still gets a database no other test has touched."""
        if not PG_URL:
            unavailable("PostgreSQL (set TEGATA_TEST_DATABASE_URL)")
        made = self._next.pop(migrated, None) or self._ddl_thread.submit(self._create, migrated)
        try:
            name = made.result()
        except Exception as exc:
            if IN_CI:
                pytest.fail(f"PostgreSQL at TEGATA_TEST_DATABASE_URL is not usable: {exc}")
            pytest.skip(f"PostgreSQL not usable: {exc}")
        # the next test likely wants the same kind: made while this one runs
        self._next[migrated] = self._ddl_thread.submit(self._create, migrated)
        url = _postgres_url(name)
        if migrated:
            self.migrated.add(url)
        try:
            yield url
        finally:
            self.migrated.discard(url)
            self._ddl_thread.submit(self._drop, name)

    def _postgres_template(self) -> str:
        if self._postgres is None:
            name = "tegata_tpl_" + secrets.token_hex(6)
            self._ddl(f'CREATE DATABASE "{name}"')
            self._postgres = name  # dropped at the end even if migrating fails
            _migrate(_postgres_url(name))  # disposed: no session left on the template
        return self._postgres

    def close(self) -> None:
        """Drops what is left: the databases made ahead and not used, the template."""
        for made in self._next.values():
            with contextlib.suppress(Exception):  # a failed CREATE has nothing to drop
                self._ddl_thread.submit(self._drop, made.result())
        self._next.clear()
        if self._postgres is not None:
            self._ddl_thread.submit(self._drop, self._postgres)
        self._ddl_thread.shutdown(wait=True)
        if self._admin is not None:
            self._admin.dispose()
        assert not self._failed_drops, f"test databases not dropped: {self._failed_drops}"
