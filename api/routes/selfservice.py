"""User self-download: the one-time link page (HTML), a user's own certificates (user tokens),
and the admin's side (create or send a link, the tenant switch).

The link page is for people, so its answers are HTML, errors included. GET only shows whom
the link is for: mail scanners and link previews fetch it. POST spends the link and shows the
password once, with the zip as a ``data:`` download, so that one response carries both and
nothing needs a second request (or a cookie) to fetch.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import logging
import math
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, StrictBool
from sqlalchemy import Engine

from api.auth import public, requires
from api.clientip import client_ip
from api.problems import responses, row_of
from api.routes.certificates import ZIP, cert_out
from api.routes.tenants import actor_of, principal_of, service_of
from api.schemas import CertificateOut, Strict
from ca.errors import CAError
from ca.service.limits import RateBuckets
from ca.service.links import LinkInfo, Redeemed
from ca.x509.pkcs12 import ProfileName

log = logging.getLogger("tegata.api")

router = APIRouter(tags=["self-service"])

COMMON = (400, 401, 403, 404)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    # nothing loads: no script, no image, no frame; the form posts only back here. A data:
    # download from <a download> is a navigation, which no fetch directive governs
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex, nofollow",
}


# --- the rate limit --------------------------------------------------------------------------

# page views and redemptions per client address: this many at once, then this many a minute
LINK_REQUESTS_PER_MINUTE = 20


def link_limit(engine: Engine) -> RateBuckets:
    """Requests to the link page per client address, counted in the database so that every
    worker and replica shares them (``build_app`` keeps it in ``app.state``)."""
    return RateBuckets(engine, kind="link", capacity=LINK_REQUESTS_PER_MINUTE,
                       per_minute=LINK_REQUESTS_PER_MINUTE)


def limiter_of(request: Request) -> RateBuckets:
    limiter: RateBuckets = request.app.state.link_limiter
    return limiter


def client_of(request: Request) -> str:
    return client_ip(request) or "unknown"


# --- the link page ---------------------------------------------------------------------------

# the page's answers, errors too, are HTML: the statuses api.problems.TABLE gives the errors
# the page can meet, and the rate limit's
PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": {"text/html": {}}}
    for status, description in ((200, "The page"), (400, "Bad request"),
                                (403, "Self-download is turned off"), (404, "No such link"),
                                (410, "The link is used, expired or withdrawn"),
                                (429, "Too many requests"), (503, "Service unavailable"))}


@router.get("/d/{token}", dependencies=[public()], response_class=HTMLResponse,
            responses=PAGE_RESPONSES)
def link_page(request: Request, token: str) -> HTMLResponse:
    """Whom the link is for, and a Download button. Spends nothing, shows no secret."""
    links = service_of(request)
    wait = limiter_of(request).admit(client_of(request), now=links.clock.now())
    if wait is not None:
        return _too_many(wait)
    try:
        info = links.links.page_info(token)
    except CAError as exc:
        return _error_page(exc)
    return _page(200, "証明書のダウンロード / Certificate download", _landing(info))


@router.post("/d/{token}", dependencies=[public()], response_class=HTMLResponse,
             responses=PAGE_RESPONSES)
def redeem(request: Request, token: str) -> HTMLResponse:
    """Spend the link: the password, shown this once, and the zip to save."""
    links = service_of(request)
    wait = limiter_of(request).admit(client_of(request), now=links.clock.now())
    if wait is not None:
        return _too_many(wait)
    try:
        made = links.links.redeem(token, source_ip=client_ip(request),
                                 request_id=getattr(request.state, "request_id", None))
    except CAError as exc:
        return _error_page(exc)
    return _page(200, "証明書 / Your certificate", _delivered(made))


# --- a user's own certificates ---------------------------------------------------------------


@router.get("/api/v1/tenants/{tenant}/me/certificates", dependencies=[requires("user")],
            response_model=list[CertificateOut], responses=responses(*COMMON))
def my_certificates(request: Request, tenant: str) -> list[CertificateOut]:
    """The caller's own certificates, newest first."""
    login = principal_of(request).login
    assert login is not None  # a user token always names its user
    return [cert_out(v) for v in service_of(request).links.my_certificates(tenant, login)]


@router.get("/api/v1/tenants/{tenant}/me/certificates/{serial}/bundle",
            dependencies=[requires("user")], response_class=Response,
            responses={200: {"content": {ZIP: {}}}, **responses(*COMMON, 422)})
async def my_bundle(request: Request, tenant: str, serial: str,
                    profile: Annotated[ProfileName | None, Query()] = None,
                    ) -> Response:
    """``<login>.zip`` for one of the caller's own certificates, unless the tenant has turned
    self-download off (403). Another user's serial answers 404. Audited."""
    login = principal_of(request).login
    assert login is not None
    made = await run_in_threadpool(service_of(request).links.my_bundle, tenant, login, serial,
                                   profile=profile, actor=actor_of(request))
    return Response(made.content, media_type=ZIP, headers={
        "Content-Disposition": f'attachment; filename="{made.filename}"',
        "Cache-Control": "no-store"})


# --- the admin's side ------------------------------------------------------------------------


class LinkIn(Strict):
    send: StrictBool = False


class LinkOut(BaseModel):
    tenant: str
    login: str
    email: str
    expires_at: dt.datetime
    url: str | None
    sent: bool
    replaced: int


class UserDownloadIn(Strict):
    allowed: StrictBool


class UserDownloadOut(BaseModel):
    tenant: str
    allowed: StrictBool
    links_withdrawn: int


@router.post("/api/v1/tenants/{tenant}/users/{login}/links",
             dependencies=[requires("operator", "admin")], response_model=LinkOut,
             status_code=201, responses=responses(*COMMON, 422, 503))
async def create_link(request: Request, response: Response, tenant: str, login: str,
                      body: LinkIn | None = None) -> LinkOut:
    """A one-time link for the user to download their certificate and password; the user's
    earlier links stop working. With ``send``, Tegata e-mails it and the URL is not returned
    (only the user should hold it); without, the URL in the answer is the only copy."""
    links, actor = service_of(request), actor_of(request)
    send = body is not None and body.send
    made = await run_in_threadpool(links.links.send if send else links.links.create, tenant,
                                   login, actor=actor)
    response.headers["Cache-Control"] = "no-store"
    return LinkOut(tenant=made.tenant, login=made.login, email=made.email,
                   expires_at=made.expires_at, url=None if send else made.url, sent=send,
                   replaced=made.replaced)


@router.put("/api/v1/tenants/{tenant}/settings/user-download",
            dependencies=[requires("operator", "admin")], response_model=UserDownloadOut,
            responses=responses(*COMMON))
def set_user_download(request: Request, tenant: str, body: UserDownloadIn) -> UserDownloadOut:
    """Whether users may download their own certificate. Off withdraws every outstanding
    link; admins can still download."""
    made = service_of(request).links.set_user_download(tenant, body.allowed,
                                                       actor=actor_of(request))
    return UserDownloadOut(tenant=made.tenant, allowed=made.allowed,
                           links_withdrawn=made.links_withdrawn)


# --- HTML ------------------------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,-apple-system,"Hiragino Sans","Noto Sans JP",sans-serif;
max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.6;color:#1d1d1f}
h1{font-size:1.4rem}.en{color:#555}dt{font-weight:600}dd{margin:0 0 .5rem}
.password{font:1.4rem/1.4 ui-monospace,monospace;background:#f3f3f3;padding:.6rem;
letter-spacing:.05em;user-select:all;overflow-wrap:anywhere}
button,.button{display:inline-block;font-size:1.1rem;padding:.6rem 1.4rem;border:0;
border-radius:.4rem;background:#0a58ca;color:#fff;text-decoration:none;cursor:pointer}
"""

_TOO_MANY = "しばらく待ってからお試しください / Too many requests"


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(status: int, title: str, body: str,
          headers: dict[str, str] | None = None) -> HTMLResponse:
    document = (f'<!doctype html>\n<html lang="ja">\n<head>\n<meta charset="utf-8">\n'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f'<meta name="robots" content="noindex, nofollow">\n'
                f"<title>{e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
                f"<body>\n<h1>{e(title)}</h1>\n{body}\n</body>\n</html>\n")
    return HTMLResponse(document, status_code=status,
                        headers={**PAGE_HEADERS, **(headers or {})})


def _utc(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"


def _who(info: LinkInfo) -> str:
    name = info.display_name or info.login
    tenant = info.tenant_display_name or info.tenant
    return (f"<p>{e(name)} さんのクライアント証明書 ({e(tenant)})<br>"
            f'<span class="en" lang="en">Client certificate of {e(name)} ({e(tenant)})</span>'
            f"</p>\n<dl>\n<dt>ログイン / Login</dt><dd>{e(info.login)}</dd>\n"
            f"<dt>証明書の有効期限 / Certificate valid until</dt>"
            f"<dd>{e(_utc(info.certificate_not_after))}</dd>\n</dl>")


def _landing(info: LinkInfo) -> str:
    # no action attribute: the form posts back to this very URL, token and all
    return (f"{_who(info)}\n"
            f"<p>このリンクは一度だけ、{e(_utc(info.expires_at))} まで使えます。ボタンを押すと"
            f"証明書とパスワードが表示されます。パスワードは一度しか表示されません。<br>"
            f'<span class="en" lang="en">This link works once, until '
            f"{e(_utc(info.expires_at))}. Press the button to get your certificate and its "
            f"password; the password is shown only once.</span></p>\n"
            f'<form method="post"><button type="submit">ダウンロード / Download</button></form>')


def _delivered(made: Redeemed) -> str:
    login = made.info.login
    archive = base64.b64encode(made.bundle.content).decode("ascii")
    p12 = base64.b64encode(made.p12).decode("ascii")
    return (f"{_who(made.info)}\n"
            f"<p>パスワード / Password</p>\n"
            f'<p class="password"><code>{e(made.password)}</code></p>\n'
            f"<p>このパスワードは二度と表示されません。控えてからこの画面を閉じてください "
            f"(zip ファイルの中にも入っています)。<br>"
            f'<span class="en" lang="en">This password will not be shown again: write it '
            f"down before you close this page (it is also inside the zip file).</span></p>\n"
            f'<p><a class="button" href="data:application/zip;base64,{e(archive)}" '
            f'download="{e(made.bundle.filename)}">{e(made.bundle.filename)} を保存 / Save '
            f"{e(made.bundle.filename)}</a></p>\n"
            f'<p><a href="data:application/x-pkcs12;base64,{e(p12)}" download="{e(login)}.p12">'
            f".p12 ファイルのみ (スマートフォン向け) / Only the .p12 file (for phones)</a></p>")


def _error_page(exc: CAError) -> HTMLResponse:
    """The page for a refusal: status and heading from the one problem table."""
    row = row_of(exc)
    if row.status >= 500:
        log.error("link page failed: %s", exc.message)  # the message never holds the token
        detail = "the service cannot complete this request now; try again later"
    else:
        detail = exc.message
    return _page(row.status, row.page, f'<p lang="en">{e(detail)}</p>')


def _too_many(wait: float) -> HTMLResponse:
    seconds = max(1, math.ceil(wait))
    return _page(429, _TOO_MANY,
                 f'<p lang="en">Too many requests from your address; try again in {seconds} '
                 "seconds.</p>", headers={"Retry-After": str(seconds)})
