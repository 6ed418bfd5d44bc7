"""Certificate revocation lists (pure).

All entries go to the builder at once: adding them one call at a time copies the list each
time, which is quadratic (100,000 entries: ~20 s instead of ~1 s).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509

from ca.clock import require_aware
from ca.signer import Signer

# RFC 5280, 5.3.1; "unspecified" is left out of the entry, as RFC 5280 recommends
REASON_FLAGS = {
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "certificateHold": x509.ReasonFlags.certificate_hold,
}


@dataclass(frozen=True, kw_only=True)
class Entry:
    serial: int
    revoked_at: dt.datetime
    reason: str | None  # None or "unspecified": no reasonCode extension


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


def revoked_entry(entry: Entry) -> x509.RevokedCertificate:
    builder = (x509.RevokedCertificateBuilder().serial_number(entry.serial)
               .revocation_date(entry.revoked_at.replace(microsecond=0)))
    if entry.reason and entry.reason != "unspecified":
        builder = builder.add_extension(x509.CRLReason(REASON_FLAGS[entry.reason]),
                                        critical=False)
    return builder.build()


def build(request: CrlRequest, issuer: x509.Certificate, signer: Signer,
          entries: Iterable[Entry]) -> x509.CertificateRevocationList:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = x509.CertificateRevocationListBuilder(
        issuer_name=issuer.subject,
        last_update=request.this_update.replace(microsecond=0),
        next_update=request.next_update.replace(microsecond=0),
        revoked_certificates=[revoked_entry(e) for e in entries],
    )
    builder = (
        builder
        # MUST be included (RFC 5280, 5.2.1 and 5.2.3)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .add_extension(x509.CRLNumber(request.number), critical=False)
        # critical when present (RFC 5280, 5.2.5); says which certificates this CRL covers
        .add_extension(x509.IssuingDistributionPoint(
            # the root's CRL covers the root itself too, which names no distribution point:
            # a name here would put the root outside this CRL's scope (OpenSSL error 44)
            full_name=None if request.covers_ca_certificates else
            [x509.UniformResourceIdentifier(request.distribution_point)],
            relative_name=None,
            only_contains_user_certs=not request.covers_ca_certificates,
            only_contains_ca_certs=request.covers_ca_certificates,
            only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False),
            critical=True)
    )
    return signer.sign_crl(builder)
