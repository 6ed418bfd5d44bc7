"""Revoke, suspend and reinstate: a certificate's status, changed under its lock.

Every change republishes the issuing CA's CRL in the same transaction
(``Database.transaction``), so what a gateway fetches is never behind the database; the CRLs
themselves are ``crl_publication``'s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import audit, serials
from ca.audit import Actor
from ca.clock import Clock
from ca.db import queries
from ca.db.models import Certificate, Hold, Tenant, User
from ca.errors import NotPermitted, StorageError
from ca.holds import HoldCause, unlifted_filter
from ca.service import transitions
from ca.service.plumbing import Database
from ca.service.views import CertificateView, cert_view

# PostgreSQL breaks a deadlock by failing one of the transactions (a revocation holding its
# certificate's row, waiting for the audit chain held by a bulk change waiting for that row);
# a status change is then simply made again, so that a revocation is never lost to it
DEADLOCK_ATTEMPTS = 3
IN_BATCH = 500  # values in one SQL IN list
_RETRYABLE = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
# a status change: (session, certificate, its user, its tenant, now) -> whether it changed
Change = Callable[[Session, Certificate, User, Tenant, dt.datetime], bool]


class Revocation:
    """Revoke, suspend, reinstate: a certificate's status, changed under its lock."""

    def __init__(self, *, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    def revoke(self, tenant: str, serial: str, *, reason: str = "unspecified",
               actor: Actor = audit.CLI_ACTOR) -> CertificateView:
        """Revoke for good (RFC 5280 reason). Again is harmless; only an upgrade to
        keyCompromise is recorded, and the first date stays."""
        return self._change(tenant, serial, actor, lambda s, c, u, t, now: transitions.revoke(
            s, c, reason, actor, tenant=t.name, login=u.login, now=now))

    def suspend(self, tenant: str, serial: str, *,
                actor: Actor = audit.CLI_ACTOR) -> CertificateView:
        """Put on hold (certificateHold) by hand; reversible with ``reinstate``."""
        def hold(session: Session, cert: Certificate, user: User, owner: Tenant,
                 now: dt.datetime) -> bool:
            if cert.revoked_at is not None:
                raise NotPermitted(f"certificate {cert.serial} is revoked: that is final")
            return transitions.place_hold(session, cert, HoldCause.MANUAL, actor,
                                          tenant=owner.name, login=user.login, now=now)
        return self._change(tenant, serial, actor, hold)

    def reinstate(self, tenant: str, serial: str, *,
                  actor: Actor = audit.CLI_ACTOR) -> CertificateView:
        """Lift a manual hold. A hold for the subscription or a withdrawn permission stays
        until its own cause is resolved."""
        def lift(session: Session, cert: Certificate, user: User, owner: Tenant,
                 now: dt.datetime) -> bool:
            if cert.revoked_at is not None:
                raise NotPermitted(f"certificate {cert.serial} is revoked: it never comes back")
            return transitions.lift_hold(session, cert, HoldCause.MANUAL, actor, tenant=owner.name,
                                         login=user.login, now=now)
        return self._change(tenant, serial, actor, lift)

    def hold_causes(self, tenant: str, of: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Why each of these certificates of ``tenant`` is on hold: the causes of its
        unlifted holds, in the order they were placed (a serial not on hold is absent).
        ``reinstate`` lifts only the ``manual`` one."""
        wanted = sorted(set(map(serials.canonical, of)))
        found: dict[str, list[str]] = {}
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            for start in range(0, len(wanted), IN_BATCH):
                rows = session.execute(
                    select(Certificate.serial, Hold.cause)
                    .join(Hold, Hold.certificate_id == Certificate.id)
                    .where(Certificate.tenant_id == owner.id,
                           Certificate.serial.in_(wanted[start:start + IN_BATCH]),
                           unlifted_filter())
                    .order_by(Hold.placed_at, Hold.id))
                for serial, cause in rows:
                    if cause not in found.setdefault(serial, []):
                        found[serial].append(cause)
        return {serial: tuple(causes) for serial, causes in found.items()}

    def _change(self, tenant: str, serial: str, actor: Actor,
                change: Change) -> CertificateView:
        canonical = serials.canonical(serial)
        now = self.clock.now()
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                with self.database.transaction() as session:
                    owner = queries.tenant(session, tenant)
                    cert = queries.certificate(session, owner, canonical)
                    user = session.get(User, cert.user_id)
                    assert user is not None
                    # the checks below (revoked? on hold?) and the change read the state
                    # under the certificate's lock: a change at the same moment is waited for
                    transitions.lock(session, cert)
                    change(session, cert, user, owner, now)  # a change republishes at commit
                    has_key = cert.revoked_at is None and transitions.has_key_material(session,
                                                                                       cert)
                    return cert_view(cert, owner.name, user.login, now=now,
                                     has_key_material=has_key)
            except StorageError as exc:
                if attempt == DEADLOCK_ATTEMPTS or not _deadlocked(exc):
                    raise
        raise AssertionError("unreachable")


def _deadlocked(exc: StorageError) -> bool:
    """The database gave up the transaction to break a deadlock (or a serialisation
    conflict): trying again is safe, since nothing of it was committed."""
    orig = getattr(exc.__cause__, "orig", None)
    return getattr(orig, "sqlstate", None) in _RETRYABLE
