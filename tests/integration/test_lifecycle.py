"""The subscription lifecycle at named moments: end of the last day, grace, grace end, renewal,
retirement, permission, expiry, and the CRL that must never go stale while Tegata runs.

Time only moves when a test moves the FixedClock; ``run_lifecycle`` is what the server runs
every minute.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from sqlalchemy import select

from ca.clock import FixedClock
from ca.db.models import Authority, Certificate, Crl, Hold, Tenant
from ca.errors import NotPermitted
from ca.service import CertificateView, LifecycleReport, Service
from ca.service import transitions as status_module
from ca.states import State
from tests.moments import MOMENTS
from tests.support.issuing import crl_reasons, issue_one

SECOND = dt.timedelta(seconds=1)
LAST_DAY = dt.date(2026, 3, 31)
# the end of 31 March in Tokyo (UTC+9): midnight there is 15:00 UTC
TOKYO_END = dt.datetime(2026, 3, 31, 15, 0, tzinfo=dt.UTC)
GRACE = dt.timedelta(days=30)
NOTHING = LifecycleReport()


@pytest.fixture
def users(service: Service) -> Service:
    for login in ("alice", "bob"):
        service.users.add("default", login, email=f"{login}@example.com", allow=True)
    return service


@pytest.fixture
def tokyo(users: Service) -> Service:
    """alice and bob each hold a certificate; the contract runs through 31 March, Tokyo."""
    issue_one(users, "alice")
    issue_one(users, "bob")
    view = users.lifecycle.set_subscription("default", ends=LAST_DAY, zone="Asia/Tokyo")
    assert view.ends_at == TOKYO_END and view.state == "active"
    return users


def certificates(service: Service, tenant: str = "default") -> list[CertificateView]:
    return service.certificates.list_certificates(tenant)


def states(service: Service, tenant: str = "default") -> dict[str, State]:
    return {v.serial: v.state for v in certificates(service, tenant)}


def holds(service: Service, serial: str) -> list[str]:
    """The causes of the certificate's holds still in force."""
    with service.database.reading() as session:
        return sorted(session.scalars(select(Hold.cause).join(
            Certificate, Hold.certificate_id == Certificate.id).where(
            Certificate.serial == serial, Hold.lifted_at.is_(None))))


def crl_entries(service: Service, tenant: str = "default") -> dict[str, str | None]:
    return crl_reasons(x509.load_der_x509_crl(service.crls.current(tenant).der))

def ocsp_of(service: Service, view: CertificateView) -> ocsp.OCSPResponse:
    issuing = x509.load_der_x509_certificate(service.hierarchy.ca_certificates(view.tenant)[1].der)
    request = ocsp.OCSPRequestBuilder().add_certificate(
        x509.load_der_x509_certificate(view.der), issuing, hashes.SHA256()).build()
    return ocsp.load_der_ocsp_response(
        service.ocsp.respond(request.public_bytes(serialization.Encoding.DER)).der)


def latest_crls(service: Service) -> dict[str, Crl]:
    """The newest CRL in the database per CA (not ``current_crl``, which would renew it)."""
    with service.database.reading() as session:
        found = {}
        for authority, tenant in session.execute(
                select(Authority, Tenant.name).outerjoin(Tenant, Authority.tenant_id == Tenant.id)
                .where(Authority.kind.in_(("root", "issuing")))):
            found[tenant or "root"] = session.scalar(
                select(Crl).where(Crl.authority_id == authority.id)
                .order_by(Crl.number.desc()).limit(1))
        return found


# --- the end of the subscription ------------------------------------------------------------


def test_one_second_before_the_end_of_the_last_day_in_tokyo_all_is_valid(
        tokyo: Service, clock: FixedClock) -> None:
    clock.set(TOKYO_END - SECOND)
    assert tokyo.lifecycle.run().suspended == 0
    assert set(states(tokyo).values()) == {State.VALID}
    assert tokyo.lifecycle.get_subscription("default").state == "active"
    assert issue_one(tokyo, "alice").state is State.VALID  # issuance still allowed


def test_at_the_end_of_the_last_day_in_tokyo_every_certificate_is_suspended(
        tokyo: Service, clock: FixedClock) -> None:
    clock.set(TOKYO_END)
    report = tokyo.lifecycle.run()

    assert report.suspended == 2 and report.revoked == 0
    assert set(states(tokyo).values()) == {State.SUSPENDED}
    for view in certificates(tokyo):
        assert holds(tokyo, view.serial) == ["subscription"]
        answer = ocsp_of(tokyo, view)
        assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert answer.revocation_reason is x509.ReasonFlags.certificate_hold
        assert answer.revocation_time_utc == TOKYO_END
    assert crl_entries(tokyo) == {v.serial: "certificateHold" for v in certificates(tokyo)}
    view = tokyo.lifecycle.get_subscription("default")
    assert view.state == "grace" and view.grace_ends_at == TOKYO_END + GRACE


def test_no_certificate_can_be_issued_once_the_subscription_has_ended(
        tokyo: Service, clock: FixedClock) -> None:
    clock.set(TOKYO_END)  # refused at the instant, whether or not the lifecycle ran yet
    with pytest.raises(NotPermitted, match="subscription ended on 2026-03-31"):
        issue_one(tokyo, "alice")
    assert len(certificates(tokyo)) == 2


def test_setting_an_end_already_past_suspends_at_once_when_confirmed(users: Service) -> None:
    view = issue_one(users, "alice")
    users.lifecycle.set_subscription("default", ends=dt.date(2026, 3, 1), allow_past=True)
    assert users.certificates.get(view.serial).state is State.SUSPENDED
    assert holds(users, view.serial) == ["subscription"]
    assert crl_entries(users) == {view.serial: "certificateHold"}


def test_an_open_ended_subscription_never_suspends(users: Service, clock: FixedClock) -> None:
    view = issue_one(users, "alice")
    users.lifecycle.set_subscription("default", ends=None)
    clock.advance(dt.timedelta(days=200))
    assert users.lifecycle.run().suspended == 0
    assert users.certificates.get(view.serial).state is State.VALID
    assert users.lifecycle.get_subscription("default").state == "active"


# --- renewal --------------------------------------------------------------------------------


def test_a_renewal_within_the_grace_period_reinstates_at_once(tokyo: Service,
                                                              clock: FixedClock) -> None:
    clock.set(TOKYO_END)
    tokyo.lifecycle.run()
    clock.set(TOKYO_END + GRACE - SECOND)

    view = tokyo.lifecycle.set_subscription("default", ends=dt.date(2027, 3, 31), zone="Asia/Tokyo")

    assert view.state == "active"
    assert set(states(tokyo).values()) == {State.VALID}
    assert crl_entries(tokyo) == {}
    assert {ocsp_of(tokyo, v).certificate_status for v in certificates(tokyo)} == {
        ocsp.OCSPCertStatus.GOOD}
    assert issue_one(tokyo, "alice").state is State.VALID
    assert tokyo.lifecycle.run().revoked == 0  # the grace end no longer applies


def test_a_manual_hold_survives_a_renewal(tokyo: Service, clock: FixedClock) -> None:
    held, other = certificates(tokyo)
    tokyo.revocation.suspend("default", held.serial)
    clock.set(TOKYO_END)
    tokyo.lifecycle.run()
    assert holds(tokyo, held.serial) == ["manual", "subscription"]

    tokyo.lifecycle.set_subscription("default", ends=dt.date(2027, 3, 31))

    assert tokyo.certificates.get(held.serial).state is State.SUSPENDED
    assert holds(tokyo, held.serial) == ["manual"]
    assert tokyo.certificates.get(other.serial).state is State.VALID
    assert crl_entries(tokyo) == {held.serial: "certificateHold"}
    tokyo.revocation.reinstate("default", held.serial)
    assert tokyo.certificates.get(held.serial).state is State.VALID


def test_reinstating_by_hand_never_lifts_the_subscription_hold(tokyo: Service,
                                                               clock: FixedClock) -> None:
    clock.set(TOKYO_END)
    tokyo.lifecycle.run()
    view = certificates(tokyo)[0]
    tokyo.revocation.reinstate("default", view.serial)
    assert tokyo.certificates.get(view.serial).state is State.SUSPENDED
    assert holds(tokyo, view.serial) == ["subscription"]


def test_a_permission_hold_survives_a_renewal_and_is_lifted_by_a_grant(
        tokyo: Service, clock: FixedClock) -> None:
    clock.set(TOKYO_END)
    tokyo.lifecycle.run()
    tokyo.users.set_permission("default", ("alice",), allow=False)
    alice = tokyo.certificates.list_certificates("default", login="alice")[0]
    assert holds(tokyo, alice.serial) == ["permission", "subscription"]

    tokyo.lifecycle.set_subscription("default", ends=dt.date(2027, 3, 31))
    assert tokyo.certificates.get(alice.serial).state is State.SUSPENDED
    assert ocsp_of(tokyo, alice).revocation_reason is x509.ReasonFlags.certificate_hold

    tokyo.users.set_permission("default", ("alice",), allow=True)
    assert tokyo.certificates.get(alice.serial).state is State.VALID
    assert ocsp_of(tokyo, alice).certificate_status is ocsp.OCSPCertStatus.GOOD


# --- the end of the grace period ------------------------------------------------------------


def test_one_second_before_the_grace_end_nothing_is_revoked(tokyo: Service,
                                                            clock: FixedClock) -> None:
    clock.set(TOKYO_END)
    tokyo.lifecycle.run()
    clock.set(TOKYO_END + GRACE - SECOND)
    assert tokyo.lifecycle.run().revoked == 0
    assert set(states(tokyo).values()) == {State.SUSPENDED}
    assert all(v.has_key_material for v in certificates(tokyo))


def test_the_grace_end_revokes_for_good_and_purges_the_key_material(
        tokyo: Service, clock: FixedClock) -> None:
    held = certificates(tokyo)[0]
    tokyo.revocation.suspend("default", held.serial)  # a manual hold is revoked as well
    clock.set(TOKYO_END)
    tokyo.lifecycle.run()
    clock.set(TOKYO_END + GRACE)

    report = tokyo.lifecycle.run()

    assert report.revoked == 2
    assert tokyo.lifecycle.get_subscription("default").state == "ended"
    for view in certificates(tokyo):
        assert view.state is State.REVOKED
        assert view.revocation_reason == "cessationOfOperation"
        assert view.revoked_at == TOKYO_END + GRACE
        assert not view.has_key_material
        with pytest.raises(NotPermitted, match="revoked"):
            tokyo.certificates.bundle(view.serial, tenant="default")
        answer = ocsp_of(tokyo, view)
        assert answer.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert answer.revocation_reason is x509.ReasonFlags.cessation_of_operation
    assert crl_entries(tokyo) == {v.serial: "cessationOfOperation" for v in certificates(tokyo)}
    # a renewal now brings nothing back
    tokyo.lifecycle.set_subscription("default", ends=dt.date(2027, 3, 31))
    assert set(states(tokyo).values()) == {State.REVOKED}


def test_after_a_late_renewal_only_new_certificates_work(tokyo: Service,
                                                         clock: FixedClock) -> None:
    old = {v.serial for v in certificates(tokyo)}
    clock.set(TOKYO_END)
    tokyo.lifecycle.run()
    clock.set(TOKYO_END + GRACE + dt.timedelta(days=3))
    assert tokyo.lifecycle.run().revoked == 2
    with pytest.raises(NotPermitted, match="subscription ended"):
        issue_one(tokyo, "alice")

    tokyo.lifecycle.set_subscription("default", ends=dt.date(2027, 4, 30))
    new = issue_one(tokyo, "alice")

    assert {s: st for s, st in states(tokyo).items() if s in old} == dict.fromkeys(
        old, State.REVOKED)
    assert new.state is State.VALID
    assert tokyo.certificates.bundle(new.serial, tenant="default").serial == new.serial
    assert ocsp_of(tokyo, new).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert set(crl_entries(tokyo)) == old


def test_a_renewal_after_the_grace_end_revives_nothing_even_before_the_lifecycle_ran(
        tokyo: Service, clock: FixedClock) -> None:
    # the server was down over the grace end (or the job had not run yet): the grace period
    # is over all the same, so the renewal must not bring the old certificates back
    clock.set(TOKYO_END)
    tokyo.lifecycle.run()
    clock.set(TOKYO_END + GRACE + dt.timedelta(hours=1))

    tokyo.lifecycle.set_subscription("default", ends=dt.date(2027, 3, 31))

    for view in certificates(tokyo):
        assert view.state is State.REVOKED, view.serial
        assert view.revocation_reason == "cessationOfOperation"


def test_without_a_grace_period_the_end_revokes_at_once(users: Service,
                                                        clock: FixedClock) -> None:
    view = issue_one(users, "alice")
    users.lifecycle.set_subscription("default", ends=LAST_DAY, zone="UTC", grace_days=0)
    clock.set(dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    assert users.lifecycle.run().revoked == 1
    assert users.certificates.get(view.serial).revocation_reason == "cessationOfOperation"


# --- running the lifecycle ------------------------------------------------------------------


@pytest.mark.parametrize("moment", [TOKYO_END, TOKYO_END + GRACE], ids=["end", "grace-end"])
def test_running_the_lifecycle_twice_changes_nothing_the_second_time(
        tokyo: Service, clock: FixedClock, moment: dt.datetime) -> None:
    clock.set(TOKYO_END)
    tokyo.lifecycle.run()
    clock.set(moment)
    tokyo.lifecycle.run()
    before = (states(tokyo), tokyo.crls.current("default").number,
              [holds(tokyo, v.serial) for v in certificates(tokyo)])

    assert tokyo.lifecycle.run() == NOTHING

    after = (states(tokyo), tokyo.crls.current("default").number,
             [holds(tokyo, v.serial) for v in certificates(tokyo)])
    assert after == before


def test_a_run_that_crashes_half_way_leaves_no_half_done_tenant_and_a_rerun_converges(
        users: Service, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    users.hierarchy.create_tenant("acme", ca_key_type="ec-p256")
    for login in ("dave", "erin"):
        users.users.add("acme", login, email=f"{login}@example.com", allow=True)
        issue_one(users, login, tenant="acme")
    issue_one(users, "alice")
    issue_one(users, "bob")
    for tenant in ("default", "acme"):
        users.lifecycle.set_subscription(tenant, ends=LAST_DAY, zone="UTC")
    clock.set(dt.datetime(2026, 4, 1, tzinfo=dt.UTC))
    real: Callable[..., bool] = status_module.place_hold
    calls = 0

    class PowerLost(BaseException):
        """The process stops here (an Exception is one tenant's failure: the run goes on)."""

    def crash_on_the_third(*args: object, **kwargs: object) -> bool:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise PowerLost("the machine lost power")
        return real(*args, **kwargs)

    monkeypatch.setattr(status_module, "place_hold", crash_on_the_third)
    with pytest.raises(PowerLost, match="lost power"):
        users.lifecycle.run()
    monkeypatch.setattr(status_module, "place_hold", real)

    done = {t: set(states(users, t).values()) for t in ("default", "acme")}
    assert sorted(map(sorted, done.values())) == [[State.SUSPENDED], [State.VALID]], done

    assert users.lifecycle.run().suspended == 2
    assert users.lifecycle.run() == NOTHING
    for tenant in ("default", "acme"):
        views = certificates(users, tenant)
        assert {v.state for v in views} == {State.SUSPENDED}
        assert [holds(users, v.serial) for v in views] == [["subscription"]] * 2
        assert crl_entries(users, tenant) == {v.serial: "certificateHold" for v in views}


# --- users leaving, permissions, expiry -----------------------------------------------------


def test_retiring_a_user_revokes_every_certificate_as_affiliation_changed(
        users: Service, clock: FixedClock) -> None:
    first, second = issue_one(users, "alice"), issue_one(users, "alice")
    users.revocation.suspend("default", second.serial)
    bobs = issue_one(users, "bob")
    clock.advance(dt.timedelta(minutes=1))

    users.users.retire("default", "alice")

    for view in (first, second):
        after = users.certificates.get(view.serial)
        assert after.state is State.REVOKED
        assert after.revocation_reason == "affiliationChanged"
        assert after.revoked_at == MOMENTS.start + dt.timedelta(minutes=1)
        assert not after.has_key_material
        assert ocsp_of(users, view).revocation_reason is x509.ReasonFlags.affiliation_changed
    assert users.certificates.get(bobs.serial).state is State.VALID


def test_withdrawing_permission_suspends_and_granting_it_again_reinstates(
        users: Service) -> None:
    view = issue_one(users, "alice")
    users.users.set_permission("default", ("alice",), allow=False)
    assert holds(users, view.serial) == ["permission"]
    answer = ocsp_of(users, view)
    assert answer.revocation_reason is x509.ReasonFlags.certificate_hold
    with pytest.raises(NotPermitted, match="no secure-access permission"):
        issue_one(users, "alice")

    users.users.set_permission("default", ("alice",), allow=True)
    assert holds(users, view.serial) == []
    assert ocsp_of(users, view).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert users.certificates.get(view.serial).has_key_material


def test_expiry_purges_the_key_material(users: Service, clock: FixedClock) -> None:
    view = issue_one(users, "alice", expires=dt.date(2026, 3, 3))
    keeps = issue_one(users, "bob")
    clock.set(view.not_after)
    assert users.lifecycle.run().purged == 0  # notAfter is the last valid second
    assert users.certificates.get(view.serial).has_key_material
    clock.set(view.not_after + SECOND)

    assert users.lifecycle.run().purged == 1

    expired = users.certificates.get(view.serial)
    assert expired.state is State.EXPIRED and not expired.has_key_material
    with pytest.raises(NotPermitted, match="expired"):
        users.certificates.bundle(view.serial, tenant="default")
    assert users.certificates.get(keeps.serial).has_key_material
    assert users.lifecycle.run().purged == 0


def test_the_crl_never_passes_its_next_update_while_the_lifecycle_runs(
        users: Service, clock: FixedClock) -> None:
    view = issue_one(users, "alice")
    users.revocation.revoke("default", view.serial, reason="keyCompromise")
    users.lifecycle.run()
    for _ in range(12):  # 48 days: past the root CRL's 30 days too
        clock.advance(dt.timedelta(days=4))
        users.lifecycle.run()
        for name, crl in latest_crls(users).items():
            assert crl.next_update > users.clock.now(), name
            assert crl.this_update <= users.clock.now(), name
    assert view.serial in crl_entries(users)


def test_the_lifecycle_renews_a_crl_past_half_its_validity_and_only_then(
        users: Service, clock: FixedClock) -> None:
    assert users.lifecycle.run().crls == 2  # none yet: the issuing CA's and the root's
    first = latest_crls(users)
    clock.advance(dt.timedelta(days=3))
    assert users.lifecycle.run().crls == 0
    clock.advance(dt.timedelta(hours=12))
    assert users.lifecycle.run().crls == 1  # the issuing CA's: 7 days, renewed at 3.5
    renewed = latest_crls(users)
    assert [k for k in first if first[k].number != renewed[k].number] == ["default"]
