"""The audit log is hash-chained: verify finds a changed, deleted or reordered event."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, select, update

from ca.db.models import AuditEvent
from ca.service import IssueRequest, Service


@pytest.fixture
def busy(service: Service) -> Service:
    service.add_user("default", "alice", email="alice@example.com", allow=True)
    serial = service.issue(IssueRequest(tenant="default", logins=("alice",)))[0].serial
    service.bundle(serial, tenant="default")
    service.revoke("default", serial, reason="keyCompromise")
    return service


def ids(service: Service) -> list[int]:
    with service.reading() as session:
        return list(session.scalars(select(AuditEvent.id).order_by(AuditEvent.id)))


def test_an_untouched_log_verifies(busy: Service) -> None:
    total, broken = busy.verify_audit()
    assert broken is None and total == len(ids(busy)) >= 6


def test_a_changed_event_is_found(busy: Service) -> None:
    victim = ids(busy)[3]
    with busy.transaction() as session:
        session.execute(update(AuditEvent).where(AuditEvent.id == victim)
                        .values(actor="someone-else"))
    _, broken = busy.verify_audit()
    assert broken is not None and broken.event_id == victim
    assert "changed" in broken.problem


def test_a_deleted_event_is_found(busy: Service) -> None:
    all_ids = ids(busy)
    with busy.transaction() as session:
        session.execute(delete(AuditEvent).where(AuditEvent.id == all_ids[2]))
    _, broken = busy.verify_audit()
    assert broken is not None and broken.event_id == all_ids[3]
    assert "removed or reordered" in broken.problem


def test_reordered_events_are_found(busy: Service) -> None:
    first, second = ids(busy)[1:3]
    with busy.transaction() as session:
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
    _, broken = busy.verify_audit()
    assert broken is not None and broken.event_id == first


def test_downloads_of_key_material_are_in_the_log(busy: Service) -> None:
    events = busy.audit_events(tenant="default", action="cert.download")
    assert len(events) == 1 and events[0].details["serials"]


def test_a_tenants_log_holds_only_its_events(busy: Service) -> None:
    busy.create_tenant("acme")
    assert {e.tenant for e in busy.audit_events(tenant="default")} == {"default"}
    assert all(e.tenant == "acme" for e in busy.audit_events(tenant="acme"))


def test_export_shows_times_in_the_chosen_zone(busy: Service) -> None:
    lines = "".join(busy.export_audit_csv(tenant="default", zone="Asia/Tokyo")).splitlines()
    assert lines[0].startswith("id,time_utc,time_Asia/Tokyo,")
    assert "+09:00" in lines[1]
