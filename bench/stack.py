#!/usr/bin/env python3
"""The HTTP stack: uvicorn (httptools, uvloop) against granian, then a bounded slowloris.

    .venv/bin/python bench/stack.py                       # wrk -t2 -c50 -d8s per row
    .venv/bin/python bench/stack.py --duration 5 --slow 2000 --slow-seconds 30

Rows, each server in 1 process and in one per core, on the same cores as wrk:
(a) a bare ASGI app answering a fixed 700-byte body; (b) Tegata's ``/healthz`` and a kept
OCSP answer (GET), the same app factory ``tegata serve`` gives its workers
(``cli.server:worker_app``), uvicorn started with ``proxy_headers=False`` as Tegata would
need it. Then ``tegata serve`` (granian, header timeout 10 s) under ``--slow`` connections
that each send a header line every 15 s: ``/healthz`` and OCSP p99 while they hang on, how
many the server closed and when (each is opened again, as slowloris does), and the open
files of the server's processes. The same
attack is sent to uvicorn, which has no header timeout. All traffic stays on 127.0.0.1;
every process started here is stopped on exit. Not a test: it never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from benchkit import free_port, machine, tool_version
from ocsp import (
    HOST,
    ROOT,
    TEGATA,
    Load,
    Processes,
    fetch,
    fmt,
    run_wrk,
    setup_tegata,
    wait_for_port,
)

BARE_APP = """
BODY = bytes(700)  # about an OCSP response's size
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/ocsp-response"), (b"content-length", b"700")]})
    await send({"type": "http.response.body", "body": BODY})
"""

UVICORN = """
import sys, uvicorn
target, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
uvicorn.run(target, factory=target.endswith("worker_app"), host="127.0.0.1", port=port,
            workers=workers, http="httptools", loop="uvloop", proxy_headers=False,
            access_log=False, log_level="warning", server_header=False)
"""

GRANIAN = """
import sys
from granian import Granian
from granian.constants import HTTPModes, Interfaces, Loops
target, port, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
Granian(target, factory=target.endswith("worker_app"), address="127.0.0.1", port=port,
        workers=workers, interface=Interfaces.ASGI, loop=Loops.uvloop, http=HTTPModes.http1,
        log_level="warning").serve()
"""

# Opens N connections, sends half a request, then a header line every 15 s to each; prints
# how many are open, and each time some are closed by the server, how many and when.
SLOWLORIS = """
import selectors, socket, sys, time
port, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sel = selectors.DefaultSelector()
def connect():
    s = socket.socket()
    try:
        s.settimeout(2)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n")
    except OSError:
        s.close()
        return False
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    return True
opened = sum(connect() for _ in range(count))
start = time.monotonic()
print(f"open {opened}", flush=True)
closed, first, last_line = 0, None, start
while time.monotonic() - start < seconds:
    for key, _ in sel.select(timeout=0.5):
        sel.unregister(key.fileobj)
        key.fileobj.close()
        closed += 1
        first = first or time.monotonic() - start
        connect()  # as slowloris does: a closed connection is opened again
    if time.monotonic() - last_line >= 15:
        last_line = time.monotonic()
        for key in list(sel.get_map().values()):
            try:
                key.fileobj.send(b"X-Slow: 1\\r\\n")
            except OSError:
                pass
    print(f"at {time.monotonic() - start:.0f} s closed {closed} first {first or 0:.0f}",
          flush=True)
"""


def serve_with(procs: Processes, server: str, target: str, workers: int, cwd: Path,
               env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    code = UVICORN if server == "uvicorn" else GRANIAN
    proc = procs.start([sys.executable, "-c", code, target, str(port), str(workers)],
                       cwd=cwd, env=env)
    wait_for_port(port, proc)
    return proc, port


def compare(work: Path, procs: Processes, args: argparse.Namespace) -> list[Load]:
    (work / "bareapp.py").write_text(BARE_APP)
    env, _serial = setup_tegata(work)
    request = (work / "req.der").read_bytes()
    ocsp_path = "/ocsp/" + quote(base64.b64encode(request).decode(), safe="")
    tegata_env = {**env, "PYTHONPATH": str(ROOT), "TEGATA_LOG_LEVEL": "warning"}
    loads = []
    for workers in sorted({1, args.workers}):
        for server in ("uvicorn", "granian"):
            name = f"{server}, {workers} worker{'s' if workers > 1 else ''}"
            proc, port = serve_with(procs, server, "bareapp:app", workers, work, dict(os.environ))
            loads.append(run_wrk(f"bare ASGI app, 700 bytes, {name}",
                                 f"http://{HOST}:{port}/", args, proc.pid))
            procs.stop(proc)
            proc, port = serve_with(procs, server, "cli.server:worker_app", workers, ROOT,
                                    tegata_env)
            fetch(f"http://{HOST}:{port}{ocsp_path}", timeout=30)  # the responder, made once
            for what, path in (("/healthz", "/healthz"), ("OCSP GET, kept", ocsp_path)):
                loads.append(run_wrk(f"Tegata {what}, {name}", f"http://{HOST}:{port}{path}",
                                     args, proc.pid))
            procs.stop(proc)
    return loads


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


def open_files(pids: list[int]) -> int:
    return sum(len(list(Path(f"/proc/{p}/fd").iterdir())) for p in pids
               if Path(f"/proc/{p}/fd").exists())


def attack(work: Path, procs: Processes, args: argparse.Namespace, label: str,
           port: int, server: subprocess.Popen[bytes], urls: dict[str, str]) -> list[Load]:
    """``--slow`` connections (one attacker process per 10,000: each needs a file each),
    the load rows while they hang on, then what became of them."""
    per = 10_000
    logs = []
    for n in range(0, args.slow, per):
        log = work / f"slow-{label.split()[0]}-{n}.log"
        out = log.open("wb")
        procs.started.append(subprocess.Popen(
            [sys.executable, "-c", SLOWLORIS, str(port), str(min(per, args.slow - n)),
             str(args.slow_seconds)], stdout=out, stderr=subprocess.STDOUT))
        logs.append(log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
            "open" in p.read_text() for p in logs):
        time.sleep(0.5)
    peak_files = open_files([server.pid, *children(server.pid)])
    loads = [run_wrk(f"{label}, {what}, during the slowloris", url, args, server.pid)
             for what, url in urls.items()]
    time.sleep(max(0.0, args.slow_seconds - 2 * args.duration - 5))
    opened = closed = 0
    first_close = "-"
    for log in logs:
        lines = log.read_text().splitlines()
        opened += int(next((ln.split()[1] for ln in lines if ln.startswith("open")), 0))
        last = next((ln.split() for ln in reversed(lines) if ln.startswith("at ")), None)
        if last is not None:
            closed += int(last[4])
            if int(last[4]) and (first_close == "-" or int(last[6]) < int(first_close)):
                first_close = last[6]
    for load in loads:
        load.note = (f"{opened:,} slow connections, each reopened when closed: {closed:,} "
                     f"closed by the server in {args.slow_seconds:.0f} s (first at "
                     f"{first_close} s), server open files {peak_files:,}; "
                     + load.note)
    return loads


def slowloris(work: Path, procs: Processes, args: argparse.Namespace) -> list[Load]:
    here = work / "slow"
    here.mkdir()
    env, _serial = setup_tegata(here)
    request = (here / "req.der").read_bytes()
    ocsp_path = "/ocsp/" + quote(base64.b64encode(request).decode(), safe="")
    loads = []
    port = free_port()
    server = procs.start([*TEGATA, "serve", "--port", str(port)], cwd=ROOT,
                         env={**env, "TEGATA_LOG_LEVEL": "warning"})
    wait_for_port(port, server)
    fetch(f"http://{HOST}:{port}{ocsp_path}", timeout=30)
    urls = {"/healthz": f"http://{HOST}:{port}/healthz",
            "OCSP GET, kept": f"http://{HOST}:{port}{ocsp_path}"}
    loads += attack(here, procs, args, f"tegata serve (granian, {os.cpu_count()} workers)",
                    port, server, urls)
    procs.stop(server)
    tegata_env = {**env, "PYTHONPATH": str(ROOT), "TEGATA_LOG_LEVEL": "warning"}
    proc, port = serve_with(procs, "uvicorn", "cli.server:worker_app", args.workers, ROOT,
                            tegata_env)
    urls = {"/healthz": f"http://{HOST}:{port}/healthz"}
    loads += attack(here, procs, args, f"uvicorn, {args.workers} workers", port, proc, urls)
    procs.stop(proc)
    return loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk row")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--slow", type=int, default=2000, help="slowloris connections")
    parser.add_argument("--slow-seconds", type=float, default=40.0)
    parser.add_argument("--skip-compare", action="store_true")
    args = parser.parse_args()
    import granian
    import uvicorn

    print(machine(f"uvicorn {uvicorn.__version__}", f"granian {granian.__version__}",
                  tool_version(["wrk", "-v"])))
    if not shutil.which("wrk") or not shutil.which("openssl"):
        raise SystemExit("wrk and openssl are needed (apt-get install -y wrk openssl)")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, on the "
          "same cores as the servers\n")
    procs = Processes()
    loads: list[Load] = []
    with tempfile.TemporaryDirectory(prefix="tegata-bench-stack-") as tmp:
        try:
            if not args.skip_compare:
                loads += compare(Path(tmp), procs, args)
            if args.slow:
                loads += slowloris(Path(tmp), procs, args)
        finally:
            procs.stop_all()
    print(f"{'what':62} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv CPU':>7}  notes")
    for load in loads:
        print(f"{load.label:62} {fmt(load.rps, ',.0f'):>8} {fmt(load.p50_ms, '.2f'):>7} "
              f"{fmt(load.p99_ms, '.2f'):>7} {fmt(load.server_cpu, '.2f'):>7}  {load.note}")
    print(f"(srv CPU: the server's parent process only; load average at the end "
          f"{os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
