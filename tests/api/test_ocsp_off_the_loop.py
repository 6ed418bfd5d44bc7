"""Over HTTP, the OCSP responder reads, signs and makes its certificate off the event loop, and
answers an OCSP response whatever fails inside."""

from __future__ import annotations

import asyncio
import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient

from api.app import build_app
from ca.service import IssueRequest, Service

TENANT = "nagoya"


def request_for(service: Service, login: str) -> bytes:
    service.users.add(TENANT, login, email=f"{login}@example.jp", allow=True)
    (view,) = service.certificates.issue(IssueRequest(tenant=TENANT, logins=(login,)))
    leaf = x509.load_der_x509_certificate(view.der)
    issuer = x509.load_der_x509_certificate(service.hierarchy.ca_certificates(TENANT)[1].der)
    return ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA1()).build(
    ).public_bytes(serialization.Encoding.DER)


def on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def nagoya(service: Service) -> Service:
    service.hierarchy.create_tenant(TENANT, display_name="名古屋営業所", ca_key_type="ec-p256")
    return service


def clients(service: Service) -> dict[str, TestClient]:
    return {"routes": TestClient(build_app(service.settings, service=service,
                                           ocsp_fast_path=False)),
            "fast path": TestClient(build_app(service.settings, service=service))}


@pytest.mark.parametrize("path", ["routes", "fast path"])
def test_the_responder_certificate_is_made_and_answers_signed_off_the_loop(
        nagoya: Service, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    data = request_for(nagoya, "hayashi")
    seen: list[tuple[str, bool]] = []
    make, status = nagoya.ocsp._load_or_make_responder, nagoya.ocsp._status

    def making(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(("responder", on_a_loop()))
        return make(*args, **kwargs)

    def reading(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(("status", on_a_loop()))
        return status(*args, **kwargs)
    monkeypatch.setattr(nagoya.ocsp, "_load_or_make_responder", making)
    monkeypatch.setattr(nagoya.ocsp, "_status", reading)
    client = clients(nagoya)[path]
    answer = client.get("/ocsp/" + base64.b64encode(data).decode())
    assert answer.status_code == 200
    assert ocsp.load_der_ocsp_response(answer.content).certificate_status \
        is ocsp.OCSPCertStatus.GOOD
    assert seen == [("status", False), ("responder", False)]


@pytest.mark.parametrize("path", ["routes", "fast path"])
def test_an_internal_failure_is_an_ocsp_response_not_an_http_error(
        nagoya: Service, monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    data = request_for(nagoya, "mori")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("planted")
    monkeypatch.setattr(nagoya.ocsp, "_load_or_make_responder", broken)
    client = clients(nagoya)[path]
    for response in (client.get("/ocsp/" + base64.b64encode(data).decode()),
                     client.post("/ocsp", content=data,
                                 headers={"Content-Type": "application/ocsp-request"})):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/ocsp-response"
        assert response.headers["cache-control"] == "no-store"
        assert ocsp.load_der_ocsp_response(response.content).response_status \
            is ocsp.OCSPResponseStatus.INTERNAL_ERROR
