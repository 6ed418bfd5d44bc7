"""Options that several command groups share, declared once (the group modules never import
each other)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
TenantOpt = Annotated[str, typer.Option("--tenant", "-t", help="Tenant name.")]
SerialArg = Annotated[str, typer.Argument(help="Serial number in hex.")]
# a CA key made inside a PKCS#11 token (the PIN is read from a file, never the command line)
Pkcs11ModuleOpt = Annotated[Path | None, typer.Option(
    "--pkcs11-module", help="PKCS#11 module (shared library); default TEGATA_PKCS11_MODULE.")]
Pkcs11TokenOpt = Annotated[str | None, typer.Option(
    "--pkcs11-token", help="Label of the PKCS#11 token to make the CA key in (no key file).")]
PinFileOpt = Annotated[Path | None, typer.Option(
    "--pin-file", help="File (mode 0600) holding the token's user PIN; default "
                       "TEGATA_PKCS11_PIN_FILE.")]
