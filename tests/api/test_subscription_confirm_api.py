"""What confirming a subscription end says and accepts (from an outside
tester): the refusal of an end already past says what confirming does with THIS tenant's
grace period (0 days: revoked and purged now, no suspension); every end date the API accepts
works, even at the edge of the calendar, and one outside the range is a problem about
``ends``; ``allow_past``, a destructive confirmation, is a JSON boolean and nothing else."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ca.service import IssueRequest, Service
from tests.support.http import bearer

URL = "/api/v1/tenants/acme/subscription"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the rule lives in ca.service; here it is HTTP's wording and parsing."""
    return f"sqlite:///{tmp_path / 'tegata.db'}"


@pytest.fixture
def operator(service: Service) -> dict[str, str]:
    """株式会社アクメ, alice and bob with a certificate each, a contract through 2026-12-31
    in Tokyo; the operator's headers."""
    service.hierarchy.create_tenant("acme", display_name="株式会社アクメ")
    for login in ("alice", "bob"):
        service.users.add("acme", login, email=f"{login}@example.co.jp", allow=True)
    service.certificates.issue(IssueRequest(tenant="acme", logins=("alice", "bob")))
    service.lifecycle.set_subscription("acme", ends=dt.date(2026, 12, 31), zone="Asia/Tokyo")
    return bearer(service.tokens.create(role="operator")[0])


def certificates(service: Service) -> dict[str, tuple[str, str | None, bool]]:
    return {v.login: (v.state.value, v.revocation_reason, v.has_key_material)
            for v in service.certificates.list_certificates("acme")}


def snapshot(client: TestClient, service: Service, operator: dict[str, str]) -> Any:
    return (client.get(URL, headers=operator).json(), certificates(service),
            len(service.audit.events()))


VALID = {"alice": ("valid", None, True), "bob": ("valid", None, True)}
PAST = {"ends": "2025-12-31", "timezone": "Asia/Tokyo"}
CONFIRM = " Check it, or confirm with allow_past: true"
HEAD = "acme: subscription end 2025-12-31 in Asia/Tokyo is already past; confirming it would "


@pytest.mark.parametrize(("grace", "in_request", "does"), [
    (0, False, "revoke every certificate (cessationOfOperation) and purge its key now, "
               "with no grace period."),
    (0, True, "revoke every certificate (cessationOfOperation) and purge its key now, "
              "with no grace period."),
    (1, True, "suspend every certificate now and revoke it 1 day later unless the end is "
              "corrected by then."),
    (45, False, "suspend every certificate now and revoke it 45 days later unless the end is "
                "corrected by then."),
])
def test_the_refusal_says_what_confirming_does_with_this_tenants_grace_period(
        client: TestClient, service: Service, operator: dict[str, str], grace: int,
        in_request: bool, does: str) -> None:
    if not in_request:  # the tenant's own grace period, set before
        assert client.put(URL, json={"ends": "2026-12-31", "timezone": "Asia/Tokyo",
                                     "grace_days": grace}, headers=operator).status_code == 200
    body = {**PAST, **({"grace_days": grace} if in_request else {})}
    before = snapshot(client, service, operator)

    r = client.put(URL, json=body, headers=operator)

    assert (r.status_code, r.headers["content-type"]) == (400, "application/problem+json")
    assert r.json() == {"type": "urn:tegata:problem:invalid-input", "title": "Invalid input",
                        "status": 400, "detail": HEAD + does + CONFIRM, "field": "ends"}
    assert snapshot(client, service, operator) == before
    assert certificates(service) == VALID


def test_a_confirmed_past_end_with_no_grace_does_what_the_refusal_said(
        client: TestClient, service: Service, operator: dict[str, str]) -> None:
    """The behaviour stays (0 grace days is the operator's choice); the words now match it."""
    r = client.put(URL, json={**PAST, "grace_days": 0, "allow_past": True}, headers=operator)

    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("state", "suspended_at", "grace_ends_at")} == {
        "state": "ended", "suspended_at": None, "grace_ends_at": "2025-12-31T15:00:00Z"}
    gone = ("revoked", "cessationOfOperation", False)
    assert certificates(service) == {"alice": gone, "bob": gone}


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "Pacific/Kiritimati", "Etc/GMT+12"])
@pytest.mark.parametrize("grace", [None, 3650])
def test_the_latest_end_the_api_accepts_works(
        client: TestClient, service: Service, operator: dict[str, str], zone: str,
        grace: int | None) -> None:
    body: dict[str, Any] = {"ends": "9999-12-30", "timezone": zone}
    if grace is not None:
        body["grace_days"] = grace

    r = client.put(URL, json=body, headers=operator)

    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("ends_on", "state", "suspended_at", "grace_ends_at")} == {
        "ends_on": "9999-12-30", "state": "active", "suspended_at": None,
        "grace_ends_at": "9999-12-31T23:59:59Z"}
    assert client.get(URL, headers=operator).json() == r.json()
    run = client.post("/api/v1/lifecycle/run", headers=operator).json()
    assert (run["suspended"], run["revoked"]) == (0, 0)
    assert certificates(service) == VALID


@pytest.mark.parametrize(("ends", "detail"), [
    ("9999-12-31", "subscription end 9999-12-31 is after the latest allowed, 9999-12-30"),
    ("0001-01-01", "subscription end 0001-01-01 is before the earliest allowed, 1900-01-01"),
])
def test_an_end_outside_the_range_is_a_problem_about_ends(
        client: TestClient, service: Service, operator: dict[str, str], ends: str,
        detail: str) -> None:
    before = snapshot(client, service, operator)

    r = client.put(URL, json={"ends": ends, "allow_past": True}, headers=operator)

    assert (r.status_code, r.headers["content-type"]) == (400, "application/problem+json")
    assert r.json() == {"type": "urn:tegata:problem:invalid-input", "title": "Invalid input",
                        "status": 400, "detail": detail, "field": "ends"}
    assert snapshot(client, service, operator) == before


@pytest.mark.parametrize("loose", ["on", "1", "TRUE", "true", "yes", 1, 1.0, 0, "false", None,
                                   [True], {"value": True}])
def test_allow_past_is_a_json_boolean_and_nothing_else(
        client: TestClient, service: Service, operator: dict[str, str], loose: Any) -> None:
    before = snapshot(client, service, operator)

    r = client.put(URL, json={**PAST, "allow_past": loose}, headers=operator)

    assert (r.status_code, r.headers["content-type"]) == (400, "application/problem+json")
    assert r.json() == {"type": "urn:tegata:problem:invalid-input", "title": "Invalid input",
                        "status": 400, "detail": "allow_past: Input should be a valid boolean",
                        "field": "allow_past",
                        "errors": [{"field": "allow_past",
                                    "message": "Input should be a valid boolean"}]}
    assert snapshot(client, service, operator) == before
    assert certificates(service) == VALID
