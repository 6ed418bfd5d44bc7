"""Signing in and out, the console's front door, its static files and the zone switch."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import TooManyFailures, _retry_after
from api.clientip import client_ip, over_https
from api.console.frame import (
    PREFIX,
    STATIC,
    ZONE_COOKIE,
    ConsoleRoute,
    check_csrf,
    check_origin,
    clear_cookie,
    console,
    console_public,
    form_of,
    on_localhost,
    pre_cookie_name,
    redirect,
    render,
    safe_back,
    service_of,
    session_cookie_name,
    set_cookie,
    viewer_of,
)
from api.routes.tenants import actor_of
from ca import expiry
from ca.errors import AuthenticationFailed, Forbidden, NotFound
from ca.service.sessions import IDLE

NEEDS_HTTPS = ("the console needs HTTPS: open it through your TLS gateway (with "
               "TEGATA_TRUSTED_PROXIES naming it), or on this host at http://127.0.0.1")

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


@router.get("/", dependencies=[console()])
def home(request: Request) -> Response:
    """The operator's tenants; an admin's own users."""
    principal = viewer_of(request).session.principal  # type: ignore[union-attr]
    if principal.role == "operator":
        return redirect(request, f"{PREFIX}/tenants")
    return redirect(request, f"{PREFIX}/t/{principal.tenant}/users")


@router.get("/sign-in", dependencies=[console_public()])
def sign_in_page(request: Request, back: Annotated[str | None, Query(max_length=2000)] = None,
                 signed_out: bool = False) -> Response:
    return _sign_in_form(request, safe_back(back), signed_out=signed_out)


def _sign_in_form(request: Request, back: str, *, failure: str | None = None,
                  signed_out: bool = False, status: int = 200) -> Response:
    viewer = viewer_of(request)
    viewer.pre_csrf = secrets.token_urlsafe(24)
    insecure = not over_https(request) and not on_localhost(request)
    response = render(request, "signin.html", status=status, back=back, failure=failure,
                      signed_out=signed_out, insecure=insecure)
    set_cookie(request, response, pre_cookie_name(request), viewer.pre_csrf)
    return response


@router.post("/sign-in", dependencies=[console_public()])
async def sign_in(request: Request) -> Response:
    """The token for a session: the token is never kept, nor echoed, nor logged. Failures
    count against the client's address as the API's do (one limit for both)."""
    check_origin(request)
    form = (await form_of(request))["_form"]
    check_csrf(request.cookies.get(pre_cookie_name(request), ""), form.get("csrf"))
    back = safe_back(str(form.get("back") or ""))
    if not over_https(request) and not on_localhost(request):
        # the session cookie is Secure here: a browser would drop it, and the token would
        # have crossed the network in clear
        raise Forbidden(NEEDS_HTTPS, field="scheme")
    token = form.get("token")
    token = token.strip() if isinstance(token, str) else ""
    service = service_of(request)
    client = client_ip(request) or "-"
    failures = request.app.state.auth_failures
    wait = await run_in_threadpool(failures.admit, client, now=service.clock.now())
    if wait is not None:
        raise TooManyFailures(_retry_after(wait))
    try:
        secret, _ = await run_in_threadpool(service.sessions.sign_in, token, source_ip=client)
    except (AuthenticationFailed, Forbidden) as exc:
        return _sign_in_form(request, back, failure=exc.message, status=401)
    await run_in_threadpool(failures.refund, client)
    response = redirect(request, back)
    set_cookie(request, response, session_cookie_name(request), secret,
               max_age=int(IDLE.total_seconds()) * 48)  # the server ends it when idle
    clear_cookie(request, response, pre_cookie_name(request))
    return response


@router.post("/sign-out", dependencies=[console()])
def sign_out(request: Request) -> Response:
    service = service_of(request)
    secret = request.cookies.get(session_cookie_name(request), "")
    service.sessions.sign_out(secret, actor=actor_of(request))
    response = redirect(request, f"{PREFIX}/sign-in?signed_out=true")
    clear_cookie(request, response, session_cookie_name(request))
    return response


@router.get("/zone", dependencies=[console()])
def zone_page(request: Request,
              back: Annotated[str | None, Query(max_length=2000)] = None) -> Response:
    """Choose the zone dates are shown in (default: each tenant's own)."""
    return render(request, "zone.html", back=safe_back(back),
                  chosen=viewer_of(request).zone or "")


@router.post("/zone", dependencies=[console()])
async def choose_zone(request: Request) -> Response:
    """The zone this browser shows dates in (a cookie: a display choice, not a setting)."""
    form = (await form_of(request))["_form"]
    zone = str(form.get("zone") or "")
    response = redirect(request, safe_back(str(form.get("back") or "")))
    if zone:
        expiry.zone(zone)  # InvalidInput for a zone that is not one
        set_cookie(request, response, ZONE_COOKIE, zone, max_age=365 * 24 * 3600)
    else:  # back to each tenant's own zone
        clear_cookie(request, response, ZONE_COOKIE)
    return response


@router.get("/static/{name}", dependencies=[console_public()])
def static(request: Request, name: str) -> Response:
    found = STATIC.get(name)
    if found is None:
        raise NotFound(f"no file {name[:64]!r}", field="name")
    body, media_type, etag = found
    return Response(body, media_type=media_type, headers={
        "ETag": etag, "Cache-Control": "public, max-age=300"})



# included after every page's router: it answers only what none of them does
fallback = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)


@fallback.get("/{rest:path}", dependencies=[console_public()])
def unknown(request: Request, rest: str) -> Response:
    """A console address that is no page: the console's own 404 page, not the API's JSON."""
    raise NotFound("no such page in the console", field="path")
