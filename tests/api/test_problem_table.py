"""The error tree and the one problem table agree: every class of the tree lives in
``ca.errors``, is drawn in its docstring, and has a row of its own in ``api.problems.TABLE``
(a new subclass without one fails here, rather than answering with its parent's status by
accident)."""

from __future__ import annotations

import ast
import importlib
import json
import pathlib
import pkgutil
import re

import pytest

import api
import ca
import cli
from api import problems
from ca import errors


def _import_everything() -> None:
    """Every module of ca, api and cli, so that a subclass defined anywhere is seen."""
    for package in (ca, api, cli):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)


def _tree() -> set[type[errors.CAError]]:
    found: set[type[errors.CAError]] = set()
    todo = [errors.CAError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


@pytest.fixture(scope="module")
def tree() -> set[type[errors.CAError]]:
    _import_everything()
    return _tree()


def test_every_error_class_lives_in_ca_errors(tree: set[type[errors.CAError]]) -> None:
    assert sorted(f"{c.__module__}.{c.__qualname__}" for c in tree
                  if c.__module__ != "ca.errors") == []


def test_every_error_class_has_exactly_its_own_row(tree: set[type[errors.CAError]]) -> None:
    names = sorted(c.__name__ for c in tree)
    assert sorted(c.__name__ for c in problems.TABLE) == names


def test_the_docstring_draws_the_tree_as_it_is(tree: set[type[errors.CAError]]) -> None:
    """Each line of the drawing names a class and, by its indent, its parent."""
    doc = errors.__doc__ or ""
    drawn: dict[str, str | None] = {}
    parents: list[str] = []
    for line in doc.splitlines():
        match = re.match(r"^    ((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+)\s", line + " ")
        if match is None or match.group(2) not in {c.__name__ for c in tree}:
            continue
        depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
        parents[depth:] = [match.group(2)]
        drawn[match.group(2)] = parents[depth - 1] if depth else None
    actual = {c.__name__: (None if c is errors.CAError else c.__bases__[0].__name__)
              for c in tree}
    assert drawn == actual


def test_a_refusal_is_answered_below_500_and_a_failure_at_or_above(
        tree: set[type[errors.CAError]]) -> None:
    """The 5xx rows are the ones whose detail stays in the log (api.problems.domain_problem):
    configuration, storage, outside services; nothing the caller can correct."""
    outside = (errors.ConfigError, errors.StorageError, errors.Unavailable)
    assert {c.__name__: problems.TABLE[c].status >= 500 for c in tree} == {
        c.__name__: c is errors.CAError or issubclass(c, outside) for c in tree}


def test_a_subclass_keeps_its_parents_status_unless_its_row_says_why() -> None:
    """A subclass made for a shell's advice answers as its parent does; the ones that
    differ are these, each for a reason."""
    differs = {c.__name__: (problems.TABLE[c.__bases__[0]].status, problems.TABLE[c].status)
               for c in problems.TABLE if c is not errors.CAError
               and c.__bases__[0] is not errors.CAError
               and problems.TABLE[c].status != problems.TABLE[c.__bases__[0]].status}
    assert differs == {
        "LinkGone": (422, 410),  # the link existed: Gone, not a rule of the request
        "Unreachable": (503, 502),  # a server Tegata depends on failed
        "GatewayRefused": (503, 502),
    }


@pytest.mark.parametrize(("error", "cli_line", "api_detail"), [
    (errors.NotInitialized("Tegata is not initialised"),
     "Tegata is not initialised: run `tegata init` first",
     "Tegata is not initialised"),
    (errors.NeedsConfirmation("acme: subscription end 2025-12-31 in Asia/Tokyo is already "
                              "past; confirming it would ...", field="ends",
                              confirm="allow_past"),
     "acme: subscription end 2025-12-31 in Asia/Tokyo is already past; confirming it would "
     ".... Check it, or confirm with --allow-past",
     "acme: subscription end 2025-12-31 in Asia/Tokyo is already past; confirming it would "
     ".... Check it, or confirm with allow_past: true"),
    (errors.MailNotConfigured("e-mail is not configured (TEGATA_SMTP_HOST not set)",
                              field="send"),
     "e-mail is not configured (TEGATA_SMTP_HOST not set); create the link without --send "
     "and pass it on yourself",
     "e-mail is not configured (TEGATA_SMTP_HOST not set); create the link with send false "
     "and pass it on yourself"),
    (errors.NotFound("no user 'ゆき' in tenant 株式会社アクメ", field="login"),
     "no user 'ゆき' in tenant 株式会社アクメ", "no user 'ゆき' in tenant 株式会社アクメ"),
], ids=["not-initialised", "needs-confirmation", "mail-not-configured", "no-advice"])
def test_each_shell_adds_its_own_advice_to_the_domains_message(
        error: errors.CAError, cli_line: str, api_detail: str) -> None:
    """The domain says what is wrong; a terminal user is told the command or flag, an API
    client the request field, and neither the other's."""
    from cli.errors import message

    body = json.loads(bytes(problems.domain_problem(error).body))
    assert (message(error), body["detail"]) == (cli_line, api_detail)


def test_a_domain_message_gives_no_terminal_advice(tree: set[type[errors.CAError]]) -> None:
    """No error made in ca/ names a tegata command or a --flag in its message: that is
    cli.errors' to add (an API client cannot run `tegata init`)."""
    names = {c.__name__ for c in tree}
    advice = re.compile(r"`tegata |\(CLI: |(^|\s)--[a-z]")
    root = pathlib.Path(ca.__path__[0])
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in names:
                continue
            text = " ".join(n.value for arg in node.args for n in ast.walk(arg)
                            if isinstance(n, ast.Constant) and isinstance(n.value, str))
            if advice.search(text):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {text}")
    assert found == []
