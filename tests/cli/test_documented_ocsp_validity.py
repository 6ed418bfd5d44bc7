"""The OCSP validities the documentation quotes are ones the setting accepts.

The README and deploy/nginx/README.md quoted validities of 40 s and "30 s or less", which
`tegata tenant set --ocsp-validity` refuses (60 s to 7 days). The bounds stay: answers are
dated 30 s back, so at 60 s a fresh answer is good for 30 s more, as much slack for a clock
that runs ahead as for one that runs behind, and nginx keeps it 30 s. Here every
``--ocsp-validity N`` example and every "N s validity" / "validity (of) N s" in those files
is run through the real command, and the bounds and default the command's help states are
the ones it enforces, so the two cannot drift apart again.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from cli.main import app
from tests.support.cli import Cli, Env

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "deploy/nginx/README.md")
EXAMPLE = re.compile(r"--ocsp-validity[ =](\d+)")
PROSE = (re.compile(r"\b(\d+) ?s validity\b"),
         re.compile(r"\bvalidity (?:of |is |was set to |set to |\()?(\d+) ?s\b"))
HELP = re.compile(r"Seconds an OCSP answer is valid, (\d+) to (\d+) \(default (\d+)\)\.")


def quoted() -> dict[str, list[int]]:
    """Each file's quoted validities, in seconds, examples first."""
    found: dict[str, list[int]] = {}
    for name in DOCS:
        text = (ROOT / name).read_text(encoding="utf-8")
        found[name] = [int(v) for v in EXAMPLE.findall(text)] + [
            int(v) for pattern in PROSE for v in pattern.findall(text)]
    return found


def help_text() -> str:
    command: Any = typer.main.get_command(app)
    (option,) = [p for p in command.commands["tenant"].commands["set"].params
                 if p.name == "ocsp_validity"]
    return str(option.help)


def validity(env: Env) -> int:
    (row,) = [r for r in env.rows("tenants") if r["name"] == "default"]
    return int(row["ocsp_validity_seconds"])


def test_the_bounds_and_default_in_the_help_are_the_ones_enforced(ready_sqlite: Env,
                                                                   cli: Cli) -> None:
    stated = HELP.match(help_text())
    assert stated is not None, help_text()
    low, high, default = (int(v) for v in stated.groups())
    assert validity(ready_sqlite) == default

    answers = {seconds: cli("tenant", "set", "--ocsp-validity", str(seconds))
               for seconds in (low - 1, high + 1, low, high)}

    refusal = "the OCSP validity must be 60 seconds to 7 days"
    assert {s: (r.code, r.error() if r.code else "") for s, r in answers.items()} == {
        low - 1: (2, refusal), high + 1: (2, refusal), low: (0, ""), high: (0, "")}
    assert (low, high) == (60, 7 * 86400)  # as the refusal says
    assert validity(ready_sqlite) == high


def test_every_validity_the_docs_quote_is_accepted_by_the_setting(ready_sqlite: Env,
                                                                   cli: Cli) -> None:
    docs = quoted()
    # the control: the patterns do find the quotes (an example in the README, figures in both)
    assert EXAMPLE.search((ROOT / "README.md").read_text(encoding="utf-8"))
    assert all(len(values) >= 2 for values in docs.values()), docs

    refused = {}
    for name, values in docs.items():
        for seconds in sorted(set(values)):
            result = cli("tenant", "set", "--ocsp-validity", str(seconds))
            if result.code != 0:
                refused[f"{name}: {seconds} s"] = result.error()
            else:
                assert validity(ready_sqlite) == seconds

    assert refused == {}


@pytest.mark.parametrize(("text", "values"), [
    ("(9.9 s with a 40 s validity)", [40]),
    ("| OCSP, validity 40 s | `cert revoke`", [40]),
    ("The tenant's OCSP validity was set to 40 s for the test", [40]),
    ("(A validity of 30 s or less makes nginx ask", [30]),
    ("With the default validity (300 s), expect up to 270 s", [300]),
    ("tegata tenant set --ocsp-validity 120", [120]),
    ("OCSP validity \u2212 30 s (dated 30 s back)", []),  # a difference, not a validity
], ids=["n-s-validity", "table", "set-to", "of", "parenthesis", "example", "minus"])
def test_the_patterns_find_the_phrasings_that_drifted_before(text: str,
                                                            values: list[int]) -> None:
    found = [int(v) for v in EXAMPLE.findall(text)] + [
        int(v) for pattern in PROSE for v in pattern.findall(text)]
    assert found == values
