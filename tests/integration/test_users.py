"""Users and groups of a tenant: create, update, list, retire; secure-access permission and
its holds; the seeds' admin query (group / unaffiliated / all, by certificate status)."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from ca import audit
from ca.clock import FixedClock
from ca.db.models import AuditEvent, Certificate, Hold
from ca.errors import Conflict, InvalidInput, NotFound, NotPermitted
from ca.holds import HoldCause
from ca.service import IssueRequest, Selection, Service, UserSpec
from ca.service import transitions as cert_status
from ca.states import State
from tests.support.issuing import issue_serials

TENANT = "default"

HOSTILE = {
    "dotdot": "../x",
    "slash": "a/b",
    "nul": "a\x00b",
    "crlf": "a\r\nb",
    "rlo": "a\u202egpj.exe",
    "10kB": "a" * 10_240,
}
# free text may hold dots and slashes: they never reach a file or zip name
HARMLESS_IN_TEXT = ("dotdot", "slash")
# for rules checked before anything reaches the database
SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def add(service: Service, login: str, *groups: str, allow: bool = True,
        kind: str = "person") -> None:
    service.users.add(TENANT, login, email=f"{login}@example.com", allow=allow, groups=groups,
                     kind=kind)


def issue_until(service: Service, login: str, last_day: dt.date) -> list[str]:
    views = service.certificates.issue(IssueRequest(tenant=TENANT, logins=(login,),
                                                    expires=last_day))
    return [v.serial for v in views]


def state(service: Service, serial: str) -> State:
    return service.certificates.get(serial).state


def change(service: Service, serial: str, step: Callable[..., bool], *args: Any) -> None:
    """A status change made directly with ``ca.service.transitions``, in one transaction."""
    with service.database.transaction() as session:
        cert = session.scalar(select(Certificate).where(Certificate.serial == serial))
        assert cert is not None
        step(session, cert, *args, audit.CLI_ACTOR, tenant=TENANT, login=cert.user.login,
             now=service.clock.now())


def manual_hold(service: Service, serial: str) -> None:
    change(service, serial, cert_status.place_hold, HoldCause.MANUAL)


def revoke(service: Service, serial: str) -> None:
    change(service, serial, cert_status.revoke, "keyCompromise")


def active_causes(service: Service, serial: str) -> list[str]:
    with service.database.reading() as session:
        return sorted(session.scalars(
            select(Hold.cause).join(Certificate, Hold.certificate_id == Certificate.id)
            .where(Certificate.serial == serial, Hold.lifted_at.is_(None))))


def logins(service: Service, **selection: Any) -> list[str]:
    return [v.login for v in service.users.list_users(TENANT, Selection(**selection))]


def actions(service: Service) -> list[str]:
    with service.database.reading() as session:
        return list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


# --- users and groups ----------------------------------------------------------------------


def test_a_new_user_has_its_email_name_kind_groups_and_permission(service: Service) -> None:
    view = service.users.add(TENANT, "alice", email="alice@example.com",
                            display_name="Alice Liddell", allow=True, groups=("Sales", "Dev"))
    assert (view.login, view.email, view.display_name, view.kind, view.status) == (
        "alice", "alice@example.com", "Alice Liddell", "person", "active")
    assert view.secure_access is True
    assert view.groups == ("Dev", "Sales")
    assert view.certificate_status == "unissued"
    assert service.users.get(TENANT, "alice") == view
    assert "user.create" in actions(service)


def test_a_user_may_belong_to_any_number_of_groups_or_none(service: Service) -> None:
    add(service, "none")
    add(service, "one", "Sales")
    add(service, "three", "Sales", "Dev", "Tokyo")
    assert service.users.get(TENANT, "none").groups == ()
    assert service.users.get(TENANT, "three").groups == ("Dev", "Sales", "Tokyo")
    assert service.users.list_groups(TENANT) == [("Dev", 1), ("Sales", 2), ("Tokyo", 1)]

    service.users.update(TENANT, UserSpec(login="three", groups=()))
    assert service.users.get(TENANT, "three").groups == ()
    assert logins(service, unaffiliated=True) == ["none", "three"]


def test_logins_and_group_names_are_unique_per_tenant_ignoring_case(service: Service) -> None:
    add(service, "alice", "Sales")
    with pytest.raises(Conflict, match="already exists"):
        add(service, "ALICE")
    # the same login in another tenant is another person
    service.hierarchy.create_tenant("acme", ca_key_type="ec-p256")
    service.users.add("acme", "Alice", email="alice@acme.example")
    assert logins(service, everyone=True) == ["alice"]
    assert [v.login for v in service.users.list_users("acme")] == ["Alice"]
    # and the login is found whatever its case
    assert service.users.get(TENANT, "Alice").login == "alice"
    # one group, however its name is cased
    add(service, "bob", "SALES")
    assert service.users.list_groups(TENANT) == [("Sales", 2)]
    assert logins(service, group="sales") == ["alice", "bob"]


def test_a_service_account_is_a_user_of_kind_service(service: Service) -> None:
    add(service, "backup-bot", kind="service")
    view = service.users.get(TENANT, "backup-bot")
    assert view.kind == "service"
    issue_serials(service, "backup-bot")
    assert service.users.get(TENANT, "backup-bot").certificate_status == "valid"
    with pytest.raises(InvalidInput, match="person or service"):
        add(service, "robot", kind="robot")


@SQLITE_ONLY
def test_a_group_name_with_a_semicolon_is_refused(service: Service) -> None:
    add(service, "bob")
    for group in ("a;b", ";", "Sales; Dev"):
        with pytest.raises(InvalidInput, match="';'") as caught:
            add(service, "alice", group)
        assert caught.value.field == "group"
        with pytest.raises(InvalidInput, match="';'"):
            service.users.update(TENANT, UserSpec(login="bob", groups=(group,)))
    assert logins(service, everyone=True) == ["bob"]
    assert service.users.list_groups(TENANT) == []


def test_a_group_name_longer_once_case_folded_is_still_accepted(service: Service) -> None:
    # 'ß' case-folds to 'ss': the case-insensitive key is longer than the name
    group = "Straße" * 16  # 96 characters, 112 once case-folded
    add(service, "alice", group)
    assert service.users.get(TENANT, "alice").groups == (group,)
    assert logins(service, group=group.lower()) == ["alice"]


def test_a_group_is_selected_by_the_name_as_stored_whatever_its_unicode_form(
        service: Service) -> None:
    add(service, "alice", "Café")  # stored NFC, as every name is
    decomposed = unicodedata.normalize("NFD", "Café")
    assert decomposed != "Café"
    assert logins(service, group=decomposed) == ["alice"]
    assert logins(service, group=" café ") == ["alice"]


def test_an_update_changes_only_the_fields_given(service: Service) -> None:
    service.users.add(TENANT, "alice", email="alice@example.com", display_name="Alice",
                     groups=("Sales",))
    view = service.users.update(TENANT, UserSpec(login="ALICE", email="liddell@example.com"))
    assert (view.email, view.display_name, view.groups) == (
        "liddell@example.com", "Alice", ("Sales",))
    view = service.users.update(TENANT, UserSpec(login="alice", display_name="A. Liddell",
                                                kind="service"))
    assert (view.email, view.display_name, view.kind) == (
        "liddell@example.com", "A. Liddell", "service")


def test_an_unknown_user_cannot_be_updated_retired_or_allowed(service: Service) -> None:
    with pytest.raises(NotFound, match="nobody"):
        service.users.update(TENANT, UserSpec(login="nobody", email="n@example.com"))
    with pytest.raises(NotFound, match="nobody"):
        service.users.retire(TENANT, "nobody")
    with pytest.raises(NotFound, match="nobody"):
        service.users.set_permission(TENANT, ("nobody",), allow=True)


@SQLITE_ONLY
def test_a_bad_email_is_refused(service: Service) -> None:
    for email in ("alice", "alice@", "alice@example", "a b@example.com", "a@example.com\n"):
        with pytest.raises(InvalidInput, match="e-mail"):
            service.users.add(TENANT, "alice", email=email)
    add(service, "alice")
    with pytest.raises(InvalidInput, match="e-mail"):
        service.users.update(TENANT, UserSpec(login="alice", email="not-an-address"))
    assert service.users.get(TENANT, "alice").email == "alice@example.com"


# --- retiring ------------------------------------------------------------------------------


def test_retiring_revokes_every_live_certificate_as_affiliation_changed(
        service: Service) -> None:
    add(service, "alice")
    add(service, "bob")
    first, second, held = (issue_serials(service, "alice") + issue_serials(service, "alice")
                           + issue_serials(service, "alice"))
    [bobs] = issue_serials(service, "bob")
    manual_hold(service, held)
    view = service.users.retire(TENANT, "alice")
    assert view.status == "retired"
    for serial in (first, second, held):
        cert = service.certificates.get(serial)
        assert cert.state is State.REVOKED
        assert cert.revocation_reason == "affiliationChanged"
        assert cert.revoked_at == service.clock.now()
        assert not cert.has_key_material
    assert state(service, bobs) is State.VALID  # only the leaver's certificates
    assert "user.retire" in actions(service)


def test_a_retired_user_leaves_the_admin_list_and_can_no_longer_be_issued_to(
        service: Service) -> None:
    add(service, "alice", "Sales")
    add(service, "bob", "Sales")
    service.users.retire(TENANT, "alice")
    assert logins(service, everyone=True) == ["bob"]
    assert logins(service, group="Sales") == ["bob"]
    assert service.users.get(TENANT, "alice").status == "retired"
    with pytest.raises(NotPermitted, match="alice: the user is retired"):
        issue_serials(service, "alice")
    # nor by a selection: a retired user is not selected at all
    result = service.certificates.issue_bulk(IssueRequest(tenant=TENANT,
                                                          selection=Selection(everyone=True),
                                             best_effort=True))
    assert [v.login for v in result.issued] == ["bob"]
    assert result.failures == []
    # granting permission again does not bring the user back
    service.users.set_permission(TENANT, ("alice",), allow=True)
    with pytest.raises(NotPermitted, match="retired"):
        issue_serials(service, "alice")
    assert service.certificates.list_certificates(TENANT, login="alice") == []


# --- secure-access permission --------------------------------------------------------------


def deny_with_set_permission(service: Service, login: str) -> None:
    service.users.set_permission(TENANT, (login,), allow=False)


def deny_with_update(service: Service, login: str) -> None:
    service.users.update(TENANT, UserSpec(login=login, secure_access=False))


def deny_with_csv(service: Service, login: str) -> None:
    report = service.users.import_users(TENANT, f"login,secure_access\n{login},no\n".encode())
    assert report.errors == [] and report.updated == [login]


def allow_with_set_permission(service: Service, login: str) -> None:
    service.users.set_permission(TENANT, (login,), allow=True)


def allow_with_update(service: Service, login: str) -> None:
    service.users.update(TENANT, UserSpec(login=login, secure_access=True))


def allow_with_csv(service: Service, login: str) -> None:
    report = service.users.import_users(TENANT, f"login,secure_access\n{login},yes\n".encode())
    assert report.errors == [] and report.updated == [login]


WAYS = {"set_permission": (deny_with_set_permission, allow_with_set_permission),
        "update_user": (deny_with_update, allow_with_update),
        "csv": (deny_with_csv, allow_with_csv)}


def test_withdrawing_permission_suspends_with_cause_permission_and_granting_reinstates(
        service: Service) -> None:
    for way, (deny, allow) in WAYS.items():
        add(service, way)
        serials = issue_serials(service, way) + issue_serials(service, way)
        deny(service, way)
        view = service.users.get(TENANT, way)
        assert (view.secure_access, view.certificate_status) == (False, "suspended"), way
        for serial in serials:
            assert state(service, serial) is State.SUSPENDED, way
            assert active_causes(service, serial) == ["permission"], way

        allow(service, way)
        assert service.users.get(TENANT, way).certificate_status == "valid", way
        for serial in serials:
            assert state(service, serial) is State.VALID, way
            assert active_causes(service, serial) == [], way


def test_granting_permission_never_lifts_a_hold_of_another_cause(service: Service) -> None:
    for way, (deny, allow) in WAYS.items():
        add(service, way)
        held_before, held_during, free = issue_serials(service, way) + issue_serials(
            service, way) + issue_serials(service, way)
        manual_hold(service, held_before)
        deny(service, way)
        manual_hold(service, held_during)
        allow(service, way)
        for serial in (held_before, held_during):
            assert state(service, serial) is State.SUSPENDED, way
            assert active_causes(service, serial) == ["manual"], way
        assert state(service, free) is State.VALID, way


def test_withdrawing_permission_does_not_touch_revoked_or_expired_certificates(
        service: Service, clock: FixedClock) -> None:
    add(service, "alice")
    [revoked] = issue_serials(service, "alice")
    revoke(service, revoked)
    [short] = issue_until(service, "alice", dt.date(2026, 3, 10))
    clock.advance(dt.timedelta(days=30))
    deny_with_set_permission(service, "alice")
    assert active_causes(service, revoked) == []
    assert active_causes(service, short) == []
    assert state(service, revoked) is State.REVOKED
    assert state(service, short) is State.EXPIRED


def test_a_user_without_permission_cannot_be_issued_to(service: Service) -> None:
    add(service, "alice", allow=False)
    with pytest.raises(NotPermitted, match="alice: the user has no secure-access permission"):
        issue_serials(service, "alice")
    service.users.set_permission(TENANT, ("alice",), allow=True)
    assert len(issue_serials(service, "alice")) == 1


def test_permission_for_several_users_changes_them_all_or_none(service: Service) -> None:
    for login in ("alice", "bob", "carol"):
        add(service, login)
    serials = issue_serials(service, "alice", "bob", "carol")
    before = actions(service)
    with pytest.raises(NotFound, match="nobody"):
        service.users.set_permission(TENANT, ("alice", "nobody", "bob"), allow=False)
    assert [service.users.get(TENANT, u).secure_access for u in ("alice", "bob")] == [True, True]
    assert [state(service, s) for s in serials] == [State.VALID] * 3
    assert actions(service) == before

    views = service.users.set_permission(TENANT, ("alice", "BOB"), allow=False)
    assert [(v.login, v.secure_access) for v in views] == [("alice", False), ("bob", False)]
    assert [state(service, s) for s in serials] == [
        State.SUSPENDED, State.SUSPENDED, State.VALID]
    assert actions(service).count("user.deny") == 2


# --- the seeds' admin query -----------------------------------------------------------------


def test_users_are_listed_by_group_unaffiliated_or_all(service: Service) -> None:
    add(service, "alice", "Sales")
    add(service, "bob", "Sales", "Dev")
    add(service, "carol")
    add(service, "dave", "Dev")
    assert logins(service, everyone=True) == ["alice", "bob", "carol", "dave"]
    assert logins(service, group="Sales") == ["alice", "bob"]
    assert logins(service, group="Dev") == ["bob", "dave"]
    assert logins(service, unaffiliated=True) == ["carol"]
    assert logins(service, group="Nobody's") == []
    assert service.users.list_users(TENANT) == service.users.list_users(TENANT,
                                                                        Selection(everyone=True))


@pytest.fixture
def seeds(service: Service) -> Service:
    """One user per certificate status, and the cases where "any valid, else the newest"
    decides."""
    for login in ("unissued", "valid", "suspended", "revoked", "valid-then-revoked",
                  "held-then-revoked", "revoked-then-held"):
        add(service, login, "Staff" if login.startswith(("v", "s")) else "Other")
    issue_serials(service, "valid")
    suspended = issue_serials(service, "suspended")[0]
    service.users.set_permission(TENANT, ("suspended",), allow=False)
    assert state(service, suspended) is State.SUSPENDED
    revoke(service, issue_serials(service, "revoked")[0])
    # any valid certificate makes the user valid, even when the newest is revoked
    issue_serials(service, "valid-then-revoked")
    revoke(service, issue_serials(service, "valid-then-revoked")[0])
    # otherwise the newest certificate decides
    manual_hold(service, issue_serials(service, "held-then-revoked")[0])
    revoke(service, issue_serials(service, "held-then-revoked")[0])
    revoke(service, issue_serials(service, "revoked-then-held")[0])
    manual_hold(service, issue_serials(service, "revoked-then-held")[0])
    return service


SEEDS = {
    "unissued": ["unissued"],
    "valid": ["valid", "valid-then-revoked"],
    "suspended": ["revoked-then-held", "suspended"],
    "revoked": ["held-then-revoked", "revoked"],
    "expired": [],
}


def test_users_are_listed_by_certificate_status(seeds: Service) -> None:
    for wanted, expected in SEEDS.items():
        views = seeds.users.list_users(TENANT, Selection(everyone=True, status=wanted))
        assert [v.login for v in views] == expected, wanted
    shown = {v.login: v.certificate_status for v in seeds.users.list_users(TENANT)}
    assert shown == {login: status for status, users in SEEDS.items() for login in users}
    assert seeds.users.get(TENANT, "valid-then-revoked").certificate_status == "valid"
    # and with a group
    assert logins(seeds, group="Staff", status="valid") == ["valid", "valid-then-revoked"]
    assert logins(seeds, group="Other", status="revoked") == ["held-then-revoked", "revoked"]
    assert logins(seeds, group="Other", status="valid") == []
    assert logins(seeds, unaffiliated=True, status="valid") == []


def test_a_user_whose_certificates_all_expired_is_expired(seeds: Service,
                                                         clock: FixedClock) -> None:
    clock.advance(dt.timedelta(days=400))  # past every notAfter
    shown = {v.login: v.certificate_status for v in seeds.users.list_users(TENANT)}
    assert shown["valid"] == "expired"
    assert logins(seeds, everyone=True, status="expired") == ["valid"]
    assert logins(seeds, everyone=True, status="valid") == []
    # with no valid certificate left, the newest decides: revoked stays revoked, held stays
    # suspended
    assert shown["valid-then-revoked"] == shown["revoked"] == "revoked"
    assert shown["suspended"] == "suspended"
    # a new certificate makes the user valid again
    issue_serials(seeds, "valid")
    assert seeds.users.get(TENANT, "valid").certificate_status == "valid"


def test_an_unknown_status_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unissued, valid, expired, suspended, revoked"):
        Selection(everyone=True, status="active")


# --- hostile input -------------------------------------------------------------------------


def assert_clear(error: InvalidInput, field: str) -> None:
    """A refusal naming the field, short, and with no control or bidi character in it."""
    assert error.field == field
    assert len(error.message) < 300, error.message
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in error.message), (
        error.message)


def test_a_hostile_login_is_refused_with_a_short_clear_error(service: Service) -> None:
    for key, value in HOSTILE.items():
        with pytest.raises(InvalidInput) as caught:
            service.users.add(TENANT, value, email="x@example.com")
        assert_clear(caught.value, "login")
        assert "login" in caught.value.message, key
        with pytest.raises(InvalidInput):
            Selection(logins=(value,))
    assert service.users.list_users(TENANT) == []


def test_a_hostile_display_name_is_refused_or_kept_harmless(service: Service) -> None:
    add(service, "bob")
    kept = ""
    for key, value in HOSTILE.items():
        if key in HARMLESS_IN_TEXT:
            view = service.users.update(TENANT, UserSpec(login="bob", display_name=value))
            assert view.display_name == value, key
            kept = value
            continue
        with pytest.raises(InvalidInput) as caught:
            service.users.add(TENANT, "alice", email="a@example.com", display_name=value)
        assert_clear(caught.value, "name")
        with pytest.raises(InvalidInput):
            service.users.update(TENANT, UserSpec(login="bob", display_name=value))
        assert service.users.get(TENANT, "bob").display_name == kept, key
    assert logins(service, everyone=True) == ["bob"]


def test_a_hostile_group_name_is_refused_or_kept_harmless(service: Service) -> None:
    for key, value in HOSTILE.items():
        if key in HARMLESS_IN_TEXT:
            add(service, f"user-{key}", value)
            assert logins(service, group=value) == [f"user-{key}"], key
            continue
        with pytest.raises(InvalidInput) as caught:
            add(service, "alice", value)
        assert_clear(caught.value, "group")
        with pytest.raises(InvalidInput):
            Selection(group=value)
    assert sorted(service.users.list_groups(TENANT)) == [("../x", 1), ("a/b", 1)]
    assert logins(service, everyone=True) == ["user-dotdot", "user-slash"]
