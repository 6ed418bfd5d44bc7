"""The OCSP responder over HTTP (RFC 6960 appendix A, RFC 5019)."""

from __future__ import annotations

import base64
import binascii
import time
from email.utils import format_datetime
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import public
from api.metrics import REGISTRY
from api.problems import responses
from api.routes.tenants import service_of
from ca.service import Service
from ca.service.ocsp import MAX_REQUEST_BYTES, OcspAnswer

router = APIRouter(tags=["ocsp"])
# nginx rejects a response with any other Content-Type, parameters included
MEDIA_TYPE = "application/ocsp-response"
DOC: dict[int | str, dict[str, Any]] = {200: {
    "content": {MEDIA_TYPE: {}},
    "description": "an OCSP response; malformedRequest and unauthorized are responses too"}}


def decode_get(raw_path: str) -> bytes:
    """The DER request from a GET path: base64, percent-escaped or not (RFC 6960, A.1)."""
    text = raw_path.split("/ocsp/", 1)[1] if "/ocsp/" in raw_path else ""
    text = unquote(text).replace(" ", "+")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return b""


def response_headers(answer: OcspAnswer, now_seconds: float) -> dict[str, str]:
    headers = {"Content-Length": str(len(answer.der)), "Content-Type": MEDIA_TYPE}
    if answer.cacheable and answer.made_at and answer.next_update:
        # RFC 5019, 6.2: caches may keep the response until its nextUpdate
        max_age = max(0, int(answer.next_update.timestamp() - now_seconds))
        headers.update({
            "Cache-Control": f"max-age={max_age}, public, no-transform, must-revalidate",
            "Last-Modified": format_datetime(answer.made_at, usegmt=True),
            "Expires": format_datetime(answer.next_update, usegmt=True),
            "ETag": answer.etag,
        })
    else:
        headers["Cache-Control"] = "no-store"
    return headers


_STATIC: dict[str, list[tuple[bytes, bytes]]] = {}  # by ETag: an answer's fixed headers


def wire_headers(answer: OcspAnswer, now_seconds: float) -> list[tuple[bytes, bytes]]:
    """``response_headers`` as ASGI wants them; a kept answer's fixed part is encoded once
    (bounded: a kept answer's ETag names it), only max-age is made per request."""
    if not (answer.cacheable and answer.made_at and answer.next_update):
        return [(k.lower().encode(), v.encode())
                for k, v in response_headers(answer, now_seconds).items()]
    static = _STATIC.get(answer.etag)
    if static is None:
        if len(_STATIC) >= 4096:
            _STATIC.clear()
        static = _STATIC[answer.etag] = [
            (k.lower().encode(), v.encode())
            for k, v in response_headers(answer, now_seconds).items() if k != "Cache-Control"]
    max_age = max(0, int(answer.next_update.timestamp() - now_seconds))
    return [*static, (b"cache-control", b"max-age=%d, public, no-transform, must-revalidate"
                      % max_age)]


async def answer_for(service: Service, data: bytes, raw: bytes) -> OcspAnswer:
    """From memory on the event loop when it can; else reading and signing in a thread."""
    answer = service.ocsp.from_memory(data, raw=raw)
    if answer is None:
        answer = await run_in_threadpool(service.ocsp.respond, data, raw=raw)
    return answer


def _response(answer: OcspAnswer, now_seconds: float) -> Response:
    return Response(answer.der, media_type=None,
                    headers=response_headers(answer, now_seconds))


@router.post("/ocsp", dependencies=[public()], response_class=Response, responses=DOC,
             openapi_extra={"requestBody": {"content": {"application/ocsp-request": {
                 "schema": {"type": "string", "format": "binary"}}}}})
async def ocsp_post(request: Request) -> Response:
    """A DER OCSPRequest in the body."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_REQUEST_BYTES:
            break
    service = service_of(request)
    started = time.perf_counter()
    data = bytes(body)
    answer = await answer_for(service, data, data)
    REGISTRY.count("tegata_ocsp_requests_total", "POST")
    REGISTRY.observe_ocsp(time.perf_counter() - started)
    return _response(answer, service.clock.now().timestamp())


@router.get("/ocsp/{encoded:path}", dependencies=[public()], response_class=Response,
            # a path the route cannot match (it holds a line break) is nobody's: 404
            responses={**DOC, **responses(404)})
async def ocsp_get(request: Request, encoded: str) -> Response:
    """The base64 DER request as the rest of the path (RFC 6960, A.1); unescaped '/', '+'
    and '=' are accepted, as some clients send them."""
    raw = request.scope.get("raw_path", b"") or f"/ocsp/{encoded}".encode()
    data = decode_get(raw.decode("latin-1"))
    service = service_of(request)
    started = time.perf_counter()
    answer = await answer_for(service, data, raw)
    REGISTRY.count("tegata_ocsp_requests_total", "GET")
    REGISTRY.observe_ocsp(time.perf_counter() - started)
    return _response(answer, service.clock.now().timestamp())
