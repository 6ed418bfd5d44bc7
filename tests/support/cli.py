"""The real ``tegata`` command driven in this process through ``cli.main.main``: the
``Cli`` runner and its ``Result``, the ``Env`` a test's Tegata lives in, and helpers over
them. The fixtures that make them are in tests/cli/conftest.py."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, create_engine, select

from cli.context import STATE
from cli.main import main
from tests.support.environment import BASE_URL, PASSPHRASE

ERROR_PREFIX = "tegata: error: "


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    def error(self) -> str:
        """The message of a failure, checked: exit non-zero, one line on stderr with the
        house prefix, no traceback."""
        assert self.code != 0, f"expected a failure, got exit 0 with {self.out!r}"
        assert "Traceback" not in self.err, self.err
        assert self.err.endswith("\n") and self.err.count("\n") == 1, (
            f"expected one line on stderr, got {self.err!r}")
        assert self.err.startswith(ERROR_PREFIX), self.err
        return self.err[len(ERROR_PREFIX):-1]


@dataclass(frozen=True)
class Env:
    """Where one test's Tegata lives."""

    data_dir: Path
    database_url: str | None  # None: the embedded SQLite file in the data directory

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def sqlite_file(self) -> Path | None:
        if self.database_url is None:
            return self.data_dir / "tegata.db"
        if self.database_url.startswith("sqlite"):
            return Path(self.database_url.split(":///", 1)[1])
        return None

    def key_files(self) -> list[str]:
        if not self.key_dir.exists():
            return []
        return sorted(p.name for p in self.key_dir.iterdir())

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every row of every table. SQLite is read with the sqlite3 module, not through
        Tegata's engine, so that what is checked is what is on disk."""
        path = self.sqlite_file
        if path is not None:
            with sqlite3.connect(path) as conn:
                conn.row_factory = sqlite3.Row
                names = [r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")]
                return {name: [dict(r) for r in conn.execute(f'SELECT * FROM "{name}"')]
                        for name in names}
        assert self.database_url is not None
        engine = create_engine(self.database_url)
        try:
            metadata = MetaData()
            metadata.reflect(engine)
            with engine.connect() as conn:
                return {name: [dict(r._mapping) for r in conn.execute(select(table))]
                        for name, table in metadata.tables.items()}
        finally:
            engine.dispose()

    def rows(self, table: str) -> list[dict[str, Any]]:
        return self.dump().get(table, [])


def _reset_state() -> None:
    state = STATE  # one object shared by cli.main, cli.commands and cli.server
    if state._service is not None:
        state._service.engine.dispose()
    state._settings = None
    state._service = None
    state.debug = False


class Cli:
    """Runs ``tegata ARGS`` in this process, with a fresh settings/service cache each time."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys

    def __call__(self, *argv: str) -> Result:
        self._capsys.readouterr()  # drop anything printed before
        _reset_state()
        code: int | str | None = 0
        try:
            main(list(argv))
        except SystemExit as exc:
            code = exc.code
        finally:
            _reset_state()
        captured = self._capsys.readouterr()
        if not isinstance(code, int):
            code = 0 if code is None else 1
        return Result(code=code, out=captured.out, err=captured.err)

    def ok(self, *argv: str) -> Result:
        result = self(*argv)
        assert result.code == 0, f"tegata {' '.join(argv)} failed: {result.err}"
        return result


def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
              database_url: str | None) -> Env:
    """The test's Tegata: TEGATA_* for its data directory (and database, unless the embedded
    SQLite), the passphrase and base URL; the working directory is the test's own."""
    env = Env(data_dir=tmp_path / "data", database_url=database_url)
    monkeypatch.setenv("TEGATA_DATA_DIR", str(env.data_dir))
    monkeypatch.setenv("TEGATA_KEY_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("TEGATA_PUBLIC_BASE_URL", BASE_URL)
    if database_url is not None:
        monkeypatch.setenv("TEGATA_DATABASE_URL", database_url)
    monkeypatch.chdir(tmp_path)
    return env


def as_json(cli: Cli, *argv: str) -> Any:
    """``tegata ARGV --json``, succeeded, its output parsed."""
    return json.loads(cli.ok(*argv, "--json").out)


def initialise(cli: Cli) -> None:
    """A CA with the ``default`` tenant and alice, who may have certificates."""
    cli.ok("init", "--key-type", "ec-p256")
    cli.ok("user", "add", "alice", "--email", "alice@example.com", "--allow")


def issue(cli: Cli, login: str = "alice", *extra: str) -> dict[str, Any]:
    """``tegata cert issue LOGIN --json``: the one certificate made."""
    data = as_json(cli, "cert", "issue", login, *extra)
    assert isinstance(data, list) and len(data) == 1, data
    assert isinstance(data[0], dict)
    return data[0]


def issue_pem(cli: Cli, path: Path, login: str = "alice") -> str:
    """A new certificate for ``login``, its PEM (``cert show --pem``) written to ``path``;
    its serial."""
    serial = str(issue(cli, login)["serial"])
    path.write_text(cli.ok("cert", "show", serial, "--pem").out, encoding="ascii")
    return serial
