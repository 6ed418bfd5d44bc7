"""The CRL DER that Tegata writes itself (ca/x509/der.py, ca/x509/crl.py) equals, byte for
byte, what cryptography's CertificateRevocationListBuilder makes from the same inputs: every
kind of entry (reasons, a hold, no reason, small and 20-octet serials, dates either side of
2050), both scopes (a tenant's CRL, the root's), with and without entries, EC and RSA keys.
"""

from __future__ import annotations

import datetime as dt
from functools import cache

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from ca.signer import FileSigner
from ca.x509 import crl, der
from tests.moments import MOMENTS

JST = dt.timezone(dt.timedelta(hours=9))
ENTRIES = [
    crl.Entry(serial=1, revoked_at=MOMENTS.start, reason=None),
    crl.Entry(serial=0x7F, revoked_at=MOMENTS.start, reason="unspecified"),
    crl.Entry(serial=0x80, revoked_at=MOMENTS.start, reason="keyCompromise"),  # 00 80
    crl.Entry(serial=0xFF00, revoked_at=MOMENTS.leap_day, reason="affiliationChanged"),
    crl.Entry(serial=2**159 - 1, revoked_at=MOMENTS.start, reason="superseded"),
    crl.Entry(serial=0x5EED, revoked_at=MOMENTS.start, reason="cessationOfOperation"),
    crl.Entry(serial=0xC0FFEE, revoked_at=MOMENTS.start, reason="privilegeWithdrawn"),
    crl.Entry(serial=0xBEEF, revoked_at=MOMENTS.start, reason="certificateHold"),
    # the last second of UTCTime, its microseconds dropped as the builder drops them
    crl.Entry(serial=2**64, revoked_at=dt.datetime(2049, 12, 31, 23, 59, 59, 999_999,
                                                   tzinfo=dt.UTC), reason="keyCompromise"),
    # 2050 and later: GeneralizedTime (RFC 5280, 5.1.2.6)
    crl.Entry(serial=2**128 + 5, revoked_at=dt.datetime(2050, 1, 1, tzinfo=dt.UTC),
              reason=None),
    # an aware time in another zone is written in UTC: 2026-03-02 00:30 UTC
    crl.Entry(serial=0x10000, revoked_at=dt.datetime(2026, 3, 2, 9, 30, tzinfo=JST),
              reason="certificateHold"),
]
# enough entries for the lengths' long forms of two and three octets
MANY = [crl.Entry(serial=0x4000_0000 + i, revoked_at=MOMENTS.start,
                  reason="keyCompromise" if i % 3 else None) for i in range(2_500)]


@cache
def issuer_and_key(kind: str) -> tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes]:
    key: CertificateIssuerPrivateKeyTypes = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa"
        else ec.generate_private_key(ec.SECP384R1() if kind == "p384" else ec.SECP256R1()))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "株式会社アクメ 発行CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "株式会社アクメ")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(0x1234)
            .not_valid_before(MOMENTS.start - dt.timedelta(days=1))
            .not_valid_after(MOMENTS.start + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def request_for(*, root: bool) -> crl.CrlRequest:
    return crl.CrlRequest(number=2**158 + 0x2A, this_update=MOMENTS.start,
                          # nextUpdate after 2049: GeneralizedTime
                          next_update=dt.datetime(2050, 6, 1, tzinfo=dt.UTC),
                          distribution_point="http://127.0.0.1:8080/crl/acme.crl",
                          covers_ca_certificates=root)


def by_cryptography(request: crl.CrlRequest, issuer: x509.Certificate, signer: FileSigner,
                    entries: list[crl.Entry]) -> x509.CertificateRevocationList:
    """The reference: the builder Tegata used before, with the same extensions."""
    revoked = []
    for entry in entries:
        builder = (x509.RevokedCertificateBuilder().serial_number(entry.serial)
                   .revocation_date(entry.revoked_at.replace(microsecond=0)))
        if entry.reason not in (None, "unspecified"):
            builder = builder.add_extension(
                x509.CRLReason(crl.REASON_FLAGS[str(entry.reason)]), critical=False)
        revoked.append(builder.build())
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    root = request.covers_ca_certificates
    return signer.sign_crl(
        x509.CertificateRevocationListBuilder(
            issuer_name=issuer.subject, last_update=request.this_update,
            next_update=request.next_update, revoked_certificates=revoked)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .add_extension(x509.CRLNumber(request.number), critical=False)
        .add_extension(x509.IssuingDistributionPoint(
            full_name=None if root else
            [x509.UniformResourceIdentifier(request.distribution_point)],
            relative_name=None, only_contains_user_certs=not root,
            only_contains_ca_certs=root, only_some_reasons=None, indirect_crl=False,
            only_contains_attribute_certs=False), critical=True))


@pytest.mark.parametrize("kind", ["p384", "p256", "rsa"])
@pytest.mark.parametrize("root", [False, True], ids=["tenant-crl", "root-arl"])
@pytest.mark.parametrize("entries", [ENTRIES, [], MANY], ids=["every-kind", "none", "many"])
def test_the_tbscertlist_equals_cryptographys_byte_for_byte(
        kind: str, root: bool, entries: list[crl.Entry]) -> None:
    issuer, key = issuer_and_key(kind)
    signer = FileSigner("acme-issuing", key)
    request = request_for(root=root)
    reference = by_cryptography(request, issuer, signer, entries)

    made = x509.load_der_x509_crl(crl.build(request, issuer, signer,
                                            (crl.entry_der(e) for e in entries)))

    assert made.tbs_certlist_bytes == reference.tbs_certlist_bytes
    assert made.signature_algorithm_oid == reference.signature_algorithm_oid
    assert made.is_signature_valid(key.public_key())
    assert [(e.serial_number, e.revocation_date_utc) for e in made] == \
        [(e.serial, e.revoked_at.astimezone(dt.UTC).replace(microsecond=0)) for e in entries]


def test_an_entry_is_the_builders_revoked_certificate_byte_for_byte() -> None:
    issuer, key = issuer_and_key("p256")
    reference = by_cryptography(request_for(root=False), issuer, FileSigner("k", key),
                                ENTRIES)
    listed = b"".join(crl.entry_der(e) for e in ENTRIES)
    assert der.tlv(der.SEQUENCE, listed) in reference.tbs_certlist_bytes


@pytest.mark.parametrize(("size", "encoded"), [
    (0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"),
    (65_535, "82ffff"), (65_536, "83010000"), (2**24, "8401000000")])
def test_lengths_take_the_short_form_below_128_and_the_fewest_octets_above(
        size: int, encoded: str) -> None:
    assert der.length(size).hex() == encoded


@pytest.mark.parametrize(("value", "encoded"), [
    (0, "020100"), (1, "020101"), (127, "02017f"), (128, "02020080"), (256, "02020100"),
    (2**159 - 1, "0214" + "7f" + "ff" * 19), (2**159, "021500" + "80" + "00" * 19)])
def test_integers_take_the_fewest_octets_and_a_zero_before_a_high_bit(
        value: int, encoded: str) -> None:
    assert der.integer(value).hex() == encoded


@pytest.mark.parametrize(("serial", "reason"), [
    (0, None), (-5, None), (2**159, None), (1, "certificateHeld"), (1, "removeFromCRL")],
    ids=["zero", "negative", "21-octets", "unknown-reason", "delta-only-reason"])
def test_an_entry_refuses_what_no_crl_may_list(serial: int, reason: str | None) -> None:
    with pytest.raises(ValueError):
        crl.Entry(serial=serial, revoked_at=MOMENTS.start, reason=reason)


def test_an_entry_refuses_a_naive_date() -> None:
    with pytest.raises(ValueError):
        crl.Entry(serial=1, revoked_at=dt.datetime(2026, 3, 2, 9, 0), reason=None)


@pytest.mark.parametrize("entries", [ENTRIES, [], MANY], ids=["every-kind", "none", "many"])
def test_the_pem_is_cryptographys_byte_for_byte(entries: list[crl.Entry]) -> None:
    issuer, key = issuer_and_key("p384")
    made = crl.build(request_for(root=False), issuer, FileSigner("k", key),
                     (crl.entry_der(e) for e in entries))
    assert crl.pem(made) == x509.load_der_x509_crl(made).public_bytes(
        serialization.Encoding.PEM).decode("ascii")


def test_the_pem_breaks_lines_at_64_characters_and_no_sooner() -> None:
    assert crl.pem(bytes(48)) == ("-----BEGIN X509 CRL-----\n" + "A" * 64 + "\n"
                                  "-----END X509 CRL-----\n")
    assert crl.pem(bytes(49)).splitlines()[1:3] == ["A" * 64, "AA=="]
