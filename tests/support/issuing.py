"""Issuing through the service, and the requests a client would make of it (a CSR, an OCSP
request), for tests that need a certificate on the way to what they check."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from ca.service import CertificateView, IssueRequest, Service


def issue(service: Service, *logins: str, tenant: str = "default",
          **options: Any) -> list[CertificateView]:
    """One new certificate per user named (``options``: the rest of ``IssueRequest``)."""
    return service.certificates.issue(IssueRequest(tenant=tenant, logins=logins, **options))


def issue_one(service: Service, login: str = "alice", tenant: str = "default",
              **options: Any) -> CertificateView:
    """The one new certificate of ``login``."""
    (view,) = issue(service, login, tenant=tenant, **options)
    return view


def issue_serials(service: Service, *logins: str, tenant: str = "default",
                  **options: Any) -> list[str]:
    """The serials of one new certificate per user named."""
    return [view.serial for view in issue(service, *logins, tenant=tenant, **options)]


def issuing_certificate(service: Service, tenant: str = "default") -> x509.Certificate:
    """The tenant's issuing CA certificate."""
    return x509.load_der_x509_certificate(service.hierarchy.ca_certificates(tenant)[1].der)


def csr_pem() -> bytes:
    """A PKCS#10 request of a new EC P-256 key, subject CN=x, no extensions."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM)


def ocsp_request(service: Service, leaf: CertificateView | x509.Certificate, *,
                 tenant: str = "default", algorithm: hashes.HashAlgorithm | None = None,
                 nonce: bytes | None = None) -> bytes:
    """The DER of an OCSP request for ``leaf``, a certificate of ``tenant``'s issuing CA
    (CertID hashed with SHA-1 unless told)."""
    if isinstance(leaf, CertificateView):
        leaf = x509.load_der_x509_certificate(leaf.der)
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        leaf, issuing_certificate(service, tenant), algorithm or hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def crl_reasons(crl: x509.CertificateRevocationList) -> dict[str, str | None]:
    """serial (canonical hex) -> the entry's reasonCode (None when it has none)."""
    found: dict[str, str | None] = {}
    for entry in crl:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = None
        found[format(entry.serial_number, "X")] = reason
    return found


def one_sakura_certificate(service: Service) -> str:
    """Tenant sakura (さくら商事) with one allowed user, tanaka, holding one certificate: its
    serial (the setup of the transition tests that make a lock fail or race)."""
    service.hierarchy.create_tenant("sakura", display_name="さくら商事")
    service.users.add("sakura", "tanaka", email="tanaka@sakura.example.jp", allow=True)
    (view,) = service.certificates.issue(IssueRequest(tenant="sakura", logins=("tanaka",)))
    return view.serial
