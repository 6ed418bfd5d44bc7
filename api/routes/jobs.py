"""Background jobs' progress."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.auth import requires
from api.problems import responses
from api.routes.certificates import job_out
from api.routes.tenants import service_of
from api.schemas import JobOut

router = APIRouter(prefix="/api/v1/tenants/{tenant}/jobs", tags=["jobs"])


@router.get("/{job_id}", dependencies=[requires("operator", "admin")], response_model=JobOut,
            responses=responses(400, 401, 403, 404))
def get_job(request: Request, tenant: str, job_id: str) -> JobOut:
    """A job's status (running, succeeded, failed), progress and result."""
    return job_out(service_of(request).jobs.get(tenant, job_id))
