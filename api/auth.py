"""Who may call what. Every route declares its roles with ``requires(...)`` or ``public()``;
``build_app`` refuses to start with a route that declares neither (default deny)."""

from __future__ import annotations

import datetime as dt
import math
import threading
from collections import deque
from typing import Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from api.clientip import client_ip
from api.ratelimit import RateLimiter
from ca.errors import AuthenticationFailed, Forbidden, NotFound
from ca.service import Principal, Service
from ca.validate import TENANT

ROLES = ("operator", "admin", "user", "gateway")
# failed authentications allowed per client address and window before it must wait
FAILURES_ALLOWED = 20
FAILURE_WINDOW = dt.timedelta(minutes=1)


class TooManyFailures(Exception):
    """A client that keeps sending bad tokens, or a token used faster than its limit:
    answered 429 until it may go on."""

    def __init__(self, retry_after: int,
                 reason: str = "too many failed authentications from this address") -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.reason = reason


class FailureLimiter:
    """Failed authentications per client address, in a sliding window (this process)."""

    def __init__(self, allowed: int = FAILURES_ALLOWED) -> None:
        self.allowed = allowed
        self._failures: dict[str, deque[dt.datetime]] = {}
        self._lock = threading.Lock()

    def check(self, client: str, now: dt.datetime) -> None:
        with self._lock:
            recent = self._recent(client, now)
            if len(recent) >= self.allowed:
                wait = recent[0] + FAILURE_WINDOW - now
                raise TooManyFailures(max(1, int(wait.total_seconds()) + 1))

    def failed(self, client: str, now: dt.datetime) -> None:
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._failures) > 100_000:  # bounded memory under a spray of addresses
                self._failures.clear()

    def _recent(self, client: str, now: dt.datetime) -> deque[dt.datetime]:
        recent = self._failures.setdefault(client, deque())
        while recent and recent[0] <= now - FAILURE_WINDOW:
            recent.popleft()
        return recent


class RoleGuard:
    """A dependency admitting bearer tokens of the given roles, scoped to the path's tenant."""

    def __init__(self, roles: tuple[str, ...]) -> None:
        unknown = set(roles) - set(ROLES)
        if not roles or unknown:
            raise ValueError(f"bad roles {roles!r}")
        self.roles = roles

    async def __call__(self, request: Request) -> Principal:
        service: Service = request.app.state.service
        limiter: FailureLimiter = request.app.state.auth_failures
        client = client_ip(request) or "-"
        now = service.now()
        limiter.check(client, now)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationFailed(
                    "send an API token as 'Authorization: Bearer <token>'")
            principal = service.authenticate(token.strip())
        except AuthenticationFailed:
            limiter.failed(client, now)
            raise
        tenant = request.path_params.get("tenant")
        if tenant is not None and (not TENANT.fullmatch(tenant) or (
                principal.role != "operator" and principal.tenant != tenant)):
            # another tenant's objects answer as if absent, as does a name no tenant can have
            # (which the database may not even take: PostgreSQL text holds no NUL)
            raise NotFound(f"no tenant {str(tenant)[:64]!r}", field="tenant")
        if principal.role not in self.roles:
            raise Forbidden(f"a {principal.role} token may not do this")
        per_token: RateLimiter | None = request.app.state.token_limiter
        # a gateway token answers nginx's sub-request for every client request: not limited
        if per_token is not None and principal.role != "gateway":
            wait = per_token.admit(str(principal.token_id), now=now)
            if wait is not None:
                raise TooManyFailures(max(1, math.ceil(wait)),
                                      "this token has made too many requests; slow down")
        request.state.principal = principal
        return principal


class PublicMarker:
    """A dependency that admits everyone: for health, CA certificates, CRLs and OCSP."""

    roles: tuple[str, ...] = ()

    async def __call__(self) -> None:
        return None


def requires(*roles: str) -> Any:
    return Depends(RoleGuard(roles))


def public() -> Any:
    return Depends(PublicMarker())


def declared_access(route: APIRoute) -> RoleGuard | PublicMarker | None:
    """The guard a route declared, looking through its dependencies."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if isinstance(dep.call, RoleGuard | PublicMarker):
            return dep.call
        stack.extend(dep.dependencies)
    return None
