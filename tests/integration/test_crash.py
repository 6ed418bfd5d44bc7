"""A bulk job when its server is killed (SIGKILL, no chance to clean up), on both databases.

The job's row says ``running`` until its lease lapses (another replica may be running it as
far as anyone can tell); then a poll, here through the restarted server, reads it failed
with the worker-stopped error and what was committed. The lease lapses because a FixedClock
is moved past it, never by waiting.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ca.clock import FixedClock
from ca.service import Service, build_service, jobs
from ca.settings import Settings
from tests.served import Server, live_service, serving

TENANT = "osaka"
DISPLAY = "Example Holdings International Corporation Japan Branch Osaka"
USERS = 500  # enough that the job is still running when the server is killed


@pytest.fixture
def live(settings: Settings) -> Iterator[Service]:
    with live_service(settings, TENANT, DISPLAY, users=USERS) as service:
        yield service


def poll(server: Server, token: str, job_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/v1/tenants/{TENANT}/jobs/{job_id}", timeout=30,
                       headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_a_job_whose_server_was_killed_reads_failed_with_what_was_committed(
        live: Service, settings: Settings, tmp_path: Path) -> None:
    token = live.tokens.create(role="admin", tenant=TENANT)[0]
    log = tmp_path / "serve.log"
    with serving(settings, log) as first:
        answer = httpx.post(f"{first.url}/api/v1/tenants/{TENANT}/certificates/bulk",
                            json={"selection": {"all": True}}, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # bounded: until the work has visibly begun
            seen = poll(first, token, job_id)
            if seen["done"] >= 1:
                break
            time.sleep(0.01)
        assert (seen["status"], seen["total"]) == ("running", USERS), seen
        first.kill()
    killed_at = dt.datetime.now(dt.UTC)

    with serving(settings, log) as second:
        # the lease has not lapsed: as far as anyone can tell, another replica runs it
        assert poll(second, token, job_id)["status"] == "running"
        later = build_service(settings, clock=FixedClock(killed_at + jobs.LEASE + dt.timedelta(
            seconds=1)))
        try:
            assert later.jobs.get(TENANT, job_id).status == "failed"
        finally:
            later.engine.dispose()
        final = poll(second, token, job_id)
        committed = len(live.certificates.list_certificates(TENANT))
        assert (final["status"], final["error"]) == ("failed", jobs.STOPPED)
        assert final["result"] is None
        # what was committed stays whole (each certificate with its audit event: an issuance
        # lands all at once, or not at all); the progress the job last wrote (certificates
        # made, in the database for every replica to read) is kept as it was
        issued = live.audit.events(tenant=TENANT, action="cert.issue", limit=10_000)
        assert committed == len(issued) and committed in (0, USERS)
        assert 1 <= final["done"] <= final["total"] == USERS
        # a new job starts and finishes on the restarted server
        again = httpx.post(f"{second.url}/api/v1/tenants/{TENANT}/certificates/bulk",
                           json={"selection": {"logins": ["user0001"]}}, timeout=30,
                           headers={"Authorization": f"Bearer {token}"}).json()["id"]
        deadline = time.monotonic() + 60
        while poll(second, token, again)["status"] == "running" and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert poll(second, token, again)["status"] == "succeeded"
