#!/usr/bin/env python3
"""One issuance through the API, 20 concurrent clients, on SQLite and on PostgreSQL.

    .venv/bin/python bench/issue.py                                  # SQLite, 1,000 issuances
    .venv/bin/python bench/issue.py --requests 2000 --clients 20
    .venv/bin/python bench/issue.py --postgres postgresql+psycopg://postgres@127.0.0.1/postgres
    .venv/bin/python bench/issue.py --before ../tegata-before  # that checkout too, same run
    .venv/bin/python bench/issue.py --workers 1 2                # tegata serve --workers 1, 2

Setup (not measured): a throwaway Tegata with one tenant, one user per request (one CSV
import) and an admin token, then ``tegata serve`` (its lifecycle loop off, so that only the
issuances run). Measured: ``--clients`` threads, each with its own keep-alive connection,
``POST /api/v1/tenants/<t>/certificates {"login": ...}`` back to back, each issuing one
certificate with a key made on the server (sealed for a later download), until
``--requests`` are done; 20 warm-up requests first (the CA key and the data-protection key
load on first use). Prints requests/s, p50, p99 and max, and every non-201 answer.
With ``--before DIR`` (a checkout of the code before this change, e.g. ``git archive <commit>``)
the same load runs against it too, alternately, and the ratios are printed. ``--workers``
runs every step with ``tegata serve --workers N`` for each N given (granian worker processes
on one database: on SQLite their writers meet across processes). The figure measured before
the issuance work (111/s, p50 94 ms, p99 1.5 s, SQLite) is quoted; there is no peer for this
row.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from benchkit import machine
from served import BASE_URL, PASSPHRASE, ROOT, database, environment, percentile, serving

from ca.service import InitRequest, build_service
from ca.settings import load_settings

TENANT, SHOWN = "hakata", "博多支店"
WARM_UP = 20
QUOTED = "111/s, p50 94 ms, p99 1,500 ms (SQLite, before the issuance work)"


def setup(work: Path, db_url: str, users: int) -> str:
    """A Tenant with ``users`` users and an admin token, by the code this process imports."""
    # the setup process gets the passphrase of environment(), as the server does
    settings = load_settings(data_dir=work / "data", database_url=db_url,
                             key_passphrase=os.environ.get("TEGATA_KEY_PASSPHRASE", PASSPHRASE),
                             public_base_url=BASE_URL)
    service = build_service(settings)
    try:
        service.database.upgrade()
        service.hierarchy.initialize(InitRequest(key_type="ec-p256"))
        service.hierarchy.create_tenant(TENANT, display_name=SHOWN, ca_key_type="ec-p256")
        rows = "".join(f"user{n:05d},user{n:05d}@example.jp,yes\n" for n in range(users))
        service.users.import_users(TENANT, ("login,email,secure_access\n" + rows).encode())
        token, _ = service.tokens.create(role="admin", tenant=TENANT, name="bench",
                                        valid_for=dt.timedelta(hours=2))
        return token
    finally:
        service.engine.dispose()


def load(url: str, token: str, logins: list[str], clients: int
         ) -> tuple[list[float], list[str], float]:
    """Every login issued by ``clients`` threads: latencies (ms), errors, wall seconds."""
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for login in logins:
        todo.put(login)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            start.wait(timeout=60)
            while True:
                try:
                    login = todo.get_nowait()
                except queue.Empty:
                    return
                began = time.perf_counter()
                try:
                    answer = http.post(f"/api/v1/tenants/{TENANT}/certificates",
                                       json={"login": login})
                    failed = None if answer.status_code == 201 else \
                        f"{answer.status_code} {answer.text[:120]}"
                except httpx.HTTPError as exc:
                    failed = f"{type(exc).__name__}"
                ms = (time.perf_counter() - began) * 1000
                with lock:
                    latencies.append(ms)
                    if failed:
                        errors.append(failed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait(timeout=60)
    began = time.monotonic()
    for thread in threads:
        thread.join(timeout=600)
    return latencies, errors, time.monotonic() - began


def measure(tree: Path, db_url: str, work: Path, args: argparse.Namespace, workers: int
            ) -> tuple[list[float], list[str], float]:
    """Set up with ``tree``'s code (in a process of its own), serve it, and load it."""
    users = WARM_UP + args.requests
    env = environment(work, db_url, tree, TEGATA_LIFECYCLE_INTERVAL_SECONDS="0")
    made = subprocess.run([sys.executable, __file__, "--setup", str(work), db_url, str(users)],
                          env=env, cwd=tree, capture_output=True, text=True, check=True)
    token = json.loads(made.stdout.strip().splitlines()[-1])["token"]
    logins = [f"user{n:05d}" for n in range(users)]
    with serving(env, work / "serve.log", "--workers", str(workers),
                 *args.serve_args.split()) as (url, _):
        load(url, token, logins[:WARM_UP], min(args.clients, WARM_UP))
        return load(url, token, logins[WARM_UP:], args.clients)


def summary(latencies: list[float], errors: list[str], wall: float) -> str:
    return (f"{len(latencies) / wall:.0f} req/s, p50 {percentile(latencies, 0.5):.1f} ms, "
            f"p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms, "
            f"{len(errors)} errors")


def main() -> None:
    if sys.argv[1:2] == ["--setup"]:  # the setup process of measure()
        work, db_url, users = sys.argv[2:5]
        print(json.dumps({"token": setup(Path(work), db_url, int(users))}))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--postgres", help="a PostgreSQL URL (a database is made there)")
    parser.add_argument("--before", type=Path, help="a checkout of the code before, measured "
                        "in the same run")
    parser.add_argument("--rounds", type=int, default=1, help="alternate rounds with --before")
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="tegata serve --workers N, one run for each N")
    parser.add_argument("--serve-args", default="", help="extra `tegata serve` arguments")
    args = parser.parse_args()
    print(machine())
    kind = "PostgreSQL" if args.postgres else "SQLite"
    trees = [(f"this tree, {w} worker{'s' if w > 1 else ''}", ROOT, w) for w in args.workers]
    trees += [(f"before, {w} worker{'s' if w > 1 else ''}", args.before, w)
              for w in args.workers if args.before]
    results: dict[str, list[tuple[list[float], list[str], float]]] = {n: [] for n, *_ in trees}
    for _ in range(args.rounds):
        for name, tree, workers in trees:
            with tempfile.TemporaryDirectory(prefix="tegata-bench-issue-") as tmp, \
                    database(Path(tmp), args.postgres) as db_url:
                results[name].append(measure(tree, db_url, Path(tmp), args, workers))
    print(f"\n{kind}, {args.clients} clients, {args.requests} issuances a round "
          "(one certificate each, key made on the server)")
    for name, rounds in results.items():
        for latencies, errors, wall in rounds:
            print(f"  {name:<24} {summary(latencies, errors, wall)}")
            for error, count in itertools.islice(
                    sorted({e: errors.count(e) for e in errors}.items()), 3):
                print(f"  {'':<24} {count} x {error}")
    for workers in args.workers if args.before else ():
        label = f"{workers} worker{'s' if workers > 1 else ''}"
        mine = [x for r in results[f"this tree, {label}"] for x in r[0]]
        old = [x for r in results[f"before, {label}"] for x in r[0]]
        print(f"  ratio this/before, {label}, all rounds: p50 "
              f"{percentile(mine, 0.5) / percentile(old, 0.5):.2f}, p99 "
              f"{percentile(mine, 0.99) / percentile(old, 0.99):.2f}")
    print(f"  quoted: {QUOTED}")


if __name__ == "__main__":
    main()
