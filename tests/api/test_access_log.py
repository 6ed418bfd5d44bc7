"""One access log line per request (peer, method, path, status, time), never a secret, and
every request counted by route for ``/metrics``."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

from api.app import build_app
from api.traffic import logged_path
from ca.service import IssueRequest, Service
from tests.support.http import bearer

LINE = re.compile(r"^testclient (\S+) (\S+) (\d{3}) \d+\.\dms$")


def access_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, ...]]:
    return [LINE.fullmatch(r.getMessage()).groups()  # type: ignore[union-attr]
            for r in caplog.records if r.name == "tegata.access"]


def test_a_link_redemption_is_logged_without_its_secret(
        client: TestClient, service: Service, caplog: pytest.LogCaptureFixture) -> None:
    service.users.add("default", "suzuki", email="suzuki@example.jp", display_name="鈴木 一郎",
                     allow=True)
    service.certificates.issue(IssueRequest(tenant="default", logins=("suzuki",)))
    secret = service.links.create("default", "suzuki").url.rsplit("/", 1)[1]
    caplog.set_level(logging.INFO, logger="tegata.access")
    assert client.get("/healthz?from=監視").status_code == 200
    assert client.get(f"/d/{secret}").status_code == 200
    assert client.post(f"/d/{secret}").status_code == 200
    assert access_lines(caplog) == [("GET", "/healthz", "200"), ("GET", "/d/…", "200"),
                                    ("POST", "/d/…", "200")]
    assert not [r for r in caplog.records if secret in r.getMessage() or secret in str(r.args)]


def test_a_secret_path_parameter_is_blanked_whatever_its_form() -> None:
    # a mistyped token has no tdl_ prefix for the log filter to find: the route says it
    scope = {"path": "/d/not-a-tdl-token", "path_params": {"token": "not-a-tdl-token"}}
    assert logged_path(scope) == "/d/…"


def test_with_the_access_log_off_requests_are_counted_but_not_logged(
        service: Service, tokens: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    quiet = service.settings.model_copy(update={"access_log": False})
    client = TestClient(build_app(quiet, service=service))
    operator = bearer(tokens["operator"])

    def healthz_count() -> int:
        text = client.get("/metrics", headers=operator).text
        found = re.search(r'^tegata_http_requests_total\{route="/healthz"\} (\d+)$', text,
                          re.MULTILINE)
        return int(found.group(1)) if found else 0

    caplog.set_level(logging.INFO, logger="tegata.access")
    before = healthz_count()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert client.get("/no/such/place").status_code == 404
    assert healthz_count() == before + 3
    assert access_lines(caplog) == []
