"""Bulk issuance as a background job (the API's): the same ``issue_bulk`` the CLI runs,
with its progress in the job's row and its result in one shape."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ca import audit, present
from ca.audit import Actor
from ca.errors import ConfigError, StorageError
from ca.service.certificates import Certificates
from ca.service.jobs import Jobs, JobView
from ca.service.requests import IssueRequest

ISSUE = "issue"
UNAVAILABLE = "the service cannot complete this request now"
log = logging.getLogger("tegata.jobs")


class BulkIssue:
    """Bulk issuance as a background job."""

    def __init__(self, *, certificates: Certificates, jobs: Jobs) -> None:
        self.certificates = certificates
        self.jobs = jobs

    def start(self, request: IssueRequest, *, admin_zone: str | None = None,
                        actor: Actor = audit.CLI_ACTOR) -> JobView:
        """Check now what would refuse the whole request (tenant, zone, expiry), then issue
        in the background; poll ``get_job`` for progress and the result."""
        self.certificates.check_issue(request, admin_zone=admin_zone)

        def work(progress: Callable[[int, int], None]) -> dict[str, Any]:
            try:
                return present.bulk_job_result(self.certificates.issue_bulk(
                    request, admin_zone=admin_zone, actor=actor, progress=progress))
            except (ConfigError, StorageError) as exc:
                # as a single issuance answers (503): a key path or database detail stays in
                # the log, not in the job's error the API shows
                log.error("bulk issuance for tenant %s failed: %s", request.tenant,
                          exc.message)
                raise type(exc)(UNAVAILABLE) from None

        return self.jobs.start(request.tenant, ISSUE, work)
