"""``/metrics`` sums the counters of every worker of the host (``api.sharedmetrics``), and
a counter never goes backwards when a worker is gone or replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from api.metrics import Registry, Totals
from api.sharedmetrics import DIRECTORY, RETIRED, WorkerShare

OCSP_GET = ("tegata_ocsp_requests_total", "GET")


def dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def worker_file(data_dir: Path, pid: int, gets: int, name: str = "東京") -> Path:
    """What another worker of the host would have written."""
    registry = Registry()
    for _ in range(gets):
        registry.count(*OCSP_GET)
    path = data_dir / DIRECTORY / f"{pid}-{name.encode().hex()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(registry.snapshot()[1].to_json()), encoding="utf-8")
    return path


def share_counting(data_dir: Path, gets: int) -> WorkerShare:
    share = WorkerShare(data_dir, registry=Registry())
    for _ in range(gets):
        share.registry.count(*OCSP_GET)
    return share


def test_a_scrape_sums_this_worker_and_every_other_live_one(tmp_path: Path) -> None:
    worker_file(tmp_path, os.getppid(), 3)  # a live process: the test's parent
    share = share_counting(tmp_path, 2)
    assert share.totals().counters[OCSP_GET] == 5
    share.registry.count(*OCSP_GET)  # written at the scrape, whatever the thread did
    assert share.totals().counters[OCSP_GET] == 6


def test_a_dead_workers_counts_stay_counted_once(tmp_path: Path) -> None:
    dead = worker_file(tmp_path, dead_pid(), 5)
    share = share_counting(tmp_path, 2)
    assert share.totals().counters[OCSP_GET] == 7
    assert not dead.exists()  # folded into retired.json
    assert share.totals().counters[OCSP_GET] == 7
    # its replacement counts from zero: the sum still never goes back
    replacement = share_counting(tmp_path, 1)
    assert replacement.totals().counters[OCSP_GET] == 8


def test_a_file_folded_by_a_scrape_that_died_before_removing_it_counts_once(
        tmp_path: Path) -> None:
    dead = worker_file(tmp_path, dead_pid(), 5)
    folded = Totals.from_json(json.loads(dead.read_text(encoding="utf-8")))
    (tmp_path / DIRECTORY / RETIRED).write_text(json.dumps(
        {"files": [dead.name], "totals": folded.to_json()}), encoding="utf-8")
    assert share_counting(tmp_path, 0).totals().counters[OCSP_GET] == 5


def test_without_a_writable_directory_a_worker_reports_its_own_counts(tmp_path: Path) -> None:
    (tmp_path / DIRECTORY).write_text("a file where the directory should be", encoding="utf-8")
    assert share_counting(tmp_path, 4).totals().counters[OCSP_GET] == 4


def test_a_file_that_is_not_a_workers_counters_is_skipped(tmp_path: Path) -> None:
    worker_file(tmp_path, os.getppid(), 3)
    (tmp_path / DIRECTORY / f"{os.getppid()}-壊れた.json").write_text("{", encoding="utf-8")
    (tmp_path / DIRECTORY / f"{os.getppid()}-other.json").write_text('{"counters": 1}',
                                                                     encoding="utf-8")
    assert share_counting(tmp_path, 1).totals().counters[OCSP_GET] == 4
