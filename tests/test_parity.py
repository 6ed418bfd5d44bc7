"""API/CLI parity, as README.md's table writes it down: walk both trees (the routes of
``build_app``, the commands of ``cli.main``) and hold them to the table.

It fails when an operation exists on one side only and the table does not say why, when a
route or a command is in no row, and when the table names a route or a command that is not
there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from api.app import api_routes, build_app
from ca.settings import load_settings
from cli.main import app as cli_app
from tests.support.environment import BASE_URL, PASSPHRASE

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- parity:begin -->", "<!-- parity:end -->"
NONE = "—"
ROUTE = re.compile(r"`((?:GET|POST|PUT|PATCH|DELETE) /[^`]*)`")
COMMAND = re.compile(r"`tegata ([^`]*)`")


@dataclass(frozen=True)
class Row:
    operation: str
    routes: frozenset[str]
    commands: frozenset[str]
    why: str
    api_cell: str
    cli_cell: str


def table(text: str) -> list[Row]:
    """The rows between the parity markers (the header and its rule skipped)."""
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "README.md: one parity table"
    body = text.split(BEGIN, 1)[1].split(END, 1)[0]
    rows = []
    for line in body.strip().splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 4, f"README.md parity row with {len(cells)} cells: {line}"
        operation, api, cli, why = cells
        rows.append(Row(operation=operation, routes=frozenset(ROUTE.findall(api)),
                        commands=frozenset(command_path(c) for c in COMMAND.findall(cli)),
                        why=why, api_cell=api, cli_cell=cli))
    return rows


def command_path(words: str) -> str:
    """``cert issue --group`` -> ``cert issue``: the words before the first option or
    argument."""
    path = []
    for word in words.split():
        if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break
        path.append(word)
    return " ".join(path)


def routes_of(app: Any) -> set[str]:
    return {f"{method} {route.path}" for route in api_routes(app)
            for method in route.methods if method != "HEAD"}


def commands_of(group: Any, words: tuple[str, ...] = ()) -> Iterator[str]:
    for name, sub in group.commands.items():
        if hasattr(sub, "commands"):
            yield from commands_of(sub, (*words, name))
        else:
            yield " ".join((*words, name))


def disagreements(rows: list[Row], routes: set[str], commands: set[str]) -> list[str]:
    """Every way the table and the trees disagree, one line each (none: they agree)."""
    found = []
    listed_routes = set().union(*(r.routes for r in rows))
    listed_commands = set().union(*(r.commands for r in rows))
    found += [f"route {r} is in no row of README.md's parity table"
              for r in sorted(routes - listed_routes)]
    found += [f"command `tegata {c}` is in no row of README.md's parity table"
              for c in sorted(commands - listed_commands)]
    found += [f"README.md's parity table names route {r}, which the API does not have"
              for r in sorted(listed_routes - routes)]
    found += [f"README.md's parity table names `tegata {c}`, which the CLI does not have"
              for c in sorted(listed_commands - commands)]
    for row in rows:
        one_sided = not row.routes or not row.commands
        if (not row.routes and row.api_cell != NONE) or (
                not row.commands and row.cli_cell != NONE):
            found.append(f"{row.operation!r}: an empty side is written {NONE}")
        if one_sided and not row.why:
            found.append(f"{row.operation!r} exists on one side only and the table gives no "
                         "reason")
        if not one_sided and row.why:
            found.append(f"{row.operation!r} is on both sides: it is no exception")
    return found


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], set[str]]:
    data = tmp_path_factory.mktemp("parity")
    settings = load_settings(data_dir=data, database_url=f"sqlite:///{data / 'tegata.db'}",
                             key_passphrase=PASSPHRASE, public_base_url=BASE_URL)
    app = build_app(settings)
    commands = set(commands_of(typer.main.get_command(cli_app)))
    return routes_of(app), commands


def test_the_readme_table_and_both_trees_agree(trees: tuple[set[str], set[str]]) -> None:
    routes, commands = trees
    rows = table(README.read_text(encoding="utf-8"))
    assert disagreements(rows, routes, commands) == []
    # the walk finds both trees (a FastAPI or typer upgrade must not make it find nothing)
    assert len(routes) >= 50 and len(commands) >= 40
    assert "POST /api/v1/tenants/{tenant}/tokens/{token_id}/revoke" in routes
    assert "user show" in commands


def test_an_operation_on_one_side_only_is_found(trees: tuple[set[str], set[str]]) -> None:
    """The planted cases: a command removed, a route added, a row that lies, an exception
    without its reason."""
    routes, commands = trees
    rows = table(README.read_text(encoding="utf-8"))
    assert disagreements(rows, routes, commands - {"user show"}) == [
        "README.md's parity table names `tegata user show`, which the CLI does not have"]
    assert disagreements(rows, routes | {"DELETE /api/v1/tenants/{tenant}"}, commands) == [
        "route DELETE /api/v1/tenants/{tenant} is in no row of README.md's parity table"]
    assert disagreements(rows, routes, commands | {"tenant delete"}) == [
        "command `tegata tenant delete` is in no row of README.md's parity table"]
    no_reason = [Row(r.operation, r.routes, r.commands,
                     "" if r.operation == "create a token" else r.why, r.api_cell, r.cli_cell)
                 for r in rows]
    assert disagreements(no_reason, routes, commands) == [
        "'create a token' exists on one side only and the table gives no reason"]


def test_command_paths_stop_at_the_first_option_or_argument() -> None:
    assert command_path("cert issue --group") == "cert issue"
    assert command_path("tenant set --ocsp-validity") == "tenant set"
    assert command_path("user show LOGIN") == "user show"
