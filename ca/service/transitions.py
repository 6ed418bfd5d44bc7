"""Status changes of certificates, built once: revoke, place a hold, lift a hold.

These take a session and never commit; the use cases that call them own the transaction.
A hold records its cause (manual, subscription, permission); lifting one cause never lifts
another. A revoked certificate never comes back, and its key material is purged.

Each change decides on a state read under the certificate's lock (``lock``), so two changes
at once apply one after the other whatever the interleaving: keyCompromise and superseded
sent together end keyCompromise with the first date, and two suspends make one hold.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ca import audit, holds
from ca.audit import Actor, Event
from ca.db.models import Certificate, Hold, KeyMaterial, User
from ca.errors import InvalidInput
from ca.holds import HoldCause
from ca.key_kept import key_kept
from ca.reasons import REASONS
from ca.service import crls, ocsp_feed
from ca.states import live_filter

_LOCKED = "tegata.locked_certificates"  # session.info: ids whose row this transaction holds


def lock(session: Session, cert: Certificate) -> None:
    """Hold the certificate's row until the transaction ends and read it, and its holds,
    afresh: the read that decides a status change happens under the lock.

    PostgreSQL: ``SELECT ... FOR UPDATE`` (a change committed meanwhile is waited for, then
    read). SQLite has no row locks: a write takes the database's one write lock, held to
    commit, and the reads after it see the newest state; so a write that changes nothing
    goes first."""
    held: set[int] = session.info.setdefault(_LOCKED, set())
    if cert.id in held:
        return
    if session.get_bind().dialect.name == "sqlite":
        session.execute(update(Certificate).where(Certificate.id == cert.id)
                        .values(id=Certificate.id)
                        .execution_options(synchronize_session=False))
    session.execute(select(Certificate).where(Certificate.id == cert.id).with_for_update()
                    .execution_options(populate_existing=True)).scalar_one()
    session.scalars(select(Hold).where(Hold.certificate_id == cert.id)
                    .execution_options(populate_existing=True)).all()
    session.expire(cert, ["holds"])  # reloaded with any hold placed meanwhile
    held.add(cert.id)


def purge_key_material(session: Session, cert: Certificate, *, now: dt.datetime) -> None:
    """Forget a certificate's private key and bundle password for good."""
    material = session.get(KeyMaterial, cert.id)
    if material is not None and material.purged_at is None:
        material.sealed_key = None
        material.sealed_password = None
        material.purged_at = now


def has_key_material(session: Session, cert: Certificate) -> bool:
    return key_kept(session.get(KeyMaterial, cert.id))


def revoke(session: Session, cert: Certificate, reason: str, actor: Actor, *, tenant: str,
           login: str, now: dt.datetime) -> bool:
    """Revoke for good. Revoking again changes nothing, except that a later keyCompromise is
    recorded over another reason (the first date stays). True when something changed."""
    if reason not in REASONS:
        raise InvalidInput(f"reason {reason[:32]!r} is not one of {', '.join(REASONS)}",
                           field="reason")
    if _revoked_already(cert, reason):
        return False  # final either way: no need to wait for the lock
    lock(session, cert)
    if _revoked_already(cert, reason):
        return False
    if cert.revoked_at is not None:
        cert.revocation_reason = reason  # an upgrade to keyCompromise; the first date stays
    else:
        cert.revoked_at = now
        cert.revocation_reason = reason
    cert.crl_entry = crls.entry_of(cert)  # encoded once: every later CRL reuses it
    purge_key_material(session, cert, now=now)
    _published(session, cert, actor, Event(
        action="cert.revoke", target=f"{tenant}/{login}/{cert.serial}", tenant_id=cert.tenant_id,
        details={"reason": reason}), now=now)
    return True


def _revoked_already(cert: Certificate, reason: str) -> bool:
    """Revoked, and ``reason`` would change nothing: only keyCompromise is recorded over
    another reason."""
    return cert.revoked_at is not None and (
        reason != "keyCompromise" or cert.revocation_reason == "keyCompromise")


def place_hold(session: Session, cert: Certificate, cause: HoldCause, actor: Actor, *,
               tenant: str, login: str, now: dt.datetime) -> bool:
    """Suspend (certificateHold) for ``cause``; a second hold of the same cause is a no-op."""
    if cert.revoked_at is not None or holds.on_hold(cert, cause):
        return False  # revocation is final; a hold of this cause stays until lifted
    lock(session, cert)
    if cert.revoked_at is not None or holds.on_hold(cert, cause):
        return False
    hold = Hold(certificate_id=cert.id, cause=cause.value, placed_at=now)
    session.add(hold)
    cert.holds.append(hold)
    _published(session, cert, actor, Event(
        action="cert.suspend", target=f"{tenant}/{login}/{cert.serial}",
        tenant_id=cert.tenant_id, details={"cause": cause.value}), now=now)
    return True


def lift_hold(session: Session, cert: Certificate, cause: HoldCause, actor: Actor, *,
              tenant: str, login: str, now: dt.datetime) -> bool:
    """Lift the hold of ``cause`` only; holds of other causes stay."""
    if not holds.on_hold(cert, cause):
        return False
    lock(session, cert)
    lifted = False
    for hold in cert.holds:
        if holds.unlifted(hold, cause):
            hold.lifted_at = now
            lifted = True
    if lifted:
        _published(session, cert, actor, Event(
            action="cert.reinstate", target=f"{tenant}/{login}/{cert.serial}",
            tenant_id=cert.tenant_id, details={"cause": cause.value}), now=now)
    return lifted


def _published(session: Session, cert: Certificate, actor: Actor, event: Event, *,
               now: dt.datetime) -> None:
    """A status change (a revocation, a hold placed or lifted) reaches relying parties: the
    CA's CRL is made anew before the commit, the serial's OCSP answers are forgotten at it,
    and the change is audited."""
    crls.mark_dirty(session, cert.authority_id)
    ocsp_feed.mark(session, cert.authority_id, cert.serial)
    audit.record(session, actor, event, now=now)


def live_certificates(session: Session, user: User, *, now: dt.datetime) -> list[Certificate]:
    """The user's certificates that are neither revoked nor expired (valid or on hold),
    their rows locked at once in one order (PostgreSQL), before any audit record takes the
    chain's lock: a revocation of one of them at the same moment waits, never deadlocks."""
    return list(session.scalars(select(Certificate).where(
        Certificate.user_id == user.id, live_filter(now=now))
        .order_by(Certificate.id).with_for_update()))
