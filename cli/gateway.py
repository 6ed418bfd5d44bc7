"""`tegata gateway ...`: the nginx kit, the trust bundle, CRL sync; `tegata tenant ip-policy`."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509

from ca import present, validate
from ca.clock import SystemClock
from ca.errors import CAError, InvalidInput
from ca.service import DEFAULT_TENANT
from cli import crlsync, haproxy_kit
from cli.context import STATE, emit
from cli.gateway_kit import Kit, render
from cli.output import output_file, read_file, shown

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name.")]

gateway_app = typer.Typer(no_args_is_help=True, help="Putting a gateway (nginx, HAProxy) in "
                                                     "front.")
ip_policy_app = typer.Typer(no_args_is_help=True, help="The tenant's IP restriction.")


@gateway_app.command("ca-bundle")
def ca_bundle(tenant: TenantOpt = DEFAULT_TENANT) -> None:
    """The trust bundle for the gateway: the tenant's issuing CA, then the root (PEM), the
    order of `tegata ca show --pem` and of the API."""
    chain = present.ca_chain(STATE.service().hierarchy.ca_certificates(tenant))
    typer.echo("".join(v.pem for v in chain), nl=False)


@gateway_app.command("nginx")
def nginx(
    upstream: Annotated[str, typer.Option(help="Where nginx passes verified requests, e.g. "
                                          "http://127.0.0.1:9000.")],
    tenant: TenantOpt = DEFAULT_TENANT,
    mode: Annotated[str, typer.Option(help="ocsp (default), crl, or auth (the IP-restriction "
                                      "policy through auth_request).")] = "ocsp",
    server_name: Annotated[str, typer.Option(help="nginx server_name.")] = "_",
    listen: Annotated[str, typer.Option(help="nginx listen address.")] = "443",
    server_cert: Annotated[str, typer.Option(help="The gateway's own TLS certificate.")]
    = "/etc/nginx/tls/server.pem",
    server_key: Annotated[str, typer.Option(help="Its key.")] = "/etc/nginx/tls/server.key",
    ca_bundle_path: Annotated[str | None, typer.Option(
        "--ca-bundle", help="Path of `tegata gateway ca-bundle` on the gateway.")] = None,
    crl_file: Annotated[str | None, typer.Option(help="Path of the CRL file (crl mode).")]
    = None,
    tegata_url: Annotated[str | None, typer.Option(help="Tegata's URL as the gateway reaches "
                                                   "it (default TEGATA_PUBLIC_BASE_URL).")]
    = None,
    ocsp_url: Annotated[str | None, typer.Option(
        help="Tegata's OCSP URL for nginx, plain http (default <tegata-url>/ocsp).")] = None,
    auth_include: Annotated[Path | None, typer.Option(
        help="auth mode: write a new gateway token into this nginx include file (0600), "
             "revoking the one an earlier run wrote there, and point the configuration at "
             "it.")] = None,
) -> None:
    """Print an nginx server block for the tenant's gateway."""
    service = STATE.service()
    if mode == "auth" and auth_include is None:
        raise InvalidInput("auth mode needs --auth-include FILE for the gateway token",
                           field="auth_include")
    if mode != "auth" and auth_include is not None:
        raise InvalidInput("--auth-include is for --mode auth (the other modes use no token)",
                           field="auth_include")
    if auth_include is not None:
        # nginx reads a relative include against its own configuration directory, not here
        auth_include = auth_include.absolute()
    validity = service.ocsp.get_validity(tenant)
    # the auth variant pins nothing: Tegata looks the serial up in this tenant
    issuer_dn = "" if mode == "auth" else service.hierarchy.gateway_issuer_dn(tenant)
    base = f"/etc/nginx/tegata/{tenant}"
    tegata = (tegata_url or service.settings.public_base_url).rstrip("/")
    kit = Kit(tenant=tenant, mode=mode, server_name=server_name, listen=listen,
              server_cert=server_cert, server_key=server_key,
              ca_bundle=ca_bundle_path or f"{base}-ca.pem",
              crl_file=crl_file or f"{base}-crl.pem",
              tegata_url=tegata, ocsp_url=ocsp_url or f"{tegata}/ocsp",
              upstream=upstream, ocsp_validity_seconds=validity,
              auth_include=str(auth_include or f"{base}-auth.conf"), issuer_dn=issuer_dn)
    text = render(kit)  # checks every value before a token is made
    if auth_include is not None and mode == "auth":
        write_auth_include(auth_include, tenant)
    typer.echo(text, nl=False)


def write_auth_include(path: Path, tenant: str) -> None:
    """A new gateway token into ``path``, replacing the one an earlier run wrote there.

    The file is checked and opened before the token is made (a bad path creates nothing);
    a token made for a file that could not be written is revoked again; the earlier run's
    token is revoked once the new file is in place, so re-runs never pile tokens up.
    """
    service = STATE.service()
    previous = previous_kit_token(path, tenant)
    made: int | None = None
    try:
        with output_file(path, force=True, field="auth_include") as handle:
            token, view = service.tokens.create(role="gateway", tenant=tenant,
                                               name=f"nginx kit {shown(path, 80)}")
            made = view.id
            handle.write(
                f"# Tegata gateway token {view.id} of tenant {tenant}, written by `tegata "
                "gateway nginx --auth-include`.\n# It does not expire: a new run for this "
                f"file replaces it; `tegata token revoke {view.id}` stops it.\n"
                f'proxy_set_header Authorization "Bearer {token}";\n'.encode())
    except BaseException:
        if made is not None:
            service.tokens.revoke(made, tenant=tenant)
        raise
    if previous is not None and previous != made:
        service.tokens.revoke(previous, tenant=tenant)


def previous_kit_token(path: Path, tenant: str) -> int | None:
    """The live gateway token an earlier run wrote into ``path``, if any; a file that is
    there but holds no Tegata token is someone else's, and is refused."""
    try:
        present = path.exists()
    except (OSError, ValueError):
        present = False  # output_file names what is wrong with the path
    if not present:
        return None
    data = read_file(path, limit=64 * 1024, field="auth_include", what="the include file ")
    found = KIT_TOKEN.search(data.decode("utf-8", "replace"))
    if found is None:
        if data.strip():
            raise InvalidInput(f"{shown(path)} exists and holds no Tegata gateway token: "
                               "not overwriting it", field="auth_include")
        return None
    live = STATE.service().gateway.live_token(found.group(1))
    if live is None:
        return None  # revoked or expired: nothing to replace
    owner, token_id = live
    if owner != tenant:
        raise InvalidInput(f"{shown(path)} holds the gateway token of tenant {shown(owner)}: "
                           "another tenant's gateway uses it; not overwriting it",
                           field="auth_include")
    return token_id


KIT_TOKEN = re.compile(r'proxy_set_header\s+Authorization\s+"Bearer\s+(tgt_[A-Za-z0-9_-]+)"')


gateway_app.command("haproxy")(haproxy_kit.haproxy)


@gateway_app.command("crl-sync")
def crl_sync(
    out: Annotated[Path, typer.Option("--out", "-o", help="The gateway's CRL file.")],
    ca_bundle_path: Annotated[Path, typer.Option("--ca-bundle", help="Trusted CAs (from "
                                                 "`tegata gateway ca-bundle`).")],
    tenant: TenantOpt = DEFAULT_TENANT,
    url: Annotated[str | None, typer.Option(help="Tegata's base URL (default "
                                            "TEGATA_PUBLIC_BASE_URL).")] = None,
    reload_command: Annotated[str | None, typer.Option(
        "--reload", help="Run when the gateway must take a new CRL, e.g. 'nginx -s reload'. "
        "Its exit status alone cannot say that nginx took the CRL: add --nginx-pid. With "
        "--haproxy-socket: run (e.g. 'systemctl reload haproxy') only for CRLs too big for "
        "one runtime API command.")
    ] = None,
    nginx_pid: Annotated[Path | None, typer.Option(
        help="nginx's pid file (its `pid` directive, e.g. /run/nginx.pid): after --reload, "
             "check that the master started new workers, i.e. took the new configuration; "
             "if not, the CRL is not applied (exit 75) and the next run retries.")] = None,
    reload_wait: Annotated[int, typer.Option(help="Seconds nginx's master has to start new "
                                             "workers after the reload (--nginx-pid).")]
    = int(crlsync.RELOAD_WAIT),
    haproxy_socket: Annotated[str | None, typer.Option(
        help="HAProxy runtime API socket: push the CRL there (set + commit) unless HAProxy "
             "already holds it.")] = None,
    haproxy_bufsize: Annotated[int, typer.Option(
        help="HAProxy's tune.bufsize: a runtime API command and its CRLs must fit in one "
             "buffer (less 1024 bytes spare); bigger CRLs need --reload.")
    ] = crlsync.HAPROXY_BUFSIZE,
    watch: Annotated[bool, typer.Option("--watch", help="Keep syncing; a failure is logged "
                                        "and retried, never the end.")] = False,
    interval: Annotated[int, typer.Option(help="Seconds between syncs with --watch.")] = 300,
    retry: Annotated[int, typer.Option(help="Seconds before the first retry of a failed "
                                       "sync with --watch (doubling up to --interval).")] = 5,
    warn_hours: Annotated[int, typer.Option(help="Warn when the gateway's CRL would expire "
                                            "within this many hours.")] = 48,
) -> None:
    """Fetch, check and atomically write the tenant's CRL bundle; have the gateway take it.

    Exit codes: 0 synced; 2 bad input (arguments, a CRL that fails the checks, Tegata
    answering 404 or another 4xx that names a mistake, an --out file that holds no CRL);
    69 Tegata or the gateway unreachable, or Tegata failing to answer (a timeout, a dropped
    connection, 429, 5xx); 75 the CRL is written but the gateway did not take it (the reload
    command failed, nginx kept its old configuration, HAProxy refused the push, or CRLs too
    big for HAProxy's runtime API without --reload): the next
    run applies it again; 78 configuration (--out not writable, the reload command not
    found or not executable)."""
    base = (url or STATE.settings().public_base_url).rstrip("/")
    crlsync.check_url(base)  # no password in it, never shown: before anything else
    validate.tenant_name(tenant)  # it becomes part of the URL
    if interval < 1 or retry < 1 or reload_wait < 1:
        raise InvalidInput("--interval, --retry and --reload-wait are at least 1 second",
                           field="interval")
    if haproxy_bufsize < 2 * crlsync.HAPROXY_SPARE:
        raise InvalidInput(f"--haproxy-bufsize is at least {2 * crlsync.HAPROXY_SPARE}",
                           field="haproxy_bufsize")
    try:
        trusted = x509.load_pem_x509_certificates(
            read_file(ca_bundle_path, limit=1024 * 1024, field="ca_bundle",
                      what="the CA bundle "))
    except ValueError:
        raise InvalidInput(f"the CA bundle {shown(ca_bundle_path)} holds no PEM certificate",
                           field="ca_bundle") from None
    # every argument is checked before anything is fetched or written
    if reload_command is not None:
        crlsync.reload_words(reload_command)
    if nginx_pid is not None and reload_command is None:
        raise InvalidInput("--nginx-pid checks the reload: give --reload too",
                           field="nginx_pid")
    if haproxy_socket:
        crlsync.check_haproxy_name(out)
    # a file that is no CRL file (a mistyped --out) is refused here, --watch or not
    crlsync.read_current(out, trusted, now=SystemClock().now(), quiet=True)
    target = crlsync.Target(out=out, url=f"{base}/crl/{tenant}-chain.pem",
                            reload_command=reload_command, nginx_pid=nginx_pid,
                            reload_wait=reload_wait,
                            haproxy_socket=haproxy_socket, haproxy_bufsize=haproxy_bufsize)
    _sync(target, trusted, watch=watch, interval=interval, retry=retry,
          warn_within=dt.timedelta(hours=warn_hours))


def _sync(target: crlsync.Target, trusted: list[x509.Certificate], *, watch: bool,
          interval: int, retry: int, warn_within: dt.timedelta) -> None:
    """One sync, or with --watch one every ``interval`` seconds. A failure ends a single
    sync; a watch logs it in one line and retries after ``retry`` seconds, doubling up to
    ``interval``, for as long as it runs (the gateway may be restarting)."""
    clock = SystemClock()
    failures = 0
    while True:
        now = clock.now()
        try:
            outcome = crlsync.sync_once(target, trusted, now=now)
        except Exception as exc:  # a watch logs anything and goes on
            if not watch and not isinstance(exc, CAError):
                raise
            try:
                current = crlsync.read_current(target.out, trusted, now=now, quiet=True)
            except CAError:
                current = None
            left = (f"the gateway's CRL expires in {current.next_update - now}" if current
                    else "the gateway has no CRL")
            if not watch:
                if current is None or current.next_update - now < warn_within:
                    crlsync.warn(f"{left}: without a current one, it refuses every client")
                raise
            failures += 1
            wait = min(interval, retry * 2 ** min(failures - 1, 16))
            what = (f"({exc.code}): {exc.message}" if isinstance(exc, CAError)
                    else f"(internal error, {type(exc).__name__}): {shown(exc, 200)}")
            crlsync.warn(f"crl-sync of {target.out} failed {what}; "
                         f"{left}; retry {failures} in {wait} s")
            time.sleep(wait)
            continue
        failures = 0
        _report(target.out, outcome, now, warn_within)
        if not watch:
            return
        time.sleep(interval)


def _report(out: Path, outcome: crlsync.Outcome, now: dt.datetime,
            warn_within: dt.timedelta) -> None:
    checked = outcome.checked
    if checked.untrusted:
        crlsync.warn(f"the CRLs of {', '.join(checked.untrusted)} are left out of {out}: "
                     "their CA is not in --ca-bundle; a CA rollover happened: run `tegata "
                     "gateway ca-bundle ...` again, give the gateway the new bundle and "
                     "this command --ca-bundle")
    if checked.next_update - now < warn_within:
        crlsync.warn(f"the CRL expires at {checked.next_update.isoformat()}: is Tegata "
                     "renewing it?")
    emit({"file": str(out), "changed": outcome.changed, "numbers": checked.numbers,
          "next_update": checked.next_update.isoformat()}, as_json=False,
         text=f"{out}: {'updated' if outcome.changed else 'unchanged'}, next update "
              f"{checked.next_update.isoformat()}")


@ip_policy_app.command("set")
def ip_policy_set(
    policy: Annotated[str, typer.Option(help="ip_only, cert_only, ip_or_cert or "
                                        "ip_and_cert.")],
    network: Annotated[list[str] | None, typer.Option(help="An allowed network (CIDR); "
                                                      "repeat for more.")] = None,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Set the allowed networks and how they combine with certificates."""
    view = STATE.service().gateway.set_ip_policy(tenant, policy=policy, networks=network or [])
    emit(present.ip_policy(view), as_json=as_json,
         text=f"{view.tenant}: {view.policy} {' '.join(view.networks)}")


@ip_policy_app.command("show")
def ip_policy_show(tenant: TenantOpt = DEFAULT_TENANT, as_json: JsonOpt = False) -> None:
    """Show the allowed networks and the policy."""
    view = STATE.service().gateway.get_ip_policy(tenant)
    emit(present.ip_policy(view), as_json=as_json,
         text=f"{view.tenant}: {view.policy} {' '.join(view.networks)}")
