"""Background jobs for long bulk work: started by the API, polled by the client.

The job's row holds its status, progress and result, so any worker or replica can answer a
poll: progress is written to the row as the work reports it (at most ``PROGRESS_WRITES``
times a job, and whenever the total changes or the work is done). A job runs in a thread of
the process that accepted it, which renews the lease every ``HEARTBEAT`` seconds (a failed
renewal, say while the work holds SQLite's write lock, is tried again at the next beat). If
that process dies, the lease lapses: a poll, the lifecycle run or a server's start then marks
the job failed, keeping ``done``/``total`` as last written, and what the work committed
stays. ``done`` is what the work last reported:
for an issuance, certificates made, which land together at its end or not at all.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ca.clock import Clock
from ca.db import queries
from ca.db.models import Job, Tenant
from ca.errors import CAError, NotFound
from ca.service.plumbing import Database

log = logging.getLogger("tegata.jobs")
_JOB_ID = re.compile(r"[0-9a-f]{32}")
Work = Callable[[Callable[[int, int], None]], dict[str, Any]]
PROGRESS_WRITES = 50  # progress rows written per job, at most, besides the first and last
_RUNNING: set[str] = set()  # jobs whose worker is this process: never lapsed, seen from here
LEASE = dt.timedelta(minutes=2)
HEARTBEAT = 10.0  # seconds between renewals: a dozen chances before the lease lapses
STOPPED = ("the worker stopped (server restarted?) before the job finished: what it "
           "committed stays; done and total are what it last reported")


@dataclass(frozen=True, kw_only=True)
class JobView:
    id: str
    tenant: str
    kind: str
    status: str
    total: int
    done: int
    result: dict[str, Any] | None
    error: str | None


class Jobs:
    """Background jobs: started in a thread, their progress and outcome in the database."""

    def __init__(self, *, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    def start(self, tenant: str, kind: str, work: Work) -> JobView:
        """Record a job and run ``work(progress)`` in a background thread."""
        now = self.clock.now()
        job_id = secrets.token_hex(16)
        with self.database.transaction() as session:
            owner = queries.tenant(session, tenant)
            session.add(Job(id=job_id, tenant_id=owner.id, kind=kind, status="running",
                            total=0, done=0, created_at=now, lease_expires_at=now + LEASE))
        _RUNNING.add(job_id)
        thread = threading.Thread(target=self._run, args=(job_id, work), daemon=True,
                                  name=f"job-{job_id[:8]}")
        thread.start()
        return self.get(tenant, job_id)

    def _run(self, job_id: str, work: Work) -> None:
        reported = _Reported()

        def progress(done: int, total: int) -> None:
            if reported.due(done, total):
                self._write_progress(job_id, done, total)

        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job_id, stop), daemon=True,
                                name=f"lease-{job_id[:8]}")
        beat.start()
        try:
            result = work(progress)
            outcome: dict[str, Any] = {"status": "succeeded", "result": json.dumps(result)}
        except CAError as exc:
            outcome = {"status": "failed", "error": exc.message}
        except Exception as exc:  # the thread must record every failure, then log it
            log.exception("job %s failed", job_id)
            outcome = {"status": "failed", "error": f"internal error ({type(exc).__name__})"}
        finally:
            stop.set()
            beat.join()
        # the worker knows best: this holds even if a poll meanwhile took it for dead
        try:
            with self.database.transaction() as session:
                job = session.get(Job, job_id)
                if job is not None:
                    if reported.last is not None:
                        job.done, job.total = reported.last
                    job.status = outcome["status"]
                    job.result = outcome.get("result")
                    job.error = outcome.get("error")
                    job.finished_at = self.clock.now()
                    job.lease_expires_at = None
        finally:
            _RUNNING.discard(job_id)

    def _write_progress(self, job_id: str, done: int, total: int) -> None:
        """Progress into the job's row, where every worker and replica reads it; a failed
        write (say the database busy) is left to the next one."""
        try:
            with self.database.transaction() as session:
                session.execute(update(Job).where(Job.id == job_id, Job.status == "running")
                                .values(done=done, total=total)
                                .execution_options(synchronize_session=False))
        except CAError as exc:
            log.warning("job %s: could not record its progress: %s", job_id, exc.message)

    def _heartbeat(self, job_id: str, stop: threading.Event) -> None:
        """Renew the job's lease until the work ends."""
        while not stop.wait(HEARTBEAT):
            try:
                with self.database.transaction() as session:
                    session.execute(update(Job).where(Job.id == job_id,
                                                      Job.status == "running")
                                    .values(lease_expires_at=self.clock.now() + LEASE)
                                    .execution_options(synchronize_session=False))
            except CAError as exc:  # the next beat tries again, well inside the lease
                log.warning("job %s: could not renew its lease: %s", job_id, exc.message)

    def get(self, tenant: str, job_id: str) -> JobView:
        # ids are 32 hex digits (start_job): another string names no job, and is not sent to
        # the database, which may refuse it (PostgreSQL text holds no NUL)
        if not _JOB_ID.fullmatch(job_id):
            raise NotFound(f"no job {job_id[:64]!r}", field="job")
        now = self.clock.now()
        with self.database.reading() as session:
            lapsed = session.scalar(select(Job.id).where(Job.id == job_id, _lapsed(now)))
        if lapsed is not None:
            with self.database.transaction() as session:
                fail_lapsed(session, now=now, job_id=job_id)
        with self.database.reading() as session:
            row = session.execute(select(Job, Tenant.name).join(
                Tenant, Job.tenant_id == Tenant.id).where(
                Job.id == job_id, Tenant.name == tenant)).first()
            if row is None:
                raise NotFound(f"no job {job_id[:64]!r}", field="job")
            job, name = row
            return JobView(id=job.id, tenant=name, kind=job.kind, status=job.status,
                           total=job.total, done=job.done,
                           result=json.loads(job.result) if job.result else None,
                           error=job.error)


@dataclass
class _Reported:
    """The progress a job last reported, and whether a report is worth a write: the first,
    the last, a new total, or a step of ``1/PROGRESS_WRITES`` of the work since the last."""

    last: tuple[int, int] | None = None
    written: int = -1

    def due(self, done: int, total: int) -> bool:
        previous, self.last = self.last, (done, total)
        step = max(1, total // PROGRESS_WRITES)
        if previous is None or previous[1] != total or done >= total or \
                done - self.written >= step:
            self.written = done
            return True
        return False


def _lapsed(now: dt.datetime) -> ColumnElement[bool]:
    """SQL: running, and its lease lapsed (or it has none: it ran before leases existed)."""
    return (Job.status == "running") & or_(Job.lease_expires_at.is_(None),
                                           Job.lease_expires_at < now)


def fail_lapsed(session: Session, *, now: dt.datetime, job_id: str | None = None) -> int:
    """Mark failed every running job (or ``job_id``) whose lease lapsed: its worker died.
    A conditional UPDATE, so a worker renewing at the same moment wins or loses whole."""
    query = update(Job).where(_lapsed(now))
    if job_id is not None:
        query = query.where(Job.id == job_id)
    if _RUNNING:
        query = query.where(Job.id.not_in(sorted(_RUNNING)))  # alive: they run here
    failed = session.execute(query.values(status="failed", error=STOPPED, finished_at=now)
                             .execution_options(synchronize_session=False))
    return int(failed.rowcount)  # type: ignore[attr-defined]
