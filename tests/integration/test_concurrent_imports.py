"""Two CSV imports at once on PostgreSQL, both creating the same new user and the same new
group: both succeed, and the tenant ends as if they had run one after the other. Both are
held, after reading, on a row lock of a user both change, so that both have read before
either writes; each step is judged by state (who waits on a lock), not by timing."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Connection, select, text

from ca.db import queries
from ca.db.models import User
from ca.errors import Conflict
from ca.service import Service, userrows

TENANT = "default"
SERIAL = "osaka"
ROWS = 1000  # rows behind the one that conflicts, still in the pipeline
DEADLINE = 60.0  # seconds: bounded waits for what must happen, never a measure
HEADER = "login,email,name,groups,secure_access\n"
FIRST = (HEADER + "kizon,kizon@example.jp,既存 更新,,no\n"
         "yamada,yamada@example.jp,山田,新部署,yes\n"
         "sato,sato@example.jp,佐藤,新部署,no\n").encode()
SECOND = (HEADER + "kizon,kizon@example.jp,既存 更新,,no\n"
          "yamada,yamada@example.jp,山田,新部署,yes\n"
          "kato,kato@example.jp,加藤,新部署;東京,no\n").encode()
WAITING = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
               "AND datname = current_database()")


def waiters(conn: Connection) -> int:
    return int(conn.execute(WAITING).scalar_one())


def tenant_users(service: Service, tenant: str) -> list[str]:
    return sorted(service.users.export_users(tenant))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has no row locks
def test_two_imports_creating_the_same_user_and_group_at_once_both_succeed(
        service: Service) -> None:
    service.hierarchy.create_tenant(SERIAL, display_name="大阪支店", ca_key_type="ec-p256")
    for tenant in (TENANT, SERIAL):
        service.users.add(tenant, "kizon", email="kizon@example.jp", display_name="既存")
    reports: dict[str, Any] = {}

    def run(name: str, data: bytes) -> None:
        try:
            reports[name] = service.users.import_users(TENANT, data)
        except Exception as exc:
            reports[name] = exc

    with service.engine.connect() as held, service.engine.connect() as watch:
        watch.execution_options(isolation_level="AUTOCOMMIT")
        held.execute(select(User.id).where(User.login == "kizon").with_for_update())
        threads = [threading.Thread(target=run, args=("first", FIRST)),
                   threading.Thread(target=run, args=("second", SECOND))]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + DEADLINE
        while waiters(watch) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert waiters(watch) == 2  # both have read: neither has written
        held.rollback()
        for thread in threads:
            thread.join(DEADLINE)
    ran = {name: (r.created, r.updated, r.unchanged) if not isinstance(r, Exception) else r
           for name, r in reports.items()}
    # whichever wrote first created the shared user; the other, read again, finds it
    assert ran in ({"first": (["yamada", "sato"], ["kizon"], []),
                    "second": (["kato"], [], ["kizon", "yamada"])},
                   {"first": (["sato"], [], ["kizon", "yamada"]),
                    "second": (["yamada", "kato"], ["kizon"], [])})
    service.users.import_users(SERIAL, FIRST)
    service.users.import_users(SERIAL, SECOND)
    assert tenant_users(service, TENANT) == tenant_users(service, SERIAL)
    assert service.users.list_groups(TENANT) == service.users.list_groups(SERIAL) == [
        ("新部署", 3), ("東京", 1)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_conflicting_set_insert_fails_with_the_conflict_alone(
        service: Service, caplog: pytest.LogCaptureFixture) -> None:
    """The CLI's stderr is one line: psycopg's executemany, aborted in its pipeline, would
    also log "error ignored terminating <psycopg.Pipeline>"."""
    service.users.import_users(TENANT,
                               (HEADER + "yamada,yamada@example.jp,山田,新部署,yes\n").encode())
    with pytest.raises(Conflict, match=r"^the change conflicts with existing data$"), \
            service.database.transaction() as session:
        owner = queries.tenant(session, TENANT)
        userrows.insert_users(session, owner, [
            {"login": "yamada", "email": "yamada@example.jp", "display_name": "山田",
             "kind": "person", "secure_access": True}] + [
            {"login": f"user{n}", "email": f"user{n}@example.jp", "display_name": "利用者",
             "kind": "person", "secure_access": False} for n in range(ROWS)],
            [[]] * (ROWS + 1), now=service.clock.now())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
