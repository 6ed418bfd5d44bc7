"""``tegata serve`` and ``tegata demo``: the HTTP service, on every core.

The parent process checks everything once (``prepare``), then granian runs the workers; each
worker builds its own service and app from the same settings (``worker_app``, the factory
granian imports by name). Granian, not uvicorn, because it answers more requests per core
and because it closes a request whose headers do not come in time (and an idle kept-alive
connection), caps connections per worker, and takes no address from ``X-Forwarded-For``:
only ``TEGATA_TRUSTED_PROXIES`` decides who the client is (``api.clientip``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from ca.db import migrate as schema
from ca.db.engine import check_reachable
from ca.errors import ConfigError, Conflict, NotInitialized, SchemaNotCurrent
from ca.sealing import check_passphrase, is_unwrapped
from ca.service import InitRequest, Service
from ca.settings import DEFAULT_CONFIG_FILE, Settings, load_settings
from ca.signer import write_private_file
from cli.context import STATE

if TYPE_CHECKING:
    from starlette.types import ASGIApp

DEMO_TENANT = "demo"
DEMO_USERS = (("alice", "alice@example.com", "Alice Example", True),
              ("bob", "bob@example.com", "Bob Example", False))

HostOpt = Annotated[str | None, typer.Option(help="Address to listen on.")]
PortOpt = Annotated[int | None, typer.Option(help="Port to listen on.")]


def check_before_migrating(service: Service) -> None:
    """A wrong passphrase must fail before the schema moves on: once migrated, the database
    is ahead of the release an operator may go back to. A configured passphrase must open
    the key directory; a data-protection key left in the clear needs one (it is wrapped
    right after migrating)."""
    settings = service.settings
    key_dir = settings.effective_key_dir
    configured = settings.key_passphrase is not None or settings.key_passphrase_file is not None
    if key_dir.is_dir() and (configured or is_unwrapped(key_dir)):
        check_passphrase(key_dir, settings.passphrase(),
                         passphrase_source=settings.passphrase_source())


def check_schema(service: Service) -> None:
    """A schema behind (or ahead of) this release is a configuration problem (exit 78: run
    `tegata db upgrade`), not an unreachable database (69)."""
    check_reachable(service.engine)
    if not schema.is_current(service.engine):
        raise SchemaNotCurrent("the database schema is not current")  # cli.errors: 78


def prepare(service: Service, *, migrate: bool) -> None:
    """Everything start-up checks, in order; the first failure stops it with one line."""
    if migrate:
        check_before_migrating(service)
        service.database.upgrade()
    check_schema(service)
    service.database.check()
    if not service.startup.is_initialized():
        raise NotInitialized("Tegata is not initialised")
    service.startup.load_signers()


# what the open files limit holds back from connections: the database's, the key and CRL
# files, the thread pool's, the log's
RESERVED_FILES_SHARE = 4
WORKER_FACTORY = "cli.server:worker_app"


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How ``tegata serve`` runs: worker processes, connections each holds at most, how long
    a request's headers may take."""

    workers: int
    connections_per_worker: int
    header_timeout_ms: int


def open_files_limit() -> int:
    """The soft limit on open files, first raised to the hard one (as Go's runtime does):
    each worker is a process of its own and inherits it."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return int(wanted)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return int(soft)


def plan(settings: Settings, *, workers: int | None, open_files: int) -> Plan:
    """``--workers``, else TEGATA_WORKERS, else one per core; TEGATA_MAX_CONNECTIONS shared
    among the workers, never past what a worker's open files allow."""
    count = workers or settings.workers or os.cpu_count() or 1
    budget = max(1, open_files - open_files // RESERVED_FILES_SHARE)
    wanted = settings.max_connections
    per_worker = budget if wanted is None else min(budget, max(1, -(-wanted // count)))
    return Plan(workers=count, connections_per_worker=per_worker,
                header_timeout_ms=settings.header_timeout_seconds * 1000)


def worker_app() -> ASGIApp:
    """A worker's app: its own service (database pool, signers) from the settings of the
    environment and config file that ``tegata serve`` checked before starting it."""
    from api.app import build_app
    from cli import logs, supervise

    # a forked worker inherits the parent's SIGTERM handler, which would swallow a stop
    # that comes while this runs (granian sets the worker's own handlers only after it):
    # until then, a stop ends the worker at once, as it serves nothing yet
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, signal.SIG_DFL)
    supervise.die_with_parent()
    release_data_dir()  # the server's lock, inherited by a forked worker
    try:
        settings = load_settings()
        logs.configure(settings)
        app = build_app(settings)
        app.state.service.startup.load_signers()
        return app
    except Exception as exc:  # any: a worker that cannot start is told apart from a death
        raise supervise.start_failed(exc) from None


# held by a running ``tegata serve`` in its data directory: one server per directory
SERVE_LOCK = "serve.lock"
# the lock's descriptor while this process serves, with its file's (device, inode)
_claimed: list[tuple[int, tuple[int, int]]] = []


def claim_data_dir(data_dir: Path) -> None:
    """Refuse a second ``tegata serve`` on this data directory, in one line. Each server
    keeps its own ``metrics/`` there (emptied at its start: a second server would wipe the
    first one's counts, and each would then report both) and its own ``lifecycle.lock``, so
    replicas, even on one host, take a data directory each. The lock is ``flock``'s: the
    kernel drops it when the server exits, even killed; its workers close their copy."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no guard
        return
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(data_dir / SERVE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"TEGATA_DATA_DIR: {data_dir} is in use by another tegata serve; "
                          "give each server (each replica) a data directory of its own",
                          field="TEGATA_DATA_DIR") from None
    info = os.fstat(fd)
    _claimed.append((fd, (info.st_dev, info.st_ino)))


def release_data_dir() -> None:
    """Close this process's copy of the lock (the server at its end; a forked worker at
    its start, so that only the server itself holds it)."""
    while _claimed:
        fd, file = _claimed.pop()
        with contextlib.suppress(OSError):  # closed already: nothing to do
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) == file:  # still the lock file's descriptor
                os.close(fd)


def check_address(host: str, port: int) -> None:
    """A port already taken stops ``serve`` in one line naming it (granian would panic)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigError(f"TEGATA_HOST/TEGATA_PORT: cannot listen on {host}:{port}: "
                          f"{exc.strerror or exc}", field="TEGATA_PORT") from None


def run(service: Service, host: str, port: int, *, workers: int | None = None) -> None:
    from ca import parallel
    from ca.token import finalize_modules
    from cli import logs

    settings = service.settings
    check_address(host, port)
    logs.configure(settings)
    drift = service.startup.public_base_url_drift()  # a warning, logged as the server logs
    if drift is not None:
        logging.getLogger("tegata.startup").warning("%s", drift)
    how = plan(settings, workers=workers, open_files=open_files_limit())
    os.environ[parallel.SERVER_WORKERS] = str(how.workers)  # each one's pool: its share of cores
    service.engine.dispose()  # the workers open their own connections
    # and their own PKCS#11 sessions: start-up's are closed before the workers fork, so
    # that no module state (a network HSM's connection) is shared with them
    finalize_modules()
    claim_data_dir(settings.data_dir)
    try:
        _serve(settings, host, port, how)
    finally:
        release_data_dir()


def _serve(settings: Settings, host: str, port: int, how: Plan) -> None:
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    from api import sharedmetrics
    from cli import supervise

    sharedmetrics.reset(settings.data_dir)  # a new server counts from zero
    supervise.prepare_reasons()
    server = supervise.Supervisor(WORKER_FACTORY, factory=True, address=host, port=port,
            interface=Interfaces.ASGI, loop=Loops.uvloop, workers=how.workers,
            # HTTP/1 only: with HTTP/2 detection granian waits for a first byte without
            # the header timeout, and a connection that sends nothing is never closed
            http=HTTPModes.http1,
            http1_settings=HTTP1Settings(header_read_timeout=how.header_timeout_ms),
            # connections a worker holds at once; past it they wait in the listen queue
            backpressure=how.connections_per_worker,
            # a dead worker is replaced (cli.supervise says when not); a stop gives requests
            # in flight 8 s to finish
            respawn_failed_workers=True, workers_kill_timeout=8,
            log_level=LogLevels(settings.log_level),
            # granian's loggers go through the handler configured above
            log_dictconfig={"loggers": {name: {"handlers": [], "propagate": True}
                                        for name in ("_granian", "granian.access")}},
            )
    server.serve()
    if server.failure is not None:
        raise server.failure


WorkersOpt = Annotated[int | None, typer.Option(
    min=1, max=256, help="Worker processes (default: TEGATA_WORKERS, else one per core).")]


def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    migrate: Annotated[bool, typer.Option("--migrate", help="Upgrade the schema first.")]
    = False,
    workers: WorkersOpt = None,
) -> None:
    """Serve the API, CA certificates, CRLs and OCSP on one port."""
    settings = STATE.settings()
    service = STATE.service(check_schema=False)
    prepare(service, migrate=migrate or settings.migrate_on_start)
    run(service, host or settings.host, port or settings.port, workers=workers)


def _write_demo_config() -> None:
    """First run with no configuration: a random passphrase file and a tegata.toml naming it."""
    if "TEGATA_KEY_PASSPHRASE" in os.environ or "TEGATA_KEY_PASSPHRASE_FILE" in os.environ:
        return
    config = _demo_config_file()
    if config.exists():
        return
    data_dir = Path(os.environ.get("TEGATA_DATA_DIR", "tegata-data"))
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret_file = data_dir / "demo-passphrase"
    if not secret_file.exists():
        write_private_file(secret_file, secrets.token_urlsafe(32).encode() + b"\n")
    config.write_text(
        "# Written by `tegata demo` on first run. For production, keep the passphrase\n"
        "# away from the data directory (TEGATA_KEY_PASSPHRASE_FILE on another volume).\n"
        # a JSON string is a valid TOML basic string: quotes and backslashes escaped
        f"key_passphrase_file = {json.dumps(secret_file.as_posix())}\n", encoding="utf-8")
    typer.echo(f"first run: wrote {config} and a random CA key passphrase in {secret_file}")


def _demo_config_file() -> Path:
    return Path(os.environ.get("TEGATA_CONFIG", DEFAULT_CONFIG_FILE))


def browsable(host: str) -> str:
    """The address a browser on this machine opens for a server listening on ``host``."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:  # a name
        return host or "127.0.0.1"
    if address.is_unspecified:  # every interface: this machine's own will do
        return "127.0.0.1"
    return f"[{address}]" if address.version == 6 else str(address)


def demo_base_url(host: str, port: int) -> str:
    return f"http://{browsable(host)}:{port}"


def _remember_base_url(url: str) -> None:
    """Put ``public_base_url`` at the top of tegata.toml (made if absent): at the top, it
    cannot fall inside a table of the file."""
    config = _demo_config_file()
    kept = config.read_text(encoding="utf-8") if config.exists() else ""
    config.write_text(
        "# Written by `tegata demo` on first run: the base URL of the CA's CRL, OCSP and\n"
        "# caIssuers URLs, which every certificate carries for its whole life.\n"
        f"public_base_url = {json.dumps(url)}\n" + kept, encoding="utf-8")
    typer.echo(f"first run: wrote public_base_url = {url} in {config}")


def _demo_base_url(service: Service, host: str, port: int) -> Service:
    """On a first run (no CA yet) with no base URL configured, the base URL is where the
    demo listens, kept in tegata.toml for the runs after. Once the CA exists its URLs are
    fixed: a run on another port keeps them and says so, rather than move them silently."""
    settings = service.settings
    wanted = demo_base_url(host, port)
    configured = "public_base_url" in settings.model_fields_set
    if not configured and not service.startup.is_initialized():
        if wanted == settings.public_base_url:
            return service
        _remember_base_url(wanted)
        STATE.reset()  # the settings read again, with the file's new line
        return STATE.service(check_schema=False)
    base = urlsplit(settings.public_base_url)
    local = base.hostname in ("127.0.0.1", "localhost", "::1")
    if local and (base.port or (443 if base.scheme == "https" else 80)) != port:
        typer.echo(f"warning: the public base URL is {settings.public_base_url} (the CRL, "
                   f"OCSP and caIssuers URLs of every certificate) but the demo listens on "
                   f"port {port}; the URLs stay as they are: change public_base_url in "
                   f"{_demo_config_file()} to move them (certificates issued before keep "
                   "theirs)", err=True)
    return service


def demo(host: HostOpt = None, port: PortOpt = None, workers: WorkersOpt = None) -> None:
    """Start a ready-to-try Tegata: creates the CA, a demo tenant and an admin token (one
    worker unless --workers or TEGATA_WORKERS says otherwise). On the first run, the CA's
    URLs are on the port it listens on."""
    _write_demo_config()
    settings = STATE.settings()
    host = host or settings.host
    port = port or settings.port
    service = STATE.service(check_schema=False)
    service.database.upgrade()
    service = _demo_base_url(service, host, port)
    if not service.startup.is_initialized():
        service.hierarchy.initialize(InitRequest())
        typer.echo("created the root CA and the `default` tenant")
    try:
        service.hierarchy.create_tenant(DEMO_TENANT, display_name="Demo Company")
        for login, email, name, allow in DEMO_USERS:
            service.users.add(DEMO_TENANT, login, email=email, display_name=name, allow=allow)
        typer.echo(f"created the `{DEMO_TENANT}` tenant with users alice (allowed) and bob")
    except Conflict:
        pass
    prepare(service, migrate=False)
    token, _ = service.tokens.create(role="admin", tenant=DEMO_TENANT, name="demo admin",
                                    valid_for=dt.timedelta(days=1))
    url = demo_base_url(host, port)
    typer.echo(
        f"\nTegata is starting at {url}  (API docs: {url}/docs)\n"
        f"web console: {url}/console/\n"
        f"  sign in by pasting the admin token below into its token field\n"
        f"admin token for tenant `{DEMO_TENANT}` (valid 24 h, shown once):\n  {token}\n"
        f"try:\n  curl -H 'Authorization: Bearer {token}' {url}/api/v1/whoami\n"
        f"  curl -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
        f"-d '{{\"login\": \"alice\"}}' {url}/api/v1/tenants/{DEMO_TENANT}/certificates\n")
    run(service, host, port, workers=workers or settings.workers or 1)
