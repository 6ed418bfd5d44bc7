"""HEAD and conditional GET for the public resources (RFC 9110, 9.3.2 and 13).

Gateways and relying parties fetch CRLs, CA certificates and OCSP answers over and over;
most fetches find nothing new. ``HEAD`` answers as ``GET`` would, without the body
(``wget --spider`` checks a CRL URL that way), and a ``GET`` or ``HEAD`` whose
``If-None-Match`` (or, without it, ``If-Modified-Since``) names the current representation
gets ``304 Not Modified`` and no body. Both are decided here once, around the whole app and
around the OCSP fast path (``api.fastpath``), so no route has its own copy.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import parsedate_to_datetime
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

# public, read-only resources: HEAD runs their GET (never an authenticated GET, which may
# have effects such as an audited download)
HEAD_PATHS = ("/crl/", "/ca/", "/ocsp/")
HEAD_EXACT = ("/healthz", "/readyz")
_ETAG = re.compile(r'(?:W/)?"[^"]*"')
# representation metadata a 304 leaves out (RFC 9110, 15.4.5): the body it describes is
# not sent; ETag, Cache-Control, Expires, Vary and Date stay
_NOT_IN_304 = {b"content-type", b"content-length", b"content-encoding", b"content-language",
               b"content-range", b"transfer-encoding"}


def head_allowed(path: str) -> bool:
    return path.startswith(HEAD_PATHS) or path in HEAD_EXACT


def _opaque(tag: str) -> str:
    return tag.strip().removeprefix("W/")


def not_modified(request: dict[str, str], response: dict[str, str]) -> bool:
    """Whether a GET/HEAD with these request headers gets 304 for a 200 with these response
    headers (names lower-case): If-None-Match, weak comparison over its list or ``*``,
    takes precedence; If-Modified-Since counts only without it (RFC 9110, 13.1.2-3, 13.2.2),
    and only for a date after the second Last-Modified names."""
    if_none_match = request.get("if-none-match")
    if if_none_match is not None:
        if if_none_match.strip() == "*":
            return True  # the resource has a current representation
        etag = response.get("etag")
        return etag is not None and _opaque(etag) in {
            _opaque(tag) for tag in _ETAG.findall(if_none_match)}
    since, modified = request.get("if-modified-since"), response.get("last-modified")
    if not since or not modified:
        return False
    try:
        since_at, modified_at = parsedate_to_datetime(since), parsedate_to_datetime(modified)
        # strictly before: HTTP dates have whole seconds, so a date equal to Last-Modified
        # cannot tell apart two CRLs (or OCSP answers) made in one second; such a client
        # gets the body (RFC 9110, 13.2.2 lets a server send 200; ETag is exact)
        return modified_at < since_at
    except (TypeError, ValueError):
        return False  # an invalid date is ignored (RFC 9110, 13.1.3)


def _request_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope.get("headers", [])
            if k.lower() in (b"if-none-match", b"if-modified-since")}


def decide(scope: Scope, status: int, headers: Headers) -> tuple[int, Headers, bool]:
    """The status and headers to send for a response to ``scope``, and whether its body
    goes too."""
    if status == 200 and scope["method"] in ("GET", "HEAD"):
        response = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        if not_modified(_request_headers(scope), response):
            kept = [(k, v) for k, v in headers if k.lower() not in _NOT_IN_304
                    and not (k.lower() == b"last-modified" and "etag" in response)]
            return 304, kept, False
    return status, headers, scope["method"] != "HEAD"


async def answer(scope: Scope, send: Send, status: int, headers: Headers,
                 body: bytes) -> None:
    """Send a whole response, as HEAD or a conditional GET wants it."""
    status, headers, with_body = decide(scope, status, headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body if with_body else b""})


class Conditional:
    """Around the app: HEAD runs the public GET routes, and 304 replaces a 200 whose
    validators the request names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope.get("method", ""), scope.get("path", "")
        inner = dict(scope, method="GET") if method == "HEAD" and head_allowed(path) else scope
        sending_body = True

        async def wrapped(message: Message) -> None:
            nonlocal sending_body
            if message["type"] == "http.response.start":
                status, headers, sending_body = decide(scope, message["status"],
                                                       list(message.get("headers", [])))
                if status == 405 and head_allowed(path):
                    headers = [(k, v + b", HEAD" if k.lower() == b"allow" and b"GET" in v
                                else v) for k, v in headers]
                await send({**message, "status": status, "headers": headers})
            elif message["type"] == "http.response.body" and not sending_body:
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b""})
            else:
                await send(message)

        await self.app(inner, receive, wrapped)
