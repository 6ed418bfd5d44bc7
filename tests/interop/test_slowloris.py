"""Slowloris against a real ``tegata serve`` (loopback only, bounded): connections that never
finish their headers, whether silent, half-sent or trickling a byte at a time, are closed by
the server after TEGATA_HEADER_TIMEOUT_SECONDS without an answer, while ``/healthz`` and a
kept OCSP answer go on being served to everyone else."""

from __future__ import annotations

import base64
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.x509 import ocsp

from ca.service import Service
from ca.settings import Settings
from tests.served import Server, live_service, serving
from tests.support.issuing import issue_one, ocsp_request

TENANT = "hokkaido"
SLOW = 300  # a few hundred: enough to matter, few enough for any test machine
DEADLINE = 60.0  # seconds to see every slow connection closed (the timeout is 1 s)
TRICKLE_EVERY = 0.2  # seconds between the trickling connection's bytes


@pytest.fixture
def live(settings: Settings) -> Iterator[Service]:
    with live_service(settings, TENANT, "北海道乳業株式会社") as service:
        yield service


def suzukis_ocsp_request(service: Service) -> bytes:
    service.users.add(TENANT, "suzuki", email="suzuki@example.jp", display_name="鈴木 一郎",
                      allow=True)
    return ocsp_request(service, issue_one(service, "suzuki", TENANT), tenant=TENANT)

def slow_connection(server: Server, first: bytes) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    if first:
        sock.sendall(first)
    sock.setblocking(False)
    return sock


def answers_well(server: Server, get_path: str) -> bool:
    health = httpx.get(f"{server.url}/healthz", timeout=30)
    status = httpx.get(f"{server.url}{get_path}", timeout=30)
    answer = ocsp.load_der_ocsp_response(status.content)
    return (health.json() == {"status": "ok"}
            and answer.certificate_status is ocsp.OCSPCertStatus.GOOD)


def test_slow_headers_are_closed_while_healthz_and_ocsp_answer(live: Service,
                                                              tmp_path: Path) -> None:
    get_path = "/ocsp/" + base64.b64encode(suzukis_ocsp_request(live)).decode()
    with serving(live.settings, tmp_path / "serve.log", workers=2,
                 TEGATA_HEADER_TIMEOUT_SECONDS="1") as server:
        assert answers_well(server, get_path)  # the kept answer is made before the attack
        kinds = (b"", b"GET /healthz HTTP/1.1\r\n", b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        slow = [slow_connection(server, kinds[n % len(kinds)]) for n in range(SLOW)]
        trickling = slow_connection(server, b"GET /healthz HTTP/1.1\r\n")

        assert answers_well(server, get_path)  # during the attack

        selector = selectors.DefaultSelector()
        for sock in [*slow, trickling]:
            selector.register(sock, selectors.EVENT_READ)
        answered: dict[socket.socket, bytes] = {}  # whatever the server sent back
        ended: set[socket.socket] = set()  # closed by the server
        started = time.monotonic()
        next_byte = started
        while len(ended) < SLOW + 1 and time.monotonic() - started < DEADLINE:
            if trickling not in ended and time.monotonic() >= next_byte:
                trickling.send(b"X")  # one byte of a header name, every 0.2 s
                next_byte += TRICKLE_EVERY
            for key, _ in selector.select(timeout=TRICKLE_EVERY):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                if data:
                    answered[sock] = answered.get(sock, b"") + data
                else:
                    ended.add(sock)
                    selector.unregister(sock)
        assert ended == {*slow, trickling}
        assert answered == {}  # closed, not one of them answered
        assert answers_well(server, get_path)  # and after it
        for sock in [*slow, trickling]:
            sock.close()
