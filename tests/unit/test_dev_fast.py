"""``dev.py test --fast`` leaves out every slow kind that pyproject.toml's pytest section
declares "left out by --fast", the browser tests among them, and nothing else."""

from __future__ import annotations

import dev


def test_fast_leaves_out_each_kind_pyproject_declares_slow() -> None:
    assert dev.fast_leaves_out() == ["browser", "interop", "schemathesis", "stateful", "stress"]
    assert dev.pytest_args(["--fast", "-n", "0", "tests/unit"]) == [
        "-m", "not browser and not interop and not schemathesis and not stateful and not stress",
        "-n", "0", "tests/unit"]
