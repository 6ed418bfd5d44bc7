"""A revoked certificate keeps its CRL entry's DER (``certificates.crl_entry``, migration
0013) and every later CRL lays the kept bytes instead of encoding the entry again; holds are
made with each CRL, as before. On both databases, through ``Service``."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from sqlalchemy import select, update

from ca.clock import FixedClock
from ca.db import migrate
from ca.db.models import Certificate, Hold
from ca.service import CertificateView, IssueRequest, Service, crls
from ca.x509 import crl
from tests.moments import MOMENTS
from tests.support.databases import downgrade

TENANT = "acme"
SHOWN = "株式会社アクメ"
LOGINS = ("taro", "hanako", "jiro")


@pytest.fixture
def acme(service: Service) -> dict[str, CertificateView]:
    service.hierarchy.create_tenant(TENANT, display_name=SHOWN, ca_key_type="ec-p256")
    for login in LOGINS:
        service.users.add(TENANT, login, email=f"{login}@example.jp", allow=True)
    return {view.login: view for view in service.certificates.issue(IssueRequest(tenant=TENANT,
                                                                     logins=LOGINS))}


def entries(service: Service) -> dict[str, tuple[dt.datetime, str | None]]:
    """What the tenant's newest CRL lists: serial -> (revocation date, reasonCode)."""
    made = x509.load_der_x509_crl(service.crls.current(TENANT).der)
    listed = {}
    for entry in made:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = None
        listed[format(entry.serial_number, "X")] = (entry.revocation_date_utc, reason)
    return listed


def kept(service: Service, serial: str) -> bytes | None:
    with service.database.reading() as session:
        return session.scalar(select(Certificate.crl_entry)
                              .where(Certificate.serial == serial))


def entry(serial: str, at: dt.datetime, reason: str | None) -> bytes:
    return crl.entry_der(crl.Entry(serial=int(serial, 16), revoked_at=at, reason=reason))


def keep(service: Service, serial: str, value: bytes | None) -> None:
    with service.database.transaction() as session:
        session.execute(update(Certificate).where(Certificate.serial == serial)
                        .values(crl_entry=value))


def test_a_revocation_keeps_its_entry_and_the_next_crl_lays_the_kept_bytes(
        service: Service, acme: dict[str, CertificateView]) -> None:
    taro, hanako = acme["taro"].serial, acme["hanako"].serial
    service.revocation.revoke(TENANT, taro, reason="keyCompromise")
    at = MOMENTS.start.replace(microsecond=0)
    assert kept(service, taro) == entry(taro, at, "keyCompromise")
    assert kept(service, hanako) is None  # not revoked: nothing kept
    # the CRL is made from the kept bytes, not from the row's columns: a planted entry
    # naming hanako's serial is what the next CRL says
    keep(service, taro, entry(hanako, at, "superseded"))
    service.crls.publish(TENANT)
    assert entries(service) == {hanako: (at, "superseded")}


def test_an_upgrade_to_key_compromise_rewrites_the_kept_entry_with_the_first_date(
        service: Service, clock: FixedClock, acme: dict[str, CertificateView]) -> None:
    taro = acme["taro"].serial
    service.revocation.revoke(TENANT, taro, reason="superseded")
    first = MOMENTS.start.replace(microsecond=0)
    clock.advance(dt.timedelta(hours=2))
    service.revocation.revoke(TENANT, taro, reason="keyCompromise")
    assert kept(service, taro) == entry(taro, first, "keyCompromise")
    assert entries(service) == {taro: (first, "keyCompromise")}


def test_a_revoked_certificate_with_no_kept_entry_is_listed_all_the_same(
        service: Service, acme: dict[str, CertificateView]) -> None:
    taro, jiro = acme["taro"].serial, acme["jiro"].serial
    service.revocation.revoke(TENANT, taro, reason="affiliationChanged")
    service.revocation.revoke(TENANT, jiro)
    keep(service, taro, None)  # as a row revoked by a path that kept nothing would be
    service.crls.publish(TENANT)
    at = MOMENTS.start.replace(microsecond=0)
    assert entries(service) == {taro: (at, "affiliationChanged"), jiro: (at, None)}


def test_a_hold_is_dated_from_the_oldest_unlifted_hold_and_goes_with_the_last(
        service: Service, clock: FixedClock, acme: dict[str, CertificateView]) -> None:
    hanako = acme["hanako"].serial
    service.revocation.suspend(TENANT, hanako)
    manual_at = MOMENTS.start.replace(microsecond=0)
    clock.advance(dt.timedelta(days=1))
    later = clock.now().replace(microsecond=0)
    with service.database.transaction() as session:  # the subscription lapses a day later
        cert_id = session.scalar(select(Certificate.id).where(Certificate.serial == hanako))
        session.add(Hold(certificate_id=cert_id, cause="subscription", placed_at=later))
    service.crls.publish(TENANT)
    assert entries(service) == {hanako: (manual_at, "certificateHold")}
    service.revocation.reinstate(TENANT, hanako)  # lifts the manual hold; the subscription's stays
    assert entries(service) == {hanako: (later, "certificateHold")}
    assert kept(service, hanako) is None  # a hold's entry is never kept
    with service.database.transaction() as session:
        session.execute(update(Hold).where(Hold.cause == "subscription")
                        .values(lifted_at=later))
    service.crls.publish(TENANT)
    assert entries(service) == {}


def test_the_upgrade_from_0009_keeps_each_revoked_certificates_entry(
        service: Service, clock: FixedClock, acme: dict[str, CertificateView]) -> None:
    taro, hanako, jiro = (acme[login].serial for login in LOGINS)
    service.revocation.revoke(TENANT, taro, reason="keyCompromise")
    clock.advance(dt.timedelta(minutes=7))
    service.revocation.revoke(TENANT, jiro)
    service.revocation.suspend(TENANT, hanako)
    before = entries(service)
    downgrade(service.engine, "0009")
    assert migrate.current_revision(service.engine) == "0009"

    service.database.upgrade()

    first = MOMENTS.start.replace(microsecond=0)
    assert kept(service, taro) == entry(taro, first, "keyCompromise")
    assert kept(service, jiro) == entry(jiro, first + dt.timedelta(minutes=7), None)
    assert kept(service, hanako) is None  # on hold: made with each CRL
    clock.advance(dt.timedelta(minutes=1))
    service.crls.publish(TENANT)
    assert entries(service) == before == {
        taro: (first, "keyCompromise"), jiro: (first + dt.timedelta(minutes=7), None),
        hanako: (first + dt.timedelta(minutes=7), "certificateHold")}


def test_every_batch_of_the_stream_is_listed(service: Service, monkeypatch: pytest.MonkeyPatch,
                                             acme: dict[str, CertificateView]) -> None:
    more = ("saburo", "shiro", "goro", "rokuro", "nanako")
    for login in more:
        service.users.add(TENANT, login, email=f"{login}@example.jp", allow=True)
    views = {v.login: v for v in service.certificates.issue(IssueRequest(tenant=TENANT,
                                                                         logins=more))}
    monkeypatch.setattr(crls, "STREAM_BATCH", 2)
    for login in ("taro", "hanako", "jiro", "saburo", "shiro"):  # 5 kept: batches 2, 2, 1
        service.revocation.revoke(TENANT, (acme | views)[login].serial, reason="superseded")
    keep(service, acme["taro"].serial, None)
    keep(service, acme["hanako"].serial, None)
    keep(service, acme["jiro"].serial, None)  # 3 without a kept entry: batches 2, 1
    for login in ("goro", "rokuro", "nanako"):  # 3 holds: batches 2, 1
        service.revocation.suspend(TENANT, views[login].serial)
    service.crls.publish(TENANT)
    at = MOMENTS.start.replace(microsecond=0)
    assert entries(service) == (
        {(acme | views)[login].serial: (at, "superseded")
         for login in ("taro", "hanako", "jiro", "saburo", "shiro")}
        | {views[login].serial: (at, "certificateHold") for login in ("goro", "rokuro", "nanako")})
