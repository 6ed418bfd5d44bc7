"""A tenant's zone over HTTP, ``PUT /api/v1/tenants/<t>/settings/timezone``, shown by
``GET .../settings``; the same use case as ``tegata tenant set --timezone``
(tests/cli/test_tenant_timezone_cli.py) and the console's settings page."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ca.service import Service
from tests.support.http import bearer

SETTING = "/api/v1/tenants/default/settings/timezone"


def events(service: Service) -> list[tuple[str, dict[str, object]]]:
    return [(e.actor, e.details) for e in service.audit.events(action="tenant.update")]


def test_set_shown_and_audited(service: Service, client: TestClient,
                               tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    made = client.put(SETTING, json={"timezone": "Asia/Tokyo"}, headers=h)
    assert (made.status_code, made.json()) == (200, {"tenant": "default",
                                                     "timezone": "Asia/Tokyo"})
    shown = client.get("/api/v1/tenants/default/settings", headers=h)
    assert shown.json()["timezone"] == "Asia/Tokyo"
    assert service.hierarchy.tenant_settings("default").timezone == "Asia/Tokyo"
    (admin,) = [f"token:{t.id}:{t.name}" for t in service.tokens.list_tokens()
                if t.role == "admin" and t.tenant == "default"]
    assert events(service) == [(admin, {"timezone": "Asia/Tokyo", "previous_timezone": "UTC"})]
    again = client.put(SETTING, json={"timezone": "Asia/Tokyo"}, headers=h)
    assert again.status_code == 200
    assert len(events(service)) == 1  # no change, no event


def test_refused_values_change_nothing(service: Service, client: TestClient,
                                       tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    for body in ({"timezone": "Mars/Olympus_Mons"}, {"timezone": "東京"}, {"timezone": " "},
                 {"timezone": "Asia/Tokyo\x00"}, {}, {"timezone": 9}):
        answer = client.put(SETTING, json=body, headers=h)
        assert answer.status_code in (400, 422), body
    other = client.put("/api/v1/tenants/acme/settings/timezone",
                       json={"timezone": "Asia/Tokyo"}, headers=h)
    assert other.status_code == 404
    refused = client.put(SETTING, json={"timezone": "Asia/Tokyo"},
                         headers=bearer(tokens["user"]))
    assert refused.status_code == 403
    assert service.hierarchy.tenant_settings("default").timezone == "UTC"
    assert service.hierarchy.tenant_settings("acme").timezone == "UTC"
    assert events(service) == []
