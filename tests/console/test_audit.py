"""The audit log page: the tenant's events newest first, 100 to a page, times in the viewer's
zone (named), filters on action, outcome, days in that zone and a search of actor and
target; the CSV export the API makes, with the same filters and no formula cells."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

import pytest
from fastapi.testclient import TestClient

from ca import audit
from ca.audit import Actor, Event
from ca.clock import FixedClock
from ca.db import queries
from ca.service import Service
from tests.console.conftest import Console
from tests.console.dom import Node, parse

# the pages over the use cases: their PostgreSQL behaviour is the use cases' own tests'
# (tests/integration), and the console's sessions and walk run on both databases
pytestmark = [pytest.mark.usefixtures("db_url"),
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

PAGE = "/console/t/tohoku/audit"
UTC = dt.UTC


@dataclass(frozen=True)
class Planted:
    at: dt.datetime
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, object]
    ip: str | None = None


# times chosen round a Tokyo midnight: 2026-03-03 14:59 UTC is 23:59 JST, 15:00 UTC is the
# next day there
PLANTED = [
    Planted(dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC), "token:9:鈴木 管理者", "user.create",
            "yamada", "success", {"name": "山田太郎"}, "192.0.2.10"),
    Planted(dt.datetime(2026, 3, 3, 14, 59, tzinfo=UTC), "cli", "cert.issue", "yamada",
            "success", {"serial": "1A2B"}),
    Planted(dt.datetime(2026, 3, 3, 15, 0, tzinfo=UTC), "cli", "cert.revoke",
            '=HYPERLINK("http://evil.example")', "failure", {"reason": "keyCompromise"}),
    Planted(dt.datetime(2026, 3, 4, 0, 0, tzinfo=UTC), "token:9:<script>alert(1)</script>",
            "link.redeem", "suzuki", "refused", {}),
]
SIGNED_IN_AT = dt.datetime(2026, 3, 5, 0, 0, tzinfo=UTC)


def plant(service: Service, tenant: str, events: list[Planted]) -> None:
    with service.database.transaction() as session:
        owner = queries.tenant(session, tenant)
        for e in events:
            audit.record(session, Actor(name=e.actor, source_ip=e.ip), Event(
                action=e.action, target=e.target, outcome=e.outcome, tenant_id=owner.id,
                details=e.details), now=e.at)


@pytest.fixture
def tokyo(service: Service, clock: FixedClock, app_client: TestClient, tenant: str) -> Console:
    """An admin of tohoku who reads times in Asia/Tokyo, signed in after the planted events
    (and one of another tenant)."""
    service.hierarchy.create_tenant("kansai", display_name="関西電機")
    plant(service, "kansai", [Planted(dt.datetime(2026, 3, 3, 12, 0, tzinfo=UTC), "cli",
                                      "cert.issue", "yamada", "success", {})])
    plant(service, tenant, PLANTED)
    clock.set(SIGNED_IN_AT)
    token = service.tokens.create(role="admin", tenant=tenant, name="佐藤 管理者",
                                  timezone="Asia/Tokyo")[0]
    console = Console(app_client)
    assert console.sign_in(token).status_code == 303  # type: ignore[attr-defined]
    return console


def rows(page: Node) -> list[tuple[str, str, str, str, str, str]]:
    """Each row: time, actor, source IP, action, target, outcome, as shown."""
    return [(r.one(class_="at").text, r.one(class_="actor").text, r.one(class_="source-ip").text,
             r.one(class_="action").text, r.one(class_="target").text,
             r.one(class_="outcome").text)
            for r in page.by_id("audit").one("tbody").all("tr")]


SHOWN = {  # the planted events as the page shows them in Asia/Tokyo, by index
    0: ("2026-03-02 19:00 JST", "token:9:鈴木 管理者", "192.0.2.10", "user.create", "yamada",
        "成功"),
    1: ("2026-03-03 23:59 JST", "cli", "", "cert.issue", "yamada", "成功"),
    2: ("2026-03-04 00:00 JST", "cli", "", "cert.revoke", '=HYPERLINK("http://evil.example")',
        "失敗"),
    3: ("2026-03-04 09:00 JST", "token:9:<script>alert(1)</script>", "", "link.redeem",
        "suzuki", "拒否"),
    -1: ("2026-03-02 18:00 JST", "cli", "", "tenant.create", "tohoku", "成功"),
}


def test_events_newest_first_in_the_viewer_zone(service: Service, tokyo: Console) -> None:
    page = tokyo.get(PAGE)
    assert page.status_code == 200  # type: ignore[attr-defined]
    doc = parse(page.text)  # type: ignore[attr-defined]
    shown = rows(doc)
    # the tenant's own events only: its creation, the token, the sign-in, and the planted
    assert [r[3] for r in shown] == ["console.sign-in", "token.create", "link.redeem",
                                     "cert.revoke", "cert.issue", "user.create",
                                     "tenant.create"]
    assert shown[2:6] == [SHOWN[3], SHOWN[2], SHOWN[1], SHOWN[0]]
    assert shown[0][0] == "2026-03-05 09:00 JST"
    assert doc.by_id("audit-count").text == "7"
    assert doc.by_id("audit").one("thead").all("th")[0].text == "日時 (Asia/Tokyo)"
    assert doc.by_id("audit-zone").text == "日時は Asia/Tokyo で表示しています (記録は UTC)。"
    assert [t.attrs["datetime"] for t in doc.by_id("audit").all("time")][2] == \
        "2026-03-04T00:00:00+00:00"
    assert not doc.has_id("next-page") and not doc.has_id("prev-page")
    # the actor holding a script tag is text
    assert "<script>alert(1)</script>" not in page.text  # type: ignore[attr-defined]
    assert "token:9:&lt;script&gt;alert(1)&lt;/script&gt;" in page.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(("query", "expected"), [
    ("action=cert.issue", [1]),
    ("outcome=failure", [2]),
    ("outcome=refused", [3]),
    # whole days in Asia/Tokyo: 3 March there ends at 14:59:59 UTC
    ("since=2026-03-03&until=2026-03-03", [1]),
    ("since=2026-03-04&until=2026-03-04", [3, 2]),
    ("until=2026-03-03", [1, 0, -1]),
    ("q=YAMADA", [1, 0]),
    ("q=hyperlink", [2]),
    ("q=鈴木", [0]),
    ("q=100%25", []),  # a % is a character, not a wildcard
    ("action=cert.issue&since=2026-03-04", []),
], ids=["action", "failure", "refused", "one-tokyo-day", "next-tokyo-day", "until",
        "search-ignores-case", "search-target", "search-japanese", "search-percent",
        "filters-combine"])
def test_filters(tokyo: Console, query: str, expected: list[int]) -> None:
    doc = parse(tokyo.get(f"{PAGE}?{query}").text)  # type: ignore[attr-defined]
    assert rows(doc) == [SHOWN[i] for i in expected]
    assert doc.by_id("audit-count").text == str(len(expected))
    # the form keeps the filters, and the CSV link carries them
    assert doc.by_id("audit-csv").attrs["href"] == (
        f"/console/t/tohoku/audit.csv?{urlencode(parse_qsl(query))}")


def test_the_filter_form(tokyo: Console) -> None:
    doc = parse(tokyo.get(f"{PAGE}?outcome=failure&since=2026-03-04&q=cli").text)  # type: ignore[attr-defined]
    form = doc.by_id("filter")
    assert (form.attrs["method"], form.attrs["action"]) == ("get", PAGE)
    assert {f: doc.value_of(f) for f in ("action", "outcome", "since", "until", "q")} == {
        "action": "", "outcome": "failure", "since": "2026-03-04", "until": "", "q": "cli"}
    assert [o.attrs["value"] for o in doc.by_id("outcome").all("option")] == [
        "", "success", "failure", "refused"]
    assert doc.by_id("since").attrs["type"] == doc.by_id("until").attrs["type"] == "date"
    assert doc.by_id("apply-filter").attrs["type"] == "submit"


@pytest.mark.parametrize(("query", "error"), [
    ("since=2026-02-30", "since '2026-02-30' is not a date of the form YYYY-MM-DD"),
    ("until=yesterday", "until 'yesterday' is not a date of the form YYYY-MM-DD"),
    ("since=2026-03-04&until=2026-03-03",
     "the end date 2026-03-03 is before the start date 2026-03-04"),
    ("outcome=maybe", "outcome 'maybe' is not one of success, failure, refused"),
    ("action=DROP%20TABLE", "action 'DROP TABLE' is not an action name (like cert.issue)"),
    ("since=0001-01-01", "since 0001-01-01 is too early"),
    ("until=0001-01-01", "until 0001-01-01 is too early"),
    ("until=9999-12-31", "until 9999-12-31 is too late"),
], ids=["no-such-day", "not-a-date", "reversed", "outcome", "action", "earliest-since",
        "earliest-until", "latest"])
def test_bad_filters_show_the_page_with_the_error(tokyo: Console, query: str,
                                                  error: str) -> None:
    page = tokyo.get(f"{PAGE}?{query}")
    assert page.status_code == 400  # type: ignore[attr-defined]
    doc = parse(page.text)  # type: ignore[attr-defined]
    assert doc.by_id("error").text == f"絞り込めませんでした: {error}"
    assert rows(doc) == []
    csv = tokyo.get(f"{PAGE}.csv?{query}")
    assert csv.status_code == 400  # type: ignore[attr-defined]
    assert csv.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]


def test_a_hundred_to_a_page(service: Service, clock: FixedClock, admin: Console) -> None:
    start = dt.datetime(2026, 3, 2, 9, 1, tzinfo=UTC)
    plant(service, "tohoku", [
        Planted(start + dt.timedelta(minutes=i), "cli", "user.update", f"user{i:03}", "success",
                {}) for i in range(250)])
    doc = parse(admin.get(PAGE + "?action=user.update").text)  # type: ignore[attr-defined]
    assert doc.by_id("audit-count").text == "250"
    assert [r[4] for r in rows(doc)] == [f"user{i:03}" for i in range(249, 149, -1)]
    assert not doc.has_id("prev-page")
    assert doc.by_id("next-page").attrs["href"] == f"{PAGE}?action=user.update&page=2"
    doc = parse(admin.get(PAGE + "?action=user.update&page=2").text)  # type: ignore[attr-defined]
    assert [r[4] for r in rows(doc)] == [f"user{i:03}" for i in range(149, 49, -1)]
    assert doc.by_id("prev-page").attrs["href"] == f"{PAGE}?action=user.update&page=1"
    doc = parse(admin.get(PAGE + "?action=user.update&page=3").text)  # type: ignore[attr-defined]
    assert [r[4] for r in rows(doc)] == [f"user{i:03}" for i in range(49, -1, -1)]
    assert not doc.has_id("next-page")
    assert rows(parse(admin.get(PAGE + "?action=user.update&page=4").text)) == []  # type: ignore[attr-defined]


def test_csv_export_of_the_filtered_events(tokyo: Console) -> None:
    answer = tokyo.get(f"{PAGE}.csv?since=2026-03-03&until=2026-03-04")
    assert answer.status_code == 200  # type: ignore[attr-defined]
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"  # type: ignore[attr-defined]
    assert answer.headers["content-disposition"] == (  # type: ignore[attr-defined]
        'attachment; filename="audit-tohoku.csv"')
    ids = [int(r.attrs["data-id"]) for r in parse(tokyo.get(
        f"{PAGE}?since=2026-03-03&until=2026-03-04").text).by_id("audit").all("tr", data_id=None)]  # type: ignore[attr-defined]
    revoke, issue = ids[1], ids[2]
    assert answer.content.decode("utf-8").split("\r\n") == [  # type: ignore[attr-defined]
        "id,time_utc,time_local,zone,tenant,actor,source_ip,action,target,outcome,request_id,"
        "details",
        f'{issue},2026-03-03T14:59:00+00:00,2026-03-03T23:59:00+09:00,Asia/Tokyo,tohoku,cli,,'
        'cert.issue,yamada,success,,"{""serial"": ""1A2B""}"',
        f"{revoke},2026-03-03T15:00:00+00:00,2026-03-04T00:00:00+09:00,Asia/Tokyo,tohoku,cli,,"
        'cert.revoke,"\'=HYPERLINK(""http://evil.example"")",failure,,'
        '"{""reason"": ""keyCompromise""}"',
        f"{ids[0]},2026-03-04T00:00:00+00:00,2026-03-04T09:00:00+09:00,Asia/Tokyo,tohoku,"
        "token:9:<script>alert(1)</script>,,link.redeem,suzuki,refused,,{}",
        ""]


def test_english(tokyo: Console) -> None:
    doc = parse(tokyo.get(PAGE + "?lang=en&outcome=refused").text)  # type: ignore[attr-defined]
    assert doc.one("h1").text == "Audit log"
    assert [th.text for th in doc.by_id("audit").all("th")] == [
        "Time (Asia/Tokyo)", "Actor", "Source IP", "Action", "Target", "Outcome", "Details"]
    assert rows(doc) == [(*SHOWN[3][:5], "Refused")]


def test_an_admin_of_another_tenant_gets_404(service: Service, admin: Console) -> None:
    service.hierarchy.create_tenant("kansai", display_name="関西電機")
    assert admin.get("/console/t/kansai/audit").status_code == 404  # type: ignore[attr-defined]
    assert admin.get("/console/t/kansai/audit.csv").status_code == 404  # type: ignore[attr-defined]


def test_csv_of_a_viewer_in_utc_names_its_columns_apart(service: Service,
                                                        admin: Console) -> None:
    plant(service, "tohoku", PLANTED[:1])
    answer = admin.get(f"{PAGE}.csv?action={PLANTED[0].action}")
    lines = answer.content.decode("utf-8").split("\r\n")  # type: ignore[attr-defined]
    assert lines[0].split(",") == [
        "id", "time_utc", "time_local", "zone", "tenant", "actor", "source_ip", "action",
        "target", "outcome", "request_id", "details"]
    at = PLANTED[0].at.isoformat()
    assert [line.split(",")[1:4] for line in lines[1:-1]] == [[at, at, "UTC"]]
