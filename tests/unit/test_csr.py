"""CSRs: only a well-formed, self-signed request with an acceptable key gives its public key;
anything else is a clear InvalidInput, never a crash."""

from __future__ import annotations

import contextlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ca.errors import InvalidInput
from ca.x509 import csr

NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")])


def make_csr(key: object, *, extensions: bool = False) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(NAME)
    if extensions:  # asks for CA:TRUE; the profile must ignore it
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ec_csr() -> x509.CertificateSigningRequest:
    return make_csr(ec.generate_private_key(ec.SECP256R1()), extensions=True)


def test_pem_and_der_requests_give_their_public_key(ec_csr: x509.CertificateSigningRequest
                                                    ) -> None:
    for data in (ec_csr.public_bytes(serialization.Encoding.PEM),
                 ec_csr.public_bytes(serialization.Encoding.DER)):
        checked = csr.load(data)
        assert checked.public_key == ec_csr.public_key()
        assert checked.key_type == "ec-p256"


@pytest.mark.parametrize(
    ("key", "message"),
    [(rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA key of 1024 bits"),
     (ec.generate_private_key(ec.SECP256K1()), "curve secp256k1 is not accepted"),
     (ed25519.Ed25519PrivateKey.generate(), "keys are not accepted")],
    ids=["rsa-1024", "secp256k1", "ed25519"],
)
def test_weak_or_unsupported_keys_are_refused(key: object, message: str) -> None:
    data = make_csr(key).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(InvalidInput, match=message):
        csr.load(data)


def test_rsa_2048_is_accepted() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert csr.load(make_csr(key).public_bytes(serialization.Encoding.DER)).key_type == "rsa-2048"


def test_a_request_whose_signature_does_not_verify_is_refused(
        ec_csr: x509.CertificateSigningRequest) -> None:
    der = bytearray(ec_csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature value
    with pytest.raises(InvalidInput, match="CSR"):
        csr.load(bytes(der))


@pytest.mark.parametrize(
    "data",
    [b"", b"   ", b"garbage", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE "
     b"REQUEST-----\n", b"\x30\x03\x02\x01\x00", b"\x30" * 70000],
    ids=["empty", "blank", "garbage", "bad-pem", "short-der", "oversized"],
)
def test_malformed_requests_are_refused_clearly(data: bytes) -> None:
    with pytest.raises(InvalidInput, match=r"^CSR: "):
        csr.load(data)


def test_duplicate_extensions_are_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(InvalidInput, match=r"^CSR: "):
        csr.load(csr_with_duplicate_extension(key))


def csr_with_duplicate_extension(key: ec.EllipticCurvePrivateKey) -> bytes:
    """A correctly signed CSR whose extensionRequest holds the same extension twice
    (cryptography's builder refuses to make one, so the DER is edited with pyasn1)."""
    from pyasn1.codec.der import decoder, encoder
    from pyasn1_alt_modules import rfc2986, rfc5280

    good = (x509.CertificateSigningRequestBuilder().subject_name(NAME)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("a.example")]), False)
            .sign(key, hashes.SHA256()))
    request, _ = decoder.decode(good.public_bytes(serialization.Encoding.DER),
                                asn1Spec=rfc2986.CertificationRequest())
    info = request["certificationRequestInfo"]
    attribute = info["attributes"][0]
    extensions, _ = decoder.decode(attribute["values"][0], asn1Spec=rfc5280.Extensions())
    extensions.append(extensions[0])
    attribute["values"][0] = encoder.encode(extensions)
    tbs = encoder.encode(info)
    request["signature"] = rfc2986.univ.BitString.fromOctetString(
        key.sign(tbs, ec.ECDSA(hashes.SHA256())))
    return encoder.encode(request)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_mutations_never_escape_as_anything_but_invalid_input(
        ec_csr: x509.CertificateSigningRequest, data: st.DataObject) -> None:
    der = bytearray(ec_csr.public_bytes(serialization.Encoding.DER))
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(der) - 1))
        der[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        der = der[: data.draw(st.integers(0, len(der)))]
    with contextlib.suppress(InvalidInput):  # any other exception fails the test
        csr.load(bytes(der))
