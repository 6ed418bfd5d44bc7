"""Writers at once, on SQLite and PostgreSQL, with real threads against one service (as
``tegata serve`` runs its requests): the audit chain never forks, and one tenant's bulk work
(issuance, CSV import, bulk download) never holds up another tenant's revocation.

The orderings do not depend on the machine's speed: the revocation starts once the bulk
work has reported progress and must be done while that work is still going on; its latency
is compared with the work's own duration, never with a fixed number of milliseconds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from ca.db.models import AuditEvent
from ca.service import IssueRequest, Service

BUNDLES = 16  # concurrent downloads of key material (issue 11, item 5: 8 forked the chain)
WAIT = 120.0  # seconds: the bound of every wait, never reached when things work


def events(service: Service) -> int:
    with service.reading() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` in ``count`` threads released together; each one's result or exception."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait(timeout=WAIT)
        try:
            results[i] = work(i)
        except Exception as exc:  # the test asserts on it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not any(t.is_alive() for t in threads)
    return results


def test_concurrent_bundle_downloads_keep_the_audit_chain_whole(service: Service) -> None:
    service.create_tenant("acme", display_name="株式会社アクメ")
    logins = [f"user{i:02}" for i in range(BUNDLES)]
    for login in logins:
        service.add_user("acme", login, email=f"{login}@example.com", allow=True)
    serials = [v.serial for v in service.issue(IssueRequest(tenant="acme",
                                                            logins=tuple(logins)))]
    before = events(service)

    bundles = at_once(BUNDLES, lambda i: service.bundle(serials[i], tenant="acme"))

    assert [b.serial for b in bundles] == serials  # every download answered, none refused
    check = service.verify_audit()
    assert check.broken is None
    assert check.events == events(service) == before + BUNDLES
    downloads = service.audit_events(tenant="acme", action="cert.download")
    assert sorted(e.details["serials"][0] for e in downloads) == sorted(serials)
