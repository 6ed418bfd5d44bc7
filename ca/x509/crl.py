"""Certificate revocation lists (pure), in time linear in the number of entries.

An entry never changes once written (serial, revocation date, reason), so it is encoded
once (``entry_der``; the service keeps it with the certificate when it is revoked) and a
CRL is its entries' DER laid end to end inside a TBSCertList that the signer signs.
cryptography's CertificateRevocationListBuilder needs a Python object per entry (100,000
entries: about 1 s; 1,000,000: 13 s and 455 MB), so the revokedCertificates sequence and
the TBSCertList wrapper are written here with ``ca.x509.der``; names, extension values and
the signature still come from cryptography and the signer, and a test proves the bytes equal
the builder's byte for byte (tests/unit/test_crl_der.py).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import CRLEntryExtensionOID, ExtensionOID

from ca.clock import require_aware
from ca.signer import Signer
from ca.x509 import der

# RFC 5280, 5.3.1; "unspecified" is left out of the entry, as RFC 5280 recommends
REASON_FLAGS = {
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "certificateHold": x509.ReasonFlags.certificate_hold,
}
# crlEntryExtensions holding the reasonCode alone, one per reason, encoded once
_REASON_EXTENSIONS = {
    name: der.tlv(der.SEQUENCE, der.extension(
        CRLEntryExtensionOID.CRL_REASON.dotted_string, x509.CRLReason(flag).public_bytes(),
        critical=False))  # MUST be non-critical (RFC 5280, 5.3.1)
    for name, flag in REASON_FLAGS.items()
}


@dataclass(frozen=True, kw_only=True)
class Entry:
    serial: int
    revoked_at: dt.datetime
    reason: str | None  # None or "unspecified": no reasonCode extension

    def __post_init__(self) -> None:
        require_aware(self.revoked_at)
        if not 0 < self.serial < 2**159:  # RFC 5280, 4.1.2.2: positive, at most 20 octets
            raise ValueError(f"serial {self.serial:X} out of range")
        if self.reason not in (None, "unspecified", *REASON_FLAGS):
            raise ValueError(f"reason {self.reason!r} is not a CRL reason code")


@dataclass(frozen=True, kw_only=True)
class CrlRequest:
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    distribution_point: str
    covers_ca_certificates: bool  # the root's CRL lists issuing CAs; the others, users

    def __post_init__(self) -> None:
        require_aware(self.this_update)
        require_aware(self.next_update)
        if self.next_update <= self.this_update:
            raise ValueError("nextUpdate must be later than thisUpdate")
        if not 0 < self.number < 2**159:  # RFC 5280, 5.2.3: at most 20 octets
            raise ValueError("CRL number out of range")


def entry_der(entry: Entry) -> bytes:
    """RevokedCertificate ::= SEQUENCE { userCertificate CertificateSerialNumber,
    revocationDate Time, crlEntryExtensions Extensions OPTIONAL } (RFC 5280, 5.1)."""
    reason = (b"" if entry.reason in (None, "unspecified")
              else _REASON_EXTENSIONS[str(entry.reason)])
    return der.tlv(der.SEQUENCE, der.integer(entry.serial), der.time(entry.revoked_at), reason)


def tbs_certlist(request: CrlRequest, issuer: x509.Certificate, algorithm: bytes,
                 entries: Iterable[bytes]) -> bytes:
    """The TBSCertList (RFC 5280, 5.1): ``entries`` are ``entry_der`` outputs in the order
    they are listed, each piece one entry or several laid end to end; ``algorithm`` is the
    signer's AlgorithmIdentifier."""
    revoked = bytearray()
    for entry in entries:  # amortised appends: linear, one copy of the entries at a time
        revoked += entry
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    # the root's CRL covers the root itself too, which names no distribution point: a name
    # here would put the root outside this CRL's scope (OpenSSL error 44)
    scope = x509.IssuingDistributionPoint(
        full_name=None if request.covers_ca_certificates else
        [x509.UniformResourceIdentifier(request.distribution_point)],
        relative_name=None, only_contains_user_certs=not request.covers_ca_certificates,
        only_contains_ca_certs=request.covers_ca_certificates, only_some_reasons=None,
        indirect_crl=False, only_contains_attribute_certs=False)
    extensions = der.tlv(der.EXPLICIT_0, der.tlv(
        der.SEQUENCE,
        # MUST be included (RFC 5280, 5.2.1 and 5.2.3)
        der.extension(ExtensionOID.AUTHORITY_KEY_IDENTIFIER.dotted_string,
                      x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
                      .public_bytes(), critical=False),
        der.extension(ExtensionOID.CRL_NUMBER.dotted_string,
                      x509.CRLNumber(request.number).public_bytes(), critical=False),
        # critical when present (RFC 5280, 5.2.5); says which certificates this CRL covers
        der.extension(ExtensionOID.ISSUING_DISTRIBUTION_POINT.dotted_string,
                      scope.public_bytes(), critical=True)))
    # an empty revokedCertificates is left out (RFC 5280, 5.1.2.6), as cryptography does
    listed = (bytes((der.SEQUENCE,)), der.length(len(revoked)), revoked) if revoked else ()
    return der.tlv(der.SEQUENCE, der.integer(1),  # version v2 (RFC 5280, 5.1.2.1)
                   algorithm, issuer.subject.public_bytes(), der.time(request.this_update),
                   der.time(request.next_update), *listed, extensions)


def build(request: CrlRequest, issuer: x509.Certificate, signer: Signer,
          entries: Iterable[bytes]) -> bytes:
    """The signed CRL's DER: CertificateList ::= SEQUENCE { tbsCertList,
    signatureAlgorithm, signatureValue BIT STRING } (RFC 5280, 5.1.1)."""
    algorithm = signer.signature_algorithm
    tbs = tbs_certlist(request, issuer, algorithm, entries)
    return der.tlv(der.SEQUENCE, tbs, algorithm,
                   der.tlv(der.BIT_STRING, b"\x00", signer.sign_tbs(tbs)))


def pem(der_bytes: bytes) -> str:
    """The CRL in PEM (RFC 7468, 5 and 3: base64 in lines of 64 characters), as
    cryptography writes it, without parsing a million entries to do so."""
    text = base64.b64encode(der_bytes).decode("ascii")
    lines = [text[i:i + 64] for i in range(0, len(text), 64)]
    return "".join(("-----BEGIN X509 CRL-----\n", *(line + "\n" for line in lines),
                    "-----END X509 CRL-----\n"))
