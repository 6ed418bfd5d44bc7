"""Use cases: initialise the CA, tenants, users, issuance, tokens. Each is one transaction.

The API and the CLI both call these methods; neither reaches the database or a key another way.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from ca import audit, expiry, serials, tokens, validate
from ca.audit import Actor, Event
from ca.clock import Clock, SystemClock
from ca.db import migrate
from ca.db.engine import check_reachable, make_engine, make_sessionmaker
from ca.db.models import ApiToken, Authority, Certificate, KeyMaterial, Tenant, User
from ca.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
    NotPermitted,
    StorageError,
)
from ca.keys import generate_client_key, private_der
from ca.profiles import CA_KEY_TYPES, ISSUING, ROOT, CAProfile, Urls
from ca.sealing import (
    Sealer,
    create_data_protection_key,
    load_sealer,
    remove_data_protection_key,
)
from ca.settings import Settings
from ca.signer import FileKeyStore, Signer, generate_ca_key
from ca.states import State, state_of
from ca.x509.certificate import CARequest, ClientRequest, build_client, build_issuing, build_root

DEFAULT_TENANT = "default"
DATA_PROTECTION_MARK = "<data-protection>"


@dataclass(frozen=True, kw_only=True)
class InitRequest:
    root_name: str = "Tegata Root CA"
    organization: str = "Tegata"
    key_type: str = "ec-p384"
    validity_years: int = ROOT.validity_years

    def __post_init__(self) -> None:
        if self.key_type not in CA_KEY_TYPES:
            raise InvalidInput(f"CA key type {self.key_type!r} is not one of "
                               f"{', '.join(CA_KEY_TYPES)}", field="key_type")
        if not 1 <= self.validity_years <= 50:
            raise InvalidInput(f"root validity {self.validity_years} years is outside 1..50",
                               field="validity_years")
        validate.display_text(self.root_name, field="root_name", limit=64)
        validate.display_text(self.organization, field="organization", limit=64)
        if not self.root_name.strip():
            raise InvalidInput("the root CA needs a name", field="root_name")


@dataclass(frozen=True, kw_only=True)
class IssueRequest:
    tenant: str
    login: str
    expires: dt.date | None = None
    timezone: str | None = None


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who a token speaks for."""

    token_id: int
    name: str
    role: str
    tenant: str | None
    login: str | None
    timezone: str | None

    def actor(self, *, source_ip: str | None = None, request_id: str | None = None) -> Actor:
        return Actor(name=f"token:{self.token_id}:{self.name}", source_ip=source_ip,
                     request_id=request_id)


@dataclass(frozen=True, kw_only=True)
class CertificateView:
    serial: str
    tenant: str
    login: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    expiry_date: dt.date
    expiry_zone: str
    state: State
    fingerprint_sha256: str
    key_type: str
    source: str
    der: bytes

    @property
    def pem(self) -> str:
        return x509.load_der_x509_certificate(self.der).public_bytes(
            serialization.Encoding.PEM).decode()


@dataclass(frozen=True, kw_only=True)
class CAView:
    tenant: str | None
    kind: str
    subject: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    der: bytes

    @property
    def pem(self) -> str:
        return x509.load_der_x509_certificate(self.der).public_bytes(
            serialization.Encoding.PEM).decode()


@dataclass(frozen=True, kw_only=True)
class TokenView:
    id: int
    name: str
    role: str
    tenant: str | None
    login: str | None
    prefix: str
    expires_at: dt.datetime | None


class Service:
    """Tegata's use cases over one database, one key store and one clock."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 engine: Engine | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.engine = engine or make_engine(settings.effective_database_url)
        self._sessions = make_sessionmaker(self.engine)
        self.urls = Urls(base=settings.public_base_url)
        self._keystore: FileKeyStore | None = None
        self._signers: dict[str, Signer] = {}
        self._sealer: Sealer | None = None

    # --- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Session]:
        """One unit of work: commits on success, rolls back on any error."""
        try:
            with self._sessions.begin() as session:
                yield session
        except SQLAlchemyError as exc:
            if isinstance(exc, IntegrityError):
                raise Conflict("the change conflicts with existing data") from None
            raise StorageError(f"database error: {type(exc).__name__}") from exc

    def now(self) -> dt.datetime:
        return self.clock.now()

    @property
    def keystore(self) -> FileKeyStore:
        if self._keystore is None:
            self._keystore = FileKeyStore(self.settings.effective_key_dir,
                                          self.settings.passphrase())
        return self._keystore

    def signer(self, authority: Authority) -> Signer:
        if authority.key_id not in self._signers:
            self._signers[authority.key_id] = self.keystore.load(authority.key_id)
        return self._signers[authority.key_id]

    @property
    def sealer(self) -> Sealer:
        if self._sealer is None:
            self._sealer = load_sealer(self.settings.effective_key_dir)
        return self._sealer

    def check_database(self) -> None:
        check_reachable(self.engine)
        if not migrate.is_current(self.engine):
            raise StorageError("the database schema is not current: run `tegata db upgrade` "
                               "(or start with TEGATA_MIGRATE_ON_START=true)")

    def upgrade_database(self) -> None:
        if self.settings.database_url is None:  # the embedded default lives in the data dir
            self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_reachable(self.engine)
        migrate.upgrade(self.engine)

    def load_signers(self) -> None:
        """Load every active CA key now, so that a bad key file stops start-up, not a request."""
        with self._sessions() as session:
            authorities = session.scalars(
                select(Authority).where(Authority.retired_at.is_(None))).all()
        for authority in authorities:
            self.signer(authority)
        if authorities:
            _ = self.sealer

    def is_initialized(self) -> bool:
        with self._sessions() as session:
            return _root(session) is not None

    # --- the CA hierarchy ------------------------------------------------------------------

    def initialize(self, request: InitRequest, *, actor: Actor = audit.CLI_ACTOR) -> CAView:
        """Create the root CA and the ``default`` tenant with its issuing CA."""
        now = self.now()
        with self._sessions() as session:
            if _root(session) is not None:
                raise Conflict("Tegata is already initialised: the root CA exists")
        root_key = generate_ca_key(request.key_type)
        profile = CAProfile(path_length=ROOT.path_length, validity_years=request.validity_years)
        root_req = CARequest(common_name=request.root_name, organization=request.organization,
                             public_key=root_key.public_key(), profile=profile, now=now)
        key_id = _new_key_id("root")
        with self._writing_keys() as written:
            signer = self.keystore.create(key_id, root_key)
            written.append(key_id)
            if create_data_protection_key(self.settings.effective_key_dir):
                written.append(DATA_PROTECTION_MARK)
            root_cert = build_root(root_req, signer, serial=x509.random_serial_number())
            with self.transaction() as session:
                root = _authority_row(root_cert, kind="root", key_id=key_id, tenant=None,
                                      issuer_id=None, now=now)
                session.add(root)
                session.flush()
                root.issuer_id = root.id
                tenant = self._add_tenant(session, DEFAULT_TENANT, "Default", root, root_cert,
                                          signer, request.key_type, written, now=now)
                audit.record(session, actor, Event(action="ca.init", target="root",
                                                   details={"subject": root.subject}), now=now)
                audit.record(session, actor, Event(action="tenant.create", target=tenant.name,
                                                   tenant_id=tenant.id), now=now)
            self._signers[key_id] = signer
        return _ca_view(root, None)

    def create_tenant(self, name: str, *, display_name: str | None = None,
                      key_type: str = "ec-p384", actor: Actor = audit.CLI_ACTOR) -> CAView:
        """A new tenant with its own issuing CA, signed by the root."""
        validate.tenant_name(name)
        shown = validate.display_text(display_name or name, field="display_name", limit=64)
        if key_type not in CA_KEY_TYPES:
            raise InvalidInput(f"CA key type {key_type!r} is not one of "
                               f"{', '.join(CA_KEY_TYPES)}", field="key_type")
        now = self.now()
        with self._writing_keys() as written, self.transaction() as session:
            root = _require_root(session)
            if session.scalar(select(Tenant.id).where(Tenant.name == name)) is not None:
                raise Conflict(f"tenant {name!r} already exists", field="name")
            root_cert = x509.load_der_x509_certificate(root.der)
            tenant = self._add_tenant(session, name, shown, root, root_cert, self.signer(root),
                                      key_type, written, now=now)
            issuing = tenant.authorities[0]
            audit.record(session, actor, Event(action="tenant.create", target=name,
                                               tenant_id=tenant.id), now=now)
        return _ca_view(issuing, name)

    def _add_tenant(self, session: Session, name: str, display_name: str, root: Authority,
                    root_cert: x509.Certificate, root_signer: Signer, key_type: str,
                    written: list[str], *, now: dt.datetime) -> Tenant:
        tenant = Tenant(name=name, display_name=display_name, created_at=now,
                        timezone=self.settings.timezone)
        session.add(tenant)
        key = generate_ca_key(key_type)
        key_id = _new_key_id("issuing")
        signer = self.keystore.create(key_id, key)
        written.append(key_id)
        orgs = root_cert.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)
        request = CARequest(common_name=f"{display_name} Issuing CA",
                            organization=str(orgs[0].value) if orgs else None,
                            public_key=key.public_key(), profile=ISSUING, now=now)
        cert = build_issuing(request, root_cert, root_signer,
                             serial=x509.random_serial_number(), urls=self.urls)
        session.flush()
        issuing = _authority_row(cert, kind="issuing", key_id=key_id, tenant=tenant,
                                 issuer_id=root.id, now=now)
        session.add(issuing)
        session.flush()
        self._signers[key_id] = signer
        return tenant

    @contextlib.contextmanager
    def _writing_keys(self) -> Iterator[list[str]]:
        """Key files written inside are removed again if the block fails: nothing half-made."""
        written: list[str] = []
        try:
            yield written
        except BaseException:
            for key_id in written:
                if key_id == DATA_PROTECTION_MARK:
                    remove_data_protection_key(self.settings.effective_key_dir)
                    continue
                self.keystore.remove(key_id)
                self._signers.pop(key_id, None)
            raise

    def list_tenants(self) -> list[str]:
        with self._sessions() as session:
            return list(session.scalars(select(Tenant.name).order_by(Tenant.name)))

    def ca_certificates(self, tenant: str | None = None) -> list[CAView]:
        """The root, then the tenant's issuing CA when a tenant is named."""
        with self._sessions() as session:
            root = _require_root(session)
            views = [_ca_view(root, None)]
            if tenant is not None:
                views.append(_ca_view(_issuing(session, _tenant(session, tenant)), tenant))
            return views

    # --- users and certificates ------------------------------------------------------------

    def add_user(self, tenant: str, login: str, *, email: str, display_name: str = "",
                 allow: bool = False, kind: str = "person",
                 actor: Actor = audit.CLI_ACTOR) -> None:
        validate.login(login)
        validate.email(email)
        name = validate.display_text(display_name, field="display_name")
        if kind not in ("person", "service"):
            raise InvalidInput(f"user kind {kind[:16]!r} is not person or service", field="kind")
        now = self.now()
        with self.transaction() as session:
            owner = _tenant(session, tenant)
            if _user_or_none(session, owner, login) is not None:
                raise Conflict(f"{tenant}: user {login!r} already exists", field="login")
            session.add(User(tenant_id=owner.id, login=login, login_key=login.lower(),
                             email=email, display_name=name, kind=kind, status="active",
                             secure_access=allow, created_at=now, updated_at=now))
            audit.record(session, actor, Event(action="user.create", target=f"{tenant}/{login}",
                                               tenant_id=owner.id,
                                               details={"secure_access": allow}), now=now)

    def issue(self, request: IssueRequest, *, admin_zone: str | None = None,
              actor: Actor = audit.CLI_ACTOR) -> CertificateView:
        """Issue a client certificate with a server-generated key, sealed at rest."""
        now = self.now()
        with self.transaction() as session:
            tenant = _tenant(session, request.tenant)
            user = _user(session, tenant, request.login)
            _check_may_issue(tenant, user, now=now)
            zone_name = request.timezone or admin_zone or tenant.timezone or "UTC"
            zone = expiry.zone(zone_name)
            period = expiry.Period.parse(tenant.default_validity)
            expires = request.expires or expiry.default_expiry(zone, now=now, validity=period)
            expiry.check_expiry(expires, zone, now=now)
            issuing = _issuing(session, tenant)
            issuer_cert = x509.load_der_x509_certificate(issuing.der)
            key = generate_client_key(tenant.key_type)
            serial = _unused_serial(session, issuing)
            client = ClientRequest(
                login=user.login, organization=tenant.display_name, email=user.email,
                public_key=key.public_key(), not_after=expiry.not_after(expires, zone),
                now=now, tenant=tenant.name)
            cert = build_client(client, issuer_cert, self.signer(issuing), serial=serial,
                                urls=self.urls)
            row = Certificate(
                tenant_id=tenant.id, authority_id=issuing.id, user_id=user.id,
                serial=serials.to_text(serial),
                fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex().upper(),
                subject=cert.subject.rfc4514_string(), der=cert.public_bytes(
                    serialization.Encoding.DER), key_type=tenant.key_type, source="server",
                not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                expiry_date=expires, expiry_zone=zone_name, created_at=now, holds=[])
            session.add(row)
            session.flush()
            session.add(KeyMaterial(
                certificate_id=row.id, created_at=now,
                sealed_key=self.sealer.seal(private_der(key), context=f"key:{row.serial}")))
            audit.record(session, actor, Event(
                action="cert.issue", target=f"{tenant.name}/{user.login}/{row.serial}",
                tenant_id=tenant.id, details={"not_after": row.not_after.isoformat()}), now=now)
            return _cert_view(row, tenant.name, user.login, now=now)

    def get_certificate(self, serial: str, *, tenant: str | None = None) -> CertificateView:
        """One certificate by serial; with ``tenant``, only if it belongs to that tenant."""
        canonical = serials.canonical(serial)
        now = self.now()
        with self._sessions() as session:
            query = select(Certificate, Tenant.name, User.login).join(
                Tenant, Certificate.tenant_id == Tenant.id).join(
                User, Certificate.user_id == User.id).where(Certificate.serial == canonical)
            if tenant is not None:
                query = query.where(Tenant.name == tenant)
            rows = session.execute(query).all()
            if not rows:
                raise NotFound(f"no certificate with serial {canonical}", field="serial")
            if len(rows) > 1:
                raise Conflict(f"serial {canonical} exists under several tenants; name one",
                               field="tenant")
            cert, tenant_name, login = rows[0]
            return _cert_view(cert, tenant_name, login, now=now)

    # --- tokens ----------------------------------------------------------------------------

    def create_token(self, *, role: str, tenant: str | None = None, login: str | None = None,
                     name: str | None = None, valid_for: dt.timedelta | None = None,
                     timezone: str | None = None,
                     actor: Actor = audit.CLI_ACTOR) -> tuple[str, TokenView]:
        """A new API token; the token text is returned once and only its hash is kept."""
        if role not in tokens.ROLES:
            raise InvalidInput(f"role {role[:16]!r} is not one of {', '.join(tokens.ROLES)}",
                               field="role")
        if role == "operator" and (tenant or login):
            raise InvalidInput("an operator token spans all tenants: give no tenant or user",
                               field="tenant")
        if role != "operator" and not tenant:
            raise InvalidInput(f"a {role} token needs a tenant", field="tenant")
        if role == "user" and not login:
            raise InvalidInput("a user token needs a user", field="user")
        if role != "user" and login:
            raise InvalidInput(f"a {role} token is not tied to a user", field="user")
        if timezone is not None:
            expiry.zone(timezone)
        label = validate.display_text(name or f"{role} token", field="name", limit=100)
        if valid_for is not None and valid_for <= dt.timedelta(0):
            raise InvalidInput("a token's lifetime must be positive", field="expires")
        now = self.now()
        text = tokens.generate()
        with self.transaction() as session:
            owner = _tenant(session, tenant) if tenant else None
            user = _user(session, owner, login) if owner and login else None
            row = ApiToken(name=label, role=role, tenant_id=owner.id if owner else None,
                           user_id=user.id if user else None, token_hash=tokens.digest(text),
                           prefix=tokens.display_prefix(text), timezone=timezone,
                           created_at=now, expires_at=now + valid_for if valid_for else None)
            session.add(row)
            session.flush()
            audit.record(session, actor, Event(
                action="token.create", target=f"token:{row.id}", tenant_id=row.tenant_id,
                details={"role": role, "name": label}), now=now)
            view = TokenView(id=row.id, name=label, role=role, tenant=tenant, login=login,
                             prefix=row.prefix, expires_at=row.expires_at)
        return text, view

    def authenticate(self, token: str) -> Principal:
        """The principal a bearer token speaks for; ``AuthenticationFailed`` otherwise."""
        if not token.startswith(tokens.PREFIX) or len(token) > 200:
            raise AuthenticationFailed("unknown token")
        now = self.now()
        with self.transaction() as session:
            row = session.scalar(select(ApiToken).where(
                ApiToken.token_hash == tokens.digest(token)))
            if row is None or not secrets.compare_digest(row.token_hash, tokens.digest(token)):
                raise AuthenticationFailed("unknown token")
            if row.revoked_at is not None:
                raise AuthenticationFailed("the token has been revoked")
            if row.expires_at is not None and row.expires_at <= now:
                raise AuthenticationFailed("the token has expired")
            # a write per request would serialise readers on SQLite: record use once a minute
            if row.last_used_at is None or now - row.last_used_at > dt.timedelta(minutes=1):
                row.last_used_at = now
            return Principal(token_id=row.id, name=row.name, role=row.role,
                             tenant=row.tenant.name if row.tenant else None,
                             login=row.user.login if row.user else None, timezone=row.timezone)


# --- queries (take a session, never commit) ---------------------------------------------------


def _root(session: Session) -> Authority | None:
    return session.scalar(select(Authority).where(Authority.kind == "root",
                                                  Authority.retired_at.is_(None)))


def _require_root(session: Session) -> Authority:
    root = _root(session)
    if root is None:
        raise NotPermitted("Tegata is not initialised: run `tegata init` first")
    return root


def _tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        raise NotFound(f"no tenant {name[:64]!r}", field="tenant")
    return tenant


def _issuing(session: Session, tenant: Tenant) -> Authority:
    authority = session.scalar(select(Authority).where(
        Authority.tenant_id == tenant.id, Authority.kind == "issuing",
        Authority.retired_at.is_(None)).order_by(Authority.id.desc()).limit(1))
    if authority is None:
        raise NotFound(f"tenant {tenant.name!r} has no issuing CA")
    return authority


def _user_or_none(session: Session, tenant: Tenant, login: str) -> User | None:
    return session.scalar(select(User).where(User.tenant_id == tenant.id,
                                             User.login_key == login.lower()))


def _user(session: Session, tenant: Tenant, login: str) -> User:
    user = _user_or_none(session, tenant, login)
    if user is None:
        raise NotFound(f"{tenant.name}: no user {login[:64]!r}", field="login")
    return user


def _check_may_issue(tenant: Tenant, user: User, *, now: dt.datetime) -> None:
    if user.status != "active":
        raise NotPermitted(f"{user.login}: the user is retired", field="login")
    if not user.secure_access:
        raise NotPermitted(f"{user.login}: the user has no secure-access permission; allow it "
                           "first", field="login")
    if tenant.subscription_ends_at is not None and tenant.subscription_ends_at <= now:
        raise NotPermitted(f"tenant {tenant.name}: the subscription ended on "
                           f"{tenant.subscription_ends_on}; no certificates can be issued")


def _unused_serial(session: Session, issuing: Authority) -> int:
    """A random serial (RFC 5280, 4.1.2.2: positive, at most 20 octets, 64+ bits of entropy)
    not yet used by this issuer."""
    while True:
        serial = x509.random_serial_number()
        taken = session.scalar(select(func.count()).select_from(Certificate).where(
            Certificate.authority_id == issuing.id,
            Certificate.serial == serials.to_text(serial)))
        if not taken:
            return serial


def _new_key_id(kind: str) -> str:
    return f"{kind}-{secrets.token_hex(8)}"


def _authority_row(cert: x509.Certificate, *, kind: str, key_id: str, tenant: Tenant | None,
                   issuer_id: int | None, now: dt.datetime) -> Authority:
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return Authority(
        tenant=tenant, issuer_id=issuer_id, kind=kind, key_id=key_id,
        subject=cert.subject.rfc4514_string(), serial=serials.to_text(cert.serial_number),
        ski=ski.hex().upper(), der=cert.public_bytes(serialization.Encoding.DER),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        created_at=now)


def _ca_view(row: Authority, tenant: str | None) -> CAView:
    return CAView(tenant=tenant, kind=row.kind, subject=row.subject, serial=row.serial,
                  not_before=row.not_before, not_after=row.not_after, der=row.der)


def _cert_view(row: Certificate, tenant: str, login: str, *, now: dt.datetime) -> CertificateView:
    return CertificateView(
        serial=row.serial, tenant=tenant, login=login, subject=row.subject,
        not_before=row.not_before, not_after=row.not_after, expiry_date=row.expiry_date,
        expiry_zone=row.expiry_zone, state=state_of(row, now=now),
        fingerprint_sha256=row.fingerprint_sha256, key_type=row.key_type, source=row.source,
        der=row.der)
