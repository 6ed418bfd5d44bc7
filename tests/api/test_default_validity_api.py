"""A tenant's default validity over HTTP, ``PUT /api/v1/tenants/<t>/settings/default-validity``,
shown by ``GET .../settings``; the same use case as ``tegata tenant set --default-validity``
(tests/cli/test_default_validity_cli.py) and the console's settings page."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ca.service import Service
from tests.support.http import bearer

SETTING = "/api/v1/tenants/default/settings/default-validity"


def events(service: Service) -> list[tuple[str, dict[str, object]]]:
    return [(e.actor, e.details) for e in service.audit.events(action="tenant.update")]


def test_set_shown_and_audited(service: Service, client: TestClient,
                               tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    made = client.put(SETTING, json={"default_validity": "p100y"}, headers=h)
    assert (made.status_code, made.json()) == (200, {"tenant": "default",
                                                     "default_validity": "P100Y"})
    shown = client.get("/api/v1/tenants/default/settings", headers=h)
    assert shown.json()["default_validity"] == "P100Y"
    (admin,) = [f"token:{t.id}:{t.name}" for t in service.tokens.list_tokens()
                if t.role == "admin" and t.tenant == "default"]
    assert events(service) == [(admin, {"default_validity": "P100Y",
                                        "previous_default_validity": "P1Y"})]


def test_refused_values_change_nothing(service: Service, client: TestClient,
                                       tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    for body in ({"default_validity": "1 year"}, {"default_validity": "P0D"}, {},
                 {"default_validity": 1}):
        assert client.put(SETTING, json=body, headers=h).status_code in (400, 422)
    other = client.put("/api/v1/tenants/acme/settings/default-validity",
                       json={"default_validity": "P90D"}, headers=h)
    assert other.status_code == 404
    refused = client.put(SETTING, json={"default_validity": "P90D"},
                         headers=bearer(tokens["user"]))
    assert refused.status_code == 403
    assert service.hierarchy.tenant_settings("default").default_validity == "P1Y"
    assert service.hierarchy.tenant_settings("acme").default_validity == "P1Y"
    assert events(service) == []
