"""The bulk pool's share of the machine: a server worker's pool has its share of the cores,
an idle pool is shut down (the next use makes a new one), and no child the pool starts has
the CA key passphrase in its environment. Processes counted, never timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ca import parallel

ROOT = Path(__file__).resolve().parents[2]


def doubled(items: list[int]) -> list[int]:
    return [2 * item for item in items]


@pytest.mark.parametrize(("cores", "server_workers", "processes"), [
    (2, 1, 2), (2, 2, 2), (8, 3, 2), (8, 8, 2), (16, 1, 8), (64, 4, 8), (1, 4, 1), (1, 1, 1)])
def test_each_server_workers_pool_has_its_share_of_the_cores(
        cores: int, server_workers: int, processes: int) -> None:
    assert parallel.share(cores, server_workers) == processes


def test_a_server_worker_on_a_single_core_host_works_in_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setenv(parallel.SERVER_WORKERS, "4")
    assert parallel.workers() == 2
    monkeypatch.setenv(parallel.SERVER_WORKERS, "8")
    assert parallel.workers() == 2  # two cores of eight, shared with the other workers
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert parallel.workers() == 1
    assert parallel.pool(10_000, threshold=1) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_an_idle_pool_is_shut_down_and_the_next_use_makes_a_new_one() -> None:
    clock = Clock()
    pool = parallel.Pool(idle_seconds=60, clock=clock)
    try:
        executor = pool.executor()
        assert executor.submit(doubled, [1, 2, 3]).result() == [2, 4, 6]
        first = set(executor._processes)  # type: ignore[attr-defined]
        assert first and all(map(alive, first))
        clock.now += 59.9
        assert pool.reap() is False and all(map(alive, first))
        clock.now += 0.1
        assert pool.reap() is True
        assert not any(map(alive, first))
        assert pool.reap() is False  # nothing left to shut down
        again = pool.executor()
        assert again is not executor
        assert again.submit(doubled, [5]).result() == [10]
        second = set(again._processes)  # type: ignore[attr-defined]
        assert second and not second & first and all(map(alive, second))
    finally:
        pool.shutdown()


CHILDREN = """
import json, os, sys
from multiprocessing import resource_tracker
from ca import parallel

def children():
    found = set()
    for task in os.listdir("/proc/self/task"):
        found |= {int(pid) for pid in open(f"/proc/self/task/{task}/children").read().split()}
    return found

executor = parallel.SHARED.executor()
list(executor.map(abs, range(-64, 0), chunksize=1))
pids = children()
print(json.dumps({
    "children": sorted(pids),
    "workers": sorted(executor._processes),
    "tracker": resource_tracker._resource_tracker._pid,
    "with_passphrase": sorted(pid for pid in pids
                              if sys.argv[1].encode() in open(f"/proc/{pid}/environ", "rb").read()),
    "kept_here": os.environ.get("TEGATA_KEY_PASSPHRASE") == sys.argv[1],
}))
parallel.shutdown()
"""


def test_no_child_of_the_pool_has_the_passphrase_in_its_environment() -> None:
    passphrase = "鍵の合言葉-東京支社-2026"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")}
    result = subprocess.run([sys.executable, "-c", CHILDREN, passphrase], cwd=ROOT,
                            env={**env, "TEGATA_KEY_PASSPHRASE": passphrase},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert set(seen["children"]) == {*seen["workers"], seen["tracker"]}
    assert len(seen["workers"]) == parallel.share(os.cpu_count() or 1, 1)
    assert seen["with_passphrase"] == []
    assert seen["kept_here"] is True  # this process may read its settings again

