"""The tenant's audit log: filters (action, outcome, dates in the viewer's zone, a search of
actor and target), the newest first, 100 to a page, and the CSV export the API makes
(``GET .../audit?format=csv``: every cell safe from spreadsheet formulas)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Annotated, TypedDict
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.console import i18n
from api.console.frame import PREFIX, ConsoleRoute, console, render, service_of, viewer_of
from api.problems import row_of
from ca import expiry
from ca.errors import InvalidInput
from ca.service.auditlog import OUTCOMES

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

PER_PAGE = 100
MAX_PAGE = 100_000

i18n.register({
    "audit.title": ("監査ログ", "Audit log"),
    "audit.action": ("操作", "Action"),
    "audit.action_help": ("例: cert.issue、tenant.update", "e.g. cert.issue, tenant.update"),
    "audit.outcome": ("結果", "Outcome"),
    "audit.outcome.any": ("すべて", "Any"),
    "audit.outcome.success": ("成功", "Success"),
    "audit.outcome.failure": ("失敗", "Failure"),
    "audit.outcome.refused": ("拒否", "Refused"),
    "audit.since": ("開始日", "From"),
    "audit.until": ("終了日", "To"),
    "audit.q": ("実行者・対象の検索", "Search actor or target"),
    "audit.apply": ("絞り込む", "Filter"),
    "audit.csv": ("CSV でエクスポート", "Export as CSV"),
    "audit.count": ("件数", "Events"),
    "audit.zone_note": ("日時は {zone} で表示しています (記録は UTC)。",
                        "Times are shown in {zone} (recorded in UTC)."),
    "audit.at": ("日時 ({zone})", "Time ({zone})"),
    "audit.actor": ("実行者", "Actor"),
    "audit.source_ip": ("接続元 IP", "Source IP"),
    "audit.target": ("対象", "Target"),
    "audit.details": ("詳細", "Details"),
    "audit.empty": ("該当する記録はありません。", "No events match."),
    "audit.next": ("次へ", "Next"),
    "audit.previous": ("前へ", "Previous"),
    "audit.page": ("{page} / {pages} ページ", "Page {page} of {pages}"),
    "audit.failed": ("絞り込めませんでした: {reason}", "Cannot filter: {reason}"),
})

Text = Annotated[str, Query(max_length=200)]


class AuditQuery(TypedDict):
    """The filters as ``ca.service.auditlog.Audit.events`` takes them."""

    action: str | None
    outcome: str | None
    since: dt.datetime | None
    until: dt.datetime | None
    q: str | None


@dataclass(frozen=True, kw_only=True)
class Filters:
    """The page's filters as typed (kept in the form and the links), and as the service
    takes them: dates are whole days in ``zone``, ``until`` included."""

    action: str = ""
    outcome: str = ""
    since: str = ""
    until: str = ""
    q: str = ""

    def query(self, zone: str) -> AuditQuery:
        """The service's keyword arguments; InvalidInput names the filter at fault."""
        shown = expiry.zone(zone)
        since = _day(self.since, "since")
        until = _day(self.until, "until")
        if since is not None and until is not None and until < since:
            raise InvalidInput(f"the end date {until} is before the start date {since}",
                               field="until")
        return {
            "action": self.action.strip() or None,
            "outcome": self.outcome or None,
            "since": expiry.start_of_day(since, shown) if since else None,
            # through the whole of the last day: before the first instant of the next
            "until": expiry.start_of_day(until + dt.timedelta(days=1), shown) if until else None,
            "q": self.q.strip() or None,
        }

    def link(self, **more: object) -> str:
        """This filter (and ``more``) as a query string."""
        pairs = {name: value for name, value in (
            ("action", self.action), ("outcome", self.outcome), ("since", self.since),
            ("until", self.until), ("q", self.q), *more.items()) if value}
        return urlencode(pairs)


def _day(text: str, field: str) -> dt.date | None:
    if not text.strip():
        return None
    try:
        day = expiry.parse_date(text)
    except InvalidInput:
        raise InvalidInput(f"{field} {text[:32]!r} is not a date of the form YYYY-MM-DD",
                           field=field) from None
    if day >= dt.date.max:
        raise InvalidInput(f"{field} {day} is too late", field=field)
    if day <= dt.date.min:  # its midnight east of UTC is before the first instant there is
        raise InvalidInput(f"{field} {day} is too early", field=field)
    return day


def _zone(request: Request, tenant: str) -> str:
    return viewer_of(request).zone_or(service_of(request).hierarchy.tenant_settings(tenant)
                                      .timezone)


@router.get("/t/{tenant}/audit", dependencies=[console()])
def audit_page(request: Request, tenant: str, action: Text = "", outcome: Text = "",
               since: Text = "", until: Text = "", q: Text = "",
               page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1) -> Response:
    service = service_of(request)
    zone = _zone(request, tenant)
    filters = Filters(action=action, outcome=outcome, since=since, until=until, q=q)
    try:
        query = filters.query(zone)
        total = service.audit.count(tenant=tenant, **query)
        events = service.audit.events(tenant=tenant, **query, limit=PER_PAGE,
                                      offset=(page - 1) * PER_PAGE, newest_first=True)
    except InvalidInput as exc:
        return render(request, "audit.html", status=row_of(exc).status, filters=filters,
                      zone=zone, events=[], total=0, page=1, pages=1, error=exc.message,
                      outcomes=OUTCOMES, details=_details)
    pages = max(1, -(-total // PER_PAGE))
    return render(request, "audit.html", filters=filters, zone=zone, events=events,
                  total=total, page=page, pages=pages, error=None, outcomes=OUTCOMES,
                  details=_details)


@router.get("/t/{tenant}/audit.csv", dependencies=[console()])
def audit_csv(request: Request, tenant: str, action: Text = "", outcome: Text = "",
              since: Text = "", until: Text = "", q: Text = "") -> Response:
    """Every event the filters select, as the API exports them (times in UTC and in the
    viewer's zone, that one as time_local with a zone column naming it: with the viewer in UTC
    the API's time_utc and time_UTC would read as one column twice); a bad filter is an error
    page, before the first line."""
    zone = _zone(request, tenant)
    query = Filters(action=action, outcome=outcome, since=since, until=until, q=q).query(zone)
    rows = service_of(request).audit.export_csv(tenant=tenant, zone=zone, zone_column=True,
                                                **query)
    return StreamingResponse(rows, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="audit-{tenant}.csv"',
        "Cache-Control": "no-store"})


def _details(details: dict[str, object]) -> str:
    return json.dumps(details, ensure_ascii=False, sort_keys=True) if details else ""
