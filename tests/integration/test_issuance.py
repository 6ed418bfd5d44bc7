"""The first issuance: rules, the expiry zone chain, sealed key material, canonical serials."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import select

from ca.db.models import Certificate, KeyMaterial, Tenant, User
from ca.errors import Conflict, InvalidInput, NotFound, NotPermitted
from ca.service import IssueRequest, Service
from ca.states import State
from tests.moments import MOMENTS


@pytest.fixture
def alice(service: Service) -> str:
    service.users.add("default", "alice", email="alice@example.com", display_name="Alice",
                     allow=True)
    return "alice"


def test_issued_certificate_is_a_client_certificate_for_the_user(service: Service,
                                                                 alice: str) -> None:
    view = service.certificates.issue(IssueRequest(tenant="default", logins=(alice,)))[0]
    cert = x509.load_der_x509_certificate(view.der)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "alice"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Default"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@example.com"]
    assert cert.not_valid_before_utc < MOMENTS.start  # backdated for clock skew
    assert view.state is State.VALID
    assert view.serial == format(cert.serial_number, "X")
    assert cert.serial_number.bit_length() >= 64


def test_default_expiry_is_one_year_in_the_tenant_zone(service: Service, alice: str) -> None:
    view = service.certificates.issue(IssueRequest(tenant="default", logins=(alice,)))[0]
    assert view.expiry_date == dt.date(2027, 3, 2) and view.expiry_zone == "UTC"
    assert view.not_after == dt.datetime(2027, 3, 2, 23, 59, 59, tzinfo=dt.UTC)


def test_zone_comes_from_request_then_admin_then_tenant(service: Service, alice: str) -> None:
    with service.database.transaction() as session:
        session.scalar(select(Tenant).where(Tenant.name == "default")).timezone = "Europe/Paris"
    tenant_zone = service.certificates.issue(IssueRequest(tenant="default", logins=(alice,)))[0]
    assert tenant_zone.expiry_zone == "Europe/Paris"
    admin_zone = service.certificates.issue(IssueRequest(tenant="default", logins=(alice,)),
                               admin_zone="Asia/Tokyo")[0]
    assert admin_zone.expiry_zone == "Asia/Tokyo"
    asked = service.certificates.issue(IssueRequest(tenant="default", logins=(alice,),
                                       expires=dt.date(2026, 12, 31),
                                       timezone="Pacific/Honolulu"), admin_zone="Asia/Tokyo")[0]
    assert asked.expiry_zone == "Pacific/Honolulu"
    assert asked.not_after == dt.datetime(2027, 1, 1, 9, 59, 59, tzinfo=dt.UTC)


def test_the_expiry_date_and_zone_are_stored_with_the_certificate(service: Service,
                                                                  alice: str) -> None:
    view = service.certificates.issue(IssueRequest(tenant="default", logins=(alice,),
                                      expires=dt.date(2030, 1, 31), timezone="Asia/Tokyo"))[0]
    again = service.certificates.get(view.serial)
    assert (again.expiry_date, again.expiry_zone) == (dt.date(2030, 1, 31), "Asia/Tokyo")


@pytest.mark.parametrize(
    ("expires", "zone", "error", "message"),
    [(dt.date(2026, 3, 1), None, InvalidInput, "before today"),
     (dt.date(9999, 12, 31), None, InvalidInput, "latest allowed 9999-12-30"),
     (None, "Mars/Base", InvalidInput, "not an IANA time zone")],
    ids=["past", "after-latest", "bad-zone"],
)
def test_bad_expiry_requests_are_refused_and_change_nothing(
        service: Service, alice: str, expires: dt.date | None, zone: str | None,
        error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        service.certificates.issue(IssueRequest(tenant="default", logins=(alice,), expires=expires,
                                   timezone=zone))
    with service.database.transaction() as session:
        assert session.scalars(select(Certificate)).all() == []


def test_users_without_permission_retired_users_and_ended_subscriptions_are_refused(
        service: Service, alice: str) -> None:
    service.users.add("default", "bob", email="bob@example.com")
    with pytest.raises(NotPermitted, match="bob: the user has no secure-access permission"):
        service.certificates.issue(IssueRequest(tenant="default", logins=("bob",)))
    with service.database.transaction() as session:
        session.scalar(select(User).where(User.login == "alice")).status = "retired"
    with pytest.raises(NotPermitted, match="alice: the user is retired"):
        service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))
    service.users.add("default", "carol", email="carol@example.com", allow=True)
    with service.database.transaction() as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == "default"))
        tenant.subscription_ends_on = dt.date(2026, 3, 1)
        tenant.subscription_ends_at = dt.datetime(2026, 3, 1, 23, 59, 59, tzinfo=dt.UTC)
    with pytest.raises(NotPermitted, match="subscription ended on 2026-03-01"):
        service.certificates.issue(IssueRequest(tenant="default", logins=("carol",)))


def test_unknown_users_and_tenants_are_not_found(service: Service) -> None:
    with pytest.raises(NotFound, match="no user 'ghost'"):
        service.certificates.issue(IssueRequest(tenant="default", logins=("ghost",)))
    with pytest.raises(NotFound, match="no tenant 'nowhere'"):
        service.certificates.issue(IssueRequest(tenant="nowhere", logins=("ghost",)))


def test_logins_are_unique_ignoring_case(service: Service, alice: str) -> None:
    with pytest.raises(Conflict, match="already exists"):
        service.users.add("default", "ALICE", email="other@example.com")
    view = service.certificates.issue(IssueRequest(tenant="default", logins=("Alice",)))[0]
    assert view.login == "alice"


def test_private_key_is_sealed_at_rest_and_opens_only_for_its_certificate(
        service: Service, alice: str) -> None:
    view = service.certificates.issue(IssueRequest(tenant="default", logins=(alice,)))[0]
    with service.database.transaction() as session:
        row = session.scalar(select(Certificate).where(Certificate.serial == view.serial))
        sealed = session.get(KeyMaterial, row.id).sealed_key
    assert b"PRIVATE KEY" not in sealed
    der = service.keys.sealer.open(sealed, context=f"key:{view.serial}")
    key = serialization.load_der_private_key(der, None)
    cert = x509.load_der_x509_certificate(view.der)
    assert key.public_key() == cert.public_key()
    from ca.errors import ConfigError

    with pytest.raises(ConfigError, match="does not open"):
        service.keys.sealer.open(sealed, context="key:ABCDEF")


def test_certificates_are_found_by_any_spelling_of_their_serial(service: Service,
                                                                alice: str) -> None:
    serial = service.certificates.issue(IssueRequest(tenant="default", logins=(alice,)))[0].serial
    spaced = ":".join(serial[i:i + 2] for i in range(0, len(serial), 2)).lower()
    assert service.certificates.get(spaced).serial == serial
    assert service.certificates.get("00" + serial, tenant="default").serial == serial
    with pytest.raises(NotFound):
        service.certificates.get(serial, tenant="other")


def test_the_expiry_of_an_issued_certificate_never_changes(service: Service, alice: str) -> None:
    view = service.certificates.issue(IssueRequest(tenant="default", logins=(alice,)))[0]
    service.clock.advance(dt.timedelta(days=400))  # type: ignore[attr-defined]
    later = service.certificates.get(view.serial)
    assert later.not_after == view.not_after and later.state is State.EXPIRED


def test_a_certificate_never_outlives_its_issuing_ca(service: Service, alice: str) -> None:
    issuing_end = service.hierarchy.ca_certificates("default")[1].not_after
    with pytest.raises(InvalidInput, match=r"requested 2060-01-01, latest allowed 2046-03-0\d: "
                                           r"the tenant's issuing CA expires"):
        service.certificates.issue(IssueRequest(tenant="default", logins=(alice,),
                                   expires=dt.date(2060, 1, 1)))
    with service.database.transaction() as session:
        session.scalar(select(Tenant).where(Tenant.name == "default")).default_validity = "P100Y"
    capped = service.certificates.issue(IssueRequest(tenant="default", logins=(alice,)))[0]
    assert capped.not_after <= issuing_end
    assert capped.expiry_date == expiry_latest(issuing_end)


def expiry_latest(end: dt.datetime) -> dt.date:
    from ca import expiry

    return expiry.latest_within(end, dt.UTC)
