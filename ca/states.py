"""A certificate's effective state, derived from its record at a given instant (pure)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from ca.db.models import Certificate


class State(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class HoldCause(StrEnum):
    MANUAL = "manual"
    SUBSCRIPTION = "subscription"
    PERMISSION = "permission"


def state_of(cert: Certificate, *, now: dt.datetime) -> State:
    if cert.revoked_at is not None and cert.revoked_at <= now:
        return State.REVOKED
    if any(h.lifted_at is None for h in cert.holds):
        return State.SUSPENDED
    if cert.not_after < now:
        return State.EXPIRED
    return State.VALID
