"""Hostile strings at every string argument and option of every ``tegata`` command:
NUL, a right-to-left override, ``../``, CR/LF, a 100,000-character value, undecodable bytes
(as Python hands them over: surrogate escapes), ``<script>``, SQL, a literal ``%00`` and
look-alike letters.

The commands and their parameters are not listed by hand: they come from the typer app's
command tree, and a parameter is a string one by its annotation (``str``, ``Path``, a list of
those, or an enum). Each gets each hostile value in turn, the command's other required
parameters keeping valid values, on an initialised CA with a tenant, users and a certificate.

A refused value ends with a non-zero exit and one printable line on stderr,
``tegata: error: ...`` (no traceback, no internal error, not the 100,000 characters back), and
changes nothing: every row of every table and every file under the test's directory are the
same. An accepted value may change things, but never puts a raw CR/LF-injected line in what
the command prints (an nginx configuration, a CSV, a listing).

``serve`` and ``demo`` are left out: with a valid value they would serve until killed.
"""

from __future__ import annotations

import contextlib
import enum
import io
import itertools
import json
import os
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer

from cli import server
from cli.main import app, main
from tests.api.test_hostile_input import Tables, describe_change
from tests.support.cli import (
    ERROR_PREFIX,
    Cli,
    Result,
    _reset_state,
    configure,
    initialise,
)

HOSTILE = [
    ("nul", "\x00"),
    ("rtl-override", "\u202etxt.exe"),
    ("dot-dot", "../../etc/passwd"),
    ("crlf", "a\r\nX-Injected: 1"),
    ("100k", "a" * 100_000),
    ("undecodable", "\udcff\udcfe"),  # bytes ff fe in argv, as sys.argv holds them
    ("script", "<script>alert(1)</script>"),
    ("sql", "' OR 1=1 --"),
    ("pct-00", "%00"),
    ("cyrillic-lookalike", "\u0430lice"),
    ("fullwidth-lookalike", "\uff41\uff4c\uff49\uff43\uff45"),
]
# on PostgreSQL only what can behave differently there runs again (see the API test)
DATABASE_SENSITIVE = {"nul", "100k", "undecodable", "sql", "cyrillic-lookalike",
                      "fullwidth-lookalike"}
WARNING_PREFIX = "tegata: WARNING: "


# --- the commands, from the typer app ----------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    option: str | None  # "--tenant"; None for an argument
    required: bool
    many: bool  # a list: an argument taking several values, or a repeatable option


@dataclass(frozen=True)
class Command:
    words: tuple[str, ...]
    params: tuple[Param, ...]  # every parameter, in declaration order
    strings: tuple[str, ...]  # names of the string parameters


def _is_string(hint: Any) -> bool:
    members = [m for m in (typing.get_args(hint) or (hint,)) if m is not type(None)]
    for member in members:
        inner = typing.get_args(member) if typing.get_origin(member) is list else (member,)
        if any(t in (str, Path) or (isinstance(t, type) and issubclass(t, enum.Enum))
               for t in inner):
            return True
    return False


def _walk(group: Any, words: tuple[str, ...]) -> Iterator[Command]:
    for name, sub in sorted(group.commands.items()):
        if hasattr(sub, "commands"):
            yield from _walk(sub, (*words, name))
            continue
        hints = typing.get_type_hints(sub.callback)
        params = tuple(
            Param(name=p.name, option=None if p.param_type_name == "argument" else p.opts[0],
                  required=bool(p.required), many=bool(p.multiple) or p.nargs == -1)
            for p in sub.params)
        strings = tuple(p.name for p in params if _is_string(hints.get(p.name)))
        yield Command(words=(*words, name), params=params, strings=strings)


def _commands() -> list[Command]:
    tree = typer.main.get_command(app)
    found = []
    for command in _walk(tree, ()):
        node: Any = tree
        for word in command.words:
            node = node.commands[word]
        if node.callback.__module__ == server.__name__:
            continue  # serve, demo: they would serve until killed
        if command.strings:
            found.append(command)
    return found


COMMANDS = _commands()


# --- valid values for the parameters a case does not make hostile ------------------------------


@dataclass
class Data:
    serial: str
    csv_file: Path
    ca_bundle: Path
    work: Path  # the working directory: ../../ from here stays inside the test's directory
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def fresh(self, stem: str) -> str:
        return f"{stem}{next(self.counter)}"


def valid_value(command: Command, param: Param, data: Data) -> list[str] | None:
    """A valid value for a required parameter (and for the few optional ones that name the
    users to act on or keep a command off the network); None: leave it out."""
    if command.words == ("user", "add") and param.name == "login":
        return [data.fresh("carol")]
    if command.words == ("tenant", "create") and param.name == "name":
        return [data.fresh("newco")]
    values: dict[str, str] = {
        "login": "alice", "logins": "alice", "email": "carol@example.com",
        "serial": data.serial, "out": str(data.work / data.fresh("out")),
        "file": str(data.csv_file), "upstream": "http://127.0.0.1:9000", "role": "admin",
        "policy": "ip_or_cert", "ca_bundle_path": str(data.ca_bundle),
    }
    optional: dict[str, str] = {
        "url": "http://127.0.0.1:9",  # crl-sync: refused at once, never the network
        "logins": "alice", "user_download": "on",
    }
    if param.required and param.name in values:
        return [values[param.name]]
    if param.required and param.name == "token_id":
        return ["1"]
    if not param.required and param.name in optional:
        return [optional[param.name]]
    return None


def argv_for(command: Command, target: str, value: str, data: Data) -> list[str]:
    arguments: list[str] = []
    options: list[str] = []
    for param in command.params:
        values = [value] if param.name == target else valid_value(command, param, data)
        if values is None:
            continue
        if param.option is None:
            arguments += values
        else:
            for one in values:
                options += [param.option, one]
    # "--" so that a hostile argument is never read as an option
    return [*command.words, *options, "--", *arguments] if arguments else [*command.words,
                                                                           *options]


# --- the environment ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _command_tree_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """typer rebuilds the click command tree from the app on every call (~60 ms, most of a
    run); the tree depends on nothing but the app, so these tests build it once."""
    built = typer.main.get_command(app)
    real = typer.main.get_command
    monkeypatch.setattr(typer.main, "get_command",
                        lambda instance: built if instance is app else real(instance))


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str, cli: Cli
          ) -> Iterator[tuple[Tables, Data]]:
    """An initialised CA: alice (allowed, with a certificate), bob in group staff, a CSV of
    the users and the CA bundle on disk; the working directory three levels down."""
    env = configure(monkeypatch, tmp_path, None if db_url.startswith("sqlite") else db_url)
    initialise(cli)
    cli.ok("user", "add", "bob", "--email", "bob@example.com", "--groups", "staff")
    issued = json.loads(cli.ok("cert", "issue", "alice", "--json").out)
    csv_file = tmp_path / "users.csv"
    csv_file.write_text(cli.ok("user", "export").out, encoding="utf-8")
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text(cli.ok("gateway", "ca-bundle").out, encoding="utf-8")
    work = tmp_path / "w" / "x" / "y"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    tables = Tables(env)
    yield tables, Data(serial=issued[0]["serial"], csv_file=csv_file, ca_bundle=bundle,
                       work=work)
    tables.close()


def snapshot(tables: Tables, root: Path) -> dict[str, Any]:
    files = sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*")
                   if p.is_file() and not p.name.startswith("tegata.db"))
    return {"tables": tables.read(), "files": files}


# --- running tegata as a terminal would --------------------------------------------------------


def run(*argv: str) -> Result:
    """``tegata ARGV`` in this process, with the streams a UTF-8 terminal gives Python: stdout
    strict, stderr ``backslashreplace`` (so undecodable input shows there as escapes, as it
    would, instead of failing the capture)."""
    out, err = (io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors=errors, newline="",
                                 write_through=True) for errors in ("strict", "backslashreplace"))
    code: int | str | None = 0
    _reset_state()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(argv))
    except SystemExit as exc:
        code = exc.code
    finally:
        _reset_state()
    if not isinstance(code, int):
        code = 0 if code is None else 1
    return Result(code=code, out=out.buffer.getvalue().decode(),  # type: ignore[attr-defined]
                  err=err.buffer.getvalue().decode())  # type: ignore[attr-defined]


# --- judging one run ---------------------------------------------------------------------------


def judge(result: Result) -> list[str]:
    found = []
    for stream, text in (("stdout", result.out), ("stderr", result.err)):
        if "Traceback" in text:
            found.append(f"a traceback on {stream}: {text[-200:]!r}")
        if "\r\nX-Injected" in text or "\nX-Injected" in text:
            found.append(f"{stream} holds the injected line raw: {text[:200]!r}")
    if result.code == 0:
        return found
    lines = result.err.splitlines()
    errors = [line for line in lines if not line.startswith(WARNING_PREFIX)]
    if not result.err.endswith("\n") or len(errors) != 1 or not errors[0].startswith(
            ERROR_PREFIX):
        found.append(f"not one '{ERROR_PREFIX}...' line on stderr: {result.err[:300]!r}")
        return found
    for line in lines:
        if not line.isprintable():
            found.append(f"the message holds unprintable characters: {line[:200]!r}")
        if len(line) > 1000:
            found.append(f"the message is {len(line)} characters long: {line[:120]!r}...")
    return found


# --- the test ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c.words) for c in COMMANDS])
def test_hostile_strings_at_every_cli_parameter_get_one_clean_line_and_change_nothing(
        world: tuple[Tables, Data], tmp_path: Path, command: Command) -> None:
    tables, data = world
    values = HOSTILE if tables.env.database_url is None else [
        (name, value) for name, value in HOSTILE if name in DATABASE_SENSITIVE]
    failures: list[str] = []
    count = 0
    before = snapshot(tables, tmp_path)
    for target in command.strings:
        for hostile_id, value in values:
            argv = argv_for(command, target, value, data)
            result = run(*argv)
            count += 1
            found = judge(result)
            after = snapshot(tables, tmp_path)
            if result.code != 0 and after != before:
                found.append(f"a refused command changed the state: "
                             f"{describe_change(before, after)}")
            before = after
            shown = f"tegata {' '.join(command.words)} {target}={hostile_id}"
            failures += [f"{shown} -> exit {result.code}: {f}" for f in found]
    assert count == len(command.strings) * len(values)
    assert not failures, f"{len(failures)} of {count} cases failed:\n" + "\n".join(failures)


def test_every_command_with_a_string_parameter_is_covered() -> None:
    """The enumeration finds the commands (a typer upgrade must not make it find none)."""
    words = {c.words for c in COMMANDS}
    assert len(COMMANDS) >= 30
    assert {("user", "add"), ("cert", "issue"), ("gateway", "nginx")} <= words
    assert all(os.fspath(w[0]) not in ("serve", "demo") for w in words)
