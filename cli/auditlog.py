"""`tegata audit list | export | verify`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.context import STATE, emit
from cli.output import output_file

audit_app = typer.Typer(no_args_is_help=True, help="The tamper-evident audit log.")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str | None, typer.Option("--tenant", "-t", help="One tenant's events.")]


@audit_app.command("list")
def audit_list(
    tenant: TenantOpt = None,
    action: Annotated[str | None, typer.Option(help="e.g. cert.revoke, cert.download")] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 100,
    tz: Annotated[str, typer.Option("--tz", help="Zone to show times in.")] = "UTC",
    as_json: JsonOpt = False,
) -> None:
    """Events, oldest first."""
    from ca import expiry

    zone = expiry.zone(tz)
    events = STATE.service().audit.events(tenant=tenant, action=action, limit=limit)
    emit([{**e.__dict__, "at": e.at.isoformat()} for e in events], as_json=as_json,
         text="\n".join(f"{e.id:6} {e.at.astimezone(zone):%Y-%m-%d %H:%M:%S%z} {e.actor:24} "
                        f"{e.source_ip or '-':15} {e.action:16} {e.outcome:8} {e.target}"
                        for e in events))


@audit_app.command("export")
def audit_export(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="CSV file (default: "
                                             "standard output).")] = None,
    tenant: TenantOpt = None,
    tz: Annotated[str, typer.Option("--tz", help="Second time column's zone.")] = "UTC",
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. "
                                               "cert.download.")] = None,
) -> None:
    """Every event (or every event of one action) as CSV."""
    if out is not None:
        with output_file(out) as handle:
            for chunk in STATE.service().audit.export_csv(tenant=tenant, zone=tz, action=action):
                handle.write(chunk.encode())
        return
    text = "".join(STATE.service().audit.export_csv(tenant=tenant, zone=tz, action=action))
    sys.stdout.write(text)


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False) -> None:
    """Check every hash chain (the operator's, each tenant's); print each chain's head; exit
    1 at the first changed, removed or reordered event."""
    check = STATE.service().audit.verify()
    broken = check.broken
    chains = [{"tenant": c.tenant, "events": c.events, "intact": c.broken is None,
               "broken_at": c.broken.event_id if c.broken else None,
               "problem": c.broken.problem if c.broken else None, "head": c.head,
               "removed_by_retention": c.removed, "first_kept_id": c.first_id}
              for c in check.chains]
    lines = [f"{check.events} events in {len(check.chains)} chains, "
             + ("every chain intact" if broken is None else
                f"chain broken at event {broken.event_id}: {broken.problem}")]
    for c in check.chains:
        name = "operator" if c.tenant is None else f"tenant {c.tenant}"
        kept = (f"; {c.removed} older events removed by retention, the chain starts at event "
                f"{c.first_id}") if c.removed else ""
        state = (f"head {c.head}{kept}" if c.broken is None
                 else f"broken at event {c.broken.event_id}: {c.broken.problem}")
        lines.append(f"  {name}: {c.events} events, {state}")
    emit({"events": check.events, "intact": broken is None,
          "broken_at": broken.event_id if broken else None,
          "problem": broken.problem if broken else None,
          "removed_by_retention": check.removed, "chains": chains},
         as_json=as_json, text="\n".join(lines))
    if broken is not None:
        raise typer.Exit(1)
