"""The audit log: every change and every download of key material, hash-chained.

Each event's ``hash`` is the SHA-256 of the previous event's hash and this event's canonical
JSON; a changed, removed or reordered event breaks the chain from there on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from ca.db.models import AuditAnchor, AuditEvent

GENESIS = "0" * 64
CHAIN_LOCK = 0x7465676174  # "tegat": the advisory lock that orders appends on PostgreSQL


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who acts, and from where: a token's name and role, or the local CLI user."""

    name: str
    source_ip: str | None = None
    request_id: str | None = None


CLI_ACTOR = Actor(name="cli")


@dataclass(frozen=True, kw_only=True)
class Event:
    action: str
    target: str
    outcome: str = "success"
    tenant_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


def canonical(event: AuditEvent) -> bytes:
    body = {
        "at": event.at.astimezone(dt.UTC).isoformat(),
        "tenant_id": event.tenant_id,
        "actor": event.actor,
        "source_ip": event.source_ip,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "request_id": event.request_id,
        "details": json.loads(event.details),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(event)).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Break:
    """Where the chain stops holding: the event, and what is wrong with it."""

    event_id: int
    problem: str


def verify(events: Iterable[AuditEvent], *, anchor: AuditAnchor | None = None) -> Break | None:
    """Walk the chain in id order; the first event that was changed, removed or moved.

    After retention removed the oldest events, the chain starts at ``anchor``; the last
    ``audit.prune`` event must vouch for that anchor, or the anchor itself was forged.
    """
    previous = anchor.prev_hash if anchor is not None else GENESIS
    vouched: dict[str, Any] | None = None
    last_id: int | None = None
    for event in events:
        if event.prev_hash != previous:
            problem = ("it does not follow the event before it (an event was removed or "
                       "reordered)") if last_id is not None else (
                "it is not where the log starts (events before it were removed outside "
                "retention)")
            return Break(event_id=event.id, problem=problem)
        if chain_hash(event.prev_hash, event) != event.hash:
            return Break(event_id=event.id, problem="its content does not match its hash "
                                                     "(the event was changed)")
        if event.action == PRUNE:
            vouched = {**json.loads(event.details), "id": event.id}
        previous, last_id = event.hash, event.id
    if anchor is not None and (vouched is None or vouched.get("anchor") != anchor.prev_hash):
        return Break(event_id=vouched["id"] if vouched else anchor.first_id,
                     problem="the retention anchor does not match the last audit.prune event "
                             "(the anchor was changed)")
    return None


def record(session: Session, actor: Actor, event: Event, *, now: dt.datetime) -> AuditEvent:
    """Append one event in the caller's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        # one writer at a time extends the chain (SQLite already has a single writer)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK})
    last = session.execute(
        select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar_one_or_none()
    row = AuditEvent(
        at=now, tenant_id=event.tenant_id, actor=actor.name[:200], source_ip=actor.source_ip,
        action=event.action, target=event.target, outcome=event.outcome,
        request_id=actor.request_id,
        details=json.dumps(event.details, sort_keys=True, ensure_ascii=False),
        prev_hash=last or GENESIS, hash="",
    )
    row.hash = chain_hash(row.prev_hash, row)
    session.add(row)
    return row


PRUNE = "audit.prune"


def prune(session: Session, actor: Actor, *, before: dt.datetime, now: dt.datetime) -> int:
    """Remove the events older than ``before``, up to the first one that is not; how many.

    Only a prefix of the chain goes, so what is kept still verifies: from the anchor, which
    records the hash of the last removed event, and which an ``audit.prune`` event repeats.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK})
    kept = session.scalar(select(func.min(AuditEvent.id)).where(AuditEvent.at >= before))
    old = select(AuditEvent.id) if kept is None else select(AuditEvent.id).where(
        AuditEvent.id < kept)
    last_old = session.scalar(select(func.max(old.subquery().c.id)))
    if last_old is None:
        return 0
    count = session.scalar(select(func.count()).where(AuditEvent.id <= last_old)) or 0
    last_hash = session.scalar(select(AuditEvent.hash).where(AuditEvent.id == last_old))
    assert last_hash is not None
    # recorded before the removal: when every event is old, this one is the first kept
    event = record(session, actor, Event(action=PRUNE, target="audit log", details={
        "before": before.astimezone(dt.UTC).isoformat(), "removed": count,
        "anchor": last_hash}), now=now)
    session.flush()
    session.execute(delete(AuditEvent).where(AuditEvent.id <= last_old))
    first_id = kept if kept is not None else event.id
    anchor = session.get(AuditAnchor, 1)
    if anchor is None:
        session.add(AuditAnchor(id=1, prev_hash=last_hash, first_id=first_id, removed=count,
                                pruned_at=now))
    else:
        anchor.prev_hash, anchor.first_id = last_hash, first_id
        anchor.removed, anchor.pruned_at = anchor.removed + count, now
    return count
