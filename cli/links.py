"""`tegata link create`: one-time links for users to download their own certificate. Parse,
call ``ca.service``, print."""

from __future__ import annotations

from typing import Annotated

import typer

from ca.service import DEFAULT_TENANT
from cli.context import STATE, emit
from cli.options import JsonOpt, TenantOpt

link_app = typer.Typer(no_args_is_help=True,
                       help="One-time links for users to download their own certificate.")


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
