"""The composition root of the HTTP service: ``build_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.routing import BaseRoute

from api import problems
from api.auth import FailureLimiter, declared_access
from api.metrics import REGISTRY
from api.routes import (
    audit,
    certificates,
    gateway,
    health,
    jobs,
    lifecycle,
    me,
    metrics,
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


MAX_BODY_BYTES = 64 * 1024 * 1024
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
DOCS_PATHS = ("/docs", "/openapi.json")  # the API browser loads its own scripts


class Hardening(BaseHTTPMiddleware):
    """A request id on every response, security headers, and a cap on declared body size."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request.state.request_id = secrets.token_hex(8)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            response: Response = problems.problem(
                413, "request-too-large", "Request too large",
                f"the body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")
        else:
            response = await call_next(request)
        response.headers["X-Request-Id"] = request.state.request_id
        for name, value in SECURITY_HEADERS.items():
            if name == "Content-Security-Policy" and request.url.path.startswith(DOCS_PATHS):
                continue
            response.headers.setdefault(name, value)
        return response


log = logging.getLogger("tegata.lifecycle")


async def _lifecycle_loop(service: Service, interval: int) -> None:
    """Subscription ends, grace ends, expiry and CRL renewal, every ``interval`` seconds:
    what CRL and OCSP publish is right within a minute of each instant."""
    while True:
        try:
            report = await run_in_threadpool(service.run_lifecycle)
            REGISTRY.count("tegata_lifecycle_runs_total", "success")
            if report.suspended or report.reinstated or report.revoked or report.purged:
                log.info("lifecycle: %s", report)
        except Exception:  # the loop must outlive a failed run; the next one retries
            REGISTRY.count("tegata_lifecycle_runs_total", "failure")
            log.exception("lifecycle run failed")
        await asyncio.sleep(interval)


def build_app(settings: Settings, *, service: Service | None = None) -> FastAPI:
    the_service = service or Service(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = None
        if settings.lifecycle_interval_seconds > 0:
            task = asyncio.create_task(_lifecycle_loop(the_service,
                                                       settings.lifecycle_interval_seconds))
        yield
        if task is not None:
            task.cancel()

    app = FastAPI(title="Tegata", version="0.1.0", redoc_url=None, lifespan=lifespan,
                  description="A private certificate authority for per-user client "
                              "certificates.")
    app.state.service = the_service
    app.state.auth_failures = FailureLimiter()
    app.state.trusted_proxies = tuple(ipaddress.ip_network(n, strict=False)
                                      for n in settings.trusted_proxies)
    problems.install(app)
    app.add_middleware(Hardening)
    for router in (health.router, me.router, tenants.router, users.router,
                   certificates.router, revocation.router, jobs.router, publish.router,
                   selfservice.router, ocsp.router, lifecycle.router, gateway.router,
                   audit.router, metrics.router):
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
