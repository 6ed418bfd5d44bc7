"""Use cases: the CA hierarchy, users, certificates, tokens. Each is one transaction.

The API and the CLI both call ``Service``; neither reaches the database or a key another way.
"""

from __future__ import annotations

from ca.service.auditlog import AuditUseCases, EventView
from ca.service.bulkjobs import BulkJobUseCases
from ca.service.certificates import CertificateUseCases
from ca.service.downloads import BulkDownload, DownloadUseCases
from ca.service.gateway import GatewayUseCases
from ca.service.hierarchy import HierarchyUseCases
from ca.service.jobs import JobUseCases, JobView
from ca.service.lifecycle import LifecycleReport, LifecycleUseCases, SubscriptionView
from ca.service.links import LinkUseCases
from ca.service.ocsp import OcspUseCases
from ca.service.revocation import CrlView
from ca.service.selection import Selection
from ca.service.tokens import TokenUseCases
from ca.service.users import ImportReport, UserSpec, UserUseCases, UserView
from ca.service.views import (
    DEFAULT_TENANT,
    BulkResult,
    Bundle,
    CAView,
    CertificateView,
    InitRequest,
    IssueRequest,
    Principal,
    TokenView,
)


class Service(HierarchyUseCases, UserUseCases, BulkJobUseCases, CertificateUseCases,
              DownloadUseCases, JobUseCases, LifecycleUseCases, OcspUseCases, TokenUseCases,
              LinkUseCases, GatewayUseCases, AuditUseCases):
    """Tegata's use cases over one database, one key store and one clock."""


__all__ = [
    "DEFAULT_TENANT",
    "BulkDownload",
    "BulkResult",
    "Bundle",
    "CAView",
    "CertificateView",
    "CrlView",
    "EventView",
    "ImportReport",
    "InitRequest",
    "IssueRequest",
    "JobView",
    "LifecycleReport",
    "Principal",
    "Selection",
    "Service",
    "SubscriptionView",
    "TokenView",
    "UserSpec",
    "UserView",
]
