"""One lifecycle run at a time, and jobs whose worker died: leases, on both databases.

Time is the FixedClock's: a lease lapses because the clock is moved past it, never by
waiting. Two runs at once are two Service objects (two engines, as two processes have)
released together by a barrier.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from ca.clock import FixedClock
from ca.db.models import Certificate, Hold, Job, Tenant
from ca.errors import Conflict
from ca.service import (
    IssueRequest,
    LifecycleReport,
    Service,
    build_service,
    jobs,
    leases,
    lifecycle,
)
from ca.settings import Settings
from tests.moments import MOMENTS

TENANT = "tokyo"
DISPLAY = "Example Holdings International Corporation Japan Branch Tokyo"
CERTS = 20
BUSY = ("another lifecycle run is in progress (until {:%Y-%m-%d %H:%M:%S} UTC at the "
        "latest): this one did nothing")


@pytest.fixture
def ended(service: Service, clock: FixedClock) -> list[str]:
    """A tenant whose subscription ended yesterday (grace: 30 days), 20 certificates."""
    service.hierarchy.create_tenant(TENANT, display_name=DISPLAY, ca_key_type="ec-p256")
    logins = tuple(f"user{n:02d}" for n in range(CERTS))
    for login in logins:
        service.users.add(TENANT, login, email=f"{login}@example.com", allow=True)
    serials = [v.serial for v in service.certificates.issue(IssueRequest(tenant=TENANT,
                                                                         logins=logins))]
    service.lifecycle.set_subscription(TENANT, ends=(MOMENTS.start + dt.timedelta(days=1)).date(),
                             zone="Asia/Tokyo")
    clock.advance(dt.timedelta(days=2))
    return serials


def holds(service: Service) -> dict[str, list[str]]:
    with service.database.reading() as session:
        rows = session.execute(select(Certificate.serial, Hold.cause).join(
            Hold, Hold.certificate_id == Certificate.id).order_by(Hold.id)).all()
    found: dict[str, list[str]] = {}
    for serial, cause in rows:
        found.setdefault(serial, []).append(cause)
    return found


def suspend_events(service: Service) -> dict[str, int]:
    counted: dict[str, int] = {}
    for event in service.audit.events(tenant=TENANT, action="cert.suspend"):
        serial = event.target.rsplit("/", 1)[1]
        counted[serial] = counted.get(serial, 0) + 1
    return counted


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released at the same moment; each one's result or error."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait(timeout=30)
        try:
            return call()
        except Conflict as exc:
            return exc

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def test_two_lifecycle_runs_at_once_make_one_hold_and_one_event_per_certificate(
        service: Service, settings: Settings, clock: FixedClock, ended: list[str]) -> None:
    other = build_service(settings, clock=clock)  # another process's engine and sessions
    try:
        outcomes = together(service.lifecycle.run, other.lifecycle.run)
    finally:
        other.engine.dispose()
    assert holds(service) == {serial: ["subscription"] for serial in ended}
    assert suspend_events(service) == {serial: 1 for serial in ended}
    reports = [o for o in outcomes if isinstance(o, LifecycleReport)]
    refused = [o.message for o in outcomes if isinstance(o, Conflict)]
    assert len(reports) + len(refused) == 2 and reports
    # the second either found the lease taken, or came after the first and found it done
    assert sorted(r.suspended for r in reports) in ([CERTS], [0, CERTS])
    assert refused in ([], [BUSY.format(clock.now() + lifecycle.LIFECYCLE_TTL)])


def test_a_run_while_another_holds_the_lease_does_nothing_until_that_lease_lapses(
        service: Service, clock: FixedClock, ended: list[str]) -> None:
    with service.database.transaction() as session:  # a run in another replica, which then dies
        assert leases.take(session, lifecycle.LIFECYCLE_LEASE, "replica-2/4242/dead",
                           now=clock.now(), ttl=lifecycle.LIFECYCLE_TTL)
    until = clock.now() + lifecycle.LIFECYCLE_TTL
    with pytest.raises(Conflict) as refused:
        service.lifecycle.run()
    assert refused.value.message == BUSY.format(until)
    assert holds(service) == {} and suspend_events(service) == {}

    clock.advance(lifecycle.LIFECYCLE_TTL - dt.timedelta(seconds=1))
    with pytest.raises(Conflict):
        service.lifecycle.run()
    clock.advance(dt.timedelta(seconds=1))  # the dead run's lease has lapsed
    assert service.lifecycle.run().suspended == CERTS
    assert holds(service) == {serial: ["subscription"] for serial in ended}
    assert service.lifecycle.run().suspended == 0  # released: the next run goes at once


def add_job(service: Service, *, lease: dt.datetime | None, done: int, total: int) -> str:
    """A job row as a worker in another process leaves it: running, progress last written."""
    job_id = secrets.token_hex(16)
    with service.database.transaction() as session:
        tenant_id = session.scalar(select(Tenant.id).where(Tenant.name == "default"))
        assert tenant_id is not None
        session.add(Job(id=job_id, tenant_id=tenant_id, kind="issue", status="running",
                        done=done, total=total, created_at=service.clock.now(),
                        lease_expires_at=lease))
    return job_id


def test_a_job_whose_worker_died_reads_failed_once_its_lease_lapses(
        service: Service, clock: FixedClock) -> None:
    polled = add_job(service, lease=clock.now() + jobs.LEASE, done=7, total=20)
    swept = add_job(service, lease=clock.now() + jobs.LEASE, done=0, total=0)
    older = add_job(service, lease=None, done=3, total=5)  # from before leases existed
    assert service.jobs.get("default", polled).status == "running"
    clock.advance(jobs.LEASE)  # still held at the instant it ends
    assert service.jobs.get("default", polled).status == "running"

    clock.advance(dt.timedelta(seconds=1))
    view = service.jobs.get("default", polled)
    assert (view.status, view.error, view.done, view.total, view.result) == (
        "failed", jobs.STOPPED, 7, 20, None)
    assert jobs.STOPPED == ("the worker stopped (server restarted?) before the job finished: "
                            "what it committed stays; done and total are what it last reported")
    service.lifecycle.run()  # the lifecycle pass marks the others
    with service.database.reading() as session:
        rows = {j.id: (j.status, j.error, j.done, j.total, j.finished_at)
                for j in session.scalars(select(Job))}
    assert rows == {polled: ("failed", jobs.STOPPED, 7, 20, clock.now()),
                    swept: ("failed", jobs.STOPPED, 0, 0, clock.now()),
                    older: ("failed", jobs.STOPPED, 3, 5, clock.now())}


def test_a_running_worker_renews_its_lease_and_writes_its_progress(
        service: Service, clock: FixedClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "HEARTBEAT", 0.01)
    reported, finish = threading.Event(), threading.Event()

    def work(progress: Callable[[int, int], None]) -> dict[str, Any]:
        progress(3, 10)
        reported.set()
        assert finish.wait(timeout=30)
        progress(10, 10)
        return {"issued": 10}

    job_id = service.jobs.start("default", "issue", work).id
    assert reported.wait(timeout=30)
    clock.advance(jobs.LEASE * 10)  # far past the first lease: renewals carry it on

    def row() -> tuple[int, int, dt.datetime | None]:
        with service.database.reading() as session:
            job = session.get(Job, job_id)
            assert job is not None
            return job.done, job.total, job.lease_expires_at

    for _ in range(3000):  # bounded: the beat is 10 ms, this gives it 30 s on a busy machine
        if row() == (3, 10, clock.now() + jobs.LEASE):
            break
        threading.Event().wait(0.01)
    assert row() == (3, 10, clock.now() + jobs.LEASE)
    here = set(jobs._RUNNING)
    jobs._RUNNING.clear()  # as another replica sees it: only the lease tells it is alive
    try:
        with service.database.transaction() as session:
            assert jobs.fail_lapsed(session, now=clock.now()) == 0
    finally:
        jobs._RUNNING.update(here)
    finish.set()
    for _ in range(3000):
        if service.jobs.get("default", job_id).status != "running":
            break
        threading.Event().wait(0.01)
    view = service.jobs.get("default", job_id)
    assert (view.status, view.done, view.total, view.result) == (
        "succeeded", 10, 10, {"issued": 10})
