"""Revoke, suspend, reinstate: a certificate's revocation and holds (the CRLs that publish
them are served by ``api.routes.crl``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict

from api.auth import requires
from api.problems import responses
from api.routes.certificates import cert_out
from api.routes.tenants import actor_of, service_of
from api.schemas import CertificateOut
from ca.reasons import RevocationReason

router = APIRouter(tags=["revocation"])
ADMINS = requires("operator", "admin")
CERT = "/api/v1/tenants/{tenant}/certificates/{serial}"
COMMON = (400, 401, 403, 404, 422)


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: RevocationReason = "unspecified"


@router.post(f"{CERT}/revoke", dependencies=[ADMINS], response_model=CertificateOut,
             responses=responses(*COMMON))
def revoke(request: Request, tenant: str, serial: str, body: RevokeIn) -> CertificateOut:
    """Revoke for good; a lost device is ``keyCompromise``. Revoking again is harmless."""
    return cert_out(service_of(request).revocation.revoke(tenant, serial, reason=body.reason,
                                               actor=actor_of(request)))


@router.post(f"{CERT}/suspend", dependencies=[ADMINS], response_model=CertificateOut,
             responses=responses(*COMMON))
def suspend(request: Request, tenant: str, serial: str) -> CertificateOut:
    """Put on hold (certificateHold); ``reinstate`` undoes it."""
    return cert_out(service_of(request).revocation.suspend(tenant, serial, actor=actor_of(request)))


@router.post(f"{CERT}/reinstate", dependencies=[ADMINS], response_model=CertificateOut,
             responses=responses(*COMMON))
def reinstate(request: Request, tenant: str, serial: str) -> CertificateOut:
    """Lift a manual hold (holds for the subscription or the permission stay)."""
    return cert_out(service_of(request).revocation.reinstate(tenant, serial,
                                                             actor=actor_of(request)))
