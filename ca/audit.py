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

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from ca.db.models import AuditEvent

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


def verify(events: Iterable[AuditEvent]) -> Break | None:
    """Walk the chain in id order; the first event that was changed, removed or moved."""
    previous = GENESIS
    for event in events:
        if event.prev_hash != previous:
            return Break(event_id=event.id, problem="it does not follow the event before it "
                                                     "(an event was removed or reordered)")
        if chain_hash(event.prev_hash, event) != event.hash:
            return Break(event_id=event.id, problem="its content does not match its hash "
                                                     "(the event was changed)")
        previous = event.hash
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
