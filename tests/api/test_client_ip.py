"""X-Forwarded-For is believed only from trusted proxies, and then only up to them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.app import build_app
from ca.service import Service
from ca.settings import load_settings
from tests.api.conftest import bearer


def client_with(service: Service, proxies: list[str]) -> TestClient:
    settings = load_settings(**{**service.settings.model_dump(), "trusted_proxies": proxies})
    service.settings = settings
    return TestClient(build_app(settings, service=service))


def audited_ip(service: Service) -> str | None:
    return service.audit_events(tenant="default", action="user.create")[-1].source_ip


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
