"""Rate limits hold across workers and replicas: two server processes on one database (an
SQLite file, or PostgreSQL) give a caller its allowance once in all, not once each.

Both servers stand at one fixed instant (``tests.clocked_server``), so no bucket refills
while a test runs, however slow the machine: the counts are exact.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from api.auth import FAILURES_ALLOWED
from api.routes.selfservice import LINK_REQUESTS_PER_MINUTE
from ca.settings import Settings
from tests.clocked_server import CLOCKED
from tests.served import Server, live_service, serving
from tests.support.http import bearer

PER_TOKEN = 4


@pytest.fixture
def pair(settings: Settings, tmp_path: Path) -> Iterator[tuple[list[Server], str]]:
    """Two servers on one database, and an admin token of the tenant 東京支社."""
    with live_service(settings, "tokyo", "東京支社") as service, contextlib.ExitStack() as stack:
        token, _ = service.tokens.create(role="admin", tenant="tokyo", name="山田の台本")
        now = service.clock.now().isoformat()  # one instant for both
        servers = [stack.enter_context(serving(
            settings, tmp_path / f"serve-{n}.log", module=CLOCKED, TEGATA_TEST_NOW=now,
            TEGATA_TOKEN_REQUESTS_PER_MINUTE=str(PER_TOKEN),
            # loopback is the proxy: a test may speak for several client addresses
            TEGATA_TRUSTED_PROXIES='["127.0.0.1/32"]')) for n in range(2)]
        yield servers, token


def spread(servers: list[Server], requests: int, method: str, path: str,
           headers: dict[str, str] | None = None, *,
           at_once: bool, threads: int = 8) -> list[httpx.Response]:
    """``requests`` requests, to each server in turn; with ``at_once``, from ``threads``."""
    def one(n: int) -> httpx.Response:
        return httpx.request(method, servers[n % 2].url + path, headers=headers, timeout=60)

    if not at_once:
        return [one(n) for n in range(requests)]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, range(requests)))


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


def retry_afters(responses: list[httpx.Response]) -> set[str | None]:
    return {r.headers.get("retry-after") for r in responses if r.status_code == 429}


def test_a_token_limit_holds_across_two_servers(pair: tuple[list[Server], str]) -> None:
    servers, token = pair
    answers = spread(servers, 3 * PER_TOKEN, "GET", "/api/v1/whoami", bearer(token),
                     at_once=True)
    assert statuses(answers) == {200: PER_TOKEN, 429: 2 * PER_TOKEN}
    assert retry_afters(answers) == {str(60 // PER_TOKEN)}  # one more every 15 s


def test_failed_authentications_per_address_hold_across_two_servers(
        pair: tuple[list[Server], str]) -> None:
    servers, token = pair
    # 60 guesses from one address, all in flight at once, for ten addresses in turn: each
    # takes its place in the bucket before it is authenticated, so exactly the allowance
    # fails and the rest wait (a read-then-count limit lets some bursts through, not all)
    for address in range(10):
        answers = spread(servers, 3 * FAILURES_ALLOWED, "GET", "/api/v1/whoami",
                         {**bearer("tgt_" + "A" * 43), "X-Forwarded-For": f"192.0.2.{address}"},
                         at_once=True, threads=60)
        assert statuses(answers) == {401: FAILURES_ALLOWED, 429: 2 * FAILURES_ALLOWED}
    answers = spread(servers, FAILURES_ALLOWED + 4, "GET", "/api/v1/whoami",
                     bearer("tgt_" + "A" * 43), at_once=False)
    assert statuses(answers) == {401: FAILURES_ALLOWED, 429: 4}
    assert retry_afters(answers) == {"3"}  # 20 a minute: one more every 3 seconds
    # and the address waits on both servers, even with a good token
    for server in servers:
        assert httpx.get(f"{server.url}/api/v1/whoami",
                         headers=bearer(token)).status_code == 429


def test_link_redemptions_per_address_hold_across_two_servers(
        pair: tuple[list[Server], str]) -> None:
    servers, _ = pair
    answers = spread(servers, LINK_REQUESTS_PER_MINUTE + 6, "POST", "/d/tdl_nope",
                     at_once=True)
    assert statuses(answers) == {404: LINK_REQUESTS_PER_MINUTE, 429: 6}
    assert retry_afters(answers) == {"3"}
