"""The x509 builders' small contracts, for mutants that survived the mutation pass:
an OCSP answer carries a revocation time only when its status is "revoked" (whatever else
the answer holds), and a client certificate request refuses naive times."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from ca.signer import FileSigner
from ca.x509 import certificate
from ca.x509 import ocsp as ocsp_x509
from tests.moments import MOMENTS

NOW = MOMENTS.start
REVOKED_AT = NOW - dt.timedelta(days=3, microseconds=250_000)


@pytest.fixture(scope="module")
def responder() -> tuple[x509.Certificate, FileSigner]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "さくら商事 OCSP")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert, FileSigner("responder", key)


def answer(status: str, *, revoked_at: dt.datetime | None,
           reason: str | None = None) -> ocsp_x509.Answer:
    return ocsp_x509.Answer(name_hash=b"\x01" * 20, key_hash=b"\x02" * 20, algorithm="sha1",
                            serial=0x1234, status=status, revoked_at=revoked_at, reason=reason,
                            this_update=NOW, next_update=NOW + dt.timedelta(hours=1))


def respond(built: ocsp_x509.Answer,
            responder: tuple[x509.Certificate, FileSigner]) -> ocsp.OCSPResponse:
    cert, signer = responder
    return ocsp.load_der_ocsp_response(ocsp_x509.build_response(built, cert, signer, nonce=None))


@pytest.mark.parametrize("status", ["good", "unknown"])
def test_a_revocation_date_is_left_out_unless_the_status_is_revoked(
        status: str, responder: tuple[x509.Certificate, FileSigner]) -> None:
    response = respond(answer(status, revoked_at=REVOKED_AT, reason="keyCompromise"), responder)

    assert response.certificate_status == {"good": ocsp.OCSPCertStatus.GOOD,
                                           "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
    assert response.revocation_time_utc is None
    assert response.revocation_reason is None


def test_a_revoked_answer_carries_its_date_to_the_second_and_its_reason(
        responder: tuple[x509.Certificate, FileSigner]) -> None:
    response = respond(answer("revoked", revoked_at=REVOKED_AT, reason="keyCompromise"),
                       responder)

    assert response.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_time_utc == REVOKED_AT.replace(microsecond=0)
    assert response.revocation_reason == x509.ReasonFlags.key_compromise


@pytest.mark.parametrize("which", ["now", "not_after"])
def test_a_client_request_refuses_a_naive_time(which: str) -> None:
    times = {"now": NOW, "not_after": NOW + dt.timedelta(days=365)}
    times[which] = times[which].replace(tzinfo=None)
    with pytest.raises(ValueError, match="naive datetime"):
        certificate.ClientRequest(
            login="tanaka", organization="さくら商事", email="tanaka@example.jp",
            public_key=ec.generate_private_key(ec.SECP256R1()).public_key(), tenant="sakura",
            **times)  # type: ignore[arg-type]
