"""Rate limits that every worker and replica shares: a leaky bucket per (limit, caller) in the
``rate_buckets`` table.

A bucket drains at ``per_minute`` and holds at most ``capacity``; a request that fits counts
one in, one that does not is refused with the seconds until it would fit. With N workers (or
N replicas) on one database a caller gets the allowance once, not N times: the count is one
statement that reads and writes the row at once (``INSERT … ON CONFLICT DO UPDATE …
RETURNING``, the same text on SQLite and PostgreSQL), so two workers never both take the last
place.

The caller is stored as a SHA-256 hash: no address or token ever lands in the table (nor in a
log line from here). Rows are bounded: a bucket untouched for as long as it takes to drain
is empty, means nothing, and is deleted (at most once a minute per limit and process).

A limit that cannot be counted (the database is down) admits the request and says so in the
log: the request's own work fails then anyway, and a limit only slows guessing and
hammering (tokens have 256 bits).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Float, Table, bindparam, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable

from ca.db.engine import make_engine
from ca.db.models import RateBucket

log = logging.getLogger("tegata.limits")

PRUNE_EVERY = dt.timedelta(minutes=1)

BUCKETS = cast(Table, RateBucket.__table__)
_NOW = bindparam("now", type_=Float)
_RATE = bindparam("rate", type_=Float)
_CAPACITY = bindparam("capacity", type_=Float)
_KEY = (BUCKETS.c.kind == bindparam("kind"), BUCKETS.c.key == bindparam("key"))

# the rule, once: what a bucket holds at :now, drained at :rate per second since it was last
# counted (a worker whose clock is a little behind another's drains nothing, never negative)
_ELAPSED = case((BUCKETS.c.at < _NOW, _NOW - BUCKETS.c.at), else_=0.0)
DRAINED = case((BUCKETS.c.level - _ELAPSED * _RATE > 0, BUCKETS.c.level - _ELAPSED * _RATE),
               else_=0.0)
_FITS = DRAINED + 1 <= _CAPACITY


def _count(insert: Callable[..., Any]) -> Any:
    """INSERT … ON CONFLICT DO UPDATE … RETURNING: SQLite and PostgreSQL say it alike."""
    return (insert(BUCKETS)
            .values(kind=bindparam("kind"), key=bindparam("key"), level=1.0, at=_NOW,
                    admitted=True)
            .on_conflict_do_update(index_elements=[BUCKETS.c.kind, BUCKETS.c.key], set_={
                "level": case((_FITS, DRAINED + 1), else_=DRAINED),
                "admitted": _FITS,
                "at": case((BUCKETS.c.at < _NOW, _NOW), else_=BUCKETS.c.at)})
            .returning(BUCKETS.c.level, BUCKETS.c.admitted))


COUNT = {"sqlite": _count(sqlite.insert), "postgresql": _count(postgresql.insert)}
LEVEL = select(DRAINED).where(*_KEY)
# an UPDATE binds its columns' own names: the key goes under others
REFUND = (update(BUCKETS).where(BUCKETS.c.kind == bindparam("which"),
                                BUCKETS.c.key == bindparam("whose"))
          .values(level=case((BUCKETS.c.level > 1, BUCKETS.c.level - 1), else_=0.0)))
PRUNE = delete(BUCKETS).where(BUCKETS.c.kind == bindparam("kind"),
                              BUCKETS.c.at < bindparam("horizon", type_=Float))


def limits_engine(engine: Engine) -> Engine:
    """Where the buckets live. On PostgreSQL, in the database (a count locks only its row,
    which no other transaction holds for long). On SQLite, whose write lock is the whole
    file's, in a file of their own beside it (``<name>-limits.db``, the same table, made on
    first use): a count then never waits behind a long write of the service, nor a long
    write behind a storm of counts. It holds nothing but hashes and levels; deleting it
    resets the limits, nothing more."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" \
            or database.startswith("file:"):
        return engine  # no file to put one beside: the table migration 0011 made
    limits = make_engine(f"sqlite:///{limits_file(Path(database))}")
    with limits.begin() as conn:  # IF NOT EXISTS: workers starting together may all make it
        conn.execute(CreateTable(BUCKETS, if_not_exists=True))
        for index in BUCKETS.indexes:
            conn.execute(CreateIndex(index, if_not_exists=True))
    return limits


def limits_file(database: Path) -> Path:
    """Where an SQLite database's buckets live: ``tegata.db`` -> ``tegata-limits.db``."""
    return database.with_name(database.stem + "-limits.db")


def caller_key(caller: str) -> str:
    return hashlib.sha256(caller.encode("utf-8", "surrogatepass")).hexdigest()


class RateBuckets:
    """One rate limit (``kind``): ``capacity`` at once, refilled at ``per_minute``."""

    def __init__(self, engine: Engine, *, kind: str, capacity: int, per_minute: float) -> None:
        if capacity < 1 or per_minute <= 0:
            raise ValueError(f"a {kind} limit needs a capacity and a rate above 0")
        if engine.dialect.name not in COUNT:
            raise ValueError(f"rate limits need SQLite or PostgreSQL, not {engine.dialect.name}")
        self.engine = engine
        self.kind = kind
        self.capacity = capacity
        self.rate = per_minute / 60.0
        self._pruned_at: dt.datetime | None = None
        self._prune_lock = threading.Lock()

    def admit(self, caller: str, *, now: dt.datetime) -> float | None:
        """Count one request of ``caller``: None when it fits, else the seconds until one
        more would (it is not counted then)."""
        params = self._params(caller, now)
        try:
            with self.engine.begin() as conn:
                level, admitted = conn.execute(COUNT[self.engine.dialect.name],
                                               {**params, "capacity": self.capacity}).one()
        except SQLAlchemyError as exc:
            self._unchecked(exc)
            return None
        self._prune_now_and_then(now)
        return None if admitted else self._wait(level)

    def refund(self, caller: str) -> None:
        """Give back one place ``admit`` took (a request counted before it was known not
        to count): the bucket holds one less, never below empty."""
        try:
            with self.engine.begin() as conn:
                conn.execute(REFUND, {"which": self.kind, "whose": caller_key(caller)})
        except SQLAlchemyError as exc:
            self._unchecked(exc)

    def wait(self, caller: str, *, now: dt.datetime) -> float | None:
        """Without counting: None when one more request of ``caller`` would fit, else the
        seconds until it would. A read: it never waits for a writer."""
        try:
            with self.engine.connect() as conn:
                level = conn.execute(LEVEL, self._params(caller, now)).scalar()
        except SQLAlchemyError as exc:
            self._unchecked(exc)
            return None
        return None if level is None or level + 1 <= self.capacity else self._wait(level)

    def prune(self, *, now: dt.datetime) -> int:
        """Delete every bucket that has drained empty; how many went."""
        horizon = now.timestamp() - self.capacity / self.rate
        with self.engine.begin() as conn:
            return conn.execute(PRUNE, {"kind": self.kind, "horizon": horizon}).rowcount

    def _params(self, caller: str, now: dt.datetime) -> dict[str, object]:
        return {"kind": self.kind, "key": caller_key(caller), "now": now.timestamp(),
                "rate": self.rate}

    def _wait(self, level: float) -> float:
        return (level + 1 - self.capacity) / self.rate

    def _prune_now_and_then(self, now: dt.datetime) -> None:
        with self._prune_lock:
            if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
                return
            self._pruned_at = now
        try:
            self.prune(now=now)
        except SQLAlchemyError as exc:  # the next minute's prune takes them
            log.warning("rate limit %s: old buckets not pruned (%s)", self.kind,
                        type(exc).__name__)

    def _unchecked(self, exc: SQLAlchemyError) -> None:
        # neither the caller nor the statement's parameters: they hold the caller's key
        log.warning("rate limit %s not checked, request admitted (%s)", self.kind,
                    type(exc).__name__)
