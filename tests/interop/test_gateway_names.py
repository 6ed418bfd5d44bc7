"""``ca.x509.names.openssl_rfc2253`` against OpenSSL itself: ``openssl x509 -nameopt RFC2253``
prints with the flags nginx's ``$ssl_client_i_dn`` uses (XN_FLAG_RFC2253). The real nginx
checks the same function in tests/interop/test_nginx.py with the names tenants have; here,
every escape OpenSSL makes, in one openssl run per name."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from ca.x509.names import openssl_rfc2253
from tests.support.environment import require_tool

pytestmark = pytest.mark.interop

CN, ORG, OU = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME

VALUES = {
    "japanese": "株式会社アクメ Issuing CA",
    "rfc2253-specials": 'a,b+c"d\\e<f>g;h',
    "leading-hash": "#1 Acme",
    "lone-hash": "#",
    "leading-and-trailing-space": " Acme ",
    "lone-space": " ",
    "not-escaped": "x=y/z ~ ' ` | * ( ) ? [ ] ^ $host {a} %",
    "latin": "Société Générale",
    "four-byte-utf8": "\U0001f600 Emoji",
    "controls": "tab\there\x7fdel",
    "escape-lookalike": "\\E6\\A0",
}


def name_cases() -> dict[str, x509.Name]:
    cases = {key: x509.Name([x509.NameAttribute(ORG, "Tegata, Inc."),
                             x509.NameAttribute(OU, "acme-jp"),
                             x509.NameAttribute(CN, value)])
             for key, value in VALUES.items()}
    cases["multi-valued-rdn"] = x509.Name([
        x509.RelativeDistinguishedName([x509.NameAttribute(ORG, "Zed+Co"),
                                        x509.NameAttribute(OU, "b")]),
        x509.RelativeDistinguishedName([x509.NameAttribute(CN, "x")])])
    cases["bmp-and-printable-strings"] = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "JP", _type=_ASN1Type.PrintableString),
        x509.NameAttribute(CN, "株式会社アクメ", _type=_ASN1Type.BMPString)])
    return cases


CASES = name_cases()


def printed_by_openssl(openssl: str, name: x509.Name) -> tuple[x509.Name, str]:
    """``name`` as a certificate holds it (a multi-valued RDN in DER's order), and as
    OpenSSL prints it."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    result = subprocess.run([openssl, "x509", "-noout", "-issuer", "-nameopt", "RFC2253"],
                            input=cert.public_bytes(serialization.Encoding.PEM),
                            capture_output=True, timeout=30, check=True)
    return cert.issuer, result.stdout.decode("ascii").removeprefix("issuer=").removesuffix("\n")


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_names_print_as_openssl_and_so_nginx_prints_them(case: str) -> None:
    openssl = require_tool("openssl")
    name, printed = printed_by_openssl(openssl, CASES[case])

    assert openssl_rfc2253(name) == printed


def test_the_form_is_ascii_and_tells_every_name_apart() -> None:
    printed = [openssl_rfc2253(name) for name in CASES.values()]
    assert all(text.isascii() and text.isprintable() for text in printed)
    assert len(set(printed)) == len(printed)
    assert openssl_rfc2253(CASES["japanese"]) == (
        "CN=\\E6\\A0\\AA\\E5\\BC\\8F\\E4\\BC\\9A\\E7\\A4\\BE\\E3\\82\\A2\\E3\\82\\AF\\E3\\83"
        "\\A1 Issuing CA,OU=acme-jp,O=Tegata\\, Inc.")
