"""What a real ``tegata serve`` does with every request, under several workers: ``/metrics``
counts the whole server (every worker, not the one scraped), each request is one line of
the access log that holds no link secret, and a body that stops coming is answered 408 and
its connection closed while other requests are served.

Which worker answers a connection is read from /proc (``test_workers.worker_of``).
"""

from __future__ import annotations

import http.client
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ca.service import IssueRequest, Service
from ca.settings import Settings
from tests.integration.test_workers import worker_of
from tests.served import Server, live_service, serving, worker_pids
from tests.support.issuing import issue_one, ocsp_request

TENANT = "kyushu"
DISPLAY = "九州電機株式会社"
LOGIN = "user0000"
REQUESTS = 6  # of each kind, each on a connection of its own
MAX_CONNECTIONS = 64  # opened at most, per kind, to reach both workers
SCRAPE_DEADLINE = 20.0  # seconds a worker's file may take to catch up (it writes each second)
STALL_TIMEOUT = "1"  # TEGATA_BODY_TIMEOUT_SECONDS for these tests
READ_DEADLINE = 30  # seconds a client waits for an answer before calling it missing


@pytest.fixture
def live(settings: Settings) -> Iterator[Service]:
    with live_service(settings, TENANT, DISPLAY, users=1) as service:
        yield service


def connect(server: Server) -> http.client.HTTPConnection:
    host, port = server.url.removeprefix("http://").split(":")
    return http.client.HTTPConnection(host, int(port), timeout=READ_DEADLINE)


def spread(server: Server, method: str, path: str,
           body: bytes | None) -> tuple[set[int], int]:
    """REQUESTS requests, each on a new connection, and more until both workers answered
    one: the workers that answered, and how many requests were sent."""
    answered: list[int] = []
    while len(answered) < REQUESTS or set(answered) != worker_pids(server):
        assert len(answered) < MAX_CONNECTIONS, answered
        conn = connect(server)
        conn.request(method, path, body=body,
                     headers={"Content-Type": "application/ocsp-request"} if body else {})
        response = conn.getresponse()
        assert response.status == 200, response.read()
        response.read()
        answered.append(worker_of(server, conn))
        conn.close()
    return set(answered), len(answered)


def counted(text: str, sample: str) -> int:
    found = re.search(rf"^{re.escape(sample)} (\d+)$", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def test_metrics_count_every_workers_requests(live: Service, tmp_path: Path) -> None:
    data = ocsp_request(live, issue_one(live, LOGIN, TENANT), tenant=TENANT)
    token, _ = live.tokens.create(role="operator", name="監視担当")
    with serving(live.settings, tmp_path / "serve.log", workers=2) as server:
        ocsp_workers, ocsp_sent = spread(server, "POST", "/ocsp", data)
        health_workers, health_sent = spread(server, "GET", "/healthz", None)
        assert ocsp_workers == health_workers == worker_pids(server)
        # the readiness probe of `serving` is one /healthz more
        wanted = {'tegata_ocsp_requests_total{method="POST"}': ocsp_sent,
                  'tegata_http_requests_total{route="/ocsp"}': ocsp_sent,
                  'tegata_http_requests_total{route="/healthz"}': health_sent + 1,
                  "tegata_ocsp_seconds_count": ocsp_sent}
        started = time.monotonic()
        while True:  # the other worker's file is at most a second behind
            text = httpx.get(f"{server.url}/metrics", timeout=READ_DEADLINE,
                             headers={"Authorization": f"Bearer {token}"}).text
            seen = {sample: counted(text, sample) for sample in wanted}
            if seen == wanted or time.monotonic() - started > SCRAPE_DEADLINE:
                break
            time.sleep(0.2)
        assert seen == wanted


def test_each_request_is_one_access_log_line_without_the_links_secret(
        live: Service, tmp_path: Path) -> None:
    live.certificates.issue(IssueRequest(tenant=TENANT, logins=(LOGIN,)))
    link = live.links.create(TENANT, LOGIN).url
    secret = link.rsplit("/", 1)[1]
    log = tmp_path / "serve.log"
    with serving(live.settings, log, workers=1, TEGATA_LOG_LEVEL="info") as server:
        assert httpx.get(f"{server.url}/healthz?probe=外形監視").status_code == 200
        path = "/d/" + secret
        assert httpx.post(f"{server.url}{path}", timeout=READ_DEADLINE).status_code == 200
    text = log.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if "tegata.access" in line]
    assert secret not in text
    assert [line.split("tegata.access: ")[1].rsplit(" ", 1)[0] for line in lines] == [
        "127.0.0.1 GET /healthz 200", "127.0.0.1 GET /healthz 200",
        "127.0.0.1 POST /d/… 200"]


def test_access_log_off_writes_no_line(live: Service, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with serving(live.settings, log, workers=1, TEGATA_LOG_LEVEL="info",
                 TEGATA_ACCESS_LOG="false") as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert "tegata.access" not in log.read_text(encoding="utf-8", errors="replace")


def half_sent(server: Server, path: str, headers: str) -> socket.socket:
    """A POST that declares 100 bytes and sends 10."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=READ_DEADLINE)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: tegata\r\n{headers}"
                 "Content-Length: 100\r\n\r\n".encode() + b"0123456789")
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):  # b"": the server closed the connection
        answer += chunk
    return answer


@pytest.mark.parametrize("path", ["/ocsp", f"/api/v1/tenants/{TENANT}/users"],
                         ids=["ocsp-fast-path", "api-route"])
def test_a_stalled_body_is_answered_408_and_closed_while_others_are_served(
        live: Service, tmp_path: Path, path: str) -> None:
    token, _ = live.tokens.create(role="admin", tenant=TENANT, name="管理者")
    headers = ("Content-Type: application/ocsp-request\r\n" if path == "/ocsp" else
               f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n")
    with serving(live.settings, tmp_path / "serve.log", workers=1,
                 TEGATA_BODY_TIMEOUT_SECONDS=STALL_TIMEOUT,
                 TEGATA_HEADER_TIMEOUT_SECONDS="60") as server:
        stalled = half_sent(server, path, headers)
        assert httpx.get(f"{server.url}/healthz", timeout=READ_DEADLINE).status_code == 200
        answer = read_until_closed(stalled)
        stalled.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"
        assert b"content-type: application/problem+json" in head.lower()
        assert b'"status":408' in body
        assert httpx.get(f"{server.url}/healthz", timeout=READ_DEADLINE).status_code == 200
