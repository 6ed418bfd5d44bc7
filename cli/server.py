"""``tegata serve`` and ``tegata demo``: the HTTP service under uvicorn."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer

from ca.db import migrate as schema
from ca.db.engine import check_reachable
from ca.errors import ConfigError, Conflict, NotPermitted
from ca.sealing import check_passphrase, is_unwrapped
from ca.service import InitRequest, Service
from ca.settings import DEFAULT_CONFIG_FILE
from ca.signer import write_private_file
from cli.context import STATE

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
        raise ConfigError("the database schema is not current: run `tegata db upgrade` "
                          "(or start with TEGATA_MIGRATE_ON_START=true)")


def prepare(service: Service, *, migrate: bool) -> None:
    """Everything start-up checks, in order; the first failure stops it with one line."""
    if migrate:
        check_before_migrating(service)
        service.upgrade_database()
    check_schema(service)
    service.check_database()
    if not service.is_initialized():
        raise NotPermitted("Tegata is not initialised: run `tegata init` first")
    service.load_signers()


def run(service: Service, host: str, port: int) -> None:
    import uvicorn

    from api.app import build_app
    from cli import logs

    logs.configure(service.settings)
    from api.fastpath import OcspFastPath

    app = OcspFastPath(build_app(service.settings, service=service), service)
    # log_config=None: uvicorn's loggers go through the handler configured above
    uvicorn.run(app, host=host, port=port, log_config=None,
                log_level=service.settings.log_level, server_header=False,
                timeout_keep_alive=5)


def serve(
    host: HostOpt = None,
    port: PortOpt = None,
    migrate: Annotated[bool, typer.Option("--migrate", help="Upgrade the schema first.")]
    = False,
) -> None:
    """Serve the API, CA certificates, CRLs and OCSP on one port."""
    settings = STATE.settings()
    service = STATE.service(check_schema=False)
    prepare(service, migrate=migrate or settings.migrate_on_start)
    run(service, host or settings.host, port or settings.port)


def _write_demo_config() -> None:
    """First run with no configuration: a random passphrase file and a tegata.toml naming it."""
    if "TEGATA_KEY_PASSPHRASE" in os.environ or "TEGATA_KEY_PASSPHRASE_FILE" in os.environ:
        return
    config = Path(os.environ.get("TEGATA_CONFIG", DEFAULT_CONFIG_FILE))
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


def demo(host: HostOpt = None, port: PortOpt = None) -> None:
    """Start a ready-to-try Tegata: creates the CA, a demo tenant and an admin token."""
    _write_demo_config()
    settings = STATE.settings()
    service = STATE.service(check_schema=False)
    service.upgrade_database()
    if not service.is_initialized():
        service.initialize(InitRequest())
        typer.echo("created the root CA and the `default` tenant")
    try:
        service.create_tenant(DEMO_TENANT, display_name="Demo Company")
        for login, email, name, allow in DEMO_USERS:
            service.add_user(DEMO_TENANT, login, email=email, display_name=name, allow=allow)
        typer.echo(f"created the `{DEMO_TENANT}` tenant with users alice (allowed) and bob")
    except Conflict:
        pass
    prepare(service, migrate=False)
    token, _ = service.create_token(role="admin", tenant=DEMO_TENANT, name="demo admin",
                                    valid_for=dt.timedelta(days=1))
    host = host or settings.host
    port = port or settings.port
    url = f"http://{host}:{port}"
    typer.echo(
        f"\nTegata is starting at {url}  (API docs: {url}/docs)\n"
        f"admin token for tenant `{DEMO_TENANT}` (valid 24 h, shown once):\n  {token}\n"
        f"try:\n  curl -H 'Authorization: Bearer {token}' {url}/api/v1/whoami\n"
        f"  curl -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
        f"-d '{{\"login\": \"alice\"}}' {url}/api/v1/tenants/{DEMO_TENANT}/certificates\n")
    run(service, host, port)
