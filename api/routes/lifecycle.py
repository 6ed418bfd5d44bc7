"""Subscriptions, the lifecycle job, and the status API for custom gateways."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api.auth import requires
from api.problems import responses
from api.routes.tenants import actor_of, service_of
from ca.errors import InvalidInput
from ca.service import SubscriptionView

router = APIRouter(prefix="/api/v1", tags=["lifecycle"])
COMMON = (400, 401, 403, 404)


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ends: dt.date | None = Field(description="last day of service; null: open-ended")
    timezone: str | None = Field(default=None, max_length=64)
    grace_days: int | None = Field(default=None, ge=0, le=3650)
    kind: str = Field(default="contract", pattern="^(trial|contract|none)$")
    # a destructive confirmation: only a JSON true, never "on", "1" or 1
    allow_past: StrictBool = Field(default=False, description=(
        "accept an end already past (JSON true or false only): with a grace period, every "
        "certificate is suspended now and revoked that many days later unless the end is "
        "corrected; with 0 grace days, every certificate is revoked and its key purged now. "
        "Without it such an end is refused (400)"))


class SubscriptionOut(BaseModel):
    tenant: str
    kind: str
    ends_on: dt.date | None
    timezone: str | None
    ends_at: dt.datetime | None
    grace_days: int
    grace_ends_at: dt.datetime | None
    suspended_at: dt.datetime | None = Field(
        description="when the subscription hold was published; null while active")
    state: str


class LifecycleOut(BaseModel):
    suspended: int
    reinstated: int
    revoked: int
    purged: int
    crls: int
    audit_pruned: int
    failed: int  # tenants and CAs whose step failed (logged); retried at the next run


class StatusOut(BaseModel):
    serial: str
    fingerprint_sha256: str
    login: str
    state: str
    reason: str | None
    revoked_at: dt.datetime | None
    not_after: dt.datetime


def _out(view: SubscriptionView) -> SubscriptionOut:
    return SubscriptionOut(tenant=view.tenant, kind=view.kind, ends_on=view.ends_on,
                           timezone=view.zone, ends_at=view.ends_at,
                           grace_days=view.grace_days, grace_ends_at=view.grace_ends_at,
                           suspended_at=view.suspended_at, state=view.state)


@router.get("/tenants/{tenant}/subscription", dependencies=[requires("operator", "admin")],
            response_model=SubscriptionOut, responses=responses(*COMMON))
def get_subscription(request: Request, tenant: str) -> SubscriptionOut:
    return _out(service_of(request).lifecycle.get_subscription(tenant))


@router.put("/tenants/{tenant}/subscription", dependencies=[requires("operator")],
            response_model=SubscriptionOut, responses=responses(*COMMON))
def set_subscription(request: Request, tenant: str, body: SubscriptionIn) -> SubscriptionOut:
    """Set the trial or contract end (end of that day in the zone) and the grace days. An end
    already past is refused unless ``allow_past`` is true."""
    return _out(service_of(request).lifecycle.set_subscription(
        tenant, ends=body.ends, zone=body.timezone, grace_days=body.grace_days,
        kind=body.kind if body.ends else "none", allow_past=body.allow_past,
        actor=actor_of(request)))


@router.post("/lifecycle/run", dependencies=[requires("operator")],
             response_model=LifecycleOut, responses=responses(401, 403, 409))
def run_lifecycle(request: Request) -> LifecycleOut:
    """Apply due transitions now (the server also does this every minute); 409 while
    another run (another process or replica) is in progress."""
    report = service_of(request).lifecycle.run()
    return LifecycleOut(**report.__dict__)


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
    reason = view.revocation_reason or ("certificateHold" if view.state.value == "suspended"
                                        else None)
    return StatusOut(serial=view.serial, fingerprint_sha256=view.fingerprint_sha256,
                     login=view.login, state=view.state.value, reason=reason,
                     revoked_at=view.revoked_at, not_after=view.not_after)
