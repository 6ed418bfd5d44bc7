"""`tegata crl show|export`: the certificate revocation lists."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ca.service import DEFAULT_TENANT
from cli.context import STATE, emit
from cli.options import JsonOpt, TenantOpt
from cli.output import output_file, shown

crl_app = typer.Typer(no_args_is_help=True, help="Certificate revocation lists.")


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
