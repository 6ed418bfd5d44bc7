"""The status API for custom gateways: a certificate's state, and the reason relying parties
are told, by serial or SHA-256 fingerprint."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from api.auth import requires
from api.problems import responses
from api.routes.tenants import service_of
from ca.errors import InvalidInput

router = APIRouter(prefix="/api/v1", tags=["lifecycle"])
COMMON = (400, 401, 403, 404)


class StatusOut(BaseModel):
    serial: str
    fingerprint_sha256: str
    login: str
    state: str
    reason: str | None
    revoked_at: dt.datetime | None
    not_after: dt.datetime


@router.get("/tenants/{tenant}/status", dependencies=[requires("operator", "admin", "gateway")],
            response_model=StatusOut, responses=responses(*COMMON))
def certificate_status(
    request: Request, tenant: str,
    serial: Annotated[str | None, Query(max_length=64)] = None,
    sha256: Annotated[str | None, Query(max_length=95)] = None,
) -> StatusOut:
    """For custom gateways: a certificate's state by serial or SHA-256 fingerprint."""
    if (serial is None) == (sha256 is None):
        raise InvalidInput("give serial or sha256", field="serial")
    service = service_of(request)
    view = (service.certificates.get(serial, tenant=tenant) if serial is not None
            else service.certificates.by_fingerprint(tenant, sha256 or ""))
    return StatusOut(serial=view.serial, fingerprint_sha256=view.fingerprint_sha256,
                     login=view.login, state=view.state.value, reason=view.reported_reason,
                     revoked_at=view.revoked_at, not_after=view.not_after)
