"""Use cases: the CA hierarchy, users, certificates, tokens. Each is one transaction.

The API and the CLI both call the use cases of the ``Service`` that ``build_service`` wires
(``ca.service.root``); neither reaches the database or a key another way.
"""

from __future__ import annotations

from ca.service.auditlog import EventView
from ca.service.crl_publication import CrlView
from ca.service.downloads import BulkDownload
from ca.service.jobs import JobView
from ca.service.lifecycle import LifecycleReport, SubscriptionView
from ca.service.requests import InitRequest, IssueRequest
from ca.service.root import Service, build_service
from ca.service.selection import Selection
from ca.service.users import ImportReport, UserSpec, UserView
from ca.service.views import (
    DEFAULT_TENANT,
    BulkResult,
    Bundle,
    CAView,
    CertificateView,
    Principal,
    TenantSettings,
    TokenView,
)

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
    "TenantSettings",
    "TokenView",
    "UserSpec",
    "UserView",
    "build_service",
]
