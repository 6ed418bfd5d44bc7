"""What is decided before a request's body is read.

FastAPI reads a route's whole body, and parses it as JSON, on the event loop before any
dependency runs, so ``RoleGuard`` would refuse a token-less 60 MB JSON array only after
seconds of parsing it on the loop. Hence, before the route:

- a request to a route that requires a token, sent without ``Authorization: Bearer …``, is
  answered 401 by the route's own guard (the same problem, counted by the failed-
  authentication limit in the same way) without its body being read;
- a body that FastAPI would read whole (the route declares a body model) may hold at most
  ``MAX_JSON_BYTES``: refused with 413 from its Content-Length, or once a chunked body
  passes it. Routes that stream their body (CSV import, OCSP) keep ``MAX_BODY_BYTES``.
"""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from api import problems
from api.auth import RoleGuard, TooManyFailures, declared_access
from api.clientip import client_ip
from ca.errors import CAError

MAX_JSON_BYTES = 1024 * 1024  # the largest JSON body the API takes is a few kilobytes


def _bearer(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return scheme.lower() == b"bearer" and bool(token.strip())
    return False


def _declared(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class BeforeTheBody:
    """The token check and the JSON cap above, in front of the routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: list[tuple[APIRoute, RoleGuard | None]] | None = None

    def _route(self, scope: Scope) -> tuple[APIRoute, RoleGuard | None] | None:
        if self._routes is None:  # the app's routes, once they are all in
            from api.app import api_routes

            self._routes = [(r, g if isinstance(g := declared_access(r), RoleGuard) else None)
                            for r in api_routes(scope["app"])]
        for route, guard in self._routes:
            if route.matches(scope)[0] == Match.FULL:
                return route, guard
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self._route(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        route, guard = found
        if guard is not None and not _bearer(scope):
            request = Request(scope)
            try:  # raises: no token is a failed authentication, or the address must wait
                await run_in_threadpool(guard.admit, scope["app"].state,
                                        client_ip(request) or "-", "", None)
            except CAError as exc:
                await problems.domain_problem(exc)(scope, receive, send)
                return
            except TooManyFailures as exc:
                await problems.too_many_problem(exc)(scope, receive, send)
                return
        if route.body_field is None:
            await self.app(scope, receive, send)
            return
        declared = _declared(scope)
        if declared is not None and declared > MAX_JSON_BYTES:
            await problems.problem(413, "request-too-large", "Request too large",
                                   f"a JSON body may hold at most {MAX_JSON_BYTES} bytes"
                                   )(scope, receive, send)
            return
        from api.app import BodyLimit

        await BodyLimit(self.app, MAX_JSON_BYTES)(scope, receive, send)
