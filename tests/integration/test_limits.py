"""Rate limits in the database (``ca.service.limits``): exact counts at an instant, refill at
the rate, callers kept only as hashes, drained buckets pruned, and on SQLite a count that
never waits for the database's write lock."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select

from ca.db import migrate
from ca.db.engine import make_engine
from ca.service import Service
from ca.service.limits import BUCKETS, RateBuckets, limits_engine
from tests.moments import MOMENTS

T0 = MOMENTS.start
ADDRESS = "203.0.113.7"


def rows(engine: Engine) -> list[tuple[str, str, float]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(  # type: ignore[misc]
            select(BUCKETS.c.kind, BUCKETS.c.key, BUCKETS.c.level).order_by(BUCKETS.c.key))]


@pytest.fixture
def limits(bare_service: Service) -> Engine:
    return limits_engine(bare_service.engine)


def test_a_bucket_admits_its_capacity_at_once_then_refills_at_its_rate(limits: Engine) -> None:
    bucket = RateBuckets(limits, kind="token", capacity=3, per_minute=6)  # one per 10 s
    assert [bucket.admit("山田", now=T0) for _ in range(4)] == [None, None, None, 10.0]
    assert bucket.wait("山田", now=T0) == 10.0  # asking does not count
    assert bucket.wait("佐藤", now=T0) is None  # per caller
    later = T0 + dt.timedelta(seconds=4)
    assert bucket.admit("山田", now=later) == pytest.approx(6.0)
    assert bucket.admit("山田", now=T0 + dt.timedelta(seconds=10)) is None
    assert bucket.admit("山田", now=T0 + dt.timedelta(seconds=10)) == 10.0
    assert bucket.wait("山田", now=T0 + dt.timedelta(seconds=40)) is None  # drained


def test_limits_of_different_kinds_do_not_share_a_bucket(limits: Engine) -> None:
    links = RateBuckets(limits, kind="link", capacity=1, per_minute=1)
    failures = RateBuckets(limits, kind="auth-failure", capacity=1, per_minute=1)
    assert links.admit(ADDRESS, now=T0) is None
    assert failures.admit(ADDRESS, now=T0) is None
    assert links.admit(ADDRESS, now=T0) == 60.0


def test_the_table_holds_hashes_never_the_caller(limits: Engine) -> None:
    bucket = RateBuckets(limits, kind="token", capacity=5, per_minute=5)
    token = "tgt_" + "Q" * 43
    for caller in (ADDRESS, token, "東京支社"):
        bucket.admit(caller, now=T0)
    stored = rows(limits)
    assert sorted(key for _, key, _ in stored) == sorted(
        hashlib.sha256(c.encode()).hexdigest() for c in (ADDRESS, token, "東京支社"))
    assert not any(c in repr(stored) for c in (ADDRESS, token, "東京支社"))


def test_drained_buckets_are_pruned_at_most_once_a_minute(limits: Engine) -> None:
    bucket = RateBuckets(limits, kind="link", capacity=3, per_minute=6)  # empty 30 s after
    bucket.admit("a", now=T0)  # the first count prunes (nothing yet)
    bucket.admit("b", now=T0 + dt.timedelta(seconds=20))
    bucket.admit("c", now=T0 + dt.timedelta(seconds=59))  # a is empty, but not a minute on
    assert len(rows(limits)) == 3
    bucket.admit("d", now=T0 + dt.timedelta(seconds=60))  # a and b are empty: gone
    assert {key for _, key, _ in rows(limits)} == {
        hashlib.sha256(c.encode()).hexdigest() for c in ("c", "d")}


def test_a_limit_that_cannot_be_counted_admits_and_logs_no_caller(
        limits: Engine, caplog: pytest.LogCaptureFixture) -> None:
    bucket = RateBuckets(limits, kind="token", capacity=1, per_minute=1)
    BUCKETS.drop(limits)
    with caplog.at_level(logging.WARNING, logger="tegata.limits"):
        assert bucket.admit(ADDRESS, now=T0) is None
        assert bucket.admit(ADDRESS, now=T0) is None
        assert bucket.wait(ADDRESS, now=T0) is None
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "rate limit token not checked, request admitted"] * 3
    assert ADDRESS not in caplog.text
    assert hashlib.sha256(ADDRESS.encode()).hexdigest() not in caplog.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_on_sqlite_a_count_never_waits_for_the_database_write_lock(
        bare_service: Service, limits: Engine, tmp_path: Path) -> None:
    bucket = RateBuckets(limits, kind="token", capacity=1, per_minute=1)
    holder = sqlite3.connect(tmp_path / "tegata.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # a long write of the service, say
        # counted, not waved through: the second is refused while the lock is still held
        assert bucket.admit(ADDRESS, now=T0) is None
        assert bucket.admit(ADDRESS, now=T0) == 60.0
    finally:
        holder.close()


def test_the_migration_goes_down_and_up(bare_service: Service) -> None:
    config = migrate.alembic_config()
    before = ScriptDirectory.from_config(config).get_revision("0011").down_revision
    with bare_service.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, str(before))
    assert "rate_buckets" not in inspect(bare_service.engine).get_table_names()
    bare_service.database.upgrade()
    assert "rate_buckets" in inspect(bare_service.engine).get_table_names()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_on_sqlite_the_buckets_live_beside_the_database_file(
        bare_service: Service, limits: Engine, tmp_path: Path) -> None:
    RateBuckets(limits, kind="link", capacity=1, per_minute=1).admit(ADDRESS, now=T0)
    assert limits.url.database == str(tmp_path / "tegata-limits.db")
    assert len(rows(limits)) == 1 and rows(bare_service.engine) == []
    # a database with no file (in memory) keeps them in its own table
    memory = make_engine("sqlite://")
    assert limits_engine(memory) is memory
