"""Reading the audit log: list with filters, export, and verify the hash chain."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from ca import audit, csvio
from ca.db import queries
from ca.db.models import AuditEvent, Tenant
from ca.service.core import ServiceCore

PAGE = 1000


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


class AuditUseCases(ServiceCore):
    def audit_events(self, *, tenant: str | None = None, action: str | None = None,
                     since: dt.datetime | None = None, until: dt.datetime | None = None,
                     limit: int = 1000, offset: int = 0) -> list[EventView]:
        """Events, oldest first; a tenant's admin passes their tenant and sees only it."""
        with self.reading() as session:
            query = select(AuditEvent, Tenant.name).outerjoin(
                Tenant, AuditEvent.tenant_id == Tenant.id)
            if tenant is not None:
                query = query.where(AuditEvent.tenant_id == queries.tenant(session, tenant).id)
            if action is not None:
                query = query.where(AuditEvent.action == action)
            if since is not None:
                query = query.where(AuditEvent.at >= since)
            if until is not None:
                query = query.where(AuditEvent.at < until)
            rows = session.execute(query.order_by(AuditEvent.id).offset(max(0, offset))
                                   .limit(max(1, min(limit, 10_000)))).all()
            return [_view(event, name) for event, name in rows]

    def export_audit_csv(self, *, tenant: str | None = None, zone: str = "UTC") -> Iterator[str]:
        """Every event as CSV, times in UTC and in ``zone`` (e.g. Asia/Tokyo)."""
        from ca import expiry

        shown = expiry.zone(zone)
        header = ("id", "time_utc", f"time_{zone}", "tenant", "actor", "source_ip", "action",
                  "target", "outcome", "request_id", "details")
        offset = 0
        yield from csvio.write([header])
        while page := self.audit_events(tenant=tenant, limit=PAGE, offset=offset):
            yield from csvio.write(
                (str(e.id), e.at.isoformat(), e.at.astimezone(shown).isoformat(),
                 e.tenant or "", e.actor, e.source_ip or "", e.action, e.target, e.outcome,
                 e.request_id or "", json.dumps(e.details, ensure_ascii=False))
                for e in page)
            offset += len(page)

    def event_counts(self) -> dict[str, int]:
        """How many events of each action the log holds (issuances, revocations, ...)."""
        with self.reading() as session:
            return {str(action): int(n) for action, n in session.execute(
                select(AuditEvent.action, func.count()).group_by(AuditEvent.action))}

    def verify_audit(self) -> tuple[int, audit.Break | None]:
        """How many events there are, and the first break in the chain if there is one."""
        with self.reading() as session:
            total = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
            broken = audit.verify(session.scalars(
                select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=PAGE)))
            return total, broken


def _view(event: AuditEvent, tenant: str | None) -> EventView:
    return EventView(id=event.id, at=event.at, tenant=tenant, actor=event.actor,
                     source_ip=event.source_ip, action=event.action, target=event.target,
                     outcome=event.outcome, request_id=event.request_id,
                     details=json.loads(event.details))
