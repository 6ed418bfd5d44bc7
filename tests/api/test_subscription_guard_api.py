"""A mistyped subscription end over HTTP: refused with a problem and
nothing changed; confirmed with ``allow_past``, the certificates are suspended at once and
revoked no sooner than a full grace period later; a correction inside it restores them.
What the gateways see (the CRL, OCSP, the status API) is checked through HTTP too."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient

from ca.clock import FixedClock
from ca.service import CertificateView, IssueRequest, Service
from tests.integration.test_subscription_guard import REFUSAL
from tests.moments import MOMENTS
from tests.support.http import bearer
from tests.support.issuing import crl_reasons

URL = "/api/v1/tenants/acme/subscription"
SECOND = dt.timedelta(seconds=1)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: the rule and its storage are tested on both databases in
    tests/integration/test_subscription_guard.py; here it is HTTP's turn."""
    return f"sqlite:///{tmp_path / 'tegata.db'}"


@pytest.fixture
def setup(service: Service) -> tuple[dict[str, str], list[CertificateView]]:
    """株式会社アクメ with two certificates, a contract through 2026-12-31 in Tokyo, and an
    operator and a gateway token."""
    service.hierarchy.create_tenant("acme", display_name="株式会社アクメ")
    for login in ("alice", "bob"):
        service.users.add("acme", login, email=f"{login}@example.co.jp", allow=True)
    views = service.certificates.issue(IssueRequest(tenant="acme", logins=("alice", "bob")))
    service.lifecycle.set_subscription("acme", ends=dt.date(2026, 12, 31), zone="Asia/Tokyo")
    tokens = {"operator": service.tokens.create(role="operator")[0],
              "gateway": service.tokens.create(role="gateway", tenant="acme")[0]}
    return tokens, views


def seen(client: TestClient, service: Service, token: str,
         views: list[CertificateView]) -> dict[str, Any]:
    """What a gateway sees over HTTP: the CRL, OCSP and the status API, per serial."""
    issuing = x509.load_der_x509_certificate(service.hierarchy.ca_certificates("acme")[1].der)
    found: dict[str, Any] = {"crl": crl_reasons(x509.load_der_x509_crl(
        client.get("/crl/acme.crl").content))}
    for view in views:
        request = ocsp.OCSPRequestBuilder().add_certificate(
            x509.load_der_x509_certificate(view.der), issuing, hashes.SHA256()).build()
        answer = ocsp.load_der_ocsp_response(client.post(
            "/ocsp", content=request.public_bytes(serialization.Encoding.DER),
            headers={"Content-Type": "application/ocsp-request"}).content)
        status = client.get("/api/v1/tenants/acme/status", params={"serial": view.serial},
                            headers=bearer(token)).json()
        reason = (answer.revocation_reason.value if answer.certificate_status is
                  ocsp.OCSPCertStatus.REVOKED and answer.revocation_reason else None)
        found[view.login] = (answer.certificate_status.name, reason, status["state"],
                             status["reason"])
    return found


def test_a_mistyped_end_over_http_is_refused_then_confirmed_then_corrected(
        client: TestClient, service: Service, clock: FixedClock,
        setup: tuple[dict[str, str], list[CertificateView]]) -> None:
    tokens, views = setup
    operator = bearer(tokens["operator"])
    valid = {"crl": {}, "alice": ("GOOD", None, "valid", None),
             "bob": ("GOOD", None, "valid", None)}
    before = client.get(URL, headers=operator).json()
    assert seen(client, service, tokens["gateway"], views) == valid

    r = client.put(URL, json={"ends": "2025-12-31", "timezone": "Asia/Tokyo"},
                   headers=operator)

    assert r.status_code == 400
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json() == {"type": "urn:tegata:problem:invalid-input", "title": "Invalid input",
                        "status": 400, "field": "ends",
                        "detail": REFUSAL + ". Check it, or confirm with allow_past: true"}
    assert client.get(URL, headers=operator).json() == before
    assert seen(client, service, tokens["gateway"], views) == valid

    r = client.put(URL, json={"ends": "2025-12-31", "timezone": "Asia/Tokyo",
                              "allow_past": True}, headers=operator)
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("state", "suspended_at", "grace_ends_at")} == {
        "state": "grace", "suspended_at": "2026-03-02T09:00:00Z",
        "grace_ends_at": "2026-04-01T09:00:00Z"}
    held = ("REVOKED", "certificateHold", "suspended", "certificateHold")
    suspended = {"crl": {v.serial: "certificateHold" for v in views}, "alice": held,
                 "bob": held}
    assert seen(client, service, tokens["gateway"], views) == suspended

    clock.set(MOMENTS.grace_day_29)
    run = client.post("/api/v1/lifecycle/run", headers=operator).json()
    assert (run["suspended"], run["revoked"]) == (0, 0)
    assert seen(client, service, tokens["gateway"], views) == suspended

    r = client.put(URL, json={"ends": "2026-12-31", "timezone": "Asia/Tokyo"},
                   headers=operator)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["suspended_at"]) == ("active", None)
    assert seen(client, service, tokens["gateway"], views) == valid
    clock.set(MOMENTS.grace_end_after_start)
    run = client.post("/api/v1/lifecycle/run", headers=operator).json()
    assert (run["suspended"], run["revoked"]) == (0, 0)
    assert seen(client, service, tokens["gateway"], views) == valid


def test_a_confirmed_past_end_over_http_revokes_only_a_full_grace_period_later(
        client: TestClient, service: Service, clock: FixedClock,
        setup: tuple[dict[str, str], list[CertificateView]]) -> None:
    tokens, views = setup
    operator = bearer(tokens["operator"])
    r = client.put(URL, json={"ends": "2025-12-31", "timezone": "Asia/Tokyo",
                              "allow_past": True}, headers=operator)
    assert r.status_code == 200, r.text

    clock.set(MOMENTS.grace_end_after_start - SECOND)
    assert client.post("/api/v1/lifecycle/run", headers=operator).json()["revoked"] == 0
    clock.set(MOMENTS.grace_end_after_start)
    assert client.post("/api/v1/lifecycle/run", headers=operator).json()["revoked"] == 2

    gone = ("REVOKED", "cessationOfOperation", "revoked", "cessationOfOperation")
    assert seen(client, service, tokens["gateway"], views) == {
        "crl": {v.serial: "cessationOfOperation" for v in views}, "alice": gone, "bob": gone}
