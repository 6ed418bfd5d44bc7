"""``tegata serve --workers 2`` when workers die: a worker killed is replaced however soon
after its own start, a worker that cannot start ends the server in one line with Tegata's
exit code, and no worker outlives the server process (``cli.supervise``).

The worker processes are read from /proc, as in test_workers.py. Waits are polls bounded by a
generous deadline: a slow machine makes them longer, never a failure.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ca.service import Service
from ca.settings import Settings
from tests.served import Server, listening_workers, live_service, serving, worker_pids

TENANT = "tohoku"
DISPLAY = "東北電機株式会社"
DEADLINE = 120.0  # seconds any change below may take on a busy machine


@pytest.fixture
def live(settings: Settings) -> Iterator[Service]:
    with live_service(settings, TENANT, DISPLAY) as service:
        yield service


def until(what: str, holds: Callable[[], bool], server: Server | None = None) -> None:
    started = time.monotonic()
    while not holds():
        assert server is None or server.proc.poll() is None, f"the server exited: {what}"
        assert time.monotonic() - started < DEADLINE, f"never: {what}"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Running: a zombie left for a parent that does not reap it counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def answers(server: Server) -> int:
    return httpx.get(f"{server.url}/healthz", timeout=30).status_code


def replaced(server: Server, dead: int, kept: int) -> int:
    """The worker started in place of ``dead``, next to ``kept``."""
    def new() -> set[int]:
        return worker_pids(server) - {dead, kept}

    until("a new worker", lambda: len(new()) == 1, server)
    (pid,) = new()
    return pid


def test_a_worker_killed_twice_in_quick_succession_is_replaced_both_times(
        live: Service, tmp_path: Path) -> None:
    with serving(live.settings, tmp_path / "serve.log", workers=2) as server:
        first, other = both_workers(server)
        os.kill(first, signal.SIGKILL)
        second = replaced(server, first, other)
        os.kill(second, signal.SIGKILL)  # within moments of its start: no crash loop
        third = replaced(server, second, other)
        assert worker_pids(server) == {other, third}
        # a worker listens once its start is done: until then the server may have none
        until("both workers listening", lambda: listening_workers(server) == {other, third},
              server)
        assert answers(server) == 200


def test_killing_the_server_process_ends_every_worker(live: Service, tmp_path: Path) -> None:
    with serving(live.settings, tmp_path / "serve.log", workers=2) as server:
        workers = worker_pids(server)
        assert len(workers) == 2
        os.kill(server.proc.pid, signal.SIGKILL)
        until("every worker gone", lambda: not any(alive(pid) for pid in workers))
        with pytest.raises(httpx.ConnectError):
            answers(server)


def both_workers(server: Server) -> list[int]:
    """The two workers' PIDs, once both listen (``/healthz`` answered through one)."""
    until("both workers listening", lambda: len(listening_workers(server)) == 2, server)
    return sorted(listening_workers(server))


def test_a_worker_that_cannot_start_ends_the_server_in_one_line(
        live: Service, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with serving(live.settings, log, workers=2) as server:
        first, other = both_workers(server)
        key = live.settings.effective_key_dir / "data-protection.key"
        key.chmod(0o644)  # a worker started from now on refuses the key
        os.kill(first, signal.SIGKILL)
        assert server.proc.wait(timeout=DEADLINE) == 78
        assert not alive(other)
    text = log.read_text()
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if line.startswith("tegata: error:")]
    assert errors == [f"tegata: error: data-protection key {key} is readable by others "
                      f"(mode 0644); run chmod 600 {key}"]
