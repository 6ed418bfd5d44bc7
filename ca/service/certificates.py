"""Client certificates: issue (server key or CSR), reissue, find, list, bundle for download."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import ColumnElement, Row, Select, and_, exists, not_, select
from sqlalchemy.orm import Session

from ca import audit, expiry, passwords, serials
from ca.audit import Actor, Event
from ca.db import queries
from ca.db.models import Authority, Certificate, Group, KeyMaterial, Tenant, User, user_groups
from ca.errors import Conflict, InvalidInput, NotFound, NotPermitted
from ca.keys import generate_client_key, private_der
from ca.service import status
from ca.service.core import ServiceCore
from ca.service.views import Bundle, CertificateView, IssueRequest, cert_view
from ca.states import State, state_of
from ca.x509 import bundle, csr, pkcs12
from ca.x509.certificate import ClientRequest, build_client

SUPERSEDED = "superseded"


@dataclass(frozen=True, kw_only=True)
class _Issuer:
    tenant: Tenant
    authority: Authority
    cert: x509.Certificate
    not_after: dt.datetime
    expires: dt.date
    zone: str


class CertificateUseCases(ServiceCore):
    def issue(self, request: IssueRequest, *, admin_zone: str | None = None,
              actor: Actor = audit.CLI_ACTOR) -> list[CertificateView]:
        """Issue to every user named, all in one transaction: all of them or none."""
        now = self.now()
        checked = csr.load(request.csr) if request.csr is not None else None
        with self.transaction() as session:
            issuer = self._issuer(session, request, admin_zone, now=now)
            users = [queries.user(session, issuer.tenant, login) for login in request.logins]
            for user in users:
                check_may_issue(issuer.tenant, user, now=now)
            return [self._issue_one(session, issuer, user, request, checked, actor, now=now)
                    for user in users]

    def _issuer(self, session: Session, request: IssueRequest, admin_zone: str | None, *,
                now: dt.datetime) -> _Issuer:
        tenant = queries.tenant(session, request.tenant)
        # the zone: the request's, else the admin's preference, else the tenant's, else UTC
        zone_name = request.timezone or admin_zone or tenant.timezone or "UTC"
        zone = expiry.zone(zone_name)
        validity = expiry.Period.parse(tenant.default_validity)
        authority = queries.issuing(session, tenant)
        latest = expiry.latest_within(authority.not_after, zone)
        # a default longer than the CA's life stops with the CA; an asked-for date is refused
        expires = request.expires or min(
            expiry.default_expiry(zone, now=now, validity=validity), latest)
        expiry.check_expiry(expires, zone, now=now)
        if expires > latest:
            raise InvalidInput(
                f"requested {expires}, latest allowed {latest}: the tenant's issuing CA expires "
                f"at {authority.not_after:%Y-%m-%d %H:%M:%S}Z", field="expires")
        return _Issuer(tenant=tenant, authority=authority,
                       cert=x509.load_der_x509_certificate(authority.der),
                       not_after=expiry.not_after(expires, zone), expires=expires,
                       zone=zone_name)

    def _issue_one(self, session: Session, issuer: _Issuer, user: User, request: IssueRequest,
                   checked: csr.CheckedKey | None, actor: Actor, *,
                   now: dt.datetime) -> CertificateView:
        if request.reissue == "revoke":
            self._supersede(session, issuer.tenant, user, actor, now=now)
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | None = None
        if checked is not None:
            public_key, key_type = checked.public_key, checked.key_type
        else:
            key_type = request.key_type or issuer.tenant.key_type
            key = generate_client_key(key_type)
            public_key = key.public_key()
        serial = queries.unused_serial(session, issuer.authority)
        upn = f"{user.login}@{issuer.tenant.upn_suffix}" if issuer.tenant.upn_suffix else None
        client = ClientRequest(
            login=user.login, organization=issuer.tenant.display_name, email=user.email,
            public_key=public_key, not_after=issuer.not_after, now=now,
            tenant=issuer.tenant.name, upn=upn)
        cert = build_client(client, issuer.cert, self.signer(issuer.authority), serial=serial,
                            urls=self.urls)
        row = Certificate(
            tenant_id=issuer.tenant.id, authority_id=issuer.authority.id, user_id=user.id,
            serial=serials.to_text(serial),
            fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex().upper(),
            subject=cert.subject.rfc4514_string(),
            der=cert.public_bytes(serialization.Encoding.DER), key_type=key_type,
            source="csr" if checked else "server", p12_profile=request.p12_profile,
            not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
            expiry_date=issuer.expires, expiry_zone=issuer.zone, created_at=now, holds=[])
        session.add(row)
        session.flush()
        if key is not None:
            session.add(KeyMaterial(
                certificate_id=row.id, created_at=now,
                sealed_key=self.sealer.seal(private_der(key), context=f"key:{row.serial}"),
                sealed_password=self.sealer.seal(passwords.generate().encode(),
                                                 context=f"password:{row.serial}")))
        audit.record(session, actor, Event(
            action="cert.issue", target=f"{issuer.tenant.name}/{user.login}/{row.serial}",
            tenant_id=issuer.tenant.id,
            details={"not_after": row.not_after.isoformat(), "source": row.source,
                     "reissue": request.reissue}), now=now)
        return cert_view(row, issuer.tenant.name, user.login, now=now,
                         has_key_material=key is not None)

    def _supersede(self, session: Session, tenant: Tenant, user: User, actor: Actor, *,
                   now: dt.datetime) -> None:
        """Revoke the user's current certificates as superseded, in the caller's transaction,
        so that there is no moment with neither the old nor the new certificate recorded."""
        for cert in status.live_certificates(session, user, now=now):
            status.revoke(session, cert, SUPERSEDED, actor, tenant=tenant.name,
                          login=user.login, now=now)

    # --- reading ---------------------------------------------------------------------------

    def get_certificate(self, serial: str, *, tenant: str | None = None) -> CertificateView:
        """One certificate by serial; with ``tenant``, only if it belongs to that tenant."""
        canonical = serials.canonical(serial)
        query = _listing().where(Certificate.serial == canonical)
        if tenant is not None:
            query = query.where(Tenant.name == tenant)
        with self.reading() as session:
            rows = session.execute(query).all()
            if not rows:
                raise NotFound(f"no certificate with serial {canonical}", field="serial")
            if len(rows) > 1:
                raise Conflict(f"serial {canonical} exists under several tenants; name one",
                               field="tenant")
            return _view(rows[0], now=self.now())

    def list_certificates(self, tenant: str, *, state: str | None = None,
                          login: str | None = None, group: str | None = None,
                          limit: int = 1000, offset: int = 0) -> list[CertificateView]:
        """A tenant's certificates, newest first, filtered by state, user or group."""
        now = self.now()
        with self.reading() as session:
            owner = queries.tenant(session, tenant)
            query = _listing().where(Certificate.tenant_id == owner.id)
            if state is not None:
                query = query.where(state_filter(state, now=now))
            if login is not None:
                query = query.where(User.login_key == login.lower())
            if group is not None:
                query = query.where(exists().where(
                    user_groups.c.user_id == User.id, user_groups.c.group_id == Group.id,
                    Group.tenant_id == owner.id, Group.name_key == group.casefold()))
            query = query.order_by(Certificate.id.desc()).limit(max(0, min(limit, 10_000)))
            rows = session.execute(query.offset(max(0, offset))).all()
            return [_view(row, now=now) for row in rows]

    # --- bundles ---------------------------------------------------------------------------

    def bundle(self, serial: str, *, tenant: str, profile: str | None = None,
               actor: Actor = audit.CLI_ACTOR) -> Bundle:
        """The user's zip (PKCS#12 and password) for a valid server-generated certificate.
        Every download of key material is audited."""
        canonical = serials.canonical(serial)
        now = self.now()
        with self.transaction() as session:
            owner = queries.tenant(session, tenant)
            cert = session.scalar(select(Certificate).where(
                Certificate.tenant_id == owner.id, Certificate.serial == canonical))
            if cert is None:
                raise NotFound(f"no certificate with serial {canonical}", field="serial")
            state = state_of(cert, now=now)
            if state is not State.VALID:
                raise NotPermitted(f"certificate {canonical} is {state.value}: its key "
                                   "material is no longer handed out")
            material = session.get(KeyMaterial, cert.id)
            if material is None or material.sealed_key is None:
                raise NotPermitted(
                    f"certificate {canonical} was issued from a CSR: its key never left the "
                    "device" if cert.source == "csr" else
                    f"certificate {canonical} has no key material any more")
            assert material.sealed_password is not None
            key = serialization.load_der_private_key(
                self.sealer.open(material.sealed_key, context=f"key:{cert.serial}"), None)
            password = self.sealer.open(material.sealed_password,
                                        context=f"password:{cert.serial}").decode()
            chosen = pkcs12.Profile.parse(profile or cert.p12_profile or owner.p12_profile)
            issuing = session.get(Authority, cert.authority_id)
            assert issuing is not None and issuing.issuer_id is not None
            root = session.get(Authority, issuing.issuer_id)
            assert root is not None
            if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
                raise InvalidInput("stored key has an unexpected type")
            login = cert.user.login
            p12 = pkcs12.build(
                key=key, cert=x509.load_der_x509_certificate(cert.der),
                chain=[x509.load_der_x509_certificate(issuing.der),
                       x509.load_der_x509_certificate(root.der)],
                friendly_name=f"{login} ({owner.name})", password=password, profile=chosen)
            content = bundle.user_zip(login=login, p12=p12, password=password, when=now)
            audit.record(session, actor, Event(
                action="cert.download", target=f"{owner.name}/{login}/{cert.serial}",
                tenant_id=owner.id, details={"serials": [cert.serial],
                                             "profile": chosen.value}), now=now)
            return Bundle(filename=bundle.zip_name(login), content=content, serial=cert.serial)


def check_may_issue(tenant: Tenant, user: User, *, now: dt.datetime) -> None:
    if user.status != "active":
        raise NotPermitted(f"{user.login}: the user is retired", field="login")
    if not user.secure_access:
        raise NotPermitted(f"{user.login}: the user has no secure-access permission; allow it "
                           "first", field="login")
    if tenant.subscription_ends_at is not None and tenant.subscription_ends_at <= now:
        raise NotPermitted(f"tenant {tenant.name}: the subscription ended on "
                           f"{tenant.subscription_ends_on}; no certificates can be issued")


def state_filter(state: str, *, now: dt.datetime) -> ColumnElement[bool]:
    """SQL for a certificate's effective state (see ``ca.states.state_of``)."""
    held = queries.active_hold()
    live = Certificate.revoked_at.is_(None)
    filters = {
        State.REVOKED.value: Certificate.revoked_at.is_not(None),
        State.SUSPENDED.value: and_(live, held),
        State.EXPIRED.value: and_(live, not_(held), Certificate.not_after < now),
        State.VALID.value: and_(live, not_(held), Certificate.not_after >= now),
    }
    if state not in filters:
        raise InvalidInput(f"state {state[:16]!r} is not one of {', '.join(filters)}",
                           field="state")
    return filters[state]


def _listing() -> Select[Certificate, str, str, bool]:
    has_key = exists().where(KeyMaterial.certificate_id == Certificate.id,
                             KeyMaterial.sealed_key.is_not(None))
    return (select(Certificate, Tenant.name, User.login, has_key)
            .join(Tenant, Certificate.tenant_id == Tenant.id)
            .join(User, Certificate.user_id == User.id))


def _view(row: Row[Certificate, str, str, bool], *, now: dt.datetime) -> CertificateView:
    cert, tenant, login, has_key = row
    return cert_view(cert, tenant, login, now=now, has_key_material=bool(has_key))



