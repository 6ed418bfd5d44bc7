"""`tegata lifecycle run`: the time-driven transitions, now."""

from __future__ import annotations

import typer

from cli.context import STATE, emit
from cli.options import JsonOpt

lifecycle_app = typer.Typer(no_args_is_help=True, help="Time-driven transitions.")


@lifecycle_app.command("run")
def lifecycle_run(as_json: JsonOpt = False) -> None:
    """Apply due transitions now: subscription end and grace end, key purge on expiry, CRL
    renewal. Idempotent; the server also runs it every minute."""
    report = STATE.service().lifecycle.run()
    emit(report.__dict__, as_json=as_json,
         text=", ".join(f"{k} {v}" for k, v in report.__dict__.items()))
