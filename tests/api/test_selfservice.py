"""User self-download over HTTP: the one-time link page, a user's own certificates, the admin's
link and switch routes."""

from __future__ import annotations

import datetime as dt
import io
import logging
import zipfile

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import build_app
from ca.logfilters import RedactLinkTokens
from ca.service import IssueRequest, Service
from tests.support.environment import BASE_URL
from tests.support.http import bearer
from tests.support.linkpages import (
    alert,
    assert_page,
    by_id,
    download,
    heading,
    no_key_material,
    password_of,
    reason,
)

# until the lead wires them in, the tests mix in the use cases and mount the router themselves
CERTS = "/api/v1/tenants/default/certificates"
MINE = "/api/v1/tenants/default/me/certificates"
SWITCH = "/api/v1/tenants/default/settings/user-download"
def link_app(service: Service) -> FastAPI:
    return build_app(service.settings, service=service)



@pytest.fixture
def client(service: Service) -> TestClient:
    return TestClient(link_app(service), raise_server_exceptions=False)


@pytest.fixture
def serial(service: Service, tokens: dict[str, str]) -> str:
    """alice's certificate (the ``tokens`` fixture made alice and her user token)."""
    return service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))[0].serial


def path_of(url: str) -> str:
    assert url.startswith(BASE_URL + "/d/tdl_")
    return url[len(BASE_URL):]


def new_link(client: TestClient, tokens: dict[str, str], login: str = "alice") -> str:
    r = client.post(f"/api/v1/tenants/default/users/{login}/links", json={},
                    headers=bearer(tokens["admin"]))
    assert r.status_code == 201, r.text
    return path_of(r.json()["url"])


# --- the link page -------------------------------------------------------------------------


def test_get_shows_whom_the_link_is_for_and_spends_nothing(
        client: TestClient, tokens: dict[str, str], serial: str) -> None:
    path = new_link(client, tokens)
    for _ in range(3):  # a mail scanner, a preview, the user
        page = assert_page(client.get(path), 200)
    assert (by_id(page, "login"), by_id(page, "link-until")) == ("alice", "2026-03-09 09:00 UTC")
    assert '<form method="post">' in page and "action=" not in page
    assert path.rsplit("/", 1)[1] not in page  # the token is not echoed
    no_key_material(page)
    delivered = assert_page(client.post(path), 200)
    assert password_of(delivered) not in page


def test_post_shows_the_password_once_with_the_zip_then_the_link_is_gone(
        client: TestClient, tokens: dict[str, str], serial: str) -> None:
    path = new_link(client, tokens)
    page = assert_page(client.post(path), 200)
    password = password_of(page)
    zip_name, zip_type, archive = download(page, "download-zip")
    p12_name, p12_type, p12_alone = download(page, "download-p12")
    assert (zip_name, zip_type, p12_name, p12_type) == (
        "alice.zip", "application/zip", "alice.p12", "application/x-pkcs12")
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.read("alice-password.txt").decode().strip() == password
        p12 = opened.read("alice.p12")
    assert p12 == p12_alone
    loaded = pkcs12.load_pkcs12(p12, password.encode())
    assert loaded.key is not None and loaded.cert is not None
    assert format(loaded.cert.certificate.serial_number, "X") == serial
    for again in (client.post(path), client.get(path)):
        text = assert_page(again, 410)
        assert (reason(text), heading(text)) == ("used", "このリンクは使用済みです")
        assert password not in text
        no_key_material(text)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unknown_link_is_a_404_page(client: TestClient, serial: str, method: str) -> None:
    text = assert_page(client.request(method, "/d/tdl_" + "Q" * 43), 404)
    assert (reason(text), heading(text)) == ("unknown", "リンクが見つかりません")
    assert "Q" * 43 not in text


def test_an_expired_link_is_a_410_page(client: TestClient, service: Service,
                                       tokens: dict[str, str], serial: str) -> None:
    path = new_link(client, tokens)
    service.clock.advance(dt.timedelta(days=7))  # type: ignore[attr-defined]
    for method in ("GET", "POST"):
        text = assert_page(client.request(method, path), 410)
        assert (reason(text), heading(text)) == ("expired", "このリンクは有効期限が切れています")
        no_key_material(text)


def test_a_hostile_display_name_is_escaped(client: TestClient, service: Service,
                                           tokens: dict[str, str]) -> None:
    hostile = '<script>alert(1)</script> "O\'Neil" & <img src=x onerror=alert(2)>'
    service.users.add("default", "mallory", email="m@example.com", display_name=hostile,
                     allow=True)
    service.certificates.issue(IssueRequest(tenant="default", logins=("mallory",)))
    path = new_link(client, tokens, "mallory")
    for response in (client.get(path), client.post(path)):
        page = assert_page(response, 200)
        assert "<script>" not in page and "<img" not in page
        assert ("&lt;script&gt;alert(1)&lt;/script&gt; &#34;O&#39;Neil&#34; &amp; "
                "&lt;img src=x onerror=alert(2)&gt;") in page


def test_the_link_pages_are_rate_limited_per_client(client: TestClient, service: Service,
                                                    serial: str) -> None:
    for _ in range(20):
        assert client.get("/d/tdl_nope").status_code == 404
    r = client.post("/d/tdl_nope")
    text = assert_page(r, 429)
    assert (reason(text), alert(text)) == (
        "too_many", "短い間にリクエストが多すぎました。3 秒ほど待ってから、もう一度お試し"
                    "ください。")
    assert r.headers["retry-after"] == "3"  # 20 a minute: one more every 3 seconds
    service.clock.advance(dt.timedelta(seconds=3))  # type: ignore[attr-defined]
    assert client.get("/d/tdl_nope").status_code == 404
    assert client.get("/d/tdl_nope").status_code == 429
    # another client is not slowed by the first
    other = TestClient(client.app, client=("198.51.100.9", 50000))
    assert other.get("/d/tdl_nope").status_code == 404


# --- the tenant switch ---------------------------------------------------------------------


def test_switching_self_download_off_refuses_users_but_not_admins(
        client: TestClient, tokens: dict[str, str], serial: str) -> None:
    path = new_link(client, tokens)
    r = client.put(SWITCH, json={"allowed": False}, headers=bearer(tokens["admin"]))
    assert r.status_code == 200 and r.json() == {"tenant": "default", "allowed": False,
                                                 "links_withdrawn": 1}
    for method in ("GET", "POST"):
        text = assert_page(client.request(method, path), 403)
        assert (reason(text), heading(text)) == ("off", "ダウンロードは停止されています")
        no_key_material(text)
    r = client.get(f"{MINE}/{serial}/bundle", headers=bearer(tokens["user"]))
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:tegata:problem:self-download-off"
    assert b"PK" not in r.content[:2]
    # listing is still allowed; admins still download
    assert client.get(MINE, headers=bearer(tokens["user"])).status_code == 200
    r = client.get(f"{CERTS}/{serial}/bundle", headers=bearer(tokens["admin"]))
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    r = client.post("/api/v1/tenants/default/users/alice/links", json={},
                    headers=bearer(tokens["admin"]))
    assert r.status_code == 422 and "the tenant setting is off" in r.json()["detail"]


def test_only_admins_and_operators_turn_the_switch(client: TestClient,
                                                   tokens: dict[str, str]) -> None:
    for role, status in (("user", 403), ("gateway", 403), ("acme-admin", 404),
                         ("operator", 200), ("admin", 200)):
        r = client.put(SWITCH, json={"allowed": True}, headers=bearer(tokens[role]))
        assert r.status_code == status, role
    r = client.put(SWITCH, json={"allowed": "perhaps"}, headers=bearer(tokens["admin"]))
    assert r.status_code == 400


# --- a user's own certificates -------------------------------------------------------------


def test_a_user_lists_and_downloads_their_own_certificate(
        client: TestClient, tokens: dict[str, str], serial: str) -> None:
    h = bearer(tokens["user"])
    listed = client.get(MINE, headers=h)
    assert listed.status_code == 200 and [c["serial"] for c in listed.json()] == [serial]
    r = client.get(f"{MINE}/{serial}/bundle", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == 'attachment; filename="alice.zip"'
    assert r.headers["cache-control"] == "no-store"


def test_a_user_cannot_fetch_another_users_certificate(
        client: TestClient, service: Service, tokens: dict[str, str], serial: str) -> None:
    service.users.add("default", "bob", email="bob@example.com", allow=True)
    bob = bearer(service.tokens.create(role="user", tenant="default", login="bob")[0])
    assert client.get(MINE, headers=bob).json() == []
    theirs = client.get(f"{MINE}/{serial}/bundle", headers=bob)
    absent = client.get(f"{MINE}/ABCDEF0123/bundle", headers=bob)
    assert theirs.status_code == absent.status_code == 404
    assert theirs.json()["detail"] == f"no certificate with serial {serial}"
    assert absent.json()["detail"] == "no certificate with serial ABCDEF0123"
    # nor one of another tenant, and admins use the admin route
    acme_user = client.get(f"{MINE}/{serial}/bundle", headers=bearer(tokens["acme-admin"]))
    assert acme_user.status_code == 404
    assert client.get(MINE, headers=bearer(tokens["admin"])).status_code == 403


# --- the admin creates a link --------------------------------------------------------------


def test_an_admin_creates_a_link_and_sees_its_url_once(
        client: TestClient, service: Service, tokens: dict[str, str], serial: str) -> None:
    r = client.post("/api/v1/tenants/default/users/alice/links", headers=bearer(tokens["admin"]))
    assert r.status_code == 201, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["sent"] is False and body["email"] == "alice@example.com"
    assert body["expires_at"] == "2026-03-09T09:00:00Z"
    assert_page(client.get(path_of(body["url"])), 200)
    for role, status in (("user", 403), ("gateway", 403), ("acme-admin", 404)):
        r = client.post("/api/v1/tenants/default/users/alice/links", json={},
                        headers=bearer(tokens[role]))
        assert r.status_code == status, role


def test_sending_a_link_without_smtp_is_refused_clearly(
        client: TestClient, tokens: dict[str, str], serial: str) -> None:
    r = client.post("/api/v1/tenants/default/users/alice/links", json={"send": True},
                    headers=bearer(tokens["admin"]))
    assert r.status_code == 422
    assert r.json()["detail"] == ("e-mail is not configured (TEGATA_SMTP_HOST and "
                                  "TEGATA_SMTP_FROM not set); create the link with send false "
                                  "and pass it on yourself")
    assert (r.json()["type"], r.json()["field"]) == ("urn:tegata:problem:not-permitted", "send")


def test_link_tokens_never_reach_the_access_log() -> None:
    # the record uvicorn's access logger makes for every request
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 0, '%s - "%s %s HTTP/%s" %d',
        ("192.0.2.1:5000", "POST", "/d/tdl_k9185vFf0OJkADDUbBhKdGu4-mgsegMKoatL4F_qQwc", "1.1",
         200), None)
    assert RedactLinkTokens().filter(record)
    assert record.getMessage() == '192.0.2.1:5000 - "POST /d/tdl_… HTTP/1.1" 200'


@pytest.mark.parametrize("allowed", ["off", "false", "true", 0, 1, None],
                         ids=["off", "false-text", "true-text", "zero", "one", "null"])
def test_the_switch_takes_a_json_boolean_only(client: TestClient, service: Service,
                                              tokens: dict[str, str], serial: str,
                                              allowed: object) -> None:
    """Lax parsing took "off" and 0 as false (withdrawing every link) and 1 or "true" as
    true: only true and false are a switch's value."""
    path = new_link(client, tokens)
    r = client.put(SWITCH, json={"allowed": allowed}, headers=bearer(tokens["admin"]))
    assert (r.status_code, r.headers["content-type"]) == (400, "application/problem+json")
    assert r.json()["field"] == "allowed"
    assert service.audit.events(action="tenant.update") == []
    assert_page(client.get(path), 200)  # the link was not withdrawn
