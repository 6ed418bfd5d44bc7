"""ruff and mypy stay clean: part of the suite, so CI checks them on every run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


def test_ruff_finds_nothing() -> None:
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_bandit_finds_no_medium_or_high_issue_without_a_written_justification() -> None:
    # a justified finding carries "# nosec BXXX" with the reason on the same line
    result = run("bandit", "-q", "-r", "ca", "api", "cli", "-ll")
    assert result.returncode == 0, result.stdout + result.stderr
