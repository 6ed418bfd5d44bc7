"""The audit log has a hash chain per tenant and one for the operator: verify checks each,
reports each one's head, and finds a break in the chain it is in; a database written
before chains (revision 0005) verifies after the upgrade, its events in the operator's
chain."""

from __future__ import annotations

import datetime as dt
import json

import sqlalchemy as sa
from sqlalchemy import select, update

from ca import audit
from ca.clock import FixedClock
from ca.db import migrate
from ca.db.models import AuditEvent
from ca.db.types import UTCDateTime
from ca.service import IssueRequest, Service, build_service
from ca.settings import Settings
from tests.moments import MOMENTS

TOKYO = "Example Holdings International Corporation Japan Branch Tokyo"
OSAKA = "Example Holdings International Corporation Japan Branch Osaka"


def test_each_tenant_has_its_own_chain_and_verify_reports_every_head(
        service: Service) -> None:
    service.hierarchy.create_tenant("tokyo", display_name=TOKYO)
    service.hierarchy.create_tenant("osaka", display_name=OSAKA)
    for tenant in ("tokyo", "osaka", "tokyo"):
        login = f"user{len(service.audit.events(tenant=tenant))}"
        service.users.add(tenant, login, email=f"{login}@example.com", allow=True)
    service.certificates.issue(IssueRequest(tenant="osaka", logins=("user1",)))

    check = service.audit.verify()

    with service.database.reading() as session:
        rows = session.execute(select(AuditEvent.chain, AuditEvent.tenant_id, AuditEvent.hash,
                                      AuditEvent.prev_hash).order_by(AuditEvent.id)).all()
    by_chain: dict[int, list[sa.Row[tuple[int, int | None, str, str]]]] = {}
    for row in rows:
        by_chain.setdefault(row.chain, []).append(row)
    # each chain starts at the genesis hash and links in id order; a tenant's holds only it
    for chain, events in by_chain.items():
        assert [e.prev_hash for e in events] == [audit.GENESIS] + [e.hash for e in events[:-1]]
        assert {e.tenant_id for e in events} == ({None} if chain == audit.OPERATOR
                                                 else {chain})
    names = {None: audit.OPERATOR, "default": 1, "tokyo": 2, "osaka": 3}
    assert [(c.tenant, c.events, c.head, c.broken) for c in check.chains] == [
        (tenant, len(by_chain[chain]), by_chain[chain][-1].hash, None)
        for tenant, chain in names.items()]
    assert [len(by_chain[c]) for c in names.values()] == [1, 1, 3, 3]


def test_a_change_breaks_only_its_own_chain(service: Service) -> None:
    service.hierarchy.create_tenant("tokyo", display_name=TOKYO)
    service.hierarchy.create_tenant("osaka", display_name=OSAKA)
    for tenant in ("tokyo", "osaka"):
        for login in ("alice", "bob"):
            service.users.add(tenant, login, email=f"{login}@example.com")
    victim = service.audit.events(tenant="tokyo", action="user.create")[0].id
    with service.database.transaction() as session:
        session.execute(update(AuditEvent).where(AuditEvent.id == victim)
                        .values(target="tokyo/mallory"))

    check = service.audit.verify()

    assert [(c.tenant, c.broken.event_id if c.broken else None) for c in check.chains] == [
        (None, None), ("default", None), ("tokyo", victim), ("osaka", None)]
    assert check.broken is not None and check.broken.event_id == victim


def test_an_event_moved_to_another_tenants_chain_is_found(service: Service) -> None:
    service.hierarchy.create_tenant("tokyo", display_name=TOKYO)
    service.hierarchy.create_tenant("osaka", display_name=OSAKA)
    service.users.add("osaka", "alice", email="alice@example.com")
    moved = service.audit.events(tenant="osaka")[-1]  # the newest: its chain still links
    with service.database.reading() as session:
        tokyo = session.scalar(sa.text("SELECT id FROM tenants WHERE name = 'tokyo'"))
    with service.database.transaction() as session:
        session.execute(update(AuditEvent).where(AuditEvent.id == moved.id)
                        .values(chain=tokyo))

    broken = {c.tenant: c.broken for c in service.audit.verify().chains}

    assert broken["osaka"] is None  # truncated at its end: what the noted head is for
    tokyo_break = broken["tokyo"]
    assert tokyo_break is not None and tokyo_break.event_id == moved.id
    assert "another tenant's event" in tokyo_break.problem


# --- upgrading a log written before chains -------------------------------------------------

def legacy_events(now: dt.datetime, tenant_id: int) -> list[AuditEvent]:
    """Six events as revision 0005's code wrote them: one chain for all, in id order; the
    first two later removed by retention, which an audit.prune event vouches for."""
    made: list[AuditEvent] = []
    plan = [(None, "ca.init", "root", {}), (tenant_id, "tenant.create", "株式会社アクメ", {}),
            (tenant_id, "user.create", "acme/alice", {"secure_access": True}),
            (None, "token.create", "ops", {})]
    for tenant, action, target, details in plan:
        made.append(_legacy(now, tenant, action, target, details, made))
    made.append(_legacy(now, None, audit.PRUNE, "audit log",
                        {"before": now.isoformat(), "removed": 2, "anchor": made[1].hash},
                        made))
    made.append(_legacy(now, tenant_id, "user.update", "acme/alice",
                        {"changed": ["email"]}, made))
    return made


def _legacy(now: dt.datetime, tenant_id: int | None, action: str,
            target: str, details: dict[str, object], before: list[AuditEvent]) -> AuditEvent:
    row = AuditEvent(at=now, tenant_id=tenant_id, actor="cli", source_ip=None,
                     action=action, target=target, outcome="success", request_id=None,
                     details=json.dumps(details, sort_keys=True, ensure_ascii=False),
                     prev_hash=before[-1].hash if before else audit.GENESIS, hash="")
    row.hash = audit.chain_hash(row.prev_hash, row)
    return row


def test_a_log_written_before_chains_still_verifies_after_the_upgrade(
        settings: Settings, clock: FixedClock) -> None:
    bare_service = build_service(settings, clock=clock)
    engine = bare_service.engine
    migrate.upgrade(engine, "0005")  # an existing deployment, before chains
    now = MOMENTS.start
    # revision 0005's tables, spelt out: the models have moved on since
    tenants = sa.table("tenants", *(sa.column(c) for c in (
        "id", "name", "display_name", "timezone", "key_type", "default_validity",
        "p12_profile", "user_download", "ocsp_validity_seconds", "crl_validity_seconds",
        "subscription_kind", "grace_days", "ip_policy", "ip_networks")),
        sa.column("created_at", UTCDateTime()))
    events = sa.table("audit_events", *(sa.column(c) for c in (
        "id", "tenant_id", "actor", "source_ip", "action", "target", "outcome",
        "request_id", "details", "prev_hash", "hash")), sa.column("at", UTCDateTime()))
    anchor = sa.table("audit_anchor", *(sa.column(c) for c in (
        "id", "prev_hash", "first_id", "removed")), sa.column("pruned_at", UTCDateTime()))
    legacy = legacy_events(now, tenant_id=7)
    with engine.begin() as conn:
        conn.execute(tenants.insert().values(
            id=7, name="acme", display_name="株式会社アクメ", created_at=now, timezone="UTC",
            key_type="ec-p256", default_validity="P1Y", p12_profile="compat",
            user_download=True, ocsp_validity_seconds=300, crl_validity_seconds=604800,
            subscription_kind="none", grace_days=30, ip_policy="cert_only", ip_networks=""))
        for e in legacy:  # one at a time, ids from the database as 0005's code had them
            conn.execute(events.insert().values(
                {c: getattr(e, c) for c in ("at", "tenant_id", "actor", "source_ip", "action",
                                            "target", "outcome", "request_id", "details",
                                            "prev_hash", "hash")}))
        conn.execute(events.delete().where(events.c.id <= 2))  # removed by retention
        conn.execute(anchor.insert().values(id=1, prev_hash=legacy[1].hash, first_id=3,
                                            removed=2, pruned_at=now))

    bare_service.database.upgrade()

    check = bare_service.audit.verify()
    assert [(c.tenant, c.events, c.head, c.removed, c.first_id, c.broken)
            for c in check.chains] == [(None, 4, legacy[-1].hash, 2, 3, None)]
    # new events: the operator's chain goes on from the old head, acme's starts its own
    clock.advance(dt.timedelta(minutes=1))
    bare_service.users.add("acme", "bob", email="bob@example.com")
    with bare_service.database.transaction() as session:
        audit.record(session, audit.CLI_ACTOR, audit.Event(action="token.create",
                                                           target="ops2"),
                     now=bare_service.clock.now())
    check = bare_service.audit.verify()
    assert check.broken is None
    assert [(c.tenant, c.events, c.removed) for c in check.chains] == [
        (None, 5, 2), ("acme", 1, 0)]
    with bare_service.database.reading() as session:
        new = session.scalars(select(AuditEvent).where(AuditEvent.id > 6)
                              .order_by(AuditEvent.id)).all()
    assert [(e.chain, e.action, e.prev_hash) for e in new] == [
        (7, "user.create", audit.GENESIS), (audit.OPERATOR, "token.create", legacy[-1].hash)]
    engine.dispose()
