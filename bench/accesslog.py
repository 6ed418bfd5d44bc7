#!/usr/bin/env python3
"""What the access log and the per-request wrappers cost OCSP: ``tegata serve --workers 2``
with TEGATA_ACCESS_LOG off and on, and optionally the same from another source tree.

    .venv/bin/python bench/accesslog.py --duration 8
    .venv/bin/python bench/accesslog.py --duration 8 --before ../tegata-before

``--before DIR``: a source tree (for example ``git archive <commit> | tar -x -C DIR``) run
with this interpreter as the baseline: the stack without the access log, the request
counter and the body timeout. Each row loads a kept OCSP answer (GET /ocsp/<base64> and
POST /ocsp, no nonce) with ``wrk --latency``; the server's log goes to a file, as it would
to a collector. ``openssl ocsp`` is measured in the same run as the peer. All traffic stays
on 127.0.0.1; every process started here is stopped on exit. Not a test.
"""

from __future__ import annotations

import argparse
import base64
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from benchkit import free_port, machine, stop, tool_version
from ocsp import (
    HOST,
    ROOT,
    TEGATA,
    Load,
    Processes,
    bench_openssl,
    fmt,
    post_script,
    run_wrk,
    setup_tegata,
    wait_for_port,
)


def serve(work: Path, env: dict[str, str], tree: Path, label: str,
          args: argparse.Namespace, **extra: str) -> list[Load]:
    port = free_port()
    log = work / f"{label.replace(' ', '-')}.log"
    with log.open("ab") as out:
        server = subprocess.Popen([*TEGATA, "serve", "--port", str(port), "--workers", "2"],
                                  cwd=tree, env={**env, **extra}, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, server)
        request = (work / "req.der").read_bytes()
        get_url = (f"http://{HOST}:{port}/ocsp/"
                   f"{quote(base64.b64encode(request).decode(), safe='')}")
        subprocess.run(["curl", "-s", "-o", "/dev/null", get_url], check=False, timeout=30)
        loads = [run_wrk(f"{label}, GET", get_url, args, server.pid),
                 run_wrk(f"{label}, POST", f"http://{HOST}:{port}/ocsp", args, server.pid,
                         post_script(work, "post", work / "req.der"))]
    finally:
        stop(server)
    lines = sum(1 for line in log.read_text(errors="replace").splitlines()
                if "tegata.access" in line)
    for load in loads:
        load.note = f"{lines:,} access log lines in the run"
    return loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk row")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--before", type=Path, help="a source tree to run as the baseline")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("openssl"):
        raise SystemExit("wrk and openssl are needed")
    print(machine("granian (tegata serve --workers 2)", tool_version(["wrk", "-v"])))
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, "
          "on the same cores as the server\n")
    procs = Processes()
    loads: list[Load] = []
    with tempfile.TemporaryDirectory(prefix="tegata-bench-accesslog-") as tmp:
        work = Path(tmp)
        try:
            env, _serial = setup_tegata(work)
            if args.before is not None:
                loads += serve(work, env, args.before.resolve(), "before", args)
            loads += serve(work, env, ROOT, "access log off", args, TEGATA_ACCESS_LOG="false")
            loads += serve(work, env, ROOT, "access log on", args, TEGATA_ACCESS_LOG="true")
            found, _lines = bench_openssl(work, procs, args)
            loads += found
        finally:
            procs.stop_all()
    print(f"{'row':58} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv CPU':>7}  notes")
    for load in loads:
        print(f"{load.label:58} {fmt(load.rps, ',.0f'):>8} {fmt(load.p50_ms, '.2f'):>7} "
              f"{fmt(load.p99_ms, '.2f'):>7} {fmt(load.server_cpu, '.2f'):>7}  {load.note}")
    by = {load.label: load.rps for load in loads}
    for method in ("GET", "POST"):
        on, off = by.get(f"access log on, {method}"), by.get(f"access log off, {method}")
        base = by.get(f"before, {method}")
        if on and off:
            print(f"{method}: log on / log off = {on / off:.2f}"
                  + (f"; log on / before = {on / base:.2f}; log off / before = "
                     f"{off / base:.2f}" if base else ""))


if __name__ == "__main__":
    main()
