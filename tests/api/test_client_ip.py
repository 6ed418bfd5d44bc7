"""X-Forwarded-For is believed only from trusted proxies, and then only up to them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import build_app
from api.auth import FAILURES_ALLOWED
from ca.service import Service, build_service
from ca.settings import Settings, load_settings
from tests.clocked_server import CLOCKED
from tests.served import live_service, serving
from tests.support.http import bearer


def client_with(service: Service, proxies: list[str]) -> TestClient:
    settings = load_settings(**{**service.settings.model_dump(), "trusted_proxies": proxies})
    # the same database and clock, wired anew with these settings
    return TestClient(build_app(settings, service=build_service(settings, clock=service.clock,
                                                                engine=service.engine)))


def audited_ip(service: Service) -> str | None:
    return service.audit.events(tenant="default", action="user.create")[-1].source_ip


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [([], "203.0.113.9", "testclient"),
     (["127.0.0.0/8", "testclient/32"], "203.0.113.9", "testclient")],
    ids=["no-trusted-proxy", "peer-not-trusted"])
def test_forwarded_for_from_an_untrusted_peer_is_ignored(
        service: Service, tokens: dict[str, str], proxies: list[str], forwarded: str,
        expected: str) -> None:
    if "testclient/32" in proxies:
        proxies = ["127.0.0.0/8"]  # the test client's peer name is not an address
    client = client_with(service, proxies)
    client.post("/api/v1/tenants/default/users", headers={
        **bearer(tokens["admin"]), "X-Forwarded-For": forwarded},
        json={"login": "zed", "email": "zed@example.com"})
    assert audited_ip(service) == expected


def test_settings_refuse_a_proxy_that_is_not_a_network() -> None:
    from ca.errors import ConfigError

    with pytest.raises(ConfigError, match="TEGATA_TRUSTED_PROXIES"):
        load_settings(trusted_proxies=["not-a-network"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [("10.0.0.5", "198.51.100.7", "198.51.100.7"),
     ("10.0.0.5", "1.2.3.4, 198.51.100.7, 10.0.0.9", "198.51.100.7"),
     ("192.0.2.1", "198.51.100.7", "192.0.2.1"),
     ("10.0.0.5", "not-an-address", "10.0.0.5"),
     ("10.0.0.5", "", "10.0.0.5")],
    ids=["trusted-proxy", "rightmost-untrusted-hop", "untrusted-peer", "garbage", "absent"])
def test_the_client_is_the_rightmost_hop_before_the_trusted_proxies(
        service: Service, peer: str, forwarded: str, expected: str) -> None:
    from starlette.requests import Request

    from api.clientip import client_ip

    app = build_app(load_settings(**{**service.settings.model_dump(),
                                     "trusted_proxies": ["10.0.0.0/8"]}), service=service)
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    request = Request({"type": "http", "client": (peer, 4711), "headers": headers,
                       "app": app})
    assert client_ip(request) == expected


SPOOFED_32 = ", ".join(f"203.0.113.{n}" for n in range(32))
SPOOFED_500 = ", ".join(f"203.0.113.{n % 250}" for n in range(500))


@pytest.mark.parametrize(
    ("lines", "expected"),
    [([f"{SPOOFED_32}, 198.51.100.7"], "198.51.100.7"),
     ([f"{SPOOFED_500}, 198.51.100.7, 10.0.0.9"], "198.51.100.7"),
     (["203.0.113.66", "198.51.100.7"], "198.51.100.7"),
     (["203.0.113.66, 198.51.100.7", "10.0.0.9"], "198.51.100.7"),
     (["203.0.113.66", "198.51.100.7, 10.0.0.9", "10.0.0.8"], "198.51.100.7"),
     ([", ".join(["10.0.0.9"] * 100)], "10.0.0.5")],
    ids=["32-client-hops-then-the-client", "500-client-hops-and-a-proxy",
         "haproxy-adds-a-second-line", "second-line-a-trusted-proxy", "three-lines",
         "only-trusted-hops-past-the-bound"])
def test_every_forwarded_for_line_is_read_and_the_client_picks_none_of_the_right(
        service: Service, lines: list[str], expected: str) -> None:
    """All header lines in order, read from the right over the whole list: the client
    writes only the left of it, however long, and a proxy's own line comes last."""
    from starlette.requests import Request

    from api.clientip import client_ip

    app = build_app(load_settings(**{**service.settings.model_dump(),
                                     "trusted_proxies": ["10.0.0.0/8"]}), service=service)
    request = Request({"type": "http", "client": ("10.0.0.5", 4711), "app": app,
                       "headers": [(b"x-forwarded-for", line.encode()) for line in lines]})
    assert client_ip(request) == expected


def rotated_hops(n: int) -> list[str]:
    """32 hops the client wrote, new each time, then the client as the proxy saw it."""
    return [", ".join(f"203.0.{n}.{k}" for k in range(32)) + ", 192.0.2.50"]


def haproxy_lines(n: int) -> list[str]:
    """The client's own line, new each time, then the line HAProxy's option forwardfor
    adds with the address it saw."""
    return [f"203.0.114.{n}", "192.0.2.50"]


@pytest.mark.parametrize("shape", [rotated_hops, haproxy_lines],
                         ids=["32-client-hops-first", "haproxy-second-line"])
def test_forwarded_for_shapes_do_not_escape_the_failed_authentication_limit(
        settings: Settings, tmp_path: Path, shape: Callable[[int], list[str]]) -> None:
    """Behind a trusted proxy (loopback), a client rotating what it writes on the left of
    the list is still the one address the proxy saw: 20 failures, then 429."""
    with live_service(settings, "nagoya", "名古屋支社") as service, serving(
            settings, tmp_path / "serve.log", module=CLOCKED,
            TEGATA_TEST_NOW=service.clock.now().isoformat(),
            TEGATA_TRUSTED_PROXIES='["127.0.0.1/32"]') as server, httpx.Client() as client:
        statuses = [client.get(f"{server.url}/api/v1/whoami", headers=[
            ("Authorization", "Bearer tgt_guessed"),
            *(("X-Forwarded-For", line) for line in shape(n))]).status_code
            for n in range(FAILURES_ALLOWED + 1)]
    assert statuses == [401] * FAILURES_ALLOWED + [429]
