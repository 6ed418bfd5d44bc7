"""What the service gained for the console, used by it and testable without it: the default
validity setting, the tenants' summary in two queries, and the audit log's outcome and
actor/target filters with a count and newest-first paging."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import event, select

from ca import audit
from ca.audit import Actor, Event
from ca.clock import FixedClock
from ca.db import queries
from ca.db.models import AuditEvent
from ca.errors import InvalidInput
from ca.service import IssueRequest, Service

UTC = dt.UTC


def setting_events(service: Service) -> list[tuple[str, str, dict[str, object]]]:
    with service.database.reading() as session:
        return [(e.action, e.actor, json.loads(e.details)) for e in session.scalars(
            select(AuditEvent).where(AuditEvent.action == "tenant.update")
            .order_by(AuditEvent.id))]


# --- default validity --------------------------------------------------------------------------


def test_the_default_validity_sets_the_default_expiry(service: Service) -> None:
    service.users.add("default", "yamada", email="yamada@example.jp", display_name="山田太郎",
                      allow=True)
    assert service.hierarchy.set_default_validity(
        "default", "p90d", actor=Actor(name="token:3:佐藤")) == "P90D"
    assert service.hierarchy.tenant_settings("default").default_validity == "P90D"
    view = service.certificates.issue(IssueRequest(tenant="default", logins=("yamada",)))[0]
    assert view.expiry_date == dt.date(2026, 3, 2) + dt.timedelta(days=90)
    # the same again is no change and no event
    service.hierarchy.set_default_validity("default", "P90D")
    assert setting_events(service) == [("tenant.update", "token:3:佐藤", {
        "default_validity": "P90D", "previous_default_validity": "P1Y"})]


@pytest.mark.parametrize("validity", ["1 year", "P0D", "", "P1000Y", "-P1Y"])
def test_a_default_validity_that_is_not_one_changes_nothing(service: Service,
                                                            validity: str) -> None:
    with pytest.raises(InvalidInput):
        service.hierarchy.set_default_validity("default", validity)
    assert service.hierarchy.tenant_settings("default").default_validity == "P1Y"
    assert setting_events(service) == []


def test_a_default_validity_past_year_9999_is_refused(service: Service,
                                                      clock: FixedClock) -> None:
    clock.set(dt.datetime(9100, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidInput, match=r"^9100-01-01 \+ P999Y is beyond year 9999$"):
        service.hierarchy.set_default_validity("default", "P999Y")
    assert service.hierarchy.tenant_settings("default").default_validity == "P1Y"


# --- the tenants' summary ----------------------------------------------------------------------


def statements(service: Service) -> tuple[list[str], object]:
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    return seen, count


@pytest.mark.parametrize("extra", [0, 6])
def test_the_summary_of_every_tenant_takes_two_queries(service: Service, extra: int) -> None:
    service.hierarchy.create_tenant("tohoku", display_name="東北電機株式会社")
    for i in range(extra):
        service.hierarchy.create_tenant(f"t{i}", display_name=f"テナント{i}")
    service.users.add("tohoku", "yamada", email="yamada@example.jp")
    service.users.add("tohoku", "suzuki", email="suzuki@example.jp")
    service.users.add("tohoku", "tanaka", email="tanaka@example.jp")
    service.users.retire("tohoku", "tanaka")
    service.lifecycle.set_subscription("tohoku", ends=dt.date(2026, 3, 1), zone="Asia/Tokyo",
                                       grace_days=30, kind="trial", allow_past=True)
    seen, count = statements(service)
    event.listen(service.engine, "before_cursor_execute", count)
    try:
        found = service.lifecycle.summaries()
    finally:
        event.remove(service.engine, "before_cursor_execute", count)
    assert len(seen) == 2
    assert [(s.name, s.display_name, s.kind, s.ends_at, s.state, s.users) for s in found] == [
        ("default", "Default", "none", None, "active", 0),
        *[(f"t{i}", f"テナント{i}", "none", None, "active", 0) for i in range(extra)],
        ("tohoku", "東北電機株式会社", "trial", dt.datetime(2026, 3, 1, 15, 0, tzinfo=UTC),
         "grace", 2)]


# --- audit filters -----------------------------------------------------------------------------


@pytest.fixture
def planted(service: Service) -> list[int]:
    """Four events of ``default`` (and one of tohoku); their ids."""
    service.hierarchy.create_tenant("tohoku", display_name="東北電機株式会社")
    rows = [("token:9:鈴木", "user.create", "Yamada", "success"),
            ("cli", "cert.issue", "yamada", "failure"),
            ("cli", "cert.revoke", "suzuki", "refused"),
            ("token:4:山田", "tenant.update", "default", "success")]
    with service.database.transaction() as session:
        default = queries.tenant(session, "default").id
        tohoku = queries.tenant(session, "tohoku").id
        for i, (actor, action, target, outcome) in enumerate(rows):
            audit.record(session, Actor(name=actor), Event(
                action=action, target=target, outcome=outcome, tenant_id=default),
                now=dt.datetime(2026, 3, 3, i, 0, tzinfo=UTC))
        audit.record(session, Actor(name="cli"), Event(
            action="cert.issue", target="yamada", outcome="failure", tenant_id=tohoku),
            now=dt.datetime(2026, 3, 3, 9, 0, tzinfo=UTC))
    since = dt.datetime(2026, 3, 3, tzinfo=UTC)
    return [e.id for e in service.audit.events(tenant="default", since=since)]


@pytest.mark.parametrize(("filters", "expected"), [
    ({"outcome": "failure"}, [1]),
    ({"outcome": "success"}, [0, 3]),
    ({"q": "YAMADA"}, [0, 1]),  # the targets Yamada and yamada
    ({"q": "山田"}, [3]),
    ({"q": "token:"}, [0, 3]),
    ({"q": "_"}, []),  # LIKE's wildcards are characters here
    ({"q": "%"}, []),
    ({"outcome": "success", "q": "yamada"}, [0]),
], ids=["failure", "success", "search-ignores-case", "search-japanese", "search-actor",
        "underscore", "percent", "combined"])
def test_outcome_and_search(service: Service, planted: list[int], filters: dict[str, str],
                            expected: list[int]) -> None:
    since = dt.datetime(2026, 3, 3, tzinfo=UTC)
    found = service.audit.events(tenant="default", since=since, **filters)  # type: ignore[arg-type]
    assert [e.id for e in found] == [planted[i] for i in expected]
    assert service.audit.count(tenant="default", since=since, **filters) == len(expected)  # type: ignore[arg-type]
    newest = service.audit.events(tenant="default", since=since, newest_first=True,
                                  **filters)  # type: ignore[arg-type]
    assert [e.id for e in newest] == [planted[i] for i in reversed(expected)]


def test_newest_first_pages(service: Service, planted: list[int]) -> None:
    since = dt.datetime(2026, 3, 3, tzinfo=UTC)
    pages = [[e.id for e in service.audit.events(tenant="default", since=since, limit=3,
                                                  offset=o, newest_first=True)]
             for o in (0, 3)]
    assert pages == [[planted[3], planted[2], planted[1]], [planted[0]]]


def test_the_csv_export_takes_the_same_filters(service: Service, planted: list[int]) -> None:
    lines = "".join(service.audit.export_csv(tenant="default", outcome="refused",
                                             q="SUZUKI")).split("\r\n")
    assert lines == [
        "id,time_utc,time_UTC,tenant,actor,source_ip,action,target,outcome,request_id,details",
        f"{planted[2]},2026-03-03T02:00:00+00:00,2026-03-03T02:00:00+00:00,default,cli,,"
        "cert.revoke,suzuki,refused,,{}", ""]


@pytest.mark.parametrize(("filters", "field"), [
    ({"outcome": "ok"}, "outcome"), ({"q": "x" * 201}, "q")])
def test_bad_filters_are_refused_by_name(service: Service, filters: dict[str, str],
                                         field: str) -> None:
    for read in (service.audit.events, service.audit.count, service.audit.export_csv):
        with pytest.raises(InvalidInput) as caught:
            read(tenant="default", **filters)  # type: ignore[operator]
        assert caught.value.field == field
