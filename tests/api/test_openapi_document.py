"""The OpenAPI document declares every status a route can answer, read off what the route
declares (its guard, parameters, body): so a new route, or a new parameter, cannot leave a
status undocumented. The dynamic side, that routes answer only what they declare, is
test_schemathesis.py's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.app import api_routes, build_app
from api.auth import RoleGuard, declared_access
from api.problems import MEDIA_TYPE, PROBLEM_SCHEMA
from ca.settings import load_settings
from tests.support.environment import BASE_URL, PASSPHRASE


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    """The app as served; its document needs no database."""
    settings = load_settings(data_dir=tmp_path / "data",
                             database_url=f"sqlite:///{tmp_path}/t.db",
                             key_passphrase=PASSPHRASE, public_base_url=BASE_URL)
    return build_app(settings)


def operations(app: FastAPI) -> list[tuple[str, APIRoute, dict[str, Any]]]:
    document = app.openapi()
    found = [(f"{method} {route.path_format}", route,
              document["paths"][route.path_format][method.lower()])
             for route in api_routes(app) if route.include_in_schema
             for method in sorted(route.methods or ())]
    assert len(found) >= 45
    return found


def takes_request(dependant: Dependant) -> bool:
    return dependant.request_param_name is not None or any(
        takes_request(d) for d in dependant.dependencies)


def expected_statuses(route: APIRoute) -> dict[int, str]:
    """What a route can answer whatever its endpoint does, and why."""
    expected: dict[int, str] = {}
    dependant = route.dependant
    body = route.body_field is not None or "requestBody" in (route.openapi_extra or {})
    if isinstance(declared_access(route), RoleGuard):
        expected[401] = "the guard: no token, or a bad one"
        expected[403] = "the guard: a role the route does not admit"
        expected[429] = "the guard: too many failed authentications from the address"
    if route.param_convertors:  # a {x:path} too: it matches no line break
        expected[404] = f"{', '.join(route.param_convertors)} may name nothing"
    if body or dependant.path_params or dependant.query_params or dependant.header_params \
            or dependant.cookie_params:
        expected[400] = "request validation (answered 400, not FastAPI's 422)"
    if body:
        expected[413] = "the body-size cap"
    if takes_request(dependant):
        expected[503] = "the request reaches the service, so the database"
    return expected


def test_every_status_a_route_can_answer_is_declared(app: FastAPI) -> None:
    missing = [f"{label}: {status} ({why})"
               for label, route, operation in operations(app)
               for status, why in expected_statuses(route).items()
               if str(status) not in operation["responses"]]
    assert not missing, "\n".join(missing)


def test_validation_errors_are_not_documented_as_fastapis_422(app: FastAPI) -> None:
    document = app.openapi()
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for label, _route, operation in operations(app):
        described = operation["responses"].get("422", {}).get("description")
        assert described in (None, "Not permitted"), label


def test_every_error_response_is_a_problem_document(app: FastAPI) -> None:
    document = app.openapi()
    assert document["components"]["schemas"]["Problem"] == PROBLEM_SCHEMA
    problem = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    wrong = []
    for label, route, operation in operations(app):
        # the one-time link page is for people: its errors are pages too
        expected = ({"text/html": {}} if route.response_class is HTMLResponse else problem)
        wrong += [f"{label}: {status} {answer.get('content')}"
                  for status, answer in operation["responses"].items()
                  if int(status) >= 400 and answer.get("content") != expected]
    assert not wrong, "\n".join(wrong)


def test_a_method_the_path_lacks_is_answered_405_naming_all_it_has(app: FastAPI) -> None:
    client = TestClient(app)
    for path, allowed in (("/api/v1/tenants", "GET, POST"),
                          ("/api/v1/tenants/default/users/alice", "GET, PATCH"),
                          ("/api/v1/tenants/default/users/import", "POST"),
                          ("/d/tdl_x", "GET, POST")):
        r = client.request("DELETE", path)
        assert r.status_code == 405, path
        assert r.headers["allow"] == allowed, path
        assert r.headers["content-type"] == MEDIA_TYPE
