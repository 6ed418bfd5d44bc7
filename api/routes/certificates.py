"""Client certificates: issue, list, show, and the user's bundle (admin download)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.auth import requires
from api.problems import responses
from api.routes.tenants import actor_of, principal_of, service_of
from api.routes.users import GroupQ, Logins, StatusQ, query_selection, selection_of
from api.schemas import BulkIssueIn, CertificateOut, IssuedOut, IssueIn, JobOut
from api.streams import ClosingStream
from ca import present
from ca.service import CertificateView, IssueRequest
from ca.states import StateName
from ca.x509.pkcs12 import ProfileName

router = APIRouter(prefix="/api/v1/tenants/{tenant}/certificates", tags=["certificates"])

COMMON = (400, 401, 403, 404)
ZIP = "application/zip"
StateParam = StateName
# the largest OFFSET the databases take (a signed 64-bit integer)
MAX_OFFSET = 2**63 - 1


def cert_out(view: CertificateView) -> CertificateOut:
    """A certificate as the API answers it: ``ca.present.certificate``, as the CLI's --json."""
    return CertificateOut.model_validate(present.certificate(view))


def issue_request_of(tenant: str, body: IssueIn | BulkIssueIn, **whom: Any) -> IssueRequest:
    """The one request both issuance routes make (as ``tegata cert issue`` does): who, by
    name or by selection, and the options they share."""
    return IssueRequest(tenant=tenant, expires=body.expires, timezone=body.timezone,
                        reissue=body.reissue, key_type=body.key_type,
                        p12_profile=body.p12_profile, **whom)


@router.post("", dependencies=[requires("operator", "admin")], response_model=IssuedOut,
             status_code=201, responses=responses(*COMMON, 409, 422))
async def issue(request: Request, tenant: str, body: IssueIn) -> IssuedOut:
    """Issue to one or more users: with a key made here (bundled as PKCS#12 for download), or
    to the public key of a CSR. All users named are issued, or none."""
    issue_request = issue_request_of(
        tenant, body, logins=body.names(),
        csr=body.csr.encode() if body.csr is not None else None)
    views = await run_in_threadpool(
        service_of(request).certificates.issue, issue_request,
        admin_zone=principal_of(request).timezone, actor=actor_of(request))
    return IssuedOut.model_validate({"certificates": [present.certificate(v) for v in views]})


@router.post("/bulk", dependencies=[requires("operator", "admin")], response_model=JobOut,
             status_code=202, responses=responses(*COMMON, 422))
def issue_bulk(request: Request, response: Response, tenant: str, body: BulkIssueIn) -> JobOut:
    """Issue to a selection of users (logins, a group, the unaffiliated, or all; optionally
    only those of one certificate status) as a background job: poll its ``Location``. All
    or none, unless ``best_effort``: then the result lists every user refused and why."""
    issue_request = issue_request_of(tenant, body, selection=selection_of(body.selection),
                                     best_effort=body.best_effort)
    # a bad zone or date is a 400 now, not a failed job
    job = service_of(request).bulk_issue.start(
        issue_request, admin_zone=principal_of(request).timezone, actor=actor_of(request))
    response.headers["Location"] = f"/api/v1/tenants/{tenant}/jobs/{job.id}"
    return JobOut.model_validate(present.job(job))


@router.get("/download", dependencies=[requires("operator", "admin")],
            response_class=StreamingResponse,
            responses={200: {"content": {ZIP: {}}}, **responses(*COMMON, 422)})
def download(request: Request, tenant: str, login: Logins = None, group: GroupQ = None,
             unaffiliated: bool = False, status: StatusQ = None,
             profile: Annotated[ProfileName | None, Query()] = None,
             everyone: Annotated[bool, Query(alias="all")] = False,
             ) -> StreamingResponse:
    """One zip holding ``<login>.zip`` per selected user with a valid certificate, and
    ``manifest.csv``; streamed. Select the users one way: ``login`` (repeatable),
    ``group``, ``unaffiliated`` or ``all=true`` (key material for everyone is asked for,
    never a default, as with ``tegata cert download --all``)."""
    made = service_of(request).downloads.bulk(
        tenant, query_selection(login, group, unaffiliated, status, everyone=everyone,
                                default_everyone=False),
        profile=profile, actor=actor_of(request))
    return ClosingStream(made.chunks, media_type=ZIP, headers={
        "Content-Disposition": f'attachment; filename="{made.filename}"',
        "Cache-Control": "no-store", "X-Tegata-Users": str(made.count)})


@router.get("", dependencies=[requires("operator", "admin")],
            response_model=list[CertificateOut], responses=responses(*COMMON))
def list_certificates(
    request: Request, tenant: str,
    state: Annotated[StateParam | None, Query()] = None,
    login: Annotated[str | None, Query(max_length=64)] = None,
    group: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> list[CertificateOut]:
    """The tenant's certificates, newest first, by state, user or group."""
    views = service_of(request).certificates.list_certificates(tenant, state=state, login=login,
                                                  group=group, limit=limit, offset=offset)
    return [cert_out(v) for v in views]


@router.get("/{serial}", dependencies=[requires("operator", "admin")],
            response_model=CertificateOut,
            responses={**responses(*COMMON), 200: {"content": {
                "application/json": {}, "application/pem-certificate-chain": {},
                "application/pkix-cert": {}}}})
def show_certificate(request: Request, tenant: str, serial: str,
                     format: Annotated[Literal["json", "pem", "der"], Query()] = "json",
                     ) -> CertificateOut | Response:
    """One certificate as JSON, PEM or DER."""
    view = service_of(request).certificates.get(serial, tenant=tenant)
    if format == "pem":
        return Response(view.pem, media_type="application/pem-certificate-chain")
    if format == "der":
        return Response(view.der, media_type="application/pkix-cert")
    return cert_out(view)


@router.get("/{serial}/bundle", dependencies=[requires("operator", "admin")],
            response_class=Response,
            responses={200: {"content": {ZIP: {}}}, **responses(*COMMON, 422)})
async def bundle(request: Request, tenant: str, serial: str,
                 profile: Annotated[ProfileName | None, Query()] = None,
                 ) -> Response:
    """``<login>.zip`` with ``<login>.p12`` and ``<login>-password.txt``. Audited."""
    made = await run_in_threadpool(service_of(request).certificates.bundle, serial, tenant=tenant,
                                   profile=profile, actor=actor_of(request))
    # the file name is a checked login plus ".zip": safe in a header as it is
    return Response(made.content, media_type=ZIP, headers={
        "Content-Disposition": f'attachment; filename="{made.filename}"',
        "Cache-Control": "no-store"})
