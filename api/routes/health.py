"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.auth import public
from api.problems import problem, responses
from api.schemas import Health, Readiness
from ca.errors import CAError
from ca.service import Service

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[public()], response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get("/readyz", dependencies=[public()], response_model=Readiness,
            responses=responses(503))
def readyz(request: Request) -> Readiness | JSONResponse:
    """The database answers, its schema is current, and the CA keys are loaded."""
    service: Service = request.app.state.service
    try:
        service.database.check()
    except CAError:
        return problem(503, "not-ready", "Not ready", "the database is not reachable or not "
                       "migrated")
    try:
        service.startup.load_signers()
    except CAError:
        return problem(503, "not-ready", "Not ready", "the CA keys are not loaded")
    drift = service.startup.public_base_url_drift()
    return Readiness(status="ready", database="ok", signer="ok",
                     warnings=[] if drift is None else [drift])
