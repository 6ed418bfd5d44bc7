"""Root rollover: a new root (the name with " G2", a new key, its own CRL URL) with two link
certificates (its key certified by the old root, the old root's key certified by it); the
issuing CAs keep the root that certified them and move under the new one at their next
rollover; a tenant's bundle and CRL chain carry every root its CAs in service need."""

from __future__ import annotations

import pytest
from cryptography import x509
from sqlalchemy import func, select

from ca.db.models import AuditEvent
from ca.errors import InvalidInput
from ca.service import Service
from tests.support.environment import BASE_URL
from tests.support.issuing import issue_one


def cert(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def ski(certificate: x509.Certificate) -> bytes:
    return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def aki(item: x509.Certificate | x509.CertificateRevocationList) -> bytes | None:
    return item.extensions.get_extension_for_class(
        x509.AuthorityKeyIdentifier).value.key_identifier


def test_root_rollover_makes_a_g2_root_and_links_both_ways(service: Service) -> None:
    old = cert(service.hierarchy.ca_certificates(None)[0].der)
    new = cert(service.hierarchy.rollover_root().der)
    assert new.subject.rfc4514_string() == "CN=Tegata Root CA G2,O=Tegata"
    assert old.subject.rfc4514_string() == "CN=Tegata Root CA,O=Tegata"
    new.verify_directly_issued_by(new)
    assert ski(new) != ski(old)
    assert cert(service.hierarchy.ca_certificates(None)[0].der) == new  # signs from now on
    up, down = (cert(v.der) for v in service.hierarchy.links())
    # the new root's name and key, certified by the old root; and the other way round
    assert (up.subject, up.public_key(), aki(up)) == (new.subject, new.public_key(), ski(old))
    up.verify_directly_issued_by(old)
    assert (down.subject, down.public_key(), aki(down)) == (old.subject, old.public_key(),
                                                            ski(new))
    down.verify_directly_issued_by(new)
    for link in (up, down):
        constraints = link.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert (constraints.ca, constraints.path_length) == (True, None)
    assert service.crls.current(None, 2).der != service.crls.current(None, 1).der
    crl = x509.load_der_x509_crl(service.crls.current(None, 2).der)
    assert crl.is_signature_valid(new.public_key())  # type: ignore[arg-type]
    with service.database.reading() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "ca.root_rollover")) == 1
    third = cert(service.hierarchy.rollover_root(key_type="ec-p384").der)
    assert third.subject.rfc4514_string() == "CN=Tegata Root CA G3,O=Tegata"
    assert len(service.hierarchy.links()) == 4


def test_issuing_cas_move_under_the_new_root_at_their_next_rollover(service: Service) -> None:
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    old_root = cert(service.hierarchy.ca_certificates(None)[0].der)
    first = cert(service.hierarchy.ca_certificates("default")[1].der)
    alice = issue_one(service)
    new_root = cert(service.hierarchy.rollover_root().der)
    # until then the tenant's chain is unchanged: its issuing CA and the old root
    assert [cert(v.der) for v in service.hierarchy.ca_certificates("default")] == [
        old_root, first]
    assert aki(cert(issue_one(service).der)) == ski(first)
    second = cert(service.hierarchy.rollover("default").der)
    second.verify_directly_issued_by(new_root)
    assert second.subject == first.subject
    assert [cert(v.der) for v in service.hierarchy.ca_certificates("default")] == [
        new_root, old_root, second, first]
    # the CRL chain: a CRL for each CA of that bundle, the current issuing CA's first
    chain = service.crls.chain("default")
    assert [aki(x509.load_der_x509_crl(v.der)) for v in chain.views] == [
        ski(second), ski(first), ski(old_root), ski(new_root)]
    # a new tenant is certified by the new root, and so is its CRL URL made anew
    acme = cert(service.hierarchy.create_tenant("acme", ca_key_type="ec-p256").der)
    acme.verify_directly_issued_by(new_root)
    points = second.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name == [x509.UniformResourceIdentifier(
        f"{BASE_URL}/crl/root.g2.crl")]
    # revoking alice (under the old root's issuing CA) still publishes that CA's CRL
    service.revocation.revoke("default", alice.serial)
    assert [e.serial_number for e in x509.load_der_x509_crl(
        service.crls.current("default", 1).der)] == [cert(alice.der).serial_number]


def test_root_rollover_refuses_an_unknown_key_type_and_changes_nothing(
        service: Service) -> None:
    before = service.hierarchy.generations()
    with pytest.raises(InvalidInput, match="CA key type 'ed448'"):
        service.hierarchy.rollover_root(key_type="ed448")
    assert service.hierarchy.generations() == before
    assert service.hierarchy.links() == []
