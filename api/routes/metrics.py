"""GET /metrics for Prometheus (operator token: it names every tenant): the counters of
every worker of this host (``api.sharedmetrics``), a plain ``def`` as it reads their files."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api import metrics
from api.auth import requires
from api.problems import responses
from api.routes.tenants import service_of

router = APIRouter(tags=["health"])


@router.get("/metrics", dependencies=[requires("operator")], response_class=Response,
            responses={200: {"content": {"text/plain": {}}}, **responses(401, 403)})
def prometheus(request: Request) -> Response:
    service = service_of(request)
    totals = request.app.state.metrics_share.totals()  # every worker of this host
    return Response(metrics.render(service.audit.counts(), service.crls.ages(), totals),
                    media_type="text/plain; version=0.0.4")
