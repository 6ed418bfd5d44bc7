"""The admin's users list (filtered, a page at a time), the issue dialog beside it, and the
bulk issuance it starts: the job's page, its progress as JSON, and the zip of what it issued.

Every page reads through the service the API uses: ``users.page`` for the list (the
filters and the count decided in SQL), ``bulk_issue.start`` for the issuance exactly as
``POST .../certificates/bulk`` makes it (the same checks of the zone and the expiry, the
admin as the audit's actor), ``jobs.get`` for its progress and ``downloads.bulk`` for the
zip of the users it issued to.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api import problems
from api.console import i18n
from api.console.frame import (
    PREFIX,
    ConsoleRoute,
    console,
    form_of,
    redirect,
    render,
    service_of,
    viewer_of,
    when,
)
from api.routes.tenants import actor_of, principal_of
from api.streams import ClosingStream
from ca import expiry
from ca.errors import CAError, Conflict, InvalidInput
from ca.profiles import CLIENT_KEY_TYPES
from ca.service import IssueRequest, JobView, Selection
from ca.service.selection import STATUSES
from ca.service.users import PAGE
from ca.x509.pkcs12 import Profile

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
ZIP = "application/zip"
MAX_PAGE_NUMBER = 10**9
REISSUE = ("keep", "revoke")


@dataclass(frozen=True, kw_only=True)
class Filter:
    """The list's filters as the page's query holds them (``form#filter``)."""

    group: str = ""
    unaffiliated: bool = False
    status: str = ""
    q: str = ""
    page: int = 1

    @classmethod
    def parse(cls, query: dict[str, str]) -> Filter:
        """From the query; a page that is not a number from 1 is bad input (the filters
        themselves are checked by ``Selection``)."""
        text = query.get("page", "").strip() or "1"
        # ASCII digits only: str.isdigit() also takes '²' or '①', which int() refuses
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_PAGE_NUMBER:
            raise InvalidInput(f"page {text[:16]!r} is not a number from 1", field="page")
        return cls(group=query.get("group", "").strip(),
                   unaffiliated=query.get("unaffiliated", "") in ("1", "on", "true"),
                   status=query.get("status", "").strip(), q=query.get("q", "").strip(),
                   page=int(text))

    def selection(self) -> Selection:
        return Selection.of(group=self.group or None, unaffiliated=self.unaffiliated,
                            status=self.status or None, default_everyone=True)

    def url(self, tenant: str, page: int) -> str:
        """The list's address with this filter, on ``page``."""
        query = self.query(page)
        return f"{PREFIX}/t/{tenant}/users" + (f"?{query}" if query else "")

    def query(self, page: int | None = None) -> str:
        """This filter as a query string, on ``page``."""
        pairs = [("group", self.group), ("unaffiliated", "1" if self.unaffiliated else ""),
                 ("status", self.status), ("q", self.q)]
        chosen = page or self.page
        return urlencode([(k, v) for k, v in pairs if v] + ([("page", str(chosen))]
                                                            if chosen > 1 else []))


@dataclass(kw_only=True)
class IssueForm:
    """The issue dialog's values: the defaults first, then what the admin posted."""

    expires: str
    timezone: str
    reissue: str = "keep"
    key_type: str
    p12_profile: str
    best_effort: bool = True
    checked: tuple[str, ...] = field(default_factory=tuple)


def users_list(request: Request, tenant: str, filt: Filter | None, *,
               form: IssueForm | None = None, error: str | None = None,
               status: int = 200) -> Response:
    """The list page: ``filt`` None is a filter that could not be read (``error`` says
    why); no row is shown then."""
    service = service_of(request)
    viewer = viewer_of(request)
    defaults = service.certificates.issue_defaults(tenant, zone=viewer.zone)
    if form is None:
        form = IssueForm(expires=defaults.expires.isoformat(), timezone=defaults.zone,
                         key_type=defaults.key_type, p12_profile=defaults.p12_profile)
    views: list[Any] = []
    total = 0
    if filt is not None:
        try:
            views, total = service.users.page(tenant, filt.selection(), search=filt.q or None,
                                              offset=(filt.page - 1) * PAGE, limit=PAGE)
            pages = -(-total // PAGE)
            if not views and total and filt.page > pages:  # past the end: the last page
                filt = replace(filt, page=pages)
                views, total = service.users.page(
                    tenant, filt.selection(), search=filt.q or None,
                    offset=(filt.page - 1) * PAGE, limit=PAGE)
        except InvalidInput as exc:
            error, status, filt = exc.message, 400, None
    shown = filt or Filter()
    groups = service.users.list_groups(tenant)
    return render(request, "users.html", status=status, filter=shown, views=views,
                  total=total, pages=-(-total // PAGE), groups=groups, statuses=STATUSES,
                  defaults=defaults, issue=form, error=error, key_types=CLIENT_KEY_TYPES,
                  profiles=[p.value for p in Profile], reissues=REISSUE,
                  has_prev=filt is not None and shown.page > 1,
                  has_next=filt is not None and shown.page * PAGE < total)


@router.get("/t/{tenant}/users", dependencies=[console("operator", "admin")])
def users_page(request: Request, tenant: str) -> Response:
    """Users by group, unaffiliated or all, by certificate status and a search, 50 a page."""
    try:
        filt = Filter.parse(dict(request.query_params))
    except InvalidInput as exc:
        return users_list(request, tenant, None, error=exc.message, status=400)
    return users_list(request, tenant, filt)


@router.post("/t/{tenant}/issue", dependencies=[console("operator", "admin")])
async def issue(request: Request, tenant: str) -> Response:
    """Issue to the ticked users as a bulk job, as the API's ``POST .../certificates/bulk``
    does; a refusal (nobody ticked, a bad date or zone) is the list again with the error,
    and nothing is started."""
    posted = (await form_of(request))["_form"]
    values = {name: str(posted.get(name) or "").strip()
              for name in ("expires", "timezone", "reissue", "key_type", "p12_profile", "view",
                           "all_matching")}
    logins = tuple(str(v) for v in posted.getlist("login"))
    return await run_in_threadpool(_issue, request, tenant, values, logins,
                                   bool(posted.get("best_effort")))


def _issue(request: Request, tenant: str, values: dict[str, str], logins: tuple[str, ...],
           best_effort: bool) -> Response:
    form = IssueForm(expires=values["expires"], timezone=values["timezone"],
                     reissue=values["reissue"] or "keep", key_type=values["key_type"],
                     p12_profile=values["p12_profile"], best_effort=best_effort,
                     checked=logins)
    translate = i18n.translator(viewer_of(request).lang)
    all_matching = values["all_matching"] in ("1", "on", "true")
    try:  # the list as the admin had filtered it, to show again with an error
        filt = Filter.parse(dict(parse_qsl(values["view"])))
        selection = filt.selection()
    except InvalidInput as exc:
        if all_matching:  # the filter is who is issued to: never guess another one
            return users_list(request, tenant, Filter(), form=form, error=exc.message,
                              status=400)
        filt, selection = Filter(), None
    if all_matching and filt.q:
        # a search is not a selection the issuance can take: refuse, never issue to others
        return users_list(request, tenant, filt, form=form,
                          error=translate("users.all_matching_search"), status=400)
    if not all_matching and not logins:
        return users_list(request, tenant, filt, form=form,
                          error=translate("users.none_selected"), status=400)
    try:
        job = service_of(request).bulk_issue.start(IssueRequest(
            tenant=tenant, best_effort=best_effort,
            logins=None if all_matching else logins,
            selection=selection if all_matching else None,
            expires=expiry.parse_date(values["expires"]) if values["expires"] else None,
            timezone=values["timezone"] or None, reissue=form.reissue,  # type: ignore[arg-type]
            key_type=values["key_type"] or None, p12_profile=values["p12_profile"] or None),
            admin_zone=principal_of(request).timezone, actor=actor_of(request))
    except CAError as exc:
        row = problems.row_of(exc)
        if row.status >= 500:
            raise
        return users_list(request, tenant, filt, form=form, error=problems.detail_of(exc),
                          status=row.status)
    return redirect(request, f"{PREFIX}/t/{tenant}/jobs/{job.id}")


# --- the job --------------------------------------------------------------------------------


def outcome(job: JobView) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The users a finished issuance issued to (login, serial, not_after) and refused
    (login, reason), as ``present.bulk_job_result`` keeps them."""
    result = job.result or {}
    return list(result.get("issued", [])), list(result.get("failures", []))


def progress_text(job: JobView, lang: str) -> str:
    translate = i18n.translator(lang)
    if job.status == "running":
        return translate("job.running", done=job.done, total=job.total)
    if job.status == "failed":
        return translate("job.failed_text", error=job.error or "")
    issued, failures = outcome(job)
    return translate("job.succeeded_text", issued=len(issued), failed=len(failures))


@router.get("/t/{tenant}/jobs/{job_id}", dependencies=[console("operator", "admin")])
def job_page(request: Request, tenant: str, job_id: str) -> Response:
    """A bulk issuance's progress; once done, who was issued (with the zip) and who not."""
    service = service_of(request)
    job = service.jobs.get(tenant, job_id)
    zone = viewer_of(request).zone_or(service.certificates.issue_defaults(tenant).tenant_zone)
    issued, failures = outcome(job)
    rows = [(one["login"], one["serial"],
             when(dt.datetime.fromisoformat(one["not_after"]), zone)) for one in issued]
    return render(request, "job.html", job=job, issued=rows, failures=failures, zone=zone,
                  text=progress_text(job, viewer_of(request).lang))


@router.get("/t/{tenant}/jobs/{job_id}/status", dependencies=[console("operator", "admin")])
def job_status(request: Request, tenant: str, job_id: str) -> Response:
    """The job page's poll: ``{status, done, total, text}``."""
    job = service_of(request).jobs.get(tenant, job_id)
    return JSONResponse({"status": job.status, "done": job.done, "total": job.total,
                         "text": progress_text(job, viewer_of(request).lang)},
                        headers={"Cache-Control": "no-store"})


@router.get("/t/{tenant}/jobs/{job_id}/download", dependencies=[console("operator", "admin")])
def job_download(request: Request, tenant: str, job_id: str) -> Response:
    """The zip of the bundles of the users the job issued to (``<login>.zip`` each and
    ``manifest.csv``), streamed; the download is audited with the admin as actor."""
    service = service_of(request)
    job = service.jobs.get(tenant, job_id)
    issued, _ = outcome(job)
    if job.status != "succeeded" or not issued:
        raise Conflict(f"job {job.id} has issued no certificate to download"
                       if job.status == "succeeded" else f"job {job.id} is {job.status}")
    # exactly the certificates this job issued, not the users' newest: a later issuance to
    # the same user must not put another certificate and key in this job's zip
    made = service.downloads.bulk(
        tenant, serials=tuple(dict.fromkeys(one["serial"] for one in issued)),
        actor=actor_of(request))
    return ClosingStream(made.chunks, media_type=ZIP, headers={
        "Content-Disposition": f'attachment; filename="{made.filename}"',
        "Cache-Control": "no-store", "X-Tegata-Users": str(made.count)})


i18n.register({
    "users.title": ("ユーザー", "Users"),
    "users.count": ("該当ユーザー", "Matching users"),
    "users.filter": ("絞り込み", "Filter"),
    "users.group": ("組織", "Group"),
    "users.all_users": ("すべてのユーザー", "All users"),
    "users.unaffiliated": ("組織に所属していないユーザー", "Users in no group"),
    "users.status": ("証明書の状態", "Certificate status"),
    "users.any_status": ("すべて", "Any"),
    "users.status.unissued": ("未発行", "Unissued"),
    "users.status.valid": ("有効", "Valid"),
    "users.status.expired": ("期限切れ", "Expired"),
    "users.status.suspended": ("一時停止", "Suspended"),
    "users.status.revoked": ("失効", "Revoked"),
    "users.search": ("検索 (ログイン名・表示名・メール)", "Search (login, name, e-mail)"),
    "users.apply": ("絞り込む", "Apply"),
    "users.select_all": ("このページのユーザーをすべて選択", "Select every user on this page"),
    "users.select": ("{login} を選択", "Select {login}"),
    "users.login": ("ログイン名", "Login"),
    "users.name": ("表示名", "Name"),
    "users.email": ("メールアドレス", "E-mail"),
    "users.groups": ("組織", "Groups"),
    "users.secure_access": ("セキュアアクセス", "Secure access"),
    "users.allowed": ("許可", "Allowed"),
    "users.denied": ("未許可", "Not allowed"),
    "users.none": ("該当するユーザーはいません。", "No user matches."),
    "users.prev": ("前のページ", "Previous page"),
    "users.next": ("次のページ", "Next page"),
    "users.page": ("{page} / {pages} ページ", "Page {page} of {pages}"),
    "users.pager": ("ページ", "Pages"),
    "users.issue": ("証明書を発行", "Issue certificates"),
    "users.issue_help": ("表で選択したユーザーに証明書を発行します。",
                         "Issues a certificate to each user ticked in the table."),
    "users.expires": ("有効期限 (この日の終わりまで有効)",
                      "Expires (valid through the end of this day)"),
    "users.expires_help": ("日付は下で選ぶタイムゾーンでの日付です (既定: {zone})。"
                           "発行できる最終日 ({zone}): {latest}",
                           "The date is a day in the time zone chosen below (default: "
                           "{zone}). Latest date possible ({zone}): {latest}"),
    "users.timezone": ("有効期限のタイムゾーン", "Time zone of the expiry"),
    "users.reissue": ("有効な証明書を持つユーザー", "Users who already hold a valid certificate"),
    "users.reissue.keep": ("既存の証明書を残す (端末ごとに 1 枚)",
                           "Keep their certificates (one per device)"),
    "users.reissue.revoke": ("既存の証明書を失効させる (superseded)",
                             "Revoke their certificates (superseded)"),
    "users.key_type": ("鍵の種類", "Key type"),
    "users.p12_profile": ("PKCS#12 の暗号化方式", "PKCS#12 encryption"),
    "users.p12.compat": ("互換 (3DES, macOS・iOS・Android 12 以前・古い Windows)",
                         "Compatible (3DES; macOS, iOS, Android ≤ 12, old Windows)"),
    "users.p12.modern": ("新方式 (AES-256)", "Modern (AES-256)"),
    "users.tenant_default": ("{value} (テナントの既定)", "{value} (tenant default)"),
    "users.best_effort": ("発行できないユーザーがいても、ほかのユーザーには発行する",
                          "Issue to the others when some users cannot be issued"),
    "users.issue_submit": ("選択したユーザーに発行", "Issue to the ticked users"),
    "users.all_matching": ("表の選択ではなく、この絞り込みに該当するユーザー全員 ({count} 人) "
                           "に発行する",
                           "Issue to every user matching this filter ({count}), not only "
                           "the ticked ones"),
    "users.all_matching_search": ("検索語を指定したままでは該当ユーザー全員には発行できません。"
                                  "検索をやめて組織・状態で絞り込むか、表で選択してください。",
                                  "Issuing to every matching user cannot use a search: clear "
                                  "the search and filter by group or status, or tick the "
                                  "users in the table."),
    "users.none_selected": ("発行するユーザーを表で 1 人以上選択してください。",
                            "Tick at least one user in the table to issue to."),
    "job.title": ("証明書の一括発行", "Bulk issuance"),
    "job.status.running": ("処理中", "Running"),
    "job.status.succeeded": ("完了", "Finished"),
    "job.status.failed": ("失敗", "Failed"),
    "job.running": ("{done} / {total} 件を作成しました", "{done} of {total} made"),
    "job.succeeded_text": ("{issued} 人に発行しました。発行できなかったユーザー: {failed} 人",
                           "Issued to {issued} users; {failed} could not be issued"),
    "job.failed_text": ("発行できませんでした (何も発行されていません): {error}",
                        "Nothing was issued: {error}"),
    "job.download": ("発行した証明書をダウンロード (zip)",
                     "Download the issued certificates (zip)"),
    "job.download_help": ("ユーザーごとの zip (PKCS#12 とパスワード) と manifest.csv を含みます。"
                          "ダウンロードは監査ログに記録されます。",
                          "One zip per user (PKCS#12 and its password) and manifest.csv. "
                          "The download is recorded in the audit log."),
    "job.issued": ("発行したユーザー", "Issued"),
    "job.failures": ("発行できなかったユーザー", "Not issued"),
    "job.reason": ("理由", "Reason"),
    "job.serial": ("シリアル番号", "Serial"),
    "job.not_after": ("有効期限 ({zone})", "Expires ({zone})"),
    "job.back": ("ユーザー一覧へ戻る", "Back to the users"),
})
