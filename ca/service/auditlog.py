"""Reading the audit log: list with filters, export, and verify the hash chain."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from ca import audit, csvio, validate
from ca.clock import Clock
from ca.db import queries
from ca.db.models import AuditEvent, Tenant
from ca.errors import InvalidInput
from ca.service.plumbing import Database
from ca.settings import Settings

PAGE = 1000
ACTION = re.compile(r"[a-z0-9_.-]{1,64}")  # tenant.create, cert.issue, audit.prune ...
OUTCOMES = ("success", "failure", "refused")  # what ca.audit records
MAX_SEARCH = 200
_Query = TypeVar("_Query", bound=Select[*tuple[Any, ...]])


@dataclass(frozen=True, kw_only=True)
class EventView:
    id: int
    at: dt.datetime
    tenant: str | None
    actor: str
    source_ip: str | None
    action: str
    target: str
    outcome: str
    request_id: str | None
    details: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class ChainCheck:
    """One chain: its tenant (None: the operator's), the events kept, its head (note it
    elsewhere to pin the chain), the first break if any, and how many events retention
    removed before ``first_id``."""

    tenant: str | None
    events: int
    head: str | None
    broken: audit.Break | None
    removed: int
    first_id: int | None


@dataclass(frozen=True, kw_only=True)
class AuditCheck:
    """What ``verify`` found in every chain, the operator's first."""

    chains: list[ChainCheck]

    @property
    def events(self) -> int:
        return sum(c.events for c in self.chains)

    @property
    def removed(self) -> int:
        return sum(c.removed for c in self.chains)

    @property
    def broken(self) -> audit.Break | None:
        """The first break of the first broken chain."""
        return next((c.broken for c in self.chains if c.broken is not None), None)


class Audit:
    """The audit log: listing, CSV export, counts, chain verification, pruning."""

    def __init__(self, *, settings: Settings, database: Database, clock: Clock) -> None:
        self.settings = settings
        self.database = database
        self.clock = clock

    def events(self, *, tenant: str | None = None, action: str | None = None,
               since: dt.datetime | None = None, until: dt.datetime | None = None,
               outcome: str | None = None, q: str | None = None, limit: int = 1000,
               offset: int = 0, newest_first: bool = False) -> list[EventView]:
        """Events, oldest first (``newest_first``: the other way); a tenant's admin passes
        their tenant and sees only it. ``q`` is a case-insensitive part of the actor or the
        target."""
        with self.database.reading() as session:
            query = _filtered(session, select(AuditEvent, Tenant.name).outerjoin(
                Tenant, AuditEvent.tenant_id == Tenant.id), tenant=tenant, action=action,
                since=since, until=until, outcome=outcome, q=q)
            order = AuditEvent.id.desc() if newest_first else AuditEvent.id
            rows = session.execute(query.order_by(order).offset(max(0, offset))
                                   .limit(max(1, min(limit, 10_000)))).all()
            return [_view(event, name) for event, name in rows]

    def count(self, *, tenant: str | None = None, action: str | None = None,
              since: dt.datetime | None = None, until: dt.datetime | None = None,
              outcome: str | None = None, q: str | None = None) -> int:
        """How many events ``events`` would list with these filters, paging aside."""
        with self.database.reading() as session:
            query = _filtered(session, select(func.count()).select_from(AuditEvent),
                              tenant=tenant, action=action, since=since, until=until,
                              outcome=outcome, q=q)
            return int(session.scalar(query) or 0)

    def export_csv(self, *, tenant: str | None = None, zone: str = "UTC",
                   action: str | None = None, since: dt.datetime | None = None,
                   until: dt.datetime | None = None, outcome: str | None = None,
                   q: str | None = None, zone_column: bool = False) -> Iterator[str]:
        """Every event (of ``action``, in [since, until)) as CSV, times in UTC and in
        ``zone`` (e.g. Asia/Tokyo): the second time column is ``time_<zone>``, or with
        ``zone_column`` ``time_local`` followed by a ``zone`` column naming it (never two
        columns both called time_utc, whatever the case). The filters are checked now, before
        the first line: a streamed answer cannot turn into an error once it has begun."""
        from ca import expiry

        shown = expiry.zone(zone)
        # the first page, read now, checks the tenant and every filter
        self.events(tenant=tenant, action=action, since=since, until=until, outcome=outcome,
                    q=q, limit=1)
        return self._audit_rows(zone, shown, zone_column, tenant=tenant, action=action,
                                since=since, until=until, outcome=outcome, q=q)

    def _audit_rows(self, zone: str, shown: dt.tzinfo, zone_column: bool,
                    **filters: Any) -> Iterator[str]:
        local: tuple[str, ...] = ("time_local", "zone") if zone_column else (f"time_{zone}",)
        named: tuple[str, ...] = (zone,) if zone_column else ()
        header = ("id", "time_utc", *local, "tenant", "actor", "source_ip", "action",
                  "target", "outcome", "request_id", "details")
        offset = 0
        yield from csvio.write([header])
        while page := self.events(**filters, limit=PAGE, offset=offset):
            yield from csvio.write(
                (str(e.id), e.at.isoformat(), e.at.astimezone(shown).isoformat(), *named,
                 e.tenant or "", e.actor, e.source_ip or "", e.action, e.target, e.outcome,
                 e.request_id or "", json.dumps(e.details, ensure_ascii=False))
                for e in page)
            offset += len(page)

    def counts(self) -> dict[str, int]:
        """How many events of each action the log holds (issuances, revocations, ...)."""
        with self.database.reading() as session:
            return {str(action): int(n) for action, n in session.execute(
                select(AuditEvent.action, func.count()).group_by(AuditEvent.action))}

    def verify(self) -> AuditCheck:
        """Walk every chain (the operator's, each tenant's) from its start, or from its
        retention anchor. One read: the chains are checked at one moment."""
        with self.database.reading() as session:
            names: dict[int, str] = {
                i: n for i, n in session.execute(select(Tenant.id, Tenant.name))}
            found = []
            for chain in audit.chains(session):
                mine = AuditEvent.chain == chain
                total = session.scalar(select(func.count()).where(mine)) or 0
                head = session.scalar(select(AuditEvent.hash).where(mine)
                                      .order_by(AuditEvent.id.desc()).limit(1))
                anchor = audit.anchor_of(session, chain)
                broken = audit.verify(session.scalars(
                    select(AuditEvent).where(mine).order_by(AuditEvent.id)
                    .execution_options(yield_per=PAGE)), anchor=anchor, chain=chain)
                found.append(ChainCheck(
                    tenant=None if chain == audit.OPERATOR else names.get(chain, f"#{chain}"),
                    events=total, head=head, broken=broken,
                    removed=anchor.removed if anchor else 0,
                    first_id=anchor.first_id if anchor else None))
            return AuditCheck(chains=found)

    def prune(self, *, actor: audit.Actor = audit.CLI_ACTOR) -> int:
        """Apply ``TEGATA_AUDIT_RETENTION_DAYS``: remove the older events of every chain,
        one short transaction per chain; how many went."""
        days = self.settings.audit_retention_days
        if days == 0:
            return 0
        now = self.clock.now()
        before = now - dt.timedelta(days=days)
        # only chains with an event to remove (index on at)
        with self.database.reading() as session:
            chains = sorted(session.scalars(select(AuditEvent.chain).distinct()
                                            .where(AuditEvent.at < before)))
        removed = 0
        for chain in chains:
            with self.database.transaction() as session:
                removed += audit.prune(session, actor, chain=chain, before=before, now=now)
        return removed


def _view(event: AuditEvent, tenant: str | None) -> EventView:
    return EventView(id=event.id, at=event.at, tenant=tenant, actor=event.actor,
                     source_ip=event.source_ip, action=event.action, target=event.target,
                     outcome=event.outcome, request_id=event.request_id,
                     details=json.loads(event.details))


def _filtered(session: Session, query: _Query, *, tenant: str | None,
              action: str | None, since: dt.datetime | None, until: dt.datetime | None,
              outcome: str | None, q: str | None) -> _Query:
    """``query`` narrowed by every filter given, each checked first (InvalidInput)."""
    if tenant is not None:
        query = query.where(AuditEvent.tenant_id == queries.tenant(session, tenant).id)
    if action is not None:
        query = query.where(AuditEvent.action == _action(action))
    if outcome is not None:
        query = query.where(AuditEvent.outcome == _outcome(outcome))
    if since is not None:
        query = query.where(AuditEvent.at >= _aware(since, "since"))
    if until is not None:
        query = query.where(AuditEvent.at < _aware(until, "until"))
    if q:
        if len(q) > MAX_SEARCH:
            raise InvalidInput(f"the search is longer than {MAX_SEARCH} characters", field="q")
        # as the users' search: no control characters (PostgreSQL text cannot hold a NUL: the
        # query would fail as a storage error), NFC as names are stored
        needle = validate.display_text(q, field="q", limit=MAX_SEARCH).lower()
        # lower() on both sides: alike on SQLite and PostgreSQL for ASCII (Japanese has no case)
        query = query.where(or_(
            func.lower(AuditEvent.actor).contains(needle, autoescape=True),
            func.lower(AuditEvent.target).contains(needle, autoescape=True)))
    return query


def _outcome(outcome: str) -> str:
    if outcome not in OUTCOMES:
        raise InvalidInput(f"outcome {outcome[:16]!r} is not one of {', '.join(OUTCOMES)}",
                           field="outcome")
    return outcome


def _action(action: str) -> str:
    if not ACTION.fullmatch(action):
        raise InvalidInput(f"action {action[:64]!r} is not an action name "
                           "(like cert.issue)", field="action")
    return action


def _aware(moment: dt.datetime, field: str) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidInput(f"{field} {moment.isoformat()} names no zone: add Z or +09:00",
                           field=field)
    return moment
