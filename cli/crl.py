"""`tegata crl show|export`: the certificate revocation lists."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ca import present
from ca.errors import InvalidInput
from ca.service import DEFAULT_TENANT
from cli.context import STATE, emit
from cli.options import JsonOpt, TenantOpt
from cli.output import output_file, shown

crl_app = typer.Typer(no_args_is_help=True, help="Certificate revocation lists.")


@crl_app.command("show")
def crl_show(
    tenant: Annotated[str | None, typer.Option(
        "--tenant", "-t", help=f"The tenant whose issuing CA's CRL to show (default "
                               f"{DEFAULT_TENANT}).")] = None,
    root: Annotated[bool, typer.Option("--root", help="The root's CRL.")] = False,
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM CRL.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The current CRL of a tenant's issuing CA (as `GET /crl/<tenant>.crl`), or of the root
    with --root (`GET /crl/root.crl`): number, thisUpdate, nextUpdate."""
    if root and tenant is not None:
        raise InvalidInput("give --root or --tenant, not both", field="tenant")
    whose = None if root else tenant or DEFAULT_TENANT
    view = STATE.service().crls.current(whose)
    if pem and not as_json:
        typer.echo(view.pem, nl=False)
        return
    data = present.crl(whose, view)
    emit(data, as_json=as_json,
         text=f"CRL {data['number']}: {data['this_update']} .. {data['next_update']}")


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
