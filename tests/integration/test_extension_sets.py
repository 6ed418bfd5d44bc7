"""The exact extensions (OIDs, criticality and values) of everything Tegata signs.

A test that looks up only the extensions it expects passes when one more is added: a CSR's
requested extensions copied into the certificate survived the review's planted bugs that way.
So each test here compares the whole set: every OID present, nothing else, each once, each
with its criticality and value; and the subject, which a CSR also asks for. The expected
values are written out from the profiles' definitions (RFC 5280 sections cited in
ca/x509/certificate.py), with URLs from the settings' public base URL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    CRLEntryExtensionOID,
    ExtendedKeyUsageOID,
    ExtensionOID,
    NameOID,
    OCSPExtensionOID,
)
from fastapi.testclient import TestClient

from api.app import build_app
from ca import parallel
from ca.clock import FixedClock
from ca.service import IssueRequest, Service
from ca.service import certificates as certificate_use_cases
from ca.service.selection import Selection
from tests.moments import MOMENTS
from tests.support.environment import BASE_URL
from tests.support.extension_sets import (
    DISPLAY,
    PRIVATE,
    PRIVATE_CRITICAL,
    TENANT,
    UPN_OID,
    YAMADA,
    add_sakura,
    aki,
    assert_client_certificate,
    cert_of,
    client_extensions,
    client_subject,
    crl_dp,
    extensions_of,
    issuing,
    key_usage,
    root,
    ski,
)
from tests.support.http import bearer
from tests.support.issuing import issue, ocsp_request

HOSTILE_SUBJECT = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "JP"),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, "偽物の会社"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "www.example.jp")])


def csr_asking_for_everything(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
                              ) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder().subject_name(HOSTILE_SUBJECT)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("www.example.jp"), x509.RFC822Name("someone-else@example.jp"),
            x509.OtherName(UPN_OID, b"\x0c\x10admin@corp.local")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CODE_SIGNING]), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.NameConstraints(
            permitted_subtrees=[x509.DNSName("example.jp")], excluded_subtrees=None),
            critical=True)
        .add_extension(x509.UnrecognizedExtension(PRIVATE_CRITICAL, b"\x05\x00"), critical=True)
        .add_extension(x509.UnrecognizedExtension(PRIVATE, b"\x0c\x03abc"), critical=False)
        .add_extension(x509.OCSPNoCheck(), critical=False)
        .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier("http://evil.example/crl")],
            relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier(b"\x01" * 20), critical=False)
        .sign(key, hashes.SHA256())
    )


# --- the world -----------------------------------------------------------------------------

@pytest.fixture
def sakura(service: Service) -> Service:
    return add_sakura(service)


# --- client certificates, every way they are made -------------------------------------------

@pytest.mark.parametrize("key_type", ["ec-p256", "rsa-2048"])
def test_a_certificate_with_a_key_made_here_has_exactly_the_profile(sakura: Service,
                                                                    key_type: str) -> None:
    (view,) = issue(sakura, YAMADA, tenant=TENANT, key_type=key_type)
    assert_client_certificate(sakura, view)


@pytest.mark.parametrize("form", ["pem", "der"])
@pytest.mark.parametrize("algorithm", ["ec-p256", "ec-p384", "rsa-2048"])
def test_a_csrs_extensions_and_subject_never_reach_the_certificate(
        sakura: Service, algorithm: str, form: str) -> None:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "rsa-2048" else
        ec.generate_private_key(ec.SECP256R1() if algorithm == "ec-p256" else ec.SECP384R1()))
    request = csr_asking_for_everything(key)
    encoding = serialization.Encoding.PEM if form == "pem" else serialization.Encoding.DER
    (view,) = issue(sakura, YAMADA, tenant=TENANT, csr=request.public_bytes(encoding))
    assert_client_certificate(sakura, view)
    cert = cert_of(view)
    # the CSR's key, and nothing else of it
    assert cert.public_key() == key.public_key()
    assert view.key_type == algorithm and view.source == "csr"


@pytest.mark.parametrize("critical", [True, False], ids=["critical", "non-critical"])
@pytest.mark.parametrize("extension", ["san", "eku", "name-constraints", "private-oid"])
def test_each_requested_extension_alone_is_left_out(sakura: Service, extension: str,
                                                    critical: bool) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    value: x509.ExtensionType = {
        "san": x509.SubjectAlternativeName([x509.DNSName("vpn.sakura.example.jp")]),
        "eku": x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        "name-constraints": x509.NameConstraints(
            permitted_subtrees=None, excluded_subtrees=[x509.DNSName("example.com")]),
        "private-oid": x509.UnrecognizedExtension(PRIVATE, b"\x01\x01\xff"),
    }[extension]
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")]))
               .add_extension(value, critical=critical).sign(key, hashes.SHA256()))
    (view,) = issue(sakura, YAMADA, tenant=TENANT,
                    csr=request.public_bytes(serialization.Encoding.PEM))
    assert_client_certificate(sakura, view)


def test_a_tenant_with_a_upn_suffix_adds_exactly_the_upn(sakura: Service) -> None:
    sakura.links.set_upn_suffix(TENANT, "corp.sakura.example.jp")
    (made_here,) = issue(sakura, "yamada.taro", tenant=TENANT)
    key = ec.generate_private_key(ec.SECP256R1())
    (from_csr,) = issue(sakura, "suzuki.hanako", tenant=TENANT,
                        csr=csr_asking_for_everything(key).public_bytes(
                            serialization.Encoding.PEM))
    assert_client_certificate(sakura, made_here, upn="yamada.taro@corp.sakura.example.jp")
    assert_client_certificate(sakura, from_csr, upn="suzuki.hanako@corp.sakura.example.jp")


@pytest.mark.parametrize("suffix_length", [100, 200, 253])
def test_a_long_upn_is_encoded_with_its_long_form_length(sakura: Service,
                                                         suffix_length: int) -> None:
    # "suzuki.hanako@" (14) + suffix: 114, 214 and 267 bytes (0x81 and 0x82 length forms)
    labels = ["a" * 63, "b" * 63, "c" * 63, "d" * 61][:1 + suffix_length // 64]
    suffix = ".".join(labels)[:suffix_length - 3].rstrip(".") + ".jp"
    sakura.links.set_upn_suffix(TENANT, suffix)
    (view,) = issue(sakura, "suzuki.hanako", tenant=TENANT)
    assert_client_certificate(sakura, view, upn=f"suzuki.hanako@{suffix}")


def test_a_selection_issued_at_once_has_exactly_the_profile(sakura: Service) -> None:
    result = sakura.certificates.issue_bulk(IssueRequest(tenant=TENANT,
                                                         selection=Selection(everyone=True),
                                                         reissue="revoke"))
    assert sorted(v.login for v in result.issued) == ["suzuki.hanako", "tanaka.ichiro",
                                                      "yamada.taro"]
    for view in result.issued:
        assert_client_certificate(sakura, view)


@pytest.fixture
def pooled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # the process pool even for three users: certificates made in worker processes
    monkeypatch.setattr(certificate_use_cases, "PARALLEL_FROM", 1)
    parallel.shutdown()
    yield
    parallel.shutdown()


def test_certificates_made_in_worker_processes_have_exactly_the_profile(
        sakura: Service, pooled: None) -> None:
    if parallel.workers() < 2:
        pytest.skip("one core: issuance never uses the pool here")
    views = issue(sakura, "yamada.taro", "suzuki.hanako", "tanaka.ichiro", tenant=TENANT)
    for view in views:
        assert_client_certificate(sakura, view)


def test_a_csr_sent_to_the_api_gives_exactly_the_profile(sakura: Service) -> None:
    token = sakura.tokens.create(role="admin", tenant=TENANT)[0]
    client = TestClient(build_app(sakura.settings, service=sakura),
                        raise_server_exceptions=False)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = csr_asking_for_everything(key).public_bytes(serialization.Encoding.PEM).decode()
    answer = client.post(f"/api/v1/tenants/{TENANT}/certificates",
                         headers=bearer(token),
                         json={"login": "tanaka.ichiro", "csr": pem})
    assert answer.status_code == 201, answer.text
    (issued,) = answer.json()["certificates"]
    cert = x509.load_pem_x509_certificate(issued["pem"].encode())
    assert extensions_of(cert.extensions) == client_extensions(
        cert, issuing(sakura), email="tanaka.ichiro@sakura.example.jp")
    assert cert.subject == client_subject("tanaka.ichiro")


# --- CA certificates ------------------------------------------------------------------------

def test_the_root_has_exactly_the_ca_profile(sakura: Service) -> None:
    cert = root(sakura)
    assert extensions_of(cert.extensions) == {
        ExtensionOID.BASIC_CONSTRAINTS: (True, x509.BasicConstraints(ca=True,
                                                                     path_length=None)),
        ExtensionOID.KEY_USAGE: (True, key_usage(signs_certificates=True)),
        ExtensionOID.SUBJECT_KEY_IDENTIFIER: (False, ski(cert.public_key())),
    }
    assert cert.issuer == cert.subject
    # InitRequest's defaults
    assert cert.subject == x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tegata"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Tegata Root CA")])


@pytest.mark.parametrize("tenant", ["default", TENANT])
def test_an_issuing_ca_has_exactly_the_issuing_profile(sakura: Service, tenant: str) -> None:
    cert = issuing(sakura, tenant)
    assert extensions_of(cert.extensions) == {
        # pathLenConstraint 0: it signs end-entity certificates only
        ExtensionOID.BASIC_CONSTRAINTS: (True, x509.BasicConstraints(ca=True, path_length=0)),
        ExtensionOID.KEY_USAGE: (True, key_usage(signs_certificates=True)),
        ExtensionOID.SUBJECT_KEY_IDENTIFIER: (False, ski(cert.public_key())),
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER: (False, aki(root(sakura))),
        ExtensionOID.CRL_DISTRIBUTION_POINTS: (False, crl_dp(f"{BASE_URL}/crl/root.crl")),
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS: (False, x509.AuthorityInformationAccess([
            x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                                   x509.UniformResourceIdentifier(f"{BASE_URL}/ca/root.crt"))
        ])),
    }
    assert cert.issuer == root(sakura).subject
    # made now (the fixed clock), backdated by the clock skew, and within the root's life
    assert cert.not_valid_before_utc == MOMENTS.start - dt.timedelta(minutes=5)
    assert cert.not_valid_after_utc <= root(sakura).not_valid_after_utc
    display = {"default": "Default", TENANT: DISPLAY}[tenant]  # initialize names it so
    assert cert.subject == x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tegata"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, tenant),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{display} Issuing CA")])


def test_long_names_are_cut_so_that_the_suffix_of_every_ca_name_survives(
        sakura: Service) -> None:
    # ub-common-name is 64: the label is cut to what is left after the suffix (UTF-8 bytes)
    tenant = "t" * 63
    display = "東京都千代田区丸の内一丁目株式会社さくら銀行本店営業部"  # 27 characters, 81 bytes
    sakura.hierarchy.create_tenant(tenant, display_name=display, ca_key_type="ec-p256")
    sakura.users.add(tenant, "yamada.taro", email="taro@sakura.example.jp", allow=True)
    ca = issuing(sakura, tenant)
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        display[:17] + " Issuing CA")  # 53 bytes of label: 17 characters of 3 bytes
    (view,) = issue(sakura, YAMADA, tenant=tenant)
    answer = ocsp.load_der_ocsp_response(
        sakura.ocsp.respond(ocsp_request(sakura, view, tenant=tenant)).der)
    (responder,) = answer.certificates
    assert responder.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "t" * 49 + " OCSP Responder")


# --- the OCSP responder's certificate -------------------------------------------------------

def test_the_ocsp_responder_certificate_has_exactly_its_profile(sakura: Service) -> None:
    (view,) = issue(sakura, YAMADA, tenant=TENANT)
    answer = ocsp.load_der_ocsp_response(
        sakura.ocsp.respond(ocsp_request(sakura, view, tenant=TENANT)).der)
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    (responder,) = answer.certificates
    assert extensions_of(responder.extensions) == {
        ExtensionOID.BASIC_CONSTRAINTS: (True, x509.BasicConstraints(ca=False,
                                                                     path_length=None)),
        ExtensionOID.KEY_USAGE: (True, key_usage(signs_certificates=False)),
        ExtensionOID.EXTENDED_KEY_USAGE: (False, x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.OCSP_SIGNING])),
        ExtensionOID.OCSP_NO_CHECK: (False, x509.OCSPNoCheck()),
        ExtensionOID.SUBJECT_KEY_IDENTIFIER: (False, ski(responder.public_key())),
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER: (False, aki(issuing(sakura))),
    }
    assert responder.issuer == issuing(sakura).subject
    # O is the CA's organization (InitRequest's default, "Tegata"), as in the issuing CA's
    # subject; CN names the tenant
    assert responder.subject == x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tegata"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"{TENANT} OCSP Responder")])
    # the response itself: no extension but the nonce, and none asked for here
    assert extensions_of(answer.extensions) == {}
    assert extensions_of(answer.single_extensions) == {}


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
def test_an_rsa_issuing_ca_is_found_by_its_key_hash(sakura: Service, algorithm: str) -> None:
    # an RSA key's SubjectPublicKeyInfo has long-form DER lengths: issuerKeyHash covers the
    # key's BIT STRING found through them
    sakura.hierarchy.create_tenant("kaede", display_name="かえで工業", ca_key_type="rsa-3072")
    sakura.users.add("kaede", "kato.ken", email="ken@kaede.example.jp", allow=True)
    (view,) = issue(sakura, "kato.ken", tenant="kaede")
    ca = issuing(sakura, "kaede")
    request = ocsp.OCSPRequestBuilder().add_certificate(
        cert_of(view), ca, hashes.SHA1() if algorithm == "sha1" else hashes.SHA256()).build()
    answer = ocsp.load_der_ocsp_response(
        sakura.ocsp.respond(request.public_bytes(serialization.Encoding.DER)).der)
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert answer.issuer_key_hash == request.issuer_key_hash
    (responder,) = answer.certificates
    assert extensions_of(responder.extensions)[ExtensionOID.AUTHORITY_KEY_IDENTIFIER] == (
        False, aki(ca))


def test_an_ocsp_response_carries_only_the_nonce_it_was_asked_for(sakura: Service) -> None:
    (view,) = issue(sakura, YAMADA, tenant=TENANT)
    nonce = b"\x42" * 16
    request = ocsp_request(sakura, view, tenant=TENANT, algorithm=hashes.SHA256(), nonce=nonce)
    answer = ocsp.load_der_ocsp_response(sakura.ocsp.respond(request).der)
    assert extensions_of(answer.extensions) == {
        OCSPExtensionOID.NONCE: (False, x509.OCSPNonce(nonce))}
    assert extensions_of(answer.single_extensions) == {}


# --- CRLs and their entries -----------------------------------------------------------------

def crl_of(service: Service, tenant: str | None = TENANT) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(service.crls.publish(tenant).der)


def number_of(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_a_tenants_crl_has_exactly_its_extensions_and_entry_extensions(
        sakura: Service, clock: FixedClock) -> None:
    views = {v.login: v for v in issue(sakura, "yamada.taro", "suzuki.hanako",
                                       "tanaka.ichiro", tenant=TENANT)}
    unspecified, compromised, held = (views["yamada.taro"], views["suzuki.hanako"],
                                      views["tanaka.ichiro"])
    sakura.revocation.revoke(TENANT, unspecified.serial)  # reason unspecified: no reasonCode
    clock.advance(dt.timedelta(seconds=1))
    sakura.revocation.revoke(TENANT, compromised.serial, reason="keyCompromise")
    sakura.revocation.suspend(TENANT, held.serial)
    (superseding,) = issue(sakura, "yamada.taro", tenant=TENANT)
    (replaced,) = issue(sakura, "yamada.taro", tenant=TENANT, reissue="revoke")
    crl = crl_of(sakura)
    assert extensions_of(crl.extensions) == {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER: (False, aki(issuing(sakura))),
        ExtensionOID.CRL_NUMBER: (False, x509.CRLNumber(number_of(crl))),
        # critical (RFC 5280, 5.2.5): user certificates only, under this distribution point
        ExtensionOID.ISSUING_DISTRIBUTION_POINT: (True, x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier(f"{BASE_URL}/crl/{TENANT}.crl")],
            relative_name=None, only_contains_user_certs=True, only_contains_ca_certs=False,
            only_some_reasons=None, indirect_crl=False, only_contains_attribute_certs=False)),
    }
    entries = {format(e.serial_number, "X"): extensions_of(e.extensions) for e in crl}
    reason = x509.CRLReason
    assert entries == {
        unspecified.serial: {},
        compromised.serial: {CRLEntryExtensionOID.CRL_REASON: (False, reason(
            x509.ReasonFlags.key_compromise))},
        held.serial: {CRLEntryExtensionOID.CRL_REASON: (False, reason(
            x509.ReasonFlags.certificate_hold))},
        superseding.serial: {CRLEntryExtensionOID.CRL_REASON: (False, reason(
            x509.ReasonFlags.superseded))},
    }
    assert replaced.serial not in entries
    assert crl.issuer == issuing(sakura).subject


def test_an_empty_crl_has_exactly_its_extensions(sakura: Service) -> None:
    crl = crl_of(sakura)
    assert len(crl) == 0
    assert set(extensions_of(crl.extensions)) == {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.CRL_NUMBER,
        ExtensionOID.ISSUING_DISTRIBUTION_POINT}


def test_the_roots_crl_covers_ca_certificates_and_names_no_distribution_point(
        sakura: Service) -> None:
    crl = crl_of(sakura, None)
    assert extensions_of(crl.extensions) == {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER: (False, aki(root(sakura))),
        ExtensionOID.CRL_NUMBER: (False, x509.CRLNumber(number_of(crl))),
        ExtensionOID.ISSUING_DISTRIBUTION_POINT: (True, x509.IssuingDistributionPoint(
            full_name=None, relative_name=None, only_contains_user_certs=False,
            only_contains_ca_certs=True, only_some_reasons=None, indirect_crl=False,
            only_contains_attribute_certs=False)),
    }
    assert crl.issuer == root(sakura).subject
    assert list(crl) == []
