"""`tegata cert revoke|suspend|reinstate`: a certificate's revocation and holds."""

from __future__ import annotations

from typing import Annotated

import typer

from ca.reasons import REASONS
from ca.service import DEFAULT_TENANT
from cli.context import STATE, emit
from cli.options import JsonOpt, SerialArg, TenantOpt


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
