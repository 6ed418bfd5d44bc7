"""What the use cases take (frozen requests) and give back (views, never ORM rows)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca import validate
from ca.audit import Actor
from ca.db.models import Authority, Certificate
from ca.errors import InvalidInput
from ca.profiles import CA_KEY_TYPES, CLIENT_KEY_TYPES, ROOT
from ca.service.selection import Selection
from ca.states import State, state_of
from ca.x509.pkcs12 import Profile

DEFAULT_TENANT = "default"
MAX_LOGINS_PER_REQUEST = 1000
Reissue = Literal["keep", "revoke"]


@dataclass(frozen=True, kw_only=True)
class InitRequest:
    root_name: str = "Tegata Root CA"
    organization: str = "Tegata"
    key_type: str = "ec-p384"
    validity_years: int = ROOT.validity_years

    def __post_init__(self) -> None:
        if self.key_type not in CA_KEY_TYPES:
            raise InvalidInput(f"CA key type {self.key_type!r} is not one of "
                               f"{', '.join(CA_KEY_TYPES)}", field="key_type")
        if not 1 <= self.validity_years <= 50:
            raise InvalidInput(f"root validity {self.validity_years} years is outside 1..50",
                               field="validity_years")
        validate.display_text(self.root_name, field="root_name", limit=64)
        validate.display_text(self.organization, field="organization", limit=64)
        if not self.root_name.strip():
            raise InvalidInput("the root CA needs a name", field="root_name")


@dataclass(frozen=True, kw_only=True)
class IssueRequest:
    """Issue to one or more users of a tenant, with the same options for all.

    ``csr`` (PEM or DER) issues to a key made on the user's device; it needs exactly one
    login, and no key material is kept. Otherwise a key of ``key_type`` (default: the
    tenant's) is made here and sealed with a generated bundle password.
    """

    tenant: str
    logins: tuple[str, ...] | None = None
    selection: Selection | None = None
    best_effort: bool = False
    expires: dt.date | None = None
    timezone: str | None = None
    reissue: Reissue = "keep"
    key_type: str | None = None
    csr: bytes | None = None
    p12_profile: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.logins, str):
            object.__setattr__(self, "logins", (self.logins,))
        if (self.logins is None) == (self.selection is None):
            raise InvalidInput("name the users, or select them, not both", field="logins")
        if self.logins is not None:
            if not self.logins:
                raise InvalidInput("name at least one user", field="logins")
            if len(self.logins) > MAX_LOGINS_PER_REQUEST:
                raise InvalidInput(f"at most {MAX_LOGINS_PER_REQUEST} users by name per "
                                   "request; select a group or all for more", field="logins")
            if len({login.lower() for login in self.logins}) != len(self.logins):
                raise InvalidInput("a user is named twice", field="logins")
        if self.reissue not in ("keep", "revoke"):
            raise InvalidInput(f"reissue {str(self.reissue)[:16]!r} is not keep or revoke",
                               field="reissue")
        if self.key_type is not None and self.key_type not in CLIENT_KEY_TYPES:
            raise InvalidInput(f"key type {self.key_type[:16]!r} is not one of "
                               f"{', '.join(CLIENT_KEY_TYPES)}", field="key_type")
        if self.csr is not None:
            if self.logins is None or len(self.logins) != 1:
                raise InvalidInput("a CSR is for exactly one user", field="csr")
            if self.key_type is not None:
                raise InvalidInput("give a CSR or a key type, not both", field="key_type")
        if self.p12_profile is not None:
            Profile.parse(self.p12_profile)


@dataclass(frozen=True, kw_only=True)
class CertificateView:
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

    @property
    def pem(self) -> str:
        return x509.load_der_x509_certificate(self.der).public_bytes(
            serialization.Encoding.PEM).decode()

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
class CAView:
    tenant: str | None
    kind: str
    subject: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    der: bytes

    @property
    def pem(self) -> str:
        return x509.load_der_x509_certificate(self.der).public_bytes(
            serialization.Encoding.PEM).decode()


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


def cert_view(row: Certificate, tenant: str, login: str, *, now: dt.datetime,
              has_key_material: bool) -> CertificateView:
    return CertificateView(
        serial=row.serial, tenant=tenant, login=login, subject=row.subject,
        not_before=row.not_before, not_after=row.not_after, expiry_date=row.expiry_date,
        expiry_zone=row.expiry_zone, state=state_of(row, now=now), revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason, fingerprint_sha256=row.fingerprint_sha256,
        key_type=row.key_type, source=row.source, has_key_material=has_key_material,
        der=row.der)
