"""The gateway's auth sub-request (nginx ``auth_request`` -> GET /auth/{tenant}) for every
state a certificate can be in, under every IP policy.

nginx checks the chain (and OCSP or the CRL, as cached); Tegata answers from its own records
at the instant of the request. Only a valid certificate of this tenant lets a request through
on the certificate's account: a suspended one (any cause), an expired one, a revoked one, an
unknown serial, another tenant's certificate or an unverified client never does. The expected
answer of each case is worked out here from the policy's definition (ca/service/gateway.py's
module docstring), not read back from the code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from api.app import build_app
from ca.clock import FixedClock
from ca.service import Service
from tests.moments import MOMENTS
from tests.support.http import bearer
from tests.support.issuing import issue_one

TENANT = "sakura"
OTHER = "momiji"
YAMADA = "yamada.taro"  # the user most cases present a certificate of
INSIDE = "192.0.2.10"  # in the tenant's network
INSIDE_V6 = "2001:db8::7"
OUTSIDE = "198.51.100.7"
NETWORKS = ["192.0.2.0/24", "2001:db8::/32"]
POLICIES = ("ip_only", "cert_only", "ip_or_cert", "ip_and_cert")
SECOND = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class Gate:
    service: Service
    client: TestClient
    clock: FixedClock
    token: str

    def ask(self, *, ip: str, verify: str | None, serial: str | None,
            tenant: str = TENANT) -> tuple[bool, str]:
        headers = {**bearer(self.token), "X-Tegata-Client-IP": ip}
        if verify is not None:
            headers["X-Tegata-Client-Verify"] = verify
        if serial is not None:
            headers["X-Tegata-Client-Serial"] = serial
        answer = self.client.get(f"/auth/{tenant}", headers=headers)
        assert answer.status_code in (204, 403), answer.text
        assert answer.headers["cache-control"] == "no-store"
        reason = answer.headers["x-tegata-reason"]
        if answer.status_code == 403:
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["detail"] == f"refused: {reason}"
        return answer.status_code == 204, reason


@pytest.fixture
def gate(service: Service, clock: FixedClock) -> Gate:
    service.hierarchy.create_tenant(TENANT, display_name="さくら商事", ca_key_type="ec-p256")
    service.hierarchy.create_tenant(OTHER, display_name="もみじ物産", ca_key_type="ec-p256")
    for login, email in (("yamada.taro", "taro@sakura.example.jp"),
                         ("suzuki.hanako", "hanako@sakura.example.jp")):
        service.users.add(TENANT, login, email=email, display_name="山田 太郎", allow=True)
    service.users.add(OTHER, "sato.jiro", email="jiro@momiji.example.jp", allow=True)
    token = service.tokens.create(role="gateway", tenant=TENANT)[0]
    client = TestClient(build_app(service.settings, service=service),
                        raise_server_exceptions=False)
    return Gate(service=service, client=client, clock=clock, token=token)


# --- the certificate presented, in each state: (verify header, serial header) -----------------

Presented = tuple[str | None, str | None]


def valid(g: Gate) -> Presented:
    return "SUCCESS", issue_one(g.service, YAMADA, TENANT).serial


def reinstated(g: Gate) -> Presented:
    serial = issue_one(g.service, YAMADA, TENANT).serial
    g.service.revocation.suspend(TENANT, serial)
    g.service.revocation.reinstate(TENANT, serial)
    return "SUCCESS", serial


def at_its_last_second(g: Gate) -> Presented:
    view = issue_one(g.service, YAMADA, TENANT, expires=dt.date(2026, 3, 10),
                     timezone="Asia/Tokyo")
    g.clock.set(view.not_after)  # 2026-03-10T14:59:59Z: still the 10th in Tokyo
    return "SUCCESS", view.serial


def suspended(g: Gate) -> Presented:
    serial = issue_one(g.service, YAMADA, TENANT).serial
    g.service.revocation.suspend(TENANT, serial)
    return "SUCCESS", serial


def suspended_by_permission(g: Gate) -> Presented:
    serial = issue_one(g.service, YAMADA, TENANT).serial
    g.service.users.set_permission(TENANT, ("yamada.taro",), allow=False)
    return "SUCCESS", serial


def suspended_by_subscription(g: Gate) -> Presented:
    serial = issue_one(g.service, YAMADA, TENANT).serial
    g.service.lifecycle.set_subscription(TENANT, ends=dt.date(2026, 3, 1), allow_past=True)
    return "SUCCESS", serial


def suspended_twice_one_lifted(g: Gate) -> Presented:
    serial = issue_one(g.service, YAMADA, TENANT).serial
    g.service.revocation.suspend(TENANT, serial)
    g.service.users.set_permission(TENANT, ("yamada.taro",), allow=False)
    # the manual hold goes; the permission hold stays
    g.service.revocation.reinstate(TENANT, serial)
    return "SUCCESS", serial


def expired(g: Gate) -> Presented:
    view = issue_one(g.service, YAMADA, TENANT, expires=dt.date(2026, 3, 10),
                     timezone="Asia/Tokyo")
    g.clock.set(view.not_after + SECOND)  # the 11th in Tokyo
    return "SUCCESS", view.serial


def expired_long_ago(g: Gate) -> Presented:
    view = issue_one(g.service, YAMADA, TENANT, expires=dt.date(2026, 3, 10),
                     timezone="Asia/Tokyo")
    g.clock.set(MOMENTS.start + dt.timedelta(days=400))
    return "SUCCESS", view.serial


def suspended_then_expired(g: Gate) -> Presented:
    view = issue_one(g.service, YAMADA, TENANT, expires=dt.date(2026, 3, 10),
                     timezone="Asia/Tokyo")
    g.service.revocation.suspend(TENANT, view.serial)
    g.clock.set(view.not_after + SECOND)
    return "SUCCESS", view.serial


def revoked(g: Gate) -> Presented:
    serial = issue_one(g.service, YAMADA, TENANT).serial
    g.service.revocation.revoke(TENANT, serial, reason="keyCompromise")
    return "SUCCESS", serial


def revoked_while_suspended(g: Gate) -> Presented:
    serial = issue_one(g.service, YAMADA, TENANT).serial
    g.service.revocation.suspend(TENANT, serial)
    g.service.revocation.revoke(TENANT, serial, reason="cessationOfOperation")
    return "SUCCESS", serial


def superseded(g: Gate) -> Presented:
    old = issue_one(g.service, YAMADA, TENANT).serial
    issue_one(g.service, YAMADA, TENANT, reissue="revoke")
    return "SUCCESS", old


def unknown_serial(g: Gate) -> Presented:
    issue_one(g.service, YAMADA, TENANT)
    return "SUCCESS", "7E57AB1E"


def other_tenants(g: Gate) -> Presented:
    return "SUCCESS", issue_one(g.service, "sato.jiro", OTHER).serial


def malformed_serial(g: Gate) -> Presented:
    return "SUCCESS", "../zz"


def no_certificate(g: Gate) -> Presented:
    return "NONE", None


def no_headers(g: Gate) -> Presented:
    return None, None


def not_verified(g: Gate) -> Presented:
    return "FAILED:certificate revoked", issue_one(g.service, YAMADA, TENANT).serial


def verified_without_serial(g: Gate) -> Presented:
    issue_one(g.service, YAMADA, TENANT)
    return "SUCCESS", None


# the state's name -> (how to make it, the reason a certificate policy answers with)
STATES: dict[str, tuple[Callable[[Gate], Presented], str]] = {
    "valid": (valid, "certificate-valid"),
    "reinstated": (reinstated, "certificate-valid"),
    "at-its-last-second": (at_its_last_second, "certificate-valid"),
    "suspended": (suspended, "certificate-suspended"),
    "suspended-by-permission": (suspended_by_permission, "certificate-suspended"),
    "suspended-by-subscription": (suspended_by_subscription, "certificate-suspended"),
    "suspended-twice-one-lifted": (suspended_twice_one_lifted, "certificate-suspended"),
    "expired": (expired, "certificate-expired"),
    "expired-long-ago": (expired_long_ago, "certificate-expired"),
    "suspended-then-expired": (suspended_then_expired, "certificate-suspended"),
    "revoked": (revoked, "certificate-revoked"),
    "revoked-while-suspended": (revoked_while_suspended, "certificate-revoked"),
    "superseded": (superseded, "certificate-revoked"),
    "unknown-serial": (unknown_serial, "certificate-unknown"),
    "other-tenants": (other_tenants, "certificate-unknown"),
    "malformed-serial": (malformed_serial, "certificate-unknown"),
    "no-certificate": (no_certificate, "no-certificate"),
    "no-headers": (no_headers, "no-certificate"),
    "not-verified": (not_verified, "certificate-not-verified"),
    "verified-without-serial": (verified_without_serial, "certificate-not-verified"),
}


def expected(policy: str, ip_ok: bool, cert_reason: str) -> tuple[bool, str]:
    """The policy's definition: what the gateway should answer."""
    cert_ok = cert_reason == "certificate-valid"
    ip_answer = (ip_ok, "ip-allowed" if ip_ok else "ip-not-allowed")
    if policy == "ip_only":
        return ip_answer
    if policy == "cert_only":
        return cert_ok, cert_reason
    if policy == "ip_or_cert":
        return (True, "ip-allowed") if ip_ok else (cert_ok, cert_reason)
    assert policy == "ip_and_cert"
    return (cert_ok, cert_reason) if ip_ok else (False, "ip-not-allowed")


@pytest.mark.parametrize("state", list(STATES))
def test_auth_request_answers_every_state_under_every_policy(gate: Gate, state: str) -> None:
    make, cert_reason = STATES[state]
    verify, serial = make(gate)
    answers, wanted = {}, {}
    for policy in POLICIES:
        gate.service.gateway.set_ip_policy(TENANT, policy=policy, networks=NETWORKS)
        for ip, ip_ok in ((INSIDE, True), (INSIDE_V6, True), (OUTSIDE, False)):
            answers[policy, ip] = gate.ask(ip=ip, verify=verify, serial=serial)
            wanted[policy, ip] = expected(policy, ip_ok, cert_reason)
    assert answers == wanted


@pytest.mark.parametrize("state", [s for s, (_, r) in STATES.items()
                                   if r != "certificate-valid"])
def test_only_a_valid_certificate_lets_a_request_through_on_its_own(gate: Gate,
                                                                    state: str) -> None:
    # the question the review found unasked: cert_only, from outside every network
    verify, serial = STATES[state][0](gate)
    gate.service.gateway.set_ip_policy(TENANT, policy="cert_only", networks=[])
    assert gate.ask(ip=OUTSIDE, verify=verify, serial=serial) == (False, STATES[state][1])


def test_the_answer_follows_each_change_at_once(gate: Gate) -> None:
    gate.service.gateway.set_ip_policy(TENANT, policy="cert_only", networks=[])
    serial = issue_one(gate.service, YAMADA, TENANT).serial

    def ask() -> tuple[bool, str]:
        return gate.ask(ip=OUTSIDE, verify="SUCCESS", serial=serial)

    assert ask() == (True, "certificate-valid")
    gate.service.revocation.suspend(TENANT, serial)
    assert ask() == (False, "certificate-suspended")
    gate.service.revocation.reinstate(TENANT, serial)
    assert ask() == (True, "certificate-valid")
    gate.service.users.set_permission(TENANT, ("yamada.taro",), allow=False)
    assert ask() == (False, "certificate-suspended")
    gate.service.users.set_permission(TENANT, ("yamada.taro",), allow=True)
    assert ask() == (True, "certificate-valid")
    gate.service.revocation.revoke(TENANT, serial, reason="affiliationChanged")
    assert ask() == (False, "certificate-revoked")


def test_expiry_is_judged_to_the_second(gate: Gate) -> None:
    gate.service.gateway.set_ip_policy(TENANT, policy="cert_only", networks=[])
    view = issue_one(gate.service, YAMADA, TENANT, expires=dt.date(2026, 3, 10),
                     timezone="Asia/Tokyo")
    assert view.not_after == dt.datetime(2026, 3, 10, 14, 59, 59, tzinfo=dt.UTC)
    answers = []
    for at in (view.not_after - SECOND, view.not_after, view.not_after + SECOND):
        gate.clock.set(at)
        answers.append(gate.ask(ip=OUTSIDE, verify="SUCCESS", serial=view.serial))
    assert answers == [(True, "certificate-valid"), (True, "certificate-valid"),
                       (False, "certificate-expired")]


@pytest.mark.parametrize("form", ["upper", "lower", "leading-zero", "colons"])
def test_the_serial_is_matched_in_any_form_nginx_may_give(gate: Gate, form: str) -> None:
    # $ssl_client_serial is upper-case hex; a client's own tools print it in other forms
    gate.service.gateway.set_ip_policy(TENANT, policy="cert_only", networks=[])
    serial = issue_one(gate.service, YAMADA, TENANT).serial
    padded = serial if len(serial) % 2 == 0 else "0" + serial
    text = {"upper": serial, "lower": serial.lower(), "leading-zero": "00" + serial,
            "colons": ":".join(padded[i:i + 2] for i in range(0, len(padded), 2))}[form]
    assert gate.ask(ip=OUTSIDE, verify="SUCCESS", serial=text) == (True, "certificate-valid")
    gate.service.revocation.suspend(TENANT, serial)
    assert gate.ask(ip=OUTSIDE, verify="SUCCESS", serial=text) == (False,
                                                                   "certificate-suspended")
