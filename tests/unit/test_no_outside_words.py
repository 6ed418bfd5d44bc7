"""No word in the repository points outside it: no path of the machine it was written on, no
numbered issue of a tracker the repository does not carry, no notes file it does not hold.
A text says the thing itself (the behaviour, the figure and where it was measured)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Written in pieces so that this file does not name what it forbids.
OUTSIDE = re.compile("|".join((
    "/" + "work/",                                       # the machine's working directories
    r"\bissue" + r" ?#?\d+",                               # a numbered issue, with or without "#"
    r"\b(?:PEERS|SPEC|STYLE)" + r"\.md\b",               # notes kept outside the repository
    r"\bseeds" + "/",
)), re.IGNORECASE)


def tracked_files() -> list[Path]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def outside_words(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError):
        return []  # binary (or deleted, not yet committed): no words
    return [f"{path.relative_to(ROOT)}:{number}: {match.group(0)}"
            for number, line in enumerate(text.splitlines(), 1)
            for match in OUTSIDE.finditer(line)]


@pytest.mark.parametrize("sample", [
    "see /" + "work/shared/notes", "(issue" + " 11, item 14)", "Issue" + " #12's table",
    "PEERS" + ".md's figures", "spec" + ".md", "STYLE" + ".md habit 4", "seeds" + "/x.csv"])
def test_the_pattern_finds_each_kind(sample: str) -> None:
    assert OUTSIDE.search(sample)


@pytest.mark.parametrize("sample", [
    "the issue time in milliseconds", "cert issue carol", "issued from now on",
    "UTS #46 mapping", "RFC 9457", "git archive 2a516fb", "../tegata-before"])
def test_the_pattern_leaves_ordinary_words(sample: str) -> None:
    assert not OUTSIDE.search(sample)


def test_no_tracked_file_points_outside_the_repository() -> None:
    files = tracked_files()
    assert any(path.name == "README.md" for path in files)
    assert [hit for path in files for hit in outside_words(path)] == []
