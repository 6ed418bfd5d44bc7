"""API tokens: created here, shown once, stored as a hash; authentication."""

from __future__ import annotations

import datetime as dt
import logging
import secrets

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from ca import audit, expiry, tokens, validate
from ca.audit import Actor, Event
from ca.clock import Clock
from ca.db import queries
from ca.db.models import ApiToken, Tenant, User
from ca.errors import (
    AuthenticationFailed,
    InvalidInput,
    NotFound,
    NotPermitted,
    StorageError,
)
from ca.service.plumbing import Database
from ca.service.views import Principal, TokenView

log = logging.getLogger("tegata.tokens")

# a token's last use is written at most this often: a write per request would take the write
# lock (on SQLite, the whole database's) for every authenticated request
LAST_USE_EVERY = dt.timedelta(minutes=1)


class Tokens:
    """API tokens: created, listed, revoked, and checked on every request."""

    def __init__(self, *, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    def create(self, *, role: str, tenant: str | None = None, login: str | None = None,
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
        now = self.clock.now()
        text = tokens.generate()
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant) if tenant else None
            user = queries.user(session, owner, login) if owner and login else None
            if user is not None and user.status == "retired":
                raise NotPermitted(f"{tenant}/{user.login} is retired: a "
                                   "retired user gets no token", field="user")
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

    def list_tokens(self, *, tenant: str | None = None) -> list[TokenView]:
        """Tokens (never their text): name, role, scope, expiry, revocation, last use."""
        with self.database.reading() as session:
            query = select(ApiToken).order_by(ApiToken.id)
            if tenant is not None:
                query = query.where(ApiToken.tenant_id == queries.tenant(session, tenant).id)
            return [TokenView(id=t.id, name=t.name, role=t.role,
                              tenant=t.tenant.name if t.tenant else None,
                              login=t.user.login if t.user else None, prefix=t.prefix,
                              expires_at=t.expires_at, revoked_at=t.revoked_at,
                              last_used_at=t.last_used_at)
                    for t in session.scalars(query)]

    def get(self, token_id: int, *, tenant: str | None = None) -> TokenView:
        """One token (never its text); with ``tenant``, only a token of that tenant, another
        tenant's or an operator's answering as absent (as ``revoke`` does)."""
        with self.database.reading() as session:
            row = session.get(ApiToken, token_id) if 1 <= token_id <= tokens.ID_MAX else None
            if row is None or (tenant is not None and (
                    row.tenant is None or row.tenant.name != tenant)):
                raise NotFound(f"no token {token_id}", field="token")
            return TokenView(id=row.id, name=row.name, role=row.role,
                             tenant=row.tenant.name if row.tenant else None,
                             login=row.user.login if row.user else None, prefix=row.prefix,
                             expires_at=row.expires_at, revoked_at=row.revoked_at,
                             last_used_at=row.last_used_at)

    def revoke(self, token_id: int, *, tenant: str | None = None,
                     actor: Actor = audit.CLI_ACTOR) -> None:
        """Stop a token working at once; with ``tenant``, only a token of that tenant."""
        now = self.clock.now()
        with self.database.transaction() as session:
            row = session.get(ApiToken, token_id) if 1 <= token_id <= tokens.ID_MAX else None
            if row is None or (tenant is not None and (
                    row.tenant is None or row.tenant.name != tenant)):
                raise NotFound(f"no token {token_id}", field="token")
            # one conditional write: of revocations at once, only the first changes the row
            # (the others wait for its lock, then find it revoked) and records the event
            done = session.execute(
                update(ApiToken).where(ApiToken.id == row.id, ApiToken.revoked_at.is_(None))
                .values(revoked_at=now).execution_options(synchronize_session=False))
            if done.rowcount == 1:  # type: ignore[attr-defined]
                audit.record(session, actor, Event(action="token.revoke",
                                                   target=f"token:{row.id}",
                                                   tenant_id=row.tenant_id), now=now)

    def authenticate(self, token: str) -> Principal:
        """The principal a bearer token speaks for; ``AuthenticationFailed`` otherwise.

        A read, which never waits for a writer. The token's last use is written at most
        once per ``LAST_USE_EVERY``: a burst of requests does not take the write lock (on
        SQLite, the whole database's) each time."""
        if not token.startswith(tokens.PREFIX) or len(token) > 200:
            raise AuthenticationFailed("unknown token")
        now = self.clock.now()
        digest = tokens.digest(token)
        with self.database.reading() as session:
            # one statement, the columns alone (no ORM objects built: this runs on every
            # request): the token with its tenant's name and its user's login and status
            row = session.execute(_AUTHENTICATING, {"digest": digest}).first()
        if row is None or not secrets.compare_digest(row.token_hash, digest):
            raise AuthenticationFailed("unknown token")
        if row.revoked_at is not None:
            raise AuthenticationFailed("the token has been revoked")
        if row.expires_at is not None and row.expires_at <= now:
            raise AuthenticationFailed("the token has expired")
        # retiring revokes the user's tokens; this holds even for one that was missed
        # (a user retired before that rule, or a row changed by hand)
        if row.user_status == "retired":
            raise AuthenticationFailed("the token's user has been retired")
        principal = Principal(token_id=row.id, name=row.name, role=row.role,
                              tenant=row.tenant, login=row.login, timezone=row.timezone)
        if last_use_due(row.last_used_at, now=now):
            self._record_use(row.id, now=now)
        return principal

    def _record_use(self, token_id: int, *, now: dt.datetime) -> None:
        """Last use, by a conditional UPDATE (of several workers finding it due at once,
        one writes). It is a record for people and never decides access: a database too
        busy to take it leaves it to the next request, and the request goes on."""
        try:
            with self.database.transaction() as session:
                session.execute(update(ApiToken).where(
                    ApiToken.id == token_id,
                    or_(ApiToken.last_used_at.is_(None),
                        ApiToken.last_used_at <= now - LAST_USE_EVERY),
                ).values(last_used_at=now))
        except StorageError as exc:
            log.warning("token %d: last use not recorded (%s)", token_id, exc.message)


def last_use_due(last_used_at: dt.datetime | None, *, now: dt.datetime) -> bool:
    """Whether a use at ``now`` is to be written (the Python form of ``_record_use``'s
    WHERE, which decides among workers)."""
    return last_used_at is None or now - last_used_at >= LAST_USE_EVERY


# --- queries (take a session, never commit) ---------------------------------------------------


# what ``authenticate`` reads of a token, its tenant and its user
_AUTHENTICATING = (
    select(ApiToken.id, ApiToken.token_hash, ApiToken.name, ApiToken.role, ApiToken.timezone,
           ApiToken.revoked_at, ApiToken.expires_at, ApiToken.last_used_at,
           Tenant.name.label("tenant"), User.login.label("login"),
           User.status.label("user_status"))
    .outerjoin(Tenant, ApiToken.tenant_id == Tenant.id)
    .outerjoin(User, ApiToken.user_id == User.id)
    .where(ApiToken.token_hash == bindparam("digest")))


def revoke_user_tokens(session: Session, user: User, actor: Actor, *, cause: str,
                       now: dt.datetime) -> int:
    """Revoke every token of ``user`` still in force, each one audited; the number revoked."""
    rows = session.scalars(select(ApiToken).where(
        ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)).all()
    for row in rows:
        row.revoked_at = now
        audit.record(session, actor, Event(action="token.revoke", target=f"token:{row.id}",
                                           tenant_id=row.tenant_id, details={"cause": cause}),
                     now=now)
    return len(rows)
