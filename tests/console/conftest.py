"""The web console driven through the app in process: sign in with a token, then pages."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import build_app
from ca.service import Service
from ca.service.sessions import csrf_of

TENANT = "tohoku"
DISPLAY = "東北電機株式会社"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Console:
    """A browser's view of the console: cookies kept, forms posted with their CSRF value."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.csrf = ""

    def sign_in(self, token: str, back: str = "") -> httpx.Response:
        page = self.client.get("/console/sign-in")
        assert page.status_code == 200, page.text
        answer = self.client.post("/console/sign-in", data={
            "csrf": form_csrf(page.text), "token": token, "back": back},
            follow_redirects=False)
        return answer

    @property
    def session_csrf(self) -> str:
        """The CSRF value of the session the cookie holds (as every page of it renders)."""
        return csrf_of(self.client.cookies.get("tegata_session") or "")

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        answer = self.client.get(path, **kwargs)
        found = CSRF.search(answer.text)
        if found:
            self.csrf = found.group(1)
        return answer

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
             **kwargs: Any) -> httpx.Response:
        body = dict(data or {})
        if csrf:
            body.setdefault("csrf", self.csrf)
        return self.client.post(path, data=body, follow_redirects=False, **kwargs)


def form_csrf(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


@pytest.fixture
def tenant(service: Service) -> str:
    service.hierarchy.create_tenant(TENANT, display_name=DISPLAY)
    return TENANT


@pytest.fixture
def app_client(service: Service) -> TestClient:
    return TestClient(build_app(service.settings, service=service),
                      base_url="http://127.0.0.1", raise_server_exceptions=False)


@pytest.fixture
def admin_token(service: Service, tenant: str) -> str:
    return service.tokens.create(role="admin", tenant=tenant, name="佐藤 管理者")[0]


@pytest.fixture
def operator_token(service: Service) -> str:
    return service.tokens.create(role="operator", name="operator")[0]


@pytest.fixture
def admin(app_client: TestClient, admin_token: str) -> Console:
    """An admin of ``tohoku``, signed in."""
    console = Console(app_client)
    answer = console.sign_in(admin_token)
    assert answer.status_code == 303, answer.text
    console.get("/console/")
    return console
