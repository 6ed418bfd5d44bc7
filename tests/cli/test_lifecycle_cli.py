"""``tegata lifecycle run`` while another run (another process or replica) holds the lease:
one line saying so, exit 1, nothing done; once that run has ended, it runs."""

from __future__ import annotations

from ca.service import build_service, leases, lifecycle
from ca.settings import load_settings
from tests.support.cli import Cli, Env


def test_lifecycle_run_while_another_runs_says_so_in_one_line(ready_sqlite: Env,
                                                              cli: Cli) -> None:
    service = build_service(load_settings())
    try:
        now = service.clock.now()
        with service.database.transaction() as session:
            assert leases.take(session, lifecycle.LIFECYCLE_LEASE, "replica-2/4242/x",
                               now=now, ttl=lifecycle.LIFECYCLE_TTL)
        until = now + lifecycle.LIFECYCLE_TTL
        result = cli("lifecycle", "run")
        assert result.code == 1 and result.out == ""
        assert result.error() == (f"another lifecycle run is in progress (until "
                                  f"{until:%Y-%m-%d %H:%M:%S} UTC at the latest): this one "
                                  "did nothing")
        with service.database.transaction() as session:  # that run ends
            leases.release(session, lifecycle.LIFECYCLE_LEASE, "replica-2/4242/x")
        assert cli.ok("lifecycle", "run").out.startswith("suspended 0, ")
    finally:
        service.engine.dispose()
