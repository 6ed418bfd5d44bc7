"""The audit log: every change and every download of key material, hash-chained.

Each event's ``hash`` is the SHA-256 of the previous event's hash in its chain and this
event's canonical JSON; a changed, removed or reordered event breaks the chain from there on.

There is a chain per tenant (its events) and one for the operator (the events of no tenant,
and every event written before revision 0006, when there was one chain for all). Appends to
one chain are serialised (PostgreSQL: an advisory lock per chain; SQLite: its single writer,
taken at BEGIN); appends to different chains are not, so one tenant's bulk work never holds
up another tenant's revocation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, text
from sqlalchemy import event as orm_event
from sqlalchemy.orm import Session, SessionTransaction

from ca.db.models import AuditAnchor, AuditEvent

EVENTS = cast(Table, AuditEvent.__table__)

GENESIS = "0" * 64
OPERATOR = 0  # the operator's chain; a tenant's chain is its id
# "tega": the first key of the advisory locks (one per chain) that order appends on PostgreSQL
CHAIN_LOCK = 0x74656761
# session.info: the chains this transaction holds, and each one's head as this transaction
# extends it (read once, under the chain's lock)
HEADS = "tegata_audit_heads"
PENDING = "tegata_audit_pending"  # events recorded, written at commit


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


FIELDS = ("at", "tenant_id", "actor", "source_ip", "action", "target", "outcome",
          "request_id", "details")


def canonical(event: AuditEvent | Mapping[str, Any]) -> bytes:
    values = event if isinstance(event, Mapping) else {f: getattr(event, f) for f in FIELDS}
    body = {**{f: values[f] for f in FIELDS}, "at": values["at"].astimezone(dt.UTC).isoformat(),
            "details": json.loads(values["details"])}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, event: AuditEvent | Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(event)).hexdigest()


@dataclass(frozen=True, kw_only=True)
class Break:
    """Where the chain stops holding: the event, and what is wrong with it."""

    event_id: int
    problem: str


def chain_of(tenant_id: int | None) -> int:
    return OPERATOR if tenant_id is None else tenant_id


def verify(events: Iterable[AuditEvent], *, anchor: AuditAnchor | None = None,
           chain: int = OPERATOR) -> Break | None:
    """Walk one chain in id order; the first event that was changed, removed or moved.

    After retention removed the oldest events, the chain starts at ``anchor``; the last
    ``audit.prune`` event must vouch for that anchor, or the anchor itself was forged.
    A tenant's chain holds only that tenant's events (the operator's chain also holds every
    event from before there were chains).
    """
    previous = anchor.prev_hash if anchor is not None else GENESIS
    vouched: dict[str, Any] | None = None
    last_id: int | None = None
    for event in events:
        if chain != OPERATOR and event.tenant_id != chain:
            return Break(event_id=event.id, problem="it is another tenant's event, filed in "
                                                     "this tenant's chain (it was moved)")
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


def record(session: Session, actor: Actor, event: Event, *, now: dt.datetime) -> None:
    """Append one event, to its tenant's chain or the operator's, in the caller's
    transaction: it is written when the transaction commits (``append_pending``)."""
    _pending(session).append(_row(actor, event, now=now))


def record_many(session: Session, actor: Actor, events: Iterable[Event], *,
                now: dt.datetime) -> int:
    """Append many events at once (a bulk issuance's), as ``record`` would one after the
    other; how many."""
    rows = [_row(actor, event, now=now) for event in events]
    _pending(session).extend(rows)
    return len(rows)


def append_pending(session: Session) -> None:
    """Write the transaction's events, in the order they were recorded, each chain under its
    lock, the chains in one order (SQLAlchemy calls this just before every commit).

    The chain's lock is the last lock a transaction takes: whatever rows the transaction
    locked (users, certificates, an authority to publish a CRL) it locked before, so two
    transactions never wait for each other's rows and chains crosswise (a deadlock that
    PostgreSQL would break by failing one of them).
    """
    pending: list[dict[str, Any]] = session.info.pop(PENDING, [])
    if not pending:
        return
    for chain in sorted({row["chain"] for row in pending}):
        heads = _hold(session, chain)
    for row in pending:
        row["prev_hash"] = heads[row["chain"]]
        row["hash"] = heads[row["chain"]] = chain_hash(row["prev_hash"], row)
    session.execute(insert(EVENTS), pending)  # Core: no ORM bookkeeping at every commit


def _pending(session: Session) -> list[dict[str, Any]]:
    pending: list[dict[str, Any]] = session.info.setdefault(PENDING, [])
    return pending


def _row(actor: Actor, event: Event, *, now: dt.datetime) -> dict[str, Any]:
    return {"at": now, "tenant_id": event.tenant_id, "actor": actor.name[:200],
            "source_ip": actor.source_ip, "action": event.action, "target": event.target,
            "outcome": event.outcome, "request_id": actor.request_id,
            "details": json.dumps(event.details, sort_keys=True, ensure_ascii=False),
            "chain": chain_of(event.tenant_id)}


@orm_event.listens_for(Session, "before_commit")
def _append_at_commit(session: Session) -> None:
    append_pending(session)


# a chain's head (built once: it is read by every write that audits)
_HEAD = select(AuditEvent.hash).where(AuditEvent.chain == bindparam("chain")) \
    .order_by(AuditEvent.id.desc()).limit(1)


def _hold(session: Session, chain: int) -> dict[int, str]:
    """Lock ``chain`` for this transaction (once) and know its head."""
    heads: dict[int, str] = session.info.setdefault(HEADS, {})
    if chain not in heads:
        if session.get_bind().dialect.name == "postgresql":
            # one writer at a time extends a chain; SQLite's writer holds the database's
            # write lock from BEGIN (ca.db.engine)
            session.execute(text("SELECT pg_advisory_xact_lock(:space, :chain)"),
                            {"space": CHAIN_LOCK, "chain": chain})
        heads[chain] = session.scalar(_HEAD, {"chain": chain}) or GENESIS
    return heads


@orm_event.listens_for(Session, "after_transaction_end")
def _forget_heads(session: Session, transaction: SessionTransaction) -> None:
    # a head read in a transaction (or savepoint) that ended may be gone or stale; a flush's
    # inner transaction changes nothing
    if transaction.parent is None or transaction.nested:
        session.info.pop(HEADS, None)
    if transaction.parent is None:  # committed (written already) or rolled back: gone
        session.info.pop(PENDING, None)


PRUNE = "audit.prune"


def chains(session: Session) -> list[int]:
    """Every chain that has events or an anchor, the operator's first."""
    found = set(session.scalars(select(AuditEvent.chain).distinct()))
    found.update(session.scalars(select(AuditAnchor.chain)))
    return sorted(found)


def anchor_of(session: Session, chain: int) -> AuditAnchor | None:
    return session.scalar(select(AuditAnchor).where(AuditAnchor.chain == chain))


def prune(session: Session, actor: Actor, *, chain: int, before: dt.datetime,
          now: dt.datetime) -> int:
    """Remove the chain's events older than ``before``, up to the first one that is not; how
    many.

    Only a prefix of the chain goes, so what is kept still verifies: from the chain's anchor,
    which records the hash of the last removed event, and which an ``audit.prune`` event (in
    the same chain) repeats.
    """
    _hold(session, chain)
    mine = AuditEvent.chain == chain
    kept = session.scalar(select(func.min(AuditEvent.id)).where(mine, AuditEvent.at >= before))
    old = select(AuditEvent.id).where(mine) if kept is None else select(AuditEvent.id).where(
        mine, AuditEvent.id < kept)
    last_old = session.scalar(select(func.max(old.subquery().c.id)))
    if last_old is None:
        return 0
    count = session.scalar(select(func.count()).where(mine, AuditEvent.id <= last_old)) or 0
    last_hash = session.scalar(select(AuditEvent.hash).where(AuditEvent.id == last_old))
    assert last_hash is not None
    # recorded before the removal: when every event is old, this one is the first kept
    heads = _hold(session, chain)
    event = AuditEvent(**_row(actor, Event(
        action=PRUNE, target="audit log", tenant_id=None if chain == OPERATOR else chain,
        details={"before": before.astimezone(dt.UTC).isoformat(), "removed": count,
                 "anchor": last_hash}), now=now), prev_hash=heads[chain], hash="")
    event.hash = heads[chain] = chain_hash(event.prev_hash, event)
    session.add(event)  # now, not at commit: its id is the anchor's when all else goes
    session.flush()
    session.execute(delete(AuditEvent).where(mine, AuditEvent.id <= last_old))
    first_id = kept if kept is not None else event.id
    anchor = anchor_of(session, chain)
    if anchor is None:
        session.add(AuditAnchor(chain=chain, prev_hash=last_hash, first_id=first_id,
                                removed=count, pruned_at=now))
    else:
        anchor.prev_hash, anchor.first_id = last_hash, first_id
        anchor.removed, anchor.pruned_at = anchor.removed + count, now
    return count
