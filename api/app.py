"""The composition root of the HTTP service: ``build_app(settings)``."""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.routing import BaseRoute

from api import problems
from api.auth import declared_access
from api.routes import (
    certificates,
    health,
    jobs,
    me,
    ocsp,
    publish,
    revocation,
    selfservice,
    tenants,
    users,
)
from ca.service import Service
from ca.settings import Settings

# FastAPI's own documentation routes; everything else must declare its roles
FRAMEWORK_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect"}


class RequestId(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request.state.request_id = secrets.token_hex(8)
        response = await call_next(request)
        response.headers["X-Request-Id"] = request.state.request_id
        return response


def build_app(settings: Settings, *, service: Service | None = None) -> FastAPI:
    app = FastAPI(title="Tegata", version="0.1.0", redoc_url=None,
                  description="A private certificate authority for per-user client "
                              "certificates.")
    app.state.service = service or Service(settings)
    problems.install(app)
    app.add_middleware(RequestId)
    for router in (health.router, me.router, tenants.router, users.router,
                   certificates.router, revocation.router, jobs.router, publish.router,
                   selfservice.router, ocsp.router):
        app.include_router(router)
    check_routes_declare_access(app)
    return app


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of the app, looking into included routers."""
    found: list[APIRoute] = []
    stack: list[BaseRoute] = list(app.routes)
    while stack:
        route = stack.pop(0)
        if isinstance(route, APIRoute):
            found.append(route)
            continue
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.16x includes lazily
        if inner is not None:
            stack.extend(inner.routes)
        elif getattr(route, "path", None) not in FRAMEWORK_ROUTES:
            raise RuntimeError(f"route {getattr(route, 'path', route)!r} is not an API route")
    return found


def check_routes_declare_access(app: FastAPI) -> None:
    """Default deny: a route that declares no roles (nor ``public()``) stops the app."""
    for route in api_routes(app):
        if declared_access(route) is None:
            raise RuntimeError(f"route {route.path} declares no roles: add requires(...) "
                               "or public()")
