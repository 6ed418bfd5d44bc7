"""The API's tenant audit log takes the console's filters too: the outcome, and a part of
the actor or the target, in the JSON list and the CSV export alike."""

from __future__ import annotations

import datetime as dt

from fastapi.testclient import TestClient

from ca import audit
from ca.audit import Actor, Event
from ca.db import queries
from ca.service import Service
from tests.api.conftest import bearer

URL = "/api/v1/tenants/default/audit"


def plant(service: Service) -> None:
    with service.database.transaction() as session:
        default = queries.tenant(session, "default").id
        for i, (actor, target, outcome) in enumerate([
                ("token:9:鈴木", "Yamada", "success"), ("cli", "yamada", "failure"),
                ("cli", "suzuki", "refused")]):
            audit.record(session, Actor(name=actor), Event(
                action="cert.issue", target=target, outcome=outcome, tenant_id=default),
                now=dt.datetime(2026, 3, 3, i, tzinfo=dt.UTC))


def test_outcome_and_search(service: Service, client: TestClient,
                            tokens: dict[str, str]) -> None:
    plant(service)
    h = bearer(tokens["admin"])
    listed = client.get(URL, params={"action": "cert.issue", "q": "YAMADA"}, headers=h)
    assert [(e["actor"], e["target"]) for e in listed.json()] == [
        ("token:9:鈴木", "Yamada"), ("cli", "yamada")]
    listed = client.get(URL, params={"outcome": "failure", "q": "yamada"}, headers=h)
    assert [(e["target"], e["outcome"]) for e in listed.json()] == [("yamada", "failure")]
    exported = client.get(URL, params={"format": "csv", "outcome": "refused"}, headers=h)
    assert [line.split(",")[7:9] for line in exported.text.split("\r\n")[1:-1]] == [
        ["suzuki", "refused"]]
    refused = client.get(URL, params={"outcome": "ok"}, headers=h)
    assert refused.status_code == 400


def test_a_search_with_a_control_character_is_refused(service: Service, client: TestClient,
                                                      tokens: dict[str, str]) -> None:
    """As the users' search: PostgreSQL text holds no NUL, so it must not reach the query."""
    plant(service)
    h = bearer(tokens["admin"])
    for q in ("yama\x00da", "yama\x1bda", "\u202eyamada"):
        for fmt in ("json", "csv"):
            answer = client.get(URL, params={"q": q, "format": fmt}, headers=h)
            assert (answer.status_code, answer.json()["title"]) == (400, "Invalid input"), q


def test_dates_must_be_iso_not_seconds(service: Service, client: TestClient,
                                       tokens: dict[str, str]) -> None:
    plant(service)
    h = bearer(tokens["admin"])
    for name in ("since", "until"):
        for value in ("-376", "0", "1e9", "1772500000"):
            answer = client.get(URL, params={name: value}, headers=h)
            assert answer.status_code == 400, (name, value)
    listed = client.get(URL, params={"since": "2026-03-03T01:00:00Z",
                                     "until": "2026-03-03 02:00:00+00:00"}, headers=h)
    assert [e["target"] for e in listed.json()] == ["yamada"]
