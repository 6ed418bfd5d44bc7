"""``POST /api/v1/lifecycle/run`` while another run (another process or replica) holds the
lease: 409, saying so, and nothing done; once that run has ended, it runs."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ca.service import Service, leases, lifecycle
from tests.support.http import bearer

PROBLEM = "application/problem+json"


def test_a_lifecycle_run_while_another_runs_is_409_saying_so(
        client: TestClient, tokens: dict[str, str], service: Service) -> None:
    with service.database.transaction() as session:
        assert leases.take(session, lifecycle.LIFECYCLE_LEASE, "replica-2/4242/x",
                           now=service.clock.now(), ttl=lifecycle.LIFECYCLE_TTL)
    until = service.clock.now() + lifecycle.LIFECYCLE_TTL
    busy = client.post("/api/v1/lifecycle/run", headers=bearer(tokens["operator"]))
    assert (busy.status_code, busy.headers["content-type"]) == (409, PROBLEM)
    assert busy.json() == {
        "type": "urn:tegata:problem:conflict", "title": "Conflict", "status": 409,
        "detail": f"another lifecycle run is in progress (until {until:%Y-%m-%d %H:%M:%S} "
                  "UTC at the latest): this one did nothing"}
    with service.database.transaction() as session:
        leases.release(session, lifecycle.LIFECYCLE_LEASE, "replica-2/4242/x")
    ran = client.post("/api/v1/lifecycle/run", headers=bearer(tokens["operator"]))
    assert ran.status_code == 200 and ran.json()["suspended"] == 0
