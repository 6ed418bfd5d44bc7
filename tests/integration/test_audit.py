"""The audit log is hash-chained: verify finds a changed, deleted or reordered event."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import delete, select, update

from ca import audit
from ca.clock import FixedClock
from ca.db import queries
from ca.db.models import AuditAnchor, AuditEvent
from ca.errors import ConfigError, InvalidInput
from ca.service import IssueRequest, Service, build_service
from ca.settings import load_settings


@pytest.fixture
def busy(service: Service) -> Service:
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    serial = service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))[0].serial
    service.certificates.bundle(serial, tenant="default")
    service.revocation.revoke("default", serial, reason="keyCompromise")
    return service


def ids(service: Service, tenant: str | None = "default") -> list[int]:
    """The ids of one chain's events, in order (``None``: the operator's chain)."""
    with service.database.reading() as session:
        chain = audit.OPERATOR if tenant is None else queries.tenant(session, tenant).id
        return list(session.scalars(select(AuditEvent.id).where(AuditEvent.chain == chain)
                                    .order_by(AuditEvent.id)))


def all_ids(service: Service) -> list[int]:
    with service.database.reading() as session:
        return list(session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))


def test_an_untouched_log_verifies(busy: Service) -> None:
    check = busy.audit.verify()
    assert check.broken is None and check.events == len(all_ids(busy)) >= 6
    assert [(c.tenant, c.events, c.removed, c.first_id, c.broken) for c in check.chains] == [
        (None, 1, 0, None, None), ("default", len(ids(busy)), 0, None, None)]


def test_a_changed_event_is_found(busy: Service) -> None:
    victim = ids(busy)[3]
    with busy.database.transaction() as session:
        session.execute(update(AuditEvent).where(AuditEvent.id == victim)
                        .values(actor="someone-else"))
    broken = busy.audit.verify().broken
    assert broken is not None and broken.event_id == victim
    assert "changed" in broken.problem


def test_a_deleted_event_is_found(busy: Service) -> None:
    all_ids = ids(busy)
    with busy.database.transaction() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.id == all_ids[2]))
    broken = busy.audit.verify().broken
    assert broken is not None and broken.event_id == all_ids[3]
    assert "removed or reordered" in broken.problem


def test_reordered_events_are_found(busy: Service) -> None:
    first, second = ids(busy)[1:3]
    with busy.database.transaction() as session:
        a = session.get(AuditEvent, first)
        b = session.get(AuditEvent, second)
        assert a is not None and b is not None
        fields = ("at", "tenant_id", "actor", "source_ip", "action", "target", "outcome",
                  "request_id", "details", "prev_hash", "hash")
        values_a = {f: getattr(a, f) for f in fields}
        values_b = {f: getattr(b, f) for f in fields}
        # move b's row aside first: hash is unique
        session.execute(update(AuditEvent).where(AuditEvent.id == second)
                        .values(hash="x" * 64))
        session.execute(update(AuditEvent).where(AuditEvent.id == first).values(**values_b))
        session.execute(update(AuditEvent).where(AuditEvent.id == second).values(**values_a))
    broken = busy.audit.verify().broken
    assert broken is not None and broken.event_id == first


def test_downloads_of_key_material_are_in_the_log(busy: Service) -> None:
    events = busy.audit.events(tenant="default", action="cert.download")
    assert len(events) == 1 and events[0].details["serials"]


def test_a_tenants_log_holds_only_its_events(busy: Service) -> None:
    busy.hierarchy.create_tenant("acme")
    assert {e.tenant for e in busy.audit.events(tenant="default")} == {"default"}
    assert all(e.tenant == "acme" for e in busy.audit.events(tenant="acme"))


def test_export_shows_times_in_the_chosen_zone(busy: Service) -> None:
    lines = "".join(busy.audit.export_csv(tenant="default", zone="Asia/Tokyo")).splitlines()
    assert lines[0].startswith("id,time_utc,time_Asia/Tokyo,")
    assert "+09:00" in lines[1]


def test_deleting_the_first_events_is_found(busy: Service) -> None:
    all_ids = ids(busy)
    with busy.database.transaction() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.id <= all_ids[1]))
    broken = busy.audit.verify().broken
    assert broken is not None and broken.event_id == all_ids[2]
    assert "not where the log starts" in broken.problem


# -- retention --------------------------------------------------------------------------------

@pytest.fixture
def kept_90_days(busy: Service, clock: FixedClock) -> Service:
    """The same database, run with a 90-day retention."""
    settings = busy.settings.model_copy(update={"audit_retention_days": 90})
    return build_service(settings, clock=clock, engine=busy.engine)


def test_retention_keeps_everything_younger_than_the_setting(
        kept_90_days: Service, clock: FixedClock) -> None:
    before = all_ids(kept_90_days)
    clock.advance(dt.timedelta(days=89, hours=23))
    assert kept_90_days.lifecycle.run().audit_pruned == 0
    assert all_ids(kept_90_days)[:len(before)] == before


def test_retention_removes_older_events_of_every_chain_and_the_rest_still_verifies(
        kept_90_days: Service, clock: FixedClock) -> None:
    old_operator, old_default = ids(kept_90_days, None), ids(kept_90_days)
    clock.advance(dt.timedelta(days=60))
    kept_90_days.users.add("default", "bob", email="bob@example.com", allow=True)
    young = [i for i in ids(kept_90_days) if i not in old_default]
    clock.advance(dt.timedelta(days=31))  # the first events are now 91 days old

    report = kept_90_days.lifecycle.run()

    remaining = all_ids(kept_90_days)
    assert report.audit_pruned == len(old_operator) + len(old_default)
    assert not set(old_operator + old_default) & set(remaining)
    assert set(young) <= set(remaining)
    # one audit.prune per chain, in that chain
    prune = kept_90_days.audit.events(action="audit.prune")
    assert [(e.tenant, e.details["removed"]) for e in prune] == [
        (None, len(old_operator)), ("default", len(old_default))]
    check = kept_90_days.audit.verify()
    assert check.broken is None
    assert [(c.tenant, c.removed, c.first_id) for c in check.chains] == [
        (None, len(old_operator), prune[0].id), ("default", len(old_default), young[0])]
    # a second run has nothing more to remove, and adds no event
    assert kept_90_days.lifecycle.run().audit_pruned == 0
    assert len(kept_90_days.audit.events(action="audit.prune")) == 2


def test_when_every_event_is_old_the_prune_event_starts_the_log(
        kept_90_days: Service, clock: FixedClock) -> None:
    old = all_ids(kept_90_days)
    clock.advance(dt.timedelta(days=400))
    kept_90_days.audit.prune()
    remaining = kept_90_days.audit.events()
    assert [(e.action, e.tenant) for e in remaining] == [("audit.prune", None),
                                                         ("audit.prune", "default")]
    assert not set(old) & {e.id for e in remaining}
    check = kept_90_days.audit.verify()
    assert check.broken is None
    assert [c.first_id for c in check.chains] == [e.id for e in remaining]


def test_deleting_more_than_retention_removed_is_found(
        kept_90_days: Service, clock: FixedClock) -> None:
    clock.advance(dt.timedelta(days=60))
    kept_90_days.users.add("default", "bob", email="bob@example.com", allow=True)
    clock.advance(dt.timedelta(days=31))
    kept_90_days.lifecycle.run()
    first = ids(kept_90_days)[0]
    with kept_90_days.database.transaction() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.id == first))
    broken = kept_90_days.audit.verify().broken
    assert broken is not None and broken.event_id == ids(kept_90_days)[0]


def test_a_forged_anchor_is_found(kept_90_days: Service, clock: FixedClock) -> None:
    """Removing kept events and moving the anchor to match still contradicts the chain."""
    clock.advance(dt.timedelta(days=60))
    kept_90_days.users.add("default", "bob", email="bob@example.com", allow=True)
    kept_90_days.users.add("default", "carol", email="carol@example.com", allow=True)
    clock.advance(dt.timedelta(days=31))
    kept_90_days.lifecycle.run()
    first, second = ids(kept_90_days)[:2]
    with kept_90_days.database.transaction() as session:
        new_start = session.get(AuditEvent, second)
        anchor = session.scalar(select(AuditAnchor).where(
            AuditAnchor.chain == queries.tenant(session, "default").id))
        assert new_start is not None and anchor is not None
        session.execute(delete(AuditEvent).where(AuditEvent.id == first))
        anchor.prev_hash, anchor.first_id = new_start.prev_hash, second
    broken = kept_90_days.audit.verify().broken
    assert broken is not None and "anchor" in broken.problem


def test_retention_shorter_than_90_days_is_refused(service: Service) -> None:
    with pytest.raises(ConfigError, match="TEGATA_AUDIT_RETENTION_DAYS: must be 0"):
        load_settings(**{**service.settings.model_dump(), "audit_retention_days": 30})
    assert load_settings(**{**service.settings.model_dump(),
                            "audit_retention_days": 90}).audit_retention_days == 90


def test_export_takes_the_same_filters_as_the_listing(busy: Service, clock: FixedClock) -> None:
    start = clock.now()
    clock.advance(dt.timedelta(hours=1))
    busy.users.add("default", "bob", email="bob@example.com")
    rows = "".join(busy.audit.export_csv(tenant="default", action="cert.download")).splitlines()
    assert len(rows) == 2 and ",cert.download," in rows[1]
    later = "".join(busy.audit.export_csv(tenant="default",
                                          since=start + dt.timedelta(minutes=30))).splitlines()
    assert len(later) == 2 and ",user.create,default/bob," in later[1]
    # a bad filter is refused before the first line, not half-way through the stream
    with pytest.raises(InvalidInput, match="names no zone"):
        busy.audit.export_csv(tenant="default", since=dt.datetime(2026, 1, 1))
    with pytest.raises(InvalidInput, match="not an action name"):
        busy.audit.export_csv(tenant="default", action="cert.download\x00")
