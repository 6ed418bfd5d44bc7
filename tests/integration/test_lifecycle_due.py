"""A lifecycle pass visits only what came due: its work grows with what changed,
not with the number of tenants. Due times are indexed columns (migration 0012), kept in the
transaction that changes what they derive from.

The clock is the FixedClock; what a pass costs is counted in SQL statements, never timed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, event, func, select

from ca.clock import FixedClock
from ca.db import migrate
from ca.db.models import Authority, Crl, KeyMaterial, Tenant
from ca.renewal import renew_at as crl_renew_at
from ca.service import IssueRequest, LifecycleReport, Service, build_service, leases
from ca.service.lifecycle import LIFECYCLE_LEASE
from tests.moments import MOMENTS
from tests.support.databases import downgrade

TENANTS = {"sapporo": "札幌営業所", "sendai": "仙台支社", "fukuoka": "福岡本店"}
MORE = {"naha": "那覇出張所", "kobe": "神戸工場", "nara": "奈良研究所", "kochi": "高知倉庫"}
LAST_DAY = dt.date(2026, 3, 31)
END = dt.datetime(2026, 3, 31, 15, 0, tzinfo=dt.UTC)  # the end of 31 March in Tokyo
GRACE = dt.timedelta(days=30)


def add_tenants(service: Service, tenants: dict[str, str]) -> None:
    for name, shown in tenants.items():
        service.hierarchy.create_tenant(name, display_name=shown, ca_key_type="ec-p256")


@pytest.fixture
def tenants(service: Service) -> Service:
    add_tenants(service, TENANTS)
    service.lifecycle.run()  # every CA's first CRL
    return service


class Statements:
    """The SQL statements an engine runs while counting."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen: list[str] = []

    def _count(self, _conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        self.seen.append(statement)

    def __enter__(self) -> Statements:
        event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *_exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._count)


def counted_pass(service: Service) -> tuple[LifecycleReport, int]:
    with Statements(service.engine) as statements:
        report = service.lifecycle.run()
    return report, len(statements.seen)


def crl_counts(service: Service) -> dict[int, int]:
    with service.database.reading() as session:
        return dict(session.execute(select(Crl.authority_id, func.count())
                                    .group_by(Crl.authority_id)).all())


@pytest.mark.parametrize("retention", [0, 30], ids=["audit-kept", "audit-pruned-after-30-days"])
def test_a_pass_with_nothing_due_costs_the_same_whatever_the_number_of_tenants(
        tenants: Service, clock: FixedClock, retention: int) -> None:
    tenants = build_service(
        tenants.settings.model_copy(update={"audit_retention_days": retention}), clock=clock,
        engine=tenants.engine)
    clock.advance(dt.timedelta(minutes=1))
    report, few = counted_pass(tenants)
    assert report == LifecycleReport()
    add_tenants(tenants, MORE)
    tenants.lifecycle.run()  # the new CAs' first CRLs
    clock.advance(dt.timedelta(minutes=1))
    report, many = counted_pass(tenants)
    assert report == LifecycleReport()
    assert many == few


def test_a_tenants_subscription_is_due_at_its_end_then_at_its_grace_end_then_never(
        tenants: Service, clock: FixedClock) -> None:
    tenants.users.add("sendai", "hanako", email="hanako@example.jp", display_name="花子",
                     allow=True)
    tenants.certificates.issue(IssueRequest(tenant="sendai", logins=("hanako",)))
    tenants.lifecycle.set_subscription("sendai", ends=LAST_DAY, zone="Asia/Tokyo")

    def due() -> dict[str, dt.datetime | None]:
        with tenants.database.reading() as session:
            return dict(session.execute(select(Tenant.name, Tenant.lifecycle_due_at)).all())

    assert due() == {"default": None, "sapporo": None, "sendai": END, "fukuoka": None}
    clock.set(END + dt.timedelta(minutes=1))
    assert tenants.lifecycle.run().suspended == 1
    assert due()["sendai"] == END + dt.timedelta(minutes=1) + GRACE
    assert tenants.lifecycle.run().suspended == 0  # in grace: not looked at again
    clock.set(END + dt.timedelta(minutes=1) + GRACE)
    assert tenants.lifecycle.run().revoked == 1
    assert due()["sendai"] is None


def test_a_renewal_inside_the_grace_period_makes_the_new_end_the_due_time(
        tenants: Service, clock: FixedClock) -> None:
    tenants.lifecycle.set_subscription("sapporo", ends=LAST_DAY, zone="Asia/Tokyo")
    clock.set(END + dt.timedelta(days=3))
    tenants.lifecycle.run()
    tenants.lifecycle.set_subscription("sapporo", ends=dt.date(2027, 3, 31), zone="Asia/Tokyo")
    with tenants.database.reading() as session:
        owner = session.scalar(select(Tenant).where(Tenant.name == "sapporo"))
        assert owner is not None
        assert owner.lifecycle_due_at == dt.datetime(2027, 3, 31, 15, 0, tzinfo=dt.UTC)
        assert owner.subscription_suspended_at is None


def test_every_crl_is_renewed_once_past_half_its_validity_and_not_before(
        tenants: Service, clock: FixedClock) -> None:
    before = crl_counts(tenants)
    with tenants.database.reading() as session:
        renew: dict[int, dt.datetime] = dict(session.execute(  # type: ignore[arg-type]
            select(Authority.id, Authority.crl_renew_at)).all())
        newest = {crl.authority_id: crl for crl in session.scalars(select(Crl))}
    assert renew == {a: crl_renew_at(crl) for a, crl in newest.items()}
    first_due = min(renew.values())
    clock.set(first_due - dt.timedelta(seconds=1))
    assert tenants.lifecycle.run().crls == 0
    clock.set(max(renew.values()))
    assert tenants.lifecycle.run().crls == len(renew)
    assert crl_counts(tenants) == {a: n + 1 for a, n in before.items()}
    assert tenants.lifecycle.run().crls == 0


def test_a_revocation_republishes_and_moves_its_cas_renewal(
        tenants: Service, clock: FixedClock) -> None:
    tenants.users.add("fukuoka", "jiro", email="jiro@example.jp", display_name="次郎",
                     allow=True)
    (cert,) = tenants.certificates.issue(IssueRequest(tenant="fukuoka", logins=("jiro",)))
    clock.advance(dt.timedelta(days=2))
    tenants.revocation.revoke("fukuoka", cert.serial)
    with tenants.database.reading() as session:
        ca = session.scalar(select(Authority).join(Tenant).where(Tenant.name == "fukuoka"))
        assert ca is not None
        newest = session.scalar(select(Crl).where(Crl.authority_id == ca.id)
                                .order_by(Crl.number.desc()).limit(1))
        assert newest is not None
        assert ca.crl_renew_at == crl_renew_at(newest) > clock.now()


def test_a_key_is_purged_in_the_first_pass_after_its_certificate_expired(
        tenants: Service, clock: FixedClock) -> None:
    tenants.users.add("sapporo", "yuki", email="yuki@example.jp", display_name="雪",
                     allow=True)
    (cert,) = tenants.certificates.issue(IssueRequest(tenant="sapporo", logins=("yuki",)))
    clock.set(cert.not_after - dt.timedelta(seconds=1))
    assert tenants.lifecycle.run().purged == 0
    clock.set(cert.not_after + dt.timedelta(seconds=1))
    assert tenants.lifecycle.run().purged == 1
    with tenants.database.reading() as session:
        assert leases.done_until(session, LIFECYCLE_LEASE) == clock.now()
        material = session.scalar(select(KeyMaterial))
        assert material is not None and material.sealed_key is None
    assert tenants.lifecycle.run().purged == 0


@pytest.fixture
def at_0009(tenants: Service, clock: FixedClock) -> Iterator[Service]:
    """The database taken back to 0009 with subscriptions and CRLs in it."""
    tenants.lifecycle.set_subscription("fukuoka", ends=LAST_DAY, zone="Asia/Tokyo")
    downgrade(tenants.engine, "0009")
    assert migrate.current_revision(tenants.engine) == "0009"
    yield tenants


def test_upgrading_to_0012_sets_every_due_time_from_what_it_finds(at_0009: Service) -> None:
    at_0009.database.upgrade()
    with at_0009.database.reading() as session:
        due = dict(session.execute(select(Tenant.name, Tenant.lifecycle_due_at)).all())
        renew: dict[int, dt.datetime] = dict(session.execute(  # type: ignore[arg-type]
            select(Authority.id, Authority.crl_renew_at)).all())
        newest: dict[int, Crl] = {}
        for crl in session.scalars(select(Crl).order_by(Crl.number)):
            newest[crl.authority_id] = crl
    assert due == {"default": None, "sapporo": None, "sendai": None, "fukuoka": END}
    assert renew == {a: crl_renew_at(crl) for a, crl in newest.items()}
    assert MOMENTS.start < min(renew.values())
