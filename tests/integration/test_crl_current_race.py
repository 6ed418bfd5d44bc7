"""Two replicas finding a CA's CRL stale at the same moment serve one new CRL, not two.

A gateway's fetch makes the CRL anew once it is past half its validity (``Crls.current``).
Replica A is held inside making it (its CA's row locked, not yet committed) while replica B
is asked for the same CRL: B waits for A's and serves it, instead of making another one
right after (which every fetch through every replica would otherwise do at each renewal).
On SQLite a write transaction holds the one write lock from its start, so B waits there in
any case; PostgreSQL is where the CA's row must be locked before the second look.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from ca.clock import FixedClock
from ca.db.models import Crl
from ca.service import CrlView, Service, build_service

HELD = 0.5  # seconds replica A stays inside its transaction once B has been asked


@pytest.fixture
def other(service: Service) -> Iterator[Service]:
    """Replica B: another Service on the same database and keys, on the same clock."""
    replica = build_service(service.settings, clock=service.clock)
    yield replica
    replica.engine.dispose()


def test_two_replicas_renewing_one_stale_crl_at_once_make_one(
        service: Service, other: Service, clock: FixedClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = service.crls.current("default")
    clock.advance(dt.timedelta(days=4))  # past half the default 7 days
    made, go = threading.Event(), threading.Event()
    real = service.publisher.publish

    def held(*args: object, **kwargs: object) -> Crl:
        crl = real(*args, **kwargs)  # type: ignore[arg-type]
        made.set()
        assert go.wait(timeout=30)
        return crl

    monkeypatch.setattr(service.publisher, "publish", held)

    def replica_b() -> CrlView:
        assert made.wait(timeout=30)
        return other.crls.current("default")

    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(service.crls.current, "default")
        b = pool.submit(replica_b)
        assert made.wait(timeout=30)
        time.sleep(HELD)  # B has been asked meanwhile, and waits
        go.set()
        served = {a.result(timeout=30).number, b.result(timeout=30).number}
    with service.database.reading() as session:
        newer = session.scalar(select(func.count()).select_from(Crl).where(
            Crl.number > first.number, Crl.authority_id == select(Crl.authority_id).where(
                Crl.number == first.number).scalar_subquery()))
    assert newer == 1
    assert len(served) == 1 and served.pop() > first.number
