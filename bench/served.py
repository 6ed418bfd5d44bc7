"""What bench/tenants.py and bench/issue.py share: a throwaway Tegata (SQLite file or a fresh
PostgreSQL database), ``tegata serve`` on it, and latency percentiles. Imported as a sibling."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from benchkit import free_port, stop
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "bench-" + secrets.token_urlsafe(18)
BASE_URL = "http://tegata.bench"


@contextlib.contextmanager
def database(work: Path, postgres: str | None) -> Iterator[str]:
    """An SQLite file in ``work``, or a new database on the PostgreSQL server ``postgres``
    names (dropped afterwards)."""
    if postgres is None:
        yield f"sqlite:///{work / 'tegata.db'}"
        return
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    name = "tegata_bench_" + secrets.token_hex(6)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def environment(work: Path, db_url: str, tree: Path = ROOT, **extra: str) -> dict[str, str]:
    """The environment of a ``tegata`` process on the throwaway instance, running the code of
    ``tree`` (another checkout, such as the code before a change, for a same-run ratio)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")}
    if tree != ROOT:
        env["PYTHONPATH"] = str(tree)
    env.update(TEGATA_DATA_DIR=str(work / "data"), TEGATA_DATABASE_URL=db_url,
               TEGATA_KEY_PASSPHRASE=PASSPHRASE, TEGATA_PUBLIC_BASE_URL=BASE_URL,
               TEGATA_CONFIG=str(work / "no-such.toml"), TEGATA_LOG_LEVEL="warning",
               TEGATA_TOKEN_REQUESTS_PER_MINUTE="0")
    env.update(extra)
    return env


@contextlib.contextmanager
def serving(env: dict[str, str], log: Path, *args: str) -> Iterator[tuple[str, float]]:
    """``tegata serve`` until the block ends: its URL, and the seconds from the process's
    start to the first ``/healthz`` 200 (polled every 5 ms, for at most 120 s)."""
    port = free_port()
    started = time.monotonic()
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "serve", "--port", str(port),
                                 *args], cwd=env.get("PYTHONPATH", ROOT), env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=5) as client:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"tegata serve exited: {log.read_text()[-2000:]}")
                if time.monotonic() - started > 120:
                    raise SystemExit("tegata serve did not answer /healthz within 120 s")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{url}/healthz").status_code == 200:
                        break
                time.sleep(0.005)
        yield url, time.monotonic() - started
    finally:
        stop(proc)


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` 0.99 for p99) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]
