"""``tegata tenant set --default-validity``: the same use case as the API's
``PUT .../settings/default-validity`` (tests/api/test_default_validity_api.py); a refused
value is one line, exit 2, and changes nothing, not even a setting named with it."""

from __future__ import annotations

import json

from tests.support.cli import Cli, Env, as_json


def test_set_shown_and_audited(ready: Env, cli: Cli) -> None:
    said = cli.ok("tenant", "set", "--default-validity", "P90D").out
    assert said == "tenant default: certificates issued without an expiry last P90D\n"
    assert as_json(cli, "tenant", "show")["default_validity"] == "P90D"
    assert cli.ok("tenant", "show").out.splitlines()[-1] == "  default validity: P90D"
    events = json.loads(cli.ok("audit", "list", "--action", "tenant.update", "--json").out)
    assert [(e["actor"], e["details"]) for e in events] == [
        ("cli", {"default_validity": "P90D", "previous_default_validity": "P1Y"})]


def test_a_refused_validity_changes_nothing(ready_sqlite: Env, cli: Cli) -> None:
    before = ready_sqlite.dump()
    result = cli("tenant", "set", "--ocsp-validity", "120", "--default-validity", "1 year")
    assert result.error() == "validity '1 year' is not of the form P1Y, P6M, P90D or P1Y6M"
    assert ready_sqlite.dump() == before
