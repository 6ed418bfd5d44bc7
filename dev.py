#!/usr/bin/env python3
"""Tegata's two commands, on any machine with Python 3.11+ and git:

    python3 dev.py up      # the service on its embedded default (SQLite, CA, demo tenant);
                           # prints the console's URL and an admin token to sign in with
    python3 dev.py test    # the whole test suite

Each creates ./.venv and installs Tegata into it on first use (again when pyproject.toml
changes). Extra arguments go to `tegata demo` or to pytest.

`dev.py test` runs the suite on every core (pytest-xdist, `-n auto`, each test file on one
worker); `-n 0` runs it in this one process. `dev.py test --fast` is the inner loop: it
leaves out the slow kinds (schemathesis, hypothesis state machines, interop with real
tools, stress, the browser). The PostgreSQL half runs when TEGATA_TEST_DATABASE_URL
names a server.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".tegata-installed"


def ensure_venv() -> None:
    if not PYTHON.exists():
        print("dev.py: creating .venv", flush=True)
        venv.create(VENV, with_pip=True)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print("dev.py: installing Tegata and its test tools into .venv", flush=True)
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    for step in (["install", "--upgrade", "pip"], ["install", "-e", ".[dev]"]):
        done = subprocess.run([*pip, *step], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:  # show pip's own words only when it failed
            sys.stderr.write(done.stdout + done.stderr)
            sys.exit(f"dev.py: pip {' '.join(step)} failed")
    STAMP.write_text(wanted + "\n")


def fast_leaves_out() -> list[str]:
    """The markers that pyproject.toml's pytest section says ``--fast`` leaves out: their
    one home, so that a new slow kind is left out by declaring it."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        markers = tomllib.load(file)["tool"]["pytest"]["ini_options"]["markers"]
    return [line.split(":", 1)[0] for line in markers
            if line.rstrip().endswith("left out by --fast")]


FAST = ["-m", " and ".join(f"not {name}" for name in fast_leaves_out())]


def pytest_args(rest: list[str]) -> list[str]:
    """pytest's arguments: ``--fast`` turned into its markers, and the workers of
    pytest-xdist unless the caller chose (``-n N``, ``--numprocesses``, ``-p no:xdist``)."""
    args = [arg for arg in rest if arg != "--fast"]
    if len(args) < len(rest):
        args = [*FAST, *args]
    chosen = any(arg == "-n" or arg.startswith(("-n", "--numprocesses", "no:xdist"))
                 for arg in args)
    if not chosen:
        # a test file is one unit of work (its module fixtures start once), handed out in
        # the order tests/conftest.py collects them: the longest first
        args = ["-n", "auto", "--dist", "loadfile", "--no-loadscope-reorder", *args]
        if not any(arg.startswith("--basetemp") for arg in args):
            # xdist puts each worker's tmp_path one level deeper (popen-gwN/); the CLI shortens
            # a long path it echoes, and some tests compare messages naming tmp_path: a short
            # base of this run's own keeps every path shorter than pytest's default one
            args = ["--basetemp", tempfile.mkdtemp(prefix="tg-"), *args]
    return args


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("", [])
    if command not in ("up", "test"):
        print(__doc__.strip())
        return 2
    ensure_venv()
    os.chdir(ROOT)
    if command == "up":
        args = [str(PYTHON), "-m", "cli.main", "demo", *rest]
    else:
        args = [str(PYTHON), "-m", "pytest", *pytest_args(rest)]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(args, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
