"""What a real server refuses before reading a request's body (``api.early``): a token-less
request to a route that requires a token, and a JSON body over ``MAX_JSON_BYTES``.

"Before reading" is shown on the wire: the client sends the headers and a first piece of a
much larger body and then waits; the answer arrives while most of the body is unsent. A
server that read the body first would still be waiting for it (the test then fails on its
socket timeout).
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.auth import FAILURES_ALLOWED
from api.early import MAX_JSON_BYTES
from ca.service import Service
from ca.settings import Settings
from tests.clocked_server import CLOCKED
from tests.served import Server, live_service, serving
from tests.support.http import bearer

LARGE = 60 * 1024 * 1024  # the tester's array: under the 64 MB cap on streamed bodies
FIRST_PIECE = b"[" + b"0," * 32 * 1024
ANSWER_WITHIN = 60.0  # seconds: a stuck server fails the test rather than hanging it


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """A server at one fixed instant (the failure limit does not refill), and an operator
    token of the tenant 大阪支社's deployment."""
    with live_service(settings, "osaka", "大阪支社") as service:
        token, _ = service.tokens.create(role="operator", name="鈴木の台本")
        with serving(settings, tmp_path / "serve.log", module=CLOCKED,
                     TEGATA_TEST_NOW=service.clock.now().isoformat()) as server:
            yield server, token


def first_piece_then_answer(server: Server, *, token: str | None, chunked: bool) -> tuple[
        int, dict[str, object]]:
    """POST /api/v1/tenants announcing a 60 MB JSON body (or chunked), send its first 64 KiB
    only, and read the status and problem body that come back."""
    host, port = server.url.removeprefix("http://").split(":")
    head = [b"POST /api/v1/tenants HTTP/1.1", f"Host: {host}".encode(),
            b"Content-Type: application/json"]
    head.append(b"Transfer-Encoding: chunked" if chunked
                else f"Content-Length: {LARGE}".encode())
    if token is not None:
        head.append(f"Authorization: Bearer {token}".encode())
    piece = (b"%x\r\n%s\r\n" % (len(FIRST_PIECE), FIRST_PIECE)) if chunked else FIRST_PIECE
    with socket.create_connection((host, int(port)), timeout=ANSWER_WITHIN) as conn:
        conn.sendall(b"\r\n".join(head) + b"\r\n\r\n" + piece)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = conn.recv(65536)
                if not data:
                    break
                answer += data
    status_line, _, rest = answer.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_tokenless_body_is_refused_unread_and_counted_as_a_failure(
        served: tuple[Server, str], chunked: bool) -> None:
    server, _ = served
    answers = [first_piece_then_answer(server, token=None, chunked=chunked)
               for _ in range(FAILURES_ALLOWED + 1)]
    assert [status for status, _ in answers] == [401] * FAILURES_ALLOWED + [429]
    assert answers[0][1] == {
        "type": "urn:tegata:problem:unauthenticated",
        "title": "Authentication required", "status": 401,
        "detail": "send an API token as 'Authorization: Bearer <token>'"}


def test_a_json_body_over_the_cap_is_refused_unread_even_with_a_token(
        served: tuple[Server, str]) -> None:
    server, token = served
    status, body = first_piece_then_answer(server, token=token, chunked=False)
    assert (status, body["type"]) == (413, "urn:tegata:problem:request-too-large")


def chunks(size: int) -> Iterator[bytes]:
    body = b'{"name": "' + b"x" * (size - 12) + b'"}'
    assert len(body) == size
    for start in range(0, size, 65536):
        yield body[start:start + 65536]


@pytest.mark.parametrize(("size", "status"), [(MAX_JSON_BYTES, 400), (MAX_JSON_BYTES + 1, 413)],
                         ids=["at-the-cap", "one-byte-over"])
def test_a_chunked_json_body_is_counted_against_the_cap(
        service: Service, tokens: dict[str, str], size: int, status: int) -> None:
    from api.app import build_app

    client = TestClient(build_app(service.settings, service=service))
    answer = client.post("/api/v1/tenants", content=chunks(size), headers={
        **bearer(tokens["operator"]), "Content-Type": "application/json"})
    assert answer.status_code == status  # at the cap: read, and a bad tenant name
