"""SQLite writers of one process take turns (ca.db.engine.writer_turn) instead of meeting
SQLite's busy handler, which sleeps with a growing backoff; a writer in another process
still meets it, and is refused with a clear error once its timeout has passed.

Each test asserts what happened (every write landed, which error came), never how long it
took: the busy timeouts below are short so that a refusal comes soon, not to measure it.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from ca.clock import FixedClock
from ca.db.engine import make_engine
from ca.db.models import User
from ca.errors import StorageError
from ca.service import InitRequest, Service, build_service
from ca.settings import Settings, load_settings
from tests.integration.test_concurrent_writes import at_once
from tests.support.environment import PASSPHRASE

WRITERS = 20
TENANT = "kyoto"
DISPLAY = "京都支店"


def sqlite_service(tmp_path: Path, clock: FixedClock, *, busy_timeout_ms: int,
                   sqlite_waits: bool = True) -> Service:
    """A service on an SQLite file; with ``sqlite_waits`` False, SQLite's own busy handler
    never waits (a writer meeting the lock held fails at once)."""
    settings: Settings = load_settings(data_dir=tmp_path / "data",
                                       database_url=f"sqlite:///{tmp_path / 'tegata.db'}",
                                       key_passphrase=PASSPHRASE)
    engine = make_engine(settings.effective_database_url, busy_timeout_ms=busy_timeout_ms)
    if not sqlite_waits:
        event.listen(engine, "connect",
                     lambda conn, _record: conn.execute("PRAGMA busy_timeout=0"))
    service = build_service(settings, clock=clock, engine=engine)
    service.database.upgrade()
    service.hierarchy.initialize(InitRequest(key_type="ec-p256"))
    service.hierarchy.create_tenant(TENANT, display_name=DISPLAY, ca_key_type="ec-p256")
    return service


@pytest.fixture
def quick(tmp_path: Path, clock: FixedClock) -> Iterator[Service]:
    service = sqlite_service(tmp_path, clock, busy_timeout_ms=300)
    yield service
    service.engine.dispose()


def test_twenty_threads_writing_at_once_all_land_without_sqlites_busy_handler(
        tmp_path: Path, clock: FixedClock) -> None:
    # SQLite may not wait at all here: a writer that met the lock held would fail at once
    # with "database is locked", so every write landing shows none of them met it
    service = sqlite_service(tmp_path, clock, busy_timeout_ms=60_000, sqlite_waits=False)
    try:
        results = at_once(WRITERS, lambda i: service.users.add(
            TENANT, f"user{i:02d}", email=f"user{i:02d}@example.jp",
            display_name=f"利用者{i:02d}").login)
        assert results == [f"user{i:02d}" for i in range(WRITERS)]
        with service.database.reading() as session:
            assert session.scalar(select(func.count()).select_from(User)) == WRITERS
    finally:
        service.engine.dispose()


def test_a_failed_write_hands_the_turn_on(quick: Service) -> None:
    with pytest.raises(RuntimeError), quick.database.transaction():
        raise RuntimeError("the use case failed")
    assert quick.users.add(TENANT, "hanako", email="hanako@example.jp",
                          display_name="花子").login == "hanako"


def test_a_writer_waiting_past_the_timeout_for_its_turn_is_refused_clearly(
        quick: Service) -> None:
    holding, done = threading.Event(), threading.Event()

    def long_write() -> None:
        with quick.database.transaction():
            holding.set()
            assert done.wait(timeout=60)

    holder = threading.Thread(target=long_write)
    holder.start()
    try:
        assert holding.wait(timeout=60)
        with pytest.raises(StorageError) as refused:
            quick.users.add(TENANT, "taro", email="taro@example.jp", display_name="太郎")
    finally:
        done.set()
        holder.join(timeout=60)
    assert refused.value.message == ("the database is busy: no turn to write within 0.3 s "
                                     "(a long write transaction, here or in another process)")
    assert quick.users.add(TENANT, "taro", email="taro@example.jp").login == "taro"


HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("held", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def test_a_write_lock_held_by_another_process_times_out_with_a_clear_error(
        quick: Service, tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", HOLD_WRITE_LOCK, str(tmp_path / "tegata.db")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline() == "held\n"
        with pytest.raises(StorageError) as refused:
            quick.users.add(TENANT, "jiro", email="jiro@example.jp", display_name="次郎")
        assert refused.value.message == ("the database is busy: another process held its "
                                         "write lock for longer than the busy timeout")
    finally:
        assert other.stdin is not None
        other.communicate("\n", timeout=60)
    assert quick.users.add(TENANT, "jiro", email="jiro@example.jp").login == "jiro"
