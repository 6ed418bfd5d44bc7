#!/usr/bin/env python3
"""The OCSP responder under load: ``tegata serve`` against ``openssl ocsp`` in the same run.

    .venv/bin/python bench/ocsp.py                 # wrk -t2 -c50 -d10s per row
    .venv/bin/python bench/ocsp.py --duration 5    # shorter rows

Sets up a throwaway Tegata (``tegata init --key-type ec-p256``, one user, one certificate),
makes DER OCSP requests without a nonce (``openssl ocsp -no_nonce -reqout``, SHA-1 and
SHA-384 CertIDs), checks a sample answer, then shows that the server shrugs off an empty
connection, a half-sent request left to stall and a half-closed one. Then ``wrk --latency``
loads GET /ocsp/<base64> and POST /ocsp (answers kept in memory), the SHA-384 GET, and POST
with a nonce (a fresh signature each), with one process and with ``--workers 2`` when
``tegata serve`` has it; and an ``openssl ocsp`` responder with the same kind of request.
Last, two ``tegata serve`` processes on one database: the time from a suspension or
reinstatement through one's API returning to the other answering it (20 tries). Prints
requests/s, p50 and p99 next to the figures of the peer survey of this machine kind, quoted,
not re-measured. wrk runs on the same cores as the server, as it did for the survey. All
traffic goes to 127.0.0.1; every wait is bounded; the processes started here are stopped on
exit. Not part of the test suite: it never fails on a slow machine.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from benchkit import free_port, machine, stop, tool_version
from cryptography.x509 import ocsp

ROOT = Path(__file__).resolve().parent.parent
TEGATA = [sys.executable, "-m", "cli.main"]
HOST = "127.0.0.1"
STALL_SECONDS = 3.0

# The peer survey of this machine kind (2 cores, wrk -c50), another day: not re-measured here
QUOTED = [
    ("cfssl 1.2 ocspserve, pre-signed, POST", 9_700.0, None, 96.0),
    ("openssl ocsp, POST/GET (before any empty connection)", 7_500.0, None, 11.0),
    ("django-ca 3.2, from its response cache", 2_800.0, None, 27.0),
    ("django-ca 3.2, signing each response", 440.0, None, 170.0),
    ("bare ASGI app, fixed 700-byte body, 2 workers", 34_000.0, None, None),
    ("plain FastAPI route, same body, 2 workers", 6_600.0, None, None),
]


def server_stack() -> str:
    import importlib.util

    import uvicorn

    # uvicorn's "auto" picks httptools and uvloop when installed, else pure-Python h11, asyncio
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {uvicorn.__version__} ({http}, {loop})"


# --- processes --------------------------------------------------------------------------------


@dataclass
class Processes:
    """Every long-running process started here, stopped in reverse order on exit."""

    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], *, cwd: Path,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=cwd, env=env)
        self.started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        stop(proc)
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.started)):
            self.stop(proc)


def listening(port: int) -> bool:
    """Whether a socket listens on ``port``, read from /proc: connecting to ask would be the
    very empty connection that stops ``openssl ocsp``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode} before listening")
        if listening(port):
            return
        time.sleep(0.1)
    raise SystemExit(f"nothing listened on port {port} within {seconds:.0f} s")


# --- HTTP and OCSP checks ---------------------------------------------------------------------


def fetch(url: str, body: bytes | None = None, timeout: float = 5) -> tuple[int, bytes, float]:
    """(status, body, milliseconds); status 0 and the error text when there is no answer."""
    request = urllib.request.Request(url, data=body, method="POST" if body else "GET",
                                     headers={"Content-Type": "application/ocsp-request"})
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read()
            return response.status, data, (time.perf_counter() - start) * 1000
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), (time.perf_counter() - start) * 1000
    except OSError as exc:
        return 0, str(exc).encode(), (time.perf_counter() - start) * 1000


def describe(status: int, body: bytes, ms: float, serial: int) -> str:
    """One line on an OCSP answer: HTTP status, OCSP status, certificate status, time."""
    if status == 0:
        return f"no answer after {ms:.0f} ms ({body.decode(errors='replace')})"
    try:
        parsed = ocsp.load_der_ocsp_response(body)
    except ValueError:
        return f"HTTP {status}, not an OCSP response, {ms:.1f} ms"
    if parsed.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return f"HTTP {status}, OCSP {parsed.response_status.name}, {ms:.1f} ms"
    mine = "" if parsed.serial_number == serial else " (another serial!)"
    return (f"HTTP {status}, OCSP successful, {parsed.certificate_status.name.lower()}{mine}, "
            f"{ms:.1f} ms")


def answers_well(status: int, body: bytes, serial: int) -> bool:
    try:
        parsed = ocsp.load_der_ocsp_response(body)
        return (status == 200 and parsed.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
                and parsed.serial_number == serial
                and parsed.certificate_status == ocsp.OCSPCertStatus.GOOD)
    except ValueError:
        return False


def robustness(port: int, get_url: str, serial: int) -> list[str]:
    """Empty, stalled and half-closed connections, each followed by a normal GET."""
    lines = []
    with socket.create_connection((HOST, port), timeout=5):
        pass  # opened and closed without a byte, as wrk's probe and port scanners do
    lines.append("empty connection, opened and closed: next GET "
                 + describe(*fetch(get_url), serial))
    path = get_url.split(str(port), 1)[1]
    half = f"GET {path[:len(path) // 2]}".encode()
    with socket.create_connection((HOST, port), timeout=5) as stalled:
        stalled.sendall(half)  # half a request line, then nothing
        lines.append("half a request line sent and left to stall: GET meanwhile "
                     + describe(*fetch(get_url), serial))
        time.sleep(STALL_SECONDS)
        lines.append(f"  ... after {STALL_SECONDS:.0f} s of stall: GET "
                     + describe(*fetch(get_url), serial))
        stalled.settimeout(0.2)
        try:
            closed = stalled.recv(1) == b""
        except (TimeoutError, OSError):
            closed = False
        lines.append(f"  ... the stalled connection is {'closed by' if closed else 'still open on'}"
                     " the server")
    with socket.create_connection((HOST, port), timeout=5) as half_closed:
        half_closed.sendall(b"POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Type: application/ocsp-request\r\n"
                            b"Content-Length: 100\r\n\r\n0123456789")
        half_closed.shutdown(socket.SHUT_WR)  # 10 of 100 body bytes, then our side closes
        half_closed.settimeout(5)
        try:
            reply = half_closed.recv(200)
        except (TimeoutError, OSError) as exc:
            reply = f"({type(exc).__name__})".encode()
    first = reply.split(b"\r\n", 1)[0].decode(errors="replace") or "closed, no reply"
    lines.append(f"POST with 10 of 100 body bytes, then half-closed: server said {first!r}; "
                 "next GET " + describe(*fetch(get_url), serial))
    return lines


# --- wrk --------------------------------------------------------------------------------------


@dataclass
class Load:
    label: str
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_cpu: float | None = None  # the server's CPU time over the run, in cores
    note: str = ""


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(label: str, text: str) -> Load:
    load = Load(label)
    if found := re.search(r"Requests/sec:\s+([\d.]+)", text):
        load.rps = float(found.group(1))
    for pct, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        ms = float(value) * UNITS[unit]
        if pct == "50":
            load.p50_ms = ms
        else:
            load.p99_ms = ms
    notes = []
    if found := re.search(r"(\d+) requests in ([\d.]+\w+)", text):
        notes.append(f"{int(found.group(1)):,} requests in {found.group(2)}")
    if found := re.search(r"Socket errors: (.*)", text):
        notes.append(f"socket errors: {found.group(1).strip()}")
    if found := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        notes.append(f"{int(found.group(1)):,} non-2xx")
    load.note = "; ".join(notes)
    if not load.rps:  # wrk prints 0.00us percentiles when nothing came back
        load.p50_ms = load.p99_ms = None
    return load


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its child processes (workers)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(label: str, url: str, args: argparse.Namespace, server: int,
            script: Path | None = None) -> Load:
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s",
            "--timeout", "2s", "--latency"]
    if script is not None:
        argv += ["-s", str(script)]
    cpu, start = cpu_seconds(server), time.monotonic()
    try:
        done = subprocess.run([*argv, url], capture_output=True, text=True, check=False,
                              timeout=args.duration + 30)
    except subprocess.TimeoutExpired:
        return Load(label, note="wrk did not finish in time")
    load = parse_wrk(label, done.stdout)
    load.server_cpu = (cpu_seconds(server) - cpu) / (time.monotonic() - start)
    if load.rps is None:
        load.note = (done.stdout + done.stderr).strip().replace("\n", " | ")[:200]
    return load


# wrk.resolve, as wrk defines it, connects to each address and closes again without a byte:
# the empty connection that stops `openssl ocsp`. This one only looks the address up.
NO_PROBE = """\
function wrk.resolve(host, service)
  wrk.addrs = wrk.lookup(host, service)
end
"""


def post_script(work: Path, name: str, body: Path, *, probe: bool = True) -> Path:
    """A wrk Lua script that POSTs the file's bytes as they are (Lua strings are bytes)."""
    script = work / f"{name}.lua"
    script.write_text(
        ("" if probe else NO_PROBE) +
        f'local f = assert(io.open({json.dumps(str(body))}, "rb"))\n'
        'wrk.method = "POST"\n'
        'wrk.body = f:read("*a")\n'
        "f:close()\n"
        'wrk.headers["Content-Type"] = "application/ocsp-request"\n', encoding="utf-8")
    return script


# --- Tegata -----------------------------------------------------------------------------------


def tegata(*args: str, env: dict[str, str]) -> str:
    return subprocess.run([*TEGATA, *args], env=env, cwd=ROOT, check=True, capture_output=True,
                          text=True, timeout=120).stdout


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def setup_tegata(work: Path) -> tuple[dict[str, str], int]:
    """A new Tegata in ``work``: its leaf and issuing CA as PEM, and OCSP requests for it."""
    data = work / "tegata"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")}
    env.update(TEGATA_DATA_DIR=str(data), TEGATA_KEY_PASSPHRASE=secrets.token_urlsafe(24),
               TEGATA_CONFIG=str(data / "none.toml"), TEGATA_LIFECYCLE_INTERVAL_SECONDS="0")
    tegata("init", "--key-type", "ec-p256", env=env)
    tegata("user", "add", "alice", "--email", "alice@example.com", "--allow", env=env)
    serial_text = json.loads(tegata("cert", "issue", "alice", "--json", env=env))[0]["serial"]
    (work / "leaf.pem").write_text(tegata("cert", "show", serial_text, "--pem", env=env))
    cas = json.loads(tegata("ca", "show", "--tenant", "default", "--json", env=env))
    (work / "issuing.pem").write_text(next(c["pem"] for c in cas if c["kind"] == "issuing"))
    openssl("ocsp", "-issuer", "issuing.pem", "-cert", "leaf.pem", "-no_nonce", "-reqout",
            "req.der", cwd=work)
    openssl("ocsp", "-issuer", "issuing.pem", "-cert", "leaf.pem", "-reqout", "req-nonce.der",
            cwd=work)
    openssl("ocsp", "-issuer", "issuing.pem", "-sha384", "-cert", "leaf.pem", "-no_nonce",
            "-reqout", "req-sha384.der", cwd=work)
    return env, int(serial_text, 16)


def bench_tegata(work: Path, procs: Processes, args: argparse.Namespace,
                 workers: int) -> tuple[list[Load], list[str]]:
    """Tegata's rows, ``tegata serve --workers N``."""
    here = work / f"w{workers or 1}"
    here.mkdir()
    env, serial = setup_tegata(here)
    port = free_port()
    argv = [*TEGATA, "serve", "--port", str(port), "--workers", str(workers)]
    server = procs.start(argv, env=env, cwd=ROOT)
    wait_for_port(port, server)
    request = (here / "req.der").read_bytes()
    name = f"{workers} workers" if workers > 1 else "1 process"
    get_url = f"http://{HOST}:{port}/ocsp/{quote(base64.b64encode(request).decode(), safe='')}"
    post_url = f"http://{HOST}:{port}/ocsp"
    lines = [f"sample GET  {describe(*fetch(get_url, timeout=30), serial)} (first: makes the "
             "responder certificate)",
             f"sample GET  {describe(*fetch(get_url), serial)}",
             f"sample POST {describe(*fetch(post_url, request), serial)}"]
    if not answers_well(*fetch(get_url)[:2], serial):
        raise SystemExit("Tegata did not answer the sample request with 'good': stopping")
    if workers == 1:
        lines += robustness(port, get_url, serial)
    loads = []
    if shutil.which("wrk"):
        sha384 = (here / "req-sha384.der").read_bytes()
        get384 = f"http://{HOST}:{port}/ocsp/{quote(base64.b64encode(sha384).decode(), safe='')}"
        lines.append(f"sample GET, SHA-384 CertID {describe(*fetch(get384), serial)}")
        loads.append(run_wrk(f"tegata serve ({name}), GET, kept", get_url, args, server.pid))
        loads.append(run_wrk(f"tegata serve ({name}), POST, kept", post_url, args,
                             server.pid, post_script(here, "post", here / "req.der")))
        loads.append(run_wrk(f"tegata serve ({name}), GET SHA-384, kept", get384, args,
                             server.pid))
        loads.append(run_wrk(f"tegata serve ({name}), POST with nonce, signs each", post_url,
                             args, server.pid, post_script(here, "nonce", here / "req-nonce.der")))
    time.sleep(1)  # let the requests wrk left in flight drain
    lines.append("after the load: GET " + describe(*fetch(get_url), serial)
                 + ("" if server.poll() is None else f"; the server exited ({server.returncode})"))
    procs.stop(server)
    return loads, lines


# --- a status change, from one process's API to another's answers ---------------------------


def status_of(url: str) -> str:
    status, body, _ = fetch(url)
    try:
        parsed = ocsp.load_der_ocsp_response(body)
        return parsed.certificate_status.name.lower() if status == 200 else f"HTTP {status}"
    except ValueError:
        return f"HTTP {status}, not OCSP"


def change(url: str, token: str) -> None:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def bench_visibility(work: Path, procs: Processes, tries: int) -> list[str]:
    """Two ``tegata serve`` on one SQLite file; suspend and reinstate through A's API, and
    time from the call returning to B's GET answering the new status (B asks in a loop)."""
    here = work / "visibility"
    here.mkdir()
    env, serial = setup_tegata(here)
    token = json.loads(tegata("token", "create", "--role", "admin", "--json", env=env))["token"]
    servers = []
    data = Path(env["TEGATA_DATA_DIR"])
    for name in ("a", "b"):
        port = free_port()
        # a data directory each (one server per directory), the database and keys shared
        replica = {**env, "TEGATA_DATA_DIR": str(here / f"replica-{name}"),
                   "TEGATA_DATABASE_URL": f"sqlite:///{data / 'tegata.db'}",
                   "TEGATA_KEY_DIR": str(data / "keys")}
        proc = procs.start([*TEGATA, "serve", "--port", str(port)], env=replica, cwd=ROOT)
        wait_for_port(port, proc)
        servers.append(port)
    a, b = servers
    request = quote(base64.b64encode((here / "req.der").read_bytes()).decode(), safe="")
    url_b = f"http://{HOST}:{b}/ocsp/{request}"
    api_a = f"http://{HOST}:{a}/api/v1/tenants/default/certificates/{serial:X}"
    for _ in range(2):
        status_of(url_b)  # made, then kept in B's memory
    delays, wrong = [], 0
    for n in range(tries):
        action, expected = ("suspend", "revoked") if n % 2 == 0 else ("reinstate", "good")
        change(f"{api_a}/{action}", token)
        returned = time.perf_counter()
        while (found := status_of(url_b)) != expected:
            wrong += found not in ("good", "revoked")
            if time.perf_counter() - returned > 10:
                break
        delays.append((time.perf_counter() - returned) * 1000)
    delays.sort()
    p50, worst = delays[len(delays) // 2], delays[-1]
    return [f"{tries} changes (suspend/reinstate alternately) through A's API: B answered the "
            f"new status after median {p50:.0f} ms, at most {worst:.0f} ms "
            f"(goal: within 1,000 ms); {wrong} non-OCSP answers meanwhile"]


# --- the peer: openssl ocsp -------------------------------------------------------------------


def setup_openssl_ca(work: Path) -> int:
    """A P-256 CA, a delegated responder (OCSPSigning, ocsp-nocheck) and one leaf, as Tegata."""
    work.mkdir()
    p256 = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *p256, "-subj", "/CN=Peer CA", "-days", "30", "-keyout", "ca.key",
            "-out", "ca.pem", cwd=work)
    (work / "rsp.ext").write_text("basicConstraints=critical,CA:FALSE\n"
                                  "keyUsage=critical,digitalSignature\n"
                                  "extendedKeyUsage=OCSPSigning\nnoCheck=ignored\n")
    serial = 0x1234ABCD
    for name, cn, number, ext in (("rsp", "Peer OCSP", 0x0A01, ["-extfile", "rsp.ext"]),
                                  ("leaf", "leaf", serial, [])):
        openssl("req", "-new", *p256, "-subj", f"/CN={cn}", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", cwd=work)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", hex(number), "-days", "7", *ext, "-out", f"{name}.pem", cwd=work)
    (work / "index.txt").write_text(f"V\t491231235959Z\t\t{serial:X}\tunknown\t/CN=leaf\n")
    openssl("ocsp", "-issuer", "ca.pem", "-cert", "leaf.pem", "-no_nonce", "-reqout", "req.der",
            cwd=work)
    return serial


def start_responder(work: Path, procs: Processes) -> tuple[subprocess.Popen[bytes], int]:
    # openssl 3.0's -port takes a port only: it listens on all addresses; we talk to 127.0.0.1
    port = free_port()
    proc = procs.start(["openssl", "ocsp", "-index", "index.txt", "-port", str(port),
                        "-rsigner", "rsp.pem", "-rkey", "rsp.key", "-CA", "ca.pem",
                        "-nmin", "5"], cwd=work)
    wait_for_port(port, proc)
    return proc, port


def bench_openssl(work: Path, procs: Processes, args: argparse.Namespace
                  ) -> tuple[list[Load], list[str]]:
    here = work / "openssl"
    serial = setup_openssl_ca(here)
    request = (here / "req.der").read_bytes()
    lines = []
    loads = []
    runs = [("wrk's connect test skipped", False), ("plain wrk", True)]
    for name, probe in runs if shutil.which("wrk") else []:
        proc, port = start_responder(here, procs)
        url = f"http://{HOST}:{port}/"
        # no connection to ask whether it is up: the first empty one would end it
        lines.append(f"fresh responder, sample POST {describe(*fetch(url, request), serial)}")
        load = run_wrk(f"openssl ocsp (measured now), POST, {name}", url, args, proc.pid,
                       post_script(here, f"post-{probe}", here / "req.der", probe=probe))
        if not load.rps:
            load.note = "stopped answering; " + load.note
        loads.append(load)
        time.sleep(1)
        lines.append(f"  after {name}: POST "
                     + describe(*fetch(url, request, timeout=3), serial))
        procs.stop(proc)
    proc, port = start_responder(here, procs)
    url = f"http://{HOST}:{port}/"
    with socket.create_connection((HOST, port), timeout=5):
        pass
    lines.append("fresh responder, one empty connection opened and closed: next POST "
                 + describe(*fetch(url, request, timeout=3), serial))
    procs.stop(proc)
    return loads, lines


# --- the floor: what the same uvicorn does with (almost) nothing to do ------------------------

REFERENCE_APP = """
import sys
import uvicorn
BODY = bytes(700)  # about an OCSP response's size
async def bare(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/ocsp-response"), (b"content-length", b"700")]})
    await send({"type": "http.response.body", "body": BODY})
def plain_fastapi():
    from fastapi import FastAPI, Response
    app = FastAPI()
    @app.get("/ocsp/{encoded:path}")
    async def answer(encoded: str) -> Response:
        return Response(BODY, media_type="application/ocsp-response")
    return app
app = bare if sys.argv[1] == "bare" else plain_fastapi()
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def bench_references(work: Path, procs: Processes, args: argparse.Namespace) -> list[Load]:
    """The peer survey's two reference points, re-measured with this uvicorn in one process, as
    ``tegata serve`` runs: a bare ASGI app and a plain FastAPI route, a fixed 700-byte body."""
    loads = []
    for kind, label in (("bare", "bare ASGI app"), ("fastapi", "plain FastAPI route")):
        port = free_port()
        proc = procs.start([sys.executable, "-c", REFERENCE_APP, kind, str(port)], cwd=work)
        wait_for_port(port, proc)
        loads.append(run_wrk(f"{label}, fixed 700-byte body, 1 process (now)",
                             f"http://{HOST}:{port}/ocsp/MEQwQjBAMD4w", args, proc.pid))
        procs.stop(proc)
    return loads


# --- report -----------------------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk row")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tries", type=int, default=20,
                        help="status changes timed from one process to another")
    args = parser.parse_args()
    if not shutil.which("openssl"):
        raise SystemExit("openssl is needed to make the OCSP request")
    print(machine(server_stack(), tool_version(["wrk", "-v"])))
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install -y wrk): only the checks run, no load")
    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, "
          "on the same cores as the server\n")
    procs = Processes()
    loads: list[Load] = []
    with tempfile.TemporaryDirectory(prefix="tegata-bench-ocsp-") as tmp:
        work = Path(tmp)
        try:  # stop the servers before their directory goes
            for workers in (1, 2):
                found, lines = bench_tegata(work, procs, args, workers)
                loads += found
                print(f"tegata serve --workers {workers}:")
                print("\n".join(f"  {line}" for line in lines))
            print("status change visibility, two tegata serve processes on one database:")
            print("\n".join(f"  {line}" for line in bench_visibility(work, procs, args.tries)))
            if shutil.which("wrk"):
                loads += bench_references(work, procs, args)
            found, lines = bench_openssl(work, procs, args)
            loads += found
            print("openssl ocsp -index ... -rsigner (delegated P-256 responder, -nmin 5):")
            print("\n".join(f"  {line}" for line in lines))
        finally:
            procs.stop_all()
    print(f"\n{'responder':58} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv CPU':>7}  notes")
    for load in loads:
        print(f"{load.label:58} {fmt(load.rps, ',.0f'):>8} {fmt(load.p50_ms, '.2f'):>7} "
              f"{fmt(load.p99_ms, '.2f'):>7} {fmt(load.server_cpu, '.2f'):>7}  {load.note}")
    for label, rps, p50, p99 in QUOTED:
        print(f"{label + ' [quoted]':58} {fmt(rps, ',.0f'):>8} {fmt(p50, '.2f'):>7} "
              f"{fmt(p99, '.2f'):>7} {'':>7}  peer survey, not re-measured")
    peer = next((x.rps for x in loads if x.label.startswith("openssl ocsp") and x.rps), None)
    if peer:
        print("\nratios to openssl ocsp measured now (goal for kept answers: >= 2x, p99 <= 10 ms):")
        for load in loads:
            if load.label.startswith("tegata") and load.rps:
                print(f"  {load.label:56} {load.rps / peer:5.2f}x")
    print("(kept: no nonce, answered from the process's memory with no database read, renewed "
          "in the background; srv CPU: the responder's CPU time over the run, in cores, its "
          f"worker processes included; load average at the end "
          f"{os.getloadavg()[0]:.2f})")
    print("(openssl ocsp answers HTTP/1.0 and closes each connection: wrk's read and write "
          "socket errors against it are its keep-alive reuse failing, and wrk reconnects)")


if __name__ == "__main__":
    main()
