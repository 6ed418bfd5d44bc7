"""What every console page shares: the signed-in viewer, the guard of each route, CSRF, the
templates, the language and zone, the security headers, and errors as pages.

- **Who**: ``console(*roles)`` admits a request holding a live session cookie of one of
  ``roles`` (``ca.service.sessions``), scoped to the path's tenant as the API's tokens are:
  an admin sees their tenant only (another tenant's pages answer 404, as the API does), the
  operator every tenant. No session: a page asks to sign in (303 to the sign-in page).
- **CSRF**: every POST carries the session's CSRF value in a ``csrf`` field, checked before
  the route runs; the cookie is ``SameSite=Strict`` too. The sign-in form, before any
  session, carries a double-submit value (a random cookie and the same in the form).
- **Content-Security-Policy**: scripts and styles only from ``/console/static`` (no inline
  script or style, no ``eval``), nothing from outside, forms post only here, no framing.
- **Escaping**: Jinja2 with autoescape on every template; nothing is marked safe.
- **Errors**: a domain error raised by a route is a page with the status the API's problem
  table gives it (``api.problems.row_of``), in the viewer's language.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import problems
from api.auth import AccessDeclaration, TooManyFailures
from api.clientip import over_https
from api.console import i18n
from ca import expiry
from ca.errors import AuthenticationFailed, CAError, Forbidden, InvalidInput, NotFound
from ca.service import Service
from ca.service.sessions import SessionView
from ca.validate import TENANT

log = logging.getLogger("tegata.console")

PREFIX = "/console"
SESSION_COOKIE = "tegata_session"  # "__Host-" prefixed where the cookie is Secure
PRE_COOKIE = "tegata_signin"  # the sign-in form's double-submit CSRF value
LANG_COOKIE = "tegata_lang"
ZONE_COOKIE = "tegata_zone"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]"}

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("api.console", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


class SignInRequired(Exception):
    """No live session: the page asks to sign in, and comes back to ``back`` after."""

    def __init__(self, back: str) -> None:
        super().__init__("sign in")
        self.back = back


@dataclass
class Viewer:
    """Who looks at a page, in which language and zone; ``session`` None before sign-in."""

    lang: str
    zone: str | None  # chosen by the viewer (cookie), else their token's zone
    session: SessionView | None = None
    tenant: str | None = None  # the tenant of the page's path
    pre_csrf: str | None = None  # the sign-in form's value
    set_cookies: dict[str, str] = field(default_factory=dict)

    @property
    def csrf(self) -> str:
        if self.session is not None:
            return self.session.csrf
        return self.pre_csrf or ""

    @property
    def role(self) -> str | None:
        return self.session.principal.role if self.session else None

    def zone_or(self, tenant_zone: str | None) -> str:
        """The zone dates are shown in: the viewer's choice, else the tenant's, else UTC."""
        return self.zone or tenant_zone or "UTC"


def service_of(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def viewer_of(request: Request) -> Viewer:
    viewer: Viewer = request.state.viewer
    return viewer


def on_localhost(request: Request) -> bool:
    """The page was asked for by a host name of this very machine (the Host header)."""
    host = (request.headers.get("host") or "").lower()
    host = host.split("]", 1)[0] + "]" if host.startswith("[") else host.rsplit(":", 1)[0]
    return host in LOCAL_HOSTS


def cookie_is_secure(request: Request) -> bool:
    """``Secure`` unless the console is reached over plain http on this very host: a
    browser would not send a Secure cookie back over http, and localhost is where a
    newcomer first opens it."""
    return over_https(request) or not on_localhost(request)


def session_cookie_name(request: Request) -> str:
    return f"__Host-{SESSION_COOKIE}" if cookie_is_secure(request) else SESSION_COOKIE


def pre_cookie_name(request: Request) -> str:
    """The sign-in form's cookie: ``__Host-`` where Secure, so that no sibling host or port
    can plant one (login CSRF)."""
    return f"__Host-{PRE_COOKIE}" if cookie_is_secure(request) else PRE_COOKIE


def clear_cookie(request: Request, response: Response, name: str) -> None:
    """A cookie removed with the attributes it was set with (a browser ignores the removal
    of a ``Secure`` cookie by a header without ``Secure``)."""
    response.delete_cookie(name, path="/", httponly=True, secure=cookie_is_secure(request),
                           samesite="strict")


def check_origin(request: Request) -> None:
    """A post from a page of another origin is refused: the browser names the page's origin
    in ``Origin`` on every form post (RFC 6454, 7.3). Absent (a client that is not a
    browser), the CSRF value alone decides."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    scheme = "https" if over_https(request) else "http"
    if origin.lower() != f"{scheme}://{(request.headers.get('host') or '').lower()}":
        raise Forbidden("the form was posted from another site", field="origin")


def set_cookie(request: Request, response: Response, name: str, value: str, *,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True,
                        secure=cookie_is_secure(request), samesite="strict")


def negotiate(request: Request) -> tuple[str, bool]:
    """The page's language: ``?lang=`` (remembered), the cookie, then ``Accept-Language``;
    Japanese when nothing says. Also whether ``?lang=`` chose it."""
    asked = request.query_params.get("lang")
    if asked in i18n.LANGUAGES:
        return asked, True
    kept = request.cookies.get(LANG_COOKIE)
    if kept in i18n.LANGUAGES:
        return kept, False
    return i18n.from_accept_language(request.headers.get("accept-language", "")), False


def chosen_zone(request: Request) -> str | None:
    kept = request.cookies.get(ZONE_COOKIE)
    if not kept:
        return None
    try:
        expiry.zone(kept)
    except CAError:
        return None
    return kept


def base_viewer(request: Request) -> Viewer:
    lang, chose = negotiate(request)
    viewer = Viewer(lang=lang, zone=chosen_zone(request))
    if chose:
        viewer.set_cookies[LANG_COOKIE] = lang
    request.state.viewer = viewer
    return viewer


def back_to(request: Request) -> str:
    """This page's path and query, to come back to after signing in."""
    path = request.url.path
    return path + (f"?{request.url.query}" if request.url.query else "")


def safe_back(value: str | None) -> str:
    """A place to go back to after sign-in: a console path on this site, nothing else (no
    ``//host``, no scheme, no backslash trick)."""
    if (not value or not value.startswith(PREFIX + "/") or value.startswith("//")
            or "\\" in value or any(ord(c) < 0x20 for c in value) or len(value) > 2000):
        return PREFIX + "/"
    return value


async def form_of(request: Request) -> dict[str, Any]:
    """The posted form, read once (Starlette keeps it for the route). A form this console
    did not make (a JSON body, a file where a field is due) is bad input."""
    try:
        form = await request.form(max_files=1, max_fields=20_000)
    except Exception as exc:  # python-multipart's and Starlette's parse errors alike
        raise InvalidInput("the form could not be read", field="form") from exc
    return {"_form": form}


def check_csrf(expected: str, sent: object) -> None:
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(
            expected.encode(), sent.encode("utf-8", "surrogateescape")):
        raise Forbidden("the form has expired or did not come from this console; reload "
                        "the page and try again", field="csrf")


class ConsoleGuard(AccessDeclaration):
    """The dependency of a console page: a live session of one of ``roles``, scoped to the
    path's tenant, and on a POST the session's CSRF value. The session is read in a worker
    thread, never on the event loop."""

    def __init__(self, roles: tuple[str, ...]) -> None:
        self.roles = roles

    async def __call__(self, request: Request) -> Viewer:
        viewer = base_viewer(request)
        secret = request.cookies.get(session_cookie_name(request), "")
        service = service_of(request)
        try:
            viewer.session = await run_in_threadpool(service.sessions.resume, secret)
        except AuthenticationFailed:
            raise SignInRequired(back_to(request) if request.method == "GET"
                                 else PREFIX + "/") from None
        principal = viewer.session.principal
        if viewer.zone is None:
            viewer.zone = principal.timezone
        request.state.principal = principal  # the audit's actor: api.routes.tenants.actor_of
        tenant = request.path_params.get("tenant")
        if tenant is not None:
            if not TENANT.fullmatch(tenant) or (principal.role != "operator"
                                                and principal.tenant != tenant):
                raise NotFound(f"no tenant {str(tenant)[:64]!r}", field="tenant")
            viewer.tenant = tenant
        if principal.role not in self.roles:
            raise Forbidden(f"an {principal.role} may not open this page")
        if request.method == "POST":
            check_origin(request)
            form = (await form_of(request))["_form"]
            check_csrf(viewer.session.csrf, form.get("csrf"))
        return viewer


class ConsolePublic(AccessDeclaration):
    """The dependency of the pages anyone may open (sign-in, the static files)."""

    roles: tuple[str, ...] = ()

    async def __call__(self, request: Request) -> Viewer:
        return base_viewer(request)


def console(*roles: str) -> Any:
    return Depends(ConsoleGuard(roles or ("operator", "admin")))


def console_public() -> Any:
    return Depends(ConsolePublic())


# --- rendering -------------------------------------------------------------------------------


def when(moment: dt.datetime | None, zone: str) -> str:
    """A moment as people read it, in ``zone``: ``2027-03-31 23:59 JST``."""
    if moment is None:
        return "—"
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def day(moment: dt.datetime | None, zone: str) -> str:
    if moment is None:
        return ""
    return f"{moment.astimezone(ZoneInfo(zone)):%Y-%m-%d}"


def render(request: Request, template: str, *, status: int = 200,
           headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """``template`` in the viewer's language, with what every page needs."""
    viewer = viewer_of(request)
    translate = i18n.translator(viewer.lang)
    page = TEMPLATES.get_template(template).render(
        _=translate, lang=viewer.lang, viewer=viewer, csrf=viewer.csrf,
        principal=viewer.session.principal if viewer.session else None,
        tenant=viewer.tenant, here=request.url.path, quote=_quote, when=when, day=day,
        zones=i18n.ZONES, **context)
    response = HTMLResponse(page, status_code=status, headers={**PAGE_HEADERS,
                                                                **(headers or {})})
    for name, value in viewer.set_cookies.items():
        set_cookie(request, response, name, value, max_age=365 * 24 * 3600)
    return response


def _quote(value: object) -> str:
    """A path segment from a user string (a login holds anything): every reserved
    character escaped, "/" included."""
    return quote(str(value), safe="")


def redirect(request: Request, to: str) -> RedirectResponse:
    response = RedirectResponse(to, status_code=303, headers={"Cache-Control": "no-store"})
    viewer = getattr(request.state, "viewer", None)
    for name, value in (viewer.set_cookies.items() if viewer else ()):
        set_cookie(request, response, name, value, max_age=365 * 24 * 3600)
    return response


def error_page(request: Request, status: int, heading_key: str, detail: str,
               headers: dict[str, str] | None = None) -> HTMLResponse:
    if getattr(request.state, "viewer", None) is None:
        base_viewer(request)
    return render(request, "error.html", status=status, headers=headers,
                  heading=heading_key, detail=detail)


_HEADINGS = {400: "error.bad_request", 401: "error.sign_in", 403: "error.forbidden",
             404: "error.not_found", 409: "error.conflict", 410: "error.gone",
             413: "error.too_large", 422: "error.not_permitted", 429: "error.too_many"}


def heading_for(status: int) -> str:
    return _HEADINGS.get(status, "error.unavailable" if status >= 500 else "error.bad_request")


class ConsoleRoute(APIRoute):
    """A console route: its refusals are pages (with the API's statuses), a missing session
    is a way to the sign-in page, and every answer carries the console's headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired as exc:
                return redirect(request, f"{PREFIX}/sign-in?back={_quote(exc.back)}")
            except TooManyFailures as exc:
                return error_page(request, 429, "error.too_many", exc.reason,
                                  headers={"Retry-After": str(exc.retry_after)})
            except CAError as exc:
                row = problems.row_of(exc)
                detail = (problems.detail_of(exc) if row.status < 500 else
                          "the service cannot complete this request now; try again later")
                if row.status >= 500:
                    log.error("console: %s", exc.message)
                return error_page(request, row.status, heading_for(row.status), detail)
            except RequestValidationError as exc:
                first = exc.errors()[0] if exc.errors() else {}
                where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
                return error_page(request, 400, "error.bad_request",
                                  f"{where}: {first.get('msg', 'invalid')}")
            except StarletteHTTPException as exc:
                return error_page(request, exc.status_code, heading_for(exc.status_code),
                                  str(exc.detail))
            for name, value in PAGE_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handle


# --- static files: read once, at import (never on the event loop) -----------------------------

_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml"}


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    found: dict[str, tuple[bytes, str, str]] = {}
    for entry in resources.files("api.console").joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in _TYPES:
            body = entry.read_bytes()
            etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
            found[entry.name] = (body, _TYPES[suffix], etag)
    return found


STATIC = _load_static()
