"""OCSP (pure): the delegated responder's certificate, and responses (RFC 6960, RFC 5019).

A response answers with the CertID hash the request used (SHA-1, SHA-256, SHA-384 or
SHA-512): a client asking with SHA-1, as nginx and openssl do by default, finds no status in
a response keyed by SHA-256.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.signer import Signer
from ca.x509.certificate import common_name
from ca.x509.crl import REASON_FLAGS

# the CertID hashes answered, each in kind (RFC 6960, 4.1.1; RFC 5019 asks for SHA-1)
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
    "sha512": hashes.SHA512}


@dataclass(frozen=True, kw_only=True)
class IssuerKeys:
    """The CertID hashes that name one issuer, per hash algorithm."""

    by_algorithm: dict[str, tuple[bytes, bytes]]  # name -> (issuerNameHash, issuerKeyHash)


def issuer_keys(issuer: x509.Certificate) -> IssuerKeys:
    name_der = issuer.subject.public_bytes()
    spki = issuer.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    key_bits = _subject_public_key(spki)
    found = {}
    for name, algorithm in HASHES.items():
        found[name] = (_digest(algorithm(), name_der), _digest(algorithm(), key_bits))
    return IssuerKeys(by_algorithm=found)


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def _subject_public_key(spki: bytes) -> bytes:
    """The BIT STRING value of a SubjectPublicKeyInfo, which issuerKeyHash covers
    (RFC 6960, 4.1.1: the hash of the key, without tag, length and unused-bits octet)."""
    def length(data: bytes, at: int) -> tuple[int, int]:
        first = data[at]
        if first < 0x80:
            return first, at + 1
        count = first & 0x7F
        return int.from_bytes(data[at + 1:at + 1 + count], "big"), at + 1 + count

    _, at = length(spki, 1)  # outer SEQUENCE
    algo_len, algo_at = length(spki, at + 1)  # AlgorithmIdentifier SEQUENCE
    at = algo_at + algo_len
    assert spki[at] == 0x03  # BIT STRING
    bits_len, bits_at = length(spki, at + 1)
    return spki[bits_at + 1:bits_at + bits_len]  # skip the unused-bits octet


@dataclass(frozen=True, kw_only=True)
class ResponderRequest:
    tenant: str
    public_key: CertificateIssuerPublicKeyTypes
    not_before: dt.datetime
    not_after: dt.datetime


def build_responder(request: ResponderRequest, issuer: x509.Certificate, signer: Signer, *,
                    serial: int) -> x509.Certificate:
    """A delegated responder certificate, signed by the issuing CA (RFC 6960, 4.2.2.2)."""
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([
            *issuer.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME),
            x509.NameAttribute(NameOID.COMMON_NAME,
                               common_name(request.tenant, " OCSP Responder"))]))
        .issuer_name(issuer.subject)
        .public_key(request.public_key)
        .serial_number(serial)
        .not_valid_before(request.not_before.replace(microsecond=0))
        .not_valid_after(request.not_after.replace(microsecond=0))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                       critical=False)
        # clients need not check the responder's own status (RFC 6960, 4.2.2.2.1)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(request.public_key),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
    )
    return signer.sign_certificate(builder)


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What to say about one serial."""

    name_hash: bytes
    key_hash: bytes
    algorithm: str
    serial: int
    status: str  # good | revoked | unknown
    revoked_at: dt.datetime | None = None
    reason: str | None = None
    this_update: dt.datetime
    next_update: dt.datetime


def build_response(answer: Answer, responder: x509.Certificate, signer: Signer, *,
                   nonce: bytes | None) -> bytes:
    statuses = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                "unknown": ocsp.OCSPCertStatus.UNKNOWN}
    revoked = answer.status == "revoked"
    reason = REASON_FLAGS.get(answer.reason or "") if revoked else None
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=answer.name_hash, issuer_key_hash=answer.key_hash,
        serial_number=answer.serial, algorithm=HASHES[answer.algorithm](),
        cert_status=statuses[answer.status],
        this_update=answer.this_update.replace(microsecond=0),
        next_update=answer.next_update.replace(microsecond=0),
        revocation_time=answer.revoked_at.replace(microsecond=0)
        if revoked and answer.revoked_at else None,
        revocation_reason=reason)
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, responder)
    builder = builder.certificates([responder])
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return signer.sign_ocsp(builder).public_bytes(serialization.Encoding.DER)


def unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER)
