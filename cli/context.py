"""Settings and the service, built once per command and only when the command needs them."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from ca.errors import ConfigError, InvalidInput
from ca.service import Service, build_service
from ca.settings import Settings, load_settings


@dataclass
class State:
    debug: bool = False
    _settings: Settings | None = None
    _service: Service | None = field(default=None, repr=False)

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def use_token(self, token: str | None, module: Path | None, pin_file: Path | None) -> None:
        """The command makes a CA key in the PKCS#11 token ``token``: ``module`` and
        ``pin_file``, when given, stand for TEGATA_PKCS11_MODULE and _PIN_FILE."""
        if token is None:
            if module is not None or pin_file is not None:
                raise InvalidInput("--pkcs11-module and --pin-file go with --pkcs11-token",
                                   field="pkcs11_token")
            return
        update = {name: value for name, value in
                  (("pkcs11_module", module), ("pkcs11_pin_file", pin_file)) if value is not None}
        self._settings = self.settings().model_copy(update=update)
        self._service = None
        missing = [option for name, option in (("pkcs11_module", "--pkcs11-module"),
                                               ("pkcs11_pin_file", "--pin-file"))
                   if getattr(self._settings, name) is None]
        if missing:  # the deployment's settings, not the command's input: EX_CONFIG
            raise ConfigError(f"a CA key in PKCS#11 token {token!r} was asked for, and no "
                              f"PKCS#11 module and PIN file are configured (give "
                              f"{' and '.join(missing)}, or set TEGATA_PKCS11_MODULE and "
                              "TEGATA_PKCS11_PIN_FILE)", field="pkcs11_token")

    def reset(self) -> None:
        """Forget the settings and the service (the configuration file changed): the next
        use builds them again."""
        if self._service is not None:
            self._service.engine.dispose()
        self._settings = None
        self._service = None

    def service(self, *, check_schema: bool = True) -> Service:
        if self._service is None:
            self._service = build_service(self.settings())
        if check_schema:
            self._service.startup.check_initialized()
        return self._service


STATE = State()


def emit(data: Any, *, as_json: bool, text: str | None = None) -> None:
    """Print ``data`` as JSON for scripts, or ``text`` for people."""
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))
    elif text is not None:
        typer.echo(text)


def fail(message: str, code: int = 1) -> None:
    sys.stderr.write(f"tegata: error: {message}\n")
    raise typer.Exit(code)
