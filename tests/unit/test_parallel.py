"""The process's pool and ``parallel.stream``: results in order, no more asked of the pool
than a window ahead of the consumer, nothing left in it when the consumer stops, and a pool
broken by a dead worker replaced by a new one on next use. Counted, never timed."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from ca import parallel


@pytest.fixture
def executor() -> Iterator[object]:
    parallel.shutdown()
    yield parallel.SHARED.executor()
    parallel.shutdown()


def doubled(items: list[int]) -> list[int]:
    return [2 * item for item in items]


def counted(groups: list[list[int]], pulled: list[int]) -> Iterator[list[int]]:
    for group in groups:
        pulled.append(len(group))
        yield group


@pytest.mark.parametrize("pooled", [False, True], ids=["in-process", "pool"])
def test_stream_yields_each_groups_results_in_order(executor: object, pooled: bool) -> None:
    groups = [[n * 100 + k for k in range(40, 0, -1)] for n in range(5)]
    tally = parallel.Tally()
    out = list(parallel.stream(doubled, groups, executor if pooled else None,  # type: ignore[arg-type]
                               ahead=2, tally=tally))
    assert out == [doubled(group) for group in groups]
    assert tally.built == 200


def test_a_consumer_that_stops_leaves_no_work_queued_and_asks_no_more(
        executor: object) -> None:
    pulled: list[int] = []
    groups = [list(range(parallel.PER_TASK * 4))] * 50
    tally = parallel.Tally()
    stream = parallel.stream(doubled, counted(groups, pulled), executor,  # type: ignore[arg-type]
                             ahead=3, tally=tally)
    next(stream)
    stream.close()  # the client has gone
    # the window of three groups was handed over (the first one taken); no more
    assert len(pulled) == 3
    # the pool built what it was handed, less what was cancelled before it started, and
    # nothing of it is still running
    assert len(groups[0]) <= tally.built <= 3 * len(groups[0])


def test_a_pool_broken_by_a_dead_worker_is_replaced_on_next_use(executor: object) -> None:
    broken = parallel.SHARED.executor()
    with pytest.raises(BrokenProcessPool):
        broken.submit(os.abort).result()
    replaced = parallel.SHARED.executor()
    assert replaced is not broken
    assert replaced.submit(sorted, [3, 1, 2]).result() == [1, 2, 3]


def test_a_worker_does_not_run_the_program_that_started_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a stand-in for `tegata` as __main__: spawn would run it in each worker it starts
    script = tmp_path / "heavy_main.py"
    marker = tmp_path / "imported"
    script.write_text(f"open({str(marker)!r}, 'a').write('x')\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", main)
    parallel.shutdown()
    try:
        assert parallel.SHARED.executor().submit(sorted, [2, 1]).result() == [1, 2]
    finally:
        parallel.shutdown()
    assert not marker.exists()
