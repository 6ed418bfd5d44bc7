"""``tegata serve --workers N`` for real: N processes that all answer, and who the client is
decided by TEGATA_TRUSTED_PROXIES alone, under one worker and under several.

Which worker answers a connection is the kernel's choice: the tests keep connections open
until each worker holds one, then send on each. The worker that holds a connection is read
from /proc (the server-side socket's inode among the worker's open files).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from api.auth import FAILURES_ALLOWED
from ca.service import Service
from ca.settings import Settings
from tests.served import Server, live_service, serving, worker_pids

TENANT = "kansai"
DISPLAY = "関西物産株式会社"
SPOOFED = "203.0.113.9"
LOOPBACK = "127.0.0.1"
MAX_TRIES = 64  # connections opened at most to reach every worker


@pytest.fixture
def live(settings: Settings) -> Iterator[Service]:
    with live_service(settings, TENANT, DISPLAY) as service:
        yield service


def worker_of(server: Server, conn: http.client.HTTPConnection) -> int:
    """The worker holding the server's end of ``conn``."""
    assert conn.sock is not None
    client_port = conn.sock.getsockname()[1]
    server_port = int(server.url.rsplit(":", 1)[1])
    inodes = {line.split()[9] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
              if int(line.split()[1].split(":")[1], 16) == server_port
              and int(line.split()[2].split(":")[1], 16) == client_port}
    assert len(inodes) == 1, inodes
    wanted = f"socket:[{inodes.pop()}]"
    owners = set()
    for pid in worker_pids(server):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if fd.readlink().as_posix() == wanted:
                    owners.add(pid)
            except OSError:  # closed meanwhile
                continue
    assert len(owners) == 1, owners
    return owners.pop()


def call(conn: http.client.HTTPConnection, method: str, path: str,
         headers: dict[str, str], body: object = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                   **headers})
    response = conn.getresponse()
    return response.status, response.read()


def one_connection_per_worker(server: Server) -> list[http.client.HTTPConnection]:
    """A kept-alive connection answered by each worker: connections are opened and kept
    until every worker holds one (the kernel spreads them; bounded, never a wait)."""
    host, port = server.url.removeprefix("http://").split(":")
    workers = worker_pids(server)
    held: dict[int, http.client.HTTPConnection] = {}
    spare = []
    for _ in range(MAX_TRIES):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        assert call(conn, "GET", "/healthz", {})[0] == 200
        pid = worker_of(server, conn)
        if pid in held:
            spare.append(conn)  # kept open meanwhile: a new connection gets a new socket
        else:
            held[pid] = conn
        if set(held) == workers:
            break
    for conn in spare:
        conn.close()
    assert set(held) == workers
    return list(held.values())


def started(settings: Settings, tmp_path: Path, workers: int,
            **extra: str) -> AbstractContextManager[Server]:
    return serving(settings, tmp_path / "serve.log", workers=workers,
                   TEGATA_HEADER_TIMEOUT_SECONDS="60", **extra)


def test_two_workers_are_two_processes_that_both_answer(live: Service, tmp_path: Path) -> None:
    with started(live.settings, tmp_path, 2) as server:
        pids = worker_pids(server)
        assert len(pids) == 2 and server.proc.pid not in pids
        held = one_connection_per_worker(server)
        assert {worker_of(server, conn) for conn in held} == pids
        for conn in held:
            conn.close()


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers"])
@pytest.mark.parametrize(("trusted", "seen"), [(None, LOOPBACK), ('["127.0.0.1/32"]', SPOOFED)],
                         ids=["no-trusted-proxy", "loopback-trusted"])
def test_the_audited_source_is_the_peer_unless_it_is_a_trusted_proxy(
        live: Service, tmp_path: Path, workers: int, trusted: str | None, seen: str) -> None:
    token, _ = live.tokens.create(role="admin", tenant=TENANT, name="管理者")
    extra = {"TEGATA_TRUSTED_PROXIES": trusted} if trusted else {}
    with started(live.settings, tmp_path, workers, **extra) as server:
        held = one_connection_per_worker(server)
        for n, conn in enumerate(held):
            status, body = call(conn, "POST", f"/api/v1/tenants/{TENANT}/users",
                                {"Authorization": f"Bearer {token}",
                                 "X-Forwarded-For": SPOOFED},
                                {"login": f"yamada{n}", "email": f"yamada{n}@example.jp",
                                 "display_name": "山田 花子"})
            assert status == 201, body
            conn.close()
    events = live.audit.events(tenant=TENANT, action="user.create")
    assert [e.source_ip for e in events] == [seen] * workers


@pytest.mark.parametrize(("trusted", "last_status"), [(None, 429), ('["127.0.0.1/32"]', 401)],
                         ids=["no-trusted-proxy", "loopback-trusted"])
def test_rotating_forwarded_for_does_not_escape_the_failed_authentication_limit(
        live: Service, tmp_path: Path, trusted: str | None, last_status: int) -> None:
    extra = {"TEGATA_TRUSTED_PROXIES": trusted} if trusted else {}
    with started(live.settings, tmp_path, 1, **extra) as server:
        (conn,) = one_connection_per_worker(server)
        statuses = [call(conn, "GET", "/api/v1/whoami",
                         {"Authorization": "Bearer tgt_guessed",
                          "X-Forwarded-For": f"198.51.100.{n}"})[0]
                    for n in range(FAILURES_ALLOWED + 1)]
        conn.close()
    assert statuses == [401] * FAILURES_ALLOWED + [last_status]
