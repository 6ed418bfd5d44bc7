"""One presenter per view: the JSON-able form of each thing the use cases give back.

Both shells render through these functions, the API (each route's body, checked against
its response model) and the CLI (``--json``), so the two cannot drift: the same object is
the same JSON on either side (``tests/cli/test_one_presenter.py`` holds them to it). Nothing
here knows of HTTP or of a terminal: a view goes in, plain data (str, int, bool, None,
lists and dicts of them) comes out.

Times are RFC 3339 in UTC written with ``Z``; dates are ``YYYY-MM-DD``. The order of a CA
chain is the order of a TLS certificate chain (RFC 8446, 4.4.2): the issuing CA first, then
the root that certified it (``ca_chain``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

# the use cases' own modules, not the package: ``ca.service.bulkjobs`` renders its job's
# result here, and the package imports it
from ca.service.auditlog import AuditCheck, EventView
from ca.service.crl_publication import CrlView
from ca.service.gateway import IpPolicy
from ca.service.jobs import JobView
from ca.service.lifecycle import SubscriptionView
from ca.service.users import ImportReport, UserView
from ca.service.views import (
    BulkResult,
    CAView,
    CertificateView,
    GenerationView,
    TenantSettings,
    TokenView,
)

Data = dict[str, Any]


def timestamp(value: dt.datetime | None) -> str | None:
    """A moment in UTC, RFC 3339 with ``Z`` (what the API has always written)."""
    if value is None:
        return None
    if value.tzinfo is None:  # the databases hand back UTC; a naive value is one of them
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def day(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def certificate(view: CertificateView) -> Data:
    return {"serial": view.serial, "tenant": view.tenant, "login": view.login,
            "subject": view.subject, "state": view.state.value,
            "revoked_at": timestamp(view.revoked_at),
            "revocation_reason": view.revocation_reason,
            "has_key_material": view.has_key_material,
            "not_before": timestamp(view.not_before), "not_after": timestamp(view.not_after),
            "expiry_date": day(view.expiry_date), "expiry_zone": view.expiry_zone,
            "fingerprint_sha256": view.fingerprint_sha256, "key_type": view.key_type,
            "source": view.source, "pem": view.pem}


def user(view: UserView) -> Data:
    return {"tenant": view.tenant, "login": view.login, "email": view.email,
            "display_name": view.display_name, "kind": view.kind, "status": view.status,
            "secure_access": view.secure_access, "groups": list(view.groups),
            "certificate_status": view.certificate_status}


def group(name: str, members: int) -> Data:
    return {"name": name, "members": members}


def token(view: TokenView) -> Data:
    """A token as listed: never its text, only the prefix that tells it apart."""
    return {"id": view.id, "name": view.name, "role": view.role, "tenant": view.tenant,
            "user": view.login, "prefix": view.prefix,
            "expires_at": timestamp(view.expires_at), "revoked_at": timestamp(view.revoked_at),
            "last_used_at": timestamp(view.last_used_at)}


def ca(view: CAView) -> Data:
    return {"tenant": view.tenant, "kind": view.kind, "subject": view.subject,
            "serial": view.serial, "not_before": timestamp(view.not_before),
            "not_after": timestamp(view.not_after), "pem": view.pem}


def generation(view: GenerationView) -> Data:
    """A CA of every generation (``tegata ca show --all``, ``GET /api/v1/ca/generations``)."""
    return {**ca(view), "generation": view.generation, "current": view.current,
            "retired_at": timestamp(view.retired_at), "live_certificates": view.live}


def ca_chain(views: Iterable[CAView]) -> list[CAView]:
    """CA certificates in chain order: each one certified by the next, the root last.

    The order of a TLS certificate chain (RFC 8446, 4.4.2: each certificate certifies the one
    before it) and of the ``cat issuing.pem root.pem`` bundles gateways are given; what
    ``tegata gateway ca-bundle`` always wrote. The service hands them root first; every shell
    orders them here, so that no two commands print one chain two ways."""
    return sorted(views, key=lambda v: v.kind == "root")


def job(view: JobView) -> Data:
    return {"id": view.id, "kind": view.kind, "status": view.status, "total": view.total,
            "done": view.done, "result": view.result, "error": view.error}


def subscription(view: SubscriptionView) -> Data:
    return {"tenant": view.tenant, "kind": view.kind, "ends_on": day(view.ends_on),
            "timezone": view.zone, "ends_at": timestamp(view.ends_at),
            "grace_days": view.grace_days, "grace_ends_at": timestamp(view.grace_ends_at),
            "suspended_at": timestamp(view.suspended_at), "state": view.state}


def ip_policy(view: IpPolicy) -> Data:
    return {"tenant": view.tenant, "policy": view.policy, "networks": list(view.networks)}


def ocsp_validity(tenant: str, seconds: int) -> Data:
    return {"tenant": tenant, "ocsp_validity_seconds": seconds}


def tenant_settings(view: TenantSettings) -> Data:
    """A tenant's settings (``tegata tenant show``, ``GET .../settings``)."""
    return {"tenant": view.tenant, "ocsp_validity_seconds": view.ocsp_validity_seconds,
            "upn_suffix": view.upn_suffix, "user_download": view.user_download,
            "p12_profile": view.p12_profile, "default_validity": view.default_validity,
            "timezone": view.timezone}


def crl(tenant: str | None, view: CrlView, generation: int) -> Data:
    """A CRL's number and dates (``tegata crl show``); ``tenant`` None: the root's; the
    generation of the CA that signed it."""
    return {"tenant": tenant, "generation": generation, "number": view.number,
            "this_update": view.this_update.isoformat(),
            "next_update": view.next_update.isoformat()}


def bulk_failures(result: BulkResult) -> list[Data]:
    """Each user a bulk issuance refused, and why."""
    return [{"login": login, "reason": reason} for login, reason in result.failures]


def bulk_result(result: BulkResult) -> Data:
    """A bulk issuance in full (``tegata cert issue --best-effort --json``): each certificate
    as ``certificate`` shows it, and the users refused."""
    return {"issued": [certificate(v) for v in result.issued],
            "failures": bulk_failures(result)}


def bulk_job_result(result: BulkResult) -> Data:
    """A bulk issuance as its job keeps it (``GET .../jobs/{id}``'s ``result``): who was
    issued which serial until when, and who was refused. The certificates themselves are
    listed by ``GET .../certificates``; a job's row does not carry thousands of PEMs."""
    return {"issued": [{"login": v.login, "serial": v.serial,
                        "not_after": v.not_after.isoformat()} for v in result.issued],
            "failures": bulk_failures(result)}


def event(view: EventView) -> Data:
    return {"id": view.id, "at": timestamp(view.at), "tenant": view.tenant,
            "actor": view.actor, "source_ip": view.source_ip, "action": view.action,
            "target": view.target, "outcome": view.outcome, "request_id": view.request_id,
            "details": view.details}


def audit_check(check: AuditCheck) -> Data:
    broken = check.broken
    chains = [{"tenant": c.tenant, "events": c.events, "intact": c.broken is None,
               "broken_at": c.broken.event_id if c.broken else None,
               "problem": c.broken.problem if c.broken else None, "head": c.head,
               "removed_by_retention": c.removed, "first_kept_id": c.first_id}
              for c in check.chains]
    return {"events": check.events, "intact": broken is None,
            "broken_at": broken.event_id if broken else None,
            "problem": broken.problem if broken else None,
            "removed_by_retention": check.removed, "chains": chains}


def import_report(report: ImportReport) -> Data:
    return {"dry_run": report.dry_run, "created": report.created, "updated": report.updated,
            "unchanged": report.unchanged,
            "errors": [{"line": line, "login": login, "reason": reason}
                       for line, login, reason in report.errors]}
