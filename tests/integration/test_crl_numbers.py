"""CRL Number: strictly increasing per CA, whatever the number of processes, the clocks, a
restart or a restored backup (RFC 5280, 5.2.3: "monotonically increasing").

The concurrency test runs real processes (``multiprocessing``, spawn), each with its own
Service, engine and clock, on one database and one key directory.
"""

from __future__ import annotations

import datetime as dt
import itertools
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import select

from ca.clock import FixedClock
from ca.db.models import Authority, Crl, Tenant
from ca.service import IssueRequest, Service, build_service
from ca.settings import Settings, load_settings
from tests.moments import MOMENTS
from tests.support.environment import BASE_URL, PASSPHRASE

PER_PROCESS = 10  # certificates each process revokes, each followed by a publish_crl
MS = dt.timedelta(milliseconds=1)


def crl_numbers(service: Service, tenant: str | None = "default") -> list[int]:
    """A CA's CRL Numbers in commit order (the primary key is taken inside the lock);
    ``None``: the root's."""
    with service.database.reading() as session:
        query = select(Authority.id).where(Authority.kind == "root")
        if tenant is not None:
            query = select(Authority.id).join(Tenant, Authority.tenant_id == Tenant.id).where(
                Tenant.name == tenant, Authority.kind == "issuing")
        authority_id = session.scalar(query)
        return list(session.scalars(select(Crl.number).where(
            Crl.authority_id == authority_id).order_by(Crl.id)))


def number_in(der: bytes) -> int:
    crl = x509.load_der_x509_crl(der)
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def _revoke_and_publish(overrides: dict[str, Any], serials: list[str], skew_ms: int,
                        barrier: Any, results: Any) -> None:
    """One replica: its own Service and a clock ``skew_ms`` off the other's."""
    try:
        clock = FixedClock(MOMENTS.start + skew_ms * MS)
        service = build_service(load_settings(**overrides), clock=clock)
        barrier.wait(timeout=60)
        seen = []
        for serial in serials:
            clock.advance(MS)
            service.revocation.revoke("default", serial, reason="keyCompromise")
            clock.advance(MS)
            seen.append(number_in(service.crls.publish("default").der))
            barrier.wait(timeout=60)  # step by step together: the commits interleave
        service.engine.dispose()
        results.put(("ok", seen))
    except BaseException as exc:
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def overrides_of(settings: Settings) -> dict[str, Any]:
    return {"data_dir": settings.data_dir, "database_url": settings.database_url,
            "key_passphrase": PASSPHRASE, "public_base_url": BASE_URL}


def test_crl_numbers_strictly_increase_in_commit_order_across_two_processes(
        service: Service) -> None:
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    views = [service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))[0]
             for _ in range(2 * PER_PROCESS)]
    service.crls.publish("default")
    halves = [[v.serial for v in views[:PER_PROCESS]], [v.serial for v in views[PER_PROCESS:]]]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    # replica clocks two seconds apart: one's numbers come from its time, the other's from
    # "the last plus one"
    processes = [context.Process(target=_revoke_and_publish,
                                 args=(overrides_of(service.settings), half, skew, barrier,
                                       results))
                 for half, skew in zip(halves, (0, -2000), strict=True)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)

    assert [kind for kind, _ in outcomes] == ["ok", "ok"], outcomes
    numbers = crl_numbers(service)
    assert len(numbers) == 1 + 4 * PER_PROCESS  # the first, then one per revoke and publish
    assert len(set(numbers)) == len(numbers)
    assert all(a < b for a, b in itertools.pairwise(numbers)), numbers
    for _, seen in outcomes:
        assert seen == sorted(seen)
    # the control: the two really ran side by side, each committing between the other's
    places = [[numbers.index(n) for n in seen] for _, seen in outcomes]
    assert min(p[-1] for p in places) > max(p[0] for p in places), places
    # and the CRL served now is the newest, listing every revocation of both processes
    current = service.crls.current("default")
    assert current.number == numbers[-1]
    listed = {format(e.serial_number, "X") for e in x509.load_der_x509_crl(current.der)}
    assert listed == {v.serial for v in views}


def test_the_number_grows_when_the_clock_goes_back(service: Service,
                                                   clock: FixedClock) -> None:
    first = service.crls.publish("default").number
    clock.set(MOMENTS.start - dt.timedelta(days=1))  # an NTP step back, or a wrong clock
    second = service.crls.publish("default").number
    assert second > first
    assert number_in(service.crls.current("default").der) == second


def test_the_number_grows_across_a_restart(service: Service, clock: FixedClock) -> None:
    first = service.crls.publish("default").number
    restarted = build_service(service.settings, clock=clock)
    try:
        assert restarted.crls.publish("default").number > first
    finally:
        restarted.engine.dispose()


def test_each_ca_numbers_its_crls_strictly_increasing_at_one_instant(
        service: Service) -> None:
    # a FixedClock that never moves: every CRL is made in the same millisecond
    for _ in range(5):
        service.crls.publish("default")
        service.crls.publish(None)
    for tenant in ("default", None):
        numbers = crl_numbers(service, tenant)
        assert len(numbers) == 5
        assert all(a < b for a, b in itertools.pairwise(numbers)), numbers


def sqlite_path(service: Service) -> Path:
    url = service.settings.database_url
    assert url is not None and url.startswith("sqlite:///")
    return Path(url.removeprefix("sqlite:///"))


def copy_database(source: Path, target: Path) -> None:
    """SQLite's online backup: consistent even with a WAL beside the file."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()


# a file copy is SQLite's backup (PostgreSQL's would be pg_dump): this one runs on SQLite
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_crl_made_after_restoring_an_older_backup_has_a_larger_number(
        service: Service, clock: FixedClock, tmp_path: Path) -> None:
    service.users.add("default", "alice", email="alice@example.com", allow=True)
    for _ in range(3):
        clock.advance(dt.timedelta(seconds=1))
        service.crls.publish("default")
    backup = tmp_path / "backup.db"
    copy_database(sqlite_path(service), backup)
    for _ in range(3):  # published to gateways, then lost with the database
        clock.advance(dt.timedelta(seconds=1))
        (view,) = service.certificates.issue(IssueRequest(tenant="default", logins=("alice",)))
        service.revocation.revoke("default", view.serial, reason="keyCompromise")
        service.crls.publish("default")
    published = crl_numbers(service)
    service.engine.dispose()

    copy_database(backup, sqlite_path(service))
    clock.advance(dt.timedelta(minutes=10))  # the restore takes a while
    restored = build_service(service.settings, clock=clock)
    try:
        assert len(crl_numbers(restored)) == 3  # the backup's CRLs only
        after = restored.crls.publish("default").number
    finally:
        restored.engine.dispose()
    assert after > max(published)
