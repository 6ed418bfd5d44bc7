"""The rule of a certificate's effective state at an instant: ``revoked`` > ``suspended`` >
``expired`` > ``valid``, first match wins.

- revoked: a revocation is recorded (``revoked_at`` set), whatever its date. Revocation is
  final and takes effect when it is recorded: the CRL lists the certificate and OCSP
  answers ``revoked`` from then on (RFC 5280 5.1.2.6, revocationDate; RFC 6960 2.2), so a
  ``revoked_at`` after ``now`` (a clock stepped back) still means revoked; nothing here
  schedules a revocation.
- suspended: not revoked, and an unlifted hold (``ca.holds``), even past its expiry.
- expired: past ``not_after`` (``has_expired``, also what purges a key). The validity
  period includes ``notAfter`` itself (RFC 5280 4.1.2.5: "through"), so at ``now ==
  not_after`` a certificate is still valid.
- valid: none of these.

``live``: neither revoked nor expired (valid or on hold) — what a reissue, a retirement or a
subscription change acts on.

The Python form (``state_of``, ``has_expired``, ``is_live``, on loaded rows) and the SQL
form (``state_filter``, ``expired_filter``, ``live_filter``, SQLAlchemy expressions) stand
side by side; tests/integration/test_rule_agreement.py evaluates both on the same rows and
requires them to agree.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, not_

from ca import holds
from ca.db.models import Certificate
from ca.errors import InvalidInput

# the names, as the type the API declares (tests/unit/test_rule_names.py: the same as State's)
StateName = Literal["valid", "expired", "suspended", "revoked"]


class State(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


# --- Python --------------------------------------------------------------------------------


def state_of(cert: Certificate, *, now: dt.datetime) -> State:
    if cert.revoked_at is not None:
        return State.REVOKED
    if holds.on_hold(cert):
        return State.SUSPENDED
    if has_expired(cert, now=now):
        return State.EXPIRED
    return State.VALID


def has_expired(cert: Certificate, *, now: dt.datetime) -> bool:
    """Past its ``not_after`` (valid through that instant), whatever else it is."""
    return cert.not_after < now


def is_live(cert: Certificate, *, now: dt.datetime) -> bool:
    """Neither revoked nor expired: valid or on hold."""
    return cert.revoked_at is None and not has_expired(cert, now=now)


# --- SQL -----------------------------------------------------------------------------------


def state_filter(state: str, *, now: dt.datetime, certificate: Any = Certificate
                 ) -> ColumnElement[bool]:
    """SQL: ``state_of(...) == state``, on ``certificate`` (``Certificate`` or an alias)."""
    held = holds.hold_filter(certificate_id=certificate.id)
    unrevoked = certificate.revoked_at.is_(None)
    expired = expired_filter(now=now, certificate=certificate)
    filters: dict[str, ColumnElement[bool]] = {
        State.REVOKED.value: certificate.revoked_at.is_not(None),
        State.SUSPENDED.value: and_(unrevoked, held),
        State.EXPIRED.value: and_(unrevoked, not_(held), expired),
        State.VALID.value: and_(unrevoked, not_(held), not_(expired)),
    }
    if state not in filters:
        raise InvalidInput(f"state {state[:16]!r} is not one of {', '.join(filters)}",
                           field="state")
    return filters[state]


def expired_filter(*, now: dt.datetime, certificate: Any = Certificate
                   ) -> ColumnElement[bool]:
    """SQL: ``has_expired``."""
    expired: ColumnElement[bool] = certificate.not_after < now
    return expired


def live_filter(*, now: dt.datetime, certificate: Any = Certificate) -> ColumnElement[bool]:
    """SQL: ``is_live``."""
    return and_(certificate.revoked_at.is_(None),
                not_(expired_filter(now=now, certificate=certificate)))
