"""`tegata user ...` and `tegata group ...`: users, groups, permission, CSV."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ca import present
from ca.errors import InvalidInput
from ca.service import DEFAULT_TENANT, Selection, UserSpec
from ca.service.users import MAX_PAGE
from cli.context import STATE, emit
from cli.output import output_file, shown

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name.")]
GroupOpt = Annotated[str | None, typer.Option("--group", "-g", help="Users of this group.")]
UnaffiliatedOpt = Annotated[bool, typer.Option("--unaffiliated",
                                               help="Users in no group.")]
StatusOpt = Annotated[str | None, typer.Option(
    "--status", help="Only users whose certificate status is unissued, valid, expired, "
                     "suspended or revoked.")]

user_app = typer.Typer(no_args_is_help=True, help="Users of a tenant.")
group_app = typer.Typer(no_args_is_help=True, help="Groups of a tenant.")
MAX_CSV_BYTES = 50 * 1024 * 1024


def selection(logins: list[str] | None, group: str | None, unaffiliated: bool,
              everyone: bool, status: str | None, *, default_everyone: bool) -> Selection:
    return Selection.of(logins=logins, group=group, unaffiliated=unaffiliated,
                        everyone=everyone, status=status, default_everyone=default_everyone)


def groups_of(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(g.strip() for g in text.split(";") if g.strip())


@user_app.command("add")
def user_add(
    login: Annotated[str, typer.Argument(help="Login, unique in the tenant.")],
    email: Annotated[str, typer.Option(help="E-mail address (goes into the certificate).")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    groups: Annotated[str | None, typer.Option(help="Groups, separated by ';'.")] = None,
    allow: Annotated[bool, typer.Option("--allow", help="Grant secure-access permission.")]
    = False,
    service_account: Annotated[bool, typer.Option("--service", help="A service account.")]
    = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Add a user to a tenant."""
    view = STATE.service().users.add(tenant, login, email=email, display_name=name,
                                    allow=allow, groups=groups_of(groups) or (),
                                    kind="service" if service_account else "person")
    emit(present.user(view), as_json=as_json,
         text=f"user {login} added to {tenant}" + (" (secure access allowed)" if allow else ""))


@user_app.command("update")
def user_update(
    login: Annotated[str, typer.Argument(help="The user's login.")],
    email: Annotated[str | None, typer.Option(help="New e-mail address.")] = None,
    name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    groups: Annotated[str | None, typer.Option(help="The user's groups, separated by ';' "
                                               "('' for none).")] = None,
    kind: Annotated[str | None, typer.Option(help="person or service (an account for a "
                                             "machine).")] = None,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Change a user's e-mail, name, groups or kind (secure access: `user allow`, `user
    deny`)."""
    view = STATE.service().users.update(tenant, UserSpec(
        login=login, email=email, display_name=name, groups=groups_of(groups), kind=kind))
    emit(present.user(view), as_json=as_json, text=f"user {view.login} updated")


@user_app.command("retire")
def user_retire(
    login: Annotated[str, typer.Argument(help="The user's login.")],
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """The user leaves: retire them and revoke their certificates (affiliationChanged)."""
    view = STATE.service().users.retire(tenant, login)
    emit(present.user(view), as_json=as_json, text=f"user {view.login} retired")


def _permission(logins: list[str], tenant: str, as_json: bool, *, allow: bool) -> None:
    views = STATE.service().users.set_permission(tenant, tuple(logins), allow=allow)
    word = "allowed" if allow else "denied"
    emit([present.user(v) for v in views], as_json=as_json,
         text="\n".join(f"{v.login}: secure access {word}" for v in views))


@user_app.command("allow")
def user_allow(logins: Annotated[list[str], typer.Argument(help="Logins.")],
               tenant: TenantOpt = DEFAULT_TENANT, as_json: JsonOpt = False) -> None:
    """Grant secure access; certificates held for a withdrawn permission become valid."""
    _permission(logins, tenant, as_json, allow=True)


@user_app.command("deny")
def user_deny(logins: Annotated[list[str], typer.Argument(help="Logins.")],
              tenant: TenantOpt = DEFAULT_TENANT, as_json: JsonOpt = False) -> None:
    """Withdraw secure access; the users' certificates are suspended."""
    _permission(logins, tenant, as_json, allow=False)


@user_app.command("list")
def user_list(
    group: GroupOpt = None,
    unaffiliated: UnaffiliatedOpt = False,
    status: StatusOpt = None,
    search: Annotated[str | None, typer.Option(
        "--search", "-q", help="Only users whose login, name or e-mail holds this "
                               "(ignoring case).")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", help="At most this many users (1-1000), by login.")] = None,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many users first.")] = 0,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """List users: all, a group's, or the unaffiliated; optionally by certificate status.
    With --search, --limit or --offset: one page of them (as ``GET .../users`` answers
    it), the number matching in all on stderr."""
    chosen = selection(None, group, unaffiliated, False, status, default_everyone=True)
    users = STATE.service().users
    if search is None and limit is None and offset == 0:
        views = users.list_users(tenant, chosen)
    else:
        views, total = users.page(tenant, chosen, search=search, offset=offset,
                                  limit=MAX_PAGE if limit is None else limit)
        sys.stderr.write(f"{len(views)} of {total} users from {offset}\n")
    emit([present.user(v) for v in views], as_json=as_json,
         text="\n".join(f"{v.login:24} {v.certificate_status:10} "
                        f"{'allowed' if v.secure_access else 'denied':8} {v.email}  "
                        f"{';'.join(v.groups)}" for v in views))


@user_app.command("show")
def user_show(
    login: Annotated[str, typer.Argument(help="The user's login.")],
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Show one user: e-mail, name, kind, status, secure access, groups, certificate
    status."""
    view = STATE.service().users.get(tenant, login)
    data = present.user(view)
    emit(data, as_json=as_json, text="\n".join(
        f"{key:18} {shown(';'.join(value) if isinstance(value, list) else value)}"
        for key, value in data.items()))


@user_app.command("import")
def user_import(
    file: Annotated[Path, typer.Argument(help="CSV with a header: login, email, name, groups, "
                                         "secure_access, kind. '-' reads standard input.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report, change nothing.")]
    = False,
    best_effort: Annotated[bool, typer.Option("--best-effort", help="Write the good rows "
                                              "even if some are bad.")] = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Create or update users from CSV; nothing is written if a row is bad."""
    if str(file) == "-":
        data = sys.stdin.buffer.read(MAX_CSV_BYTES + 1)
    else:
        try:
            with file.open("rb") as handle:
                data = handle.read(MAX_CSV_BYTES + 1)
        except OSError as exc:
            raise InvalidInput(f"cannot read {shown(file)}: {exc.strerror}",
                               field="file") from None
    report = STATE.service().users.import_users(tenant, data, dry_run=dry_run,
                                          best_effort=best_effort)
    data_out = present.import_report(report)
    lines = [f"line {n}: {lg or '?'}: {r}" for n, lg, r in report.errors]
    verb = "would create" if dry_run else "created"
    lines.append(f"{verb} {len(report.created)}, updated {len(report.updated)}, "
                 f"unchanged {len(report.unchanged)}, bad rows {len(report.errors)}"
                 + ("" if dry_run or not report.errors or best_effort
                    else ": nothing was written"))
    emit(data_out, as_json=as_json, text="\n".join(lines))
    if report.errors:  # as `cert issue --best-effort`: exit 1 when anything was left out
        raise typer.Exit(1)


@user_app.command("export")
def user_export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of "
                                             "standard output.")] = None,
    group: GroupOpt = None,
    unaffiliated: UnaffiliatedOpt = False,
    status: StatusOpt = None,
    tenant: TenantOpt = DEFAULT_TENANT,
) -> None:
    """Users as CSV, in the import's columns; safe to open in a spreadsheet."""
    chosen = selection(None, group, unaffiliated, False, status, default_everyone=True)
    if out is not None:
        with output_file(out) as handle:
            for chunk in STATE.service().users.export_users(tenant, chosen):
                handle.write(chunk.encode("utf-8"))
        return
    sys.stdout.write("".join(STATE.service().users.export_users(tenant, chosen)))


@group_app.command("list")
def group_list(tenant: TenantOpt = DEFAULT_TENANT, as_json: JsonOpt = False) -> None:
    """Groups and their member counts."""
    groups = STATE.service().users.list_groups(tenant)
    emit([present.group(n, m) for n, m in groups], as_json=as_json,
         text="\n".join(f"{m:6} {n}" for n, m in groups))
