"""Request and response bodies."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from ca.profiles import CaKeyType, ClientKeyType
from ca.service.selection import UserStatus
from ca.x509.pkcs12 import ProfileName


class Strict(BaseModel):
    """A request body: no unknown field; its booleans and integers are declared StrictBool
    and StrictInt (a JSON true/false, a JSON integer: never "off", 1, "120" or 120.0)."""

    model_config = ConfigDict(extra="forbid")


def exactly_one(**ways: dict[str, Any]) -> dict[str, Any]:
    """JSON Schema for "give exactly one of these fields": each way maps a field to its
    schema when given; a field not given is absent, null, or (a flag) false."""
    absent = {name: {"const": False} if way.get("const") is True else {"type": "null"}
              for name, way in ways.items()}
    return {"oneOf": [{"required": [name], "properties": {**absent, name: way}}
                      for name, way in ways.items()]}


class TenantIn(Strict):
    name: str = Field(max_length=63, examples=["acme"])
    display_name: str | None = Field(default=None, max_length=64)
    key_type: CaKeyType = "ec-p384"
    p12_profile: ProfileName | None = Field(default=None, description=(
        "the tenant's default PKCS#12 profile; absent or null: compat"))
    pkcs11_token: str | None = Field(default=None, max_length=32, description=(
        "the label of the PKCS#11 token (of the server's module) to make the issuing CA's "
        "key in; absent or null: a key file"))


class CAOut(BaseModel):
    tenant: str | None
    kind: str
    subject: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    pem: str


class GenerationOut(CAOut):
    generation: int
    current: bool
    retired_at: dt.datetime | None
    live_certificates: int


class RolloverIn(Strict):
    key_type: CaKeyType | None = Field(default=None, description=(
        "the new issuing CA's key type; absent or null: the current one's"))


class TenantOut(BaseModel):
    name: str
    issuing_ca: CAOut


class UpnSuffixIn(Strict):
    # required, so that a body that forgets it never clears the setting; null clears it
    upn_suffix: str | None = Field(max_length=253, examples=["example.co.jp"], description=(
        "DNS domain (IDNA: Unicode or A-labels) for the Windows UPN <login>@suffix in "
        "certificates issued from now on; null: no UPN."))


class UpnSuffixOut(BaseModel):
    tenant: str
    upn_suffix: str | None


class P12ProfileIn(Strict):
    # required and never null: a body that forgets it changes nothing
    p12_profile: ProfileName = Field(examples=["modern"], description=(
        "the tenant's default PKCS#12 profile, for bundles of certificates issued without "
        "one (a download's own choice still wins)"))


class P12ProfileOut(BaseModel):
    tenant: str
    p12_profile: ProfileName


class DefaultValidityIn(Strict):
    # required: a body that forgets it changes nothing
    default_validity: str = Field(min_length=1, max_length=32, examples=["P1Y"], description=(
        "how long a certificate issued without a chosen expiry lasts, an ISO 8601 period of "
        "years, months and days (P1Y, P90D, P1Y6M, P100Y): the default expiry is today plus "
        "this in the issuing zone"))


class DefaultValidityOut(BaseModel):
    tenant: str
    default_validity: str


class TimezoneIn(Strict):
    # required: a body that forgets it changes nothing
    timezone: str = Field(min_length=1, max_length=64, examples=["Asia/Tokyo"], description=(
        "the tenant's zone, an IANA name: where its dates are whole days (expiry dates, audit "
        "filters) unless a viewer chose another"))


class TimezoneOut(BaseModel):
    tenant: str
    timezone: str


GroupName = Annotated[str, Field(min_length=1, max_length=100)]
Login = Annotated[str, Field(min_length=1, max_length=64)]


class UserIn(Strict):
    login: str = Field(min_length=1, max_length=64, examples=["alice"])
    email: str = Field(max_length=254, examples=["alice@example.com"])
    display_name: str = Field(default="", max_length=200)
    kind: Literal["person", "service"] = "person"
    secure_access: StrictBool = False
    groups: list[GroupName] = Field(default_factory=list, max_length=100)


class UserPatch(Strict):
    """Only the fields given change."""

    email: str | None = Field(default=None, max_length=254)
    display_name: str | None = Field(default=None, max_length=200)
    kind: Literal["person", "service"] | None = None
    secure_access: StrictBool | None = None
    groups: list[GroupName] | None = Field(default=None, max_length=100)


class UserOut(BaseModel):
    tenant: str
    login: str
    email: str
    display_name: str
    kind: str
    status: str
    secure_access: bool
    groups: list[str]
    certificate_status: str


class PermissionIn(Strict):
    logins: list[Login] = Field(min_length=1, max_length=10_000)
    allow: StrictBool


class GroupOut(BaseModel):
    name: str
    members: int


class ImportOut(BaseModel):
    dry_run: bool
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    errors: list[dict[str, str | int]]


class SelectionIn(Strict):
    """Exactly one of logins, group, unaffiliated or all; optionally a status filter."""

    model_config = ConfigDict(json_schema_extra=exactly_one(
        logins={"type": "array"}, group={"type": "string"}, unaffiliated={"const": True},
        all={"const": True}))

    logins: list[Login] | None = Field(default=None, max_length=10_000)
    group: GroupName | None = None
    unaffiliated: StrictBool = False
    all: StrictBool = False
    status: UserStatus | None = None


class BulkIssueIn(Strict):
    selection: SelectionIn
    best_effort: StrictBool = False
    expires: dt.date | None = None
    timezone: str | None = Field(default=None, max_length=64)
    reissue: Literal["keep", "revoke"] = "keep"
    key_type: ClientKeyType | None = None
    p12_profile: ProfileName | None = None


class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    total: int
    done: int
    result: dict[str, Any] | None
    error: str | None


class IssueIn(Strict):
    """Name one user (``login``) or several (``logins``); all are issued, or none."""

    model_config = ConfigDict(json_schema_extra=exactly_one(login={"type": "string"},
                                                            logins={"type": "array"}))

    login: str | None = Field(default=None, min_length=1, max_length=64, examples=["alice"])
    logins: list[Login] | None = Field(
        default=None, min_length=1, max_length=1000)
    expires: dt.date | None = Field(default=None, description="last day of validity, YYYY-MM-DD")
    timezone: str | None = Field(default=None, max_length=64, examples=["Asia/Tokyo"])
    reissue: Literal["keep", "revoke"] = Field(
        default="keep", description="revoke: the users' current certificates are revoked "
                                    "(superseded) in the same transaction")
    key_type: ClientKeyType | None = None
    csr: str | None = Field(default=None, min_length=1, max_length=65536,
                            description="PEM PKCS#10 request; only its public key is used")
    p12_profile: ProfileName | None = None

    @model_validator(mode="after")
    def _one_way_to_name_users(self) -> IssueIn:
        if (self.login is None) == (self.logins is None):
            raise ValueError("give either login or logins")
        return self

    def names(self) -> tuple[str, ...]:
        return (self.login,) if self.login is not None else tuple(self.logins or ())


class CertificateOut(BaseModel):
    serial: str
    tenant: str
    login: str
    subject: str
    state: str
    revoked_at: dt.datetime | None
    revocation_reason: str | None
    has_key_material: bool
    not_before: dt.datetime
    not_after: dt.datetime
    expiry_date: dt.date
    expiry_zone: str
    fingerprint_sha256: str
    key_type: str
    source: str
    pem: str


class IssuedOut(BaseModel):
    certificates: list[CertificateOut]


class TokenOut(BaseModel):
    """A token as listed (``ca.present.token``): never its text."""

    id: int
    name: str
    role: str
    tenant: str | None
    user: str | None
    prefix: str
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class OcspValidityIn(Strict):
    ocsp_validity_seconds: StrictInt = Field(ge=60, le=7 * 86400, examples=[300], description=(
        "seconds an OCSP answer is valid: nginx caches one that long, so a revocation "
        "reaches an nginx gateway within this (minus the 30 s answers are dated back)"))


class OcspValidityOut(BaseModel):
    tenant: str
    ocsp_validity_seconds: int


class TenantSettingsOut(BaseModel):
    tenant: str
    ocsp_validity_seconds: int
    upn_suffix: str | None
    user_download: bool
    p12_profile: ProfileName
    default_validity: str
    timezone: str  # where the tenant's dates are whole days


class WhoAmI(BaseModel):
    role: str
    tenant: str | None
    login: str | None
    name: str


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    database: str
    signer: str
    # what is wrong but does not stop serving: TEGATA_PUBLIC_BASE_URL is not the one the
    # newest CA was made with
    warnings: list[str] = []
