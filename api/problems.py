"""RFC 9457 problem details: one table from domain errors to HTTP statuses."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ca import errors

log = logging.getLogger("tegata.api")

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:tegata:problem:"

@dataclass(frozen=True)
class Row:
    """How the API answers one class of the error tree: the status and title of its problem
    (RFC 9457). The web pages (the console's, the one-time link's) answer with the same
    status, in words of their own."""

    status: int
    title: str


# every class of ca.errors, each with exactly one row (tests/api/test_problem_table.py)
TABLE: dict[type[errors.CAError], Row] = {
    errors.CAError: Row(500, "Internal error"),
    errors.ConfigError: Row(503, "Service misconfigured"),
    errors.StorageError: Row(503, "Storage unavailable"),
    errors.SchemaNotCurrent: Row(503, "Storage unavailable"),
    errors.Unavailable: Row(503, "Service unavailable"),
    errors.MailError: Row(503, "Mail server unavailable"),
    # crl-sync's (the CLI's): the API never raises them; were it to, a server it depends on
    # failed, which is a 502
    errors.Unreachable: Row(502, "Bad gateway"),
    errors.GatewayRefused: Row(502, "Bad gateway"),
    errors.InvalidInput: Row(400, "Invalid input"),
    errors.NeedsConfirmation: Row(400, "Invalid input"),
    errors.AuthenticationFailed: Row(401, "Authentication required"),
    errors.Forbidden: Row(403, "Forbidden"),
    errors.SelfDownloadOff: Row(403, "Forbidden"),
    errors.NotFound: Row(404, "Not found"),
    errors.Conflict: Row(409, "Conflict"),
    errors.LeaseLost: Row(409, "Conflict"),
    errors.NotPermitted: Row(422, "Not permitted"),
    errors.NotInitialized: Row(422, "Not permitted"),
    errors.MailNotConfigured: Row(422, "Not permitted"),
    errors.LinkGone: Row(410, "Gone"),
}
# what a problem's detail adds for an API client where the CLI would name a flag
_CONFIRM = "{message}. Check it, or confirm with {confirm}: true"
_MAIL_OFF = "{message}; create the link with send false and pass it on yourself"

_HTTP_TITLES = {400: "Bad request", 404: "Not found", 405: "Method not allowed",
                413: "Request too large", 415: "Unsupported media type"}


def problem(status: int, code: str, title: str, detail: str | None = None, *,
            field: str | None = None, extra: dict[str, Any] | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_PREFIX + code, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if field:
        body["field"] = field
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def row_of(exc: errors.CAError) -> Row:
    """The row of the error's own class (or of its nearest ancestor that has one)."""
    for cls in type(exc).__mro__:
        if cls in TABLE:
            return TABLE[cls]
    return TABLE[errors.CAError]


def detail_of(exc: errors.CAError) -> str:
    """The domain's message, with the advice an API client needs (the CLI adds its own)."""
    if isinstance(exc, errors.NeedsConfirmation):
        return _CONFIRM.format(message=exc.message, confirm=exc.confirm)
    if isinstance(exc, errors.MailNotConfigured):
        return _MAIL_OFF.format(message=exc.message)
    return exc.message


async def _domain(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.CAError)
    return domain_problem(exc)


def domain_problem(exc: errors.CAError) -> JSONResponse:
    """The problem a domain error is answered with (401s name the Bearer scheme)."""
    row = row_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if row.status == 401 else None
    if row.status >= 500:
        # configuration and storage details stay in the log, not in the body
        log.error("request failed: %s", exc.message)
        return problem(row.status, exc.code, row.title,
                       "the service cannot complete this request now", headers=headers)
    return problem(row.status, exc.code, row.title, detail_of(exc), field=exc.field,
                   headers=headers)


async def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # the offending input is not echoed: it may be a secret, or hostile
    problems = [{"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                 "message": str(e.get("msg", "invalid"))} for e in exc.errors()]
    first = problems[0] if problems else {"field": "", "message": "invalid request"}
    return problem(400, "invalid-input", "Invalid input",
                   f"{first['field'] or 'request'}: {first['message']}",
                   field=first["field"] or None, extra={"errors": problems})


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    title = _HTTP_TITLES.get(exc.status_code, "Error")
    code = title.lower().replace(" ", "-")
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(exc.status_code, code, title, detail,
                   headers=dict(exc.headers) if exc.headers else None)


async def _too_many(_request: Request, exc: Exception) -> JSONResponse:
    return too_many_problem(exc)


def too_many_problem(exc: Exception) -> JSONResponse:
    """429 with the seconds to wait (``api.auth.TooManyFailures``)."""
    retry = str(getattr(exc, "retry_after", 60))
    reason = getattr(exc, "reason", "too many requests")
    return problem(429, "too-many-requests", "Too many requests", f"{reason}; wait and retry",
                   headers={"Retry-After": retry})


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return problem(500, "internal-error", "Internal error",
                   "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.CAError, _domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    from api.auth import TooManyFailures

    app.add_exception_handler(TooManyFailures, _too_many)
    app.add_exception_handler(Exception, _unexpected)


PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "field": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["type", "title", "status"],
}
# the OpenAPI document holds PROBLEM_SCHEMA once, under this name (api.openapi adds it)
PROBLEM_REF = "#/components/schemas/Problem"
_DESCRIPTIONS = {**_HTTP_TITLES, **{row.status: row.title for row in TABLE.values()},
                 429: "Too many requests", 503: "Service unavailable"}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem statuses a route can answer."""
    return {s: {"description": _DESCRIPTIONS.get(s, "Problem"),
                "content": {MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}}} for s in statuses}
