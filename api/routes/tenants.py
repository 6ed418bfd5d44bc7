"""Tenants and their CA certificates; helpers shared by the tenant-scoped routers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from api.auth import requires
from api.clientip import client_ip
from api.problems import responses
from api.schemas import (
    CAOut,
    DefaultValidityIn,
    DefaultValidityOut,
    GenerationOut,
    P12ProfileIn,
    P12ProfileOut,
    RolloverIn,
    TenantIn,
    TenantOut,
    TenantSettingsOut,
    TimezoneIn,
    TimezoneOut,
    UpnSuffixIn,
    UpnSuffixOut,
)
from ca import present
from ca.audit import Actor
from ca.service import Principal, Service

router = APIRouter(prefix="/api/v1", tags=["tenants"])

COMMON = (400, 401, 403, 404)


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def actor_of(request: Request) -> Actor:
    return principal_of(request).actor(
        source_ip=client_ip(request),
        request_id=getattr(request.state, "request_id", None))


@router.get("/tenants", dependencies=[requires("operator")], response_model=list[str],
            responses=responses(401, 403))
def list_tenants(request: Request) -> list[str]:
    """Every tenant's name."""
    return service_of(request).hierarchy.list_tenants()


@router.post("/tenants", dependencies=[requires("operator")], response_model=TenantOut,
             status_code=201, responses=responses(400, 401, 403, 409, 422))
async def create_tenant(request: Request, body: TenantIn) -> TenantOut:
    """A new tenant with its own issuing CA signed by the root."""
    view = await run_in_threadpool(
        service_of(request).hierarchy.create_tenant, body.name, display_name=body.display_name,
        ca_key_type=body.key_type, p12_profile=body.p12_profile,
        pkcs11_token=body.pkcs11_token, actor=actor_of(request))
    return TenantOut.model_validate({"name": body.name, "issuing_ca": present.ca(view)})


@router.get("/tenants/{tenant}/ca",
            dependencies=[requires("operator", "admin", "user", "gateway")],
            response_model=list[CAOut], responses=responses(*COMMON))
def tenant_ca(request: Request, tenant: str) -> list[dict[str, object]]:
    """The tenant's CA certificates in chain order: its issuing CA, then the root."""
    chain = present.ca_chain(service_of(request).hierarchy.ca_certificates(tenant))
    return [present.ca(v) for v in chain]


@router.post("/tenants/{tenant}/ca/rollover", dependencies=[requires("operator")],
             response_model=CAOut, status_code=201, responses=responses(*COMMON))
def rollover(request: Request, tenant: str, body: RolloverIn) -> dict[str, object]:
    """A new issuing CA for the tenant (a new key, the same name, its own CRL URL), signed
    by the root: it issues from now on; the older ones stay in service for what they
    issued (``tegata ca rollover``)."""
    return present.ca(service_of(request).hierarchy.rollover(
        tenant, key_type=body.key_type, actor=actor_of(request)))


@router.post("/ca/rollover", dependencies=[requires("operator")], response_model=CAOut,
             status_code=201, responses=responses(400, 401, 403))
def rollover_root(request: Request, body: RolloverIn) -> dict[str, object]:
    """The next root (its name with " G<n>") with link certificates both ways; the issuing
    CAs move under it at their next rollover (``tegata ca rollover --root``)."""
    return present.ca(service_of(request).hierarchy.rollover_root(
        key_type=body.key_type, actor=actor_of(request)))


@router.get("/ca/links", dependencies=[requires("operator")], response_model=list[CAOut],
            responses=responses(401, 403))
def links(request: Request) -> list[dict[str, object]]:
    """The link certificates of the root rollovers (``tegata ca show --links``)."""
    return [present.ca(v) for v in service_of(request).hierarchy.links()]


@router.get("/ca/generations", dependencies=[requires("operator")],
            response_model=list[GenerationOut], responses=responses(401, 403))
def generations(request: Request) -> list[dict[str, object]]:
    """Every CA of every generation, retired ones too, with its live certificates
    (``tegata ca show --all``)."""
    return [present.generation(v) for v in service_of(request).hierarchy.generations()]


@router.get("/tenants/{tenant}/settings", dependencies=[requires("operator", "admin")],
            response_model=TenantSettingsOut, responses=responses(*COMMON))
def tenant_settings(request: Request, tenant: str) -> dict[str, object]:
    """The tenant's settings as they are: OCSP validity, the UPN suffix (``null``: no UPN),
    whether users may download their own certificate, the default PKCS#12 profile, the
    default validity (``tegata tenant show``)."""
    return present.tenant_settings(service_of(request).hierarchy.tenant_settings(tenant))


@router.put("/tenants/{tenant}/settings/upn-suffix", dependencies=[requires("operator", "admin")],
            response_model=UpnSuffixOut, responses=responses(*COMMON))
def set_upn_suffix(request: Request, tenant: str, body: UpnSuffixIn) -> UpnSuffixOut:
    """The DNS domain of the Windows UPN (otherName 1.3.6.1.4.1.311.20.2.3, ``<login>@suffix``)
    in the SAN of certificates issued from now on; ``null`` removes it. Certificates issued
    before keep what they carry."""
    made = service_of(request).links.set_upn_suffix(tenant, body.upn_suffix,
                                                    actor=actor_of(request))
    return UpnSuffixOut(tenant=made.tenant, upn_suffix=made.suffix)


@router.put("/tenants/{tenant}/settings/p12-profile", dependencies=[requires("operator", "admin")],
            response_model=P12ProfileOut, responses=responses(*COMMON))
def set_p12_profile(request: Request, tenant: str, body: P12ProfileIn) -> P12ProfileOut:
    """The tenant's default PKCS#12 profile (``compat`` or ``modern``): what a bundle of a
    certificate issued without a profile is made in, from the next download on (a
    download's ``?profile=`` and a certificate's own profile still win). Audited."""
    made = service_of(request).links.set_p12_profile(tenant, body.p12_profile,
                                                     actor=actor_of(request))
    return P12ProfileOut(tenant=made.tenant, p12_profile=made.profile.value)


@router.put("/tenants/{tenant}/settings/default-validity",
            dependencies=[requires("operator", "admin")], response_model=DefaultValidityOut,
            responses=responses(*COMMON))
def set_default_validity(request: Request, tenant: str,
                         body: DefaultValidityIn) -> DefaultValidityOut:
    """How long a certificate issued without a chosen expiry lasts (``P1Y`` by default;
    ``P90D``, ``P100Y``...), from the next issuance on. Audited."""
    made = service_of(request).hierarchy.set_default_validity(tenant, body.default_validity,
                                                               actor=actor_of(request))
    return DefaultValidityOut(tenant=tenant, default_validity=made)


@router.put("/tenants/{tenant}/settings/timezone",
            dependencies=[requires("operator", "admin")], response_model=TimezoneOut,
            responses=responses(*COMMON))
def set_timezone(request: Request, tenant: str, body: TimezoneIn) -> TimezoneOut:
    """The tenant's zone (``Asia/Tokyo``; new tenants get the server's default): where its
    dates are whole days unless a viewer chose another zone. Audited."""
    made = service_of(request).hierarchy.set_timezone(tenant, body.timezone,
                                                      actor=actor_of(request))
    return TimezoneOut(tenant=tenant, timezone=made)
