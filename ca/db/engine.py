"""Engines and sessions: SQLite in WAL mode with a busy timeout, or PostgreSQL.

On SQLite a write transaction takes the database's write lock at its start (``BEGIN
IMMEDIATE``): what it reads to decide a write (the audit chain's head, a certificate's state)
cannot change under it. pysqlite's own transaction handling would run those reads before any
``BEGIN`` and open a deferred transaction only at the first write, so two writers could both
read the same head and fork the audit chain. Reads stay deferred (``BEGIN``) and never wait
for a writer (WAL).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ca.errors import StorageError
from ca.settings import redact_url

SQLITE_BUSY_TIMEOUT_MS = 10_000
# the execution option that makes a connection's transactions take the write lock at BEGIN
WRITE = "tegata_write"


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (OCSP, CRL downloads) go on while one writer works
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    # pysqlite's legacy transaction control off: SQLAlchemy's "begin" event emits our BEGIN
    # (the recipe of SQLAlchemy's SQLite dialect documentation, "Serializable isolation")
    dbapi_connection.isolation_level = None


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE)
                         else "BEGIN")


def make_sessionmaker(engine: Engine, *, write: bool = False) -> sessionmaker[Session]:
    """Sessions on ``engine``; with ``write``, each transaction takes the write lock at its
    start on SQLite (PostgreSQL locks rows and advisory locks as it goes)."""
    bind = engine.execution_options(**{WRITE: True}) if write else engine
    return sessionmaker(bind, expire_on_commit=False)


def check_reachable(engine: Engine) -> None:
    """One round trip; a ``StorageError`` naming the (redacted) URL when it fails."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        raise StorageError(
            f"TEGATA_DATABASE_URL: cannot reach {redact_url(engine.url.render_as_string(False))}:"
            f" {reason}", field="TEGATA_DATABASE_URL") from None
