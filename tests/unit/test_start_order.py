"""The start order of the suite's modules (tests/conftest.py): a module renamed or removed
would silently stop being started first."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import LONGEST_FIRST

ROOT = Path(__file__).resolve().parents[2]


def test_every_module_started_first_exists_once() -> None:
    assert [m for m in LONGEST_FIRST if not (ROOT / m).is_file()] == []
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
