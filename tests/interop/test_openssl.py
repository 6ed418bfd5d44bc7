"""OpenSSL's verdict on Tegata's chain and on what the client certificate says."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from ca.errors import InvalidInput
from ca.service import Service
from tests.support.tools import AT_START, Chain, load, run, write_chain, write_pem

pytestmark = pytest.mark.interop


def verify(openssl: str, chain: Chain, *options: str, leaf: Path | None = None,
           issuing: Path | None = None, at: str = AT_START):
    return run(openssl, "verify", "-attime", at, *options, "-CAfile", str(chain.root),
               "-untrusted", str(issuing or chain.issuing), str(leaf or chain.leaf))


def text_of(openssl: str, path: Path) -> str:
    result = run(openssl, "x509", "-noout", "-text", "-in", str(path))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_openssl_verifies_the_leaf_through_the_issuing_ca_to_the_root(openssl: str,
                                                                      chain: Chain) -> None:
    result = verify(openssl, chain)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{chain.leaf}: OK"


def test_openssl_accepts_the_leaf_for_tls_client_authentication(openssl: str,
                                                                chain: Chain) -> None:
    result = verify(openssl, chain, "-purpose", "sslclient")
    assert result.returncode == 0, result.stdout + result.stderr


def test_openssl_refuses_the_leaf_for_tls_server_authentication(openssl: str,
                                                                chain: Chain) -> None:
    result = verify(openssl, chain, "-purpose", "sslserver")
    assert result.returncode != 0
    assert "certificate purpose" in result.stdout + result.stderr  # "unsuitable" in 3.x


def test_openssl_refuses_the_leaf_against_another_tenants_chain(
        openssl: str, service: Service, chain: Chain, tmp_path: Path) -> None:
    service.hierarchy.create_tenant("acme", ca_key_type="ec-p256")
    _, acme = service.hierarchy.ca_certificates("acme")
    acme_issuing = write_pem(tmp_path / "acme-issuing.pem", acme.pem)

    result = verify(openssl, chain, issuing=acme_issuing)

    assert result.returncode != 0
    assert "unable to get local issuer certificate" in result.stdout + result.stderr
    # and acme's own leaf does verify through acme's chain: the refusal is about the tenant
    acme_chain = write_chain(service, tmp_path / "acme", tenant="acme", login="bob")
    assert verify(openssl, acme_chain).returncode == 0


def test_openssl_shows_the_client_certificate_profile(openssl: str, chain: Chain) -> None:
    text = text_of(openssl, chain.leaf)
    assert re.search(r"X509v3 Basic Constraints: critical\n\s+CA:FALSE\n", text)
    assert re.search(r"X509v3 Key Usage: critical\n\s+Digital Signature\n", text)
    assert re.search(r"X509v3 Extended Key Usage: ?\n\s+TLS Web Client Authentication\n", text)
    assert re.search(r"X509v3 Subject Alternative Name: ?\n\s+email:alice@example.com\n", text)
    assert "URI:http://tegata.test/crl/default.crl" in text
    assert "OCSP - URI:http://tegata.test/ocsp" in text
    assert "CA Issuers - URI:http://tegata.test/ca/default.crt" in text


def test_openssl_shows_the_issuing_ca_limited_to_path_length_zero(openssl: str,
                                                                   chain: Chain) -> None:
    text = text_of(openssl, chain.issuing)
    assert re.search(r"X509v3 Basic Constraints: critical\n\s+CA:TRUE, pathlen:0\n", text)
    assert re.search(r"X509v3 Key Usage: critical\n\s+Certificate Sign, CRL Sign\n", text)


@pytest.mark.parametrize("expires", [None, dt.date(2060, 1, 1)], ids=["default", "2060"])
def test_openssl_accepts_the_chain_through_the_leafs_last_day(
        openssl: str, service: Service, tmp_path: Path, expires: dt.date | None) -> None:
    # A leaf that outlives its issuing CA is dead before its notAfter: Tegata must refuse
    # such an expiry, or cap notAfter at the issuing CA's. Either way, whatever it issues must
    # verify up to its own last second.
    try:
        chain = write_chain(service, tmp_path, expires=expires)
    except InvalidInput:
        return
    last_second = load(chain.leaf).not_valid_after_utc - dt.timedelta(seconds=1)
    result = verify(openssl, chain, at=str(int(last_second.timestamp())))
    assert result.returncode == 0, result.stdout + result.stderr
