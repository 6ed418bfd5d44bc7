"""The sub-commands: each parses, calls one ``ca.service`` method, and prints."""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ca import expiry, present, tokens
from ca.errors import InvalidInput
from ca.profiles import CA_KEY_TYPES, CLIENT_KEY_TYPES
from ca.sealing import is_unwrapped
from ca.service import DEFAULT_TENANT, InitRequest, IssueRequest
from ca.service.views import GenerationView
from ca.tokens import ROLES
from ca.x509.pkcs12 import Profile
from cli import backup, crl, gateway, lifecycle, revocation, server, subscription
from cli.auditlog import audit_app
from cli.context import STATE, emit
from cli.links import link_app
from cli.options import PinFileOpt, Pkcs11ModuleOpt, Pkcs11TokenOpt
from cli.output import output_file, read_file, shown
from cli.tenants import tenant_set
from cli.users import GroupOpt, StatusOpt, UnaffiliatedOpt, group_app, selection, user_app

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
PROFILES = tuple(p.value for p in Profile)


def _one_of(names: tuple[str, ...]) -> str:
    """``a, b or c``: a help text's list of the values an option takes."""
    return f"{', '.join(names[:-1])} or {names[-1]}"
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name.")]

db_app = typer.Typer(no_args_is_help=True, help="Database schema (alembic migrations).")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants and their issuing CAs.")
cert_app = typer.Typer(no_args_is_help=True, help="Client certificates.")
ca_app = typer.Typer(no_args_is_help=True, help="The root and issuing CA certificates.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("serve")(server.serve)
    app.command("demo")(server.demo)
    app.add_typer(db_app, name="db")
    app.add_typer(tenant_app, name="tenant")
    revocation.register(cert_app)
    app.add_typer(crl.crl_app, name="crl")
    app.add_typer(lifecycle.lifecycle_app, name="lifecycle")
    tenant_app.add_typer(subscription.subscription_app, name="subscription")
    app.add_typer(link_app, name="link")
    app.add_typer(gateway.gateway_app, name="gateway")
    app.add_typer(audit_app, name="audit")
    tenant_app.add_typer(gateway.ip_policy_app, name="ip-policy")
    tenant_app.command("set")(tenant_set)
    app.add_typer(user_app, name="user")
    app.add_typer(group_app, name="group")
    app.add_typer(cert_app, name="cert")
    app.add_typer(ca_app, name="ca")
    app.add_typer(token_app, name="token")
    backup.register(app)


# --- init and db -----------------------------------------------------------------------------


def init(
    root_name: Annotated[str, typer.Option(help="Common name of the root CA.")] = "Tegata Root CA",
    organization: Annotated[str, typer.Option(help="Organisation in CA names.")] = "Tegata",
    key_type: Annotated[str, typer.Option(help=f"{_one_of(CA_KEY_TYPES)}.")] = "ec-p384",
    validity_years: Annotated[int, typer.Option(help="Root CA validity in years.")] = 25,
    pkcs11_module: Pkcs11ModuleOpt = None,
    pkcs11_token: Pkcs11TokenOpt = None,
    pin_file: PinFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create the database, the root CA and the issuing CA of the `default` tenant."""
    request = InitRequest(root_name=root_name, organization=organization, key_type=key_type,
                          validity_years=validity_years, pkcs11_token=pkcs11_token)
    STATE.use_token(pkcs11_token, pkcs11_module, pin_file)
    service = STATE.service(check_schema=False)
    service.settings.passphrase()  # fail before touching the database if it is missing
    if pkcs11_token is not None:  # and if the token is absent or the PIN does not open it
        service.keys.token(pkcs11_token).check()
    service.database.upgrade()
    root = service.hierarchy.initialize(request)
    emit({"root": present.ca(root), "tenant": DEFAULT_TENANT}, as_json=as_json,
         text=f"root CA: {root.subject} (serial {root.serial}, until {root.not_after:%Y-%m-%d})\n"
              f"tenant: {DEFAULT_TENANT}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the schema up to the latest migration; wrap under the CA key passphrase a
    data-protection key that an earlier release left in the clear."""
    service = STATE.service(check_schema=False)
    server.check_before_migrating(service)  # a wrong passphrase changes nothing
    service.database.upgrade()
    if is_unwrapped(service.settings.effective_key_dir):
        _ = service.keys.sealer  # loading it wraps it, once the passphrase proves right
        typer.echo("data-protection key wrapped under the CA key passphrase")
    typer.echo("database schema is current")


@db_app.command("current")
def db_current(as_json: JsonOpt = False) -> None:
    """Show the schema revision of the database and of this release."""
    database, release = STATE.service(check_schema=False).database.revisions()
    data = {"database": database, "release": release}
    emit(data, as_json=as_json, text=f"database {data['database']}, release {data['release']}")


# --- tenants and CAs -------------------------------------------------------------------------


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Tenant name: a-z 0-9 -.")],
    display_name: Annotated[str | None, typer.Option(help="Name shown in certificates.")]
    = None,
    key_type: Annotated[str, typer.Option(help=f"Issuing CA key type: "
                                          f"{_one_of(CA_KEY_TYPES)}.")] = "ec-p384",
    p12_profile: Annotated[str | None, typer.Option(
        help=f"{_one_of(PROFILES)}: the tenant's default PKCS#12 profile (default compat; "
             "`tenant set --p12-profile` changes it).")] = None,
    pkcs11_module: Pkcs11ModuleOpt = None,
    pkcs11_token: Pkcs11TokenOpt = None,
    pin_file: PinFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a tenant with its own issuing CA, signed by the root."""
    STATE.use_token(pkcs11_token, pkcs11_module, pin_file)
    view = STATE.service().hierarchy.create_tenant(name, display_name=display_name,
                                                   ca_key_type=key_type, p12_profile=p12_profile,
                                                   pkcs11_token=pkcs11_token)
    emit(present.ca(view), as_json=as_json,
         text=f"tenant {name}: issuing CA {view.subject} (serial {view.serial})")


@tenant_app.command("list")
def tenant_list(as_json: JsonOpt = False) -> None:
    """List tenants."""
    names = STATE.service().hierarchy.list_tenants()
    emit(names, as_json=as_json, text="\n".join(names))


@tenant_app.command("show")
def tenant_show(tenant: TenantOpt = DEFAULT_TENANT, as_json: JsonOpt = False) -> None:
    """Show a tenant's settings: OCSP validity, UPN suffix, users' own downloads, the
    default PKCS#12 profile, the default validity (`tenant set` changes them)."""
    data = present.tenant_settings(STATE.service().hierarchy.tenant_settings(tenant))
    emit(data, as_json=as_json, text="\n".join((
        f"tenant {data['tenant']}: OCSP answers valid {data['ocsp_validity_seconds']} s",
        "  UPN suffix: " + (data["upn_suffix"] or "none (certificates carry no UPN)"),
        "  users' own downloads: " + ("on" if data["user_download"] else "off"),
        f"  default PKCS#12 profile: {data['p12_profile']}",
        f"  default validity: {data['default_validity']}")))


@ca_app.command("show")
def ca_show(
    tenant: Annotated[str | None, typer.Option(
        "--tenant", "-t", help=f"The tenant whose chain to show (default {DEFAULT_TENANT}).")]
    = None,
    root: Annotated[bool, typer.Option("--root", help="The root CA certificate alone.")]
    = False,
    every: Annotated[bool, typer.Option("--all", help="Every CA of every generation, the "
                                        "retired ones too, with its live certificates.")]
    = False,
    links: Annotated[bool, typer.Option("--links", help="The link certificates of the root "
                                        "rollovers.")] = False,
    pem: Annotated[bool, typer.Option("--pem", help="Print PEM certificates.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a tenant's CA chain: its issuing CAs in service (the current one first, then
    older generations), then the root (the order of a TLS chain and of `gateway
    ca-bundle`); --root for the root alone; --all for every CA of every generation."""
    if root and tenant is not None:
        raise InvalidInput("give --root or --tenant, not both", field="tenant")
    if links:
        if root or tenant is not None or every:
            raise InvalidInput("--links shows the link certificates: give no --root, "
                               "--tenant or --all", field="links")
        views = STATE.service().hierarchy.links()
        if pem and not as_json:
            typer.echo("".join(v.pem for v in views), nl=False)
            return
        emit([present.ca(v) for v in views], as_json=as_json,
             text="\n".join(f"link     {v.subject}  serial {v.serial}  until "
                            f"{v.not_after:%Y-%m-%d}" for v in views))
        return
    if every:
        if root or tenant is not None or pem:
            raise InvalidInput("--all shows every CA: give no --root, --tenant or --pem",
                               field="all")
        generations = STATE.service().hierarchy.generations()
        emit([present.generation(v) for v in generations], as_json=as_json,
             text="\n".join(_generation_line(v) for v in generations))
        return
    views = present.ca_chain(STATE.service().hierarchy.ca_certificates(
        None if root else tenant or DEFAULT_TENANT))
    if pem and not as_json:
        typer.echo("".join(v.pem for v in views), nl=False)
        return
    emit([present.ca(v) for v in views], as_json=as_json,
         text="\n".join(f"{v.kind:8} {v.subject}  serial {v.serial}  until "
                        f"{v.not_after:%Y-%m-%d}" for v in views))


def _generation_line(view: GenerationView) -> str:
    where = "root" if view.tenant is None else view.tenant
    state = ("retired" if view.retired_at is not None
             else "current" if view.current else "in service")
    return (f"{where:16} {view.kind:8} g{view.generation}  {state:10}  {view.subject}  "
            f"serial {view.serial}  {view.not_before:%Y-%m-%d} to {view.not_after:%Y-%m-%d}"
            f"  {view.live} live")


@ca_app.command("rollover")
def ca_rollover(
    tenant: Annotated[str | None, typer.Option(
        "--tenant", "-t", help=f"The tenant whose issuing CA to roll over (default "
        f"{DEFAULT_TENANT}).")] = None,
    root: Annotated[bool, typer.Option("--root", help="Roll the root over instead, with "
                                       "link certificates both ways.")] = False,
    key_type: Annotated[str | None, typer.Option(help=f"{_one_of(CA_KEY_TYPES)} (default: "
                                                 "the current CA's).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Make the tenant's next issuing CA: a new key under the same name, signed by the
    root. New certificates come from it; the older CA keeps its CRL and OCSP answers for
    the certificates it issued, and the gateway bundle carries both (run `gateway
    ca-bundle` and `gateway crl-sync` again). --root: the next root (its name with " G<n>")
    and its link certificates (`ca show --links`)."""
    if root and tenant is not None:
        raise InvalidInput("give --root or --tenant, not both", field="tenant")
    hierarchy = STATE.service().hierarchy
    if root:
        made = hierarchy.rollover_root(key_type=key_type)
        what = "new root"
    else:
        made = hierarchy.rollover(tenant or DEFAULT_TENANT, key_type=key_type)
        what = f"tenant {tenant or DEFAULT_TENANT}: new issuing CA"
    emit(present.ca(made), as_json=as_json,
         text=f"{what} {made.subject}  serial {made.serial}  until {made.not_after:%Y-%m-%d}")


# --- users and certificates ------------------------------------------------------------------


@cert_app.command("issue")
def cert_issue(
    logins: Annotated[list[str] | None, typer.Argument(help="Users' logins.")] = None,
    group: GroupOpt = None,
    unaffiliated: UnaffiliatedOpt = False,
    everyone: Annotated[bool, typer.Option("--all", help="Every active user.")] = False,
    status: StatusOpt = None,
    best_effort: Annotated[bool, typer.Option("--best-effort", help="Issue to those who can "
                                              "have one and list the others.")] = False,
    expires: Annotated[str | None, typer.Option(help="Last day of validity, YYYY-MM-DD.")]
    = None,
    tz: Annotated[str | None, typer.Option("--tz", help="IANA zone of the expiry date.")]
    = None,
    reissue: Annotated[str, typer.Option(help="keep (one per device) or revoke the users' "
                                         "current certificates.")] = "keep",
    key_type: Annotated[str | None, typer.Option(help=f"{_one_of(CLIENT_KEY_TYPES)} "
                                                 "(default: the tenant's).")] = None,
    csr: Annotated[Path | None, typer.Option(help="Issue to this PKCS#10 request (PEM or "
                                             "DER) instead of a key made here.")] = None,
    p12_profile: Annotated[str | None, typer.Option(help=f"{_one_of(PROFILES)}: the "
                                                    "bundle's encryption.")] = None,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Issue client certificates: to named users, a group, the unaffiliated or all.
    All or none, unless --best-effort."""
    date: dt.date | None = expiry.parse_date(expires) if expires else None
    named = bool(logins) and not (group or unaffiliated or everyone or status)
    request = IssueRequest(
        tenant=tenant, logins=tuple(logins) if named and logins else None,
        selection=None if named else selection(logins, group, unaffiliated, everyone, status,
                                                default_everyone=False),
        best_effort=best_effort, expires=date, timezone=tz,
        reissue=reissue,  # type: ignore[arg-type]  # checked by IssueRequest
        key_type=key_type, csr=read_limited(csr) if csr else None, p12_profile=p12_profile)
    with progress_bar("issuing", quiet=as_json) as advance:
        result = STATE.service().certificates.issue_bulk(request, progress=advance)
    lines = [f"{v.login}: serial {v.serial}\n  notAfter {v.not_after.isoformat()} "
             f"(through {v.expiry_date} in {v.expiry_zone})" for v in result.issued]
    lines += [f"{login}: not issued: {reason}" for login, reason in result.failures]
    if not result.issued and not result.failures:
        lines.append("no user matched the selection")
    emit(present.bulk_result(result) if best_effort else
         [present.certificate(v) for v in result.issued], as_json=as_json, text="\n".join(lines))
    if result.failures:
        raise typer.Exit(1)


@cert_app.command("download")
def cert_download(
    out: Annotated[Path, typer.Option("--out", "-o", help="The zip file to write.")],
    logins: Annotated[list[str] | None, typer.Argument(help="Users' logins.")] = None,
    group: GroupOpt = None,
    unaffiliated: UnaffiliatedOpt = False,
    everyone: Annotated[bool, typer.Option("--all", help="Every active user.")] = False,
    status: StatusOpt = None,
    p12_profile: Annotated[str | None, typer.Option(help=f"{_one_of(PROFILES)}.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """One zip of <login>.zip per user (their newest valid certificate and its password)
    and manifest.csv. Audited."""
    chosen = selection(logins, group, unaffiliated, everyone, status, default_everyone=False)
    size = 0
    with output_file(out, force=force) as handle:
        made = STATE.service().downloads.bulk(tenant, chosen, profile=p12_profile)
        for chunk in made.chunks:
            handle.write(chunk)
            size += len(chunk)
    emit({"file": str(out), "users": made.count, "bytes": size}, as_json=as_json,
         text=f"wrote {shown(out)}: {made.count} users, {size} bytes")


@contextlib.contextmanager
def progress_bar(label: str, *, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr for long runs (none for scripts asking --json)."""
    if quiet or not sys.stderr.isatty():
        yield lambda _done, _total: None
        return
    from rich.progress import Progress

    with Progress(transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


@cert_app.command("list")
def cert_list(
    state: Annotated[str | None, typer.Option(help="valid, expired, suspended or revoked.")]
    = None,
    user: Annotated[str | None, typer.Option(help="Only this user's certificates.")] = None,
    group: Annotated[str | None, typer.Option(help="Only certificates of this group's "
                                              "users.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 1000,
    offset: Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Skip this many "
                                        "first.")] = 0,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """List a tenant's certificates, newest first (--limit and --offset page through them,
    as the API's do)."""
    views = STATE.service().certificates.list_certificates(tenant, state=state, login=user,
                                                           group=group,
                                                           limit=limit, offset=offset)
    emit([present.certificate(v) for v in views], as_json=as_json,
         text="\n".join(f"{v.serial:40} {v.login:20} {v.state.value:9} "
                        f"{v.not_after:%Y-%m-%d %H:%M:%S}Z {v.source}" for v in views))


@cert_app.command("export")
def cert_export(
    serial: Annotated[str, typer.Argument(help="Serial number in hex.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The zip file to write.")],
    p12_profile: Annotated[str | None, typer.Option(help=f"{_one_of(PROFILES)}.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Write the user's zip (PKCS#12 and its password) for a certificate. Audited."""
    with output_file(out, force=force) as handle:
        made = STATE.service().certificates.bundle(serial, tenant=tenant, profile=p12_profile)
        handle.write(made.content)
    emit({"serial": made.serial, "file": str(out), "bytes": len(made.content)},
         as_json=as_json, text=f"wrote {shown(out)} ({made.filename} for serial {made.serial})")


def read_limited(path: Path, limit: int = 64 * 1024) -> bytes:
    return read_file(path, limit=limit, field="csr")


@cert_app.command("show")
def cert_show(
    serial: Annotated[str, typer.Argument(help="Serial number in hex.")],
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM certificate.")] = False,
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show one certificate."""
    view = STATE.service().certificates.get(serial, tenant=tenant)
    if pem and not as_json:
        typer.echo(view.pem, nl=False)
        return
    data = present.certificate(view)
    emit(data, as_json=as_json, text="\n".join(f"{k:19} {v}" for k, v in data.items()
                                               if k != "pem"))


# --- tokens ----------------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help=f"{_one_of(ROLES)}.")],
    tenant: Annotated[str | None, typer.Option("--tenant", "-t",
                                               help="Tenant (not for operator).")] = None,
    user: Annotated[str | None, typer.Option(help="User login (user tokens).")] = None,
    name: Annotated[str | None, typer.Option(help="A label for the token.")] = None,
    expires_days: Annotated[int | None, typer.Option(help="Lifetime in days.")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Admin's preferred zone for expiry "
                                           "dates.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API token; it is printed once and only its hash is kept."""
    if role != "operator" and tenant is None:
        tenant = DEFAULT_TENANT
    lifetime = dt.timedelta(days=expires_days) if expires_days is not None else None
    text, view = STATE.service().tokens.create(role=role, tenant=tenant, login=user, name=name,
                                              valid_for=lifetime, timezone=tz)
    emit({"token": text, **present.token(view)}, as_json=as_json, text=text)


@token_app.command("list")
def token_list(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List tokens (never their text): role, scope, expiry, revocation, last use."""
    views = STATE.service().tokens.list_tokens(tenant=tenant)
    emit([present.token(v) for v in views], as_json=as_json,
         text="\n".join(f"{v.id:5} {v.prefix}… {v.role:9} {v.tenant or '*':12} "
                        f"{'revoked' if v.revoked_at else 'active':8} {v.name}"
                        for v in views))


@token_app.command("revoke")
def token_revoke(
    token_text: Annotated[str, typer.Argument(metavar="TOKEN_ID", help="The token's id.")],
    tenant: Annotated[str | None, typer.Option(
        "--tenant", "-t", help="Only if it is this tenant's token (as a tenant admin may "
                               "over the API).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop a token working at once (a revoked token stays revoked)."""
    # malformed: bad input (2); well-formed but no token's: not found, as the API answers
    if not tokens.is_id(token_text):
        raise InvalidInput(tokens.not_an_id(token_text), field="token")
    token_id = int(token_text)
    service = STATE.service()
    service.tokens.revoke(token_id, tenant=tenant)
    emit(present.token(service.tokens.get(token_id, tenant=tenant)), as_json=as_json,
         text=f"token {token_id} revoked")


