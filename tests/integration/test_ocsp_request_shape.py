"""OCSP requests of a shape the responder does not answer get an unsigned malformedRequest,
at once: a nonce outside 1..32 octets (RFC 8954, 2.1), and more than one CertID (RFC 5019,
2.1.1: a lightweight client asks about one certificate per request)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient

from api.app import build_app
from ca.service import IssueRequest, Service
from ca.service import ocsp as responder
from ca.x509 import ocsp as ocsp_x509

TENANT = "kyoto"


@pytest.fixture
def kyoto(service: Service) -> tuple[Service, int]:
    """A tenant 京都支社 and the serial of one certificate it issued."""
    service.hierarchy.create_tenant(TENANT, display_name="京都支社", ca_key_type="ec-p256")
    service.users.add(TENANT, "tanaka", email="tanaka@example.jp", allow=True)
    (view,) = service.certificates.issue(IssueRequest(tenant=TENANT, logins=("tanaka",)))
    return service, int(view.serial, 16)


def asking(service: Service, serial: int, *, nonce: bytes | None = None) -> bytes:
    issuer = x509.load_der_x509_certificate(service.hierarchy.ca_certificates(TENANT)[1].der)
    name_hash, key_hash = ocsp_x509.issuer_keys(issuer).by_algorithm["sha1"]
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash, serial, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    length = bytes([size]) if size < 128 else \
        bytes([0x80 | ((size.bit_length() + 7) // 8)]) + size.to_bytes((size.bit_length() + 7) // 8)
    return bytes([tag]) + length + content


def _inside(der: bytes) -> bytes:
    """The content of a DER element (the first one of ``der``)."""
    first = der[1]
    if first < 128:
        return der[2:2 + first]
    width = first & 0x7F
    size = int.from_bytes(der[2:2 + width])
    return der[2 + width:2 + width + size]


def two_certids(service: Service, serial: int) -> bytes:
    """OCSPRequest { TBSRequest { requestList { Request, Request } } } (RFC 6960, 4.1.1)."""
    one = _inside(_inside(_inside(asking(service, serial))))  # the one Request
    return _der(0x30, _der(0x30, _der(0x30, one + one)))


@pytest.mark.parametrize(("nonce", "answered"), [
    (b"", False), (b"\x01", True), (b"n" * 32, True), (b"n" * 33, False), (b"n" * 5000, False)],
    ids=["0-octets", "1-octet", "32-octets", "33-octets", "5000-octets"])
def test_a_nonce_is_echoed_only_if_it_holds_1_to_32_octets(
        kyoto: tuple[Service, int], nonce: bytes, answered: bool) -> None:
    service, serial = kyoto
    answer = service.ocsp.respond(asking(service, serial, nonce=nonce))
    if not answered:
        assert answer == responder.MALFORMED  # unsigned: no response bytes, no signature
        return
    response = ocsp.load_der_ocsp_response(answer.der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce


def test_a_request_with_two_certids_is_an_ocsp_malformed_request(
        kyoto: tuple[Service, int]) -> None:
    service, serial = kyoto
    data = two_certids(service, serial)
    with pytest.raises(NotImplementedError, match="more than one request"):  # two CertIDs
        ocsp.load_der_ocsp_request(data)
    client = TestClient(build_app(service.settings, service=service))
    answer = client.post("/ocsp", content=data,
                         headers={"Content-Type": "application/ocsp-request"})
    assert (answer.status_code, answer.headers["content-type"]) == (
        200, "application/ocsp-response")
    assert ocsp.load_der_ocsp_response(answer.content).response_status \
        is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
