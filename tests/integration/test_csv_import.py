"""Users from CSV: columns by header, create and update, dry run, every bad row reported with
its line, all or nothing unless best effort, Excel's BOM; and an export no spreadsheet runs."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import select

from ca.db.models import AuditEvent
from ca.errors import InvalidInput
from ca.service import ImportReport, IssueRequest, Selection, Service
from ca.states import State

TENANT = "default"
BOM = b"\xef\xbb\xbf"
# for whole-file refusals, made before anything reaches the database
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def load(service: Service, text: str | bytes, *, dry_run: bool = False,
         best_effort: bool = False) -> ImportReport:
    data = text.encode() if isinstance(text, str) else text
    return service.users.import_users(TENANT, data, dry_run=dry_run, best_effort=best_effort)


def users(service: Service) -> dict[str, tuple[str, str, tuple[str, ...], bool, str]]:
    """login -> (email, name, groups, secure_access, kind) of every active user."""
    return {v.login: (v.email, v.display_name, v.groups, v.secure_access, v.kind)
            for v in service.users.list_users(TENANT, Selection(everyone=True))}


def imports(service: Service) -> int:
    with service.database.reading() as session:
        return len(session.scalars(select(AuditEvent.id).where(
            AuditEvent.action == "user.import")).all())


def refusal(service: Service, data: bytes) -> str:
    """Every reason an import gives for refusing, for the whole file or row by row."""
    try:
        report = load(service, data)
    except InvalidInput as exc:
        return exc.message
    assert report.errors, "the file was accepted"
    return "\n".join(f"line {line}: {login}: {reason}" for line, login, reason in report.errors)


def rows_of(export: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(export, newline="")))


# --- reading -------------------------------------------------------------------------------


def test_columns_are_read_by_header_in_any_order(service: Service) -> None:
    report = load(service, "Kind, groups ,secure_access,EMAIL,name,login\n"
                           "service,Ops;Tokyo,yes,bot@example.com,Backup bot,backup-bot\n"
                           "person,,no,alice@example.com,Alice,alice\n")
    assert (report.created, report.errors) == (["backup-bot", "alice"], [])
    assert users(service) == {
        "alice": ("alice@example.com", "Alice", (), False, "person"),
        "backup-bot": ("bot@example.com", "Backup bot", ("Ops", "Tokyo"), True, "service"),
    }


def test_one_file_creates_updates_and_leaves_unchanged(service: Service) -> None:
    service.users.add(TENANT, "alice", email="alice@example.com", display_name="Alice")
    service.users.add(TENANT, "bob", email="bob@example.com", display_name="Bob")
    report = load(service, "login,email,name\n"
                           "ALICE,liddell@example.com,Alice\n"
                           "bob,bob@example.com,Bob\n"
                           "carol,carol@example.com,Carol\n")
    assert (report.created, report.updated, report.unchanged) == (["carol"], ["ALICE"], ["bob"])
    assert report.dry_run is False and report.errors == []
    assert users(service)["alice"][0] == "liddell@example.com"
    assert set(users(service)) == {"alice", "bob", "carol"}
    assert imports(service) == 1


def test_columns_left_out_leave_those_fields_unchanged_and_empty_groups_mean_none(
        service: Service) -> None:
    service.users.add(TENANT, "alice", email="alice@example.com", display_name="Alice",
                     groups=("Sales", "Dev"), kind="service", allow=True)
    report = load(service, "login,name\nalice,Alice Liddell\n")
    assert report.updated == ["alice"]
    assert users(service)["alice"] == (
        "alice@example.com", "Alice Liddell", ("Dev", "Sales"), True, "service")
    load(service, "login,groups\nalice,\n")
    assert users(service)["alice"][2] == ()
    assert [v.login for v in service.users.list_users(TENANT, Selection(unaffiliated=True))] == [
        "alice"]


def test_a_dry_run_reports_what_would_change_and_writes_nothing(service: Service) -> None:
    service.users.add(TENANT, "alice", email="alice@example.com")
    before = users(service)
    report = load(service, "login,email,groups\n"
                           "alice,liddell@example.com,Sales\n"
                           "bob,bob@example.com,Sales\n", dry_run=True)
    assert report.dry_run is True
    assert (report.created, report.updated, report.errors) == (["bob"], ["alice"], [])
    assert users(service) == before
    assert service.users.list_groups(TENANT) == []
    assert imports(service) == 0
    # the bad rows are listed too
    report = load(service, "login,email\ncarol,carol@example.com\ndave,dave@\n", dry_run=True)
    assert report.created == ["carol"]
    assert [(line, login) for line, login, _ in report.errors] == [(3, "dave")]
    assert users(service) == before


# --- bad rows ------------------------------------------------------------------------------

BAD_FILE = ("login,email,secure_access,kind,name\n"
            "alice,alice@example.com,yes,person,Alice\n"   # 2: good
            "bob,bob@example,yes,person,Bob\n"             # 3: bad e-mail
            "../x,x@example.com,yes,person,X\n"            # 4: hostile login
            "ALICE,alice2@example.com,yes,person,A\n"      # 5: alice again
            "carol,carol@example.com,maybe,person,C\n"     # 6: not yes or no
            "dave,,yes,person,Dave\n"                      # 7: a new user needs an e-mail
            "erin,erin@example.com,yes,robot,Erin\n"       # 8: unknown kind
            "frank,frank@example.com,no,person,F\u202eR\n"  # 9: bidi override in the name
            "grace,grace@example.com,yes,service,Grace\n")  # 10: good
BAD_LINES = {3: "e-mail", 4: "login", 5: "line 2", 6: "yes or no", 7: "e-mail",
             8: "person or service", 9: "U+202E"}


def test_every_bad_row_is_reported_with_its_line_and_reason_and_nothing_is_written(
        service: Service) -> None:
    report = load(service, BAD_FILE)
    assert [line for line, _, _ in report.errors] == list(BAD_LINES)
    for line, _login, reason in report.errors:
        assert BAD_LINES[line] in reason, (line, reason)
    assert [login for _, login, _ in report.errors][:2] == ["bob", "../x"]
    assert (report.created, report.updated, report.unchanged) == ([], [], [])
    assert users(service) == {}
    assert imports(service) == 0


def test_best_effort_writes_the_good_rows_and_lists_the_bad(service: Service) -> None:
    report = load(service, BAD_FILE, best_effort=True)
    assert report.created == ["alice", "grace"]
    assert [line for line, _, _ in report.errors] == list(BAD_LINES)
    assert set(users(service)) == {"alice", "grace"}
    assert users(service)["alice"][0] == "alice@example.com"  # line 5 did not land
    assert imports(service) == 1


def test_a_bad_row_changes_no_existing_user_either(service: Service) -> None:
    service.users.add(TENANT, "alice", email="alice@example.com", allow=True)
    [serial] = [v.serial for v in service.certificates.issue(IssueRequest(tenant=TENANT,
                                                                          logins=("alice",)))]
    report = load(service, "login,secure_access,groups\nalice,no,Sales\nbob,yes,\n")
    assert [(line, login) for line, login, _ in report.errors] == [(3, "bob")]
    assert users(service)["alice"][2:4] == ((), True)
    assert service.certificates.get(serial).state is State.VALID
    assert service.users.list_groups(TENANT) == []


BAD_HEADERS = {
    "unknown-column": ("login,email,department\n", ["line 1", "'department'"]),
    "no-login-column": ("email,name\n", ["line 1", "'login'"]),
    "column-twice": ("login,email,login\n", ["line 1", "twice"]),
    "no-header": ("\n", ["empty"]),
}


@SQLITE_ONLY
def test_a_bad_header_refuses_the_whole_file_naming_line_1(service: Service) -> None:
    for case, (header, words) in BAD_HEADERS.items():
        with pytest.raises(InvalidInput) as caught:
            load(service, header + "alice,alice@example.com,x\n", best_effort=True)
        for word in words:
            assert word in caught.value.message, case
    assert users(service) == {}


@SQLITE_ONLY
def test_a_row_with_the_wrong_number_of_cells_is_refused_naming_its_line(
        service: Service) -> None:
    data = b"login,email\nalice,alice@example.com\nbob,bob@example.com,extra\ncarol\n"
    reasons = refusal(service, data)
    assert "line 3" in reasons and "cells" in reasons
    assert users(service) == {}


def test_best_effort_lists_a_row_with_the_wrong_number_of_cells_and_writes_the_others(
        service: Service) -> None:
    data = b"login,email\nalice,alice@example.com\nbob,bob@example.com,extra\n" \
           b"carol,carol@example.com\n"
    report = load(service, data, best_effort=True)
    assert [line for line, _, _ in report.errors] == [3]
    assert report.created == ["alice", "carol"]


NOT_UTF8 = {
    "latin-1": b"login,email\nalice,alice@example.com\nb\xe9b,bob@example.com\n",
    "shift-jis": b"login,email,name\nalice,alice@example.com,A\nyamada,y@example.com,"
                 + "山田".encode("shift_jis") + b"\n",
}


@SQLITE_ONLY
def test_a_file_that_is_not_utf8_is_refused_naming_the_line(service: Service) -> None:
    for case, data in NOT_UTF8.items():
        reasons = refusal(service, data)
        assert "UTF-8" in reasons, case
        assert "line 3" in reasons, (case, reasons)
    assert users(service) == {}


# --- encodings and quoting -----------------------------------------------------------------


def test_the_bom_that_excel_writes_is_accepted(service: Service) -> None:
    report = load(service, BOM + b"login,email,name\r\nalice,alice@example.com,Alice\r\n")
    assert (report.created, report.errors) == (["alice"], [])
    assert users(service)["alice"][1] == "Alice"


def test_quoted_cells_hold_commas_and_newlines(service: Service) -> None:
    data = ('login,name,email,groups\r\n'
            'alice,"Liddell, Alice",alice@example.com,"Sales;\r\nR&D, Tokyo"\r\n'
            'bob,"Bob ""the builder""",bob@example.com,\r\n'
            'carol,"Carol\r\nSmith",carol@example.com,\r\n'       # lines 5-6
            'dave,Dave,dave@,\r\n')                                 # line 7
    report = load(service, data, best_effort=True)
    assert report.created == ["alice", "bob"]
    assert users(service)["alice"][1:3] == ("Liddell, Alice", ("R&D, Tokyo", "Sales"))
    assert users(service)["bob"][1] == 'Bob "the builder"'
    # a line break inside a name is refused (it is a control character), and the rows after
    # a multi-line record keep their own line numbers
    errors = {login: (line, reason) for line, login, reason in report.errors}
    assert errors["carol"][0] in (5, 6) and "U+000D" in errors["carol"][1]
    assert errors["dave"][0] == 7


def test_japanese_names_and_groups_are_kept(service: Service) -> None:
    report = load(service, BOM + "login,email,name,groups\n"
                  "yamada,yamada@example.jp,山田 太郎,営業部;東京本社\n"
                  "suzuki,suzuki@example.jp,鈴木 花子,営業部\n".encode())
    assert report.errors == []
    assert users(service)["yamada"][1:3] == ("山田 太郎", ("営業部", "東京本社"))
    assert [v.login for v in service.users.list_users(TENANT, Selection(group="営業部"))] == [
        "suzuki", "yamada"]
    assert service.users.list_groups(TENANT) == [("営業部", 2), ("東京本社", 1)]


HOSTILE_CELLS = {
    "dotdot": "../x",
    "slash": "a/b",
    "nul": "a\x00b",
    "crlf": "a\r\nb",
    "rlo": "a\u202eb",
    "10kB": "a" * 10_240,
}


def quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def test_hostile_logins_names_and_groups_are_refused_with_their_line(service: Service) -> None:
    lines = ["login,email,name,groups"]
    expected: list[tuple[range, str]] = []  # the lines a record spans, the field at fault
    for key, value in HOSTILE_CELLS.items():
        rows = [(f"{quoted(value)},x@example.com,X,", "login")]
        if key not in ("dotdot", "slash"):  # dots and slashes are harmless in free text
            rows += [(f"n-{key},n@example.com,{quoted(value)},", "name"),
                     (f"g-{key},g@example.com,G,{quoted(value)}", "group")]
        for row, field in rows:
            start = len("\n".join(lines).splitlines()) + 1
            expected.append((range(start, start + value.count("\n") + 1), field))
            lines.append(row)
    lines.append("fine,fine@example.com,../x,a/b")
    report = load(service, "\n".join(lines) + "\n", best_effort=True)
    assert len(report.errors) == len(expected), report.errors
    for (span, field), (line, _login, reason) in zip(expected, report.errors, strict=True):
        assert line in span, (span, line, reason)
        assert field in reason and len(reason) < 300, reason
    assert report.created == ["fine"]
    assert users(service)["fine"][1:3] == ("../x", ("a/b",))


def test_secure_access_and_kind_cells_accept_the_usual_spellings(service: Service) -> None:
    report = load(service, "login,email,secure_access,kind\n"
                           "a,a@example.com,Yes,PERSON\n"
                           "b,b@example.com,TRUE,Service\n"
                           "c,c@example.com,0,\n"
                           "d,d@example.com,,\n")
    assert report.errors == []
    got = {login: (v[3], v[4]) for login, v in users(service).items()}
    assert got == {"a": (True, "person"), "b": (True, "service"), "c": (False, "person"),
                   "d": (False, "person")}


# --- export --------------------------------------------------------------------------------

FORMULAS = {"name": '=HYPERLINK("http://evil.example","click")', "group": "@SUM(1)",
            "plus": "+81 3 1234", "minus": "-1+2"}


def test_export_writes_formula_cells_with_a_leading_apostrophe(service: Service) -> None:
    service.users.add(TENANT, "alice", email="alice@example.com",
                     display_name=FORMULAS["name"], groups=(FORMULAS["group"],))
    service.users.add(TENANT, "bob", email="bob@example.com", display_name=FORMULAS["plus"])
    service.users.add(TENANT, "carol", email="carol@example.com",
                     display_name=FORMULAS["minus"])
    text = "".join(service.users.export_users(TENANT))
    rows = {row["login"]: row for row in rows_of(text)}
    assert rows["alice"]["name"] == "'" + FORMULAS["name"]
    assert rows["alice"]["groups"] == "'" + FORMULAS["group"]
    assert rows["bob"]["name"] == "'" + FORMULAS["plus"]
    assert rows["carol"]["name"] == "'" + FORMULAS["minus"]
    cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))]


def test_export_has_the_import_columns_and_each_users_status(service: Service) -> None:
    service.users.add(TENANT, "alice", email="alice@example.com", display_name="Liddell, Alice",
                     groups=("Sales", "Dev"), allow=True)
    service.certificates.issue(IssueRequest(tenant=TENANT, logins=("alice",)))
    service.users.add(TENANT, "bot", email="bot@example.com", kind="service")
    text = "".join(service.users.export_users(TENANT))
    assert text.splitlines()[0].split(",")[:6] == [
        "login", "email", "name", "groups", "secure_access", "kind"]
    rows = {row["login"]: row for row in rows_of(text)}
    assert rows["alice"]["name"] == "Liddell, Alice"
    assert rows["alice"]["groups"] == "Dev;Sales"
    assert (rows["alice"]["secure_access"], rows["bot"]["secure_access"]) == ("yes", "no")
    assert rows["bot"]["kind"] == "service"
    assert rows["alice"]["certificate_status"] == "valid"
    assert rows["bot"]["certificate_status"] == "unissued"
    only = rows_of("".join(service.users.export_users(TENANT, Selection(group="Sales"))))
    assert [row["login"] for row in only] == ["alice"]


def test_an_export_imports_back_unchanged(service: Service) -> None:
    service.users.add(TENANT, "alice", email="alice@example.com", display_name="Liddell, Alice",
                     groups=("Sales", "R&D, Tokyo"), allow=True)
    service.users.add(TENANT, "yamada", email="yamada@example.jp", display_name="山田 太郎",
                     groups=("営業部",))
    service.users.add(TENANT, "bot", email="bot@example.com", kind="service")
    before = users(service)
    exported = "".join(service.users.export_users(TENANT)).encode()
    report = load(service, exported)
    assert report.errors == []
    assert (report.created, report.updated) == ([], [])
    assert sorted(report.unchanged) == ["alice", "bot", "yamada"]
    assert users(service) == before


def test_an_export_with_formula_cells_imports_back_unchanged(service: Service) -> None:
    service.users.add(TENANT, "alice", email="alice@example.com",
                     display_name=FORMULAS["name"], groups=(FORMULAS["group"], "Sales"))
    service.users.add(TENANT, "bob", email="+bob@example.com", display_name=FORMULAS["minus"])
    before = users(service)
    load(service, "".join(service.users.export_users(TENANT)).encode(), best_effort=True)
    assert users(service) == before
