"""crl-sync with a tenant rolled over: two issuing CAs of one name in the trusted bundle,
told apart by the key that signed each CRL; each has its own CRL Number to keep rising."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ca.errors import InvalidInput
from ca.service import Service
from cli import crlsync
from tests.moments import MOMENTS


def key_of(ca: x509.Certificate) -> str:
    return ca.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest.hex().upper()


@pytest.fixture
def rolled(service: Service) -> list[x509.Certificate]:
    """The default tenant rolled over: its bundle (second CA, first CA, root)."""
    service.hierarchy.rollover("default")
    return [x509.load_der_x509_certificate(v.der) for v in sorted(
        service.hierarchy.ca_certificates("default"), key=lambda v: v.kind == "root")]


def test_two_cas_of_one_name_each_need_their_own_crl(service: Service,
                                                      rolled: list[x509.Certificate]) -> None:
    second, first, root = rolled
    assert second.subject == first.subject
    chain = service.crls.chain("default")
    checked = crlsync.check(chain.pem.encode(), rolled, now=MOMENTS.start, previous=None)
    name = first.subject.rfc4514_string()
    assert checked.numbers == {
        f"{name} (key {key_of(second)})": chain.own.number,
        f"{name} (key {key_of(first)})": chain.older[0].number,
        root.subject.rfc4514_string(): chain.root.number}
    # the bundle without the first CA's CRL: refused, naming which of the two lacks one
    without = (chain.own.pem + chain.root.pem).encode()
    with pytest.raises(InvalidInput, match=f"no CRL of {name} \\(key {key_of(first)}\\)"):
        crlsync.check(without, rolled, now=MOMENTS.start, previous=None)


def test_each_generations_crl_number_must_not_go_back(service: Service,
                                                      rolled: list[x509.Certificate]) -> None:
    old = crlsync.check(service.crls.chain("default").pem.encode(), rolled,
                        now=MOMENTS.start, previous=None)
    newer = crlsync.check(service.crls.chain("default", fresh=True).pem.encode(), rolled,
                          now=MOMENTS.start, previous=old)
    with pytest.raises(InvalidInput, match="older than"):
        crlsync.check(old.pem, rolled, now=MOMENTS.start, previous=newer)
    # the first CA's CRL alone gone back (the second's is the newest): refused too
    mixed = crlsync.split(newer.pem)[0], crlsync.split(old.pem)[1], crlsync.split(newer.pem)[2]
    pem = b"".join(crl.public_bytes(serialization.Encoding.PEM) for crl in mixed)
    with pytest.raises(InvalidInput, match=f"key {key_of(rolled[1])}.*older than"):
        crlsync.check(pem, rolled, now=MOMENTS.start, previous=newer)


def test_a_bundle_of_before_the_rollover_keeps_its_own_cas_crls(
        service: Service, rolled: list[x509.Certificate]) -> None:
    """The gateway's bundle written before the rollover (first CA, root): the chain's CRL of
    the second CA (same name, a key the bundle lacks) is left out and named, the others are
    kept, so the first generation's revocations still reach the gateway."""
    second, first, root = rolled
    chain = service.crls.chain("default")
    checked = crlsync.check(chain.pem.encode(), [first, root], now=MOMENTS.start,
                            previous=None)
    name = first.subject.rfc4514_string()
    assert checked.untrusted == (f"{name} (key {key_of(second)})",)
    assert checked.numbers == {name: chain.older[0].number,
                               root.subject.rfc4514_string(): chain.root.number}
    assert checked.pem == (chain.older[0].pem + chain.root.pem).encode()
    # a bundle none of whose CAs signed a CRL of the chain (another tenant's): refused
    with pytest.raises(InvalidInput, match=f"no CRL of {name}.*--ca-bundle lacks"):
        crlsync.check(chain.own.pem.encode(), [first], now=MOMENTS.start, previous=None)
