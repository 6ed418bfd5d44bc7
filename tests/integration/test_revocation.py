"""Revoke, suspend, reinstate; the CRL and the OCSP answers that publish them.

Everything here goes through ``Service`` on both databases with a FixedClock; what is judged
is the DER a gateway would fetch, parsed with pyca/cryptography, not Tegata's own views.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select, update

from ca.clock import FixedClock
from ca.db.models import Authority, Hold, Tenant
from ca.errors import InvalidInput, NotFound, NotPermitted
from ca.service import CertificateView, Service, build_service
from ca.states import State
from tests.moments import MOMENTS
from tests.support.environment import BASE_URL
from tests.support.issuing import crl_reasons, issue_one, issuing_certificate, ocsp_request

REASONS = ["keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation",
           "privilegeWithdrawn"]
SECOND = dt.timedelta(seconds=1)


@pytest.fixture
def users(service: Service) -> Service:
    for login in ("alice", "bob", "carol"):
        service.users.add("default", login, email=f"{login}@example.com", allow=True)
    return service


def crl_of(service: Service, tenant: str | None = "default") -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(service.crls.current(tenant).der)


def number_of(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def root_cert(service: Service) -> x509.Certificate:
    return x509.load_der_x509_certificate(service.hierarchy.ca_certificates(None)[0].der)


def ask(service: Service, view: CertificateView, **options: object) -> ocsp.OCSPResponse:
    der = service.ocsp.respond(ocsp_request(service, view, **options)).der  # type: ignore[arg-type]
    return ocsp.load_der_ocsp_response(der)


def stranger(issuer: x509.Certificate, serial: int) -> x509.Certificate:
    """A certificate naming ``issuer`` with a serial Tegata never issued (signed by a throwaway
    key: only its serial and the issuer's name and key go into an OCSP CertID)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateBuilder().subject_name(x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])).issuer_name(issuer.subject)
        .public_key(key.public_key()).serial_number(serial)
        .not_valid_before(MOMENTS.start - dt.timedelta(days=1))
        .not_valid_after(MOMENTS.start + dt.timedelta(days=30))
        .sign(key, hashes.SHA256()))


# --- revoke ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", REASONS, ids=REASONS)
def test_a_revoked_certificate_is_listed_at_once_with_its_reason(users: Service,
                                                                 reason: str) -> None:
    view = issue_one(users)
    users.revocation.revoke("default", view.serial, reason=reason)
    crl = crl_of(users)
    assert crl_reasons(crl) == {view.serial: reason}
    (entry,) = list(crl)
    assert entry.revocation_date_utc == MOMENTS.start


def test_an_unspecified_revocation_is_listed_without_a_reason_code(users: Service) -> None:
    # RFC 5280, 5.3.1: the reasonCode unspecified SHOULD be absent
    view = issue_one(users)
    users.revocation.revoke("default", view.serial)
    (entry,) = list(crl_of(users))
    assert format(entry.serial_number, "X") == view.serial
    assert list(entry.extensions) == []


def test_revoking_again_keeps_the_first_date_and_reason(users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    users.revocation.revoke("default", view.serial, reason="superseded")
    number = number_of(crl_of(users))
    clock.advance(dt.timedelta(hours=1))

    again = users.revocation.revoke("default", view.serial, reason="affiliationChanged")

    assert again.revoked_at == MOMENTS.start and again.revocation_reason == "superseded"
    crl = crl_of(users)
    assert crl_reasons(crl) == {view.serial: "superseded"}
    assert number_of(crl) == number  # nothing changed, nothing republished


def test_revoking_again_only_upgrades_the_reason_to_key_compromise(
        users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    users.revocation.revoke("default", view.serial, reason="superseded")
    clock.advance(dt.timedelta(hours=1))

    upgraded = users.revocation.revoke("default", view.serial, reason="keyCompromise")
    clock.advance(dt.timedelta(hours=1))
    downgraded = users.revocation.revoke("default", view.serial, reason="unspecified")

    assert upgraded.revocation_reason == "keyCompromise"
    assert downgraded.revocation_reason == "keyCompromise"
    assert downgraded.revoked_at == MOMENTS.start
    crl = crl_of(users)
    assert crl_reasons(crl) == {view.serial: "keyCompromise"}
    assert next(iter(crl)).revocation_date_utc == MOMENTS.start
    answer = ask(users, view)
    assert answer.revocation_reason is x509.ReasonFlags.key_compromise
    assert answer.revocation_time_utc == MOMENTS.start


def test_a_revoked_certificate_never_comes_back(users: Service) -> None:
    view = issue_one(users)
    users.revocation.revoke("default", view.serial, reason="keyCompromise")

    with pytest.raises(NotPermitted, match=f"certificate {view.serial} is revoked"):
        users.revocation.suspend("default", view.serial)
    with pytest.raises(NotPermitted, match=f"certificate {view.serial} is revoked"):
        users.revocation.reinstate("default", view.serial)

    after = users.certificates.get(view.serial)
    assert after.state is State.REVOKED and after.revocation_reason == "keyCompromise"
    assert crl_reasons(crl_of(users)) == {view.serial: "keyCompromise"}


def test_revoking_purges_the_key_material(users: Service) -> None:
    view = issue_one(users)
    assert view.has_key_material
    revoked = users.revocation.revoke("default", view.serial, reason="keyCompromise")
    assert not revoked.has_key_material
    assert not users.certificates.get(view.serial).has_key_material
    with pytest.raises(NotPermitted, match="revoked"):
        users.certificates.bundle(view.serial, tenant="default")


def test_revoking_a_suspended_certificate_lists_the_revocation_reason(
        users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    users.revocation.suspend("default", view.serial)
    clock.advance(dt.timedelta(minutes=3))
    revoked = users.revocation.revoke("default", view.serial, reason="privilegeWithdrawn")
    assert revoked.state is State.REVOKED
    crl = crl_of(users)
    assert crl_reasons(crl) == {view.serial: "privilegeWithdrawn"}
    assert next(iter(crl)).revocation_date_utc == MOMENTS.start + dt.timedelta(minutes=3)


def test_an_unknown_reason_is_refused_and_changes_nothing(users: Service) -> None:
    view = issue_one(users)
    number = number_of(crl_of(users))
    with pytest.raises(InvalidInput, match="reason 'certificateHold' is not one of"):
        users.revocation.revoke("default", view.serial, reason="certificateHold")
    assert users.certificates.get(view.serial).state is State.VALID
    assert number_of(crl_of(users)) == number and crl_reasons(crl_of(users)) == {}


def test_a_serial_of_another_tenant_is_not_found(users: Service) -> None:
    users.hierarchy.create_tenant("acme", ca_key_type="ec-p256")
    users.users.add("acme", "dave", email="dave@example.com", allow=True)
    theirs = issue_one(users, "dave", tenant="acme")
    for change in (users.revocation.revoke, users.revocation.suspend, users.revocation.reinstate):
        with pytest.raises(NotFound, match=f"no certificate with serial {theirs.serial}"):
            change("default", theirs.serial)
    assert users.certificates.get(theirs.serial).state is State.VALID


# --- suspend and reinstate ------------------------------------------------------------------


def test_a_suspended_certificate_is_listed_as_certificate_hold_until_reinstated(
        users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    suspended = users.revocation.suspend("default", view.serial)
    assert suspended.state is State.SUSPENDED
    crl = crl_of(users)
    assert crl_reasons(crl) == {view.serial: "certificateHold"}
    assert next(iter(crl)).revocation_date_utc == MOMENTS.start

    clock.advance(dt.timedelta(minutes=1))
    reinstated = users.revocation.reinstate("default", view.serial)

    assert reinstated.state is State.VALID
    assert crl_reasons(crl_of(users)) == {}
    assert reinstated.has_key_material  # a hold is reversible: the key stays


def test_suspending_twice_is_one_hold(users: Service) -> None:
    view = issue_one(users)
    users.revocation.suspend("default", view.serial)
    number = number_of(crl_of(users))
    users.revocation.suspend("default", view.serial)
    assert number_of(crl_of(users)) == number
    with users.database.reading() as session:
        holds = session.scalars(select(Hold)).all()
    assert [(h.cause, h.lifted_at) for h in holds] == [("manual", None)]


def test_reinstating_never_lifts_a_permission_hold(users: Service) -> None:
    view = issue_one(users)
    users.users.set_permission("default", ("alice",), allow=False)
    users.revocation.suspend("default", view.serial)
    users.revocation.reinstate("default", view.serial)
    assert users.certificates.get(view.serial).state is State.SUSPENDED
    assert crl_reasons(crl_of(users)) == {view.serial: "certificateHold"}
    users.users.set_permission("default", ("alice",), allow=True)
    assert users.certificates.get(view.serial).state is State.VALID


def test_every_change_publishes_a_larger_crl_number_at_once(
        users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    numbers = [number_of(crl_of(users))]
    for change in (users.revocation.suspend, users.revocation.reinstate):
        clock.advance(SECOND)
        change("default", view.serial)
        numbers.append(number_of(crl_of(users)))
    clock.advance(SECOND)
    users.revocation.revoke("default", view.serial, reason="keyCompromise")
    numbers.append(number_of(crl_of(users)))
    assert numbers == sorted(set(numbers)), numbers


def test_a_change_that_changes_nothing_publishes_nothing(users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    number = number_of(crl_of(users))
    clock.advance(SECOND)
    # no hold to lift
    assert users.revocation.reinstate("default", view.serial).state is State.VALID
    assert number_of(crl_of(users)) == number


# Withdrawing a permission, retiring a user and reissuing with reissue=revoke change a
# certificate's status just as revoke and suspend do: the CRL must follow at once (SPEC,
# "regenerated ... at once on every change"), not up to half a CRL validity (3.5 days) later.


def test_withdrawing_permission_publishes_a_new_crl_at_once(
        users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    before = number_of(crl_of(users))
    clock.advance(SECOND)
    users.users.set_permission("default", ("alice",), allow=False)
    crl = crl_of(users)
    assert crl_reasons(crl) == {view.serial: "certificateHold"}
    assert number_of(crl) > before


def test_granting_permission_again_publishes_a_new_crl_at_once(
        users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    users.users.set_permission("default", ("alice",), allow=False)
    users.crls.publish("default")
    clock.advance(SECOND)
    users.users.set_permission("default", ("alice",), allow=True)
    assert users.certificates.get(view.serial).state is State.VALID
    assert crl_reasons(crl_of(users)) == {}


def test_retiring_a_user_publishes_a_new_crl_at_once(users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    users.crls.publish("default")  # what gateways hold before the change
    clock.advance(SECOND)
    users.users.retire("default", "alice")
    assert users.certificates.get(view.serial).revocation_reason == "affiliationChanged"
    assert crl_reasons(crl_of(users)) == {view.serial: "affiliationChanged"}


def test_reissuing_with_revoke_publishes_a_new_crl_at_once(
        users: Service, clock: FixedClock) -> None:
    old = issue_one(users)
    users.crls.publish("default")  # what gateways hold before the change
    clock.advance(SECOND)
    new = issue_one(users, reissue="revoke")
    assert crl_reasons(crl_of(users)) == {old.serial: "superseded"}
    assert new.serial not in crl_reasons(crl_of(users))


# --- what the CRLs say ----------------------------------------------------------------------


def test_the_issuing_cas_crl_names_its_issuer_scope_and_number(users: Service) -> None:
    crl = crl_of(users)
    issuing = issuing_certificate(users)
    assert crl.issuer == issuing.subject
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    ski = issuing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical and aki.value.key_identifier == ski.digest
    number = crl.extensions.get_extension_for_class(x509.CRLNumber)
    assert not number.critical and 0 < number.value.crl_number < 2**159
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical  # RFC 5280, 5.2.5
    assert idp.value.only_contains_user_certs and not idp.value.only_contains_ca_certs
    assert idp.value.full_name == [x509.UniformResourceIdentifier(f"{BASE_URL}/crl/default.crl")]
    # the same URL the certificates name as their CRL distribution point
    leaf = x509.load_der_x509_certificate(issue_one(users).der)
    (point,) = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert point.full_name == idp.value.full_name


def test_the_roots_crl_covers_ca_certificates_only(users: Service) -> None:
    crl = crl_of(users, None)
    root = root_cert(users)
    assert crl.issuer == root.subject
    assert crl.is_signature_valid(root.public_key())  # type: ignore[arg-type]
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.critical
    assert idp.value.only_contains_ca_certs and not idp.value.only_contains_user_certs
    assert list(crl) == []
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=30)


def test_a_crl_is_backdated_five_minutes_and_valid_seven_days(users: Service) -> None:
    crl = crl_of(users)
    assert crl.last_update_utc == MOMENTS.start - dt.timedelta(minutes=5)
    assert crl.next_update_utc == crl.last_update_utc + dt.timedelta(days=7)


def test_each_tenants_crl_lists_only_its_own_certificates(users: Service) -> None:
    users.hierarchy.create_tenant("acme", ca_key_type="ec-p256")
    users.users.add("acme", "dave", email="dave@example.com", allow=True)
    ours, theirs = issue_one(users), issue_one(users, "dave", tenant="acme")
    users.revocation.revoke("default", ours.serial, reason="keyCompromise")
    users.revocation.suspend("acme", theirs.serial)
    assert crl_reasons(crl_of(users)) == {ours.serial: "keyCompromise"}
    assert crl_reasons(crl_of(users, "acme")) == {theirs.serial: "certificateHold"}
    idp = crl_of(users, "acme").extensions.get_extension_for_class(x509.IssuingDistributionPoint)
    assert idp.value.full_name == [x509.UniformResourceIdentifier(f"{BASE_URL}/crl/acme.crl")]


def test_current_crl_is_kept_until_half_its_validity_then_renewed(
        users: Service, clock: FixedClock) -> None:
    first = users.crls.current("default")
    half = first.this_update + (first.next_update - first.this_update) / 2
    clock.set(half - SECOND)
    assert users.crls.current("default").number == first.number
    clock.set(half)
    renewed = users.crls.current("default")
    assert renewed.number > first.number
    assert renewed.next_update > users.clock.now() + dt.timedelta(days=6)


def test_an_expired_entry_is_dropped_only_after_a_crl_listed_it_past_its_expiry(
        users: Service, clock: FixedClock) -> None:
    # RFC 5280, 3.3: an entry stays until one CRL issued beyond the validity period lists it
    view = issue_one(users, expires=dt.date(2026, 3, 3))
    not_after = view.not_after
    assert not_after == dt.datetime(2026, 3, 3, 23, 59, 59, tzinfo=dt.UTC)
    users.revocation.revoke("default", view.serial, reason="keyCompromise")
    moments = [not_after - dt.timedelta(hours=1), not_after, not_after + dt.timedelta(minutes=1),
               not_after + dt.timedelta(minutes=6), not_after + dt.timedelta(minutes=7),
               not_after + dt.timedelta(minutes=8), not_after + dt.timedelta(days=1)]
    made: list[x509.CertificateRevocationList] = []
    for moment in moments:
        clock.set(moment)
        made.append(x509.load_der_x509_crl(users.crls.publish("default").der))

    present = [view.serial in crl_reasons(crl) for crl in made]
    assert present[0] and not present[-1], present  # listed while valid, dropped at last
    for index in range(len(made)):
        if not present[index]:
            assert any(present[i] and made[i].last_update_utc > not_after
                       for i in range(index)), f"dropped from CRL {index} too early: {present}"


def test_a_crl_lists_each_reason_and_hold_together(users: Service) -> None:
    made = {}
    for reason in [*REASONS, "unspecified"]:
        users.users.add("default", f"u-{reason.lower()}", email="u@example.com", allow=True)
        view = issue_one(users, f"u-{reason.lower()}")
        users.revocation.revoke("default", view.serial, reason=reason)
        made[view.serial] = None if reason == "unspecified" else reason
    held = issue_one(users, "bob")
    users.revocation.suspend("default", held.serial)
    made[held.serial] = "certificateHold"
    valid = issue_one(users, "carol")
    crl = crl_of(users)
    assert crl_reasons(crl) == made
    assert valid.serial not in crl_reasons(crl)


# --- OCSP through the service ---------------------------------------------------------------


@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256()], ids=["sha1", "sha256"])
def test_ocsp_answers_in_the_hash_of_the_request(users: Service,
                                                 algorithm: hashes.HashAlgorithm) -> None:
    view = issue_one(users)
    request = ocsp.load_der_ocsp_request(ocsp_request(users, view, algorithm=algorithm))
    answer = ask(users, view, algorithm=algorithm)
    assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
    assert answer.hash_algorithm.name == algorithm.name
    assert answer.serial_number == request.serial_number
    assert answer.issuer_name_hash == request.issuer_name_hash
    assert answer.issuer_key_hash == request.issuer_key_hash


def test_ocsp_says_revoked_with_reason_and_time(users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    clock.advance(dt.timedelta(minutes=10))
    users.revocation.revoke("default", view.serial, reason="keyCompromise")
    answer = ask(users, view)
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason is x509.ReasonFlags.key_compromise
    assert answer.revocation_time_utc == MOMENTS.start + dt.timedelta(minutes=10)


def test_ocsp_says_revoked_without_reason_for_an_unspecified_revocation(users: Service) -> None:
    view = issue_one(users)
    users.revocation.revoke("default", view.serial)
    answer = ask(users, view, algorithm=hashes.SHA256())
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason is None


def test_ocsp_says_certificate_hold_for_a_suspension_and_good_after_reinstating(
        users: Service) -> None:
    view = issue_one(users)
    users.revocation.suspend("default", view.serial)
    answer = ask(users, view)
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert answer.revocation_reason is x509.ReasonFlags.certificate_hold
    assert answer.revocation_time_utc == MOMENTS.start
    users.revocation.reinstate("default", view.serial)
    assert ask(users, view).certificate_status is ocsp.OCSPCertStatus.GOOD


def test_ocsp_is_never_good_for_a_serial_tegata_did_not_issue(users: Service) -> None:
    issuing = issuing_certificate(users)
    for serial in (0x1234, 1, 2**159 - 1):
        request = (ocsp.OCSPRequestBuilder()
                   .add_certificate(stranger(issuing, serial), issuing, hashes.SHA1()).build())
        answer = ocsp.load_der_ocsp_response(
            users.ocsp.respond(request.public_bytes(serialization.Encoding.DER)).der)
        assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN, hex(serial)


def test_ocsp_does_not_vouch_for_another_tenants_serial(users: Service) -> None:
    users.hierarchy.create_tenant("acme", ca_key_type="ec-p256")
    users.users.add("acme", "dave", email="dave@example.com", allow=True)
    theirs = issue_one(users, "dave", tenant="acme")
    # acme's serial, asked of the default tenant's issuing CA
    request = (ocsp.OCSPRequestBuilder().add_certificate(
        stranger(issuing_certificate(users), int(theirs.serial, 16)), issuing_certificate(users),
        hashes.SHA1()).build())
    answer = ocsp.load_der_ocsp_response(
        users.ocsp.respond(request.public_bytes(serialization.Encoding.DER)).der)
    assert answer.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
    assert ask(users, theirs, tenant="acme").certificate_status is ocsp.OCSPCertStatus.GOOD


def test_ocsp_refuses_another_issuer_as_unauthorized(users: Service) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone Else's CA")])
    other = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
             .public_key(key.public_key()).serial_number(7)
             .not_valid_before(MOMENTS.start - dt.timedelta(days=1))
             .not_valid_after(MOMENTS.start + dt.timedelta(days=365))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(key, hashes.SHA256()))
    request = ocsp.OCSPRequestBuilder().add_certificate(stranger(other, 0x42), other,
                                                        hashes.SHA1()).build()
    answer = ocsp.load_der_ocsp_response(
        users.ocsp.respond(request.public_bytes(serialization.Encoding.DER)).der)
    assert answer.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x30\x03\x02\x01\x01", b"\x30" * 20_000],
                         ids=["empty", "garbage", "not-a-request", "too-large"])
def test_ocsp_answers_garbage_with_malformed_request(users: Service, data: bytes) -> None:
    answer = users.ocsp.respond(data)
    assert not answer.cacheable
    parsed = ocsp.load_der_ocsp_response(answer.der)
    assert parsed.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_an_ocsp_response_is_reused_until_half_its_validity(
        users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    request = ocsp_request(users, view)
    first = users.ocsp.respond(request)
    assert first.cacheable and first.made_at is not None and first.next_update is not None
    # half its life from when it was made: its thisUpdate is backdated by 30 s, and at a
    # 60 s validity half of thisUpdate..nextUpdate would be gone the moment it is made
    half = first.made_at + (first.next_update - first.made_at) / 2
    clock.set(half - SECOND)
    assert users.ocsp.respond(request).der == first.der
    clock.set(half)
    renewed = users.ocsp.respond(request)
    assert renewed.der != first.der
    assert renewed.this_update is not None and renewed.this_update > first.this_update


def test_a_status_change_is_answered_at_once_not_from_the_kept_response(
        users: Service) -> None:
    view = issue_one(users)
    request = ocsp_request(users, view)
    good = users.ocsp.respond(request)
    users.revocation.suspend("default", view.serial)
    held = ocsp.load_der_ocsp_response(users.ocsp.respond(request).der)
    assert held.certificate_status is ocsp.OCSPCertStatus.REVOKED
    users.revocation.reinstate("default", view.serial)
    again = users.ocsp.respond(request)
    assert ocsp.load_der_ocsp_response(again.der).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert again.der != good.der  # made afresh, not the kept "good" of before the hold


def test_a_status_change_made_by_another_replica_is_answered_after_the_next_feed_read(
        users: Service, clock: FixedClock) -> None:
    # answers are kept in memory; the change feed, read a few times a second, names the
    # ones another process changed (the timing is bench/ocsp.py's, the processes are in
    # tests/api/test_ocsp_processes.py)
    view = issue_one(users)
    request = ocsp_request(users, view)
    users.ocsp.respond(request)
    other = build_service(users.settings, clock=clock)
    try:
        other.revocation.revoke("default", view.serial, reason="keyCompromise")
    finally:
        other.engine.dispose()
    users.ocsp.catch_up()
    answer = ocsp.load_der_ocsp_response(users.ocsp.respond(request).der)
    assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED


def test_a_request_with_a_nonce_gets_a_fresh_response_echoing_it(users: Service) -> None:
    view = issue_one(users)
    answers = [users.ocsp.respond(ocsp_request(users, view, nonce=n))
               for n in (b"nonce-one-16byte", b"nonce-two-16byte")]
    assert answers[0].der != answers[1].der
    for nonce, answer in zip((b"nonce-one-16byte", b"nonce-two-16byte"), answers, strict=True):
        assert not answer.cacheable
        parsed = ocsp.load_der_ocsp_response(answer.der)
        assert parsed.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    plain = ocsp.load_der_ocsp_response(users.ocsp.respond(ocsp_request(users, view)).der)
    with pytest.raises(x509.ExtensionNotFound):
        plain.extensions.get_extension_for_class(x509.OCSPNonce)


def test_the_responder_is_a_delegated_ocsp_signer_of_the_issuing_ca(users: Service) -> None:
    view = issue_one(users)
    answer = ask(users, view)
    (responder,) = answer.certificates
    issuing = issuing_certificate(users)
    responder.verify_directly_issued_by(issuing)
    eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert not responder.extensions.get_extension_for_class(x509.OCSPNoCheck).critical
    assert not responder.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ski = responder.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert answer.responder_key_hash == ski.digest
    assert (responder.not_valid_after_utc - MOMENTS.start) == dt.timedelta(days=7)
    public_key = responder.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(answer.signature, answer.tbs_response_bytes,
                      ec.ECDSA(answer.signature_hash_algorithm))  # type: ignore[arg-type]


def responder_serial(service: Service, view: CertificateView) -> int:
    # a nonce: a fresh signature, never a kept response
    answer = ask(service, view, nonce=service.clock.now().isoformat().encode())
    return answer.certificates[0].serial_number


def test_the_responder_is_replaced_after_half_its_seven_day_life(
        users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    first = responder_serial(users, view)
    clock.advance(dt.timedelta(days=3, hours=12) - SECOND)
    assert responder_serial(users, view) == first
    clock.advance(SECOND)
    second = responder_serial(users, view)
    assert second != first
    answer = ask(users, view, nonce=b"after-rotation")
    assert answer.certificates[0].not_valid_after_utc == users.clock.now() + dt.timedelta(days=7)
    with users.database.reading() as session:
        rows = session.scalars(select(Authority).where(Authority.kind == "ocsp")
                               .order_by(Authority.id)).all()
    assert [(int(r.serial, 16), r.retired_at is not None) for r in rows] == [
        (first, True), (second, False)]


def test_another_replica_uses_the_same_responder_until_it_is_due(
        users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    first = responder_serial(users, view)
    clock.advance(dt.timedelta(days=1))
    other = build_service(users.settings, clock=clock)
    try:
        assert responder_serial(other, view) == first
    finally:
        other.engine.dispose()


def test_ocsp_validity_is_the_tenants_setting(users: Service, clock: FixedClock) -> None:
    view = issue_one(users)
    answer = ask(users, view)
    assert answer.next_update_utc - answer.this_update_utc == dt.timedelta(seconds=300)
    assert answer.this_update_utc <= MOMENTS.start <= answer.next_update_utc
    with users.database.transaction() as session:
        session.execute(update(Tenant).where(Tenant.name == "default")
                        .values(ocsp_validity_seconds=60))
    fresh = build_service(users.settings, clock=clock)
    try:
        answer = ask(fresh, view)
    finally:
        fresh.engine.dispose()
    assert answer.next_update_utc - answer.this_update_utc == dt.timedelta(seconds=60)
