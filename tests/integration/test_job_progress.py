"""A bulk job's progress lives in its row: a second server process on the same database
(another worker, another replica) sees it while the job runs, not only the process running
it. The job is held between making its certificates and recording them by a lock on one of
its users' rows, so what is seen is judged by state, not by timing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ca.db.models import User
from ca.settings import Settings
from tests.served import Server, live_service, serving

TENANT = "nagoya"
USERS = 60
DEADLINE = 60.0  # seconds: bounded waits for what must happen, never a measure


def poll(server: Server, token: str, job_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/v1/tenants/{TENANT}/jobs/{job_id}", timeout=30,
                       headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def until(server: Server, token: str, job_id: str, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE
    seen = poll(server, token, job_id)
    while not done(seen) and time.monotonic() < deadline:
        time.sleep(0.05)
        seen = poll(server, token, job_id)
    return seen


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_jobs_progress_is_seen_from_another_server_process(
        settings: Settings, tmp_path: Path) -> None:
    with live_service(settings, TENANT, "名古屋支店", users=USERS) as service:
        token = service.tokens.create(role="admin", tenant=TENANT)[0]
        # two replicas: a data directory each (one server per directory), the keys shared
        keys = str(settings.effective_key_dir)
        with serving(settings, tmp_path / "a.log", TEGATA_DATA_DIR=str(tmp_path / "a"),
                     TEGATA_KEY_DIR=keys) as first, \
                serving(settings, tmp_path / "b.log", TEGATA_DATA_DIR=str(tmp_path / "b"),
                        TEGATA_KEY_DIR=keys) as second, \
                service.engine.connect() as held:
            # the first user's row locked: the job makes every certificate, then waits here
            held.execute(select(User.id).where(User.login == "user0000").with_for_update())
            answer = httpx.post(f"{first.url}/api/v1/tenants/{TENANT}/certificates/bulk",
                                json={"selection": {"all": True}}, timeout=30,
                                headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 202, answer.text
            job_id = answer.json()["id"]
            seen = until(second, token, job_id, lambda job: job["done"] == USERS)
            assert (seen["status"], seen["done"], seen["total"]) == ("running", USERS, USERS)
            held.rollback()  # the job records its certificates
            final = until(second, token, job_id, lambda job: job["status"] != "running")
        assert (final["status"], final["done"], len(final["result"]["issued"])) == (
            "succeeded", USERS, USERS)
        assert len(service.certificates.list_certificates(TENANT)) == USERS
