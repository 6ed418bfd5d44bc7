"""User self-download: the one-time link page (HTML), a user's own certificates (user tokens),
and the admin's side (create or send a link, the tenant switch).

The link page is for people, so its answers are HTML, errors included (``api.routes.linkpage``
draws them). GET only shows whom the link is for: mail scanners and link previews fetch it.
POST spends the link and shows the password once, with the zip as a ``data:`` download, so
that one response carries both and nothing needs a second request (or a cookie) to fetch.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, StrictBool
from sqlalchemy import Engine

from api.auth import public, requires
from api.clientip import client_ip
from api.problems import responses
from api.routes import linkpage
from api.routes.certificates import ZIP, cert_out
from api.routes.tenants import actor_of, principal_of, service_of
from api.schemas import CertificateOut, Strict
from ca.errors import CAError
from ca.service.limits import RateBuckets
from ca.x509.pkcs12 import ProfileName

router = APIRouter(tags=["self-service"])

COMMON = (400, 401, 403, 404)


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
        return linkpage.too_many(request, wait)
    try:
        info = links.links.page_info(token)
    except CAError as exc:
        return linkpage.refused(request, exc)
    return linkpage.landing(request, info)


@router.post("/d/{token}", dependencies=[public()], response_class=HTMLResponse,
             responses=PAGE_RESPONSES)
def redeem(request: Request, token: str) -> HTMLResponse:
    """Spend the link: a password made for it, shown this once, and the zip to save."""
    links = service_of(request)
    wait = limiter_of(request).admit(client_of(request), now=links.clock.now())
    if wait is not None:
        return linkpage.too_many(request, wait)
    try:
        made = links.links.redeem(token, source_ip=client_ip(request),
                                 request_id=getattr(request.state, "request_id", None))
    except CAError as exc:
        return linkpage.refused(request, exc)
    return linkpage.delivered(request, made)


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
