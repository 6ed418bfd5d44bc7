"""Options that several command groups share, declared once (the group modules never import
each other)."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name.")]
SerialArg = Annotated[str, typer.Argument(help="Serial number in hex.")]
