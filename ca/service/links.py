"""User self-download: one-time links, and a user's own certificates through a user token.

A link is a random token of 256 bits of which only the SHA-256 is stored. It works once,
until it expires (``link_validity_days``); a newer link for the same user replaces it, and
turning the tenant's switch off withdraws every outstanding link of the tenant.

Redeeming claims the link first, with one conditional UPDATE (``spent_at IS NULL``) committed
before the zip is built: of two concurrent requests, exactly one changes the row, so a link
can never hand out the key twice. Should building the zip then fail, the claim is released.

Each redemption makes the PKCS#12 with a password of its own, made then and shown once on
the page (and written in its zip): two links for one certificate give two passwords, and the
page's "shown only this once" is true. The key stays sealed with the password it was issued
with, which the admin's own downloads keep using.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import secrets
import zipfile
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Result, exists, select, update
from sqlalchemy.orm import Session

from ca import audit, mail, passwords, tokens, validate
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db import queries
from ca.db.models import Certificate, DownloadLink, KeyMaterial, Tenant, User
from ca.errors import CAError, LinkGone, NotFound, NotPermitted, SelfDownloadOff
from ca.key_kept import key_kept_filter
from ca.service.certificates import Certificates
from ca.service.plumbing import Database
from ca.service.views import Bundle, CertificateView
from ca.settings import Settings
from ca.states import State, state_filter
from ca.x509.pkcs12 import Profile

PREFIX = "tdl_"
MAX_TOKEN_LENGTH = 100


@dataclass(frozen=True, kw_only=True)
class CreatedLink:
    """A new link. ``url`` and ``token`` exist only here: the database keeps the hash."""

    url: str = field(repr=False)
    token: str = field(repr=False)
    expires_at: dt.datetime
    tenant: str
    tenant_display_name: str
    login: str
    email: str
    display_name: str
    replaced: int  # the user's earlier links that this one made unusable


@dataclass(frozen=True, kw_only=True)
class LinkInfo:
    """What the link page may show before anything is spent: no key, no password."""

    tenant: str
    tenant_display_name: str
    tenant_timezone: str  # the zone the page shows dates in
    login: str
    display_name: str
    expires_at: dt.datetime
    serial: str
    certificate_not_after: dt.datetime


@dataclass(frozen=True, kw_only=True)
class Redeemed:
    """A spent link's yield: the zip, its PKCS#12, and the password made for this link."""

    info: LinkInfo
    bundle: Bundle = field(repr=False)
    p12: bytes = field(repr=False)
    password: str = field(repr=False)


@dataclass(frozen=True, kw_only=True)
class DownloadSetting:
    tenant: str
    allowed: bool
    links_withdrawn: int


@dataclass(frozen=True, kw_only=True)
class UpnSetting:
    tenant: str
    suffix: str | None  # None: certificates carry no UPN


@dataclass(frozen=True, kw_only=True)
class P12Setting:
    tenant: str
    profile: Profile  # the tenant's default, for bundles of certificates issued without one


@dataclass(frozen=True, kw_only=True)
class _Target:
    """A link and its user and tenant, copied out of the session that read them."""

    link_id: int
    user_id: int
    tenant_id: int
    tenant: str
    tenant_display_name: str
    tenant_timezone: str
    user_download: bool
    login: str
    display_name: str
    email: str
    active: bool
    expires_at: dt.datetime
    spent_at: dt.datetime | None


class Links:
    """One-time download links, and a user's own certificates."""

    def __init__(self, *, settings: Settings, database: Database, clock: Clock,
                 certificates: Certificates) -> None:
        self.settings = settings
        self.database = database
        self.clock = clock
        self.certificates = certificates

    # --- links, for admins -------------------------------------------------------------------

    def create(self, tenant: str, login: str, *,
                    actor: Actor = audit.CLI_ACTOR) -> CreatedLink:
        """A one-time link to the user's newest valid certificate; the user's earlier links
        stop working. Refused unless the tenant allows self-download and there is a key."""
        now = self.clock.now()
        token = PREFIX + secrets.token_urlsafe(32)  # 256 bits from the OS
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            user = queries.user(session, owner, login)
            if not owner.user_download:
                raise NotPermitted(f"tenant {owner.name}: users may not download their own "
                                   "certificate (the tenant setting is off); turn it on first",
                                   field="tenant")
            if user.status != "active":
                raise NotPermitted(f"{user.login}: the user is retired", field="login")
            serial = _newest_downloadable(session, user.id, now=now)
            if serial is None:
                raise NotPermitted(f"{user.login}: no valid certificate with a key to download;"
                                   " issue one first (a certificate issued from a CSR has no "
                                   "key here)", field="login")
            replaced = _withdraw(session, DownloadLink.user_id == user.id, now=now)
            row = DownloadLink(user_id=user.id, token_hash=tokens.digest(token),
                               created_at=now, spent_at=None, failed_attempts=0,
                               expires_at=now + dt.timedelta(days=self.settings.link_validity_days))
            session.add(row)
            session.flush()
            audit.record(session, actor, Event(
                action="link.create", target=f"{owner.name}/{user.login}", tenant_id=owner.id,
                details={"link": row.id, "serial": serial, "replaced": replaced,
                         "expires_at": row.expires_at.isoformat()}), now=now)
            return CreatedLink(
                url=f"{self.settings.public_base_url}/d/{token}", token=token,
                expires_at=row.expires_at, tenant=owner.name,
                tenant_display_name=owner.display_name, login=user.login, email=user.email,
                display_name=user.display_name, replaced=replaced)

    def send(self, tenant: str, login: str, *,
                  actor: Actor = audit.CLI_ACTOR) -> CreatedLink:
        """Create a link and e-mail it to the user. When the mail cannot be sent, the new
        link is withdrawn (nobody has it) and the error says why."""
        mail.check_configured(self.settings)
        created = self.create(tenant, login, actor=actor)
        try:
            mail.send(self.settings, mail.compose(self.settings, mail.LinkMail(
                to_address=created.email, to_name=created.display_name or created.login,
                tenant=created.tenant_display_name or created.tenant, url=created.url,
                expires_at=created.expires_at), now=self.clock.now()))
        except CAError as exc:
            self._after_send(created, actor, error=exc)
            raise
        self._after_send(created, actor, error=None)
        return created

    def set_user_download(self, tenant: str, allowed: bool, *,
                          actor: Actor = audit.CLI_ACTOR) -> DownloadSetting:
        """The tenant setting "users may download their own certificate". Turning it off
        also withdraws every outstanding link, so that turning it on again revives none."""
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            withdrawn = 0
            if owner.user_download != allowed:
                owner.user_download = allowed
                if not allowed:
                    withdrawn = _withdraw(session, DownloadLink.user_id.in_(
                        select(User.id).where(User.tenant_id == owner.id)), now=now)
                audit.record(session, actor, Event(
                    action="tenant.update", target=owner.name, tenant_id=owner.id,
                    details={"user_download": allowed, "links_withdrawn": withdrawn}), now=now)
            return DownloadSetting(tenant=owner.name, allowed=allowed,
                                   links_withdrawn=withdrawn)

    def set_upn_suffix(self, tenant: str, suffix: str | None, *,
                       actor: Actor = audit.CLI_ACTOR) -> UpnSetting:
        """The tenant's UPN suffix: certificates issued from now on carry the Windows UPN
        ``<login>@<suffix>`` in their SAN (those issued before keep what they have).
        ``None`` clears it. A suffix that is not a DNS domain name is refused."""
        cleaned = None if suffix is None else validate.upn_suffix(suffix)
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            previous = owner.upn_suffix
            if previous != cleaned:
                owner.upn_suffix = cleaned
                audit.record(session, actor, Event(
                    action="tenant.update", target=owner.name, tenant_id=owner.id,
                    details={"upn_suffix": cleaned, "previous_upn_suffix": previous}),
                    now=now)
            return UpnSetting(tenant=owner.name, suffix=cleaned)

    def set_p12_profile(self, tenant: str, profile: str, *,
                        actor: Actor = audit.CLI_ACTOR) -> P12Setting:
        """The tenant's default PKCS#12 profile: the third level of ``ca.bundle_profile``
        (a download's choice, else the certificate's own, else this), read at each download,
        so certificates issued without a choice follow it at once. Not compat or modern:
        refused, and nothing changes."""
        chosen = Profile.parse(profile)
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            previous = owner.p12_profile
            if previous != chosen.value:
                owner.p12_profile = chosen.value
                audit.record(session, actor, Event(
                    action="tenant.update", target=owner.name, tenant_id=owner.id,
                    details={"p12_profile": chosen.value, "previous_p12_profile": previous}),
                    now=now)
            return P12Setting(tenant=owner.name, profile=chosen)

    # --- links, for whoever holds one ------------------------------------------------------

    def page_info(self, token: str) -> LinkInfo:
        """Who and what a link is for, without spending it (mail scanners open links)."""
        now = self.clock.now()
        with self.database.reading() as session:
            target = _resolve(session, token)
            refusal = _refusal(session, target, now=now)
            if refusal is not None:
                raise refusal
            return _info(session, target, now=now)

    def redeem(self, token: str, *, source_ip: str | None,
                    request_id: str | None = None) -> Redeemed:
        """Spend the link and hand out the user's newest valid certificate with its key, in
        a PKCS#12 under a password made for this redemption. Audited: ``link.redeem``, then
        ``cert.download`` by the same actor."""
        now = self.clock.now()
        password = passwords.generate()
        with self.database.transaction() as session:
            target = _resolve(session, token)
            actor = Actor(name=f"link:{target.link_id}", source_ip=source_ip,
                          request_id=request_id)
            refusal = _refusal(session, target, now=now)
            info: LinkInfo | None = None
            if refusal is None:
                try:
                    info = _info(session, target, now=now)
                except LinkGone as exc:
                    refusal = exc
            if isinstance(refusal, LinkGone):
                _note_refusal(session, target, refusal, actor, now=now)
        if refusal is not None:
            raise refusal
        assert info is not None
        self._claim(target, info.serial, actor, now=now)
        try:
            made = self.certificates.bundle(info.serial, tenant=target.tenant, actor=actor,
                                            password=password)
        except Exception as exc:  # whatever failed, the user got nothing: not spent
            self._release(target, actor, error=exc, claimed_at=now)
            raise
        with zipfile.ZipFile(io.BytesIO(made.content)) as archive:
            p12 = archive.read(f"{target.login}.p12")
        return Redeemed(info=info, bundle=made, p12=p12, password=password)

    # --- a user's own certificates (user tokens) -------------------------------------------

    def my_certificates(self, tenant: str, login: str) -> list[CertificateView]:
        """The user's own certificates, newest first (no key material: listing is allowed
        whatever the tenant setting)."""
        return self.certificates.list_certificates(tenant, login=login)

    def my_bundle(self, tenant: str, login: str, serial: str, *, profile: str | None = None,
                  actor: Actor = audit.CLI_ACTOR) -> Bundle:
        """The user's zip for one of their own certificates. Another user's serial answers
        exactly as an absent one."""
        with self.database.reading() as session:
            owner = queries.tenant(session, tenant)
            if not owner.user_download:
                raise SelfDownloadOff(_switch_off(owner.display_name or owner.name))
        view = self.certificates.get(serial, tenant=tenant)
        if view.login.lower() != login.lower():
            raise NotFound(f"no certificate with serial {view.serial}", field="serial")
        return self.certificates.bundle(view.serial, tenant=tenant, profile=profile, actor=actor)

    # --- the steps -------------------------------------------------------------------------

    def _claim(self, target: _Target, serial: str, actor: Actor, *, now: dt.datetime) -> None:
        """Mark the link spent, or raise ``LinkGone`` when another request did first. The
        UPDATE is the transaction's first statement: SQLite then takes its write lock before
        reading, and PostgreSQL re-checks the WHERE once the other writer commits."""
        refusal: LinkGone | None = None
        with self.database.transaction() as session:
            claimed = _rowcount(session.execute(
                update(DownloadLink)
                .where(DownloadLink.id == target.link_id, DownloadLink.spent_at.is_(None),
                       DownloadLink.expires_at > now)
                .values(spent_at=now).execution_options(synchronize_session=False)))
            if claimed == 1:
                audit.record(session, actor, Event(
                    action="link.redeem", target=f"{target.tenant}/{target.login}",
                    tenant_id=target.tenant_id,
                    details={"link": target.link_id, "serial": serial}), now=now)
            else:
                spent = session.scalar(select(DownloadLink.spent_at).where(
                    DownloadLink.id == target.link_id))
                refusal = _used() if spent is not None else _stopped(session, target)
                _note_refusal(session, target, refusal, actor, now=now)
        if refusal is not None:
            raise refusal

    def _release(self, target: _Target, actor: Actor, *, error: Exception,
                 claimed_at: dt.datetime) -> None:
        """The zip could not be built: the link works again (unless it was replaced)."""
        # the original error matters more than a failed release: report that one
        with contextlib.suppress(CAError), self.database.transaction() as session:
            session.execute(
                update(DownloadLink)
                .where(DownloadLink.id == target.link_id, DownloadLink.spent_at == claimed_at)
                .values(spent_at=None).execution_options(synchronize_session=False))
            audit.record(session, actor, Event(
                action="link.redeem", target=f"{target.tenant}/{target.login}",
                tenant_id=target.tenant_id, outcome="failure",
                details={"link": target.link_id, "released": True,
                         "error": error.code if isinstance(error, CAError)
                         else type(error).__name__}),
                now=self.clock.now())

    def _after_send(self, created: CreatedLink, actor: Actor, *,
                    error: CAError | None) -> None:
        now = self.clock.now()
        with self.database.transaction() as session:
            owner = queries.tenant(session, created.tenant)
            details: dict[str, Any] = {"to": created.email}
            if error is not None:
                # nobody received the link: withdraw it
                details["withdrawn"] = _withdraw(
                    session, DownloadLink.token_hash == tokens.digest(created.token), now=now)
                details["error"] = error.message
            audit.record(session, actor, Event(
                action="link.send", target=f"{owner.name}/{created.login}", tenant_id=owner.id,
                outcome="success" if error is None else "failure", details=details), now=now)


# --- queries (take a session, never commit) ---------------------------------------------------


def _resolve(session: Session, token: str) -> _Target:
    unknown = NotFound("no such download link; check that the whole address was copied")
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_LENGTH:
        raise unknown
    row = session.execute(
        select(DownloadLink, User, Tenant)
        .join(User, DownloadLink.user_id == User.id)
        .join(Tenant, User.tenant_id == Tenant.id)
        .where(DownloadLink.token_hash == tokens.digest(token))).one_or_none()
    if row is None:
        raise unknown
    link, user, owner = row
    return _Target(link_id=link.id, user_id=user.id, tenant_id=owner.id, tenant=owner.name,
                   tenant_display_name=owner.display_name, tenant_timezone=owner.timezone,
                   user_download=owner.user_download,
                   login=user.login, display_name=user.display_name, email=user.email,
                   active=user.status == "active", expires_at=link.expires_at,
                   spent_at=link.spent_at)


def _refusal(session: Session, target: _Target, *, now: dt.datetime) -> CAError | None:
    """Why the link cannot be used now, if it cannot. The tenant's switch comes first: while
    it is off, that is the one thing worth telling the user."""
    if not target.user_download:
        return SelfDownloadOff(_switch_off(target.tenant_display_name or target.tenant))
    if target.spent_at is not None:
        return _used()
    if target.expires_at <= now:
        return _stopped(session, target)
    if not target.active:
        return LinkGone("the user of this link is retired; there is nothing to download",
                        reason="retired")
    return None


def _info(session: Session, target: _Target, *, now: dt.datetime) -> LinkInfo:
    serial = _newest_downloadable(session, target.user_id, now=now)
    if serial is None:
        raise LinkGone("there is no valid certificate to download any more; ask your "
                       "administrator", reason="nothing")
    not_after = session.scalar(select(Certificate.not_after).where(
        Certificate.user_id == target.user_id, Certificate.serial == serial))
    assert not_after is not None
    return LinkInfo(tenant=target.tenant, tenant_display_name=target.tenant_display_name,
                    tenant_timezone=target.tenant_timezone or "UTC",
                    login=target.login, display_name=target.display_name,
                    expires_at=target.expires_at, serial=serial,
                    certificate_not_after=not_after)


def _newest_downloadable(session: Session, user_id: int, *, now: dt.datetime) -> str | None:
    """The serial of the user's newest valid certificate that still has its key."""
    has_key = exists().where(KeyMaterial.certificate_id == Certificate.id,
                             key_kept_filter())
    return session.scalar(
        select(Certificate.serial)
        .where(Certificate.user_id == user_id, state_filter(State.VALID.value, now=now), has_key)
        .order_by(Certificate.id.desc()).limit(1))


def _withdraw(session: Session, which: ColumnElement[bool], *, now: dt.datetime) -> int:
    """Make the outstanding links matching ``which`` expire now; how many there were."""
    return _rowcount(session.execute(
        update(DownloadLink)
        .where(which, DownloadLink.spent_at.is_(None), DownloadLink.expires_at > now)
        .values(expires_at=now).execution_options(synchronize_session=False)))


def _note_refusal(session: Session, target: _Target, refusal: LinkGone, actor: Actor, *,
                  now: dt.datetime) -> None:
    """A used or expired link tried again: counted and audited, for the admin to notice a
    link that someone else may also have."""
    session.execute(
        update(DownloadLink).where(DownloadLink.id == target.link_id)
        .values(failed_attempts=DownloadLink.failed_attempts + 1)
        .execution_options(synchronize_session=False))
    audit.record(session, actor, Event(
        action="link.redeem", target=f"{target.tenant}/{target.login}",
        tenant_id=target.tenant_id, outcome="refused",
        details={"link": target.link_id, "reason": refusal.message}), now=now)


def _rowcount(result: Result[Any]) -> int:
    assert isinstance(result, CursorResult)  # what an UPDATE gives back
    return result.rowcount


def _used() -> LinkGone:
    return LinkGone("this link has already been used; ask your administrator for a new one",
                    reason="used")


def _stopped(session: Session, target: _Target) -> LinkGone:
    """An unspent link past its end: replaced, when the user has a newer link (made after
    it, which withdrew it); otherwise expired, or withdrawn by the tenant's switch or a
    failed mail, which the row does not tell apart from expiry."""
    newer = session.scalar(select(DownloadLink.id).where(
        DownloadLink.user_id == target.user_id, DownloadLink.id > target.link_id).limit(1))
    if newer is not None:
        return LinkGone("a newer link was made for this user, which withdrew this one; use "
                        "the newest link", reason="replaced")
    return LinkGone("the link has expired or was withdrawn; ask your administrator for a new "
                    "one", reason="expired")


def _switch_off(tenant: str) -> str:
    return f"downloading your own certificate is turned off for {tenant}; ask your administrator"
