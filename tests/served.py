"""A real ``tegata serve`` for tests of concurrency and crashes: its own process, on the
test's database and data directory, reached over HTTP on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from ca.clock import Clock
from ca.service import InitRequest, Service, build_service
from ca.settings import Settings
from tests.processes import free_port, stop
from tests.support.environment import PASSPHRASE

READY_DEADLINE = 30.0  # seconds: an interpreter start-up and the app's import, on a busy machine
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL to the server and its workers at once (its own process group): none gets
        a chance to finish anything (a crash, a pulled plug)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def worker_pids(server: Server) -> set[int]:
    """The server's worker processes (its children), read from /proc."""
    return {int(pid) for task in Path(f"/proc/{server.proc.pid}/task").iterdir()
            for pid in (task / "children").read_text().split()}


TCP_LISTEN = "0A"  # the state column of /proc/net/tcp


def listening_workers(server: Server) -> set[int]:
    """The workers holding a listening socket on the server's port: a worker counted by
    ``worker_pids`` may still be starting, and each worker listens on its own socket."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == server.port and fields[3] == TCP_LISTEN:
            inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for pid in worker_pids(server):
        with contextlib.suppress(OSError):  # the worker ended meanwhile
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):  # closed meanwhile
                    if fd.readlink().as_posix() in inodes:
                        holders.add(pid)
    return holders


def server_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGATA_")}
    env.update(TEGATA_DATA_DIR=str(settings.data_dir),
               TEGATA_DATABASE_URL=settings.effective_database_url,
               TEGATA_KEY_PASSPHRASE=PASSPHRASE, TEGATA_PUBLIC_BASE_URL=settings.public_base_url,
               TEGATA_CONFIG=str(settings.data_dir / "no-such-tegata.toml"),
               TEGATA_LIFECYCLE_INTERVAL_SECONDS="0", TEGATA_TOKEN_REQUESTS_PER_MINUTE="0",
               TEGATA_LOG_LEVEL="warning")
    env.update(extra)
    return env


# what runs the server: ``tegata serve``, or a module taking ``--port`` as it does
TEGATA_SERVE = ("cli.main", "serve")


@contextlib.contextmanager
def serving(settings: Settings, log: Path, *, module: tuple[str, ...] = TEGATA_SERVE,
            workers: int = 1, **extra: str) -> Iterator[Server]:
    """``tegata serve --workers N`` (or a module taking ``--port`` as it does) on the
    settings' database until the block ends (or the test kills it); ready once ``/healthz``
    answers."""
    server = start(settings, log, module=module, workers=workers, **extra)
    try:
        yield server
    finally:
        stop(server.proc)
        with contextlib.suppress(ProcessLookupError):  # a worker left behind, if any
            os.killpg(server.proc.pid, signal.SIGKILL)


def start(settings: Settings, log: Path, *, module: tuple[str, ...] = TEGATA_SERVE,
          workers: int = 1, **extra: str) -> Server:
    port = free_port()
    command = [sys.executable, "-m", *module, "--port", str(port)]
    if module == TEGATA_SERVE:
        command += ["--workers", str(workers)]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, start_new_session=True,
                                cwd=ROOT, env=server_env(settings, **extra), stdout=out,
                                stderr=subprocess.STDOUT)
    server = Server(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    started = time.monotonic()
    while time.monotonic() - started < READY_DEADLINE:
        if proc.poll() is not None:
            raise AssertionError(f"tegata serve exited with {proc.returncode}: "
                                 f"{log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        time.sleep(0.1)
    stop(proc)
    raise AssertionError(f"tegata serve did not answer within {READY_DEADLINE} s")


@contextlib.contextmanager
def live_service(settings: Settings, tenant: str, display_name: str, *,
                 users: int = 0, clock: Clock | None = None) -> Iterator[Service]:
    """The service a server on the same database would be (the system clock, or the fixed
    one of a server run as ``CLOCKED``), with the root CA, one tenant and ``users`` allowed
    users ``user0000``... (one CSV import)."""
    service = build_service(settings, clock=clock)
    service.database.upgrade()
    service.hierarchy.initialize(InitRequest(key_type="ec-p256"))
    service.hierarchy.create_tenant(tenant, display_name=display_name, ca_key_type="ec-p256")
    if users:
        rows = "".join(f"user{n:04d},user{n:04d}@example.jp,yes\n" for n in range(users))
        report = service.users.import_users(tenant, ("login,email,secure_access\n" + rows).encode())
        assert len(report.created) == users
    try:
        yield service
    finally:
        service.engine.dispose()
