"""The OCSP hot path, served before FastAPI's routing, dependencies and middleware.

A busy gateway fleet asks the same few thousand questions over and over, mostly with the very
same bytes (nginx repeats its GET): the answer is kept in memory (``ca.service.ocsp``), found
by those bytes with one dictionary lookup, so the framework around it was most of the cost. This
ASGI wrapper answers ``POST /ocsp`` and ``GET /ocsp/<request>`` (``HEAD`` too, and 304 for
a request naming the answer's ETag, as ``api.conditional`` decides for the app) with the
same service call and the same headers as the documented routes in ``api.routes.ocsp``
(which tests and the OpenAPI document use), and passes everything else to the app.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from api.conditional import answer as send_answer
from api.metrics import REGISTRY
from api.routes.ocsp import answer_for, decode_get, wire_headers
from ca.service import Service
from ca.service.ocsp import MAX_REQUEST_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class OcspFastPath:
    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        method = scope.get("method", "")
        if method == "POST" and path == "/ocsp":
            data = raw = await _body(receive)
            kept = self.service.ocsp.kept(raw)
        elif method in ("GET", "HEAD") and path.startswith("/ocsp/"):
            raw = scope.get("raw_path") or path.encode()
            kept = self.service.ocsp.kept(raw)
            data = b"" if kept is not None else decode_get(raw.decode("latin-1"))
        else:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # the very bytes asked before: one dictionary lookup; else what memory gives on the
        # loop, or reading and signing in a thread
        answer = kept or await answer_for(self.service, data, raw)
        REGISTRY.count("tegata_ocsp_requests_total", "POST" if method == "POST" else "GET")
        REGISTRY.observe_ocsp(time.perf_counter() - started)
        headers = wire_headers(answer, self.service.clock.now().timestamp())
        if method == "HEAD" or _conditional(scope):
            await send_answer(scope, send, 200, headers, answer.der)
        else:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": answer.der})


def _conditional(scope: Scope) -> bool:
    """Whether the request names validators (``api.conditional`` decides its answer)."""
    return any(k.lower() in (b"if-none-match", b"if-modified-since")
               for k, _ in scope.get("headers", ()))


async def _body(receive: Receive) -> bytes:
    """The request body, cut off past the largest OCSP request we answer."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        body += message.get("body", b"")
        if len(body) > MAX_REQUEST_BYTES:
            return bytes(body)  # answered as malformedRequest
        if not message.get("more_body", False):
            return bytes(body)
