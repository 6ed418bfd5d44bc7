"""The layers of ARCHITECTURE.md, held: what may import what.

Read from the source (every ``import`` and ``from ... import``, at any depth of a module,
a function-level import included), so a rule broken anywhere fails here with its file and
line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# (importing package, imported prefix): never
FORBIDDEN = [
    # the core knows nothing of HTTP or terminals
    ("ca", "api"), ("ca", "cli"), ("ca", "fastapi"), ("ca", "starlette"), ("ca", "typer"),
    ("ca", "granian"), ("ca", "uvicorn"),
    # the API is not the CLI
    ("api", "cli"), ("api", "typer"),
    # the pure builders take bytes and objects: no database, no use case
    ("ca.x509", "ca.db"), ("ca.x509", "ca.service"),
    # queries never reach up to the use cases
    ("ca.db", "ca.service"),
    # the shells reach the use cases through the Service that build_service wires, never
    # the plumbing they are built from
    ("api", "ca.service.plumbing"), ("cli", "ca.service.plumbing"),
    ("api", "ca.service.startup"), ("cli", "ca.service.startup"),
]
# what the CLI may take from the API: the app it serves, and the workers' shared counters
CLI_MAY_IMPORT_FROM_API = {"api.app", "api.sharedmetrics"}
# known breaks, each to be removed with its fix; one that no longer occurs fails
# the test too, so that this list only shrinks (the last one, cli/logs.py importing
# api.routes.selfservice for its log filter, went with ca/logfilters.py)
KNOWN: set[tuple[str, str]] = set()


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from ca.service import plumbing`` imports the module ca.service.plumbing
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def module_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def breaks() -> set[tuple[str, str, int]]:
    found: set[tuple[str, str, int]] = set()
    for package in ("ca", "api", "cli"):
        for path in sorted((ROOT / package).rglob("*.py")):
            here = module_of(path)
            rel = path.relative_to(ROOT).as_posix()
            for line, name in imports(path):
                for importer, imported in FORBIDDEN:
                    if within(here, importer) and within(name, imported):
                        found.add((rel, name, line))
                if (within(here, "cli") and within(name, "api")
                        and not any(within(name, m) or within(m, name)
                                    for m in CLI_MAY_IMPORT_FROM_API)):
                    found.add((rel, name, line))
    return found


def known(rel: str, name: str) -> bool:
    return any(rel == f and within(name, imported) for f, imported in KNOWN)


def test_no_layer_imports_what_it_may_not() -> None:
    unexpected = sorted(b for b in breaks() if not known(b[0], b[1]))
    assert unexpected == [], "\n".join(f"{f}:{line} imports {name}"
                                       for f, name, line in unexpected)


def test_every_known_break_still_occurs() -> None:
    # fixed ones leave the list (and the rule then holds for them too)
    found = breaks()
    assert [k for k in sorted(KNOWN)
            if not any(f == k[0] and within(name, k[1]) for f, name, _ in found)] == []


@pytest.mark.parametrize("planted", ["from api.app import build_app",
                                     "import cli.main",
                                     "from fastapi import FastAPI"],
                         ids=["api", "cli", "fastapi"])
def test_a_planted_import_in_the_core_is_caught(tmp_path: Path, planted: str) -> None:
    source = tmp_path / "mod.py"
    source.write_text(f"def f() -> None:\n    {planted}\n")
    names = [name for _, name in imports(source)]
    assert any(within(n, imported) for n in names
               for importer, imported in FORBIDDEN if importer == "ca")
