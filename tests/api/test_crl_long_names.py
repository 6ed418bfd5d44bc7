"""The CRL URLs of a tenant whose name has the full 63 characters (and a Japanese display
name): its CRL, its generation-2 CRL after a rollover, and its chain bundle, whose
"-chain" and ".g<n>" suffixes come after the name's 63 characters."""

from __future__ import annotations

from cryptography import x509
from fastapi.testclient import TestClient

from ca.service import Service
from cli import crlsync

LONG = "a" + "b-" * 30 + "cd"  # 63 characters, the most a tenant's name has


def aki(crl: x509.CertificateRevocationList) -> bytes | None:
    return crl.extensions.get_extension_for_class(
        x509.AuthorityKeyIdentifier).value.key_identifier


def test_a_63_character_tenant_has_its_crls_and_chain(service: Service,
                                                     client: TestClient) -> None:
    assert len(LONG) == 63
    service.hierarchy.create_tenant(LONG, display_name="株式会社テスト 情報システム部")
    service.hierarchy.rollover(LONG)
    first = client.get(f"/crl/{LONG}.crl")
    second = client.get(f"/crl/{LONG}.g2.crl")
    chain = client.get(f"/crl/{LONG}-chain.pem")
    assert [first.status_code, second.status_code, chain.status_code] == [200, 200, 200]
    crls = crlsync.split(chain.content)
    root = x509.load_der_x509_crl(client.get("/crl/root.crl").content)
    assert [aki(crl) for crl in crls] == [
        aki(x509.load_der_x509_crl(second.content)),
        aki(x509.load_der_x509_crl(first.content)), aki(root)]
    # the suffixes are not part of the name: none of these is a CRL
    for name in (f"{LONG}x.crl", f"{LONG}-chain.crl", f"{LONG}.g2-chain.pem",
                 f"{LONG}-chain.g2.pem", "root-chain.pem", "-chain.pem"):
        assert client.get(f"/crl/{name}").status_code == 404, name
