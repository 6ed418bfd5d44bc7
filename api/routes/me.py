"""What the caller's token is."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.auth import requires
from api.problems import responses
from api.schemas import WhoAmI

router = APIRouter(prefix="/api/v1", tags=["tokens"])


@router.get("/whoami", dependencies=[requires("operator", "admin", "user", "gateway")],
            response_model=WhoAmI, responses=responses(401))
def whoami(request: Request) -> WhoAmI:
    p = request.state.principal
    return WhoAmI(role=p.role, tenant=p.tenant, login=p.login, name=p.name)
