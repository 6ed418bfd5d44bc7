"""A bulk issuance's write and a subscription end at the same moment (PostgreSQL): the
end waits for the new certificates and suspends them too, never leaving valid ones in a
suspended tenant. The job is held between making its certificates and recording them by a
lock on one of its users' rows; each step is judged by state (who waits on a lock), not by
timing."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, select, text

from ca.db.models import User
from ca.settings import Settings
from ca.states import State
from tests.integration.test_job_progress import until
from tests.served import live_service, serving

TENANT = "nagoya"
USERS = 30
DEADLINE = 60.0  # seconds: bounded waits for what must happen, never a measure

WAITING = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
               "AND datname = current_database()")


def waiters(conn: Connection) -> int:
    return int(conn.execute(WAITING).scalar_one())


def wait_for(done: Any) -> None:
    deadline = time.monotonic() + DEADLINE
    while not done() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_subscription_end_during_a_bulk_write_suspends_the_new_certificates(
        settings: Settings, tmp_path: Path) -> None:
    with live_service(settings, TENANT, "名古屋支店", users=USERS) as service:
        token = service.tokens.create(role="admin", tenant=TENANT)[0]
        yesterday = service.clock.now().date() - dt.timedelta(days=2)
        with serving(settings, tmp_path / "a.log") as server, \
                service.engine.connect() as held, service.engine.connect() as watch:
            watch.execution_options(isolation_level="AUTOCOMMIT")
            held.execute(select(User.id).where(User.login == "user0000").with_for_update())
            answer = httpx.post(f"{server.url}/api/v1/tenants/{TENANT}/certificates/bulk",
                                json={"selection": {"all": True}, "reissue": "revoke"},
                                timeout=30, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 202, answer.text
            job_id = answer.json()["id"]
            # the job's write waits on the held user row: it has read the tenant
            wait_for(lambda: waiters(watch) == 1)
            assert waiters(watch) == 1
            ended: list[Any] = []
            end = threading.Thread(target=lambda: ended.append(service.lifecycle.set_subscription(
                TENANT, ends=yesterday, grace_days=30, allow_past=True)))
            end.start()
            # the end waits for the job's write (the tenant's row), or, unlocked, is done
            wait_for(lambda: waiters(watch) == 2 or not end.is_alive())
            held.rollback()  # the job records its certificates
            end.join(DEADLINE)
            final = until(server, token, job_id, lambda job: job["status"] != "running")
        assert ended[0].state == "grace"
        assert (final["status"], len(final["result"]["issued"])) == ("succeeded", USERS)
        states = [c.state for c in service.certificates.list_certificates(TENANT)]
        assert states == [State.SUSPENDED] * USERS
