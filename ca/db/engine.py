"""Engines and sessions: SQLite in WAL mode with a busy timeout, or PostgreSQL.

On SQLite a write transaction takes the database's write lock at its start (``BEGIN
IMMEDIATE``): what it reads to decide a write (the audit chain's head, a certificate's state)
cannot change under it. pysqlite's own transaction handling would run those reads before any
``BEGIN`` and open a deferred transaction only at the first write, so two writers could both
read the same head and fork the audit chain. Reads stay deferred (``BEGIN``) and never wait
for a writer (WAL).

The threads of one process take turns for that lock first come, first served
(``writer_turn``) before they send ``BEGIN IMMEDIATE``: left to SQLite, a writer that finds
the lock held sleeps in its busy handler with a growing backoff (up to 100 ms a nap) and
keeps losing to newcomers, which is where a loaded server's tail latency came from. Then the
processes on one database file (``tegata serve --workers N``) take turns the same way: the
thread whose turn it is locks a file beside the database (``<database>-turn``, ``flock``)
until its transaction ends, the kernel queueing the processes that wait for it, and
releasing it when its holder exits, even killed. Only a writer that does not take that turn
(another program, or a system without ``fcntl``) still meets SQLite's busy handler.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: the processes meet SQLite's busy handler, as before
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ca.errors import StorageError
from ca.settings import redact_url

SQLITE_BUSY_TIMEOUT_MS = 10_000
# the execution option that makes a connection's transactions take the write lock at BEGIN
WRITE = "tegata_write"


def make_engine(url: str, *, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Engine:
    """An engine for ``url``; on SQLite a writer waits at most ``busy_timeout_ms`` for the
    write lock (for its turn in this process, then for another process's writer)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
        _TURNS[engine] = _Turns(busy_timeout_ms / 1000, _turn_file(engine))
        event.listen(engine, "connect",
                     lambda conn, record: _sqlite_pragmas(conn, record, busy_timeout_ms))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, busy_timeout_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    # first: switching to WAL takes a lock, which processes starting together must wait for
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    # WAL lets readers (OCSP, CRL downloads) go on while one writer works
    cursor.execute("PRAGMA journal_mode=WAL")
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


def _turn_file(engine: Engine) -> str | None:
    """The file the processes writing ``engine``'s database lock in turn; none for a
    database in memory (no other process shares it) or without ``fcntl``."""
    database = engine.url.database
    if fcntl is None or not database or database == ":memory:" or database.startswith(
            "file:") or engine.url.query.get("mode") == "memory":
        return None
    return f"{database}-turn"


class _FileTurn:
    """The lock on the turn file, held through one open file description: ``flock`` queues
    the processes asking for it in the kernel (no sleeping backoff) and drops it when the
    description is closed, by ``release`` or by the holder's death."""

    def __init__(self, path: str) -> None:
        self.path = path

    def acquire(self, timeout: float) -> int | None:
        """The locked descriptor, or None if the lock did not come within ``timeout``."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            pass
        except BaseException:
            os.close(fd)
            raise
        # held by another process: a helper thread waits in the kernel's queue; if the
        # wait outlasts the timeout, the helper closes what it gets (nobody waits for it)
        got, guard = threading.Event(), threading.Lock()
        state: dict[str, Any] = {"abandoned": False, "error": None}

        def wait_in_queue() -> None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                state["error"] = exc
            with guard:
                if state["abandoned"]:
                    os.close(fd)
                    return
                got.set()

        threading.Thread(target=wait_in_queue, name="tegata-file-turn", daemon=True).start()
        if got.wait(timeout):
            return self._checked(fd, state)
        with guard:
            if got.is_set():  # came as the wait ended: ours after all
                return self._checked(fd, state)
            state["abandoned"] = True
        return None

    @staticmethod
    def _checked(fd: int, state: dict[str, Any]) -> int:
        if state["error"] is not None:
            os.close(fd)
            raise state["error"]
        return fd

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)  # closing the only descriptor of the description unlocks it


class _Turns:
    """A first come, first served lock: a released lock passes straight to the thread that
    has waited longest (``threading.Lock`` promises no order). With a ``turn_file``, the
    thread whose turn it is then takes the processes' turn too (``_FileTurn``)."""

    def __init__(self, timeout: float, turn_file: str | None = None) -> None:
        self.timeout = timeout
        self.file = _FileTurn(turn_file) if turn_file else None
        self._mutex = threading.Lock()
        self._waiting: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self) -> bool:
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            mine = threading.Lock()
            mine.acquire()
            self._waiting.append(mine)
        if mine.acquire(timeout=self.timeout):
            return True  # handed over by release(): the lock is ours
        with self._mutex:
            try:
                self._waiting.remove(mine)
            except ValueError:  # handed over as the wait ended: ours after all
                return True
            return False

    def release(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().release()  # still held: now by the next in line
            else:
                self._held = False


_TURNS: weakref.WeakKeyDictionary[Engine, _Turns] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def writer_turn(engine: Engine) -> Iterator[None]:
    """This thread's turn to write on ``engine`` (SQLite), in the order the threads asked;
    a ``StorageError`` when the turn does not come within the busy timeout. PostgreSQL needs
    none: it locks rows, and its writers go on side by side."""
    turns = _TURNS.get(engine)
    if turns is None:
        yield
        return
    started = time.monotonic()
    if not turns.acquire():
        raise _busy(turns)
    fd: int | None = None
    try:
        if turns.file is not None:
            fd = turns.file.acquire(max(0.0, turns.timeout - (time.monotonic() - started)))
            if fd is None:
                raise _busy(turns)
        yield
    finally:
        if fd is not None:
            _FileTurn.release(fd)
        turns.release()


def _busy(turns: _Turns) -> StorageError:
    return StorageError(f"the database is busy: no turn to write within {turns.timeout:g} s "
                        "(a long write transaction, here or in another process)")
