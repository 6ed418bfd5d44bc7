"""User self-download from the CLI: `tegata link create`, and `tegata tenant set` for a
tenant's settings (--user-download on|off, --ocsp-validity, --upn-suffix). Parse, call
``ca.service``, print."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from ca import validate
from ca.errors import InvalidInput
from ca.service import DEFAULT_TENANT
from cli.context import STATE, emit

# the same options as cli.commands, declared here so that the two modules never import
# each other
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name.")]

link_app = typer.Typer(no_args_is_help=True,
                       help="One-time links for users to download their own certificate.")


class Switch(StrEnum):
    ON = "on"
    OFF = "off"




@link_app.command("create")
def link_create(
    login: Annotated[str, typer.Argument(help="The user's login.")],
    send: Annotated[bool, typer.Option("--send", help="E-mail the link to the user (needs "
                                       "TEGATA_SMTP_*) instead of printing it.")] = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Make a one-time download link for a user, and print or e-mail it.

    The link hands out the user's newest valid certificate with its password. It is shown
    once (only its hash is kept), and the user's earlier links stop working."""
    links = STATE.service()
    made = links.links.send(tenant, login) if send else links.links.create(tenant, login)
    until = f"{made.expires_at:%Y-%m-%d %H:%M} UTC"
    # a mailed link is for the user's eyes only: it is not printed
    emit({"tenant": made.tenant, "login": made.login, "email": made.email,
          "url": None if send else made.url, "sent": send,
          "expires_at": made.expires_at.isoformat(), "replaced": made.replaced},
         as_json=as_json,
         text=f"sent to {made.email}; works once, until {until}" if send else
         f"{made.url}\n(for {made.login} <{made.email}>; works once, until {until})")


def tenant_set(
    user_download: Annotated[Switch | None, typer.Option(
        "--user-download", case_sensitive=False,
        help="on: users may download their own certificate (one-time links, user tokens); "
             "off: only admins can, and outstanding links are withdrawn.")] = None,
    ocsp_validity: Annotated[int | None, typer.Option(
        help="Seconds an OCSP answer is valid, 60 to 604800 (default 300). Answers are dated "
             "30 s back and nginx caches one until it expires, so a revocation reaches an "
             "nginx gateway within this minus 30 s.")] = None,
    upn_suffix: Annotated[str | None, typer.Option(
        help="DNS domain for the Windows UPN: certificates issued from now on carry the "
             "otherName UPN <login>@SUFFIX in their SAN (e.g. example.co.jp).")] = None,
    no_upn_suffix: Annotated[bool, typer.Option(
        "--no-upn-suffix", help="Remove the UPN suffix: new certificates carry no UPN.")
    ] = False,
    tenant: TenantOpt = DEFAULT_TENANT,
    as_json: JsonOpt = False,
) -> None:
    """Change a tenant's settings."""
    if upn_suffix is not None and no_upn_suffix:
        raise InvalidInput("give --upn-suffix or --no-upn-suffix, not both", field="upn_suffix")
    if upn_suffix == "":
        raise InvalidInput("--upn-suffix is empty; --no-upn-suffix removes the UPN suffix",
                           field="upn_suffix")
    if upn_suffix is not None:
        validate.upn_suffix(upn_suffix)  # refused before any setting changes
    if ocsp_validity is not None:
        STATE.service().ocsp.set_validity(tenant, ocsp_validity)
        emit({"tenant": tenant, "ocsp_validity_seconds": ocsp_validity}, as_json=as_json,
             text=f"tenant {tenant}: OCSP answers valid {ocsp_validity} s")
    if upn_suffix is not None or no_upn_suffix:
        upn = STATE.service().links.set_upn_suffix(tenant, None if no_upn_suffix else upn_suffix)
        emit({"tenant": upn.tenant, "upn_suffix": upn.suffix}, as_json=as_json,
             text=f"tenant {upn.tenant}: certificates issued from now on carry "
                  + (f"the UPN <login>@{upn.suffix}" if upn.suffix else "no UPN"))
    if user_download is None:
        return
    made = STATE.service().links.set_user_download(tenant, user_download is Switch.ON)
    withdrawn = f"; {made.links_withdrawn} outstanding link(s) withdrawn" if (
        made.links_withdrawn) else ""
    emit({"tenant": made.tenant, "user_download": made.allowed,
          "links_withdrawn": made.links_withdrawn}, as_json=as_json,
         text=f"tenant {made.tenant}: users may {'' if made.allowed else 'not '}download their "
              f"own certificate{withdrawn}")
