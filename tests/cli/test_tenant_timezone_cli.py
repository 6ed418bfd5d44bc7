"""``tegata tenant set --timezone``: the same use case as the API's
``PUT .../settings/timezone`` (tests/api/test_tenant_timezone_api.py); an unknown zone is
one line, exit 2, and changes nothing, not even a setting named with it."""

from __future__ import annotations

import json

from tests.support.cli import Cli, Env, as_json


def test_set_shown_and_audited(ready: Env, cli: Cli) -> None:
    said = cli.ok("tenant", "set", "--timezone", "Asia/Tokyo").out
    assert said == "tenant default: dates are whole days in Asia/Tokyo\n"
    assert as_json(cli, "tenant", "show")["timezone"] == "Asia/Tokyo"
    events = json.loads(cli.ok("audit", "list", "--action", "tenant.update", "--json").out)
    assert [(e["actor"], e["details"]) for e in events] == [
        ("cli", {"timezone": "Asia/Tokyo", "previous_timezone": "UTC"})]


def test_an_unknown_zone_changes_nothing(ready_sqlite: Env, cli: Cli) -> None:
    before = ready_sqlite.dump()
    result = cli("tenant", "set", "--ocsp-validity", "120", "--timezone", "Mars/Olympus_Mons")
    assert result.code == 2
    assert "Mars/Olympus_Mons" in result.error()
    assert ready_sqlite.dump() == before
