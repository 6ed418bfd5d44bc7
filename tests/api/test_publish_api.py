"""Publishing status over HTTP: the CRLs, revoke/suspend/reinstate with roles, the status API,
the subscription and lifecycle routes, and OCSP's media type and caching headers."""

from __future__ import annotations

import base64
import datetime as dt
import re
import secrets
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from ca.clock import FixedClock
from ca.profiles import CLOCK_SKEW
from ca.service import CertificateView, IssueRequest, Service
from ca.service import ocsp as ocsp_service
from ca.states import State
from tests.moments import MOMENTS
from tests.support.http import bearer
from tests.support.issuing import crl_reasons

CERT = "/api/v1/tenants/default/certificates/{serial}/{action}"
STATUS = "/api/v1/tenants/default/status"
PEM_CRL = re.compile(r"-----BEGIN X509 CRL-----\n.+?\n-----END X509 CRL-----\n", re.S)
PROBLEM = "application/problem+json"


@pytest.fixture
def leaf(service: Service, tokens: dict[str, str]) -> CertificateView:
    (view,) = service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))
    return view


def post(client: TestClient, serial: str, action: str, token: str | None,
         body: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    headers = bearer(token) if token else {}
    return client.post(CERT.format(serial=serial, action=action), json=body or {},
                       headers=headers)


# --- CRLs -----------------------------------------------------------------------------------


def test_the_tenants_crl_is_der_with_its_media_type_and_caching_headers(
        client: TestClient, service: Service) -> None:
    r = client.get("/crl/default.crl")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pkix-crl"  # RFC 2585
    crl = x509.load_der_x509_crl(r.content)
    issuing = x509.load_der_x509_certificate(service.hierarchy.ca_certificates("default")[1].der)
    assert crl.issuer == issuing.subject
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    cache = [part.strip() for part in r.headers["cache-control"].split(",")]
    assert "public" in cache and any(re.fullmatch(r"max-age=\d+", p) for p in cache)
    # when it was made, not its thisUpdate (backdated by the clock-skew allowance)
    assert parsedate_to_datetime(r.headers["last-modified"]) == crl.last_update_utc + CLOCK_SKEW
    assert parsedate_to_datetime(r.headers["expires"]) == crl.next_update_utc
    assert r.headers["etag"] == f'"{number:X}"'


@pytest.mark.parametrize("url", ["/crl/default.crl?format=pem", "/crl/default.pem"],
                         ids=["format-pem", "pem-name"])
def test_the_tenants_crl_is_pem_on_request(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-pem-file"
    assert PEM_CRL.fullmatch(r.text)
    der = client.get("/crl/default.crl").content
    assert x509.load_pem_x509_crl(r.content) == x509.load_der_x509_crl(der)


def test_the_chain_bundle_holds_the_issuing_cas_crl_then_the_roots(
        client: TestClient, service: Service) -> None:
    r = client.get("/crl/default-chain.pem")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/x-pem-file"
    blocks = PEM_CRL.findall(r.text)
    assert "".join(blocks) == r.text and len(blocks) == 2
    own, root = (x509.load_pem_x509_crl(b.encode()) for b in blocks)
    root_cert, issuing = (x509.load_der_x509_certificate(v.der)
                          for v in service.hierarchy.ca_certificates("default"))
    assert own.issuer == issuing.subject and root.issuer == root_cert.subject
    assert own.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    assert root.is_signature_valid(root_cert.public_key())  # type: ignore[arg-type]


def test_the_chain_bundles_etag_changes_whenever_its_content_does(
        client: TestClient, service: Service, clock: FixedClock) -> None:
    # a strong validator must differ between different representations (RFC 9110, 8.8.1):
    # the bundle is two CRLs, and the root's may be renewed while the issuing CA's is not
    before = client.get("/crl/default-chain.pem")
    clock.advance(dt.timedelta(seconds=1))
    service.crls.publish(None)
    after = client.get("/crl/default-chain.pem")
    assert after.text != before.text
    assert after.headers["etag"] != before.headers["etag"]


def test_the_roots_crl_is_an_arl_over_ca_certificates(client: TestClient,
                                                       service: Service) -> None:
    r = client.get("/crl/root.crl")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pkix-crl"
    crl = x509.load_der_x509_crl(r.content)
    root = service.hierarchy.ca_certificates()[0]
    assert crl.issuer == x509.load_der_x509_certificate(root.der).subject
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical and idp.value.only_contains_ca_certs


@pytest.mark.parametrize("url", ["/crl/nope.crl", "/crl/nope.pem", "/crl/nope-chain.pem",
                                 "/crl/root-chain.pem", "/crl/-chain.pem", "/crl/Default.crl",
                                 "/crl/default.der", "/crl/default", "/crl/..%2Fdefault.crl"],
                         ids=["unknown-tenant", "unknown-pem", "unknown-chain", "root-chain",
                              "empty-chain", "upper-case", "other-suffix", "no-suffix",
                              "traversal"])
def test_an_unknown_crl_is_not_found(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM


def test_an_unknown_crl_format_is_refused(client: TestClient) -> None:
    r = client.get("/crl/default.crl", params={"format": "xml"})
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM


def test_a_revocation_over_http_is_in_the_very_next_crl_fetch(
        client: TestClient, tokens: dict[str, str], leaf: CertificateView) -> None:
    before = client.get("/crl/default.crl")
    r = post(client, leaf.serial, "revoke", tokens["admin"], {"reason": "keyCompromise"})
    assert r.status_code == 200, r.text
    after = client.get("/crl/default.crl")
    assert crl_reasons(x509.load_der_x509_crl(after.content)) == {leaf.serial: "keyCompromise"}
    assert after.headers["etag"] != before.headers["etag"]
    chain = PEM_CRL.findall(client.get("/crl/default-chain.pem").text)
    assert leaf.serial in crl_reasons(x509.load_pem_x509_crl(chain[0].encode()))


# --- revoke, suspend, reinstate -------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "operator"])
def test_an_admin_or_operator_suspends_reinstates_and_revokes(
        client: TestClient, tokens: dict[str, str], leaf: CertificateView, role: str) -> None:
    token = tokens[role]
    r = post(client, leaf.serial, "suspend", token)
    assert r.status_code == 200 and r.json()["state"] == "suspended"
    r = post(client, leaf.serial, "reinstate", token)
    assert r.status_code == 200 and r.json()["state"] == "valid"
    r = post(client, leaf.serial, "revoke", token, {"reason": "keyCompromise"})
    body = r.json()
    assert r.status_code == 200
    assert body["state"] == "revoked" and body["revocation_reason"] == "keyCompromise"
    assert dt.datetime.fromisoformat(body["revoked_at"]) == MOMENTS.start
    assert body["has_key_material"] is False


ACTIONS = ("revoke", "suspend", "reinstate")


@pytest.mark.parametrize("role", ["user", "gateway"])
def test_user_and_gateway_tokens_may_not_change_a_status(
        client: TestClient, service: Service, tokens: dict[str, str], leaf: CertificateView,
        role: str) -> None:
    for action in ACTIONS:
        r = post(client, leaf.serial, action, tokens[role])
        assert r.status_code == 403, action
        assert r.headers["content-type"] == PROBLEM
    assert service.certificates.get(leaf.serial).state is State.VALID


def test_another_tenants_admin_finds_no_such_tenant(
        client: TestClient, service: Service, tokens: dict[str, str],
        leaf: CertificateView) -> None:
    for action in ACTIONS:
        assert post(client, leaf.serial, action, tokens["acme-admin"]).status_code == 404
    assert service.certificates.get(leaf.serial).state is State.VALID


def test_without_a_token_a_status_change_needs_authentication(
        client: TestClient, service: Service, leaf: CertificateView) -> None:
    r = post(client, leaf.serial, "revoke", None)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert service.certificates.get(leaf.serial).state is State.VALID


@pytest.mark.parametrize("action", ["suspend", "reinstate"])
def test_a_revoked_certificate_cannot_be_suspended_or_reinstated(
        client: TestClient, tokens: dict[str, str], leaf: CertificateView,
        action: str) -> None:
    post(client, leaf.serial, "revoke", tokens["admin"], {"reason": "superseded"})
    r = post(client, leaf.serial, action, tokens["admin"])
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert f"certificate {leaf.serial} is revoked" in r.json()["detail"]


def test_revoking_again_over_http_keeps_the_first_date_and_only_upgrades_to_key_compromise(
        client: TestClient, tokens: dict[str, str], leaf: CertificateView,
        clock: FixedClock) -> None:
    first = post(client, leaf.serial, "revoke", tokens["admin"], {"reason": "superseded"})
    clock.advance(dt.timedelta(hours=2))
    again = post(client, leaf.serial, "revoke", tokens["admin"],
                 {"reason": "affiliationChanged"})
    upgraded = post(client, leaf.serial, "revoke", tokens["admin"], {"reason": "keyCompromise"})
    assert [r.status_code for r in (first, again, upgraded)] == [200, 200, 200]
    assert again.json()["revocation_reason"] == "superseded"
    assert upgraded.json()["revocation_reason"] == "keyCompromise"
    assert {r.json()["revoked_at"] for r in (first, again, upgraded)} == {
        first.json()["revoked_at"]}


BAD_REVOCATIONS = {"hold-is-not-a-reason": {"reason": "certificateHold"},
                   "unknown-reason": {"reason": "lost"},
                   "extra-field": {"reason": "keyCompromise", "when": "yesterday"}}


def test_a_bad_revocation_request_is_refused_and_changes_nothing(
        client: TestClient, service: Service, tokens: dict[str, str],
        leaf: CertificateView) -> None:
    for case, body in BAD_REVOCATIONS.items():
        r = post(client, leaf.serial, "revoke", tokens["admin"], body)
        assert r.status_code == 400, case
        assert r.headers["content-type"] == PROBLEM
    assert service.certificates.get(leaf.serial).state is State.VALID


def test_an_unknown_serial_is_not_found(client: TestClient, tokens: dict[str, str]) -> None:
    r = post(client, "1234", "revoke", tokens["admin"], {"reason": "keyCompromise"})
    assert r.status_code == 404 and "no certificate with serial 1234" in r.json()["detail"]


# --- the status API -------------------------------------------------------------------------


def status(client: TestClient, token: str, **query: str):  # type: ignore[no-untyped-def]
    return client.get(STATUS, params=query, headers=bearer(token))


def test_a_gateway_reads_the_status_by_serial_and_by_sha256(
        client: TestClient, service: Service, tokens: dict[str, str],
        leaf: CertificateView, clock: FixedClock) -> None:
    gateway = tokens["gateway"]
    fingerprint = leaf.fingerprint_sha256
    colons = ":".join(re.findall("..", fingerprint.lower()))
    for query in ({"serial": leaf.serial}, {"sha256": fingerprint}, {"sha256": colons},
                  {"serial": leaf.serial.lower()}):
        r = status(client, gateway, **query)
        assert r.status_code == 200, (query, r.text)
        assert r.json() == {
            "serial": leaf.serial, "fingerprint_sha256": fingerprint, "login": "alice",
            "state": "valid", "reason": None, "revoked_at": None,
            "not_after": leaf.not_after.isoformat().replace("+00:00", "Z")}

    service.revocation.suspend("default", leaf.serial)
    body = status(client, gateway, sha256=fingerprint).json()
    assert (body["state"], body["reason"]) == ("suspended", "certificateHold")
    # the status API tells the reason the CRL tells (and OCSP, from the same rule)
    crl = x509.load_der_x509_crl(service.crls.publish("default").der)
    assert crl_reasons(crl)[leaf.serial] == body["reason"]

    clock.advance(dt.timedelta(minutes=5))
    service.revocation.revoke("default", leaf.serial, reason="keyCompromise")
    body = status(client, gateway, serial=leaf.serial).json()
    assert (body["state"], body["reason"]) == ("revoked", "keyCompromise")
    crl = x509.load_der_x509_crl(service.crls.publish("default").der)
    assert crl_reasons(crl)[leaf.serial] == body["reason"]
    assert dt.datetime.fromisoformat(body["revoked_at"]) == MOMENTS.start + dt.timedelta(
        minutes=5)


BAD_QUESTIONS: dict[str, tuple[dict[str, str], int]] = {
    "neither": ({}, 400), "both": ({"serial": "1", "sha256": "AB" * 32}, 400),
    "short-fingerprint": ({"sha256": "AB" * 31}, 400), "not-hex": ({"sha256": "XY" * 32}, 400),
    "unknown-serial": ({"serial": "1234"}, 404),
    "unknown-fingerprint": ({"sha256": "AB" * 32}, 404),
}


def test_the_status_api_refuses_a_bad_question(client: TestClient, tokens: dict[str, str],
                                               leaf: CertificateView) -> None:
    for case, (query, code) in BAD_QUESTIONS.items():
        r = status(client, tokens["gateway"], **query)
        assert r.status_code == code, (case, r.text)
        assert r.headers["content-type"] == PROBLEM


def test_the_status_api_is_for_the_tenants_gateways_and_admins_only(
        client: TestClient, service: Service, tokens: dict[str, str],
        leaf: CertificateView) -> None:
    assert status(client, tokens["admin"], serial=leaf.serial).status_code == 200
    assert status(client, tokens["operator"], serial=leaf.serial).status_code == 200
    assert status(client, tokens["user"], serial=leaf.serial).status_code == 403
    assert status(client, tokens["acme-admin"], serial=leaf.serial).status_code == 404
    acme_gateway = service.tokens.create(role="gateway", tenant="acme")[0]
    assert status(client, acme_gateway, serial=leaf.serial).status_code == 404
    # acme's gateway asking under its own tenant does not see default's certificate either
    r = client.get("/api/v1/tenants/acme/status", params={"serial": leaf.serial},
                   headers=bearer(acme_gateway))
    assert r.status_code == 404
    assert client.get(STATUS, params={"serial": leaf.serial}).status_code == 401


# --- subscription and the lifecycle job -----------------------------------------------------


def test_only_an_operator_sets_the_subscription_or_runs_the_lifecycle(
        client: TestClient, tokens: dict[str, str]) -> None:
    url = "/api/v1/tenants/default/subscription"
    body = {"ends": "2026-03-31", "timezone": "Asia/Tokyo", "grace_days": 30}
    for role in ("admin", "gateway", "user"):
        assert client.put(url, json=body, headers=bearer(tokens[role])).status_code == 403
        assert client.post("/api/v1/lifecycle/run",
                           headers=bearer(tokens[role])).status_code == 403
    r = client.put(url, json=body, headers=bearer(tokens["operator"]))
    assert r.status_code == 200, r.text
    shown = r.json()
    assert shown["state"] == "active" and shown["timezone"] == "Asia/Tokyo"
    assert dt.datetime.fromisoformat(shown["ends_at"]) == dt.datetime(2026, 3, 31, 15,
                                                                       tzinfo=dt.UTC)
    assert dt.datetime.fromisoformat(shown["grace_ends_at"]) == dt.datetime(
        2026, 4, 30, 15, tzinfo=dt.UTC)
    assert client.get(url, headers=bearer(tokens["admin"])).json() == shown
    assert client.get(url, headers=bearer(tokens["acme-admin"])).status_code == 404
    r = client.post("/api/v1/lifecycle/run", headers=bearer(tokens["operator"]))
    assert r.status_code == 200
    assert set(r.json()) == {"suspended", "reinstated", "revoked", "purged", "crls",
                             "audit_pruned", "failed"}


def test_a_subscription_end_set_over_http_is_published_at_once(
        client: TestClient, tokens: dict[str, str], leaf: CertificateView,
        clock: FixedClock) -> None:
    url = "/api/v1/tenants/default/subscription"
    r = client.put(url, json={"ends": "2026-03-01", "allow_past": True},
                   headers=bearer(tokens["operator"]))
    assert r.status_code == 200 and r.json()["state"] == "grace"
    assert status(client, tokens["gateway"], serial=leaf.serial).json()["state"] == "suspended"
    crl = x509.load_der_x509_crl(client.get("/crl/default.crl").content)
    assert crl_reasons(crl) == {leaf.serial: "certificateHold"}
    issued = client.post("/api/v1/tenants/default/certificates", json={"login": "alice"},
                         headers=bearer(tokens["admin"]))
    assert issued.status_code == 422 and "subscription ended" in issued.json()["detail"]
    r = client.put(url, json={"ends": None}, headers=bearer(tokens["operator"]))
    assert r.json()["state"] == "active" and r.json()["ends_at"] is None
    assert status(client, tokens["gateway"], serial=leaf.serial).json()["state"] == "valid"


# --- OCSP over HTTP -------------------------------------------------------------------------


def ocsp_der(service: Service, cert: x509.Certificate, *,
             nonce: bytes | None = None) -> bytes:
    issuing = x509.load_der_x509_certificate(service.hierarchy.ca_certificates("default")[1].der)
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuing, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def by_serial(service: Service, serial: int) -> x509.Certificate:
    """A certificate naming the default issuing CA with ``serial`` (only the serial and the
    issuer go into the CertID)."""
    issuing = x509.load_der_x509_certificate(service.hierarchy.ca_certificates("default")[1].der)
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .issuer_name(issuing.subject).public_key(key.public_key()).serial_number(serial)
            .not_valid_before(MOMENTS.start).not_valid_after(MOMENTS.start + dt.timedelta(1))
            .sign(key, hashes.SHA256()))


def test_ocsp_post_answers_with_exactly_the_ocsp_media_type(
        client: TestClient, service: Service, leaf: CertificateView) -> None:
    request = ocsp_der(service, x509.load_der_x509_certificate(leaf.der), nonce=b"0123456789")
    r = client.post("/ocsp", content=request,
                    headers={"Content-Type": "application/ocsp-request"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/ocsp-response"  # nginx wants it exact
    assert r.headers["cache-control"] == "no-store"  # a nonce: this answer is for one asker
    answer = ocsp.load_der_ocsp_response(r.content)
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == (
        b"0123456789")


def test_ocsp_get_has_the_rfc_5019_caching_headers(
        client: TestClient, service: Service, leaf: CertificateView) -> None:
    encoded = base64.b64encode(ocsp_der(service, x509.load_der_x509_certificate(leaf.der)))
    r = client.get("/ocsp/" + quote(encoded.decode(), safe=""))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/ocsp-response"
    answer = ocsp.load_der_ocsp_response(r.content)
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    cache = {part.strip() for part in r.headers["cache-control"].split(",")}
    max_age = (answer.next_update_utc - MOMENTS.start).total_seconds()  # type: ignore[operator]
    assert cache == {f"max-age={int(max_age)}", "public", "no-transform", "must-revalidate"}
    # when it was made, not its thisUpdate (backdated 30 s)
    assert parsedate_to_datetime(r.headers["last-modified"]) == (
        answer.this_update_utc + ocsp_service.BACKDATE)
    assert parsedate_to_datetime(r.headers["expires"]) == answer.next_update_utc
    assert re.fullmatch(r'"[0-9a-f]{40}"', r.headers["etag"])
    again = client.get("/ocsp/" + quote(encoded.decode(), safe=""))
    assert again.content == r.content and again.headers["etag"] == r.headers["etag"]


def test_ocsp_get_accepts_slash_plus_and_equals_unescaped_or_percent_encoded(
        client: TestClient, service: Service) -> None:
    # only the serial varies (the issuer's hashes are fixed): 4 to 6 random bytes of it, so
    # that '/', '+' and a trailing '=' come up whatever the issuing CA's name
    for attempt in range(5000):
        serial = secrets.randbits(32 + 8 * (attempt % 3)) | 1
        encoded = base64.b64encode(ocsp_der(service, by_serial(service, serial))).decode()
        if "/" in encoded and "+" in encoded and encoded.endswith("="):
            break
    else:
        pytest.fail("no request with '/', '+' and '=' in its base64")
    for path in (encoded, quote(encoded, safe=""), quote(encoded, safe="/")):
        r = client.get("/ocsp/" + path)
        assert r.status_code == 200, path
        answer = ocsp.load_der_ocsp_response(r.content)
        assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL, path
        assert answer.serial_number == serial
        assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN


@pytest.mark.parametrize("path", ["/ocsp/not*base64", "/ocsp/AAAA", "/ocsp/"],
                         ids=["not-base64", "not-a-request", "empty"])
def test_ocsp_get_answers_garbage_with_malformed_request(client: TestClient,
                                                         path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/ocsp-response"
    assert r.headers["cache-control"] == "no-store"
    assert ocsp.load_der_ocsp_response(r.content).response_status is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST)


# --- HEAD and conditional GET (RFC 9110, 9.3.2 and 13) --------------------------------------


def public_urls(client: TestClient, service: Service, leaf: CertificateView) -> list[str]:
    encoded = base64.b64encode(ocsp_der(service, x509.load_der_x509_certificate(leaf.der)))
    return ["/crl/default.crl", "/crl/default.crl?format=pem", "/crl/default.pem",
            "/crl/default-chain.pem", "/crl/root.crl", "/ca/root.crt", "/ca/default.crt",
            "/ocsp/" + quote(encoded.decode(), safe=""), "/healthz", "/readyz"]


def without_request_id(headers: object) -> dict[str, str]:
    return {k: v for k, v in dict(headers).items()  # type: ignore[call-overload]
            if k != "x-request-id"}


def test_head_answers_every_public_resource_as_get_does_without_the_body(
        client: TestClient, service: Service, leaf: CertificateView) -> None:
    for url in public_urls(client, service, leaf):
        got, head = client.get(url), client.head(url)
        assert (url, got.status_code, head.status_code) == (url, 200, 200)
        assert head.content == b""
        assert without_request_id(head.headers) == without_request_id(got.headers), url
        assert head.headers["content-length"] == str(len(got.content))


def test_head_elsewhere_and_other_methods_on_public_paths_still_say_what_is_allowed(
        client: TestClient, tokens: dict[str, str]) -> None:
    # HEAD never runs an authenticated GET (a bundle download is audited)
    r = client.head("/api/v1/tenants/default/status?serial=1", headers=bearer(tokens["admin"]))
    assert r.status_code == 405
    r = client.post("/crl/default.crl")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")


VALIDATOR_CASES = {
    # request headers -> 304?  ({etag} and {modified} are the resource's own)
    "same-etag": ({"If-None-Match": "{etag}"}, True),
    "weak-form-of-it": ({"If-None-Match": "W/{etag}"}, True),
    "in-a-list": ({"If-None-Match": '"0", W/"1" , {etag}'}, True),
    "star": ({"If-None-Match": "*"}, True),
    "other-etag": ({"If-None-Match": '"0"'}, False),
    "unquoted": ({"If-None-Match": "{bare}"}, False),
    # a date equal to Last-Modified cannot tell two CRLs of one second apart: the body
    "same-date": ({"If-Modified-Since": "{modified}"}, False),
    "a-second-later": ({"If-Modified-Since": "{next_second}"}, True),
    "later-date": ({"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, True),
    "earlier-date": ({"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, False),
    "bad-date": ({"If-Modified-Since": "yesterday"}, False),
    # If-None-Match takes precedence: a date that matches does not save a changed ETag
    "etag-wins-over-date": ({"If-None-Match": '"0"', "If-Modified-Since": "{modified}"},
                            False),
    "etag-wins-either-way": ({"If-None-Match": "{etag}",
                              "If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, True),
}


@pytest.mark.parametrize("url", ["/crl/default.crl", "/crl/default-chain.pem",
                                 "/crl/root.crl"], ids=["crl", "chain", "root"])
def test_a_crl_fetch_naming_the_current_validators_gets_304_and_no_body(
        client: TestClient, url: str) -> None:
    first = client.get(url)
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    outcome = {}
    for case, (template, _) in VALIDATOR_CASES.items():
        next_second = format_datetime(parsedate_to_datetime(modified)
                                      + dt.timedelta(seconds=1), usegmt=True)
        headers = {k: v.format(etag=etag, modified=modified, bare=etag.strip('"'),
                               next_second=next_second) for k, v in template.items()}
        for method in ("GET", "HEAD"):
            r = client.request(method, url, headers=headers)
            outcome[case, method] = r.status_code
            if r.status_code == 304:
                assert r.content == b""
                assert r.headers["etag"] == etag
                assert r.headers["cache-control"] == first.headers["cache-control"]
                assert r.headers["expires"] == first.headers["expires"]
                assert "content-type" not in r.headers
            else:
                assert r.content == (first.content if method == "GET" else b"")
    assert outcome == {(case, method): 304 if expected else 200
                       for case, (_, expected) in VALIDATOR_CASES.items()
                       for method in ("GET", "HEAD")}


def test_a_new_crl_is_sent_whole_to_a_fetch_naming_the_old_validators(
        client: TestClient, service: Service, clock: FixedClock) -> None:
    old = client.get("/crl/default-chain.pem")
    clock.advance(dt.timedelta(seconds=1))
    service.crls.publish(None)
    r = client.get("/crl/default-chain.pem", headers={
        "If-None-Match": old.headers["etag"], "If-Modified-Since": old.headers["last-modified"]})
    assert r.status_code == 200 and r.text != old.text and r.headers["etag"] != old.headers[
        "etag"]


@pytest.mark.parametrize("change", ["same-second", "seconds-later"])
def test_a_changed_crl_or_ocsp_answer_is_never_304_to_the_date_of_the_old_one(
        client: TestClient, service: Service, clock: FixedClock, leaf: CertificateView,
        change: str) -> None:
    """If-Modified-Since with the old response's Last-Modified, or the moment it was
    fetched, after a suspension: the new CRL and the new OCSP answer come whole (their
    thisUpdate is backdated, and HTTP dates have whole seconds)."""
    encoded = base64.b64encode(ocsp_der(service, x509.load_der_x509_certificate(leaf.der)))
    urls = ("/crl/default.crl", "/crl/default-chain.pem", "/ocsp/" + quote(
        encoded.decode(), safe=""))
    old = {url: client.get(url) for url in urls}
    fetched_at = format_datetime(clock.now(), usegmt=True)
    if change == "seconds-later":
        clock.advance(dt.timedelta(seconds=2))
    service.revocation.suspend("default", leaf.serial)
    outcome = {}
    for url in urls:
        for since in (old[url].headers["last-modified"], fetched_at):
            r = client.get(url, headers={"If-Modified-Since": since})
            outcome[url, since] = (r.status_code, r.content != old[url].content)
    assert outcome == {key: (200, True) for key in outcome}


def test_ocsp_and_ca_certificates_answer_304_to_their_etag(
        client: TestClient, service: Service, leaf: CertificateView) -> None:
    encoded = base64.b64encode(ocsp_der(service, x509.load_der_x509_certificate(leaf.der)))
    url = "/ocsp/" + quote(encoded.decode(), safe="")
    etag = client.get(url).headers["etag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    # a CA certificate has no validator: a conditional GET gets it whole
    r = client.get("/ca/root.crt", headers={"If-None-Match": "*"})
    assert r.status_code == 304
    r = client.get("/ca/root.crt", headers={"If-None-Match": '"0"'})
    assert r.status_code == 200 and r.content == service.hierarchy.ca_certificates()[0].der
