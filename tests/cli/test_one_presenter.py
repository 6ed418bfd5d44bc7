"""One presenter per view (``ca.present``): the CLI's ``--json`` and the API's body of the
same object are the same JSON, for every view both shells show."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import build_app
from ca.clock import FixedClock
from ca.service import build_service
from ca.settings import load_settings
from tests.support.cli import Cli, Env, as_json
from tests.support.http import bearer


@pytest.fixture
def api(env: Env, cli: Cli, cli_clock: FixedClock) -> Iterator[TestClient]:
    """A CA made by the CLI (株式会社アクメ with 山田, a certificate, an IP policy, a
    subscription), and the API over the same database at the same moment, as its operator."""
    cli.ok("init", "--key-type", "ec-p256")
    cli.ok("tenant", "create", "acme", "--display-name", "株式会社アクメ", "--key-type",
           "ec-p256", "--p12-profile", "modern")
    cli.ok("user", "add", "yamada", "--email", "yamada@example.co.jp", "--name", "山田 太郎",
           "--groups", "営業部;東京", "--allow", "--tenant", "acme")
    cli.ok("user", "add", "suzuki", "--email", "suzuki@example.co.jp", "--name", "鈴木 花子",
           "--tenant", "acme")
    cli.ok("cert", "issue", "yamada", "--tenant", "acme", "--expires", "2026-12-31", "--tz",
           "Asia/Tokyo")
    cli.ok("tenant", "ip-policy", "set", "--policy", "ip_or_cert", "--network", "192.0.2.0/24",
           "--network", "2001:db8::/32", "--tenant", "acme")
    cli.ok("tenant", "subscription", "set", "--ends", "2027-03-31", "--tz", "Asia/Tokyo",
           "--tenant", "acme")
    cli.ok("tenant", "set", "--upn-suffix", "例え.jp", "--user-download", "on", "--tenant",
           "acme")
    cli.ok("token", "create", "--role", "admin", "--tenant", "acme", "--name", "アクメ helpdesk",
           "--expires-days", "90")
    cli.ok("token", "create", "--role", "user", "--tenant", "acme", "--user", "yamada")
    operator = cli.ok("token", "create", "--role", "operator").out.strip()
    service = build_service(load_settings(), clock=cli_clock)
    client = TestClient(build_app(service.settings, service=service),
                        raise_server_exceptions=False)
    client.headers.update(bearer(operator))
    yield client
    service.engine.dispose()


def body(api: TestClient, path: str) -> Any:
    r = api.get(path)
    assert r.status_code == 200, (path, r.text)
    return r.json()


ACME = "/api/v1/tenants/acme"


def test_each_view_is_the_same_json_on_either_side(api: TestClient, cli: Cli) -> None:
    t = ("--tenant", "acme")
    (cert,) = as_json(cli, "cert", "list", *t)
    pairs = {
        "certificate": (as_json(cli, "cert", "show", cert["serial"], *t),
                        body(api, f"{ACME}/certificates/{cert['serial']}")),
        "certificates": (as_json(cli, "cert", "list", *t), body(api, f"{ACME}/certificates")),
        "user": (as_json(cli, "user", "show", "yamada", *t), body(api, f"{ACME}/users/yamada")),
        "users": (as_json(cli, "user", "list", *t), body(api, f"{ACME}/users")),
        "groups": (as_json(cli, "group", "list", *t), body(api, f"{ACME}/groups")),
        "ca chain": (as_json(cli, "ca", "show", *t), body(api, f"{ACME}/ca")),
        "ip policy": (as_json(cli, "tenant", "ip-policy", "show", *t),
                      body(api, f"{ACME}/ip-policy")),
        "subscription": (as_json(cli, "tenant", "subscription", "show", *t),
                         body(api, f"{ACME}/subscription")),
        "tenant settings": (as_json(cli, "tenant", "show", *t), body(api, f"{ACME}/settings")),
        "ocsp validity": (as_json(cli, "tenant", "set", "--ocsp-validity", "300", *t),
                          body(api, f"{ACME}/settings/ocsp-validity")),
        "tokens": (as_json(cli, "token", "list", *t), body(api, f"{ACME}/tokens")),
        "audit": (as_json(cli, "audit", "list", *t), body(api, f"{ACME}/audit")),
        "audit check": (as_json(cli, "audit", "verify"), body(api, "/api/v1/audit/verify")),
    }
    for view, (on_the_cli, over_the_api) in pairs.items():
        assert on_the_cli == over_the_api, view
    # the comparison compares something: each holds what was made above
    assert pairs["user"][0]["display_name"] == "山田 太郎"
    assert pairs["user"][0]["groups"] == ["営業部", "東京"]
    assert pairs["certificate"][0]["expiry_date"] == "2026-12-31"
    assert pairs["certificate"][0]["pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert [c["kind"] for c in pairs["ca chain"][0]] == ["issuing", "root"]
    assert [u["login"] for u in pairs["users"][0]] == ["suzuki", "yamada"]
    assert {tk["name"] for tk in pairs["tokens"][0]} == {"アクメ helpdesk", "user token"}
    assert pairs["tokens"][0][0]["expires_at"].endswith("Z")
    assert len(pairs["audit"][0]) >= 6
    assert pairs["subscription"][0]["ends_on"] == "2027-03-31"
    assert pairs["ip policy"][0]["networks"] == ["192.0.2.0/24", "2001:db8::/32"]
    assert pairs["tenant settings"][0] == {"tenant": "acme", "ocsp_validity_seconds": 300,
                                           "upn_suffix": "例え.jp", "user_download": True,
                                           "p12_profile": "modern", "default_validity": "P1Y",
                                           "timezone": "UTC"}


def test_a_tokens_revocation_is_the_same_json_on_either_side(api: TestClient,
                                                             cli: Cli) -> None:
    first, second = (tk["id"] for tk in as_json(cli, "token", "list", "--tenant", "acme"))
    on_the_cli = as_json(cli, "token", "revoke", str(first), "--tenant", "acme")
    r = api.post(f"{ACME}/tokens/{second}/revoke")
    assert r.status_code == 200, r.text
    over_the_api = r.json()
    assert on_the_cli["revoked_at"] == over_the_api["revoked_at"] is not None
    assert set(on_the_cli) == set(over_the_api)
    listed = {tk["id"]: tk for tk in body(api, f"{ACME}/tokens")}
    assert listed[first] == on_the_cli and listed[second] == over_the_api
