"""`tegata cert revoke|suspend|reinstate` and `tegata crl ...`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ca.errors import InvalidInput
from ca.reasons import REASONS
from ca.service import DEFAULT_TENANT, SubscriptionView
from cli.context import STATE, emit
from cli.output import output_file, shown

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name.")]
SerialArg = Annotated[str, typer.Argument(help="Serial number in hex.")]

crl_app = typer.Typer(no_args_is_help=True, help="Certificate revocation lists.")


def _said(view_state: str, serial: str, as_json: bool, extra: dict[str, object]) -> None:
    emit({"serial": serial, "state": view_state, **extra}, as_json=as_json,
         text=f"{serial}: {view_state}")


def register(cert_app: typer.Typer) -> None:
    @cert_app.command("revoke")
    def revoke(serial: SerialArg,
               reason: Annotated[str, typer.Option(help=f"{', '.join(REASONS)} "
                                                   "(keyCompromise: a lost device).")]
               = "unspecified",
               tenant: TenantOpt = DEFAULT_TENANT, as_json: JsonOpt = False) -> None:
        """Revoke a certificate for good."""
        view = STATE.service().revocation.revoke(tenant, serial, reason=reason)
        _said(view.state.value, view.serial, as_json, {"reason": view.revocation_reason})

    @cert_app.command("suspend")
    def suspend(serial: SerialArg, tenant: TenantOpt = DEFAULT_TENANT,
                as_json: JsonOpt = False) -> None:
        """Put a certificate on hold (certificateHold)."""
        view = STATE.service().revocation.suspend(tenant, serial)
        _said(view.state.value, view.serial, as_json, {})

    @cert_app.command("reinstate")
    def reinstate(serial: SerialArg, tenant: TenantOpt = DEFAULT_TENANT,
                  as_json: JsonOpt = False) -> None:
        """Lift a manual hold."""
        view = STATE.service().revocation.reinstate(tenant, serial)
        _said(view.state.value, view.serial, as_json, {})


@crl_app.command("show")
def crl_show(
    tenant: Annotated[str | None, typer.Option("--tenant", "-t", help="A tenant's issuing CA "
                                               "(default: the root's CRL).")] = None,
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM CRL.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The current CRL: number, thisUpdate, nextUpdate."""
    view = STATE.service().crls.current(tenant)
    if pem and not as_json:
        typer.echo(view.pem, nl=False)
        return
    emit({"tenant": tenant, "number": view.number, "this_update": view.this_update.isoformat(),
          "next_update": view.next_update.isoformat()}, as_json=as_json,
         text=f"CRL {view.number}: {view.this_update.isoformat()} .. "
              f"{view.next_update.isoformat()}")


@crl_app.command("export")
def crl_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    tenant: TenantOpt = DEFAULT_TENANT,
    chain: Annotated[bool, typer.Option("--chain", help="PEM: the tenant's CRL and the "
                                        "root's, as nginx and HAProxy need.")] = False,
    der: Annotated[bool, typer.Option("--der", help="DER instead of PEM.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
) -> None:
    """Write a fresh CRL (or the chain bundle) to a file."""
    service = STATE.service()
    with output_file(out, force=force, mode=0o644) as handle:  # a CRL is public
        if chain:
            own = (both := service.crls.chain(tenant, fresh=True)).own
            handle.write(both.pem.encode())
        else:
            own = service.crls.publish(tenant)
            handle.write(own.der if der else own.pem.encode())
    typer.echo(f"wrote {shown(out)} (CRL {own.number})")


lifecycle_app = typer.Typer(no_args_is_help=True, help="Time-driven transitions.")
subscription_app = typer.Typer(no_args_is_help=True, help="A tenant's trial or contract.")


@lifecycle_app.command("run")
def lifecycle_run(as_json: JsonOpt = False) -> None:
    """Apply due transitions now: subscription end and grace end, key purge on expiry, CRL
    renewal. Idempotent; the server also runs it every minute."""
    report = STATE.service().lifecycle.run()
    emit(report.__dict__, as_json=as_json,
         text=", ".join(f"{k} {v}" for k, v in report.__dict__.items()))


def _subscription_dict(view: SubscriptionView) -> dict[str, object]:
    return {"tenant": view.tenant, "kind": view.kind,
            "ends_on": view.ends_on.isoformat() if view.ends_on else None,
            "timezone": view.zone, "ends_at": view.ends_at.isoformat() if view.ends_at else None,
            "grace_days": view.grace_days,
            "grace_ends_at": view.grace_ends_at.isoformat() if view.grace_ends_at else None,
            "suspended_at": view.suspended_at.isoformat() if view.suspended_at else None,
            "state": view.state}


@subscription_app.command("set")
def subscription_set(
    ends: Annotated[str | None, typer.Option(help="Last day of service, YYYY-MM-DD; "
                                             "'none' for open-ended.")] = None,
    grace_days: Annotated[int | None, typer.Option(help="Days suspended before revocation "
                                                   "(default 30).")] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Zone of the end date (default: "
                                           "the tenant's).")] = None,
    trial: Annotated[bool, typer.Option("--trial", help="A trial, not a contract.")] = False,
    allow_past: Annotated[bool, typer.Option(
        "--allow-past", help="Accept an end date already past: every certificate is "
        "suspended now and revoked a full grace period later unless the end is corrected; "
        "with 0 grace days, every certificate is revoked and its key purged now. Without it "
        "such a date is refused (exit 2), saying which of the two it would be.")] = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Set when the tenant's subscription ends; renewing within the grace period brings
    suspended certificates back."""
    from ca import expiry

    date = None
    if ends not in (None, "none"):
        try:
            date = expiry.parse_date(ends or "")
        except InvalidInput:
            raise InvalidInput(f"subscription end {(ends or '')[:32]!r} is not a date of the "
                               "form YYYY-MM-DD", field="ends") from None
    view = STATE.service().lifecycle.set_subscription(tenant, ends=date, zone=tz,
                                                      grace_days=grace_days,
                                            kind="trial" if trial else "contract",
                                            allow_past=allow_past)
    data = _subscription_dict(view)
    emit(data, as_json=as_json, text="\n".join(f"{k:14} {v}" for k, v in data.items()))


@subscription_app.command("show")
def subscription_show(tenant: TenantOpt = DEFAULT_TENANT, as_json: JsonOpt = False) -> None:
    """Show the tenant's subscription and its state (active, grace, ended)."""
    data = _subscription_dict(STATE.service().lifecycle.get_subscription(tenant))
    emit(data, as_json=as_json, text="\n".join(f"{k:14} {v}" for k, v in data.items()))
