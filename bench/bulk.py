#!/usr/bin/env python3
"""Bulk work at company scale: CSV import, bulk issuance and the bulk zip download, through
the CLI (one process per step, as an admin runs them) and through the API (one server).

    .venv/bin/python bench/bulk.py                 # 1,000 and 10,000 users
    .venv/bin/python bench/bulk.py --users 2000    # one size only

Prints seconds, users per second and peak memory (the largest sum of the resident memory of
the process doing the work and its worker processes, sampled every 50 ms) per step and size,
the end-to-end total, and the machine it ran on. In the same run, the PKCS#12 floor (bench/
p12floor.py: bare ``cryptography`` making as many keys, certificates and compat bundles on
every core) and the ratio of each end-to-end time to it: on a shared, loaded machine the
ratio means more than the seconds. Not part of the test suite: it never fails on a slow
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from benchkit import free_port, machine
from p12floor import floor

ROOT = Path(__file__).resolve().parent.parent
TEGATA = [sys.executable, "-m", "cli.main"]


def tree_stats(root: int) -> tuple[float, float]:
    """The resident memory (MB) and the CPU time (s, with that of ended children) of
    ``root`` and every process below it."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    cpu: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            cpu[int(entry.name)] = sum(int(f) for f in fields[11:15])
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return (sum(rss.get(pid, 0) for pid in tree) / 1e6,
            sum(cpu.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK"))


def tree_rss_mb(root: int) -> float:
    return tree_stats(root)[0]


class PeakSampler:
    """The largest ``tree_rss_mb(pid)`` seen while the block runs, every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            self._stop.wait(0.05)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(step: str, args: list[str], env: dict[str, str], users: int) -> dict[str, object]:
    """One CLI step in a fresh process; its wall time and the peak memory of it and its
    workers."""
    start = time.perf_counter()
    proc = subprocess.Popen([*TEGATA, *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    with PeakSampler(proc.pid) as sampler:
        # wait4: the CPU time of the CLI and of the workers it waited for
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{step} failed: tegata {' '.join(args)}")
    seconds = time.perf_counter() - start
    return {"step": step, "users": users, "seconds": round(seconds, 2),
            "per_second": round(users / seconds, 1), "peak_mb": round(sampler.peak, 1),
            "cpu": round(usage.ru_utime + usage.ru_stime, 2)}


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
            start, cpu = time.perf_counter(), tree_stats(server.pid)[1]
            with PeakSampler(server.pid) as sampler:
                extra = action() or {}
            seconds = time.perf_counter() - start
            rows.append({"step": step, "users": users, "seconds": round(seconds, 2),
                         "per_second": round(users / seconds, 1),
                         "peak_mb": round(sampler.peak, 1),
                         "cpu": round(tree_stats(server.pid)[1] - cpu, 2), **extra})

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


def totals(rows: list[dict[str, object]], floors: dict[int, tuple[float, float]]
           ) -> list[str]:
    """End to end per shell and size, against the floor measured in this run."""
    lines = []
    for shell in ("cli", "api"):
        for users, (seconds, cpu) in floors.items():
            steps = [r for r in rows if r["users"] == users and str(r["step"]).startswith(shell)]
            if len(steps) != 3:
                continue
            total = sum(float(str(r["seconds"])) for r in steps)
            used = sum(float(str(r["cpu"])) for r in steps)
            peak = max(float(str(r["peak_mb"])) for r in steps)
            lines.append(f"{shell + ' end to end':18} {users:>7} {total:>8.2f} "
                         f"{users / total:>9.1f} {peak:>8.1f} {used:>7.2f} {'':>7} "
                         f"{total / seconds:>6.2f} {used / cpu:>6.2f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, action="append",
                        help="sizes to run (default 1000 and 10000)")
    parser.add_argument("--skip-api", action="store_true")
    args = parser.parse_args()
    sizes = args.users or [1000, 10_000]
    import cryptography

    print(machine(f"cryptography {cryptography.__version__}"))
    rows: list[dict[str, object]] = []
    floors: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tegata-bench-") as tmp:
        work = Path(tmp)
        for users in sizes:
            floors[users] = floor(users)
            rows.append({"step": "p12 floor (peer)", "users": users,
                         "seconds": round(floors[users][0], 2),
                         "per_second": round(users / floors[users][0], 1), "peak_mb": "",
                         "cpu": round(floors[users][1], 2)})
            print(rows[-1], flush=True)
            rows += cli_bench(users, work)
            print(*rows[-3:], sep="\n", flush=True)
            if not args.skip_api:
                rows += api_bench(users, work)
                print(*rows[-3:], sep="\n", flush=True)
    print(f"{'step':18} {'users':>7} {'seconds':>8} {'users/s':>9} {'peak MB':>8} "
          f"{'CPU s':>7} {'zip MB':>7} {'/floor':>6} {'CPU/fl':>6}")
    for row in rows:
        print(f"{row['step']:18} {row['users']:>7} {row['seconds']:>8} {row['per_second']:>9} "
              f"{row['peak_mb']:>8} {row['cpu']:>7} {row.get('zip_mb', ''):>7}")
    for line in totals(rows, floors):
        print(line)
    print(f"load average after the run: {os.getloadavg()[0]:.2f} (2 cores: above 2, other "
          "work shared them)")
    print("(peak MB: the largest sum of resident memory of the CLI process, or of the server, "
          "and their worker processes; CPU s: their CPU time; /floor and CPU/fl: end-to-end "
          "wall and CPU time over the PKCS#12 floor's, measured just before; 1.00 = the floor. "
          "CPU/fl holds under load, when the wall times depend on what else runs)")


if __name__ == "__main__":
    main()
