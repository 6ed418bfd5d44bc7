"""Who may call what. Every route declares its roles with ``requires(...)`` or ``public()``;
``build_app`` refuses to start with a route that declares neither (default deny)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute

from ca.errors import AuthenticationFailed, Forbidden, NotFound
from ca.service import Principal, Service

ROLES = ("operator", "admin", "user", "gateway")


class RoleGuard:
    """A dependency admitting bearer tokens of the given roles, scoped to the path's tenant."""

    def __init__(self, roles: tuple[str, ...]) -> None:
        unknown = set(roles) - set(ROLES)
        if not roles or unknown:
            raise ValueError(f"bad roles {roles!r}")
        self.roles = roles

    async def __call__(self, request: Request) -> Principal:
        service: Service = request.app.state.service
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("send an API token as 'Authorization: Bearer <token>'")
        principal = service.authenticate(token.strip())
        tenant = request.path_params.get("tenant")
        if tenant is not None and principal.role != "operator" and principal.tenant != tenant:
            # another tenant's objects answer as if absent
            raise NotFound(f"no tenant {str(tenant)[:64]!r}", field="tenant")
        if principal.role not in self.roles:
            raise Forbidden(f"a {principal.role} token may not do this")
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
