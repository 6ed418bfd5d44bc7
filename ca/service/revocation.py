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

from cryptography import x509
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ca import audit, serials
from ca.audit import Actor
from ca.db import queries
from ca.db.models import Authority, Certificate, Crl, Hold, Tenant, User
from ca.errors import NotFound, NotPermitted
from ca.profiles import CLOCK_SKEW
from ca.service import status
from ca.service.core import ServiceCore
from ca.service.views import CertificateView, cert_view
from ca.states import HoldCause
from ca.x509 import crl as crl_builder

ROOT_CRL_VALIDITY = dt.timedelta(days=30)
# a status change: (session, certificate, its user, its tenant, now) -> whether it changed
Change = Callable[[Session, Certificate, User, Tenant, dt.datetime], bool]


@dataclass(frozen=True, kw_only=True)
class CrlView:
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    der: bytes

    @property
    def pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return x509.load_der_x509_crl(self.der).public_bytes(
            serialization.Encoding.PEM).decode()


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
        with self.transaction() as session:
            owner = queries.tenant(session, tenant)
            cert = session.scalar(select(Certificate).where(
                Certificate.tenant_id == owner.id, Certificate.serial == canonical))
            if cert is None:
                raise NotFound(f"no certificate with serial {canonical}", field="serial")
            user = session.get(User, cert.user_id)
            assert user is not None
            if change(session, cert, user, owner, now):
                self._publish(session, session.get(Authority, cert.authority_id), now=now)
            has_key = cert.revoked_at is None and status.has_key_material(session, cert)
            return cert_view(cert, owner.name, user.login, now=now, has_key_material=has_key)

    # --- CRLs ------------------------------------------------------------------------------

    def current_crl(self, tenant: str | None) -> CrlView:
        """The newest CRL of a tenant's issuing CA (``None``: the root's), made now if there
        is none yet or if the newest is past half its validity."""
        now = self.now()
        with self.transaction() as session:
            authority = (queries.require_root(session) if tenant is None
                         else queries.issuing(session, queries.tenant(session, tenant)))
            latest = _latest(session, authority)
            if latest is None or now >= latest.this_update + (
                    latest.next_update - latest.this_update) / 2:
                latest = self._publish(session, authority, now=now)
            return CrlView(number=latest.number, this_update=latest.this_update,
                           next_update=latest.next_update, der=latest.der)

    def publish_crl(self, tenant: str | None) -> CrlView:
        """Make a new CRL now."""
        now = self.now()
        with self.transaction() as session:
            authority = (queries.require_root(session) if tenant is None
                         else queries.issuing(session, queries.tenant(session, tenant)))
            made = self._publish(session, authority, now=now)
            return CrlView(number=made.number, this_update=made.this_update,
                           next_update=made.next_update, der=made.der)

    def _publish(self, session: Session, authority: Authority | None, *,
                 now: dt.datetime) -> Crl:
        assert authority is not None
        # lock the authority's row: one CRL at a time per CA, on every database
        session.execute(update(Authority).where(Authority.id == authority.id)
                        .values(key_id=Authority.key_id))
        last = _latest(session, authority)
        number = max(int(now.timestamp() * 1000), (last.number + 1) if last else 1)
        this_update = (now - CLOCK_SKEW).replace(microsecond=0)
        if authority.kind == "root":
            validity = ROOT_CRL_VALIDITY
            url = self.urls.root_crl()
            entries = _root_entries(session, authority)
        else:
            owner = session.get(Tenant, authority.tenant_id)
            assert owner is not None
            validity = dt.timedelta(seconds=owner.crl_validity_seconds)
            url = self.urls.crl(owner.name)
            entries = _entries(session, authority, last)
        request = crl_builder.CrlRequest(
            number=number, this_update=this_update, next_update=this_update + validity,
            distribution_point=url, covers_ca_certificates=authority.kind == "root")
        made = crl_builder.build(request, x509.load_der_x509_certificate(authority.der),
                                 self.signer(authority), entries)
        from cryptography.hazmat.primitives import serialization

        row = Crl(authority_id=authority.id, number=number, this_update=this_update,
                  next_update=request.next_update,
                  der=made.public_bytes(serialization.Encoding.DER), created_at=now)
        session.add(row)
        session.flush()
        return row


def _latest(session: Session, authority: Authority) -> Crl | None:
    return session.scalar(select(Crl).where(Crl.authority_id == authority.id)
                          .order_by(Crl.number.desc()).limit(1))


def _entries(session: Session, authority: Authority,
             last: Crl | None) -> list[crl_builder.Entry]:
    """Revoked and suspended certificates. An expired one stays until a CRL has listed it
    past its expiry (the previous CRL was made after notAfter)."""
    held = (select(Hold.certificate_id, func.min(Hold.placed_at).label("since"))
            .where(Hold.lifted_at.is_(None)).group_by(Hold.certificate_id).subquery())
    query = (select(Certificate.serial, Certificate.revoked_at, Certificate.revocation_reason,
                    held.c.since)
             .outerjoin(held, held.c.certificate_id == Certificate.id)
             .where(Certificate.authority_id == authority.id,
                    or_(Certificate.revoked_at.is_not(None), held.c.since.is_not(None))))
    if last is not None:
        query = query.where(Certificate.not_after >= last.this_update)
    entries = []
    for serial, revoked_at, reason, since in session.execute(query):
        if revoked_at is not None:
            entries.append(crl_builder.Entry(serial=serials.parse(serial), revoked_at=revoked_at,
                                             reason=reason))
        else:
            entries.append(crl_builder.Entry(serial=serials.parse(serial), revoked_at=since,
                                             reason="certificateHold"))
    return entries


def _root_entries(session: Session, root: Authority) -> list[crl_builder.Entry]:
    retired = session.scalars(select(Authority).where(
        Authority.issuer_id == root.id, Authority.id != root.id,
        Authority.retired_at.is_not(None))).all()
    return [crl_builder.Entry(serial=serials.parse(a.serial), revoked_at=a.retired_at,
                              reason="cessationOfOperation")
            for a in retired if a.retired_at is not None]
