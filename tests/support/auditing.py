"""What the audit log holds, read straight from its table."""

from __future__ import annotations

from sqlalchemy import select

from ca.db.models import AuditEvent
from ca.service import Service


def actions(service: Service) -> list[str]:
    """Every audit event's action, oldest first."""
    with service.database.reading() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
