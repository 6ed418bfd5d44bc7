"""Every route, every role, own or another tenant: a role a route does not declare never
gets through, another tenant's objects answer 404 as if absent, and a declared role is
never refused for its role."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import api_routes
from api.auth import RoleGuard, declared_access
from tests.support.http import bearer

SAMPLE = {"serial": "AB", "name": "root.crt", "login": "alice", "job_id": "0" * 32,
          "token": "x", "encoded": "AA", "token_id": "999999"}
# the route by which a token revokes itself is walked last: after it, the caller's token is
# rightly refused (tests/api/test_tokens_api.py holds it to that)
SELF_REVOKE = "/api/v1/whoami/revoke"
# (token key in the tokens fixture, its role, whether it belongs to the path's tenant)
CALLERS = [("operator", "operator", True), ("admin", "admin", True),
           ("acme-admin", "admin", False), ("user", "user", True),
           ("gateway", "gateway", True)]


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}",
                  lambda m: "default" if m.group(1) == "tenant" else SAMPLE[m.group(1)], path)


@pytest.mark.parametrize(("caller", "role", "own_tenant"), CALLERS,
                         ids=[c[0] for c in CALLERS])
def test_every_route_admits_exactly_its_roles(client: TestClient, tokens: dict[str, str],
                                              caller: str, role: str,
                                              own_tenant: bool) -> None:
    app: FastAPI = client.app  # type: ignore[assignment]
    checked = 0
    for route in sorted(api_routes(app), key=lambda r: r.path == SELF_REVOKE):
        guard = declared_access(route)
        if not isinstance(guard, RoleGuard):
            continue  # public routes: covered by test_access
        scoped = "{tenant}" in route.path
        for method in sorted(route.methods):
            response = client.request(method, concrete(route.path), json={},
                                       headers=bearer(tokens[caller]))
            where = f"{method} {route.path} as {caller}"
            assert response.status_code != 401, where
            if scoped and not own_tenant and role != "operator":
                assert response.status_code == 404, where  # as if the tenant did not exist
            elif role not in guard.roles:
                assert response.status_code == 403, where
            elif "x-tegata-reason" in response.headers:
                assert response.status_code in (204, 403), where  # /auth's own decision
            else:
                assert response.status_code not in (401, 403), where
                assert response.status_code < 500, (where, response.text)
            checked += 1
    assert checked >= 30
