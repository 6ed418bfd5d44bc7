"""Issuing-CA rollover: a tenant's next issuing CA has a new key under the same name and its
own CRL URL; it issues from then on, while the older one keeps its CRL (revoking one of its
certificates publishes its CRL, signed by its key) and its OCSP answers until it is retired;
the gateway's CA bundle and CRL chain carry both; a leaf may then run to the new CA's end."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509 import ocsp
from sqlalchemy import func, inspect, select, text, update

from ca.clock import FixedClock
from ca.db import migrate
from ca.db.models import AuditEvent, Authority, Crl, Tenant
from ca.errors import CAError, InvalidInput, NotFound
from ca.service import Service
from ca.service.views import CertificateView
from tests.moments import MOMENTS
from tests.support.databases import downgrade
from tests.support.environment import BASE_URL
from tests.support.issuing import crl_reasons, issue_one

ACME = "acme"


def cert(der: bytes) -> x509.Certificate:
    return x509.load_der_x509_certificate(der)


def ski(certificate: x509.Certificate) -> bytes:
    return certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def aki(certificate: x509.Certificate | x509.CertificateRevocationList) -> bytes | None:
    return certificate.extensions.get_extension_for_class(
        x509.AuthorityKeyIdentifier).value.key_identifier


def cdp(certificate: x509.Certificate) -> str:
    (point,) = certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert point.full_name is not None
    return str(point.full_name[0].value)


def idp(crl: x509.CertificateRevocationList) -> str:
    point = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    assert point.full_name is not None
    return str(point.full_name[0].value)


def acme(service: Service) -> tuple[x509.Certificate, CertificateView]:
    """Tenant acme, users alice and bob, alice's certificate from the first issuing CA."""
    service.hierarchy.create_tenant(ACME, display_name="Acme", ca_key_type="ec-p256")
    for login in ("alice", "bob"):
        service.users.add(ACME, login, email=f"{login}@example.com", allow=True)
    first = cert(service.hierarchy.ca_certificates(ACME)[1].der)
    return first, issue_one(service, "alice", tenant=ACME)


def root_serial(service: Service) -> int:
    return cert(service.hierarchy.ca_certificates(None)[0].der).serial_number


def bundle_chain(service: Service, leaf: CertificateView) -> list[int]:
    """The serials of the CA certificates in the PKCS#12 of ``leaf``'s bundle."""
    bundle = service.certificates.bundle(leaf.serial, tenant=ACME)
    login = bundle.filename.removesuffix(".zip")
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        password = archive.read(f"{login}-password.txt").decode().strip()
        opened = pkcs12.load_pkcs12(archive.read(f"{login}.p12"), password.encode())
    return [c.certificate.serial_number for c in opened.additional_certs]


def ocsp_status(service: Service, leaf: CertificateView,
                issuer: x509.Certificate) -> tuple[ocsp.OCSPCertStatus, bytes]:
    """The status the responder gives for ``leaf`` asked of ``issuer`` (the CertID names
    its key), and the key identifier of the certificate that signed the answer's issuer."""
    request = ocsp.OCSPRequestBuilder().add_certificate(
        cert(leaf.der), issuer, hashes.SHA1()).build()
    answer = ocsp.load_der_ocsp_response(service.ocsp.respond(
        request.public_bytes(serialization.Encoding.DER)).der)
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    (responder,) = answer.certificates
    responder.verify_directly_issued_by(issuer)
    responder.public_key().verify(  # type: ignore[call-arg, union-attr]
        answer.signature, answer.tbs_response_bytes, ec.ECDSA(answer.signature_hash_algorithm))
    return answer.certificate_status, aki(responder) or b""


def test_rollover_makes_the_next_generation_with_the_same_name_and_a_new_key(
        service: Service) -> None:
    first, _ = acme(service)
    root = cert(service.hierarchy.ca_certificates(None)[0].der)
    view = service.hierarchy.rollover(ACME)
    second = cert(view.der)
    assert second.subject == first.subject
    assert ski(second) != ski(first)
    assert aki(second) == ski(root)
    second.verify_directly_issued_by(root)
    assert type(second.public_key()) is type(first.public_key())
    assert cdp(second) == cdp(first) == f"{BASE_URL}/crl/root.crl"  # the root's CRL
    # the gateway's bundle: the current CA first, then the older one, then the root
    chain = service.hierarchy.ca_certificates(ACME)
    assert [c.serial for c in chain] == [
        format(root.serial_number, "X"), format(second.serial_number, "X"),
        format(first.serial_number, "X")]
    with service.database.reading() as session:
        rows = session.execute(select(Authority.generation, Authority.crl_url).where(
            Authority.kind == "issuing", Authority.tenant.has(name=ACME))
            .order_by(Authority.generation)).all()
        events = session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.action == "ca.rollover", AuditEvent.target == ACME))
    assert [tuple(r) for r in rows] == [(1, f"{BASE_URL}/crl/{ACME}.crl"),
                                        (2, f"{BASE_URL}/crl/{ACME}.g2.crl")]
    assert events == 1


def test_a_key_type_may_change_at_rollover(service: Service) -> None:
    acme(service)
    second = cert(service.hierarchy.rollover(ACME, key_type="ec-p384").der)
    key = second.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert key.curve.name == "secp384r1"


def test_new_certificates_come_from_the_new_ca_and_each_keeps_its_own_crl(
        service: Service) -> None:
    first, alice = acme(service)
    second = cert(service.hierarchy.rollover(ACME).der)
    bob = issue_one(service, "bob", tenant=ACME)
    assert aki(cert(alice.der)) == ski(first)
    assert aki(cert(bob.der)) == ski(second)
    assert cdp(cert(alice.der)) == f"{BASE_URL}/crl/{ACME}.crl"
    assert cdp(cert(bob.der)) == f"{BASE_URL}/crl/{ACME}.g2.crl"
    # a bundle's chain carries the CA that signed that certificate
    for leaf, issuer in ((alice, first), (bob, second)):
        assert bundle_chain(service, leaf) == [issuer.serial_number, root_serial(service)]

    service.revocation.revoke(ACME, alice.serial, reason="keyCompromise")
    old = x509.load_der_x509_crl(service.crls.current(ACME, 1).der)
    new = x509.load_der_x509_crl(service.crls.current(ACME).der)
    assert old.is_signature_valid(first.public_key())  # type: ignore[arg-type]
    assert new.is_signature_valid(second.public_key())  # type: ignore[arg-type]
    assert (aki(old), idp(old)) == (ski(first), f"{BASE_URL}/crl/{ACME}.crl")
    assert (aki(new), idp(new)) == (ski(second), f"{BASE_URL}/crl/{ACME}.g2.crl")
    assert crl_reasons(old) == {alice.serial: "keyCompromise"}
    assert crl_reasons(new) == {}

    service.revocation.revoke(ACME, bob.serial, reason="superseded")
    assert crl_reasons(x509.load_der_x509_crl(service.crls.current(ACME).der)) == {
        bob.serial: "superseded"}
    assert crl_reasons(x509.load_der_x509_crl(service.crls.current(ACME, 1).der)) == {
        alice.serial: "keyCompromise"}
    # the chain a gateway fetches: both generations' CRLs, then the root's
    chain = service.crls.chain(ACME)
    assert [aki(x509.load_der_x509_crl(v.der)) for v in chain.views[:2]] == [
        ski(second), ski(first)]
    assert chain.pem.count("BEGIN X509 CRL") == 3


def test_ocsp_answers_for_each_generation_signed_under_its_own_ca(service: Service) -> None:
    first, alice = acme(service)
    second = cert(service.hierarchy.rollover(ACME).der)
    bob = issue_one(service, "bob", tenant=ACME)
    assert ocsp_status(service, alice, first) == (ocsp.OCSPCertStatus.GOOD, ski(first))
    assert ocsp_status(service, bob, second) == (ocsp.OCSPCertStatus.GOOD, ski(second))
    service.revocation.revoke(ACME, alice.serial)
    assert ocsp_status(service, alice, first) == (ocsp.OCSPCertStatus.REVOKED, ski(first))
    assert ocsp_status(service, bob, second) == (ocsp.OCSPCertStatus.GOOD, ski(second))


def test_after_rollover_a_leaf_may_outlive_the_old_ca(service: Service) -> None:
    acme(service)
    service.clock.set(MOMENTS.rollover)  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="latest allowed 2046-03-0"):
        issue_one(service, "bob", tenant=ACME, expires=MOMENTS.past_first_ca)
    second = cert(service.hierarchy.rollover(ACME).der)
    assert second.not_valid_after_utc == cert(
        service.hierarchy.ca_certificates(None)[0].der).not_valid_after_utc  # the root's end
    bob = issue_one(service, "bob", tenant=ACME, expires=MOMENTS.past_first_ca)
    assert bob.expiry_date == MOMENTS.past_first_ca
    assert bob.not_after > cert(service.hierarchy.ca_certificates(ACME)[2].der) \
        .not_valid_after_utc


def test_generations_list_every_ca_with_its_live_certificates(service: Service) -> None:
    _, alice = acme(service)
    service.hierarchy.rollover(ACME)
    issue_one(service, "bob", tenant=ACME)
    issue_one(service, "alice", tenant=ACME)
    service.hierarchy.rollover(ACME)
    service.revocation.revoke(ACME, alice.serial)
    rows = [(v.tenant, v.kind, v.generation, v.current, v.live)
            for v in service.hierarchy.generations()]
    assert rows == [(None, "root", 1, True, 0),
                    (ACME, "issuing", 1, False, 0),
                    (ACME, "issuing", 2, False, 2),
                    (ACME, "issuing", 3, True, 0),
                    ("default", "issuing", 1, True, 0)]
    assert [c.kind for c in service.hierarchy.ca_certificates(ACME)] == [
        "root", "issuing", "issuing", "issuing"]


@pytest.mark.parametrize("tenant, key_type, error", [
    ("nobody", None, NotFound), (ACME, "dsa-1024", InvalidInput)], ids=["unknown-tenant",
                                                                        "unknown-key-type"])
def test_rollover_refuses_bad_input_and_changes_nothing(
        service: Service, tenant: str, key_type: str | None, error: type[Exception]) -> None:
    acme(service)
    before = [v.serial for v in service.hierarchy.generations()]
    keys = sorted(p.name for p in service.settings.effective_key_dir.iterdir())
    with pytest.raises(error):
        service.hierarchy.rollover(tenant, key_type=key_type)
    assert [v.serial for v in service.hierarchy.generations()] == before
    assert sorted(p.name for p in service.settings.effective_key_dir.iterdir()) == keys


def test_the_new_ca_keeps_the_old_name_byte_for_byte_even_if_the_display_name_changed(
        service: Service) -> None:
    """Gateways pin the issuer's name: a rollover must not rename the CA, whatever the
    tenant's display name has become since."""
    first, _ = acme(service)
    with service.database.transaction() as session:
        session.execute(update(Tenant).where(Tenant.name == ACME).values(
            display_name="Acme Renamed"))
    second = cert(service.hierarchy.rollover(ACME).der)
    assert second.subject.public_bytes() == first.subject.public_bytes()


def test_the_lifecycle_keeps_renewing_the_older_generations_crl(service: Service) -> None:
    """The old CA's certificates are still in use: its CRL must never go stale."""
    first, alice = acme(service)
    service.hierarchy.rollover(ACME)
    service.revocation.revoke(ACME, alice.serial)
    before = {g: service.crls.current(ACME, g).number for g in (1, 2)}
    service.clock.advance(dt.timedelta(days=4))  # type: ignore[attr-defined]
    service.lifecycle.run()
    after = {g: service.crls.current(ACME, g) for g in (1, 2)}
    assert all(after[g].number > before[g] for g in (1, 2))
    assert after[1].this_update > MOMENTS.start + dt.timedelta(days=3)
    assert crl_reasons(x509.load_der_x509_crl(after[1].der)) == {alice.serial: None}
    assert x509.load_der_x509_crl(after[1].der).is_signature_valid(
        first.public_key())  # type: ignore[arg-type]


def test_a_suspended_tenant_may_be_rolled_over_and_its_certificates_stay_suspended(
        service: Service) -> None:
    """Key hygiene does not wait for a contract: the rollover goes through, the suspended
    certificate stays on its CA's CRL (certificateHold) and the new CA issues nothing new
    while the tenant is suspended."""
    _, alice = acme(service)
    view = service.lifecycle.set_subscription(ACME, ends=dt.date(2025, 12, 31),
                                              zone="Asia/Tokyo", allow_past=True)
    assert view.state == "grace"
    service.hierarchy.rollover(ACME)
    assert crl_reasons(x509.load_der_x509_crl(service.crls.current(ACME, 1).der)) == {
        alice.serial: "certificateHold"}
    assert crl_reasons(x509.load_der_x509_crl(service.crls.current(ACME).der)) == {}
    with pytest.raises(CAError):
        issue_one(service, "bob", tenant=ACME)


def test_the_migration_numbers_every_existing_ca_one_and_rollover_then_works(
        service: Service) -> None:
    """A deployment made before 0014: its root and issuing CAs become generation 1."""
    acme(service)
    downgrade(service.engine, "0013")
    with service.engine.connect() as conn:
        assert "generation" not in {c["name"] for c in inspect(conn).get_columns("authorities")}
    service.database.upgrade()
    with service.database.reading() as session:
        assert sorted(tuple(row) for row in session.execute(select(
            Authority.kind, Authority.generation).where(Authority.kind != "ocsp"))) == [
            ("issuing", 1), ("issuing", 1), ("root", 1)]
    assert cert(service.hierarchy.rollover(ACME).der).subject == cert(
        service.hierarchy.ca_certificates(ACME)[2].der).subject
    assert cert(service.hierarchy.rollover_root().der).subject.rfc4514_string() == \
        "CN=Tegata Root CA G2,O=Tegata"


def generations_of(service: Service) -> list[tuple[str, str | None, int, str]]:
    with service.database.reading() as session:
        return sorted((row.kind, row.tenant_id and str(row.tenant_id), row.generation,
                       row.serial) for row in session.execute(select(
            Authority.kind, Authority.tenant_id, Authority.generation, Authority.serial)
            .where(Authority.kind != "ocsp")))


def test_a_downgrade_below_0014_after_a_rollover_is_refused_and_changes_nothing(
        service: Service) -> None:
    """Generations 2 and later (and a root's link certificates) have no place in the schema
    of before: the downgrade says so rather than dropping them."""
    acme(service)
    service.hierarchy.rollover(ACME)
    service.hierarchy.rollover_root()
    before = generations_of(service)
    with service.database.reading() as session:
        links = session.execute(select(Authority.link_from_previous, Authority.link_to_previous)
                                .where(Authority.kind == "root", Authority.generation == 2)
                                ).one()
    with pytest.raises(RuntimeError, match="cannot downgrade below 0014: 2 CA"):
        downgrade(service.engine, "0013")
    assert migrate.current_revision(service.engine) == migrate.head_revision()
    assert generations_of(service) == before
    with service.database.reading() as session:
        assert session.execute(select(Authority.link_from_previous,
                                      Authority.link_to_previous)
                               .where(Authority.kind == "root", Authority.generation == 2)
                               ).one() == links
    assert all(links)


def test_the_migration_numbers_several_cas_of_a_line_in_the_order_they_were_made(
        service: Service) -> None:
    """A database taken below 0014 with a rollover's CAs in it (by an alembic of before the
    downgrade refused that) upgrades: the CAs of each line numbered 1, 2, ... by age, the
    newest issuing, rather than failing on the unique index and staying stuck."""
    acme(service)
    service.hierarchy.rollover(ACME)
    service.hierarchy.rollover(ACME)
    expected = generations_of(service)
    # what the old downgrade left: the generations gone, every CA "the first" (the unique
    # index made plain for that, as the downgrade drops an index of its name)
    with service.engine.begin() as conn:
        conn.execute(text("DROP INDEX ux_authorities_generation"))
        conn.execute(update(Authority).values(generation=1))
        conn.execute(text("CREATE INDEX ux_authorities_generation ON authorities (kind)"))
    downgrade(service.engine, "0013")
    with service.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM authorities WHERE kind = 'issuing'")
                           ) == 4
    service.database.upgrade()
    assert generations_of(service) == expected
    assert [(v.generation, v.current) for v in service.hierarchy.generations()
            if v.tenant == ACME] == [(1, False), (2, False), (3, True)]


def test_two_rollovers_at_once_make_two_generations_one_after_the_other(
        service: Service) -> None:
    """The tenant's row is locked first: the second sees the first's CA and makes the next
    generation (no two CAs of one generation, no failure)."""
    acme(service)
    with ThreadPoolExecutor(max_workers=2) as pool:
        made = list(pool.map(lambda _: service.hierarchy.rollover(ACME), range(2)))
    rows = [(v.tenant, v.generation, v.current) for v in service.hierarchy.generations()
            if v.tenant == ACME]
    assert rows == [(ACME, 1, False), (ACME, 2, False), (ACME, 3, True)]
    assert {v.serial for v in made} == {v.serial for v in service.hierarchy.generations()
                                         if v.tenant == ACME and v.generation > 1}


def responder_of(service: Service, leaf: CertificateView,
                 issuer: x509.Certificate) -> x509.Certificate:
    request = ocsp.OCSPRequestBuilder().add_certificate(
        cert(leaf.der), issuer, hashes.SHA1()).build()
    answer = ocsp.load_der_ocsp_response(service.ocsp.respond(
        request.public_bytes(serialization.Encoding.DER)).der)
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    (responder,) = answer.certificates
    return responder


def test_a_responder_certificate_ends_no_later_than_its_ca_and_is_then_kept(
        service: Service, clock: FixedClock) -> None:
    """Three days before the first issuing CA ends (after a rollover), its responder
    certificate is capped at the CA's notAfter; a day later it is the same one (a new one
    would not outlast it: none is made from a CA about to end)."""
    first, alice = acme(service)
    service.hierarchy.rollover(ACME)
    end = first.not_valid_after_utc
    clock.set(end - dt.timedelta(days=3))
    capped = responder_of(service, alice, first)
    assert capped.not_valid_after_utc == end
    clock.set(end - dt.timedelta(days=2))
    assert responder_of(service, alice, first) == capped
    with service.database.reading() as session:
        made = session.scalar(select(func.count()).select_from(Authority).where(
            Authority.kind == "ocsp", Authority.issuer_id == select(Authority.id).where(
                Authority.der == first.public_bytes(serialization.Encoding.DER)
            ).scalar_subquery()))
    assert made == 1


def test_a_replaced_generation_retires_itself_once_past_its_end(
        service: Service, clock: FixedClock) -> None:
    """The first issuing CA, replaced by a rollover, serves while it can still have an
    unexpired certificate; a lifecycle run after its notAfter retires it: the tenant's CA
    bundle and CRL chain leave it out, and its CRL is no longer renewed."""
    first, _ = acme(service)
    second = cert(service.hierarchy.rollover(ACME).der)
    end = first.not_valid_after_utc
    clock.set(end - dt.timedelta(days=1))
    service.lifecycle.run()
    assert len(service.crls.chain(ACME).views) == 3
    assert len(service.hierarchy.ca_certificates(ACME)) == 3
    clock.set(end + dt.timedelta(days=1))
    service.lifecycle.run()
    bundle = [cert(v.der) for v in service.hierarchy.ca_certificates(ACME)]
    assert [c.serial_number for c in bundle if c.subject == second.subject] == [
        second.serial_number]
    chain = service.crls.chain(ACME)
    assert [aki(x509.load_der_x509_crl(v.der)) for v in chain.views[:1]] == [ski(second)]
    assert len(chain.views) == 2
    rows = [(v.generation, v.current, v.retired_at is not None)
            for v in service.hierarchy.generations() if v.tenant == ACME]
    assert rows == [(1, False, True), (2, True, False)]
    # the retirement is audited, once, as the lifecycle's
    assert [(e.actor, e.tenant, e.target, e.details)
            for e in service.audit.events(action="ca.retire")] == [
        ("lifecycle", ACME, ACME, {"generation": 1, "serial": f"{first.serial_number:X}"})]
    # no CRL of it made any more, however long the lifecycle runs
    made = crl_count(service, first)
    for _ in range(3):
        clock.advance(dt.timedelta(days=10))
        service.lifecycle.run()
    assert crl_count(service, first) == made
    with pytest.raises(NotFound):
        service.crls.current(ACME, 1)


def crl_count(service: Service, ca: x509.Certificate) -> int:
    with service.database.reading() as session:
        return session.scalar(select(func.count()).select_from(Crl).join(
            Authority, Crl.authority_id == Authority.id).where(
            Authority.der == ca.public_bytes(serialization.Encoding.DER))) or 0
