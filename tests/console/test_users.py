"""The admin's users list, the issue dialog, the job page and the job's zip, driven through
the app in process: exactly the users each filter and page names, issuance through the
service's bulk job with the checks the API applies, the zip of what the job issued, the
admin as the audit's actor, every user string escaped, another tenant's admin kept out."""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import threading
import time
import zipfile
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from ca.clock import FixedClock
from ca.db.models import AuditEvent, Certificate, Job, Tenant
from ca.service import IssueRequest, JobView, Service
from ca.states import State
from tests.console.conftest import TENANT, Console

# the pages over the use cases: their PostgreSQL behaviour is the use cases' own tests'
# (tests/integration), and the console's sessions and walk run on both databases
pytestmark = [pytest.mark.usefixtures("db_url"),
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

NOW = dt.datetime(2026, 3, 2, 16, 0, tzinfo=dt.UTC)  # 3 March in Tokyo, still 2 in UTC
ADMIN_NAME = "佐藤 管理者"
HOSTILE = "<script>alert(1)</script>山田"


VOID = {"input", "br", "img", "meta", "link", "hr"}


class Page(HTMLParser):
    """What the tests read from a page: the rows of the users table (login -> badge), the
    attributes of each element with an id, each select's chosen option."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.rows: dict[str, str | None] = {}
        self.ids: dict[str, dict[str, str | None]] = {}
        self.texts: dict[str, str] = {}
        self.chosen: dict[str, str] = {}
        self.checked: list[str] = []
        self._row: str | None = None
        self._select: str | None = None
        self._open: list[str | None] = []  # the ids of the elements open here
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        name = str(found["id"]) if found.get("id") else None
        if name is not None:
            self.ids[name] = found
            self.texts[name] = ""
        if tag not in VOID:
            self._open.append(name)
        if tag == "tr" and found.get("data-login") is not None:
            self._row = str(found["data-login"])
            self.rows[self._row] = None
        if tag == "span" and self._row is not None and "badge" in str(found.get("class")):
            self.rows[self._row] = str(found["class"]).split()[1]
        if tag == "input" and found.get("name") == "login" and "checked" in found:
            self.checked.append(str(found.get("value")))
        if tag == "select":
            self._select = str(found.get("id"))
        if tag == "option" and self._select is not None and "selected" in found:
            self.chosen[self._select] = str(found.get("value"))

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID and self._open:
            self._open.pop()
        if tag == "tr":
            self._row = None
        if tag == "select":
            self._select = None

    def handle_data(self, data: str) -> None:
        for name in self._open:
            if name is not None:
                self.texts[name] += data

    @property
    def logins(self) -> list[str]:
        return list(self.rows)


def page(console: Console, path: str, status: int = 200, **kwargs: Any) -> Page:
    answer: Any = console.get(path, **kwargs)
    assert answer.status_code == status, answer.text
    return Page(answer.text)


def users_url(query: str = "") -> str:
    return f"/console/t/{TENANT}/users" + (f"?{query}" if query else "")


def add(service: Service, login: str, name: str, *groups: str, allow: bool = True) -> None:
    service.users.add(TENANT, login, email=f"{login}@example.jp", display_name=name,
                      groups=groups, allow=allow)


def issue(service: Service, *logins: str, **options: Any) -> list[str]:
    return [v.serial for v in service.certificates.issue(
        IssueRequest(tenant=TENANT, logins=logins, **options))]


def finished(service: Service, job_id: str) -> JobView:
    """The job once its thread is done (the work runs on a real thread; the clock is fixed)."""
    for _ in range(600):
        job = service.jobs.get(TENANT, job_id)
        if job.status != "running":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still running")


def issue_form(console: Console, logins: list[str], **fields: str) -> Any:
    body: dict[str, object] = {"login": logins, "expires": "2027-03-02", "timezone": "UTC",
                               "reissue": "keep", "key_type": "ec-p256",
                               "p12_profile": "compat", "best_effort": "1", **fields}
    if not logins:
        del body["login"]
    return console.post(f"/console/t/{TENANT}/issue", body)


def job_of(answer: Any) -> str:
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    prefix = f"/console/t/{TENANT}/jobs/"
    assert location.startswith(prefix) and len(location) == len(prefix) + 32, location
    return str(location.removeprefix(prefix))


def counts(service: Service) -> tuple[int, int]:
    """Certificates and jobs in the database."""
    with service.database.reading() as session:
        return (int(session.scalar(select(func.count()).select_from(Certificate)) or 0),
                int(session.scalar(select(func.count()).select_from(Job)) or 0))


# --- the list --------------------------------------------------------------------------------


@pytest.fixture
def roster(service: Service, clock: FixedClock, tenant: str) -> Service:
    """One user per certificate status, in two groups and none; the expired one's
    certificate ended yesterday."""
    clock.set(NOW - dt.timedelta(days=2))
    add(service, "kato", "加藤三郎")
    issue(service, "kato", expires=(NOW - dt.timedelta(days=1)).date())  # ends 1 March UTC
    clock.set(NOW)
    add(service, "yamada", "山田太郎", "営業部")
    add(service, "suzuki", "鈴木一郎", "営業部")
    add(service, "tanaka", "田中花子", "開発部")
    add(service, "sato", "佐藤次郎")
    add(service, "Ito", "伊藤一郎 Ichiro", "営業部", "開発部")
    issue(service, "yamada", "tanaka")
    service.users.set_permission(TENANT, ("tanaka",), allow=False)  # suspended
    service.revocation.revoke(TENANT, issue(service, "sato")[0], reason="keyCompromise")
    return service


ROSTER = {"Ito": "unissued", "kato": "expired", "sato": "revoked", "suzuki": "unissued",
          "tanaka": "suspended", "yamada": "valid"}


@pytest.mark.parametrize(("query", "expected"), [
    ("", ["Ito", "kato", "sato", "suzuki", "tanaka", "yamada"]),
    ("group=営業部", ["Ito", "suzuki", "yamada"]),
    ("group=開発部", ["Ito", "tanaka"]),
    ("unaffiliated=1", ["kato", "sato"]),
    ("status=unissued", ["Ito", "suzuki"]),
    ("status=valid", ["yamada"]),
    ("status=expired", ["kato"]),
    ("status=suspended", ["tanaka"]),
    ("status=revoked", ["sato"]),
    ("group=営業部&status=unissued", ["Ito", "suzuki"]),
    ("unaffiliated=1&status=revoked", ["sato"]),
    ("q=山田", ["yamada"]),
    ("q=ichiro", ["Ito"]),  # the name, ignoring case
    ("q=ITO", ["Ito"]),  # the login, ignoring case
    ("q=sato%40example", ["sato"]),  # the e-mail
    ("q=郎&status=unissued", ["Ito", "suzuki"]),
    ("group=営業部&q=鈴木", ["suzuki"]),
    ("group=経理部", []),
], ids=["all", "group", "other-group", "unaffiliated", "unissued", "valid", "expired",
        "suspended", "revoked", "group-status", "unaffiliated-status", "name", "name-case",
        "login-case", "email", "search-status", "group-search", "empty-group"])
def test_each_filter_lists_exactly_its_users(roster: Service, app_client: TestClient,
                                             admin_token: str, query: str,
                                             expected: list[str]) -> None:
    admin = Console(app_client)
    admin.sign_in(admin_token)
    shown = page(admin, users_url(query))
    assert shown.logins == expected
    assert shown.rows == {login: ROSTER[login] for login in expected}  # each one's badge
    assert shown.texts["user-count"] == str(len(expected))
    # the filter form shows the filter applied
    values = dict(pair.split("=") for pair in query.split("&") if pair)
    known = values.get("group", "") in ("", "営業部", "開発部")  # an unknown group: no option
    assert shown.chosen.get("group", "") == (values.get("group", "") if known else "")
    assert shown.chosen.get("status", "") == values.get("status", "")
    assert ("checked" in shown.ids["unaffiliated"]) == ("unaffiliated" in values)


def test_the_list_links_each_user_and_offers_every_group(roster: Service,
                                                          app_client: TestClient,
                                                          admin_token: str) -> None:
    admin = Console(app_client)
    admin.sign_in(admin_token)
    text = admin.get(users_url()).text  # type: ignore[attr-defined]
    assert '<a class="user-link" href="/console/t/tohoku/users/yamada">yamada</a>' in text
    assert '<option value="">すべてのユーザー</option>' in text
    assert '<option value="営業部" >営業部 (3)</option>' in text
    assert '<option value="開発部" >開発部 (2)</option>' in text
    assert ('<input id="select-all" type="checkbox" data-select-all="login" '
            'aria-label="このページのユーザーをすべて選択">') in text
    assert '<input type="checkbox" name="login" value="yamada" form="issue"' in text


@pytest.fixture
def crowd(service: Service, tenant: str) -> Service:
    """120 users, u000 .. u119, the even ones in 営業部."""
    lines = ["login,email,name,groups"] + [
        f"u{n:03d},u{n:03d}@example.jp,社員 {n},{'営業部' if n % 2 == 0 else ''}"
        for n in range(120)]
    report = service.users.import_users(TENANT, "\n".join(lines).encode())
    assert (len(report.created), report.errors) == (120, [])
    return service


def test_the_list_pages_by_fifty_with_its_filter_kept(crowd: Service, admin: Console) -> None:
    everyone = [f"u{n:03d}" for n in range(120)]
    first = page(admin, users_url())
    assert (first.logins, first.texts["user-count"]) == (everyone[:50], "120")
    assert "prev-page" not in first.ids
    assert first.ids["next-page"]["href"] == users_url("page=2")
    second = page(admin, users_url("page=2"))
    assert second.logins == everyone[50:100]
    assert (second.ids["prev-page"]["href"], second.ids["next-page"]["href"]) == (
        users_url(), users_url("page=3"))
    last = page(admin, users_url("page=3"))
    assert (last.logins, last.texts["user-count"]) == (everyone[100:], "120")
    assert "next-page" not in last.ids and last.ids["prev-page"]["href"] == users_url("page=2")
    # past the end is the last page (its links those of the last page)
    beyond = page(admin, users_url("page=99"))
    assert (beyond.logins, beyond.texts["user-count"]) == (everyone[100:], "120")
    assert "next-page" not in beyond.ids
    assert beyond.ids["prev-page"]["href"] == users_url("page=2")
    # a filter stays in the links; 60 in the group: 50, then 10
    sales = [f"u{n:03d}" for n in range(0, 120, 2)]
    grouped = page(admin, users_url("group=営業部&q=u"))
    assert (grouped.logins, grouped.texts["user-count"]) == (sales[:50], "60")
    assert grouped.ids["next-page"]["href"] == users_url(
        "group=%E5%96%B6%E6%A5%AD%E9%83%A8&q=u&page=2")
    rest = page(admin, grouped.ids["next-page"]["href"] or "")
    assert rest.logins == sales[50:] and "next-page" not in rest.ids


@pytest.mark.parametrize(("query", "message"), [
    ("page=0", "page '0' is not a number from 1"),
    ("page=abc", "page 'abc' is not a number from 1"),
    ("page=%C2%B2", "page '²' is not a number from 1"),
    ("page=%E2%91%A0", "page '①' is not a number from 1"),
    ("status=active", "status 'active' is not one of unissued, valid, expired, suspended, "
                      "revoked"),
    ("group=営業部&unaffiliated=1", "select users one way"),
    ("group=a%3Bb", "must not contain ';'"),
], ids=["zero", "word", "superscript", "circled", "status", "two-ways", "group"])
def test_a_bad_filter_is_the_page_again_with_the_error(crowd: Service, admin: Console,
                                                       query: str, message: str) -> None:
    answer: Any = admin.get(users_url(query))
    assert answer.status_code == 400
    shown = Page(answer.text)
    assert message in html.unescape(shown.texts["error"])
    assert (shown.logins, shown.texts["user-count"]) == ([], "0")
    assert "issue-submit" in shown.ids  # the page, not an error page


def test_a_hostile_display_name_is_shown_escaped(service: Service, admin: Console) -> None:
    add(service, "yamada", HOSTILE, "<b>営業</b>")
    text = admin.get(users_url()).text  # type: ignore[attr-defined]
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;山田</td>" in text
    assert "&lt;b&gt;営業&lt;/b&gt;" in text
    assert "<script>alert" not in text and "<b>営業" not in text
    found = page(admin, users_url("q=" + "<script>"))
    assert found.logins == ["yamada"]
    assert found.ids["q"]["value"] == "<script>"  # the attribute, escaped in the page


def test_english_is_complete_on_the_list(roster: Service, app_client: TestClient,
                                         admin_token: str) -> None:
    admin = Console(app_client)
    admin.sign_in(admin_token)
    text = admin.get(users_url("lang=en")).text  # type: ignore[attr-defined]
    for words in ("<h1>Users</h1>", "Matching users", '<span class="badge valid">Valid</span>',
                  '<span class="badge unissued">Unissued</span>', "Issue to the ticked users",
                  "Keep their certificates (one per device)", "ec-p256 (tenant default)"):
        assert words in text
    assert "ユーザー" not in text.split("<main", 1)[1]


# --- the issue dialog ------------------------------------------------------------------------


def set_tenant(service: Service, **values: object) -> None:
    with service.database.transaction() as session:
        session.execute(update(Tenant).where(Tenant.name == TENANT).values(**values))


def test_the_dialog_offers_a_year_ahead_in_the_tenants_zone_and_its_defaults(
        service: Service, clock: FixedClock, app_client: TestClient, admin_token: str) -> None:
    clock.set(NOW)
    admin = Console(app_client)
    admin.sign_in(admin_token)
    set_tenant(service, timezone="Asia/Tokyo", key_type="rsa-2048", p12_profile="modern")
    shown = page(admin, users_url())
    assert shown.ids["expires"]["value"] == "2027-03-03"  # 3 March in Tokyo, a year on
    assert shown.ids["expires"]["max"] == "2046-03-01"  # the issuing CA's last whole day
    assert shown.chosen == {"timezone": "Asia/Tokyo", "reissue": "keep",
                            "key_type": "rsa-2048", "p12_profile": "modern"}
    assert "checked" in shown.ids["best_effort"]
    # the viewer's zone, once chosen, is the one shown
    admin.client.cookies.set("tegata_zone", "Pacific/Honolulu")
    shown = page(admin, users_url())
    assert (shown.ids["expires"]["value"], shown.chosen["timezone"]) == (
        "2027-03-02", "Pacific/Honolulu")
    text = admin.get(users_url()).text  # type: ignore[attr-defined]
    # the issuing CA ends 2046-03-02 09:00 UTC, 23:00 on the 1st in Honolulu
    assert "(既定: Pacific/Honolulu)。発行できる最終日 (Pacific/Honolulu): 2046-02-28" in text
    assert shown.ids["expires"]["max"] == "2046-02-28"


def test_issuing_with_nobody_ticked_is_the_page_again_and_starts_nothing(
        service: Service, admin: Console) -> None:
    add(service, "yamada", "山田太郎")
    answer = issue_form(admin, [], view="q=yama&status=unissued")
    assert answer.status_code == 400
    shown = Page(answer.text)
    assert shown.texts["error"] == "発行するユーザーを表で 1 人以上選択してください。"
    assert shown.logins == ["yamada"]  # the list as it was filtered
    assert shown.ids["q"]["value"] == "yama" and shown.chosen["status"] == "unissued"
    assert shown.ids["expires"]["value"] == "2027-03-02"  # what was posted
    # a list filter that no longer reads is dropped; the error said stays the one that counts
    tampered = Page(issue_form(admin, [], view="status=bogus").text)
    assert tampered.texts["error"] == "発行するユーザーを表で 1 人以上選択してください。"
    assert tampered.logins == ["yamada"]
    assert counts(service) == (0, 0)
    english = admin.post(f"/console/t/{TENANT}/issue?lang=en", {"expires": "2027-03-02"})
    assert english.status_code == 400  # type: ignore[attr-defined]
    assert Page(english.text).texts["error"] == (  # type: ignore[attr-defined]
        "Tick at least one user in the table to issue to.")


@pytest.mark.parametrize(("fields", "message"), [
    ({"expires": "2046-03-02"}, "requested 2046-03-02, latest allowed 2046-03-01"),
    ({"expires": "2026-03-01"}, "expiry 2026-03-01 is before today (2026-03-02 in UTC)"),
    ({"expires": "2027-02-30"}, "expiry 2027-02-30 is not a date"),
    ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ({"reissue": "replace"}, "reissue 'replace' is not keep or revoke"),
    ({"key_type": "dsa"}, "key type 'dsa' is not one of"),
], ids=["past-ca", "past", "no-date", "zone", "reissue", "key-type"])
def test_a_refused_issuance_is_the_page_again_and_issues_nothing(
        service: Service, admin: Console, fields: dict[str, str], message: str) -> None:
    add(service, "yamada", "山田太郎")
    answer = issue_form(admin, ["yamada"], **fields)
    assert answer.status_code == 400, answer.text
    shown = Page(answer.text)
    assert message in html.unescape(shown.texts["error"])
    assert shown.checked == ["yamada"]  # still ticked
    assert counts(service) == (0, 0)


def test_a_group_is_issued_until_the_end_of_the_chosen_day_in_the_chosen_zone(
        service: Service, admin: Console) -> None:
    add(service, "yamada", "山田太郎", "営業部")
    add(service, "suzuki", "鈴木一郎", "営業部")
    add(service, "tanaka", "田中花子", "開発部")
    listed = page(admin, users_url("group=営業部"))
    assert listed.logins == ["suzuki", "yamada"]
    job_id = job_of(issue_form(admin, listed.logins, expires="2027-08-01",
                               timezone="Asia/Tokyo", key_type="rsa-2048"))
    job = finished(service, job_id)
    assert (job.status, job.done, job.total) == ("succeeded", 2, 2)
    certs = {v.login: v for v in service.certificates.list_certificates(TENANT)}
    assert set(certs) == {"suzuki", "yamada"}
    # valid through 1 August in Tokyo: until 2027-08-02 00:00 JST, less one second
    expected = dt.datetime(2027, 8, 1, 14, 59, 59, tzinfo=dt.UTC)
    assert {(v.not_after, v.expiry_date, v.expiry_zone, v.key_type)
            for v in certs.values()} == {(expected, dt.date(2027, 8, 1), "Asia/Tokyo",
                                          "rsa-2048")}
    assert {(one["login"], one["serial"], one["not_after"])
            for one in job.result["issued"]} == {  # type: ignore[index]
        (login, v.serial, expected.isoformat()) for login, v in certs.items()}
    # the job page shows each expiry in the viewer's zone (the tenant's: UTC), zone named
    text = admin.get(f"/console/t/{TENANT}/jobs/{job_id}").text  # type: ignore[attr-defined]
    assert "有効期限 (UTC)" in text
    assert text.count("<td>2027-08-01 14:59 UTC</td>") == 2


def test_an_admin_with_a_zone_of_their_own_sees_it_and_issues_in_it(
        service: Service, clock: FixedClock, app_client: TestClient, tenant: str) -> None:
    clock.set(NOW)
    add(service, "yamada", "山田太郎")
    token = service.tokens.create(role="admin", tenant=TENANT, name="東京の管理者",
                                  timezone="Asia/Tokyo")[0]
    admin = Console(app_client)
    admin.sign_in(token)
    shown = page(admin, users_url())
    assert (shown.ids["expires"]["value"], shown.chosen["timezone"]) == (
        "2027-03-03", "Asia/Tokyo")
    # a form that names no zone or date: the admin's zone decides, as the API's does
    job = finished(service, job_of(issue_form(admin, ["yamada"], timezone="", expires="")))
    assert job.status == "succeeded"
    (view,) = service.certificates.list_certificates(TENANT)
    assert (view.expiry_date, view.expiry_zone, view.not_after) == (
        dt.date(2027, 3, 3), "Asia/Tokyo", dt.datetime(2027, 3, 3, 14, 59, 59, tzinfo=dt.UTC))


def test_the_issuance_is_audited_with_the_admin_as_actor(
        service: Service, admin: Console, admin_token: str) -> None:
    add(service, "yamada", "山田太郎")
    job_id = job_of(issue_form(admin, ["yamada"], **{"reissue": "keep"}))
    assert finished(service, job_id).status == "succeeded"
    download: Any = admin.client.get(f"/console/t/{TENANT}/jobs/{job_id}/download")
    assert download.status_code == 200
    with service.database.reading() as session:
        events = session.execute(select(AuditEvent.action, AuditEvent.actor, AuditEvent.target)
                                 .where(AuditEvent.action.like("cert.%"))
                                 .order_by(AuditEvent.id)).all()
    (serial,) = [v.serial for v in service.certificates.list_certificates(TENANT)]
    (token,) = [t for t in service.tokens.list_tokens(tenant=TENANT) if t.name == ADMIN_NAME]
    assert events == [
        ("cert.issue", f"token:{token.id}:{ADMIN_NAME}", f"{TENANT}/yamada/{serial}"),
        ("cert.download", f"token:{token.id}:{ADMIN_NAME}", f"{TENANT}/bulk"),
        ("cert.download.end", f"token:{token.id}:{ADMIN_NAME}", f"{TENANT}/bulk")]


def test_reissue_revoke_supersedes_the_previous_certificate_and_keep_keeps_it(
        service: Service, admin: Console) -> None:
    add(service, "yamada", "山田太郎")
    add(service, "suzuki", "鈴木一郎")
    (old_yamada, old_suzuki) = issue(service, "yamada", "suzuki")
    assert finished(service, job_of(issue_form(admin, ["yamada"], reissue="revoke"))
                    ).status == "succeeded"
    assert finished(service, job_of(issue_form(admin, ["suzuki"], reissue="keep"))
                    ).status == "succeeded"
    old = service.certificates.get(old_yamada)
    assert (old.state, old.revocation_reason) == (State.REVOKED, "superseded")
    assert service.certificates.get(old_suzuki).state is State.VALID
    states = sorted((v.login, v.state.value) for v in
                    service.certificates.list_certificates(TENANT))
    assert states == [("suzuki", "valid"), ("suzuki", "valid"), ("yamada", "revoked"),
                      ("yamada", "valid")]


# --- the job ---------------------------------------------------------------------------------


def test_the_job_page_while_it_runs(service: Service, admin: Console) -> None:
    release = threading.Event()

    def work(progress: Any) -> dict[str, Any]:
        progress(3, 10)
        release.wait(30)
        return {"issued": [], "failures": []}

    job = service.jobs.start(TENANT, "issue", work)
    try:
        for _ in range(200):  # the first progress report lands in the row
            if service.jobs.get(TENANT, job.id).done == 3:
                break
            time.sleep(0.02)
        shown = page(admin, f"/console/t/{TENANT}/jobs/{job.id}")
        assert shown.ids["job"]["data-job-status"] == f"/console/t/{TENANT}/jobs/{job.id}/status"
        assert shown.ids["job-status"]["data-status"] == "running"
        assert "download" not in shown.ids
        status: Any = admin.client.get(f"/console/t/{TENANT}/jobs/{job.id}/status")
        assert status.json() == {"status": "running", "done": 3, "total": 10,
                                 "text": "3 / 10 件を作成しました"}
        early: Any = admin.client.get(f"/console/t/{TENANT}/jobs/{job.id}/download")
        assert early.status_code == 409
    finally:
        release.set()
    assert finished(service, job.id).status == "succeeded"


def test_a_finished_job_offers_the_zip_of_exactly_its_users_and_lists_who_was_refused(
        service: Service, admin: Console) -> None:
    add(service, "yamada", "山田太郎")
    add(service, "suzuki", "鈴木一郎")
    add(service, "tanaka", HOSTILE, allow=False)  # no secure access: refused
    add(service, "sato", "佐藤次郎")  # issued before, not by this job
    issue(service, "sato")
    job_id = job_of(issue_form(admin, ["yamada", "suzuki", "tanaka"]))
    job = finished(service, job_id)
    assert job.status == "succeeded"
    answer: Any = admin.get(f"/console/t/{TENANT}/jobs/{job_id}")
    shown = Page(answer.text)
    assert shown.ids["job-status"]["data-status"] == "succeeded"
    assert shown.ids["download"]["href"] == f"/console/t/{TENANT}/jobs/{job_id}/download"
    assert shown.rows == {"tanaka": None, "suzuki": None, "yamada": None}
    (refused,) = job.result["failures"]  # type: ignore[index]
    assert refused == {"login": "tanaka", "reason": "tanaka: the user has no secure-access "
                                                  "permission; allow it first"}
    assert f'<td class="problem">{html.escape(refused["reason"])}</td>' in answer.text
    assert "<script>" not in answer.text
    status: Any = admin.client.get(f"/console/t/{TENANT}/jobs/{job_id}/status")
    assert status.json() == {"status": "succeeded", "done": 2, "total": 2,
                             "text": "2 人に発行しました。発行できなかったユーザー: 1 人"}
    download: Any = admin.client.get(f"/console/t/{TENANT}/jobs/{job_id}/download")
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/zip"
    assert download.headers["cache-control"] == "no-store"
    with zipfile.ZipFile(io.BytesIO(download.content)) as outer:
        assert sorted(outer.namelist()) == ["manifest.csv", "suzuki.zip", "yamada.zip"]
        manifest = outer.read("manifest.csv").decode()
    serials = {v.login: v.serial for v in service.certificates.list_certificates(TENANT)
               if v.login != "sato"}
    assert {line.split(",")[0]: line.split(",")[1]
            for line in manifest.splitlines()[1:]} == serials


def test_a_failed_job_says_why_and_offers_nothing(service: Service, admin: Console) -> None:
    add(service, "yamada", "山田太郎")
    add(service, "tanaka", "田中花子", allow=False)
    answer = issue_form(admin, ["yamada", "tanaka"], best_effort="")
    job = finished(service, job_of(answer))
    assert job.status == "failed"
    shown = page(admin, f"/console/t/{TENANT}/jobs/{job.id}?lang=en")
    assert shown.ids["job-status"]["data-status"] == "failed"
    assert "download" not in shown.ids
    assert counts(service)[0] == 0  # all or none: none
    status: Any = admin.client.get(f"/console/t/{TENANT}/jobs/{job.id}/status")
    assert status.json()["status"] == "failed"
    assert status.json()["text"] == f"Nothing was issued: {job.error}"
    refused: Any = admin.client.get(f"/console/t/{TENANT}/jobs/{job.id}/download")
    assert refused.status_code == 409


def test_an_unknown_job_is_not_found(service: Service, admin: Console) -> None:
    for path in ("", "/status", "/download"):
        for job_id in ("0" * 32, "nope"):
            answer: Any = admin.client.get(f"/console/t/{TENANT}/jobs/{job_id}{path}")
            assert answer.status_code == 404, (job_id, path)


# --- tenants apart ---------------------------------------------------------------------------


def test_another_tenants_admin_gets_404_everywhere_here(service: Service, admin: Console,
                                                        app_client: TestClient) -> None:
    add(service, "yamada", "山田太郎")
    job_id = job_of(issue_form(admin, ["yamada"]))
    assert finished(service, job_id).status == "succeeded"
    service.hierarchy.create_tenant("kansai", display_name="関西商事")
    other = Console(TestClient(app_client.app, base_url="http://127.0.0.1"))
    token = service.tokens.create(role="admin", tenant="kansai", name="他社")[0]
    assert other.sign_in(token).status_code == 303  # type: ignore[attr-defined]
    assert other.get("/console/t/kansai/users").status_code == 200  # type: ignore[attr-defined]
    for path in (users_url(), f"/console/t/{TENANT}/jobs/{job_id}",
                 f"/console/t/{TENANT}/jobs/{job_id}/status",
                 f"/console/t/{TENANT}/jobs/{job_id}/download"):
        assert other.get(path).status_code == 404, path  # type: ignore[attr-defined]
    before = counts(service)
    refused = other.post(f"/console/t/{TENANT}/issue", {
        "login": ["yamada"], "expires": "2027-03-02"})
    assert refused.status_code == 404  # type: ignore[attr-defined]
    assert counts(service) == before
    # their own tenant does not hold our job either
    assert other.get(f"/console/t/kansai/jobs/{job_id}").status_code == 404  # type: ignore[attr-defined]


def test_a_non_ascii_page_in_the_issue_forms_view_is_no_server_error(
        service: Service, admin: Console) -> None:
    add(service, "yamada", "山田太郎")
    answer: Any = issue_form(admin, [], view="page=²")
    assert answer.status_code == 400
    assert "発行するユーザーを表で 1 人以上選択してください。" in Page(answer.text).texts["error"]
    answer = issue_form(admin, ["yamada"], view="page=①", all_matching="1")
    assert answer.status_code == 400
    assert "page '①' is not a number from 1" in html.unescape(Page(answer.text).texts["error"])
    assert counts(service) == (0, 0)


def test_a_jobs_zip_holds_the_certificates_it_issued_not_a_later_ones(
        service: Service, admin: Console) -> None:
    add(service, "yamada", "山田太郎")
    add(service, "suzuki", "鈴木一郎")
    first = job_of(issue_form(admin, ["yamada", "suzuki"]))
    assert finished(service, first).status == "succeeded"
    mine = {one["login"]: one["serial"]
            for one in service.jobs.get(TENANT, first).result["issued"]}  # type: ignore[index]
    second = job_of(issue_form(admin, ["yamada"], reissue="keep"))
    assert finished(service, second).status == "succeeded"
    (later,) = service.jobs.get(TENANT, second).result["issued"]  # type: ignore[index]
    assert later["serial"] != mine["yamada"]

    def manifest(job_id: str) -> dict[str, str]:
        download: Any = admin.client.get(f"/console/t/{TENANT}/jobs/{job_id}/download")
        assert download.status_code == 200, download.text
        with zipfile.ZipFile(io.BytesIO(download.content)) as outer:
            text = outer.read("manifest.csv").decode()
        return {line.split(",")[0]: line.split(",")[1] for line in text.splitlines()[1:]}

    assert manifest(first) == mine
    assert manifest(second) == {"yamada": later["serial"]}
    # a certificate of the job revoked since is left out, and the audit says which
    service.revocation.revoke(TENANT, mine["suzuki"], reason="keyCompromise")
    assert manifest(first) == {"yamada": mine["yamada"]}
    with service.database.reading() as session:
        details = session.scalars(select(AuditEvent.details).where(
            AuditEvent.action == "cert.download").order_by(AuditEvent.id.desc())).first()
    assert details is not None
    said = json.loads(details) if isinstance(details, str) else details
    assert (said["serials"], said["not_valid"]) == ([mine["yamada"]], [mine["suzuki"]])


def test_issuing_to_all_matching_issues_to_the_whole_group_not_one_page(
        crowd: Service, admin: Console) -> None:
    crowd.users.set_permission(TENANT, tuple(f"u{n:03d}" for n in range(120)), allow=True)
    answer: Any = admin.get(users_url("group=営業部"))
    shown = Page(answer.text)
    assert shown.texts["user-count"] == "60" and len(shown.logins) == 50
    assert (shown.ids["issue-all-matching"]["name"],
            shown.ids["issue-all-matching"]["value"]) == ("all_matching", "1")
    assert "この絞り込みに該当するユーザー全員 (60 人) に発行する" in answer.text
    # only one page ticked, but all matching asked: the whole group of 60
    job_id = job_of(issue_form(admin, shown.logins, view="group=営業部", all_matching="1"))
    assert finished(crowd, job_id).status == "succeeded"
    issued = {v.login for v in crowd.certificates.list_certificates(TENANT)}
    assert issued == {f"u{n:03d}" for n in range(0, 120, 2)}


def test_all_matching_with_a_search_is_refused_and_issues_nothing(
        crowd: Service, admin: Console) -> None:
    answer: Any = issue_form(admin, ["u000"], view="group=営業部&q=u00", all_matching="1")
    assert answer.status_code == 400
    assert Page(answer.text).texts["error"].strip() == (
        "検索語を指定したままでは該当ユーザー全員には発行できません。"
        "検索をやめて組織・状態で絞り込むか、表で選択してください。")
    assert counts(crowd) == (0, 0)


def test_without_all_matching_only_the_ticked_users_are_issued(
        crowd: Service, admin: Console) -> None:
    crowd.users.set_permission(TENANT, ("u000", "u002", "u004"), allow=True)
    job_id = job_of(issue_form(admin, ["u000", "u002"], view="group=営業部"))
    assert finished(crowd, job_id).status == "succeeded"
    assert {v.login for v in crowd.certificates.list_certificates(TENANT)} == {"u000", "u002"}


def test_the_users_tables_headers_do_not_break_mid_word() -> None:
    from pathlib import Path
    css = (Path(__file__).parents[2] / "api/console/static/console.css").read_text()
    assert "#users th { overflow-wrap: normal; word-break: normal; }" in css
