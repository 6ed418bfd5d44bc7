"""Status changes of certificates, built once: revoke, place a hold, lift a hold.

These take a session and never commit; the use cases that call them own the transaction.
A hold records its cause (manual, subscription, permission); lifting one cause never lifts
another. A revoked certificate never comes back, and its key material is purged.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import audit
from ca.audit import Actor, Event
from ca.db.models import Certificate, Hold, KeyMaterial, User
from ca.errors import InvalidInput
from ca.service import crls
from ca.states import HoldCause

# RFC 5280, 5.3.1 reason codes that Tegata records (certificateHold is a hold, not a reason)
REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded",
           "cessationOfOperation", "privilegeWithdrawn")


def purge_key_material(session: Session, cert: Certificate, *, now: dt.datetime) -> None:
    """Forget a certificate's private key and bundle password for good."""
    material = session.get(KeyMaterial, cert.id)
    if material is not None and material.purged_at is None:
        material.sealed_key = None
        material.sealed_password = None
        material.purged_at = now


def has_key_material(session: Session, cert: Certificate) -> bool:
    material = session.get(KeyMaterial, cert.id)
    return material is not None and material.sealed_key is not None


def revoke(session: Session, cert: Certificate, reason: str, actor: Actor, *, tenant: str,
           login: str, now: dt.datetime) -> bool:
    """Revoke for good. Revoking again changes nothing, except that a later keyCompromise is
    recorded over another reason (the first date stays). True when something changed."""
    if reason not in REASONS:
        raise InvalidInput(f"reason {reason[:32]!r} is not one of {', '.join(REASONS)}",
                           field="reason")
    if cert.revoked_at is not None:
        if reason != "keyCompromise" or cert.revocation_reason == "keyCompromise":
            return False
        cert.revocation_reason = reason
    else:
        cert.revoked_at = now
        cert.revocation_reason = reason
    purge_key_material(session, cert, now=now)
    crls.mark_dirty(session, cert.authority_id)
    audit.record(session, actor, Event(
        action="cert.revoke", target=f"{tenant}/{login}/{cert.serial}", tenant_id=cert.tenant_id,
        details={"reason": reason}), now=now)
    return True


def place_hold(session: Session, cert: Certificate, cause: HoldCause, actor: Actor, *,
               tenant: str, login: str, now: dt.datetime) -> bool:
    """Suspend (certificateHold) for ``cause``; a second hold of the same cause is a no-op."""
    if cert.revoked_at is not None or any(
            h.cause == cause.value and h.lifted_at is None for h in cert.holds):
        return False
    hold = Hold(certificate_id=cert.id, cause=cause.value, placed_at=now)
    session.add(hold)
    cert.holds.append(hold)
    crls.mark_dirty(session, cert.authority_id)
    audit.record(session, actor, Event(
        action="cert.suspend", target=f"{tenant}/{login}/{cert.serial}",
        tenant_id=cert.tenant_id, details={"cause": cause.value}), now=now)
    return True


def lift_hold(session: Session, cert: Certificate, cause: HoldCause, actor: Actor, *,
              tenant: str, login: str, now: dt.datetime) -> bool:
    """Lift the hold of ``cause`` only; holds of other causes stay."""
    lifted = False
    for hold in cert.holds:
        if hold.cause == cause.value and hold.lifted_at is None:
            hold.lifted_at = now
            lifted = True
    if lifted:
        crls.mark_dirty(session, cert.authority_id)
        audit.record(session, actor, Event(
            action="cert.reinstate", target=f"{tenant}/{login}/{cert.serial}",
            tenant_id=cert.tenant_id, details={"cause": cause.value}), now=now)
    return lifted


def live_certificates(session: Session, user: User, *, now: dt.datetime) -> list[Certificate]:
    """The user's certificates that are neither revoked nor expired (valid or on hold)."""
    return list(session.scalars(select(Certificate).where(
        Certificate.user_id == user.id, Certificate.revoked_at.is_(None),
        Certificate.not_after >= now)))
