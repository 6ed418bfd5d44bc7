"""The API over the same service calls as the CLI; RFC 9457 problems for every error."""

from __future__ import annotations

from collections.abc import Iterator

from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import func, update

from ca.db.models import Authority
from ca.service import Service
from tests.support.http import bearer

PROBLEM = "application/problem+json"


def test_operator_creates_a_tenant_with_its_issuing_ca(client: TestClient,
                                                       tokens: dict[str, str]) -> None:
    r = client.post("/api/v1/tenants", json={"name": "globex", "display_name": "Globex"},
                    headers=bearer(tokens["operator"]))
    assert r.status_code == 201, r.text
    ca = x509.load_pem_x509_certificate(r.json()["issuing_ca"]["pem"].encode())
    assert ca.subject.rfc4514_string() == "CN=Globex Issuing CA,OU=globex,O=Tegata"
    again = client.post("/api/v1/tenants", json={"name": "globex"},
                        headers=bearer(tokens["operator"]))
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM


def test_admin_adds_a_user_and_issues_a_certificate(client: TestClient,
                                                    tokens: dict[str, str]) -> None:
    h = bearer(tokens["admin"])
    r = client.post("/api/v1/tenants/default/users",
                    json={"login": "carol", "email": "carol@example.com",
                          "secure_access": True}, headers=h)
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/tenants/default/certificates",
                    json={"login": "carol", "expires": "2026-12-31", "timezone": "Asia/Tokyo"},
                    headers=h)
    assert r.status_code == 201, r.text
    body = r.json()["certificates"][0]
    assert body["not_after"] == "2026-12-31T14:59:59Z"
    assert body["state"] == "valid" and body["login"] == "carol"
    serial = body["serial"]
    pem = client.get(f"/api/v1/tenants/default/certificates/{serial.lower()}?format=pem",
                     headers=h)
    assert pem.headers["content-type"].startswith("application/pem-certificate-chain")
    cert = x509.load_pem_x509_certificate(pem.content)
    assert format(cert.serial_number, "X") == serial
    der = client.get(f"/api/v1/tenants/default/certificates/{serial}?format=der", headers=h)
    assert x509.load_der_x509_certificate(der.content) == cert


def test_issuing_to_a_user_without_permission_is_refused_clearly(
        client: TestClient, service: Service, tokens: dict[str, str]) -> None:
    service.users.add("default", "bob", email="bob@example.com", allow=False)
    r = client.post("/api/v1/tenants/default/certificates", json={"login": "bob"},
                    headers=bearer(tokens["admin"]))
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM
    assert "secure-access permission" in r.json()["detail"]


def test_bad_input_gets_a_problem_that_names_the_field_and_neutralises_the_value(
        client: TestClient, tokens: dict[str, str]) -> None:
    hostile = "\u202e<script>alert(1)</script>"
    r = client.post("/api/v1/tenants/default/users",
                    json={"login": hostile, "email": "x@example.com"},
                    headers=bearer(tokens["admin"]))
    assert r.status_code == 400 and r.json()["field"] == "login"
    # shown escaped and truncated, never raw: no bidi override reaches a console or a page
    assert "\u202e" not in r.json()["detail"] and len(r.json()["detail"]) < 300
    r = client.post("/api/v1/tenants/default/certificates",
                    json={"login": "alice", "expires": "2026-02-30"},
                    headers=bearer(tokens["admin"]))
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    assert r.json()["field"] == "expires"
    r = client.post("/api/v1/tenants/default/certificates",
                    json={"login": "alice", "expires": "9999-12-31"},
                    headers=bearer(tokens["admin"]))
    assert r.status_code == 400
    assert r.json()["detail"] == "requested 9999-12-31, latest allowed 9999-12-30"
    r = client.post("/api/v1/tenants/default/certificates",
                    json={"login": "alice", "unexpected": 1}, headers=bearer(tokens["admin"]))
    assert r.status_code == 400


def test_malformed_bodies_are_400_not_500(client: TestClient, tokens: dict[str, str]) -> None:
    h = {**bearer(tokens["admin"]), "Content-Type": "application/json"}
    for body in (b"{", b"\xff\xfe", b"[]", b"null", b'{"login": 1}'):
        r = client.post("/api/v1/tenants/default/certificates", content=body, headers=h)
        assert r.status_code == 400, (body, r.status_code, r.text)
        assert r.headers["content-type"] == PROBLEM


def test_unknown_paths_and_methods_are_problems(client: TestClient,
                                                tokens: dict[str, str]) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = client.delete("/healthz")
    assert r.status_code == 405 and r.headers["content-type"] == PROBLEM
    r = client.get("/api/v1/tenants/default/certificates/ZZ", headers=bearer(tokens["admin"]))
    assert r.status_code == 400 and r.json()["field"] == "serial"
    r = client.get("/api/v1/tenants/default/certificates/ABCD",
                   headers=bearer(tokens["admin"]))
    assert r.status_code == 404


def test_certificate_of_another_tenant_is_not_found(client: TestClient, service: Service,
                                                    tokens: dict[str, str]) -> None:
    from ca.service import IssueRequest

    serial = service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))[0].serial
    h = bearer(tokens["operator"])
    assert client.get(f"/api/v1/tenants/default/certificates/{serial}",
                      headers=h).status_code == 200
    assert client.get(f"/api/v1/tenants/acme/certificates/{serial}",
                      headers=h).status_code == 404


def test_readiness_fails_when_a_ca_key_is_unusable(client: TestClient, service: Service) -> None:
    for path in service.settings.effective_key_dir.glob("issuing-*.key.pem"):
        path.chmod(0o644)
    service.keys._signers.clear()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
    assert str(service.settings.effective_key_dir) not in r.text


def test_aia_ca_certificates_are_served_in_der(client: TestClient, service: Service) -> None:
    root = client.get("/ca/root.crt")
    assert x509.load_der_x509_certificate(root.content).subject.rfc4514_string() == (
        "CN=Tegata Root CA,O=Tegata")
    issuing = client.get("/ca/default.crt")
    assert x509.load_der_x509_certificate(issuing.content).subject.rfc4514_string() == (
        "CN=Default Issuing CA,OU=default,O=Tegata")
    assert client.get("/ca/..%2Fetc.crt").status_code == 404
    assert client.get("/ca/nobody.crt").status_code == 404


def test_whoami_reports_the_token(client: TestClient, tokens: dict[str, str]) -> None:
    r = client.get("/api/v1/whoami", headers=bearer(tokens["user"]))
    assert r.json() == {"role": "user", "tenant": "default", "login": "alice",
                        "name": "user token"}


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    assert len(client.get("/healthz").headers["x-request-id"]) == 16


def test_an_issuance_is_audited_with_its_responses_request_id(
        service: Service, client: TestClient, tokens: dict[str, str]) -> None:
    service.users.add("default", "hanako", email="hanako@example.jp", display_name="山田花子",
                     allow=True)
    r = client.post("/api/v1/tenants/default/certificates", json={"login": "hanako"},
                    headers=bearer(tokens["admin"]))
    assert r.status_code == 201
    serial = r.json()["certificates"][0]["serial"]
    assert [(e.target, e.request_id) for e in service.audit.events(
        tenant="default", action="cert.issue")] == [
        (f"default/hanako/{serial}", r.headers["x-request-id"])]


def test_every_response_carries_security_headers(client: TestClient) -> None:
    for path in ("/healthz", "/nope", "/crl/default.crl"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in headers["content-security-policy"]


def test_an_oversized_body_is_refused_before_it_is_read(client: TestClient,
                                                        tokens: dict[str, str]) -> None:
    r = client.post("/api/v1/tenants/default/users/import", content=b"x",
                    headers={**bearer(tokens["admin"]), "Content-Length": str(65 * 1024 * 1024)})
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM


def test_a_chunked_body_past_the_cap_is_refused(client: TestClient, service: Service,
                                                tokens: dict[str, str]) -> None:
    """No Content-Length to trust: the body is counted as it arrives."""
    before = service.users.list_users("default")

    def chunks() -> Iterator[bytes]:
        yield b'{"login": "mallory", "email": "m@example.com", "name": "'
        for _ in range(65):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    r = client.post("/api/v1/tenants/default/users", content=chunks(),
                    headers={**bearer(tokens["admin"]), "Content-Type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == "urn:tegata:problem:request-too-large"
    assert service.users.list_users("default") == before


def test_metrics_count_events_ocsp_and_crl_age(client: TestClient, service: Service,
                                                tokens: dict[str, str]) -> None:
    from ca.service import IssueRequest

    serial = service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))[0].serial
    service.revocation.revoke("default", serial, reason="keyCompromise")
    client.post("/ocsp", content=b"garbage")
    assert client.get("/metrics", headers=bearer(tokens["admin"])).status_code == 403
    text = client.get("/metrics", headers=bearer(tokens["operator"])).text
    assert 'tegata_events_total{action="cert.issue"} 1' in text
    assert 'tegata_events_total{action="cert.revoke"} 1' in text
    assert 'tegata_ocsp_requests_total{method="POST"}' in text
    assert 'tegata_crl_age_seconds{tenant="default"}' in text
    assert "tegata_ocsp_seconds_count" in text


def test_a_database_failure_while_reading_is_a_503_problem_not_a_500(
        client: TestClient, service: Service, tokens: dict[str, str]) -> None:
    from sqlalchemy import text

    with service.engine.begin() as conn:
        conn.execute(text("ALTER TABLE users RENAME TO users_gone"))
    r = client.get("/api/v1/tenants/default/users", headers=bearer(tokens["admin"]))
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM
    assert r.json()["type"] == "urn:tegata:problem:storage"
    assert "users" not in r.text  # no SQL or table name in the body


def test_readiness_warns_of_another_public_base_url(client: TestClient,
                                                    service: Service) -> None:
    assert client.get("/readyz").json()["warnings"] == []
    with service.database.transaction() as session:
        session.execute(update(Authority).values(
            crl_url=func.replace(Authority.crl_url, service.settings.public_base_url,
                                 "https://before.example.jp")))
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["warnings"] == [
        f"TEGATA_PUBLIC_BASE_URL is {service.settings.public_base_url} but the newest CA was "
        "made with https://before.example.jp: certificates issued here point their OCSP and "
        "caIssuers URLs at the former"]
