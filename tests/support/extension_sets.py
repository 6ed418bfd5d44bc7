"""The exact profile of a client certificate of the tenant "sakura" (さくら商事株式会社), as
RFC 5280 and the profiles in ca/x509/certificate.py define it: what
tests/integration/test_extension_sets.py and test_upn_length_edges.py both compare with."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
)

from ca.service import CertificateView, Service
from tests.support.environment import BASE_URL

TENANT = "sakura"
DISPLAY = "さくら商事株式会社"
YAMADA = "yamada.taro"
UPN_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
PRIVATE_CRITICAL = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.1")
PRIVATE = x509.ObjectIdentifier("1.3.6.1.4.1.55555.1.2")

Extensions = dict[x509.ObjectIdentifier, tuple[bool, x509.ExtensionType]]


def extensions_of(extensions: x509.Extensions) -> Extensions:
    """OID -> (critical, value); fails when an OID is there twice."""
    found: Extensions = {}
    for ext in extensions:
        assert ext.oid not in found, f"{ext.oid.dotted_string} twice"
        found[ext.oid] = (ext.critical, ext.value)
    return found


def ski(key: object) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)  # type: ignore[arg-type]


def aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """keyIdentifier only (no issuer name and serial): the issuer's SKI, as RFC 5280 4.2.1.1
    recommends."""
    digest = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    return x509.AuthorityKeyIdentifier(key_identifier=digest, authority_cert_issuer=None,
                                       authority_cert_serial_number=None)


def key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not signs_certificates, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        key_cert_sign=signs_certificates, crl_sign=signs_certificates, encipher_only=False,
        decipher_only=False)


def crl_dp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None,
        crl_issuer=None)])


def client_extensions(cert: x509.Certificate, issuer: x509.Certificate, *, email: str,
                      upn: str | None = None, tenant: str = TENANT) -> Extensions:
    names: list[x509.GeneralName] = [x509.RFC822Name(email)]
    if upn is not None:
        # UTF8String (tag 0x0C); DER length: short form below 128, else 0x81 n or 0x82 n n
        data = upn.encode()
        length = (bytes([len(data)]) if len(data) < 0x80 else
                  b"\x81" + bytes([len(data)]) if len(data) < 0x100 else
                  b"\x82" + len(data).to_bytes(2, "big"))
        names.append(x509.OtherName(UPN_OID, b"\x0c" + length + data))
    return {
        ExtensionOID.BASIC_CONSTRAINTS: (True, x509.BasicConstraints(ca=False,
                                                                     path_length=None)),
        ExtensionOID.KEY_USAGE: (True, key_usage(signs_certificates=False)),
        ExtensionOID.EXTENDED_KEY_USAGE: (False, x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH])),
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME: (False, x509.SubjectAlternativeName(names)),
        ExtensionOID.SUBJECT_KEY_IDENTIFIER: (False, ski(cert.public_key())),
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER: (False, aki(issuer)),
        ExtensionOID.CRL_DISTRIBUTION_POINTS: (False, crl_dp(f"{BASE_URL}/crl/{tenant}.crl")),
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS: (False, x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                   x509.UniformResourceIdentifier(f"{BASE_URL}/ocsp")),
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(
                                       f"{BASE_URL}/ca/{tenant}.crt"))])),
    }


def client_subject(login: str, organization: str = DISPLAY) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, login)])


# --- a CSR asking for everything a profile never sets -----------------------------------------


def add_sakura(service: Service) -> Service:
    """The tenant "sakura" (an ec-p256 CA) and its three users, who may have certificates."""
    service.hierarchy.create_tenant(TENANT, display_name=DISPLAY, ca_key_type="ec-p256")
    for login in ("yamada.taro", "suzuki.hanako", "tanaka.ichiro"):
        service.users.add(TENANT, login, email=f"{login}@sakura.example.jp",
                          display_name="山田 太郎", allow=True)
    return service


def issuing(service: Service, tenant: str | None = TENANT) -> x509.Certificate:
    return x509.load_der_x509_certificate(service.hierarchy.ca_certificates(tenant)[-1].der)


def root(service: Service) -> x509.Certificate:
    return x509.load_der_x509_certificate(service.hierarchy.ca_certificates(None)[0].der)


def cert_of(view: CertificateView) -> x509.Certificate:
    return x509.load_der_x509_certificate(view.der)


def assert_client_certificate(service: Service, view: CertificateView, *,
                              upn: str | None = None) -> None:
    cert = cert_of(view)
    email = f"{view.login}@sakura.example.jp"
    assert extensions_of(cert.extensions) == client_extensions(
        cert, issuing(service), email=email, upn=upn)
    assert cert.subject == client_subject(view.login)
    assert cert.issuer == issuing(service).subject
    assert cert.version is x509.Version.v3
