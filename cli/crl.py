"""`tegata crl show|export`: the certificate revocation lists."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ca import present
from ca.errors import InvalidInput, NotFound
from ca.service import DEFAULT_TENANT, Service
from cli.context import STATE, emit
from cli.options import JsonOpt, TenantOpt
from cli.output import output_file, shown

crl_app = typer.Typer(no_args_is_help=True, help="Certificate revocation lists.")

GenerationOpt = Annotated[int | None, typer.Option(
    "--generation", "-g", min=1, help="The CA of this generation (1: the first; a rollover "
                                      "makes the next); default the one that issues now.")]


@crl_app.command("show")
def crl_show(
    tenant: Annotated[str | None, typer.Option(
        "--tenant", "-t", help=f"The tenant whose issuing CA's CRL to show (default "
                               f"{DEFAULT_TENANT}).")] = None,
    root: Annotated[bool, typer.Option("--root", help="The root's CRL.")] = False,
    pem: Annotated[bool, typer.Option("--pem", help="Print the PEM CRL.")] = False,
    generation: GenerationOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The current CRL of a tenant's issuing CA, or of the root with --root: of the CA that
    issues now (generation shown), or of the CA of --generation N (N=1 is what `GET
    /crl/<tenant>.crl` and `GET /crl/root.crl` serve): number, thisUpdate, nextUpdate."""
    if root and tenant is not None:
        raise InvalidInput("give --root or --tenant, not both", field="tenant")
    whose = None if root else tenant or DEFAULT_TENANT
    service = STATE.service()
    number = generation or _current_generation(service, whose)
    view = service.crls.current(whose, number)
    if pem and not as_json:
        typer.echo(view.pem, nl=False)
        return
    data = present.crl(whose, view, number)
    emit(data, as_json=as_json,
         text=f"CRL {data['number']} of generation {number}: {data['this_update']} .. "
              f"{data['next_update']}")


def _current_generation(service: Service, tenant: str | None) -> int:
    """The generation of the tenant's issuing CA (``None``: the root) that issues now."""
    found = next((view.generation for view in service.hierarchy.generations()
                  if view.current and view.tenant == tenant
                  and view.kind == ("root" if tenant is None else "issuing")), None)
    if found is None:
        service.crls.current(tenant)  # raises what a tenant without a CA is (no such tenant)
        raise NotFound(f"no issuing CA in service for tenant {tenant!r}")
    return found


@crl_app.command("export")
def crl_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write.")],
    tenant: TenantOpt = DEFAULT_TENANT,
    chain: Annotated[bool, typer.Option("--chain", help="PEM: the tenant's CRL and the "
                                        "root's, as nginx and HAProxy need.")] = False,
    der: Annotated[bool, typer.Option("--der", help="DER instead of PEM.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUT.")] = False,
    generation: GenerationOpt = None,
) -> None:
    """Write a fresh CRL of the tenant's issuing CA that issues now (or of --generation N),
    or the chain bundle (every generation in service and the roots'), to a file."""
    if chain and generation is not None:
        raise InvalidInput("--chain holds every generation: give --chain or --generation, "
                           "not both", field="generation")
    service = STATE.service()
    number = generation or _current_generation(service, tenant)
    with output_file(out, force=force, mode=0o644) as handle:  # a CRL is public
        if chain:
            own = (both := service.crls.chain(tenant, fresh=True)).own
            handle.write(both.pem.encode())
        else:
            own = service.crls.publish(tenant, number)
            handle.write(own.der if der else own.pem.encode())
    what = "CRLs of every generation" if chain else f"generation {number}"
    typer.echo(f"wrote {shown(out)} (CRL {own.number}, {what})")
