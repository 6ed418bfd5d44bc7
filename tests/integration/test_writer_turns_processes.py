"""SQLite writers of several processes (``tegata serve --workers N``) take turns through a
file beside the database (ca.db.engine.writer_turn) instead of meeting SQLite's busy
handler; a holder killed with SIGKILL gives the turn up (the kernel drops its ``flock``).

Real processes, each with its own engine on one database file. SQLite's busy timeout is 0
in the writers: one that met the write lock held would fail at once with "database is
locked", so every write landing shows that none of them met it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ca.clock import FixedClock
from ca.db.models import User
from ca.errors import StorageError
from tests.integration.test_writer_turns import TENANT, sqlite_service

PROCESSES = 2
THREADS = 10
USERS_EACH = 5  # users a thread adds, one transaction each
ROOT = Path(__file__).resolve().parents[2]

# one process: THREADS threads released together, each adding USERS_EACH users; prints what
# each write gave (the login, or the error's class and message)
WRITERS = """
import sys
from sqlalchemy import event
from ca.clock import FixedClock
from ca.db.engine import make_engine
from ca.service import Service, build_service
from ca.settings import load_settings
from tests.support.environment import PASSPHRASE
from tests.moments import MOMENTS
from tests.integration.test_concurrent_writes import at_once

data, database, name, threads, each = sys.argv[1:6]
settings = load_settings(data_dir=data, database_url=f"sqlite:///{database}",
                         key_passphrase=PASSPHRASE)
engine = make_engine(settings.effective_database_url, busy_timeout_ms=60_000)
event.listen(engine, "connect", lambda conn, _record: conn.execute("PRAGMA busy_timeout=0"))
service = build_service(settings, clock=FixedClock(MOMENTS.start), engine=engine)

def write(i):
    done = []
    for j in range(int(each)):
        login = f"{name}-{i:02d}-{j}"
        try:
            done.append(service.users.add("kyoto", login, email=f"{login}@example.jp",
                                          display_name=f"利用者{login}").login)
        except Exception as exc:
            done.append(f"{type(exc).__name__}: {exc}")
    return done

print("ready", flush=True)
sys.stdin.readline()
for result in at_once(int(threads), write):
    print("\\n".join(result) if isinstance(result, list) else repr(result), flush=True)
"""

# takes the writers' turn (in-process, then the file) and keeps it until killed
HOLD_TURN = """
import sys, threading
from ca.db.engine import make_engine, writer_turn
engine = make_engine(f"sqlite:///{sys.argv[1]}")
with writer_turn(engine):
    print("held", flush=True)
    threading.Event().wait()
"""


def python(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.mark.skipif(os.name != "posix", reason="the file turn needs fcntl (POSIX)")
def test_two_processes_of_ten_threads_writing_at_once_all_land_without_sqlites_busy_handler(
        tmp_path: Path, clock: FixedClock) -> None:
    service = sqlite_service(tmp_path, clock, busy_timeout_ms=60_000)
    service.engine.dispose()
    names = ["tokyo", "osaka"]  # 東京, 大阪: logins are ASCII
    workers = [python(WRITERS, str(tmp_path / "data"), str(tmp_path / "tegata.db"), name,
                      str(THREADS), str(USERS_EACH)) for name in names]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        for worker in workers:  # released together
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        outputs = [worker.communicate(timeout=300)[0].splitlines() for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    expected = {f"{name}-{i:02d}-{j}" for name in names for i in range(THREADS)
                for j in range(USERS_EACH)}
    assert [line for output in outputs for line in output if line not in expected] == []
    with service.database.reading() as session:
        assert set(session.scalars(select(User.login).where(User.login.in_(expected)))) \
            == expected
        assert session.scalar(select(func.count()).select_from(User)) == len(expected)
    service.engine.dispose()


@pytest.mark.skipif(os.name != "posix", reason="the file turn needs fcntl (POSIX)")
def test_a_turn_holder_killed_with_sigkill_gives_the_turn_up(
        tmp_path: Path, clock: FixedClock) -> None:
    service = sqlite_service(tmp_path, clock, busy_timeout_ms=300)
    holder = python(HOLD_TURN, str(tmp_path / "tegata.db"))
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        # the other process holds only the turn, not SQLite's lock: the turn is what waits
        with pytest.raises(StorageError) as refused:
            service.users.add(TENANT, "saburo", email="saburo@example.jp", display_name="三郎")
        assert refused.value.message == ("the database is busy: no turn to write within "
                                         "0.3 s (a long write transaction, here or in "
                                         "another process)")
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(timeout=60) == -signal.SIGKILL
        assert service.users.add(TENANT, "saburo", email="saburo@example.jp",
                                display_name="三郎").login == "saburo"
    finally:
        holder.kill()
        service.engine.dispose()
