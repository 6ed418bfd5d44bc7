"""A tiny DER writer (X.690): only what a CRL's revokedCertificates and TBSCertList wrapper
need. Everything else (names, extension values, signatures) comes from cryptography; a test
proves that what is written here equals cryptography's own encoding byte for byte
(tests/unit/test_crl_der.py).
"""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes

INTEGER, BIT_STRING, OCTET_STRING, NULL, OID = 0x02, 0x03, 0x04, 0x05, 0x06
UTC_TIME, GENERALIZED_TIME, SEQUENCE, EXPLICIT_0 = 0x17, 0x18, 0x30, 0xA0
TRUE = b"\x01\x01\xff"


def length(n: int) -> bytes:
    """Definite length: short form below 128, else long form (X.690, 8.1.3)."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, *content: bytes | bytearray) -> bytes:
    size = sum(len(c) for c in content)
    return b"".join((bytes((tag,)), length(size), *content))


def integer(value: int) -> bytes:
    """A non-negative INTEGER in its fewest octets, with a leading zero when the high bit
    is set (X.690, 8.3.2)."""
    if value < 0:
        raise ValueError("only non-negative integers are written here")
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray((40 * arcs[0] + arcs[1],))
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return tlv(OID, bytes(body))


def time(moment: dt.datetime) -> bytes:
    """UTCTime through 2049, GeneralizedTime from 2050, whole seconds in UTC
    (RFC 5280, 5.1.2.4 and 4.1.2.5)."""
    utc = moment.astimezone(dt.UTC)
    if 1950 <= utc.year < 2050:
        return tlv(UTC_TIME, utc.strftime("%y%m%d%H%M%SZ").encode("ascii"))
    return tlv(GENERALIZED_TIME, utc.strftime("%Y%m%d%H%M%SZ").encode("ascii"))


def extension(extn_id: str, value: bytes, *, critical: bool) -> bytes:
    """Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }; a
    DEFAULT value is left out in DER (X.690, 11.5)."""
    return tlv(SEQUENCE, oid(extn_id), TRUE if critical else b"", tlv(OCTET_STRING, value))


# RFC 5758, 3.2 (ECDSA: parameters absent) and RFC 4055, 5 (RSA PKCS #1 v1.5: NULL)
_ECDSA = {"sha256": "1.2.840.10045.4.3.2", "sha384": "1.2.840.10045.4.3.3",
          "sha512": "1.2.840.10045.4.3.4"}
_RSA = {"sha256": "1.2.840.113549.1.1.11", "sha384": "1.2.840.113549.1.1.12",
        "sha512": "1.2.840.113549.1.1.13"}


def signature_algorithm(key: CertificateIssuerPublicKeyTypes,
                        hash_: hashes.HashAlgorithm) -> bytes:
    """The AlgorithmIdentifier of a signature by ``key`` with ``hash_``."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return tlv(SEQUENCE, oid(_ECDSA[hash_.name]))
    if isinstance(key, rsa.RSAPublicKey):
        return tlv(SEQUENCE, oid(_RSA[hash_.name]), tlv(NULL, b""))
    raise ValueError(f"no signature algorithm for {type(key).__name__}")
