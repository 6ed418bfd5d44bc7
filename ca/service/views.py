"""What the use cases give back: views, never ORM rows (what they take: ``requests``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca import serials
from ca.audit import Actor
from ca.db.models import Authority, Certificate
from ca.states import State, state_of

DEFAULT_TENANT = "default"


class _Pem:
    """The PEM form of a view's DER certificate, made when asked for."""

    der: bytes

    @property
    def pem(self) -> str:
        return x509.load_der_x509_certificate(self.der).public_bytes(
            serialization.Encoding.PEM).decode()


@dataclass(frozen=True, kw_only=True)
class CertificateView(_Pem):
    serial: str
    tenant: str
    login: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    expiry_date: dt.date
    expiry_zone: str
    state: State
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    fingerprint_sha256: str
    key_type: str
    source: str
    has_key_material: bool
    der: bytes
    p12_profile: str | None = None  # chosen at issuance (None: the tenant's default applies)

    @property
    def reported_reason(self) -> str | None:
        """The reason relying parties are told, as the CRL and OCSP tell it: a suspension
        is a revocation with reason certificateHold (RFC 5280, 5.3.1), lifted later."""
        if self.revocation_reason is not None:
            return self.revocation_reason
        return "certificateHold" if self.state is State.SUSPENDED else None


@dataclass(frozen=True, kw_only=True)
class BulkResult:
    """What a bulk issuance did: the certificates, and each user refused with the reason."""

    issued: list[CertificateView]
    failures: list[tuple[str, str]]


@dataclass(frozen=True, kw_only=True)
class TenantSettings:
    """What a tenant's administrator sets: OCSP validity, the UPN suffix (None: certificates
    carry no UPN), whether users may download their own certificate, the default PKCS#12
    profile, the default validity of new certificates; and the tenant's zone (dates are
    shown in it unless the viewer chose another)."""

    tenant: str
    display_name: str
    ocsp_validity_seconds: int
    upn_suffix: str | None
    user_download: bool
    p12_profile: str  # the default PKCS#12 profile of the tenant's bundles
    default_validity: str  # ISO 8601 period: P1Y, P90D, P100Y
    timezone: str


@dataclass(frozen=True, kw_only=True)
class CAView(_Pem):
    tenant: str | None
    kind: str
    subject: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    der: bytes


@dataclass(frozen=True, kw_only=True)
class GenerationView(CAView):
    """A CA of ``tegata ca show --all``: its generation, whether it is the one that issues
    (``current``; the root in service), retired, and how many certificates it signed are
    still live (neither revoked nor expired)."""

    generation: int
    current: bool
    retired_at: dt.datetime | None
    live: int


@dataclass(frozen=True, kw_only=True)
class Bundle:
    """A user's zip: ``<login>.p12`` and ``<login>-password.txt``."""

    filename: str
    content: bytes = field(repr=False)  # the PKCS#12 and its password
    serial: str


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who a token speaks for."""

    token_id: int
    name: str
    role: str
    tenant: str | None
    login: str | None
    timezone: str | None

    def actor(self, *, source_ip: str | None = None, request_id: str | None = None) -> Actor:
        return Actor(name=f"token:{self.token_id}:{self.name}", source_ip=source_ip,
                     request_id=request_id)


@dataclass(frozen=True, kw_only=True)
class TokenView:
    id: int
    name: str
    role: str
    tenant: str | None
    login: str | None
    prefix: str
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None


def ca_view(row: Authority, tenant: str | None) -> CAView:
    return CAView(tenant=tenant, kind=row.kind, subject=row.subject, serial=row.serial,
                  not_before=row.not_before, not_after=row.not_after, der=row.der)


def link_view(cert: x509.Certificate) -> CAView:
    """A link certificate of a root rollover, shown as a CA certificate (kind "link")."""
    return CAView(tenant=None, kind="link", subject=cert.subject.rfc4514_string(),
                  serial=serials.to_text(cert.serial_number),
                  not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                  der=cert.public_bytes(serialization.Encoding.DER))


def generation_view(row: Authority, tenant: str | None, *, current: bool,
                    live: int) -> GenerationView:
    return GenerationView(tenant=tenant, kind=row.kind, subject=row.subject, serial=row.serial,
                          not_before=row.not_before, not_after=row.not_after, der=row.der,
                          generation=row.generation, current=current,
                          retired_at=row.retired_at, live=live)


def cert_view(row: Certificate, tenant: str, login: str, *, now: dt.datetime,
              has_key_material: bool) -> CertificateView:
    return CertificateView(
        serial=row.serial, tenant=tenant, login=login, subject=row.subject,
        not_before=row.not_before, not_after=row.not_after, expiry_date=row.expiry_date,
        expiry_zone=row.expiry_zone, state=state_of(row, now=now), revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason, fingerprint_sha256=row.fingerprint_sha256,
        key_type=row.key_type, source=row.source, has_key_material=has_key_material,
        der=row.der, p12_profile=row.p12_profile)
