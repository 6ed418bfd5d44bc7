"""Background jobs for long bulk work: started by the API, polled by the client.

The job's row holds its status and result, so any replica can answer a poll; its progress
is kept in the memory of the process running it (the work holds the database's write lock
on SQLite, so progress cannot be written there meanwhile). A job runs in a thread of the
process that accepted it; if that process dies, the row stays ``running`` and the work,
being one transaction, left nothing half-done.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from ca.db import queries
from ca.db.models import Job, Tenant
from ca.errors import CAError, NotFound
from ca.service.core import ServiceCore

log = logging.getLogger("tegata.jobs")
_JOB_ID = re.compile(r"[0-9a-f]{32}")
Work = Callable[[Callable[[int, int], None]], dict[str, Any]]
# progress of the jobs running in this process: id -> (done, total)
_PROGRESS: dict[str, tuple[int, int]] = {}


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


class JobUseCases(ServiceCore):
    def start_job(self, tenant: str, kind: str, work: Work) -> JobView:
        """Record a job and run ``work(progress)`` in a background thread."""
        now = self.now()
        job_id = secrets.token_hex(16)
        with self.transaction() as session:
            owner = queries.tenant(session, tenant)
            session.add(Job(id=job_id, tenant_id=owner.id, kind=kind, status="running",
                            total=0, done=0, created_at=now))
        thread = threading.Thread(target=self._run, args=(job_id, work), daemon=True,
                                  name=f"job-{job_id[:8]}")
        thread.start()
        return self.get_job(tenant, job_id)

    def _run(self, job_id: str, work: Work) -> None:
        def progress(done: int, total: int) -> None:
            _PROGRESS[job_id] = (done, total)

        try:
            result = work(progress)
            outcome: dict[str, Any] = {"status": "succeeded", "result": json.dumps(result)}
        except CAError as exc:
            outcome = {"status": "failed", "error": exc.message}
        except Exception as exc:  # the thread must record every failure, then log it
            log.exception("job %s failed", job_id)
            outcome = {"status": "failed", "error": f"internal error ({type(exc).__name__})"}
        with self.transaction() as session:
            job = session.get(Job, job_id)
            if job is not None:
                job.done, job.total = _PROGRESS.pop(job_id, (job.done, job.total))
                job.status = outcome["status"]
                job.result = outcome.get("result")
                job.error = outcome.get("error")
                job.finished_at = self.now()

    def get_job(self, tenant: str, job_id: str) -> JobView:
        # ids are 32 hex digits (start_job): another string names no job, and is not sent to
        # the database, which may refuse it (PostgreSQL text holds no NUL)
        if not _JOB_ID.fullmatch(job_id):
            raise NotFound(f"no job {job_id[:64]!r}", field="job")
        with self.reading() as session:
            row = session.execute(select(Job, Tenant.name).join(
                Tenant, Job.tenant_id == Tenant.id).where(
                Job.id == job_id, Tenant.name == tenant)).first()
            if row is None:
                raise NotFound(f"no job {job_id[:64]!r}", field="job")
            job, name = row
            done, total = _PROGRESS.get(job.id, (job.done, job.total))
            return JobView(id=job.id, tenant=name, kind=job.kind, status=job.status,
                           total=total, done=done,
                           result=json.loads(job.result) if job.result else None,
                           error=job.error)
