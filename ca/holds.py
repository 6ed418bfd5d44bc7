"""The rule of the unlifted hold: a certificate is on hold (certificateHold, RFC 5280 5.3.1)
while one of its holds has not been lifted. Lifting records its instant, and a hold lifted at
any instant, ``now`` included, holds no more: whether a hold holds does not depend on the
time it is asked at. Holds are kept per cause (``HoldCause``): lifting one cause's hold never
lifts another's (SPEC, "Revocation, suspension and the grace period").

The Python form (on loaded rows) and the SQL form (SQLAlchemy expressions, for queries that
decide in the database) stand side by side; tests/integration/test_rule_agreement.py
evaluates both on the same rows and requires them to agree.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Exists, ScalarSelect, and_, exists, func, select

from ca.db.models import Certificate, Hold


class HoldCause(StrEnum):
    """Why a certificate is on hold: each cause is placed and lifted on its own."""

    MANUAL = "manual"
    SUBSCRIPTION = "subscription"
    PERMISSION = "permission"


# --- Python --------------------------------------------------------------------------------


def unlifted(hold: Hold, cause: HoldCause | None = None) -> bool:
    """The hold still holds (and is of ``cause``, when one is named)."""
    return hold.lifted_at is None and (cause is None or hold.cause == cause.value)


def on_hold(cert: Certificate, cause: HoldCause | None = None) -> bool:
    """The certificate has an unlifted hold (of ``cause``, when one is named)."""
    return any(unlifted(h, cause) for h in cert.holds)


def held_since(cert: Certificate) -> dt.datetime | None:
    """When the oldest unlifted hold was placed (the certificateHold entry's date), or None."""
    return min((h.placed_at for h in cert.holds if unlifted(h)), default=None)


# --- SQL -----------------------------------------------------------------------------------


def unlifted_filter(cause: HoldCause | None = None) -> ColumnElement[bool]:
    """SQL on ``Hold``: ``unlifted``."""
    still = Hold.lifted_at.is_(None)
    return still if cause is None else and_(still, Hold.cause == cause.value)


def hold_filter(cause: HoldCause | None = None, *,
                certificate_id: Any = Certificate.id) -> Exists:
    """SQL: ``on_hold``, correlated to ``certificate_id`` (``Certificate.id``, an alias's
    ``id``, or any expression that is a certificate's id)."""
    return exists().where(Hold.certificate_id == certificate_id, unlifted_filter(cause))


def held_since_column(*, certificate_id: Any = Certificate.id) -> ScalarSelect[dt.datetime]:
    """SQL: ``held_since``, correlated as ``hold_filter``."""
    return select(func.min(Hold.placed_at)).where(
        Hold.certificate_id == certificate_id, unlifted_filter()).scalar_subquery()
