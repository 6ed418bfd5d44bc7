"""Web console sessions: an admin or operator token, pasted once at sign-in, is exchanged
for a server-side session, whose secret travels only in a cookie.

Why this scheme: Tegata's admins already hold scoped, expiring, revocable API tokens, stored
only as hashes; a console password would be a second credential to issue, store, reset and
audit for the same people. The token crosses the wire once, in a POST body, never in a URL;
the session's secret (256 bits from the OS) is kept as its SHA-256, like a token's. A
session lasts while it is used (``IDLE`` without a request ends it), ends on sign-out, and
ends with its token: a revoked or expired token, or its user retired, signs the console out
at its next request. The CSRF value of a session is derived from its secret
(``csrf_of``), so it needs no storage and a page's form value tells nothing of the cookie.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from ca import audit
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db.models import ApiToken, ConsoleSession, Tenant, User
from ca.errors import AuthenticationFailed, Forbidden
from ca.service.plumbing import Database
from ca.service.tokens import Tokens
from ca.service.views import Principal

IDLE = dt.timedelta(minutes=30)  # a session unused this long has ended
# its last request is written at most this often: not a write for every page
SEEN_EVERY = dt.timedelta(minutes=1)
CONSOLE_ROLES = ("operator", "admin")  # who may sign in to the console


@dataclass(frozen=True, kw_only=True)
class SessionView:
    id: int
    principal: Principal
    csrf: str
    last_seen_at: dt.datetime


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def csrf_of(secret: str) -> str:
    """The session's CSRF value: an HMAC of a fixed label under the secret, so it proves the
    cookie's holder rendered the form and gives nothing of the cookie away."""
    return hmac.new(secret.encode("utf-8", "surrogateescape"), b"tegata console csrf",
                    hashlib.sha256).hexdigest()


class ConsoleSessions:
    """Sign in (a token for a session), resume a session on each request, sign out."""

    def __init__(self, *, database: Database, clock: Clock, tokens: Tokens) -> None:
        self.database = database
        self.clock = clock
        self.tokens = tokens

    def sign_in(self, token: str, *, source_ip: str | None) -> tuple[str, SessionView]:
        """A new session for ``token`` (an admin's or the operator's); its secret is returned
        once. A failure is audited (without the token) and raises ``AuthenticationFailed``
        or ``Forbidden``."""
        now = self.clock.now()
        actor = Actor(name="console", source_ip=source_ip)
        try:
            principal = self.tokens.authenticate(token)
            if principal.role not in CONSOLE_ROLES:
                raise Forbidden(f"a {principal.role} token cannot sign in to the console; "
                                "use an admin or operator token")
        except (AuthenticationFailed, Forbidden) as exc:
            with self.database.transaction() as session:
                audit.record(session, actor, Event(
                    action="console.sign-in", target="console", outcome="failure",
                    details={"reason": exc.message}), now=now)
            raise
        secret = secrets.token_urlsafe(32)
        with self.database.transaction() as session:
            row = ConsoleSession(secret_hash=secret_digest(secret), token_id=principal.token_id,
                                 created_at=now, last_seen_at=now, source_ip=source_ip)
            session.add(row)
            session.flush()
            tenant_id = session.scalar(select(ApiToken.tenant_id).where(
                ApiToken.id == principal.token_id))
            audit.record(session, principal.actor(source_ip=source_ip), Event(
                action="console.sign-in", target=f"session:{row.id}", tenant_id=tenant_id),
                now=now)
            view = SessionView(id=row.id, principal=principal, csrf=csrf_of(secret),
                               last_seen_at=now)
        return secret, view

    def resume(self, secret: str) -> SessionView:
        """The session a cookie holds, if it is still in force; ``AuthenticationFailed``
        otherwise. A read, and a write at most once per ``SEEN_EVERY``."""
        if not secret or len(secret) > 100:
            raise AuthenticationFailed("no console session")
        now = self.clock.now()
        with self.database.reading() as session:
            row = session.execute(_RESUMING, {"digest": secret_digest(secret)}).first()
        if row is None or row.ended_at is not None:
            raise AuthenticationFailed("no console session")
        if now - row.last_seen_at >= IDLE:
            raise AuthenticationFailed("the console session has ended after 30 minutes idle")
        if row.revoked_at is not None or (row.expires_at is not None
                                          and row.expires_at <= now) \
                or row.user_status == "retired":
            raise AuthenticationFailed("the session's token no longer works")
        principal = Principal(token_id=row.token_id, name=row.name, role=row.role,
                              tenant=row.tenant, login=row.login, timezone=row.timezone)
        if now - row.last_seen_at >= SEEN_EVERY:
            with self.database.transaction() as session:
                session.execute(update(ConsoleSession).where(
                    ConsoleSession.id == row.id, ConsoleSession.ended_at.is_(None))
                    .values(last_seen_at=now))
        return SessionView(id=row.id, principal=principal, csrf=csrf_of(secret),
                           last_seen_at=now)

    def sign_out(self, secret: str, *, actor: Actor) -> None:
        """End the session (idempotent: a second sign-out changes nothing)."""
        now = self.clock.now()
        with self.database.transaction() as session:
            row = session.scalar(select(ConsoleSession).where(
                ConsoleSession.secret_hash == secret_digest(secret)))
            if row is None or row.ended_at is not None:
                return
            row.ended_at = now
            tenant_id = session.scalar(select(ApiToken.tenant_id).where(
                ApiToken.id == row.token_id))
            audit.record(session, actor, Event(action="console.sign-out",
                                               target=f"session:{row.id}",
                                               tenant_id=tenant_id), now=now)


# what ``resume`` reads of a session, its token, the token's tenant and user
_RESUMING = (
    select(ConsoleSession.id, ConsoleSession.token_id, ConsoleSession.last_seen_at,
           ConsoleSession.ended_at, ApiToken.name, ApiToken.role, ApiToken.timezone,
           ApiToken.revoked_at, ApiToken.expires_at, Tenant.name.label("tenant"),
           User.login.label("login"), User.status.label("user_status"))
    .join(ApiToken, ConsoleSession.token_id == ApiToken.id)
    .outerjoin(Tenant, ApiToken.tenant_id == Tenant.id)
    .outerjoin(User, ApiToken.user_id == User.id)
    .where(ConsoleSession.secret_hash == bindparam("digest")))
