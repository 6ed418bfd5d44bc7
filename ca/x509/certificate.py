"""Builders for the root, the issuing CAs and client certificates (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from ca.clock import require_aware
from ca.profiles import CLOCK_SKEW, ROOT, CAProfile, Urls, add_years
from ca.signer import Signer

# the longest common name, organization and organizational unit X.509 allows (RFC 5280,
# appendix A: ub-common-name, ub-organization-name, ub-organizational-unit-name)
MAX_COMMON_NAME = 64


def fit(text: str, limit: int = MAX_COMMON_NAME) -> str:
    """``text`` cut to ``limit`` bytes of UTF-8, between characters, never inside one.

    RFC 5280 counts characters, cryptography counts UTF-8 bytes: 22 Japanese characters
    (66 bytes) passed the first and failed deep inside the builder, for a tenant's CA and
    for every certificate of its users (their O is the tenant's display name)."""
    return text.encode()[:limit].decode("utf-8", "ignore").rstrip()


def common_name(label: str, suffix: str) -> str:
    """``label`` then ``suffix`` (" Issuing CA"), the label shortened to fit ub-common-name:
    a tenant's name or display name may be longer than what is left after the suffix."""
    return fit(label, MAX_COMMON_NAME - len(suffix.encode())) + suffix


@dataclass(frozen=True, kw_only=True)
class CARequest:
    """A CA certificate to make: its name, key and validity, and where its issuer publishes."""

    common_name: str
    organization: str | None
    public_key: CertificateIssuerPublicKeyTypes
    profile: CAProfile
    now: dt.datetime
    not_after: dt.datetime | None = None
    # an issuing CA's tenant: what keeps its subject unique whatever the display names
    organizational_unit: str | None = None
    # the name itself, taken as it is: a rolled-over CA keeps its predecessor's, byte for
    # byte, so that gateways' pins and chains built by name still find it
    name: x509.Name | None = None

    def __post_init__(self) -> None:
        require_aware(self.now)
        if not self.common_name.strip():
            raise ValueError("a CA needs a common name")

    def subject(self) -> x509.Name:
        if self.name is not None:
            return self.name
        attrs = []
        if self.organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, fit(self.organization)))
        if self.organizational_unit:  # never cut: it is what keeps the name unique
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                            self.organizational_unit))
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, fit(self.common_name)))
        return x509.Name(attrs)

    def validity_end(self) -> dt.datetime:
        end = self.not_after or add_years(self.now, self.profile.validity_years)
        return end.replace(microsecond=0)


def _ca_extensions(builder: x509.CertificateBuilder, profile: CAProfile,
                   key: CertificateIssuerPublicKeyTypes) -> x509.CertificateBuilder:
    return (
        builder
        # MUST be critical in CA certificates (RFC 5280, 4.2.1.9)
        .add_extension(x509.BasicConstraints(ca=True, path_length=profile.path_length),
                       critical=True)
        # SHOULD be critical (RFC 5280, 4.2.1.3); a CA signs certificates and CRLs only
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        # MUST be non-critical (RFC 5280, 4.2.1.2)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )


def build_root(request: CARequest, signer: Signer, *, serial: int) -> x509.Certificate:
    """A self-signed root CA certificate."""
    name = request.subject()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(request.public_key)
        .serial_number(serial)
        .not_valid_before((request.now - CLOCK_SKEW).replace(microsecond=0))
        .not_valid_after(request.validity_end())
    )
    builder = _ca_extensions(builder, request.profile, request.public_key)
    return signer.sign_certificate(builder)


def build_issuing(request: CARequest, issuer: x509.Certificate, signer: Signer, *,
                  serial: int, urls: Urls, crl_url: str,
                  root_generation: int = 1) -> x509.Certificate:
    """A tenant's issuing CA, signed by the root; it ends no later than the root does.
    ``crl_url``: the root's CRL URL, as stored on its row (never from ``urls``);
    ``root_generation``: the root's, whose certificate its caIssuers URL names."""
    not_after = min(request.validity_end(), issuer.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(request.subject())
        .issuer_name(issuer.subject)
        .public_key(request.public_key)
        .serial_number(serial)
        .not_valid_before((request.now - CLOCK_SKEW).replace(microsecond=0))
        .not_valid_after(not_after)
    )
    builder = _ca_extensions(builder, request.profile, request.public_key)
    builder = (
        builder
        .add_extension(_aki_of(issuer), critical=False)
        .add_extension(_crl_dp(crl_url), critical=False)
        .add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(
                                       urls.root_cert(root_generation))),
        ]), critical=False)
    )
    return signer.sign_certificate(builder)


def build_link(subject: x509.Certificate, issuer: x509.Certificate, signer: Signer, *,
               serial: int, now: dt.datetime, crl_url: str) -> x509.Certificate:
    """A link certificate of a root rollover: ``subject``'s name and key certified by the
    root ``issuer`` (whose key ``signer`` holds), so that a verifier trusting either root
    reaches the other. A CA certificate with the subject's own key identifier, no path
    length limit (the subject is a root), ending no later than either; ``crl_url``: the
    issuer's CRL URL, as stored on its row."""
    not_after = min(subject.not_valid_after_utc, issuer.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject.subject)
        .issuer_name(issuer.subject)
        .public_key(subject.public_key())
        .serial_number(serial)
        .not_valid_before((now - CLOCK_SKEW).replace(microsecond=0))
        .not_valid_after(not_after)
    )
    builder = _ca_extensions(builder, ROOT, subject.public_key())  # type: ignore[arg-type]
    builder = (builder.add_extension(_aki_of(issuer), critical=False)
               .add_extension(_crl_dp(crl_url), critical=False))
    return signer.sign_certificate(builder)


@dataclass(frozen=True, kw_only=True)
class ClientRequest:
    """A client certificate to make for one user."""

    login: str
    organization: str
    email: str
    public_key: CertificateIssuerPublicKeyTypes
    not_after: dt.datetime
    now: dt.datetime
    tenant: str
    upn: str | None = None
    generation: int = 1  # the issuing CA's: its caIssuers URL

    def __post_init__(self) -> None:
        require_aware(self.now)
        require_aware(self.not_after)


UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")  # Microsoft User Principal Name


def _utf8_string(value: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > 0xFFFF:
        raise ValueError("UPN too long")
    length = bytes([len(data)]) if len(data) < 0x80 else (
        b"\x81" + bytes([len(data)]) if len(data) < 0x100 else b"\x82" + len(data).to_bytes(2))
    return b"\x0c" + length + data


def build_client(request: ClientRequest, issuer: x509.Certificate, signer: Signer, *,
                 serial: int, urls: Urls, crl_url: str) -> x509.Certificate:
    """A client certificate: CN = login, O = tenant, SAN e-mail, EKU clientAuth.

    ``crl_url`` is the issuing CA's CRL URL as stored on its row: it must equal the IDP of
    the CA's CRLs, whatever process makes them. The AIA URLs follow ``urls`` (the current
    settings): nothing compares them with anything."""
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, fit(request.organization)),
        x509.NameAttribute(NameOID.COMMON_NAME, request.login),
    ])
    names: list[x509.GeneralName] = [x509.RFC822Name(request.email)]
    if request.upn:
        names.append(x509.OtherName(UPN_OID, _utf8_string(request.upn)))
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(request.public_key)
        .serial_number(serial)
        .not_valid_before((request.now - CLOCK_SKEW).replace(microsecond=0))
        .not_valid_after(request.not_after)
        # end-entity: cA FALSE; critical so no verifier can mistake it for a CA
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        # the subject has a non-empty DN, so the SAN is non-critical (RFC 5280, 4.2.1.6)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(request.public_key),
                       critical=False)
        .add_extension(_aki_of(issuer), critical=False)
        .add_extension(_crl_dp(crl_url), critical=False)
        .add_extension(x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(urls.ocsp())),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(
                                       urls.ca_cert(request.tenant, request.generation))),
        ]), critical=False)
    )
    return signer.sign_certificate(builder)


def _aki_of(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _crl_dp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([
        x509.DistributionPoint(full_name=[x509.UniformResourceIdentifier(url)],
                               relative_name=None, reasons=None, crl_issuer=None),
    ])
