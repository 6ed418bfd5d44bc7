"""Default deny: every route declares its roles, and nothing answers without a token."""

from __future__ import annotations

import re

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from api.app import api_routes, build_app, check_routes_declare_access
from api.auth import (
    FAILURES_ALLOWED,
    PublicMarker,
    RoleGuard,
    declared_access,
    failure_limit,
    requires,
)
from ca.service import Service
from ca.service.limits import limits_engine
from tests.support.http import bearer

PUBLIC_PATHS = {"/healthz", "/readyz", "/ca/{name}", "/crl/{name}", "/d/{token}", "/ocsp",
                "/ocsp/{encoded:path}"}
SAMPLE = {"tenant": "default", "serial": "AB", "name": "root.crt", "login": "alice",
          "job_id": "0" * 32, "token": "x", "encoded": "AA", "token_id": "999999"}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: SAMPLE[m.group(1)], path)


def test_every_route_declares_roles_or_is_public(client: TestClient) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    for route in api_routes(app):
        access = declared_access(route)
        assert access is not None, route.path
        if route.path in PUBLIC_PATHS:
            assert isinstance(access, PublicMarker), route.path
        else:
            assert isinstance(access, RoleGuard) and access.roles, route.path


def test_openapi_lists_exactly_the_api_routes(client: TestClient) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    documented = set(client.get("/openapi.json").json()["paths"])
    assert documented == {re.sub(r":\w+\}", "}", r.path) for r in api_routes(app)}


def test_a_route_without_roles_stops_the_app() -> None:
    app = FastAPI(redoc_url=None)
    router = APIRouter()

    @router.get("/forgotten")
    def forgotten() -> dict[str, str]:
        return {}

    app.include_router(router)
    with pytest.raises(RuntimeError, match="/forgotten declares no roles"):
        check_routes_declare_access(app)


def test_a_route_with_roles_passes_the_check() -> None:
    app = FastAPI(redoc_url=None)

    @app.get("/guarded", dependencies=[requires("admin")])
    def guarded() -> dict[str, str]:
        return {}

    check_routes_declare_access(app)


def guarded_calls(client: TestClient) -> list[tuple[str, str]]:
    app: FastAPI = client.app  # type: ignore[assignment]
    return [(method, concrete(route.path)) for route in api_routes(app)
            if route.path not in PUBLIC_PATHS for method in sorted(route.methods)]


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer tgt_nope", "Basic YTpi",
                                    "Bearer " + "x" * 5000, "bearer tgt_\x7f"],
                         ids=["none", "empty", "unknown", "basic", "huge", "control"])
def test_every_guarded_route_refuses_requests_without_a_valid_token(
        service: Service, client: TestClient, header: str | None) -> None:
    client.app.state.auth_failures = failure_limit(  # type: ignore[attr-defined]
        limits_engine(service.engine), allowed=10**6)
    calls = guarded_calls(client)
    assert len(calls) >= 6
    for method, path in calls:
        headers = {"Authorization": header} if header is not None else {}
        response = client.request(method, path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"
        body = response.json()
        assert body["status"] == 401 and body["type"] == "urn:tegata:problem:unauthenticated"


def test_public_routes_answer_without_a_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/ca/root.crt").headers["content-type"] == "application/pkix-cert"
    assert client.get("/openapi.json").status_code == 200


def test_an_expired_token_is_refused(service: Service, client: TestClient) -> None:
    import datetime as dt

    token, _ = service.tokens.create(role="operator", valid_for=dt.timedelta(hours=1))
    assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200
    service.clock.advance(dt.timedelta(hours=1))  # type: ignore[attr-defined]
    response = client.get("/api/v1/whoami", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["detail"] == "the token has expired"


def test_roles_are_enforced_and_other_tenants_look_absent(client: TestClient,
                                                          tokens: dict[str, str]) -> None:
    body = {"login": "alice"}
    # a user token may not issue: 403
    r = client.post("/api/v1/tenants/default/certificates", json=body,
                    headers=bearer(tokens["user"]))
    assert r.status_code == 403
    # acme's admin asking for default's objects: 404, as if the tenant did not exist
    r = client.post("/api/v1/tenants/default/certificates", json=body,
                    headers=bearer(tokens["acme-admin"]))
    assert r.status_code == 404
    assert client.get("/api/v1/tenants/default/ca",
                      headers=bearer(tokens["acme-admin"])).status_code == 404
    # only operators list or create tenants
    for role in ("admin", "user", "gateway"):
        assert client.get("/api/v1/tenants", headers=bearer(tokens[role])).status_code == 403
    assert client.get("/api/v1/tenants", headers=bearer(tokens["operator"])).json() == [
        "acme", "default"]


def test_build_app_builds_the_same_routes_every_time(service: Service) -> None:
    paths = {r.path for r in api_routes(build_app(service.settings, service=service))}
    assert {"/healthz", "/readyz", "/api/v1/tenants/{tenant}/certificates"} <= paths


def test_repeated_failed_authentication_is_slowed_down(service: Service,
                                                       client: TestClient) -> None:
    import datetime as dt

    for _ in range(20):
        assert client.get("/api/v1/whoami", headers=bearer("tgt_wrong")).status_code == 401
    blocked = client.get("/api/v1/whoami", headers=bearer("tgt_wrong"))
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    # even a good token waits out the window from that address
    good, _ = service.tokens.create(role="operator")
    assert client.get("/api/v1/whoami", headers=bearer(good)).status_code == 429
    service.clock.advance(dt.timedelta(minutes=1, seconds=1))  # type: ignore[attr-defined]
    assert client.get("/api/v1/whoami", headers=bearer(good)).status_code == 200


def test_a_token_used_faster_than_its_limit_waits(service: Service) -> None:
    import datetime as dt

    settings = service.settings.model_copy(update={"token_requests_per_minute": 5})
    client = TestClient(build_app(settings, service=service), raise_server_exceptions=False)
    fast, _ = service.tokens.create(role="operator", name="script")
    other, _ = service.tokens.create(role="operator", name="person")
    gateway, _ = service.tokens.create(role="gateway", tenant="default")
    for _ in range(5):
        assert client.get("/api/v1/whoami", headers=bearer(fast)).status_code == 200
    blocked = client.get("/api/v1/whoami", headers=bearer(fast))
    assert blocked.status_code == 429 and blocked.headers["retry-after"] == "12"
    assert blocked.json()["type"] == "urn:tegata:problem:too-many-requests"
    assert "token" in blocked.json()["detail"]
    # the limit is per token: another token, and gateway tokens, go on
    assert client.get("/api/v1/whoami", headers=bearer(other)).status_code == 200
    for _ in range(10):
        assert client.get("/api/v1/whoami", headers=bearer(gateway)).status_code == 200
    # the bucket refills at the rate: one more request after 12 s
    service.clock.advance(dt.timedelta(seconds=12))  # type: ignore[attr-defined]
    assert client.get("/api/v1/whoami", headers=bearer(fast)).status_code == 200
    assert client.get("/api/v1/whoami", headers=bearer(fast)).status_code == 429


def test_a_token_limit_of_zero_means_none(service: Service) -> None:
    settings = service.settings.model_copy(update={"token_requests_per_minute": 0})
    client = TestClient(build_app(settings, service=service), raise_server_exceptions=False)
    token, _ = service.tokens.create(role="operator")
    # 0 is no limit, not "no request": fifty at once all pass (a limit of 5 stops the sixth)
    for _ in range(50):
        assert client.get("/api/v1/whoami", headers=bearer(token)).status_code == 200


def test_good_tokens_give_back_the_failure_places_they_took(service: Service) -> None:
    """Each new token takes a place in the failure bucket before it is checked and gives it
    back once good: 25 good tokens leave the address its whole allowance of failures."""
    client = TestClient(build_app(service.settings, service=service))
    good = [service.tokens.create(role="operator", name=f"佐藤 {n}")[0] for n in range(25)]
    assert {client.get("/api/v1/whoami", headers=bearer(t)).status_code for t in good} == {200}
    guesses = [client.get("/api/v1/whoami", headers=bearer("tgt_" + "B" * 43)).status_code
               for _ in range(FAILURES_ALLOWED + 1)]
    assert guesses == [401] * FAILURES_ALLOWED + [429]
