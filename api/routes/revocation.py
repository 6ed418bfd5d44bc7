"""Revoke, suspend, reinstate; and the CRLs gateways fetch."""

from __future__ import annotations

import re
from email.utils import format_datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict

from api.auth import public, requires
from api.problems import responses
from api.routes.certificates import cert_out
from api.routes.tenants import actor_of, service_of
from api.schemas import CertificateOut
from ca.errors import NotFound
from ca.reasons import RevocationReason
from ca.service import CrlView

router = APIRouter(tags=["revocation"])
ADMINS = requires("operator", "admin")
CERT = "/api/v1/tenants/{tenant}/certificates/{serial}"
COMMON = (400, 401, 403, 404, 422)
DER_CRL = "application/pkix-crl"  # RFC 2585
_CRL_NAME = re.compile(r"([a-z0-9][a-z0-9-]{0,62})\.(crl|pem)")


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


def _crl_headers(view: CrlView) -> dict[str, str]:
    return {"Cache-Control": "public, max-age=60, no-transform",
            "Last-Modified": format_datetime(view.made_at, usegmt=True),
            "Expires": format_datetime(view.next_update, usegmt=True),
            "ETag": f'"{view.number:X}"'}


@router.get("/crl/{name}", dependencies=[public()], response_class=Response,
            responses={200: {"content": {DER_CRL: {}, "application/x-pem-file": {}}},
                       **responses(404)})
def crl(request: Request, name: str,
        format: Annotated[Literal["der", "pem"] | None, Query()] = None) -> Response:
    """``<tenant>.crl`` (DER; ``?format=pem`` for PEM), ``root.crl``, ``<tenant>.pem``, and
    ``<tenant>-chain.pem``: the issuing CA's CRL and the root's, which nginx and HAProxy
    need together (a CRL for every CA in the chain)."""
    match = _CRL_NAME.fullmatch(name)
    if not match:
        raise NotFound("no such CRL")
    stem, suffix = match.groups()
    chain = suffix == "pem" and stem.endswith("-chain") and stem != "-chain"
    if chain:
        stem = stem.removesuffix("-chain")
    service = service_of(request)
    tenant = None if stem == "root" else stem
    if chain:
        if tenant is None:
            raise NotFound("no such CRL")
        both = service.crls.chain(tenant)
        headers = _crl_headers(both.first_to_expire)
        # changes with either CRL
        headers["ETag"] = f'"{both.own.number:X}-{both.root.number:X}"'
        headers["Last-Modified"] = format_datetime(
            max(both.own.made_at, both.root.made_at), usegmt=True)
        return Response(both.pem, media_type="application/x-pem-file", headers=headers)
    view = service.crls.current(tenant)
    if suffix == "pem" or format == "pem":
        return Response(view.pem, media_type="application/x-pem-file",
                        headers=_crl_headers(view))
    return Response(view.der, media_type=DER_CRL, headers=_crl_headers(view))
