"""The OCSP change feed: how every process learns, within a second, that an answer changed.

A status change (``ca.service.transitions``) marks its certificate in the session; a new or
retired issuing CA marks itself. At commit the transaction writes the marks as one batch of
``ocsp_changes`` rows, numbered by the one ``ocsp_sequence`` row it increments. Every
process polls ``WHERE seq > <the last it saw>`` a few times a second (one indexed range
read, usually empty) and forgets the answers named; the committing process forgets them at
once, after its commit.

Why a polled sequence and not PostgreSQL LISTEN/NOTIFY: it works the same on SQLite (one
file, several processes) and PostgreSQL, needs no connection held open per process, and a
process that was away (a lost connection, a pause) learns what it missed from the rows
instead of losing notifications; it costs one indexed read per process every 0.2 s.

Why the sequence row: a batch number must not become visible before the smaller ones.
Incrementing one row takes its lock until commit, so batches commit in number order on
PostgreSQL too (SQLite has one writer anyway); the lock is the last one the transaction
takes (after the audit chain's, ``ca.audit``), held only for the commit, so it never waits
crosswise with another lock.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from sqlalchemy import Connection, Engine, delete, event, insert, inspect, select, update
from sqlalchemy.orm import Session, SessionTransaction

import ca.audit  # noqa: F401  its before_commit hook first: the sequence is the last lock
from ca.db.models import Authority, OcspChange, OcspSequence

MARKS = "tegata.ocsp_marks"  # session.info: {authority id: set of serials, or None (all)}
WRITTEN = "tegata.ocsp_written"
# a transaction changing more certificates of one CA than this says "the whole CA"
WHOLE_CA = 256
# batches kept in the table; a process that fell further behind forgets everything
KEEP_BATCHES = 1000

# (authority id, canonical serial or None for the whole CA)
Change = tuple[int, str | None]
Listener = Callable[[list[Change]], None]
_listeners: weakref.WeakKeyDictionary[Engine, list[Listener]] = weakref.WeakKeyDictionary()


def mark(session: Session, authority_id: int, serial: str | None) -> None:
    """The OCSP answer for ``serial`` of this CA (``None``: every answer of the CA, and the CA
    itself) changes when this transaction commits."""
    marks: dict[int, set[str] | None] = session.info.setdefault(MARKS, {})
    serials = marks.setdefault(authority_id, set())
    if serials is None:
        return
    if serial is None or len(serials) >= WHOLE_CA:
        marks[authority_id] = None
    else:
        serials.add(serial)


def listen(engine: Engine, listener: Listener) -> None:
    """Call ``listener`` with the changes of every transaction this process commits on
    ``engine``, right after its commit."""
    _listeners.setdefault(engine, []).append(listener)


def _changes(marks: dict[int, set[str] | None]) -> list[Change]:
    found: list[Change] = []
    for authority_id, serials in sorted(marks.items()):
        found += [(authority_id, None)] if serials is None else [
            (authority_id, serial) for serial in sorted(serials)]
    return found


@event.listens_for(Session, "after_flush")
def _mark_issuers(session: Session, _context: object) -> None:
    # a new issuing CA, or one retired: every process reloads its issuer hashes
    for obj in session.new:
        if isinstance(obj, Authority) and obj.kind == "issuing":
            mark(session, obj.id, None)
    for obj in session.dirty:
        if (isinstance(obj, Authority) and obj.kind == "issuing"
                and inspect(obj).attrs.retired_at.history.has_changes()):
            mark(session, obj.id, None)


@event.listens_for(Session, "before_commit")
def _write_at_commit(session: Session) -> None:
    marks = session.info.pop(MARKS, None)
    if not marks:
        return
    changes = _changes(marks)
    seq = session.execute(update(OcspSequence).where(OcspSequence.id == 1)
                          .values(seq=OcspSequence.seq + 1)
                          .returning(OcspSequence.seq)).scalar()
    if seq is None:  # a schema made without the migration's row
        seq = 1
        session.execute(insert(OcspSequence).values(id=1, seq=seq))
    session.execute(insert(OcspChange), [
        {"seq": seq, "authority_id": authority_id, "serial": serial}
        for authority_id, serial in changes])
    session.execute(delete(OcspChange).where(OcspChange.seq <= seq - KEEP_BATCHES))
    session.info[WRITTEN] = changes


@event.listens_for(Session, "after_commit")
def _tell_this_process(session: Session) -> None:
    changes = session.info.pop(WRITTEN, None)
    if changes:
        bind = session.get_bind()
        # a writing session's engine is a copy with options (ca.db.engine): its original
        engine = getattr(bind, "_proxied", bind.engine)
        for listener in list(_listeners.get(engine, ())):
            listener(changes)


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # committed (told already) or rolled back: gone
        session.info.pop(MARKS, None)
        session.info.pop(WRITTEN, None)


def newest(conn: Connection) -> int:
    """The number of the newest committed batch."""
    return conn.scalar(select(OcspSequence.seq).where(OcspSequence.id == 1)) or 0


def since(conn: Connection, seq: int) -> tuple[int, list[Change] | None]:
    """The batches after ``seq``: (the newest number, their changes), or (number, None) when
    some of them are gone from the table (everything may have changed)."""
    rows = conn.execute(select(OcspChange.seq, OcspChange.authority_id, OcspChange.serial)
                        .where(OcspChange.seq > seq).order_by(OcspChange.seq)).all()
    if not rows:
        return seq, []
    if rows[0].seq > seq + 1:
        return rows[-1].seq, None
    return rows[-1].seq, [(row.authority_id, row.serial) for row in rows]
