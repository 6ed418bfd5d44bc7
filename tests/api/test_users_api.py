"""Users, groups, permission, CSV and bulk work over HTTP: the same rules as the service,
problem+json refusals, jobs polled to the end, a streamed zip, and tenants kept apart."""

from __future__ import annotations

import csv
import io
import re
import time
import zipfile
from typing import Any

import httpx
from fastapi.testclient import TestClient

from ca.service import Service
from tests.support.http import bearer, issue_over_api

BASE = "/api/v1/tenants/default"
PROBLEM = "application/problem+json"
JOB_SECONDS = 120.0  # a generous bound: a busy CI machine makes a job slow, never a failure


def admin(tokens: dict[str, str]) -> dict[str, str]:
    return bearer(tokens["admin"])


def add(client: TestClient, h: dict[str, str], login: str, *groups: str,
        allow: bool = True) -> dict[str, Any]:
    r = client.post(f"{BASE}/users", json={"login": login, "email": f"{login}@example.com",
                                           "secure_access": allow, "groups": list(groups)},
                    headers=h)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def cert_state(client: TestClient, h: dict[str, str], serial: str) -> str:
    state: str = client.get(f"{BASE}/certificates/{serial}", headers=h).json()["state"]
    return state


def listed(client: TestClient, h: dict[str, str], **params: Any) -> list[str]:
    r = client.get(f"{BASE}/users", params=params, headers=h)
    assert r.status_code == 200, r.text
    return [u["login"] for u in r.json()]


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"]
    return body


def finished(client: TestClient, location: str, h: dict[str, str]) -> dict[str, Any]:
    """Poll a job until it leaves ``running`` (it runs in a thread of the app)."""
    deadline = time.monotonic() + JOB_SECONDS
    while True:
        r = client.get(location, headers=h)
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if job["status"] != "running" or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def import_csv(client: TestClient, h: dict[str, str], text: str | bytes,
               **params: Any) -> httpx.Response:
    data = text.encode() if isinstance(text, str) else text
    r: httpx.Response = client.post(f"{BASE}/users/import", content=data, params=params,
                                    headers={**h, "Content-Type": "text/csv"})
    return r


# --- users and groups ----------------------------------------------------------------------


def test_admin_adds_gets_and_lists_users_by_group_unaffiliated_and_status(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    body = add(client, h, "bob", "Sales", "Dev")
    assert body == {"tenant": "default", "login": "bob", "email": "bob@example.com",
                    "display_name": "", "kind": "person", "status": "active",
                    "secure_access": True, "groups": ["Dev", "Sales"],
                    "certificate_status": "unissued"}
    r = client.post(f"{BASE}/users", json={"login": "backup", "email": "backup@example.com",
                                           "kind": "service"}, headers=h)
    assert r.status_code == 201 and r.json()["kind"] == "service"
    issue_over_api(client, h, "bob")
    assert client.get(f"{BASE}/users/BOB", headers=h).json()["certificate_status"] == "valid"
    assert listed(client, h) == ["alice", "backup", "bob"]
    assert listed(client, h, group="sales") == ["bob"]
    assert listed(client, h, unaffiliated="true") == ["alice", "backup"]
    assert listed(client, h, status="valid") == ["bob"]
    assert listed(client, h, status="unissued", unaffiliated="true") == ["alice", "backup"]
    assert listed(client, h, login=["alice", "bob"]) == ["alice", "bob"]
    assert client.get(f"{BASE}/groups", headers=h).json() == [
        {"name": "Dev", "members": 1}, {"name": "Sales", "members": 1}]
    problem(client.get(f"{BASE}/users", params={"status": "active"}, headers=h), 400)
    problem(client.get(f"{BASE}/users/nobody", headers=h), 404)


def test_a_page_of_users_with_a_search_and_the_total_in_a_header(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    for login, name in (("bob", "山田太郎"), ("carol", "山下花子"), ("dave", "Dave 100%")):
        r = client.post(f"{BASE}/users", json={"login": login, "email": f"{login}@example.jp",
                                               "display_name": name}, headers=h)
        assert r.status_code == 201, r.text
    whole = client.get(f"{BASE}/users", headers=h)
    assert "x-total-count" not in whole.headers  # no paging asked: every user, as before
    assert [u["login"] for u in whole.json()] == ["alice", "bob", "carol", "dave"]
    for params, expected, total in (
            ({"limit": 2}, ["alice", "bob"], 4),
            ({"limit": 2, "offset": 2}, ["carol", "dave"], 4),
            ({"offset": 3}, ["dave"], 4),
            ({"q": "山"}, ["bob", "carol"], 2),
            ({"q": "山", "limit": 1, "offset": 1}, ["carol"], 2),
            ({"q": "%"}, ["dave"], 1),
            ({"q": "EXAMPLE.JP", "unaffiliated": "true"}, ["bob", "carol", "dave"], 3)):
        r = client.get(f"{BASE}/users", params=params, headers=h)
        assert r.status_code == 200, r.text
        assert ([u["login"] for u in r.json()], r.headers["x-total-count"]) == (
            expected, str(total)), params
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"q": "x" * 201},
                   {"q": "a\x00b"}):
        problem(client.get(f"{BASE}/users", params=params, headers=h), 400)


def test_a_login_taken_in_another_case_is_a_409(client: TestClient,
                                                tokens: dict[str, str]) -> None:
    r = client.post(f"{BASE}/users", json={"login": "ALICE", "email": "a2@example.com"},
                    headers=admin(tokens))
    assert "already exists" in problem(r, 409)["detail"]


def test_patch_changes_the_fields_given_and_secure_access_suspends_and_reinstates(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    serial = issue_over_api(client, h, "alice")
    r = client.patch(f"{BASE}/users/alice", json={"display_name": "Alice L.",
                                                  "groups": ["Sales"]}, headers=h)
    assert r.status_code == 200, r.text
    assert (r.json()["display_name"], r.json()["groups"], r.json()["email"]) == (
        "Alice L.", ["Sales"], "alice@example.com")

    r = client.patch(f"{BASE}/users/alice", json={"secure_access": False}, headers=h)
    assert r.json()["certificate_status"] == "suspended"
    assert cert_state(client, h, serial) == "suspended"
    r = client.patch(f"{BASE}/users/alice", json={"secure_access": True}, headers=h)
    assert r.json()["certificate_status"] == "valid"
    assert cert_state(client, h, serial) == "valid"
    problem(client.patch(f"{BASE}/users/alice", json={"groups": ["a;b"]}, headers=h), 400)
    problem(client.patch(f"{BASE}/users/alice", json={"status": "retired"}, headers=h), 400)


def test_retire_revokes_the_users_certificates_and_refuses_issuance(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    serial = issue_over_api(client, h, "alice")
    r = client.post(f"{BASE}/users/alice/retire", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "retired"
    cert = client.get(f"{BASE}/certificates/{serial}", headers=h).json()
    assert (cert["state"], cert["revocation_reason"]) == ("revoked", "affiliationChanged")
    r = client.post(f"{BASE}/certificates", json={"login": "alice"}, headers=h)
    assert "retired" in problem(r, 422)["detail"]
    assert listed(client, h) == []


def test_permission_for_several_users_is_all_or_nothing(client: TestClient,
                                                        tokens: dict[str, str]) -> None:
    h = admin(tokens)
    add(client, h, "bob")
    serials = [issue_over_api(client, h, "alice"), issue_over_api(client, h, "bob")]
    r = client.post(f"{BASE}/permission", json={"logins": ["alice", "ghost", "bob"],
                                                "allow": False}, headers=h)
    assert "ghost" in problem(r, 404)["detail"]
    assert [cert_state(client, h, s) for s in serials] == ["valid", "valid"]

    r = client.post(f"{BASE}/permission", json={"logins": ["alice", "bob"], "allow": False},
                    headers=h)
    assert r.status_code == 200
    assert [(u["login"], u["secure_access"]) for u in r.json()] == [
        ("alice", False), ("bob", False)]
    assert [cert_state(client, h, s) for s in serials] == ["suspended", "suspended"]
    client.post(f"{BASE}/permission", json={"logins": ["bob"], "allow": True}, headers=h)
    assert [cert_state(client, h, s) for s in serials] == ["suspended", "valid"]


HOSTILE = {"dotdot": "../x", "slash": "a/b", "nul": "a\x00b", "crlf": "a\r\nb",
           "rlo": "a\u202eb", "10kB": "a" * 10_240}


def test_hostile_input_is_refused_with_a_problem_that_does_not_echo_it(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    attempts: list[tuple[str, httpx.Response]] = []
    for key, value in HOSTILE.items():
        attempts.append((f"login {key}", client.post(
            f"{BASE}/users", json={"login": value, "email": "x@example.com"}, headers=h)))
        attempts.append((f"login query {key}", client.get(
            f"{BASE}/users", params={"login": value}, headers=h)))
        if key in ("dotdot", "slash"):
            continue  # harmless in free text: checked below
        attempts.append((f"name {key}", client.post(
            f"{BASE}/users", json={"login": "bob", "email": "bob@example.com",
                                   "display_name": value}, headers=h)))
        attempts.append((f"patched name {key}", client.patch(
            f"{BASE}/users/alice", json={"display_name": value}, headers=h)))
        attempts.append((f"group {key}", client.post(
            f"{BASE}/users", json={"login": "bob", "email": "bob@example.com",
                                   "groups": [value]}, headers=h)))
        attempts.append((f"group query {key}", client.get(
            f"{BASE}/users", params={"group": value}, headers=h)))
    for what, r in attempts:
        assert r.status_code == 400, (what, r.text[:200])
        assert r.headers["content-type"] == PROBLEM, what
        assert len(r.content) < 2000, what
        assert "\x00" not in r.text and "\u202e" not in r.text and "\r" not in r.text, what
    assert listed(client, h) == ["alice"]
    assert client.get(f"{BASE}/users/alice", headers=h).json()["display_name"] == ""

    r = client.post(f"{BASE}/users", json={"login": "bob", "email": "bob@example.com",
                                           "display_name": "../x", "groups": ["a/b"]},
                    headers=h)
    assert r.status_code == 201 and (r.json()["display_name"], r.json()["groups"]) == (
        "../x", ["a/b"])


# --- CSV -----------------------------------------------------------------------------------


def test_import_creates_and_updates_and_a_dry_run_writes_nothing(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    text = ("\ufeffname,login,email,groups\n"
            "Alice L.,alice,alice@example.com,Sales\n"
            "山田 太郎,yamada,yamada@example.jp,営業部\n")
    r = import_csv(client, h, text, dry_run="true")
    assert r.status_code == 200, r.text
    assert r.json() == {"dry_run": True, "created": ["yamada"], "updated": ["alice"],
                        "unchanged": [], "errors": []}
    assert listed(client, h) == ["alice"]
    r = import_csv(client, h, text)
    assert r.json()["created"] == ["yamada"] and r.json()["updated"] == ["alice"]
    assert listed(client, h, group="営業部") == ["yamada"]


def test_import_with_bad_rows_lists_them_by_line_and_writes_nothing(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    text = ("login,email\n"
            "bob,bob@example.com\n"
            "../x,x@example.com\n"
            "carol,carol@\n"
            "dave,dave@example.com\n")
    r = import_csv(client, h, text)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(e["line"], e["login"]) for e in body["errors"]] == [(3, "../x"), (4, "carol")]
    assert "login" in body["errors"][0]["reason"] and "e-mail" in body["errors"][1]["reason"]
    assert (body["created"], body["updated"]) == ([], [])
    assert listed(client, h) == ["alice"]

    r = import_csv(client, h, text, best_effort="true")
    assert r.json()["created"] == ["bob", "dave"]
    assert listed(client, h) == ["alice", "bob", "dave"]


def test_import_of_a_file_with_a_bad_header_or_encoding_is_a_400_problem(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    body = problem(import_csv(client, h, "login,email,salary\nbob,bob@example.com,1\n"), 400)
    assert "line 1" in body["detail"] and "salary" in body["detail"]
    body = problem(import_csv(client, h, b"login,email\nb\xe9b,bob@example.com\n"), 400)
    assert "UTF-8" in body["detail"]
    assert listed(client, h) == ["alice"]


def test_export_is_a_csv_attachment_that_no_spreadsheet_runs(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    r = client.post(f"{BASE}/users", json={
        "login": "eve", "email": "eve@example.com",
        "display_name": '=HYPERLINK("http://evil.example","x")', "groups": ["@SUM(1)"]},
        headers=h)
    assert r.status_code == 201, r.text
    r = client.get(f"{BASE}/users.csv", headers=h)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"] == 'attachment; filename="users.csv"'
    rows = {row["login"]: row for row in csv.DictReader(io.StringIO(r.text, newline=""))}
    assert set(rows) == {"alice", "eve"}
    assert rows["eve"]["name"] == '\'=HYPERLINK("http://evil.example","x")'
    assert rows["eve"]["groups"] == "'@SUM(1)"
    r = client.get(f"{BASE}/users.csv", params={"group": "@SUM(1)"}, headers=h)
    assert [row["login"] for row in csv.DictReader(io.StringIO(r.text))] == ["eve"]


# --- bulk issuance as a job, and the bulk download -----------------------------------------


def start(client: TestClient, h: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"{BASE}/certificates/bulk", json=body, headers=h)
    assert r.status_code == 202, r.text
    job: dict[str, Any] = r.json()
    assert r.headers["location"] == f"{BASE}/jobs/{job['id']}"
    assert job["kind"] == "issue" and job["status"] in ("running", "succeeded", "failed")
    return finished(client, r.headers["location"], h)


def test_bulk_issuance_is_a_job_polled_until_it_succeeds(client: TestClient,
                                                         tokens: dict[str, str]) -> None:
    h = admin(tokens)
    add(client, h, "bob", "Sales")
    add(client, h, "carol", "Sales", allow=False)
    job = start(client, h, {"selection": {"all": True}, "best_effort": True})
    assert job["status"] == "succeeded", job
    assert (job["done"], job["total"]) == (2, 2)
    result = job["result"]
    assert [i["login"] for i in result["issued"]] == ["alice", "bob"]
    assert [f["login"] for f in result["failures"]] == ["carol"]
    assert "secure-access permission" in result["failures"][0]["reason"]
    serials = {c["serial"] for c in client.get(f"{BASE}/certificates", headers=h).json()}
    assert serials == {i["serial"] for i in result["issued"]}
    # and with a status filter: only those still without a certificate
    client.post(f"{BASE}/permission", json={"logins": ["carol"], "allow": True}, headers=h)
    job = start(client, h, {"selection": {"group": "Sales", "status": "unissued"}})
    assert job["status"] == "succeeded", job
    assert [i["login"] for i in job["result"]["issued"]] == ["carol"]


def test_a_bulk_job_that_cannot_issue_to_everyone_fails_naming_the_user(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    add(client, h, "carol", allow=False)
    job = start(client, h, {"selection": {"all": True}})
    assert job["status"] == "failed"
    assert "carol" in job["error"] and "permission" in job["error"]
    assert client.get(f"{BASE}/certificates", headers=h).json() == []
    r = client.post(f"{BASE}/certificates/bulk", json={"selection": {"all": True,
                                                                      "group": "x"}},
                    headers=h)
    problem(r, 400)


def test_download_streams_a_zip_with_a_safe_attachment_name(client: TestClient,
                                                            tokens: dict[str, str]) -> None:
    h = admin(tokens)
    problem(client.get(f"{BASE}/certificates/download", params={"all": "true"}, headers=h),
            422)
    add(client, h, "bob", "Sales")
    serials = {"alice": issue_over_api(client, h, "alice"), "bob": issue_over_api(client, h, "bob")}
    # everyone's keys are asked for by name, never the default (as `cert download --all`)
    unnamed = client.get(f"{BASE}/certificates/download", headers=h)
    problem(unnamed, 400)
    assert unnamed.json()["field"] == "selection"
    r = client.get(f"{BASE}/certificates/download", params={"all": "true"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["cache-control"] == "no-store"
    disposition = r.headers["content-disposition"]
    assert re.fullmatch(r'attachment; filename="default-certificates-\d{8}-\d{6}\.zip"',
                        disposition), disposition
    assert disposition == 'attachment; filename="default-certificates-20260302-090000.zip"'
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert sorted(archive.namelist()) == ["alice.zip", "bob.zip", "manifest.csv"]
        rows = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert {row["login"]: row["serial"] for row in rows} == serials
    r = client.get(f"{BASE}/certificates/download", params={"group": "Sales"}, headers=h)
    with zipfile.ZipFile(io.BytesIO(r.content)) as archive:
        assert sorted(archive.namelist()) == ["bob.zip", "manifest.csv"]


# --- tenants apart -------------------------------------------------------------------------


def test_another_tenants_admin_gets_404_on_every_user_and_bulk_route(
        client: TestClient, tokens: dict[str, str], service: Service) -> None:
    h = admin(tokens)
    # a job of default's (it selects nobody, so it ends at once)
    job = start(client, h, {"selection": {"group": "nobody's"}})
    assert job["status"] == "succeeded", job
    routes: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/users", {}),
        ("GET", "/users/alice", {}),
        ("POST", "/users", {"json": {"login": "mallory", "email": "m@example.com"}}),
        ("PATCH", "/users/alice", {"json": {"email": "mallory@example.com"}}),
        ("POST", "/users/alice/retire", {}),
        ("POST", "/permission", {"json": {"logins": ["alice"], "allow": False}}),
        ("POST", "/users/import", {"content": b"login,email\nmallory,m@example.com\n",
                                   "headers": {"Content-Type": "text/csv"}}),
        ("GET", "/users.csv", {}),
        ("GET", "/groups", {}),
        ("POST", "/certificates/bulk", {"json": {"selection": {"all": True}}}),
        ("GET", "/certificates/download", {"params": {"all": "true"}}),
        ("GET", f"/jobs/{job['id']}", {}),
    ]
    issue_over_api(client, h, "alice")
    other = bearer(tokens["acme-admin"])
    for method, path, options in routes:
        headers = {**other, **options.pop("headers", {})}
        r = client.request(method, BASE + path, headers=headers, **options)
        assert r.status_code == 404, (method, path, r.text)
        assert r.headers["content-type"] == PROBLEM
        assert b"alice" not in r.content and b"PK" not in r.content[:2]
    # nor by asking under its own name
    r = client.get(f"/api/v1/tenants/acme/jobs/{job['id']}", headers=other)
    assert r.status_code == 404
    view = service.users.get("default", "alice")
    assert (view.status, view.secure_access, view.email) == ("active", True,
                                                             "alice@example.com")
    assert [u.login for u in service.users.list_users("default")] == ["alice"]
    assert service.users.list_users("acme") == []


def test_users_and_gateways_may_not_manage_users(client: TestClient,
                                                 tokens: dict[str, str]) -> None:
    for role in ("user", "gateway"):
        h = bearer(tokens[role])
        assert client.get(f"{BASE}/users", headers=h).status_code == 403, role
        assert client.get(f"{BASE}/certificates/download", headers=h).status_code == 403, role
        r = client.post(f"{BASE}/certificates/bulk", json={"selection": {"all": True}},
                        headers=h)
        assert r.status_code == 403, role


def test_a_bulk_jobs_result_is_exactly_who_got_which_serial_and_who_was_refused(
        client: TestClient, tokens: dict[str, str]) -> None:
    h = admin(tokens)
    add(client, h, "bob", "営業部")
    add(client, h, "carol", "営業部", allow=False)
    job = start(client, h, {"selection": {"group": "営業部"}, "best_effort": True})
    assert job["status"] == "succeeded", job
    listed = {c["login"]: c for c in client.get(f"{BASE}/certificates", headers=h).json()}
    bob = listed["bob"]
    [failure] = job["result"]["failures"]
    assert job["result"] == {
        "issued": [{"login": "bob", "serial": bob["serial"],
                    "not_after": bob["not_after"].replace("Z", "+00:00")}],
        "failures": [{"login": "carol", "reason": failure["reason"]}]}
    assert "secure-access permission" in failure["reason"]
    assert set(listed) == {"bob"}
