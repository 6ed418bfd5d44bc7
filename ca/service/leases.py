"""Leases: work that one process at a time may do, whatever the processes and replicas.

A lease is a row taken by a conditional ``UPDATE ... WHERE expires_at <= now``, which works
alike on PostgreSQL (the row lock orders two takers; the second re-reads and matches nothing)
and on SQLite (one writer at a time). Its holder renews it while it works; a holder that dies
stops renewing, and the lease lapses for the next taker. These take a session and never
commit: the caller commits the taking before doing the work.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ca.db.models import Lease


def new_holder() -> str:
    """Who takes a lease: this host and process (for people reading a refusal), and a
    random part (two runs in one process are two holders)."""
    return f"{socket.gethostname()[:60]}/{os.getpid()}/{secrets.token_hex(4)}"


def take(session: Session, name: str, holder: str, *, now: dt.datetime,
         ttl: dt.timedelta) -> bool:
    """Take ``name`` until ``now + ttl`` if nobody holds it (or its lease lapsed)."""
    taken = session.execute(
        update(Lease).where(Lease.name == name,
                            or_(Lease.expires_at.is_(None), Lease.expires_at <= now))
        .values(holder=holder, taken_at=now, expires_at=now + ttl)
        .execution_options(synchronize_session=False))
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        return True
    if session.get(Lease, name) is not None:
        return False
    try:  # its first use: whoever inserts the row first holds it
        with session.begin_nested():
            session.add(Lease(name=name, holder=holder, taken_at=now, expires_at=now + ttl))
    except IntegrityError:
        return False
    return True


def renew(session: Session, name: str, holder: str, *, now: dt.datetime,
          ttl: dt.timedelta) -> bool:
    """Extend the lease while ``holder`` still has it; False if it was lost (lapsed, and
    taken by another)."""
    kept = session.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder)
        .values(expires_at=now + ttl).execution_options(synchronize_session=False))
    return bool(kept.rowcount == 1)  # type: ignore[attr-defined]


def release(session: Session, name: str, holder: str) -> None:
    session.execute(update(Lease).where(Lease.name == name, Lease.holder == holder)
                    .values(holder=None, expires_at=None)
                    .execution_options(synchronize_session=False))


def held(session: Session, name: str) -> Lease | None:
    """The lease row as it stands (``populate_existing``: not a copy read earlier)."""
    return session.get(Lease, name, populate_existing=True)


def done_until(session: Session, name: str) -> dt.datetime | None:
    """The instant up to which the lease's time-driven work is done (None: none yet)."""
    lease = session.get(Lease, name)
    return lease.done_until if lease is not None else None


def mark_done(session: Session, name: str, holder: str, *, until: dt.datetime) -> bool:
    """Record that the work is done up to ``until``, while ``holder`` still has the lease
    (in the transaction that did the last of it); False if the lease was lost."""
    marked = session.execute(
        update(Lease).where(Lease.name == name, Lease.holder == holder)
        .values(done_until=until).execution_options(synchronize_session=False))
    return bool(marked.rowcount == 1)  # type: ignore[attr-defined]
