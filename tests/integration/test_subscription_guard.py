"""A mistyped subscription end must not destroy a tenant.

An end already past is refused unless the operator confirms it (``allow_past``); confirmed or
not, certificates are revoked no sooner than one full grace period after the suspension was
published, and a correction inside that period brings every certificate back. Checked in the
database, the CRL and OCSP at named moments (``tests/moments.py``).
"""

from __future__ import annotations

import datetime as dt
import importlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import select, update

from ca.clock import FixedClock
from ca.db.models import Certificate, Hold, Tenant
from ca.errors import NeedsConfirmation
from ca.service import CertificateView, IssueRequest, Service
from ca.states import State
from tests.moments import MOMENTS

TENANT = "acme"
ZONE = "Asia/Tokyo"
INTENDED = dt.date(2026, 12, 31)
MISTYPED = dt.date(2025, 12, 31)  # the wrong year
# the end of 31 December 2025 in Tokyo (UTC+9)
MISTYPED_END = dt.datetime(2025, 12, 31, 15, 0, tzinfo=dt.UTC)
GRACE = dt.timedelta(days=30)
SECOND = dt.timedelta(seconds=1)
REFUSAL = ("acme: subscription end 2025-12-31 in Asia/Tokyo is already past; confirming it "
           "would suspend every certificate now and revoke it 30 days later unless the end "
           "is corrected by then")  # the advice is the shells' (--allow-past, allow_past)


@pytest.fixture
def acme(service: Service) -> Service:
    """株式会社アクメ: alice and bob hold a certificate each; the contract runs to 2026-12-31."""
    service.hierarchy.create_tenant(TENANT, display_name="株式会社アクメ")
    for login in ("alice", "bob"):
        service.users.add(TENANT, login, email=f"{login}@example.co.jp", allow=True)
        service.certificates.issue(IssueRequest(tenant=TENANT, logins=(login,)))
    assert service.lifecycle.set_subscription(TENANT, ends=INTENDED, zone=ZONE).state == "active"
    return service


def certificates(service: Service) -> list[CertificateView]:
    return service.certificates.list_certificates(TENANT)


def states(service: Service) -> dict[str, State]:
    return {v.login: v.state for v in certificates(service)}


def holds(service: Service) -> dict[str, list[tuple[str, dt.datetime]]]:
    """serial -> the causes and times of its holds in force."""
    found: dict[str, list[tuple[str, dt.datetime]]] = {v.serial: [] for v in
                                                       certificates(service)}
    with service.database.reading() as session:
        for serial, cause, placed in session.execute(
                select(Certificate.serial, Hold.cause, Hold.placed_at).join(
                    Certificate, Hold.certificate_id == Certificate.id)
                .where(Hold.lifted_at.is_(None)).order_by(Hold.id)):
            if serial in found:
                found[serial].append((cause, placed))
    return found


def crl(service: Service) -> dict[str, tuple[str | None, dt.datetime]]:
    """serial -> (reason, revocation date) in the tenant's current CRL."""
    made = x509.load_der_x509_crl(service.crls.current(TENANT).der)
    found: dict[str, tuple[str | None, dt.datetime]] = {}
    for entry in made:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = None
        found[format(entry.serial_number, "X")] = (reason, entry.revocation_date_utc)
    return found


def ocsp_view(service: Service) -> dict[str, tuple[str, str | None, dt.datetime | None]]:
    """serial -> (status, reason, revocation time) as the OCSP responder says."""
    issuing = x509.load_der_x509_certificate(service.hierarchy.ca_certificates(TENANT)[1].der)
    found = {}
    for view in certificates(service):
        request = ocsp.OCSPRequestBuilder().add_certificate(
            x509.load_der_x509_certificate(view.der), issuing, hashes.SHA256()).build()
        answer = ocsp.load_der_ocsp_response(service.ocsp.respond(
            request.public_bytes(serialization.Encoding.DER)).der)
        revoked = answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
        found[view.serial] = (answer.certificate_status.name,
                              answer.revocation_reason.value if revoked and
                              answer.revocation_reason else None,
                              answer.revocation_time_utc if revoked else None)
    return found


def suspended_everywhere(service: Service, since: dt.datetime) -> None:
    serials = [v.serial for v in certificates(service)]
    assert states(service) == {"alice": State.SUSPENDED, "bob": State.SUSPENDED}
    assert holds(service) == {s: [("subscription", since)] for s in serials}
    assert crl(service) == {s: ("certificateHold", since) for s in serials}
    assert ocsp_view(service) == {s: ("REVOKED", "certificateHold", since) for s in serials}
    assert all(v.has_key_material for v in certificates(service))


def valid_everywhere(service: Service) -> None:
    serials = [v.serial for v in certificates(service)]
    assert states(service) == {"alice": State.VALID, "bob": State.VALID}
    assert holds(service) == {s: [] for s in serials}
    assert crl(service) == {}
    assert ocsp_view(service) == {s: ("GOOD", None, None) for s in serials}
    assert all(v.has_key_material for v in certificates(service))


def test_a_past_end_is_refused_and_changes_nothing(acme: Service) -> None:
    before = (acme.lifecycle.get_subscription(TENANT), crl(acme), acme.crls.current(TENANT).number,
              len(acme.audit.events()))

    with pytest.raises(NeedsConfirmation) as refused:
        acme.lifecycle.set_subscription(TENANT, ends=MISTYPED, zone=ZONE)

    assert (refused.value.message, refused.value.field, refused.value.confirm) == (
        REFUSAL, "ends", "allow_past")
    assert (acme.lifecycle.get_subscription(TENANT), crl(acme), acme.crls.current(TENANT).number,
            len(acme.audit.events())) == before
    valid_everywhere(acme)


def test_a_confirmed_past_end_suspends_now_and_revokes_only_a_full_grace_period_later(
        acme: Service, clock: FixedClock) -> None:
    view = acme.lifecycle.set_subscription(TENANT, ends=MISTYPED, zone=ZONE, allow_past=True)

    assert (view.state, view.ends_at, view.suspended_at, view.grace_ends_at) == (
        "grace", MISTYPED_END, MOMENTS.start, MOMENTS.start + GRACE)
    suspended_everywhere(acme, since=MOMENTS.start)
    (event,) = acme.audit.events(action="tenant.subscription")[-1:]
    assert event.details == {"ends_on": "2025-12-31", "zone": ZONE, "grace_days": 30,
                             "allow_past": True}

    clock.set(MOMENTS.grace_day_29)
    assert acme.lifecycle.run().revoked == 0
    clock.set(MOMENTS.grace_end_after_start - SECOND)
    assert acme.lifecycle.run().revoked == 0
    suspended_everywhere(acme, since=MOMENTS.start)

    clock.set(MOMENTS.grace_end_after_start)
    assert acme.lifecycle.run().revoked == 2
    end = MOMENTS.grace_end_after_start
    serials = [v.serial for v in certificates(acme)]
    assert {(v.state, v.revocation_reason, v.revoked_at, v.has_key_material)
            for v in certificates(acme)} == {(State.REVOKED, "cessationOfOperation", end, False)}
    assert crl(acme) == {s: ("cessationOfOperation", end) for s in serials}
    assert ocsp_view(acme) == {s: ("REVOKED", "cessationOfOperation", end) for s in serials}


def test_correcting_a_mistyped_end_inside_the_grace_period_restores_every_certificate(
        acme: Service, clock: FixedClock) -> None:
    acme.lifecycle.set_subscription(TENANT, ends=MISTYPED, zone=ZONE, allow_past=True)
    clock.set(MOMENTS.grace_day_29)
    acme.lifecycle.run()

    view = acme.lifecycle.set_subscription(TENANT, ends=INTENDED, zone=ZONE)

    assert (view.state, view.suspended_at) == ("active", None)
    valid_everywhere(acme)
    alice = next(v for v in certificates(acme) if v.login == "alice")
    assert acme.certificates.bundle(alice.serial, tenant=TENANT).serial == alice.serial
    clock.set(MOMENTS.grace_end_after_start)
    report = acme.lifecycle.run()
    assert (report.suspended, report.revoked) == (0, 0)
    valid_everywhere(acme)


def test_restating_the_end_in_force_needs_no_confirmation(acme: Service) -> None:
    # the operator only lengthens the grace period of an end already in force
    acme.lifecycle.set_subscription(TENANT, ends=MISTYPED, zone=ZONE, allow_past=True)
    view = acme.lifecycle.set_subscription(TENANT, ends=MISTYPED, zone=ZONE, grace_days=60)
    assert (view.state, view.suspended_at, view.grace_ends_at) == (
        "grace", MOMENTS.start, MOMENTS.start + dt.timedelta(days=60))
    suspended_everywhere(acme, since=MOMENTS.start)


def test_a_server_down_over_the_whole_grace_period_still_gives_a_full_grace_period(
        acme: Service, clock: FixedClock) -> None:
    # nothing ran between the end and long after its grace period: the first run publishes
    # the suspension, and revocation waits a full grace period from then
    grace = dt.timedelta(days=10)
    acme.lifecycle.set_subscription(TENANT, ends=INTENDED, zone=ZONE, grace_days=10)
    back = dt.datetime(2026, 12, 31, 15, 0, tzinfo=dt.UTC) + grace + dt.timedelta(days=3)
    clock.set(back)

    report = acme.lifecycle.run()

    assert (report.suspended, report.revoked) == (2, 0)
    view = acme.lifecycle.get_subscription(TENANT)
    assert (view.state, view.suspended_at, view.grace_ends_at) == ("grace", back, back + grace)
    suspended_everywhere(acme, since=back)
    clock.set(back + grace - SECOND)
    assert acme.lifecycle.run().revoked == 0
    clock.set(back + grace)
    assert acme.lifecycle.run().revoked == 2
    assert {v.state for v in certificates(acme)} == {State.REVOKED}


def test_the_upgrade_dates_a_suspension_already_published_from_its_holds(
        acme: Service, clock: FixedClock) -> None:
    # a deployment upgraded while 株式会社アクメ was in its grace period: the new column is
    # filled from the subscription holds in force, so the grace period is not restarted
    migration = importlib.import_module("migrations.versions.0008_subscription_suspended_at")
    acme.lifecycle.set_subscription(TENANT, ends=MISTYPED, zone=ZONE, allow_past=True)
    clock.set(MOMENTS.grace_day_29)
    with acme.database.transaction() as session:
        session.execute(update(Tenant).values(subscription_suspended_at=None))
        session.execute(migration.BACKFILL)

    with acme.database.reading() as session:
        assert dict(session.execute(select(Tenant.name, Tenant.subscription_suspended_at))
                    .all()) == {"default": None, TENANT: MOMENTS.start}  # type: ignore[arg-type]
    assert acme.lifecycle.get_subscription(TENANT).grace_ends_at == MOMENTS.start + GRACE
