"""Request and response bodies."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantIn(Strict):
    name: str = Field(max_length=63, examples=["acme"])
    display_name: str | None = Field(default=None, max_length=64)
    key_type: Literal["ec-p384", "ec-p256", "rsa-3072", "rsa-4096"] = "ec-p384"


class CAOut(BaseModel):
    tenant: str | None
    kind: str
    subject: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    pem: str


class TenantOut(BaseModel):
    name: str
    issuing_ca: CAOut


class UserIn(Strict):
    login: str = Field(max_length=64, examples=["alice"])
    email: str = Field(max_length=254, examples=["alice@example.com"])
    display_name: str = Field(default="", max_length=200)
    kind: Literal["person", "service"] = "person"
    secure_access: bool = False


class UserOut(BaseModel):
    tenant: str
    login: str


class IssueIn(Strict):
    login: str = Field(max_length=64)
    expires: dt.date | None = Field(default=None, description="last day of validity, YYYY-MM-DD")
    timezone: str | None = Field(default=None, max_length=64, examples=["Asia/Tokyo"])


class CertificateOut(BaseModel):
    serial: str
    tenant: str
    login: str
    subject: str
    state: str
    not_before: dt.datetime
    not_after: dt.datetime
    expiry_date: dt.date
    expiry_zone: str
    fingerprint_sha256: str
    key_type: str
    source: str
    pem: str


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
