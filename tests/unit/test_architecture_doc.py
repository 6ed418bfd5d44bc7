"""ARCHITECTURE.md matches the code: every path it names exists, every module of the
use cases and of both shells has a row in its concept table, and its composition table names
exactly the attributes of ``build_service``'s ``Service``, each with its class and file."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import ca.service.root as root

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "ARCHITECTURE.md"

# A path the map names: `ca/...`, `api/...`, `cli/...`, `tests/...`, `migrations/...` in backticks.
PATH = re.compile(r"`((?:ca|api|cli|tests|migrations)/[\w/.]*)`")
SERVICE_ATTR = re.compile(r"`service\.(\w+)")


def section(title: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:] if end == -1 else text[start:end]


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # the header


def test_every_path_named_exists() -> None:
    named = set(PATH.findall(DOC.read_text(encoding="utf-8")))
    assert named, "the map names no path"
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []


def test_every_module_of_the_use_cases_and_shells_is_in_the_concept_table() -> None:
    table = "\n".join(" ".join(row) for row in table_rows(section("Concept → file")))
    named = set(PATH.findall(table))
    modules = sorted(
        path.relative_to(ROOT).as_posix()
        for folder in ("ca/service", "api/routes", "api/console", "cli")
        for path in (ROOT / folder).glob("*.py"))
    assert modules
    assert [m for m in modules if m not in named] == []


def test_the_composition_table_is_the_service() -> None:
    text = section("The composition root")
    fields = {field.name for field in dataclasses.fields(root.Service)}
    properties = {name for name, value in vars(root.Service).items()
                  if isinstance(value, property)}
    assert set(SERVICE_ATTR.findall(text)) == fields | properties

    service_rows = [row for row in table_rows(text) if row[0].startswith("`service.")]
    assert service_rows
    hints = inspect.get_annotations(root.Service, eval_str=True)
    for attribute, class_name, file, *_ in service_rows:
        name = attribute.strip("`").removeprefix("service.")
        kind = hints[name]
        assert (f"`{kind.__name__}`", f"`{kind.__module__.replace('.', '/')}.py`") == (
            class_name, file), name


def test_the_composition_table_names_each_use_cases_collaborators() -> None:
    text = section("The composition root")
    hints = inspect.get_annotations(root.Service, eval_str=True)
    for attribute, _class, _file, collaborators in (
            row for row in table_rows(text) if row[0].startswith("`service.")):
        kind = hints[attribute.strip("`").removeprefix("service.")]
        parameters = [p for p in inspect.signature(kind).parameters if p != "self"]
        written = [c.strip() for c in collaborators.split(",")]
        assert written == parameters, attribute
