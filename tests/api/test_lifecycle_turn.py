"""One worker of a host runs the lifecycle loop: the others' ticks do nothing, and the turn
passes on when its holder goes (api/hostturn.py)."""

from __future__ import annotations

from pathlib import Path

from api.app import lifecycle_tick
from api.hostturn import HostTurn
from ca.service import Service
from ca.service.lifecycle import LifecycleReport


def test_one_holder_at_a_time_and_the_turn_passes_on(tmp_path: Path) -> None:
    first, second = HostTurn(tmp_path / "データ"), HostTurn(tmp_path / "データ")
    assert [first.mine(), second.mine(), first.mine()] == [True, False, True]
    first.release()  # the worker went: the kernel drops its lock
    assert [second.mine(), first.mine()] == [True, False]
    second.release()


def test_a_tick_runs_the_lifecycle_only_in_the_worker_with_the_turn(service: Service) -> None:
    service.hierarchy.create_tenant("tohoku", display_name="東北電機株式会社")
    holder, other = HostTurn(service.settings.data_dir), HostTurn(service.settings.data_dir)
    try:
        assert isinstance(lifecycle_tick(service, holder), LifecycleReport)
        assert lifecycle_tick(service, other) is None
        assert isinstance(lifecycle_tick(service, holder), LifecycleReport)
    finally:
        holder.release()
        other.release()
