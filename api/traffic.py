"""What wraps every request, OCSP's fast path included: the access log and the request
counter (``AccessLog``), and the guard against a body that stops coming (``SlowBody``).

Granian times out slow headers but not a slow body: a POST that declares 100 bytes and sends
10 would hold its connection for ever. ``next_chunk`` is the one rule for waiting on a body
chunk; ``SlowBody`` applies it to every request (``api.fastpath`` reads through it too, as
it sits inside), answering 408 (RFC 9110, 15.5.9) with ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from api import problems
from api.metrics import REGISTRY, Registry
from ca.logfilters import RedactLinkTokens

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# path parameters that are secrets: a one-time link's token is its path (GET/POST /d/{token})
SECRET_PARAMS = ("token",)
access = logging.getLogger("tegata.access")
access.addFilter(RedactLinkTokens())  # and a link token anywhere else in a logged path


class BodyTimedOut(Exception):
    """The next chunk of a request body did not come in time."""


async def next_chunk(receive: Receive, timeout: float) -> Message:
    """The next message of a request, or BodyTimedOut if none comes within ``timeout``
    seconds. The read is cancelled itself, not the task awaiting it: cancelling the task
    (``asyncio.timeout``) from inside Starlette's task groups left granian's read of the
    body running now and then, and the connection open after the 408."""
    pending = asyncio.ensure_future(receive())
    try:
        done, _ = await asyncio.wait((pending,), timeout=timeout)
    finally:
        if not pending.done():
            pending.cancel()
    if not done:
        raise BodyTimedOut(f"the request body stalled for {timeout:g} s")
    return pending.result()


DISCONNECT: Message = {"type": "http.disconnect"}


async def _no_body() -> Message:
    return DISCONNECT


class SlowBody:
    """Every wait for a body chunk bounded by ``timeout``; then 408 and the connection
    closed. Once the body is in, waiting (for a disconnect) is not bounded.

    At the timeout the 408 goes out at once, the app is told the client left
    (``http.disconnect``: every layer stops reading, whatever it makes of it), and whatever
    it answers then is dropped. Raising into the app instead would not do: FastAPI answers
    any exception met while reading a body other than an HTTPException with 400, and the
    task group of Starlette's BaseHTTPMiddleware wraps whatever passes through it in an
    ExceptionGroup."""

    def __init__(self, app: ASGIApp, *, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_in = answering = False
        stalled: str | None = None
        # granian drops a connection's unread body, and so closes it after the 408, only once
        # nothing holds its ``receive`` or ``send``: the app's layers may keep ``timed`` and
        # ``sending`` in reference cycles (exceptions and their frames) until the GC runs,
        # so these two let go of granian's callables at a stall and when the app is done
        source: Receive | None = receive
        sink: Send | None = send

        async def timed() -> Message:
            nonlocal body_in, stalled, source, sink
            if source is None:
                return DISCONNECT
            if body_in:
                return await source()
            try:
                message = await next_chunk(source, self.timeout)
            except BodyTimedOut as exc:
                if not answering and sink is not None:
                    stalled = str(exc)
                    source, answer_with, sink = None, sink, None
                    await problems.problem(408, "request-timeout", "Request timeout",
                                           stalled, headers={"Connection": "close"})(
                        scope, _no_body, answer_with)
                body_in = True  # too late for a 408: the app just sees the client gone
                return DISCONNECT
            body_in = message["type"] != "http.request" or not message.get("more_body")
            return message

        async def sending(message: Message) -> None:
            nonlocal answering
            if sink is None:
                return  # the app's answer to a body that never came: the 408 replaces it
            answering = answering or message["type"] == "http.response.start"
            await sink(message)

        try:
            await self.app(scope, timed, sending)
        finally:
            source = sink = None


def route_of(scope: Scope) -> str:
    """The route's template (a bounded label set), OCSP's fast path by its prefix."""
    route = scope.get("route")
    if route is not None and hasattr(route, "path"):
        return str(route.path)
    if scope.get("path", "").startswith("/ocsp"):
        return "/ocsp"
    return "unmatched"


def logged_path(scope: Scope) -> str:
    """The path, secret path parameters blanked; the query string is never logged."""
    path = str(scope.get("path", ""))
    params = scope.get("path_params") or {}
    for name in SECRET_PARAMS:
        value = params.get(name)
        if value:
            path = path.replace(str(value), "…")
    return path


class AccessLog:
    """Counts every request by route and, if ``enabled``, logs one line for it: peer,
    method, path, status, milliseconds. Never a header (tokens), never a query string."""

    def __init__(self, app: ASGIApp, *, enabled: bool, registry: Registry = REGISTRY) -> None:
        self.app = app
        self.enabled = enabled
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before answering, the server answers 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            self.registry.count("tegata_http_requests_total", route_of(scope))
            if self.enabled and access.isEnabledFor(logging.INFO):
                client = scope.get("client")
                access.info("%s %s %s %d %.1fms", client[0] if client else "-",
                            scope.get("method", "-"), logged_path(scope), status,
                            (time.perf_counter() - started) * 1000)
