"""Revoke, suspend and reinstate; and the CRLs that publish those states.

Every change republishes the issuing CA's CRL in the same transaction, so what a gateway
fetches is never behind the database. CRL Numbers come from the issue time in
milliseconds, or the last number plus one if that is larger: strictly increasing across
restarts, several processes (the authority's row is locked while a CRL is made) and a
restored backup, without shared state outside the database.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ca import audit, renewal, serials
from ca.audit import Actor
from ca.db import queries
from ca.db.models import Authority, Certificate, Crl, Tenant, User
from ca.errors import NotPermitted, StorageError
from ca.holds import HoldCause
from ca.service import crls, status
from ca.service.core import ServiceCore
from ca.service.views import CertificateView, cert_view
from ca.x509 import crl as crl_builder

ROOT_CRL_VALIDITY = dt.timedelta(days=30)
# PostgreSQL breaks a deadlock by failing one of the transactions (a revocation holding its
# certificate's row, waiting for the audit chain held by a bulk change waiting for that row);
# a status change is then simply made again, so that a revocation is never lost to it
DEADLOCK_ATTEMPTS = 3
_RETRYABLE = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
# a status change: (session, certificate, its user, its tenant, now) -> whether it changed
Change = Callable[[Session, Certificate, User, Tenant, dt.datetime], bool]


@dataclass(frozen=True, kw_only=True)
class CrlView:
    number: int
    this_update: dt.datetime  # backdated by the clock-skew allowance
    next_update: dt.datetime
    der: bytes
    made_at: dt.datetime  # when it was really made: HTTP's Last-Modified

    @property
    def pem(self) -> str:
        return crl_builder.pem(self.der)


@dataclass(frozen=True, kw_only=True)
class CrlChain:
    """A tenant's CRL and the root's together: nginx and HAProxy need a CRL for every CA of
    the chain, in one file."""

    own: CrlView
    root: CrlView

    @property
    def pem(self) -> str:
        return self.own.pem + self.root.pem

    @property
    def first_to_expire(self) -> CrlView:
        return self.own if self.own.next_update <= self.root.next_update else self.root


class RevocationUseCases(ServiceCore):
    def revoke(self, tenant: str, serial: str, *, reason: str = "unspecified",
               actor: Actor = audit.CLI_ACTOR) -> CertificateView:
        """Revoke for good (RFC 5280 reason). Again is harmless; only an upgrade to
        keyCompromise is recorded, and the first date stays."""
        return self._change(tenant, serial, actor, lambda s, c, u, t, now: status.revoke(
            s, c, reason, actor, tenant=t.name, login=u.login, now=now))

    def suspend(self, tenant: str, serial: str, *,
                actor: Actor = audit.CLI_ACTOR) -> CertificateView:
        """Put on hold (certificateHold) by hand; reversible with ``reinstate``."""
        def hold(session: Session, cert: Certificate, user: User, owner: Tenant,
                 now: dt.datetime) -> bool:
            if cert.revoked_at is not None:
                raise NotPermitted(f"certificate {cert.serial} is revoked: that is final")
            return status.place_hold(session, cert, HoldCause.MANUAL, actor,
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
            return status.lift_hold(session, cert, HoldCause.MANUAL, actor, tenant=owner.name,
                                    login=user.login, now=now)
        return self._change(tenant, serial, actor, lift)

    def _change(self, tenant: str, serial: str, actor: Actor,
                change: Change) -> CertificateView:
        canonical = serials.canonical(serial)
        now = self.now()
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                with self.transaction() as session:
                    owner = queries.tenant(session, tenant)
                    cert = queries.certificate(session, owner, canonical)
                    user = session.get(User, cert.user_id)
                    assert user is not None
                    # the checks below (revoked? on hold?) and the change read the state
                    # under the certificate's lock: a change at the same moment is waited for
                    status.lock(session, cert)
                    change(session, cert, user, owner, now)  # a change republishes at commit
                    has_key = cert.revoked_at is None and status.has_key_material(session, cert)
                    return cert_view(cert, owner.name, user.login, now=now,
                                     has_key_material=has_key)
            except StorageError as exc:
                if attempt == DEADLOCK_ATTEMPTS or not _deadlocked(exc):
                    raise
        raise AssertionError("unreachable")

    # --- CRLs ------------------------------------------------------------------------------

    def current_crl(self, tenant: str | None) -> CrlView:
        """The newest CRL of a tenant's issuing CA (``None``: the root's), made now if there
        is none yet or if the newest is past half its validity.

        A read first: a gateway's fetch takes the write lock (SQLite's one writer) only on the
        rare fetch that has to make a CRL, never behind a bulk job's write.
        """
        now = self.now()
        with self.reading() as session:
            latest = crls.latest(session, self._crl_authority(session, tenant))
            if latest is not None and not renewal.stale(latest, now=now):
                return _crl_view(latest)
        with self.transaction() as session:
            authority = self._crl_authority(session, tenant)
            latest = crls.latest(session, authority)  # another writer may have made it
            if latest is None or renewal.stale(latest, now=now):
                latest = self._publish(session, authority, now=now)
            return _crl_view(latest)

    @staticmethod
    def _crl_authority(session: Session, tenant: str | None) -> Authority:
        return (queries.require_root(session) if tenant is None
                else queries.issuing(session, queries.tenant(session, tenant)))

    def crl_ages(self) -> list[tuple[str, float, float]]:
        """Per tenant: seconds since its newest CRL was made, and until its nextUpdate."""
        now = self.now()
        with self.reading() as session:
            newest = (select(Crl.authority_id, func.max(Crl.number).label("number"))
                      .group_by(Crl.authority_id).subquery())
            rows = session.execute(
                select(Tenant.name, Crl.this_update, Crl.next_update)
                .join(Authority, Authority.tenant_id == Tenant.id)
                .join(Crl, Crl.authority_id == Authority.id)
                .join(newest, (newest.c.authority_id == Crl.authority_id)
                      & (newest.c.number == Crl.number))
                .where(Authority.kind == "issuing")).all()
        return [(name, (now - this).total_seconds(), (nxt - now).total_seconds())
                for name, this, nxt in rows]

    def crl_chain(self, tenant: str, *, fresh: bool = False) -> CrlChain:
        """The tenant's CRL and the root's; ``fresh`` makes the tenant's anew first."""
        own = self.publish_crl(tenant) if fresh else self.current_crl(tenant)
        return CrlChain(own=own, root=self.current_crl(None))

    def publish_crl(self, tenant: str | None) -> CrlView:
        """Make a new CRL now."""
        now = self.now()
        with self.transaction() as session:
            return _crl_view(self._publish(session, self._crl_authority(session, tenant),
                                           now=now))


def _crl_view(crl: Crl) -> CrlView:
    return CrlView(number=crl.number, this_update=crl.this_update,
                   next_update=crl.next_update, der=crl.der, made_at=crl.created_at)


def _deadlocked(exc: StorageError) -> bool:
    """The database gave up the transaction to break a deadlock (or a serialisation
    conflict): trying again is safe, since nothing of it was committed."""
    orig = getattr(exc.__cause__, "orig", None)
    return getattr(orig, "sqlstate", None) in _RETRYABLE
