"""Every console page, by every caller, of its own or another tenant, as the API's walk does: no
session is sent to sign in, another tenant's pages answer 404 as if absent, an admin never
reaches an operator's page, a form posted without the session's CSRF value is refused and
changes nothing, and no page calls the service on the event loop. The walk takes the routes
from the app, so a page added later is walked too."""

from __future__ import annotations

import re
from typing import cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import build_app, console_routes
from api.auth import declared_access, failure_limit
from api.console.frame import ConsoleGuard, ConsolePublic
from ca.db.models import AuditEvent
from ca.service import Service
from ca.service.limits import limits_engine
from tests.api.test_event_loop import OffTheLoop
from tests.console.conftest import TENANT, Console

OTHER = "acme"
SAMPLE = {"login": "yamada", "serial": "AB", "job_id": "0" * 32, "name": "console.css"}
PUBLIC = {("GET", "/console/sign-in"), ("POST", "/console/sign-in"),
          ("GET", "/console/static/{name}"), ("GET", "/console/{rest:path}")}


def concrete(path: str, tenant: str = TENANT) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}",
                  lambda m: tenant if m.group(1) == "tenant" else SAMPLE[m.group(1)], path)


def pages(app: FastAPI) -> list[tuple[str, str, ConsoleGuard]]:
    """(method, path, guard) of every console route that needs a session."""
    found = []
    for route in console_routes(app):
        guard = declared_access(route)
        for method in sorted(route.methods):
            if isinstance(guard, ConsoleGuard):
                found.append((method, route.path, guard))
    return found


def audit_count(service: Service) -> int:
    with service.database.reading() as session:
        return int(session.scalar(select(func.count()).select_from(AuditEvent)) or 0)


@pytest.fixture
def walked(service: Service, tenant: str) -> Service:
    service.hierarchy.create_tenant(OTHER, display_name="アクメ")
    service.users.add(tenant, "yamada", email="yamada@example.jp", display_name="山田 太郎",
                      allow=True)
    return service


def test_every_console_route_declares_its_access(app_client: TestClient) -> None:
    app = cast(FastAPI, app_client.app)
    public = set()
    for route in console_routes(app):
        guard = declared_access(route)
        assert isinstance(guard, ConsoleGuard | ConsolePublic), route.path
        if isinstance(guard, ConsolePublic):
            public |= {(m, route.path) for m in route.methods}
        else:
            assert set(guard.roles) <= {"operator", "admin"} and guard.roles, route.path
    assert public == PUBLIC


def test_without_a_session_every_page_asks_to_sign_in(walked: Service,
                                                      app_client: TestClient) -> None:
    app = cast(FastAPI, app_client.app)
    for method, path, _ in pages(app):
        answer = app_client.request(method, concrete(path), follow_redirects=False)
        where = f"{method} {path}"
        assert answer.status_code == 303, where
        location = answer.headers["location"]
        assert location.startswith("/console/sign-in?back="), where
    assert len(pages(app)) >= 3


@pytest.mark.parametrize("caller", ["operator", "admin", "other-admin"])
def test_every_page_admits_exactly_its_callers(walked: Service, app_client: TestClient,
                                               caller: str) -> None:
    tokens = {"operator": walked.tokens.create(role="operator")[0],
              "admin": walked.tokens.create(role="admin", tenant=TENANT)[0],
              "other-admin": walked.tokens.create(role="admin", tenant=OTHER)[0]}
    console = Console(app_client)
    assert console.sign_in(tokens[caller]).status_code == 303
    role = "operator" if caller == "operator" else "admin"
    app = cast(FastAPI, app_client.app)
    for method, path, guard in pages(app):
        scoped = "{tenant}" in path
        where = f"{method} {path} as {caller}"
        if method == "POST":
            before = audit_count(walked)
            forged = console.post(concrete(path), {"csrf": "forged"})
            assert forged.status_code in (403, 404), where
            assert audit_count(walked) == before, where
        console.csrf = console.session_csrf
        answer = (console.post(concrete(path), {}) if method == "POST"
                  else console.client.get(concrete(path), follow_redirects=False))
        status = answer.status_code
        if scoped and caller == "other-admin":
            assert status == 404, where
        elif role not in guard.roles:
            assert status == 403, where
        else:
            assert status not in (401, 403, 404) or "{login}" in path or "{job_id}" in path \
                or "{serial}" in path, (where, status)
            assert status < 500, (where, answer.text)
        if path == "/console/sign-out" and status == 303:
            assert console.sign_in(tokens[caller]).status_code == 303


def test_no_console_page_calls_the_service_on_the_event_loop(walked: Service) -> None:
    guarded = OffTheLoop(walked)
    app = build_app(walked.settings, service=cast(Service, guarded))
    app.state.auth_failures = failure_limit(limits_engine(walked.engine), allowed=10**6)
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    console = Console(client)
    admin = walked.tokens.create(role="admin", tenant=TENANT)[0]
    operator = walked.tokens.create(role="operator")[0]
    for token in (admin, operator):
        assert console.sign_in(token).status_code == 303
        for method, path, _ in pages(app):
            console.csrf = console.session_csrf
            if method == "POST":
                if path != "/console/sign-out":
                    console.post(concrete(path), {})
            else:
                console.get(concrete(path))
    assert guarded.on_loop == []
    assert {"sessions.sign_in", "sessions.resume"} <= guarded.off_loop
