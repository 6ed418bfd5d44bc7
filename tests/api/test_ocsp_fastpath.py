"""The OCSP fast path answers exactly as the documented routes do, and passes the rest on."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient

from api.app import build_app
from ca.service import IssueRequest, Service
from ca.service import ocsp as ocsp_service


def request_for(service: Service) -> bytes:
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    leaf = x509.load_der_x509_certificate(
        service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))[0].der)
    issuer = x509.load_der_x509_certificate(service.hierarchy.ca_certificates("default")[1].der)
    return ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build(
    ).public_bytes(serialization.Encoding.DER)


def test_fast_path_and_routes_give_the_same_answer(service: Service) -> None:
    data = request_for(service)
    routed = TestClient(build_app(service.settings, service=service, ocsp_fast_path=False))
    fast = TestClient(build_app(service.settings, service=service))
    for client in (routed, fast):
        post = client.post("/ocsp", content=data,
                           headers={"Content-Type": "application/ocsp-request"})
        get = client.get("/ocsp/" + base64.b64encode(data).decode())
        for r in (post, get):
            assert r.status_code == 200
            assert r.headers["content-type"] == "application/ocsp-response"
            assert "max-age=" in r.headers["cache-control"]
            answer = ocsp.load_der_ocsp_response(r.content)
            assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    # the kept answer: both paths hand out the very same bytes
    assert fast.post("/ocsp", content=data).content == routed.post("/ocsp", content=data).content


def test_fast_path_passes_everything_else_to_the_app(service: Service) -> None:
    fast = TestClient(build_app(service.settings, service=service))
    assert fast.get("/healthz").json() == {"status": "ok"}
    assert fast.delete("/ocsp").status_code == 405
    garbage = fast.post("/ocsp", content=b"\x30\x03garbage")
    status = ocsp.load_der_ocsp_response(garbage.content).response_status
    assert status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_fast_path_heads_and_conditional_gets_answer_as_the_routes_do(service: Service) -> None:
    data = request_for(service)
    routed = TestClient(build_app(service.settings, service=service, ocsp_fast_path=False))
    fast = TestClient(build_app(service.settings, service=service))
    url = "/ocsp/" + base64.b64encode(data).decode()
    etag = fast.get(url).headers["etag"]
    for client in (routed, fast):
        head = client.head(url)
        assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", etag)
        again = client.get(url, headers={"If-None-Match": etag})
        assert (again.status_code, again.content) == (304, b"")
        other = client.get(url, headers={"If-None-Match": '"another"'})
        assert other.status_code == 200 and other.headers["etag"] == etag


def test_the_same_request_bytes_again_are_answered_without_parsing(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    data = request_for(service)
    fast = TestClient(build_app(service.settings, service=service))
    url = "/ocsp/" + base64.b64encode(data).decode()
    first = fast.get(url).content
    parsed: list[bytes] = []
    parse = ocsp_service._question
    monkeypatch.setattr(ocsp_service, "_question", lambda d: parsed.append(d) or parse(d))
    assert fast.get(url).content == first
    assert fast.post("/ocsp", content=data).content == first  # the body: asked once, parsed
    assert fast.post("/ocsp", content=data).content == first  # and not again
    assert parsed == [data]


def test_the_app_that_serves_answers_ocsp_before_its_middleware(service: Service) -> None:
    # build_app is what every worker of `tegata serve` runs and what the API tests drive:
    # the fast path is in it (no request id: the middleware never saw the request)
    data = request_for(service)
    client = TestClient(build_app(service.settings, service=service))
    for answer in (client.post("/ocsp", content=data),
                   client.get("/ocsp/" + base64.b64encode(data).decode())):
        assert answer.status_code == 200
        assert "x-request-id" not in answer.headers
    assert "x-request-id" in client.get("/healthz").headers
    assert "x-request-id" in TestClient(build_app(service.settings, service=service,
                                                  ocsp_fast_path=False)).post(
        "/ocsp", content=data).headers
