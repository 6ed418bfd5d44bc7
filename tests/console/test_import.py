"""The CSV import page: check (the import's dry run) shows every row with its line, apply
writes all or nothing, the API's 50 MB cap, and bad files refused with nothing written."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.routes.users import MAX_CSV_BYTES
from ca.db.models import AuditEvent
from ca.service import Service
from tests.console.conftest import Console
from tests.console.dom import Node, parse

# the pages over the use cases: their PostgreSQL behaviour is the use cases' own tests'
# (tests/integration), and the console's sessions and walk run on both databases
pytestmark = [pytest.mark.usefixtures("db_url"),
              pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

PAGE = "/console/t/tohoku/import"
HEADER = "login,email,name,groups,secure_access\n"
GOOD = {
    2: "yamada.taro,yamada@tohoku.example.jp,山田太郎,営業部,yes\n",
    4: "tanaka,tanaka@tohoku.example.jp,田中次郎,,yes\n",
    5: "suzuki,suzuki@tohoku.example.jp,鈴木一郎,,no\n",
    6: "kobayashi,kobayashi@tohoku.example.jp,小林三郎,,no\n",
}
BAD_LINE = "sato.hanako,not-an-email,佐藤花子,営業部;東京,no\n"
FIXED_LINE = "sato.hanako,sato@tohoku.example.jp,佐藤花子,営業部;東京,no\n"
BAD_PROBLEM = ("e-mail 'not-an-email' is not an address of the form name@domain.example")


def csv_of(line_3: str) -> str:
    return HEADER + GOOD[2] + line_3 + GOOD[4] + GOOD[5] + GOOD[6]


@pytest.fixture
def existing(service: Service, tenant: str) -> Service:
    """tanaka (whose name the CSV changes) and kobayashi (whom it leaves as he is)."""
    service.users.add(tenant, "tanaka", email="tanaka@tohoku.example.jp", display_name="田中",
                      allow=True)
    service.users.add(tenant, "kobayashi", email="kobayashi@tohoku.example.jp",
                      display_name="小林三郎")
    return service


def rows(page: Node) -> list[tuple[int, str, str, str, str]]:
    """Each row of the report: line, ok/bad, login, result, problem."""
    found = []
    for tr in page.one("table", id="import-rows").all("tr", data_line=None):
        found.append((int(tr.attrs["data-line"]), " ".join(sorted(tr.classes)),
                      tr.one("td", cls="login").text,
                      tr.one("td", cls="result").attrs["data-result"],
                      tr.one("td", cls="problem").text))
    return found


def users(service: Service) -> set[tuple[str, str, str, tuple[str, ...], bool]]:
    return {(u.login, u.email, u.display_name, u.groups, u.secure_access)
            for u in service.users.list_users("tohoku")}


def audit(service: Service) -> list[tuple[str, str, str, dict[str, object]]]:
    with service.database.reading() as session:
        return [(e.action, e.target, e.actor, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("user.%")).order_by(AuditEvent.id))]


BEFORE = {("tanaka", "tanaka@tohoku.example.jp", "田中", (), True),
          ("kobayashi", "kobayashi@tohoku.example.jp", "小林三郎", (), False)}
CHECKED = [
    (2, "ok", "yamada.taro", "created", ""),
    (3, "bad", "sato.hanako", "bad", BAD_PROBLEM),
    (4, "ok", "tanaka", "updated", ""),
    (5, "ok", "suzuki", "created", ""),
    (6, "ok", "kobayashi", "unchanged", ""),
]


def test_the_page_has_the_form_of_the_contract(admin: Console, tenant: str) -> None:
    page = parse(admin.get(PAGE).text)  # type: ignore[attr-defined]
    form = page.by_id("import")
    assert (form.attrs["method"], form.attrs["action"], form.attrs["enctype"]) == (
        "post", PAGE, "multipart/form-data")
    assert (page.by_id("csv-file").attrs["type"], page.by_id("csv-file").attrs["name"]) == (
        "file", "file")
    assert (page.by_id("csv-text").tag, page.by_id("csv-text").attrs["name"]) == (
        "textarea", "text")
    assert [(b.attrs["id"], b.attrs["name"], b.attrs["value"]) for b in form.all("button")] == [
        ("check", "action", "check"), ("apply", "action", "apply")]
    assert not page.has_id("import-rows")


def test_a_check_shows_every_row_and_writes_nothing(
        service: Service, admin: Console, existing: Service) -> None:
    admin.get(PAGE)
    answer = admin.post(PAGE, {"action": "check"}, headers={"Accept-Language": "en"},
                        files={"file": ("users.csv", csv_of(BAD_LINE).encode(), "text/csv")})
    assert answer.status_code == 200  # type: ignore[attr-defined]
    page = parse(answer.text)  # type: ignore[attr-defined]
    assert rows(page) == CHECKED
    assert page.by_id("import-checked").text == \
        "1 row has a problem (line 3): fix it and check again."
    # the file's text, to be fixed in the box and checked again
    assert page.by_id("csv-text").text == " ".join(csv_of(BAD_LINE).split())
    assert not page.has_id("import-done")
    assert users(service) == BEFORE
    assert [a for a, _, _, _ in audit(service)] == ["user.create", "user.create"]


def test_an_apply_with_a_bad_row_writes_nothing_then_the_fixed_file_lands_whole(
        service: Service, admin: Console, existing: Service) -> None:
    admin.get(PAGE)
    refused = admin.post(PAGE, {"action": "apply", "text": csv_of(BAD_LINE)})
    assert refused.status_code == 400  # type: ignore[attr-defined]
    page = parse(refused.text)  # type: ignore[attr-defined]
    assert rows(page) == CHECKED
    assert page.by_id("import-refused").text == \
        "1 行に問題があるため、何も取り込んでいません (3 行目)。"
    # kept, to be fixed and applied again
    assert page.by_id("csv-text").text == " ".join(csv_of(BAD_LINE).split())
    assert not page.has_id("import-done")
    assert users(service) == BEFORE
    assert len(audit(service)) == 2

    applied = admin.post(PAGE, {"action": "apply", "text": csv_of(FIXED_LINE)},
                         headers={"Accept-Language": "en"})
    assert applied.status_code == 200  # type: ignore[attr-defined]
    page = parse(applied.text)  # type: ignore[attr-defined]
    assert page.by_id("import-done").text == "Imported: 3 created, 1 updated, 1 unchanged."
    assert rows(page) == [
        (2, "ok", "yamada.taro", "created", ""), (3, "ok", "sato.hanako", "created", ""),
        (4, "ok", "tanaka", "updated", ""), (5, "ok", "suzuki", "created", ""),
        (6, "ok", "kobayashi", "unchanged", "")]
    assert users(service) == {
        ("yamada.taro", "yamada@tohoku.example.jp", "山田太郎", ("営業部",), True),
        ("sato.hanako", "sato@tohoku.example.jp", "佐藤花子", ("営業部", "東京"), False),
        ("tanaka", "tanaka@tohoku.example.jp", "田中次郎", (), True),
        ("suzuki", "suzuki@tohoku.example.jp", "鈴木一郎", (), False),
        ("kobayashi", "kobayashi@tohoku.example.jp", "小林三郎", (), False)}
    events = audit(service)[2:]
    assert [(a, t, d) for a, t, _, d in events] == [
        ("user.update", "tohoku/tanaka", {"changed": ["display_name"]}),
        ("user.import", "tohoku", {"created": 3, "updated": 1, "errors": 0,
                                   "created_logins": ["yamada.taro", "sato.hanako", "suzuki"],
                                   "allowed": ["yamada.taro"]})]
    assert {actor for _, _, actor, _ in events} == {events[0][2]}
    assert events[0][2].startswith("token:") and events[0][2].endswith(":佐藤 管理者")


def test_a_bad_login_is_shown_escaped(service: Service, admin: Console, tenant: str) -> None:
    admin.get(PAGE)
    answer = admin.post(PAGE, {"action": "check",
                               "text": HEADER + "<script>alert(1)</script>,a@b.jp,山田,,no\n"})
    text = answer.text  # type: ignore[attr-defined]
    assert "<script>alert(1)</script>" not in text
    assert rows(parse(text)) == [
        (2, "bad", "<script>alert(1)</script>", "bad",
         "login '<script>alert(1)</script>' must be 1-64 characters of A-Z a-z 0-9 . _ - "
         "starting with a letter or digit, with no '..' and not ending in '.'")]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


@pytest.mark.parametrize(("upload", "problem"), [
    (HEADER.encode() + "yamada,y@tohoku.example.jp,山田太郎,,yes\n".encode("shift_jis"),
     "line 2: the CSV file is not UTF-8 (Shift_JIS?); save it as 'CSV UTF-8'"),
    (b"", "the file 'users.csv' is empty"),
    (b"\n\n", "the CSV file is empty: the first line must name the columns "
              "(login, email, name, groups, secure_access, kind)"),
], ids=["shift-jis", "empty", "blank"])
@pytest.mark.parametrize("action", ["check", "apply"])
def test_a_file_that_cannot_be_read_is_refused_and_nothing_written(
        service: Service, admin: Console, existing: Service, upload: bytes, problem: str,
        action: str) -> None:
    admin.get(PAGE)
    answer = admin.post(PAGE, {"action": action}, headers={"Accept-Language": "en"},
                        files={"file": ("users.csv", upload, "text/csv")})
    assert answer.status_code == 400  # type: ignore[attr-defined]
    page = parse(answer.text)  # type: ignore[attr-defined]
    assert page.by_id("error").text == f"Cannot import: {problem}"
    assert not page.has_id("import-rows")
    assert users(service) == BEFORE and len(audit(service)) == 2


def test_nothing_given_asks_for_a_file_or_text(admin: Console, tenant: str) -> None:
    admin.get(PAGE)
    answer = admin.post(PAGE, {"action": "check", "text": "  \n"})
    assert answer.status_code == 400  # type: ignore[attr-defined]
    assert parse(answer.text).by_id("error").text == (  # type: ignore[attr-defined]
        "CSV ファイルを選ぶか、CSV を貼り付けてください。")


def test_the_api_cap_of_50_mb_holds(service: Service, admin: Console, tenant: str) -> None:
    admin.get(PAGE)
    # exactly the cap: read, and judged as CSV (one cell past the csv module's limit)
    at_cap = b"login\n" + b"a" * (MAX_CSV_BYTES - 6)
    answer = admin.post(PAGE, {"action": "apply"}, headers={"Accept-Language": "en"},
                        files={"file": ("users.csv", at_cap, "text/csv")})
    assert parse(answer.text).by_id("error").text == (  # type: ignore[attr-defined]
        "Cannot import: line 2: field larger than field limit (131072)")
    # one byte more: refused for its size
    answer = admin.post(PAGE, {"action": "apply"}, headers={"Accept-Language": "en"},
                        files={"file": ("users.csv", at_cap + b"a", "text/csv")})
    assert answer.status_code == 400  # type: ignore[attr-defined]
    assert parse(answer.text).by_id("error").text == (  # type: ignore[attr-defined]
        "Cannot import: the CSV file is larger than 50 MB")
    assert service.users.list_users("tohoku") == []


def test_a_body_declared_past_the_cap_is_refused_before_it_is_read(
        admin: Console, tenant: str) -> None:
    admin.get(PAGE)
    sent = {"read": 0}

    def body() -> object:
        sent["read"] += 1
        yield b"x" * 1024

    answer = admin.client.post(PAGE, content=body(), headers={  # type: ignore[arg-type]
        "Content-Type": "multipart/form-data; boundary=x",
        "Content-Length": str(MAX_CSV_BYTES + 3 * 1024 * 1024), "Accept-Language": "en"})
    assert answer.status_code == 400
    assert parse(answer.text).one("p", cls="error").text == \
        "the CSV file is larger than 50 MB"


def test_a_post_without_the_csrf_value_is_forbidden_and_writes_nothing(
        service: Service, admin: Console, tenant: str) -> None:
    admin.get(PAGE)
    data = {"action": "apply", "text": HEADER + GOOD[2]}
    assert admin.post(PAGE, data, csrf=False).status_code == 403  # type: ignore[attr-defined]
    assert admin.post(PAGE, {**data, "csrf": "forged"}, csrf=False).status_code == 403  # type: ignore[attr-defined]
    assert service.users.list_users("tohoku") == []


def test_another_tenants_admin_finds_nothing(service: Service, app_client: TestClient,
                                             tenant: str) -> None:
    service.hierarchy.create_tenant("sakura", display_name="さくら商事")
    token = service.tokens.create(role="admin", tenant="sakura", name="さくら管理者")[0]
    other = Console(app_client)
    other.sign_in(token)
    assert other.get(PAGE).status_code == 404  # type: ignore[attr-defined]
    other.get("/console/t/sakura/import")
    answer = other.post(PAGE, {"action": "apply", "text": HEADER + GOOD[2]})
    assert answer.status_code == 404  # type: ignore[attr-defined]
    assert service.users.list_users("tohoku") == []


def test_pasted_text_past_1_mb_is_refused_and_writes_nothing(
        service: Service, admin: Console, tenant: str) -> None:
    admin.get(PAGE)
    text = HEADER + GOOD[2] + "#" * (1024 * 1024)
    answer = admin.post(PAGE, {"action": "apply", "text": text},
                        files={"file": ("", b"", "application/octet-stream")})
    assert answer.status_code == 400  # type: ignore[attr-defined]
    assert parse(answer.text).one("p", cls="error").text == "the form could not be read"  # type: ignore[attr-defined]
    assert service.users.list_users("tohoku") == []


def test_with_no_file_chosen_the_pasted_text_is_read(
        service: Service, admin: Console, existing: Service) -> None:
    admin.get(PAGE)
    # a browser sends the file field empty, with an empty file name, when none is chosen
    answer = admin.post(PAGE, {"action": "check", "text": csv_of(BAD_LINE)},
                        files={"file": ("", b"", "application/octet-stream")})
    assert answer.status_code == 200  # type: ignore[attr-defined]
    assert rows(parse(answer.text)) == CHECKED  # type: ignore[attr-defined]
    assert users(service) == BEFORE


@pytest.mark.parametrize(("lang", "bad_lines", "alert"), [
    ("en", (3, 5), "2 rows have problems (lines 3, 5): fix them and check again."),
    ("ja", (3, 5), "2 行に問題があります (3、5 行目)。直してからもう一度確認してください。"),
    ("ja", (3,), "1 行に問題があります (3 行目)。直してからもう一度確認してください。"),
    ("en", tuple(range(2, 14)), "12 rows have problems (lines 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 "
                                "and 2 more): fix them and check again."),
], ids=["en-two", "ja-two", "ja-one", "en-twelve"])
def test_the_checks_alert_counts_the_bad_rows_and_names_their_lines(
        service: Service, admin: Console, tenant: str, lang: str,
        bad_lines: tuple[int, ...], alert: str) -> None:
    body = "".join(f"user{n},{'bad' if n in bad_lines else f'u{n}@tohoku.example.jp'},"
                   f"山田{n},,no\n" for n in range(2, 14))
    admin.get(PAGE)
    answer = admin.post(PAGE, {"action": "check"}, headers={"Accept-Language": lang},
                        files={"file": ("users.csv", (HEADER + body).encode(), "text/csv")})
    assert answer.status_code == 200  # type: ignore[attr-defined]
    page = parse(answer.text)  # type: ignore[attr-defined]
    assert page.by_id("import-checked").text == alert
    assert [line for line, ok, _, _, _ in rows(page) if ok == "bad"] == list(bad_lines)
    assert page.by_id("csv-text").text == " ".join((HEADER + body).split())
    assert service.users.list_users(tenant) == []
