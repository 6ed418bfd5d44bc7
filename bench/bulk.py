#!/usr/bin/env python3
"""Bulk work at company scale: CSV import, bulk issuance and the bulk zip download, through
the CLI (one process per step, as an admin runs them) and through the API (one server).

    .venv/bin/python bench/bulk.py                 # 1,000 and 10,000 users
    .venv/bin/python bench/bulk.py --users 2000    # one size only

Prints seconds, users per second and peak memory (max RSS of the process doing the work,
worker processes included) per step and size, and the machine it ran on. Memory that does
not grow with the number of users shows as a peak that stays about the same from the small
size to the large one. Not part of the test suite: it never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchkit import free_port, machine

ROOT = Path(__file__).resolve().parent.parent
TEGATA = [sys.executable, "-m", "cli.main"]


def run(step: str, args: list[str], env: dict[str, str], users: int) -> dict[str, object]:
    """One CLI step in a fresh process; its wall time and the peak RSS of it and its pool."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: becomes the CLI, so that wait4 reports its own peak
        os.chdir(ROOT)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.execvpe(TEGATA[0], [*TEGATA, *args], env)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{step} failed: tegata {' '.join(args)}")
    return {"step": step, "users": users, "seconds": round(seconds, 2),
            "per_second": round(users / seconds, 1), "peak_mb": round(usage.ru_maxrss / 1024, 1)}


def csv_file(path: Path, users: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("login,email,name,groups,secure_access\n")
        for i in range(users):
            handle.write(f"user{i:05d},user{i:05d}@example.com,User {i},"
                         f"dept{i % 20};site{i % 3},yes\n")


def environment(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")}
    env.update(TEGATA_DATA_DIR=str(data), TEGATA_KEY_PASSPHRASE=secrets.token_urlsafe(24),
               TEGATA_CONFIG=str(data / "none.toml"))
    return env


def cli_bench(users: int, work: Path) -> list[dict[str, object]]:
    data = work / f"cli-{users}"
    env = environment(data)
    subprocess.run([*TEGATA, "init", "--key-type", "ec-p256"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    csv_file(work / f"users-{users}.csv", users)
    zip_path = work / f"all-{users}.zip"
    rows = [
        run("cli import", ["user", "import", str(work / f"users-{users}.csv")], env, users),
        run("cli issue", ["cert", "issue", "--all"], env, users),
        run("cli download", ["cert", "download", "--all", "--out", str(zip_path)], env, users),
    ]
    rows[-1]["zip_mb"] = round(zip_path.stat().st_size / 1e6, 1)
    return rows


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def api_bench(users: int, work: Path) -> list[dict[str, object]]:
    data = work / f"api-{users}"
    env = environment(data)
    subprocess.run([*TEGATA, "init", "--key-type", "ec-p256"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    token = json.loads(subprocess.run(
        [*TEGATA, "token", "create", "--role", "admin", "--json"], env=env, cwd=ROOT,
        check=True, capture_output=True, text=True).stdout)["token"]
    port = free_port()
    server = subprocess.Popen([*TEGATA, "serve", "--port", str(port)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v1/tenants/default"
    headers = {"Authorization": f"Bearer {token}"}
    rows: list[dict[str, object]] = []
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        csv_file(work / f"users-{users}.csv", users)

        def timed(step: str, action) -> None:  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            extra = action() or {}
            seconds = time.perf_counter() - start
            rows.append({"step": step, "users": users, "seconds": round(seconds, 2),
                         "per_second": round(users / seconds, 1),
                         "server_peak_mb": round(vm_hwm_mb(server.pid), 1), **extra})

        def post(url: str, body: bytes, content_type: str) -> dict[str, object]:
            request = urllib.request.Request(url, data=body, method="POST", headers={
                **headers, "Content-Type": content_type})
            with urllib.request.urlopen(request, timeout=600) as response:
                result: dict[str, object] = json.loads(response.read())
                return result

        def do_import() -> None:
            post(f"{base}/users/import", (work / f"users-{users}.csv").read_bytes(),
                 "text/csv")

        def do_issue() -> None:
            job = post(f"{base}/certificates/bulk", json.dumps(
                {"selection": {"all": True}}).encode(), "application/json")
            while True:
                request = urllib.request.Request(f"{base}/jobs/{job['id']}", headers=headers)
                with urllib.request.urlopen(request, timeout=60) as response:
                    state = json.loads(response.read())
                if state["status"] != "running":
                    if state["status"] != "succeeded":
                        raise SystemExit(f"bulk issuance failed: {state['error']}")
                    return
                time.sleep(0.2)

        def do_download() -> dict[str, object]:
            request = urllib.request.Request(f"{base}/certificates/download?all=true",
                                             headers=headers)
            size = 0
            with urllib.request.urlopen(request, timeout=600) as response:
                while chunk := response.read(1 << 16):
                    size += len(chunk)
            return {"zip_mb": round(size / 1e6, 1)}

        timed("api import", do_import)
        timed("api issue (job)", do_issue)
        timed("api download", do_download)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, action="append",
                        help="sizes to run (default 1000 and 10000)")
    parser.add_argument("--skip-api", action="store_true")
    args = parser.parse_args()
    sizes = args.users or [1000, 10_000]
    import cryptography

    print(machine(f"cryptography {cryptography.__version__}"))
    with tempfile.TemporaryDirectory(prefix="tegata-bench-") as tmp:
        work = Path(tmp)
        rows = []
        for users in sizes:
            rows += cli_bench(users, work)
            if not args.skip_api:
                rows += api_bench(users, work)
    print(f"{'step':18} {'users':>7} {'seconds':>8} {'users/s':>9} {'peak MB':>8} {'zip MB':>7}")
    for row in rows:
        peak = row.get("peak_mb", row.get("server_peak_mb"))
        print(f"{row['step']:18} {row['users']:>7} {row['seconds']:>8} {row['per_second']:>9} "
              f"{peak:>8} {row.get('zip_mb', ''):>7}")
    print("(peak MB: max RSS of the CLI process and its workers; for the API, the server's "
          "high-water mark so far, which only grows across its steps)")


if __name__ == "__main__":
    main()
