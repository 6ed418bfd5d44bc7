"""The event loop only waits on the network: no route, dependency or middleware calls the
synchronous core (database, signing, files) on the loop's thread.

Structural: the app's ``Service`` is wrapped so that any call made on the event loop's thread
is recorded and refused, and every route is driven with every role (and the async handlers
with requests that reach the service). Behaviour, against a real server: while another
connection holds SQLite's write lock, ``/healthz`` and an authenticated read answer, and a
request that must write waits in its worker thread without stopping them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import api_routes, build_app
from api.auth import failure_limit, public
from ca.db.models import ApiToken
from ca.service import IssueRequest, Service
from ca.service.limits import limits_engine
from ca.settings import Settings
from tests.api.test_route_roles import CALLERS, concrete
from tests.clocked_server import CLOCKED
from tests.served import live_service, serving
from tests.support.http import bearer

# memory alone, made for the loop (tests/integration/test_ocsp_memory.py shows they neither
# read the database nor sign): the OCSP fast path's kept answers, and the clock
LOOP_SAFE = {"clock.now", "ocsp.kept", "ocsp.from_memory"}
# values, not collaborators: handed out as they are
PLAIN = {"settings", "urls", "engine"}


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class OffTheLoop:
    """A ``Service`` whose use cases and plumbing refuse (and record) every method call made
    on the event loop's thread, and record the calls made elsewhere, named
    ``use_case.method`` (``users.import_users``)."""

    def __init__(self, target: Any, *, prefix: str = "",
                 on_loop: list[str] | None = None, off_loop: set[str] | None = None) -> None:
        self._target = target
        self._prefix = prefix
        self.on_loop: list[str] = [] if on_loop is None else on_loop
        self.off_loop: set[str] = set() if off_loop is None else off_loop

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        qualified = self._prefix + name
        if not self._prefix and name not in PLAIN:  # a use case or a collaborator: its calls
            return OffTheLoop(value, prefix=qualified + ".", on_loop=self.on_loop,
                              off_loop=self.off_loop)
        if not callable(value):
            return value

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if on_event_loop() and qualified not in LOOP_SAFE:
                self.on_loop.append(qualified)
                raise AssertionError(f"service.{qualified}() was called on the event loop")
            self.off_loop.add(qualified)
            return value(*args, **kwargs)

        return guarded


@pytest.fixture
def guarded(service: Service) -> OffTheLoop:
    return OffTheLoop(service)


@pytest.fixture
def loop_client(service: Service, guarded: OffTheLoop) -> TestClient:
    app = build_app(service.settings, service=cast(Service, guarded))
    # the walk sends many requests without a token: they must not lock the client out
    app.state.auth_failures = failure_limit(limits_engine(service.engine), allowed=10**6)
    return TestClient(app, raise_server_exceptions=False)


def test_no_route_calls_the_service_on_the_event_loop(
        loop_client: TestClient, guarded: OffTheLoop, tokens: dict[str, str],
        service: Service) -> None:
    # the async handlers, with requests that reach the service
    admin, user = bearer(tokens["admin"]), bearer(tokens["user"])
    base = "/api/v1/tenants/default"
    assert loop_client.post("/api/v1/tenants", json={"name": "osaka"},
                            headers=bearer(tokens["operator"])).status_code == 201
    assert loop_client.post(f"{base}/users/import", headers=admin,
                            content="login,email,name,secure_access\n"
                                    "tanaka,tanaka@example.jp,田中 太郎,yes\n".encode(),
                            ).status_code == 200
    issued = loop_client.post(f"{base}/certificates", json={"login": "tanaka"}, headers=admin)
    assert issued.status_code == 201, issued.text
    serial = issued.json()["certificates"][0]["serial"]
    assert loop_client.get(f"{base}/certificates/{serial}/bundle",
                           headers=admin).status_code == 200
    service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))
    mine = loop_client.get(f"{base}/me/certificates", headers=user).json()
    assert loop_client.get(f"{base}/me/certificates/{mine[0]['serial']}/bundle",
                           headers=user).status_code == 200
    link = loop_client.post(f"{base}/users/alice/links", json={}, headers=admin)
    assert link.status_code == 201, link.text
    page = "/" + link.json()["url"].split("/", 3)[3]
    assert loop_client.get(page).status_code == 200
    assert loop_client.post(page).status_code == 200

    # then every route with every role (the walk retires alice: it comes last)
    app = cast(FastAPI, loop_client.app)
    walked = 0
    for route in api_routes(app):
        for method in sorted(route.methods):
            for caller, _role, _own in CALLERS:
                loop_client.request(method, concrete(route.path), json={},
                                    headers=bearer(tokens[caller]))
            loop_client.request(method, concrete(route.path))  # and without a token
            walked += 1
    assert guarded.on_loop == []
    assert walked >= 40
    assert {"tokens.authenticate", "hierarchy.create_tenant", "users.import_users",
            "certificates.issue", "certificates.bundle", "links.my_bundle", "links.create",
            "links.page_info", "links.redeem", "clock.now"} <= guarded.off_loop


def test_a_service_call_planted_on_the_event_loop_is_caught(
        service: Service, guarded: OffTheLoop) -> None:
    app = build_app(service.settings, service=cast(Service, guarded))

    @app.get("/planted", dependencies=[public()])
    async def planted(request: Request) -> list[str]:
        return cast(Callable[[], list[str]], request.app.state.service.hierarchy.list_tenants)()

    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/planted").status_code == 500
    assert guarded.on_loop == ["hierarchy.list_tenants"]


# --- behaviour: a held write lock ------------------------------------------------------------


@pytest.fixture
def locked_out(tmp_path: Path) -> Iterator[Callable[[], sqlite3.Connection]]:
    """Another connection to the database file, which takes the write lock when called."""
    holders: list[sqlite3.Connection] = []

    def hold() -> sqlite3.Connection:
        conn = sqlite3.connect(tmp_path / "tegata.db", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        holders.append(conn)
        return conn

    yield hold
    for conn in holders:
        conn.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_held_write_lock_stops_neither_health_nor_an_authenticated_read(
        settings: Settings, tmp_path: Path,
        locked_out: Callable[[], sqlite3.Connection]) -> None:
    with live_service(settings, "tokyo", "東京支社") as service:
        fresh, _ = service.tokens.create(role="admin", tenant="tokyo", name="佐藤の端末")
        due, due_view = service.tokens.create(role="admin", tenant="tokyo", name="鈴木の台本")
        now = service.clock.now()
        with serving(settings, tmp_path / "serve.log", module=CLOCKED,
                     TEGATA_TEST_NOW=now.isoformat(),
                     TEGATA_TOKEN_REQUESTS_PER_MINUTE="600") as server, \
                ThreadPoolExecutor(max_workers=1) as pool:
            whoami = f"{server.url}/api/v1/whoami"
            assert httpx.get(whoami, headers=bearer(fresh)).status_code == 200  # last use kept
            lock = locked_out()
            # a token used for the first time: its last use is a write, which waits for the lock
            writing = pool.submit(httpx.get, whoami, headers=bearer(due), timeout=60)
            for _ in range(3):
                assert httpx.get(f"{server.url}/healthz", timeout=60).status_code == 200
                read = httpx.get(whoami, headers=bearer(fresh), timeout=60)
                assert read.status_code == 200 and read.json()["name"] == "佐藤の端末"
                assert not writing.done()  # both answered while the writer waits
            lock.rollback()
            assert writing.result().status_code == 200
        with service.database.reading() as session:
            assert session.scalar(select(ApiToken.last_used_at)
                                  .where(ApiToken.id == due_view.id)) == now
