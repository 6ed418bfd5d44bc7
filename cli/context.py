"""Settings and the service, built once per command and only when the command needs them."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

import typer

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
