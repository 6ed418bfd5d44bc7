"""Signing in to the console: a token once, then a server-side session in an HttpOnly,
SameSite=Strict cookie (Secure except on plain-http localhost); 30 minutes idle ends it, as
do sign-out and the token's revocation; failures are audited and rate-limited; every form
post needs the CSRF value."""

from __future__ import annotations

import datetime as dt
import ipaddress
from http.cookies import SimpleCookie

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.auth import FAILURES_ALLOWED
from api.console.frame import CSP
from ca.clock import FixedClock
from ca.db.models import AuditEvent, ConsoleSession
from ca.service import Service
from ca.service.sessions import csrf_of, secret_digest
from tests.console.conftest import Console, form_csrf


def cookies_set(answer: object) -> dict[str, dict[str, str | bool]]:
    """Each Set-Cookie of an answer: its value and attributes."""
    found: dict[str, dict[str, str | bool]] = {}
    for header in answer.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        for name, morsel in jar.items():
            found[name] = {"value": morsel.value, "httponly": bool(morsel["httponly"]),
                           "secure": bool(morsel["secure"]), "samesite": morsel["samesite"],
                           "path": morsel["path"]}
    return found


def audit_actions(service: Service) -> list[tuple[str, str, str, str]]:
    with service.database.reading() as session:
        return [(e.action, e.outcome, e.actor, e.details) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("console.%"))
            .order_by(AuditEvent.id))]


def test_a_token_signs_in_once_for_a_session_cookie(
        service: Service, app_client: TestClient, admin_token: str) -> None:
    console = Console(app_client)
    answer = console.sign_in(admin_token, back="/console/t/tohoku/users?status=valid")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/t/tohoku/users?status=valid"
    cookie = cookies_set(answer)["tegata_session"]
    assert {k: v for k, v in cookie.items() if k != "value"} == {
        "httponly": True, "secure": False, "samesite": "strict", "path": "/"}
    secret = str(cookie["value"])
    assert admin_token not in answer.text
    with service.database.reading() as session:
        rows = session.scalars(select(ConsoleSession)).all()
    assert [(r.secret_hash, r.ended_at) for r in rows] == [(secret_digest(secret), None)]
    actions = audit_actions(service)
    assert [(a, o) for a, o, _, _ in actions] == [("console.sign-in", "success")]
    assert actions[0][2].startswith("token:") and actions[0][2].endswith(":佐藤 管理者")
    # the session answers; the token is not needed again
    assert app_client.get("/console/", follow_redirects=False).headers["location"] == \
        "/console/t/tohoku/users"


def test_the_cookie_is_secure_and_host_prefixed_off_localhost(
        service: Service, admin_token: str) -> None:
    from api.app import build_app

    client = TestClient(build_app(service.settings, service=service),
                        base_url="https://ca.example.jp")
    answer = Console(client).sign_in(admin_token)
    assert answer.status_code == 303
    cookie = cookies_set(answer)["__Host-tegata_session"]
    assert (cookie["secure"], cookie["httponly"], cookie["samesite"]) == (True, True, "strict")
    assert "tegata_session" not in cookies_set(answer)


@pytest.mark.parametrize("role", ["user", "gateway"])
def test_only_admin_and_operator_tokens_sign_in(service: Service, app_client: TestClient,
                                                tenant: str, role: str) -> None:
    if role == "user":
        service.users.add(tenant, "yamada", email="yamada@example.jp", allow=True)
    token = service.tokens.create(role=role, tenant=tenant,
                                  login="yamada" if role == "user" else None)[0]
    answer = Console(app_client).sign_in(token)
    assert answer.status_code == 401
    assert "tegata_session" not in cookies_set(answer)
    assert f"a {role} token cannot sign in" in answer.text
    assert [(a, o) for a, o, _, _ in audit_actions(service)] == [
        ("console.sign-in", "failure")]


def test_failed_sign_ins_are_audited_without_the_token_and_then_refused(
        service: Service, app_client: TestClient, tenant: str) -> None:
    console = Console(app_client)
    guess = "tgt_" + "x" * 43
    for _ in range(FAILURES_ALLOWED):
        answer = console.sign_in(guess)
        assert answer.status_code == 401
        assert guess not in answer.text
    answer = console.sign_in(guess)
    assert answer.status_code == 429
    assert int(answer.headers["retry-after"]) >= 1
    actions = audit_actions(service)
    assert [(a, o) for a, o, _, _ in actions] == [("console.sign-in", "failure")] * 20
    assert not any(guess in details for _, _, _, details in actions)


def test_thirty_minutes_idle_end_the_session(service: Service, clock: FixedClock,
                                             app_client: TestClient, admin_token: str) -> None:
    Console(app_client).sign_in(admin_token)
    for _ in range(3):  # used every 29 minutes: still in force after 87
        clock.advance(dt.timedelta(minutes=29))
        assert app_client.get("/console/", follow_redirects=False).headers["location"] == \
            "/console/t/tohoku/users"
    clock.advance(dt.timedelta(minutes=30))
    answer = app_client.get("/console/", follow_redirects=False)
    assert answer.headers["location"] == "/console/sign-in?back=%2Fconsole%2F"


def test_revoking_the_token_ends_its_sessions(service: Service, app_client: TestClient,
                                              tenant: str) -> None:
    token, view = service.tokens.create(role="admin", tenant=tenant)
    Console(app_client).sign_in(token)
    assert app_client.get("/console/", follow_redirects=False).headers["location"] == \
        "/console/t/tohoku/users"
    service.tokens.revoke(view.id)
    assert app_client.get("/console/", follow_redirects=False).headers["location"].startswith(
        "/console/sign-in")


def test_sign_out_ends_the_session_and_needs_the_csrf_value(
        service: Service, app_client: TestClient, admin_token: str) -> None:
    answer = Console(app_client).sign_in(admin_token)
    secret = str(cookies_set(answer)["tegata_session"]["value"])
    refused = app_client.post("/console/sign-out", data={"csrf": "forged"},
                              follow_redirects=False)
    assert refused.status_code == 403
    refused = app_client.post("/console/sign-out", follow_redirects=False)
    assert refused.status_code == 403
    done = app_client.post("/console/sign-out", data={"csrf": csrf_of(secret)},
                           follow_redirects=False)
    assert (done.status_code, done.headers["location"]) == (
        303, "/console/sign-in?signed_out=true")
    app_client.cookies.set("tegata_session", secret)  # a copy of the cookie kept elsewhere
    assert app_client.get("/console/", follow_redirects=False).headers["location"].startswith(
        "/console/sign-in")
    assert [a for a, _, _, _ in audit_actions(service)] == [
        "console.sign-in", "console.sign-out"]


def test_the_sign_in_form_needs_its_own_csrf_value(app_client: TestClient,
                                                   admin_token: str) -> None:
    page = app_client.get("/console/sign-in")
    forged = app_client.post("/console/sign-in", data={"csrf": "x" * 32, "token": admin_token},
                             follow_redirects=False)
    assert forged.status_code == 403
    app_client.cookies.clear()  # a cross-site post carries no cookie of ours
    forged = app_client.post("/console/sign-in", data={
        "csrf": form_csrf(page.text), "token": admin_token}, follow_redirects=False)
    assert forged.status_code == 403


@pytest.mark.parametrize("back", ["//evil.example/console/", "https://evil.example/",
                                  "/console\\@evil.example", "/api/v1/tenants", "javascript:x"])
def test_sign_in_goes_back_only_to_a_console_page(app_client: TestClient, admin_token: str,
                                                  back: str) -> None:
    answer = Console(app_client).sign_in(admin_token, back=back)
    assert answer.headers["location"] == "/console/"


def test_pages_carry_the_strict_content_security_policy(app_client: TestClient) -> None:
    page = app_client.get("/console/sign-in")
    assert page.headers["content-security-policy"] == CSP == (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    assert "<script>" not in page.text and " style=" not in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    script = app_client.get("/console/static/console.js")
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert app_client.get("/console/static/..%2Fframe.py").status_code == 404


def test_the_language_follows_accept_language_and_the_switch(app_client: TestClient) -> None:
    english = app_client.get("/console/sign-in", headers={"Accept-Language": "en-US,en;q=0.9"})
    assert '<html lang="en">' in english.text and "<h1>Sign in</h1>" in english.text
    japanese = app_client.get("/console/sign-in",
                              headers={"Accept-Language": "en;q=0.5, ja;q=0.8"})
    assert '<html lang="ja">' in japanese.text and "<h1>サインイン</h1>" in japanese.text
    switched = app_client.get("/console/sign-in?lang=en", headers={"Accept-Language": "ja"})
    assert "<h1>Sign in</h1>" in switched.text
    kept = app_client.get("/console/sign-in", headers={"Accept-Language": "ja"})
    assert "<h1>Sign in</h1>" in kept.text  # the switch is remembered


def test_plain_http_off_localhost_offers_no_sign_in(service: Service,
                                                    admin_token: str) -> None:
    from api.app import build_app

    client = TestClient(build_app(service.settings, service=service),
                        base_url="http://ca.example.jp", raise_server_exceptions=False)
    page = client.get("/console/sign-in")
    assert 'id="needs-https"' in page.text and 'name="token"' not in page.text
    pre = client.cookies["__Host-tegata_signin"]  # Secure: a browser keeps it for https only
    answer = client.post("/console/sign-in", data={"csrf": pre, "token": admin_token},
                         headers={"Cookie": f"__Host-tegata_signin={pre}"},
                         follow_redirects=False)
    assert answer.status_code == 403
    assert "the console needs HTTPS" in answer.text
    assert not any(c.startswith(("tegata_session", "__Host-tegata_session"))
                   for c in client.cookies)


def test_a_trusted_tls_proxy_counts_as_https(service: Service, admin_token: str) -> None:
    from api.app import build_app

    app = build_app(service.settings, service=service)
    app.state.trusted_proxies = (ipaddress.ip_network("127.0.0.0/8"),)
    client = TestClient(app, base_url="http://ca.example.jp", client=("127.0.0.1", 50000))
    page = client.get("/console/sign-in", headers={"X-Forwarded-Proto": "https"})
    pre = client.cookies["__Host-tegata_signin"]  # Secure, as the browser on https sends it
    answer = client.post("/console/sign-in", data={
        "csrf": form_csrf(page.text), "token": admin_token}, follow_redirects=False,
        headers={"X-Forwarded-Proto": "https", "Cookie": f"__Host-tegata_signin={pre}"})
    assert answer.status_code == 303
    assert cookies_set(answer)["__Host-tegata_session"]["secure"] is True
    # the same header from a peer that is not a trusted proxy is not believed
    app.state.trusted_proxies = ()
    page = client.get("/console/sign-in", headers={"X-Forwarded-Proto": "https"})
    assert 'id="needs-https"' in page.text


def test_the_zone_switch_keeps_a_zone_for_this_browser(app_client: TestClient,
                                                       admin_token: str) -> None:
    console = Console(app_client)
    console.sign_in(admin_token)
    page = console.get("/console/zone?back=/console/t/tohoku/users")
    assert '<option value="Asia/Tokyo" >Asia/Tokyo</option>' in page.text
    refused = console.post("/console/zone", {"zone": "Mars/Olympus", "back": "/console/"})
    assert refused.status_code == 400
    assert "tegata_zone" not in app_client.cookies
    chosen = console.post("/console/zone", {"zone": "Asia/Tokyo",
                                            "back": "/console/t/tohoku/users"})
    assert (chosen.status_code, chosen.headers["location"]) == (303, "/console/t/tohoku/users")
    assert cookies_set(chosen)["tegata_zone"]["value"] == "Asia/Tokyo"
    page = console.get("/console/zone")
    assert '<option value="Asia/Tokyo" selected>Asia/Tokyo</option>' in page.text
    assert ">表示タイムゾーン: Asia/Tokyo</a>" in page.text


def test_a_post_from_another_origin_is_refused(service: Service, app_client: TestClient,
                                               admin_token: str) -> None:
    page = app_client.get("/console/sign-in")
    # a page on another port of this host planted the sign-in cookie and posts its token
    forged = app_client.post("/console/sign-in", data={
        "csrf": form_csrf(page.text), "token": admin_token},
        headers={"Origin": "http://127.0.0.1:9999"}, follow_redirects=False)
    assert forged.status_code == 403 and "posted from another site" in forged.text
    assert "tegata_session" not in app_client.cookies
    console = Console(app_client)
    answer = console.sign_in(admin_token)  # from its own origin, or with no Origin at all
    assert answer.status_code == 303
    secret = app_client.cookies["tegata_session"]
    forged = app_client.post("/console/sign-out", data={"csrf": csrf_of(secret)},
                             headers={"Origin": "null"}, follow_redirects=False)
    assert forged.status_code == 403
    own = app_client.post("/console/sign-out", data={"csrf": csrf_of(secret)},
                          headers={"Origin": "http://127.0.0.1"}, follow_redirects=False)
    assert own.status_code == 303


def test_sign_out_clears_the_secure_cookie_with_its_own_attributes(
        service: Service, admin_token: str) -> None:
    from api.app import build_app

    client = TestClient(build_app(service.settings, service=service),
                        base_url="https://ca.example.jp")
    console = Console(client)
    page = client.get("/console/sign-in")
    assert "__Host-tegata_signin" in cookies_set(page)
    console.sign_in(admin_token)
    secret = client.cookies["__Host-tegata_session"]
    done = client.post("/console/sign-out", data={"csrf": csrf_of(secret)},
                       follow_redirects=False)
    cleared = cookies_set(done)["__Host-tegata_session"]
    assert (cleared["value"], cleared["secure"], cleared["httponly"], cleared["samesite"]) == (
        "", True, True, "strict")


def test_an_unknown_console_address_is_a_console_page(app_client: TestClient) -> None:
    answer = app_client.get("/console/t/tohoku/nosuch", headers={"Accept-Language": "en"})
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in answer.text
