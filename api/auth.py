"""Who may call what. Every route declares its roles with ``requires(...)`` or ``public()``;
``build_app`` refuses to start with a route that declares neither (default deny)."""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from typing import Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from sqlalchemy import Engine
from starlette.datastructures import State

from api.clientip import client_ip
from ca.errors import AuthenticationFailed, Forbidden, NotFound
from ca.service import Principal, Service
from ca.service.limits import RateBuckets
from ca.tokens import ROLES
from ca.validate import TENANT

# failed authentications allowed per client address at once, and then per minute
FAILURES_ALLOWED = 20


class TooManyFailures(Exception):
    """A client that keeps sending bad tokens, or a token used faster than its limit:
    answered 429 until it may go on."""

    def __init__(self, retry_after: int,
                 reason: str = "too many failed authentications from this address") -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.reason = reason


def failure_limit(engine: Engine, allowed: int = FAILURES_ALLOWED) -> RateBuckets:
    """Failed authentications per client address: ``allowed`` at once, then ``allowed`` a
    minute, counted in the database so that every worker and replica shares them."""
    return RateBuckets(engine, kind="auth-failure", capacity=allowed, per_minute=allowed)


def token_limit(engine: Engine, per_minute: int) -> RateBuckets | None:
    """Requests per API token (``TEGATA_TOKEN_REQUESTS_PER_MINUTE``, 0 for none)."""
    if not per_minute:
        return None
    return RateBuckets(engine, kind="token", capacity=per_minute, per_minute=per_minute)


class KnownGood:
    """The SHA-256 of tokens that authenticated in this process lately (the last
    ``size``): only which way the failure limit counts depends on it, never whether a
    token is accepted (``Tokens.authenticate`` decides that on every request)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, token: object) -> bool:
        if not isinstance(token, str) or not token:
            return False
        with self._lock:
            return hashlib.sha256(token.encode()).digest() in self._seen

    def add(self, token: str) -> None:
        digest = hashlib.sha256(token.encode()).digest()
        with self._lock:
            self._seen[digest] = None
            self._seen.move_to_end(digest)
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)


def _retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))


class AccessDeclaration:
    """What a route declares of who may call it: ``RoleGuard`` (API tokens), ``PublicMarker``,
    or a web console page's guard (``api.console.frame``)."""

    roles: tuple[str, ...]


class RoleGuard(AccessDeclaration):
    """A dependency admitting bearer tokens of the given roles, scoped to the path's tenant.

    Authentication reads the database and may record the token's last use, and each limit is
    a statement: all of it runs in a worker thread, never on the event loop."""

    def __init__(self, roles: tuple[str, ...]) -> None:
        unknown = set(roles) - set(ROLES)
        if not roles or unknown:
            raise ValueError(f"bad roles {roles!r}")
        self.roles = roles

    async def __call__(self, request: Request) -> Principal:
        principal = await run_in_threadpool(
            self.admit, request.app.state, client_ip(request) or "-",
            request.headers.get("authorization", ""), request.path_params.get("tenant"))
        request.state.principal = principal
        return principal

    def admit(self, state: State, client: str, header: str, tenant: str | None) -> Principal:
        """The principal the ``Authorization`` header speaks for, if it may call a route of
        these roles on ``tenant``'s objects; raises otherwise. Blocking: a worker thread's."""
        service: Service = state.service
        failures: RateBuckets = state.auth_failures
        now = service.clock.now()
        # A token not yet known good takes its failure place first, in one atomic
        # statement, and gives it back once good: guesses in flight together cannot all
        # pass a read of the bucket, so no more than FAILURES_ALLOWED ever fail. A token
        # that authenticated here lately (no guess is one) pays only the read, as before.
        # Either way a client over its failure limit waits, even with a good token.
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        known: KnownGood = state.good_tokens
        trusted = token in known
        wait = (failures.wait if trusted else failures.admit)(client, now=now)
        if wait is not None:
            raise TooManyFailures(_retry_after(wait))
        try:
            if not token:
                raise AuthenticationFailed(
                    "send an API token as 'Authorization: Bearer <token>'")
            principal = service.tokens.authenticate(token)
        except Exception as exc:
            if trusted and isinstance(exc, AuthenticationFailed):
                failures.admit(client, now=now)  # a once-good token, now revoked or expired
            elif not trusted and not isinstance(exc, AuthenticationFailed):
                failures.refund(client)  # not a failed authentication: the database, say
            raise
        if not trusted:
            failures.refund(client)
            known.add(token)
        if tenant is not None and (not TENANT.fullmatch(tenant) or (
                principal.role != "operator" and principal.tenant != tenant)):
            # another tenant's objects answer as if absent, as does a name no tenant can have
            # (which the database may not even take: PostgreSQL text holds no NUL)
            raise NotFound(f"no tenant {str(tenant)[:64]!r}", field="tenant")
        if principal.role not in self.roles:
            article = "an" if principal.role in ("admin", "operator") else "a"  # a user
            raise Forbidden(f"{article} {principal.role} token may not do this")
        per_token: RateBuckets | None = state.token_limiter
        # a gateway token answers nginx's sub-request for every client request: not limited
        if per_token is not None and principal.role != "gateway":
            wait = per_token.admit(str(principal.token_id), now=now)
            if wait is not None:
                raise TooManyFailures(_retry_after(wait),
                                      "this token has made too many requests; slow down")
        return principal


class PublicMarker(AccessDeclaration):
    """A dependency that admits everyone: for health, CA certificates, CRLs and OCSP."""

    roles: tuple[str, ...] = ()

    async def __call__(self) -> None:
        return None


def requires(*roles: str) -> Any:
    return Depends(RoleGuard(roles))


def public() -> Any:
    return Depends(PublicMarker())


def declared_access(route: APIRoute) -> AccessDeclaration | None:
    """The guard a route declared, looking through its dependencies."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, AccessDeclaration):
            return dep.call
        stack.extend(dep.dependencies)
    return None
