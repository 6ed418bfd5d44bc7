"""GET /metrics for Prometheus (operator token: it names every tenant)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select

from api import metrics
from api.auth import requires
from api.problems import responses
from api.routes.tenants import service_of
from ca.db.models import AuditEvent, Authority, Crl, Tenant

router = APIRouter(tags=["health"])


@router.get("/metrics", dependencies=[requires("operator")], response_class=Response,
            responses={200: {"content": {"text/plain": {}}}, **responses(401, 403)})
def prometheus(request: Request) -> Response:
    service = service_of(request)
    now = service.now()
    with service.reading() as session:
        counts = dict(session.execute(select(AuditEvent.action, func.count())
                                      .group_by(AuditEvent.action)).all())
        newest = (select(Crl.authority_id, func.max(Crl.number).label("number"))
                  .group_by(Crl.authority_id).subquery())
        rows = session.execute(
            select(Tenant.name, Crl.this_update, Crl.next_update)
            .join(Authority, Authority.tenant_id == Tenant.id)
            .join(Crl, Crl.authority_id == Authority.id)
            .join(newest, (newest.c.authority_id == Crl.authority_id)
                  & (newest.c.number == Crl.number))
            .where(Authority.kind == "issuing")).all()
    crls = [(name, (now - this).total_seconds(), (nxt - now).total_seconds())
            for name, this, nxt in rows]
    return Response(metrics.render({str(k): int(v) for k, v in counts.items()}, crls),
                    media_type="text/plain; version=0.0.4")
