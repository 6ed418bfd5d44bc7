"""Client certificates: issue (server key or CSR), reissue, find, list, bundle for download."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import Row, Select, Table, exists, insert, select
from sqlalchemy.orm import Session

from ca import audit, bundle_profile, expiry, making, parallel, serials, validate
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db import queries
from ca.db.models import Authority, Certificate, Group, KeyMaterial, Tenant, User, user_groups
from ca.errors import CAError, Conflict, InvalidInput, NotFound, NotPermitted
from ca.key_kept import key_kept_filter
from ca.profiles import Urls
from ca.service import crls, transitions
from ca.service.plumbing import Database, Keys
from ca.service.requests import IssueRequest
from ca.service.selection import select_users
from ca.service.views import BulkResult, Bundle, CertificateView, cert_view
from ca.settings import Settings
from ca.states import State, live_filter, state_filter, state_of
from ca.x509 import bundle, csr, pkcs12

SUPERSEDED = "superseded"
# the tables, for Core INSERTs (the ORM's bulk path adds only its bookkeeping here)
CERTIFICATES = cast(Table, Certificate.__table__)
KEY_MATERIAL = cast(Table, KeyMaterial.__table__)


@dataclass(frozen=True, kw_only=True)
class _Issuer:
    tenant: Tenant
    authority: Authority
    cert: x509.Certificate
    not_after: dt.datetime
    expires: dt.date
    zone: str


@dataclass(frozen=True, kw_only=True)
class IssueDefaults:
    """A tenant's issuance defaults, the expiry as a date in ``zone``."""

    tenant_zone: str
    zone: str
    expires: dt.date
    latest: dt.date  # the last date the issuing CA can vouch for, in ``zone``
    key_type: str
    p12_profile: str


Progress = Callable[[int, int], None]
# a batch whose random serial was already taken is made again, this many times at most
SERIAL_ATTEMPTS = 3


@dataclass(frozen=True, kw_only=True)
class _Whom:
    """A user to issue to, as the read found them."""

    id: int
    login: str
    email: str


@dataclass(frozen=True, kw_only=True)
class _Made:
    """A signed certificate (its row's values) and its sealed key and password (None: from
    a CSR)."""

    who: _Whom
    serial: str  # canonical
    row: dict[str, Any]
    sealed: tuple[bytes, bytes] | None = field(repr=False)


class Standing(Protocol):
    """A user as ``check_may_issue`` sees them: a ``User`` row, or the columns of one."""

    @property
    def login(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def secure_access(self) -> bool: ...


# from this many certificates on, they are made on every core: an EC one costs ~0.3 ms here,
# an RSA key ~50 ms; handing work to the pool (and, in a CLI run, starting it) costs more
PARALLEL_FROM = 1000
PARALLEL_RSA_FROM = 16
GROUP = 64  # certificates made per group handed to the pool
INSERT_ROWS = 1000  # certificate rows per INSERT statement
AHEAD = 4  # groups in the pool's hands at once


class Certificates:
    """Issuance, and the certificates as they are read back (views, bundles)."""

    def __init__(self, *, settings: Settings, database: Database, keys: Keys, clock: Clock,
                 urls: Urls) -> None:
        self.settings = settings
        self.database = database
        self.keys = keys
        self.clock = clock
        self.urls = urls

    def issue(self, request: IssueRequest, *, admin_zone: str | None = None,
              actor: Actor = audit.CLI_ACTOR) -> list[CertificateView]:
        """Issue to every user named or selected, in one transaction: all of them or none."""
        if request.best_effort:
            raise InvalidInput("best-effort issuance reports failures: use issue_bulk",
                               field="best_effort")
        return self.issue_bulk(request, admin_zone=admin_zone, actor=actor).issued

    def issue_bulk(self, request: IssueRequest, *, admin_zone: str | None = None,
                   actor: Actor = audit.CLI_ACTOR,
                   progress: Progress | None = None) -> BulkResult:
        """Issue to users named or selected. All or none, unless ``request.best_effort``:
        then every user that cannot have a certificate is listed with the reason, and the
        others are issued.

        Three steps, so that the write lock is held only briefly (other tenants revoke in
        the meantime): a read decides who gets a certificate; keys, certificates and sealed
        key material are made outside any transaction; one short transaction checks again
        what may have changed since (the user retired or denied, the subscription ended, the
        CA replaced), supersedes the current certificates if asked, and records everything
        (ca.service.plumbing, "Short transactions")."""
        now = self.clock.now()
        checked = csr.load(request.csr) if request.csr is not None else None
        for _attempt in range(SERIAL_ATTEMPTS):
            failures: list[tuple[str, str]] = []
            with self.database.reading() as session:
                issuer = self._issuer(session, request, admin_zone, now=now)
                users = self._users(session, issuer.tenant, request, failures, now=now)
                whom = [_Whom(id=u.id, login=u.login, email=u.email) for u in users
                        if _may_issue(issuer.tenant, u, request, failures, now=now)]
            made = self._make(issuer, whom, request, checked, progress, now=now)
            try:
                return self._record(issuer, made, request, failures, actor, now=now)
            except Conflict:
                # random serials (159 bits) collide astronomically rarely; the database's
                # unique constraint is what guarantees it: make them again then
                if not self._serial_taken(issuer, made):
                    raise
        raise Conflict("could not find unused serials; try again")

    def _make(self, issuer: _Issuer, whom: list[_Whom], request: IssueRequest,
              checked: csr.CheckedKey | None, progress: Progress | None, *,
              now: dt.datetime) -> list[_Made]:
        """Keys, signed certificates and sealed key material: the costly part, in no
        transaction; on every core (the process's pool) when there are many."""
        key_type = checked.key_type if checked is not None else (
            request.key_type or issuer.tenant.key_type)
        template = making.Template(
            issuer_der=issuer.authority.der, organization=issuer.tenant.display_name,
            tenant=issuer.tenant.name, not_after=issuer.not_after, now=now, urls=self.urls,
            crl_url=issuer.authority.crl_url or self._fill_crl_url(issuer.authority),
            upn_suffix=issuer.tenant.upn_suffix, key_type=key_type,
            generation=issuer.authority.generation,
            public_key_der=None if checked is None else checked.public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
        if checked is None:
            # opened before the workers start: unwrapping the sealing key takes scrypt's
            # 128 MB for a moment, which then should not add to theirs
            _ = self.keys.sealer
        executor = parallel.pool(len(whom), threshold=PARALLEL_RSA_FROM if key_type.startswith(
            "rsa") else PARALLEL_FROM)
        make = making.maker(self.keys.signer(issuer.authority), making.KeyAccess(
            directory=self.settings.effective_key_dir, passphrase=self.settings.passphrase(),
            source=self.settings.passphrase_source(), key_id=issuer.authority.key_id,
            token=self.settings.token_access(issuer.authority.key_token)
            if issuer.authority.key_store == "pkcs11" and issuer.authority.key_token else None),
            template, pooled=executor is not None)
        groups = [[(w.login, w.email) for w in whom[start:start + GROUP]]
                  for start in range(0, len(whom), GROUP)]
        made: list[_Made] = []
        for results in parallel.stream(make, groups, executor, ahead=AHEAD):
            for one in results:
                who = whom[len(made)]
                cert = x509.load_der_x509_certificate(one.cert_der)
                text = serials.to_text(cert.serial_number)
                sealed = None if one.key_der is None or one.password is None else \
                    self.keys.sealer.seal_key_material(one.key_der, one.password, serial=text)
                made.append(_Made(who=who, serial=text, sealed=sealed, row=_row(
                    issuer, who, cert, key_type=key_type, p12_profile=request.p12_profile,
                    source="csr" if checked is not None else "server", now=now)))
                if progress is not None:
                    progress(len(made), len(whom))
        return made

    def _fill_crl_url(self, authority: Authority) -> str:
        """The CRL URL of a CA from before migration 0009 that had published nothing: set
        from the current settings in a short transaction of its own (the first writer wins;
        see ``crls.crl_url``) before the first certificate that carries it is signed."""
        with self.database.transaction() as session:
            row = session.get(Authority, authority.id)
            assert row is not None
            return crls.crl_url(session, row, self.urls)

    def _record(self, issuer: _Issuer, made: list[_Made], request: IssueRequest,
                failures: list[tuple[str, str]], actor: Actor, *,
                now: dt.datetime) -> BulkResult:
        """The short write: check again, supersede, insert in batches, audit."""
        with self.database.transaction() as session:
            tenant = queries.fresh_tenant(session, issuer.tenant.id)
            if tenant.issuing_id != issuer.authority.id:
                raise Conflict(f"tenant {tenant.name}: its issuing CA was replaced while the "
                               "certificates were made; issue again")
            # the users' rows locked (id order, before any certificate's) and read afresh: a
            # denial or retirement at the same moment is seen here, or sees what is issued
            standing = queries.lock_standing(session, [m.who.id for m in made])
            made = [m for m in made if _may_issue(tenant, standing[m.who.id], request,
                                                  failures, now=now)]
            if request.reissue == "revoke":
                # the old certificates go in the same transaction as the new ones come:
                # never a moment with neither recorded
                whom = {m.who.id: m.who.login for m in made}
                # every row locked at once, in id order, before the first audit record takes
                # the chain's lock: a single revocation of one of them at the same moment
                # (row, then chain) waits for this transaction instead of deadlocking with it
                superseded = list(session.scalars(select(Certificate).where(
                    Certificate.tenant_id == tenant.id, live_filter(now=now),
                    Certificate.user_id.in_(list(whom)))
                    .order_by(Certificate.id).with_for_update()))
                for old in superseded:
                    transitions.revoke(session, old, SUPERSEDED, actor, tenant=tenant.name,
                                       login=whom[old.user_id], now=now)
            # batches of INSERTs (a bounded statement each: memory stays flat); a serial
            # already taken fails here
            for start in range(0, len(made), INSERT_ROWS):
                chunk = made[start:start + INSERT_ROWS]
                ids = list(session.scalars(insert(CERTIFICATES).returning(
                    Certificate.id, sort_by_parameter_order=True), [m.row for m in chunk]))
                keys = [{"certificate_id": cid, "created_at": now, "sealed_key": m.sealed[0],
                         "sealed_password": m.sealed[1]}
                        for m, cid in zip(chunk, ids, strict=True) if m.sealed is not None]
                if keys:
                    session.execute(insert(KEY_MATERIAL), keys)
            audit.record_many(session, actor, (Event(
                action="cert.issue", target=f"{tenant.name}/{m.who.login}/{m.serial}",
                tenant_id=tenant.id,
                details={"not_after": m.row["not_after"].isoformat(),
                         "source": m.row["source"], "reissue": request.reissue})
                for m in made), now=now)
            name = tenant.name
        return BulkResult(issued=[cert_view(Certificate(**m.row, holds=[]), name, m.who.login,
                                            now=now, has_key_material=m.sealed is not None)
                                  for m in made], failures=failures)

    def _serial_taken(self, issuer: _Issuer, made: list[_Made]) -> bool:
        wanted = {m.serial for m in made}
        with self.database.reading() as session:
            return any(serial in wanted for serial in session.scalars(
                select(Certificate.serial).where(
                    Certificate.authority_id == issuer.authority.id)))

    def check_issue(self, request: IssueRequest, *, admin_zone: str | None = None) -> None:
        """Refuse now what ``issue_bulk`` would refuse for the whole request (tenant, zone,
        expiry, CSR), so that a background job is started only for a request that can run."""
        if request.csr is not None:
            csr.load(request.csr)
        with self.database.reading() as session:
            self._issuer(session, request, admin_zone, now=self.clock.now())

    def _users(self, session: Session, tenant: Tenant, request: IssueRequest,
               failures: list[tuple[str, str]], *, now: dt.datetime) -> list[User]:
        if request.selection is not None:
            return [user for user, _ in session.execute(
                select_users(tenant, request.selection, now=now)).all()]
        users = []
        for login in request.logins or ():
            try:
                users.append(queries.user(session, tenant, login))
            except NotFound as exc:
                if not request.best_effort:
                    raise
                failures.append((login, exc.message))
        return users

    def _issuer(self, session: Session, request: IssueRequest, admin_zone: str | None, *,
                now: dt.datetime) -> _Issuer:
        tenant, authority = queries.tenant_and_issuing(session, request.tenant)
        # the zone: the request's, else the admin's preference, else the tenant's, else UTC
        zone_name = request.timezone or admin_zone or tenant.timezone or "UTC"
        zone = expiry.zone(zone_name)
        default, latest = _expiry_bounds(tenant, authority, zone, now=now)
        expires = request.expires or default
        expiry.check_expiry(expires, zone, now=now)
        if expires > latest:
            raise InvalidInput(
                f"requested {expires}, latest allowed {latest}: the tenant's issuing CA expires "
                f"at {authority.not_after:%Y-%m-%d %H:%M:%S}Z", field="expires")
        return _Issuer(tenant=tenant, authority=authority,
                       cert=x509.load_der_x509_certificate(authority.der),
                       not_after=expiry.not_after(expires, zone), expires=expires,
                       zone=zone_name)

    def issue_defaults(self, tenant: str, *, zone: str | None = None) -> IssueDefaults:
        """What an issuance of ``tenant`` takes when the admin chooses nothing, the expiry
        as a date in ``zone`` (default: the tenant's): the issue dialog's first values."""
        with self.database.reading() as session:
            owner, authority = queries.tenant_and_issuing(session, tenant)
            zone_name = zone or owner.timezone or "UTC"
            default, latest = _expiry_bounds(owner, authority, expiry.zone(zone_name),
                                             now=self.clock.now())
            return IssueDefaults(tenant_zone=owner.timezone or "UTC", zone=zone_name,
                                 expires=default, latest=latest, key_type=owner.key_type,
                                 p12_profile=owner.p12_profile)

    # --- reading ---------------------------------------------------------------------------

    def get(self, serial: str, *, tenant: str | None = None) -> CertificateView:
        """One certificate by serial; with ``tenant``, only if it belongs to that tenant."""
        canonical = serials.canonical(serial)
        query = _listing().where(Certificate.serial == canonical)
        if tenant is not None:
            query = query.where(Tenant.name == tenant)
        with self.database.reading() as session:
            # a tenant name no tenant could have is not sent to the database (no NUL in text)
            rows = session.execute(query).all() \
                if tenant is None or validate.TENANT.fullmatch(tenant) else []
            if not rows:
                raise NotFound(f"no certificate with serial {canonical}", field="serial")
            if len(rows) > 1:
                raise Conflict(f"serial {canonical} exists under several tenants; name one",
                               field="tenant")
            return _view(rows[0], now=self.clock.now())

    def by_fingerprint(self, tenant: str, fingerprint: str) -> CertificateView:
        """One certificate by its SHA-256 fingerprint (hex, colons allowed)."""
        cleaned = fingerprint.replace(":", "").strip().upper()
        if len(cleaned) != 64 or any(c not in "0123456789ABCDEF" for c in cleaned):
            raise InvalidInput("a SHA-256 fingerprint is 64 hexadecimal digits",
                               field="sha256")
        with self.database.reading() as session:
            row = session.execute(_listing().where(
                Certificate.fingerprint_sha256 == cleaned, Tenant.name == tenant)).first() \
                if validate.TENANT.fullmatch(tenant) else None
            if row is None:
                raise NotFound("no certificate with that fingerprint", field="sha256")
            return _view(row, now=self.clock.now())

    def list_certificates(self, tenant: str, *, state: str | None = None,
                          login: str | None = None, group: str | None = None,
                          limit: int = 1000, offset: int = 0) -> list[CertificateView]:
        """A tenant's certificates, newest first, filtered by state, user or group."""
        now = self.clock.now()
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            query = _listing().where(Certificate.tenant_id == owner.id)
            if state is not None:
                query = query.where(state_filter(state, now=now))
            if login is not None:
                login = validate.login(login)
                query = query.where(User.login_key == login.lower())
            if group is not None:
                group = validate.group_name(group)
                query = query.where(exists().where(
                    user_groups.c.user_id == User.id, user_groups.c.group_id == Group.id,
                    Group.tenant_id == owner.id, Group.name_key == group.casefold()))
            query = query.order_by(Certificate.id.desc()).limit(max(0, min(limit, 10_000)))
            rows = session.execute(query.offset(max(0, offset))).all()
            return [_view(row, now=now) for row in rows]

    # --- bundles ---------------------------------------------------------------------------

    def bundle(self, serial: str, *, tenant: str, profile: str | None = None,
               password: str | None = None, actor: Actor = audit.CLI_ACTOR) -> Bundle:
        """The user's zip (PKCS#12 and password) for a valid server-generated certificate.
        The PKCS#12 is under ``password`` when given (a one-time link makes one for each
        redemption), else under the password sealed with the key at issuance.
        Every download of key material is audited. The zip is made in a read; the short
        write that audits it checks again that the certificate is still valid, so nothing
        leaves for a certificate revoked or suspended meanwhile."""
        canonical = serials.canonical(serial)
        now = self.clock.now()
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            cert = queries.certificate(session, owner, canonical)
            material = _key_material(session, cert, now=now)
            assert material.sealed_key is not None and material.sealed_password is not None
            key_der, sealed_password = self.keys.sealer.open_key_material(
                material.sealed_key, material.sealed_password, serial=cert.serial)
            password = sealed_password if password is None else password
            key = serialization.load_der_private_key(key_der, None)
            chosen = bundle_profile.chosen(profile, issued=cert.p12_profile,
                                           tenant=owner.p12_profile)
            issuing, root = queries.chain(session, cert.authority_id)
            if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
                raise InvalidInput("stored key has an unexpected type")
            login = cert.user.login
            p12 = pkcs12.build(
                key=key, cert=x509.load_der_x509_certificate(cert.der),
                chain=[x509.load_der_x509_certificate(issuing.der),
                       x509.load_der_x509_certificate(root.der)],
                friendly_name=f"{login} ({owner.name})", password=password, profile=chosen)
            content = bundle.user_zip(login=login, p12=p12, password=password, when=now)
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            cert = queries.certificate(session, owner, canonical)
            # under the certificate's lock, as a suspension or revocation decides: one of
            # them at the same moment comes wholly before this check or wholly after the
            # download is recorded
            transitions.lock(session, cert)
            _key_material(session, cert, now=now)
            audit.record(session, actor, Event(
                action="cert.download", target=f"{owner.name}/{login}/{cert.serial}",
                tenant_id=owner.id, details={"serials": [cert.serial],
                                             "profile": chosen.value}), now=now)
        return Bundle(filename=bundle.zip_name(login), content=content, serial=cert.serial)


def _expiry_bounds(tenant: Tenant, authority: Authority, zone: dt.tzinfo, *,
                   now: dt.datetime) -> tuple[dt.date, dt.date]:
    """The default expiry (the tenant's validity after today in ``zone``) and the latest
    date the issuing CA can vouch for: a default longer than the CA's life stops with the
    CA; a date asked for beyond it is refused."""
    validity = expiry.Period.parse(tenant.default_validity)
    latest = expiry.latest_within(authority.not_after, zone)
    return min(expiry.default_expiry(zone, now=now, validity=validity), latest), latest


def _key_material(session: Session, cert: Certificate, *, now: dt.datetime) -> KeyMaterial:
    """The key material of a valid server-generated certificate, or why there is none."""
    state = state_of(cert, now=now)
    if state is not State.VALID:
        raise NotPermitted(f"certificate {cert.serial} is {state.value}: its key "
                           "material is no longer handed out")
    material = session.get(KeyMaterial, cert.id)
    if material is None or material.sealed_key is None or material.sealed_password is None:
        raise NotPermitted(
            f"certificate {cert.serial} was issued from a CSR: its key never left the "
            "device" if cert.source == "csr" else
            f"certificate {cert.serial} has no key material any more")
    return material


def _row(issuer: _Issuer, who: _Whom, cert: x509.Certificate, *, key_type: str, source: str,
         p12_profile: str | None, now: dt.datetime) -> dict[str, Any]:
    """A new certificate's row, as values for a bulk INSERT."""
    return {"tenant_id": issuer.tenant.id, "authority_id": issuer.authority.id,
            "user_id": who.id, "serial": serials.to_text(cert.serial_number),
            "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex().upper(),
            "subject": cert.subject.rfc4514_string(),
            "der": cert.public_bytes(serialization.Encoding.DER), "key_type": key_type,
            "source": source, "p12_profile": p12_profile,
            "not_before": cert.not_valid_before_utc, "not_after": cert.not_valid_after_utc,
            "expiry_date": issuer.expires, "expiry_zone": issuer.zone, "created_at": now}


class Subscriber(Protocol):
    """A tenant as ``check_may_issue`` sees it: a ``Tenant`` row, or the columns of one."""

    @property
    def name(self) -> str: ...
    @property
    def subscription_ends_at(self) -> dt.datetime | None: ...
    @property
    def subscription_ends_on(self) -> dt.date | None: ...


def _may_issue(tenant: Subscriber, user: Standing, request: IssueRequest,
               failures: list[tuple[str, str]], *, now: dt.datetime) -> bool:
    """Whether the user may have a certificate; if not, raise (all or none) or, with
    best effort, list the user with the reason."""
    try:
        check_may_issue(tenant, user, now=now)
    except CAError as exc:
        if not request.best_effort:
            raise
        failures.append((user.login, exc.message))
        return False
    return True


def check_may_issue(tenant: Subscriber, user: Standing, *, now: dt.datetime) -> None:
    if user.status != "active":
        raise NotPermitted(f"{user.login}: the user is retired", field="login")
    if not user.secure_access:
        raise NotPermitted(f"{user.login}: the user has no secure-access permission; allow it "
                           "first", field="login")
    if tenant.subscription_ends_at is not None and tenant.subscription_ends_at <= now:
        raise NotPermitted(f"tenant {tenant.name}: the subscription ended on "
                           f"{tenant.subscription_ends_on}; no certificates can be issued")


def _listing() -> Select[Certificate, str, str, bool]:
    has_key = exists().where(KeyMaterial.certificate_id == Certificate.id,
                             key_kept_filter())
    return (select(Certificate, Tenant.name, User.login, has_key)
            .join(Tenant, Certificate.tenant_id == Tenant.id)
            .join(User, Certificate.user_id == User.id))


def _view(row: Row[Certificate, str, str, bool], *, now: dt.datetime) -> CertificateView:
    cert, tenant, login, has_key = row
    return cert_view(cert, tenant, login, now=now, has_key_material=bool(has_key))



