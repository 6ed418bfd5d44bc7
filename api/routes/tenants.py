"""Tenants, their CA certificates, users and certificates."""

from __future__ import annotations

from typing import Annotated, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import requires
from api.problems import responses
from api.schemas import CAOut, CertificateOut, IssueIn, TenantIn, TenantOut, UserIn, UserOut
from ca.service import CAView, CertificateView, IssueRequest, Principal, Service

router = APIRouter(prefix="/api/v1", tags=["tenants"])

COMMON = (400, 401, 403, 404)


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _principal(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def _actor(request: Request):  # type: ignore[no-untyped-def]
    return _principal(request).actor(
        source_ip=request.client.host if request.client else None,
        request_id=getattr(request.state, "request_id", None))


def _ca_out(view: CAView) -> CAOut:
    return CAOut(tenant=view.tenant, kind=view.kind, subject=view.subject, serial=view.serial,
                 not_before=view.not_before, not_after=view.not_after, pem=view.pem)


def _cert_out(view: CertificateView) -> CertificateOut:
    return CertificateOut(
        serial=view.serial, tenant=view.tenant, login=view.login, subject=view.subject,
        state=view.state.value, not_before=view.not_before, not_after=view.not_after,
        expiry_date=view.expiry_date, expiry_zone=view.expiry_zone,
        fingerprint_sha256=view.fingerprint_sha256, key_type=view.key_type, source=view.source,
        pem=view.pem)


@router.get("/tenants", dependencies=[requires("operator")], response_model=list[str],
            responses=responses(401, 403))
def list_tenants(request: Request) -> list[str]:
    """Every tenant's name."""
    return _service(request).list_tenants()


@router.post("/tenants", dependencies=[requires("operator")], response_model=TenantOut,
             status_code=201, responses=responses(400, 401, 403, 409, 422))
async def create_tenant(request: Request, body: TenantIn) -> TenantOut:
    """A new tenant with its own issuing CA signed by the root."""
    view = await run_in_threadpool(
        _service(request).create_tenant, body.name, display_name=body.display_name,
        key_type=body.key_type, actor=_actor(request))
    return TenantOut(name=body.name, issuing_ca=_ca_out(view))


@router.get("/tenants/{tenant}/ca",
            dependencies=[requires("operator", "admin", "user", "gateway")],
            response_model=list[CAOut], responses=responses(*COMMON))
def tenant_ca(request: Request, tenant: str) -> list[CAOut]:
    """The root and the tenant's issuing CA certificates."""
    return [_ca_out(v) for v in _service(request).ca_certificates(tenant)]


@router.post("/tenants/{tenant}/users", dependencies=[requires("operator", "admin")],
             response_model=UserOut, status_code=201, responses=responses(*COMMON, 409))
def add_user(request: Request, tenant: str, body: UserIn) -> UserOut:
    """A new user; ``secure_access`` allows certificates to be issued to them."""
    _service(request).add_user(tenant, body.login, email=body.email,
                               display_name=body.display_name, allow=body.secure_access,
                               kind=body.kind, actor=_actor(request))
    return UserOut(tenant=tenant, login=body.login)


@router.post("/tenants/{tenant}/certificates", dependencies=[requires("operator", "admin")],
             response_model=CertificateOut, status_code=201,
             responses=responses(*COMMON, 409, 422))
async def issue(request: Request, tenant: str, body: IssueIn) -> CertificateOut:
    """Issue a client certificate to a user, with a key generated here."""
    principal = _principal(request)
    view = await run_in_threadpool(
        _service(request).issue,
        IssueRequest(tenant=tenant, login=body.login, expires=body.expires,
                     timezone=body.timezone),
        admin_zone=principal.timezone, actor=_actor(request))
    return _cert_out(view)


@router.get("/tenants/{tenant}/certificates/{serial}",
            dependencies=[requires("operator", "admin")],
            response_model=CertificateOut,
            responses={**responses(*COMMON), 200: {"content": {
                "application/json": {}, "application/pem-certificate-chain": {},
                "application/pkix-cert": {}}}})
def show_certificate(request: Request, tenant: str, serial: str,
                     format: Annotated[Literal["json", "pem", "der"], Query()] = "json",
                     ) -> CertificateOut | Response:
    """One certificate as JSON, PEM or DER."""
    view = _service(request).get_certificate(serial, tenant=tenant)
    if format == "pem":
        return Response(view.pem, media_type="application/pem-certificate-chain")
    if format == "der":
        der = x509.load_der_x509_certificate(view.der).public_bytes(serialization.Encoding.DER)
        return Response(der, media_type="application/pkix-cert")
    return _cert_out(view)
