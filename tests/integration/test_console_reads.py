"""What the service gives the console's user and import pages to read: the causes a
certificate is held for, the PKCS#12 profile chosen at its issuance, the tenant's zone and
name, and each good row of an import with its line and outcome."""

from __future__ import annotations

import datetime as dt

from ca.clock import FixedClock
from ca.service import Service
from tests.support.issuing import issue_one

TENANT = "tohoku"


def tohoku(service: Service) -> Service:
    service.hierarchy.create_tenant(TENANT, display_name="東北電機株式会社")
    for login in ("yamada", "sato"):
        service.users.add(TENANT, login, email=f"{login}@tohoku.example.jp", allow=True)
    return service


def test_hold_causes_name_each_unlifted_hold_in_the_order_placed(
        service: Service, clock: FixedClock) -> None:
    tohoku(service)
    held, free, lifted = (issue_one(service, login, tenant=TENANT).serial
                          for login in ("yamada", "sato", "sato"))
    service.revocation.suspend(TENANT, held)
    clock.advance(dt.timedelta(seconds=1))
    service.users.set_permission(TENANT, ("yamada",), allow=False)
    service.revocation.suspend(TENANT, lifted)
    service.revocation.reinstate(TENANT, lifted)
    # serials as people type them: lowercase, colons, leading zeros
    typed = ["0" + held.lower(), ":".join(free[i:i + 2] for i in range(0, len(free), 2)),
             lifted]
    assert service.revocation.hold_causes(TENANT, typed) == {held: ("manual", "permission")}
    assert service.revocation.hold_causes(TENANT, []) == {}


def test_another_tenants_serial_has_no_hold_causes_here(service: Service) -> None:
    tohoku(service)
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    theirs = issue_one(service, "alice").serial
    service.revocation.suspend("default", theirs)
    assert service.revocation.hold_causes(TENANT, [theirs]) == {}
    assert service.revocation.hold_causes("default", [theirs]) == {theirs: ("manual",)}


def test_a_view_carries_the_profile_chosen_at_issuance(service: Service) -> None:
    tohoku(service)
    chosen = issue_one(service, "yamada", tenant=TENANT, p12_profile="modern")
    default = issue_one(service, "sato", tenant=TENANT)
    assert (chosen.p12_profile, default.p12_profile) == ("modern", None)
    assert [v.p12_profile for v in service.certificates.list_certificates(TENANT)] == [
        None, "modern"]


def test_tenant_settings_carry_its_zone_and_name(service: Service) -> None:
    tohoku(service)
    settings = service.hierarchy.tenant_settings(TENANT)
    assert (settings.timezone, settings.display_name) == (
        service.settings.timezone, "東北電機株式会社")


def test_an_import_report_gives_each_good_row_its_line_and_outcome(service: Service) -> None:
    tohoku(service)
    data = ("login,email,name\n"
            "yamada,yamada@tohoku.example.jp,山田太郎\n"
            "\n"
            "sato,sato@tohoku.example.jp,\n"
            "kato,bad,加藤\n"
            "suzuki,,鈴木\n"
            "tanaka,tanaka@tohoku.example.jp,田中\n").encode()
    checked = service.users.import_users(TENANT, data, dry_run=True)
    assert checked.rows == [(2, "yamada", "updated"), (4, "sato", "unchanged"),
                            (7, "tanaka", "created")]
    assert [(line, login) for line, login, _ in checked.errors] == [(5, "kato"), (6, "suzuki")]
    refused = service.users.import_users(TENANT, data)
    assert (refused.rows, refused.created, refused.updated) == (checked.rows, [], [])
    fixed = data.replace(b"kato,bad", b"kato,kato@tohoku.example.jp").replace(
        b"suzuki,,", b"suzuki,suzuki@tohoku.example.jp,")
    applied = service.users.import_users(TENANT, fixed)
    assert applied.rows == [(2, "yamada", "updated"), (4, "sato", "unchanged"),
                            (5, "kato", "created"), (6, "suzuki", "created"),
                            (7, "tanaka", "created")]
