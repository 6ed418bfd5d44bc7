"""The composition root of the HTTP service: ``build_app(settings)``, the one stack that
``tegata serve`` runs in every worker and that tests drive.

The rule for everything under ``api/``: **the event loop only waits on the network.** The
synchronous core (``Service``: the database, signing, key generation, file I/O) never runs
on the loop's thread, where one SQLite writer holding its lock for 10 s would stop every
request, ``/healthz`` included, for 10 s.

- A route that calls the service is a plain ``def``: FastAPI runs it in its thread pool.
- An ``async def`` route (it streams a request body, say) hands each service call to
  ``run_in_threadpool``; a dependency does the same (``api.auth.RoleGuard``).
- A streamed response made by the core goes through ``api.streams.ClosingStream``.
- Middleware and exception handlers touch no service, file or database.

``tests/api/test_event_loop.py`` holds every route to it (a ``Service`` that refuses calls
made on the loop's thread, driven through every route and role) and shows what it buys: a
held write lock stops neither ``/healthz`` nor an authenticated read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import console, problems
from api.auth import KnownGood, declared_access, failure_limit, token_limit
from api.conditional import Conditional
from api.console.frame import ConsoleRoute
from api.early import BeforeTheBody
from api.fastpath import OcspFastPath
from api.hostturn import HostTurn
from api.metrics import REGISTRY
from api.openapi import complete
from api.routes import (
    audit,
    certificates,
    crl,
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
    status,
    tenants,
    tokens,
    users,
)
from api.sharedmetrics import WorkerShare
from api.traffic import AccessLog, SlowBody
from ca import parallel
from ca.errors import Conflict
from ca.service import Service, build_service
from ca.service.lifecycle import LifecycleReport
from ca.service.limits import limits_engine
from ca.settings import Settings

# FastAPI's own documentation routes; everything else must declare its roles
FRAMEWORK_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect"}


# streamed bodies (CSV imports, OCSP); a body FastAPI reads whole: api.early.MAX_JSON_BYTES
MAX_BODY_BYTES = 64 * 1024 * 1024
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
DOCS_PATHS = ("/docs", "/openapi.json")  # the API browser loads its own scripts


class Hardening:
    """A request id on every response, security headers, and a cap on declared body size.
    Plain ASGI (Starlette's ``BaseHTTPMiddleware`` runs each request in a task group with
    memory streams: about 0.25 ms of CPU a request, 7% of an issuance's)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id  # request.state.request_id
        docs = scope["path"].startswith(DOCS_PATHS)

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Request-Id"] = request_id
                for name, value in SECURITY_HEADERS.items():
                    if name == "Content-Security-Policy" and docs:
                        continue
                    headers.setdefault(name, value)
            await send(message)

        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            response: Response = problems.problem(
                413, "request-too-large", "Request too large",
                f"the body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")
            await response(scope, receive, marked)
            return
        await self.app(scope, receive, marked)


class BodyLimit:
    """The same cap on a body sent without Content-Length (chunked): counted as it arrives,
    refused with 413 once past the cap, before the route holds it all in memory."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # FastAPI passes an HTTPException on; problems maps it to a 413 problem
                    raise HTTPException(413, f"the body is larger than "
                                             f"{self.limit // (1024 * 1024)} MB")
            return message

        await self.app(scope, counted, send)


log = logging.getLogger("tegata.lifecycle")


def lifecycle_tick(service: Service, turn: HostTurn) -> LifecycleReport | None:
    """One tick of the loop, in a thread: the run, if this worker has the host's turn
    (``api.hostturn``); None if another worker of this host has it."""
    if not turn.mine():
        return None
    return service.lifecycle.run()


async def _lifecycle_loop(service: Service, interval: int, turn: HostTurn) -> None:
    """Subscription ends, grace ends, expiry and CRL renewal, every ``interval`` seconds:
    what CRL and OCSP publish is right within a minute of each instant."""
    while True:
        try:
            report = await run_in_threadpool(lifecycle_tick, service, turn)
            if report is not None:  # None: another worker of this host runs it
                REGISTRY.count("tegata_lifecycle_runs_total", "success")
                if report.suspended or report.reinstated or report.revoked or report.purged:
                    log.info("lifecycle: %s", report)
        except Conflict as exc:  # another process or replica is running it: not a failure
            log.info("lifecycle: %s", exc.message)
        except Exception:  # the loop must outlive a failed run; the next one retries
            REGISTRY.count("tegata_lifecycle_runs_total", "failure")
            log.exception("lifecycle run failed")
        await asyncio.sleep(interval)


class TegataAPI(FastAPI):
    """The app, whose OpenAPI document names every status each route can answer."""

    def openapi(self) -> dict[str, Any]:
        cached = self.openapi_schema
        document = super().openapi()
        if document is not cached:  # made afresh: complete it once
            complete(document, api_routes(self))
        return document


async def _method_not_allowed(request: Request, _exc: Exception) -> Response:
    """405 naming in ``Allow`` every method of the path (RFC 9110, 15.5.6), where Starlette
    names only those of the first route that matched. The path is the first one matching,
    as in OpenAPI: ``/users/import`` is not ``/users/{login}``."""
    app: FastAPI = request.app
    matching = [r for r in _all_routes(app.routes) if r.matches(request.scope)[0] != Match.NONE]
    path = getattr(matching[0], "path", None) if matching else None
    allowed = sorted({method for route in matching if getattr(route, "path", None) == path
                      for method in getattr(route, "methods", None) or ()})
    return problems.problem(405, "method-not-allowed", "Method not allowed",
                            f"{request.method} is not one of {', '.join(allowed)}",
                            headers={"Allow": ", ".join(allowed)})


def build_app(settings: Settings, *, service: Service | None = None,
              ocsp_fast_path: bool = True) -> FastAPI:
    """The one way the API is assembled: what each worker of ``tegata serve`` builds from the
    same settings, and what tests drive. ``service``: one built by ``build_service`` with a
    test's clock or engine (default: built here from ``settings``). ``ocsp_fast_path=False``
    leaves OCSP to its documented routes (``api.routes.ocsp``), for the tests that compare
    the two."""
    app = _api(settings, service=service or build_service(settings))
    if ocsp_fast_path:
        # added last, so outermost: an OCSP request skips routing, dependencies and middleware
        app.add_middleware(OcspFastPath, service=app.state.service)
    # around the fast path too: its body waits are bounded, its requests counted and logged
    app.add_middleware(SlowBody, timeout=settings.body_timeout_seconds)
    app.add_middleware(AccessLog, enabled=settings.access_log)
    return app


def _api(settings: Settings, *, service: Service) -> FastAPI:
    """The API's routes, state and inner middleware."""
    the_service = service
    share = WorkerShare(settings.data_dir)  # /metrics sums every worker's counters

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        task = None
        turn = HostTurn(settings.data_dir)
        share.start()
        if settings.lifecycle_interval_seconds > 0:
            task = asyncio.create_task(_lifecycle_loop(
                the_service, settings.lifecycle_interval_seconds, turn))
        yield
        if task is not None:
            task.cancel()
        await asyncio.to_thread(parallel.shutdown)  # the bulk workers stop with the server
        turn.release()
        await run_in_threadpool(share.stop)

    app = TegataAPI(title="Tegata", version="0.1.0", redoc_url=None, lifespan=lifespan,
                    description="A private certificate authority for per-user client "
                                "certificates.")
    app.state.service = the_service
    # the limits live in the database, so that every worker and replica shares them
    limits = limits_engine(the_service.engine)
    app.state.auth_failures = failure_limit(limits)
    app.state.good_tokens = KnownGood()
    app.state.token_limiter = token_limit(limits, settings.token_requests_per_minute)
    app.state.link_limiter = selfservice.link_limit(limits)
    app.state.metrics_share = share
    app.state.trusted_proxies = tuple(ipaddress.ip_network(n, strict=False)
                                      for n in settings.trusted_proxies)
    problems.install(app)
    app.add_exception_handler(405, _method_not_allowed)
    app.add_middleware(BeforeTheBody)  # innermost: it matches routes as the router does
    app.add_middleware(BodyLimit)
    app.add_middleware(Hardening)
    app.add_middleware(Conditional)  # HEAD and 304 for whatever the app answers
    for router in (health.router, me.router, tenants.router, users.router,
                   certificates.router, revocation.router, crl.router, jobs.router,
                   publish.router, selfservice.router, ocsp.router, lifecycle.router,
                   status.router, gateway.router,
                   audit.router, tokens.router, metrics.router, *console.ROUTERS):
        app.include_router(router)
    check_routes_declare_access(app)
    return app


def _all_routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Every route, looking into included routers, in the order requests try them."""
    found: list[BaseRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.16x includes lazily
        if inner is not None:
            found.extend(_all_routes(inner.routes))
        else:
            found.append(route)
    return found


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every API route of the app, looking into included routers: the web console's pages
    are not (``console_routes``)."""
    found: list[APIRoute] = []
    for route in _all_routes(app.routes):
        if isinstance(route, ConsoleRoute):
            continue
        if isinstance(route, APIRoute):
            found.append(route)
        elif getattr(route, "path", None) not in FRAMEWORK_ROUTES:
            raise RuntimeError(f"route {getattr(route, 'path', route)!r} is not an API route")
    return found


def console_routes(app: FastAPI) -> list[ConsoleRoute]:
    """Every page of the web console."""
    return [r for r in _all_routes(app.routes) if isinstance(r, ConsoleRoute)]


def check_routes_declare_access(app: FastAPI) -> None:
    """Default deny: a route that declares no roles (nor ``public()``) stops the app."""
    for route in [*api_routes(app), *console_routes(app)]:
        if declared_access(route) is None:
            raise RuntimeError(f"route {route.path} declares no roles: add requires(...) "
                               "or public()")
