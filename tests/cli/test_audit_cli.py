"""``tegata audit list | export | verify`` on a real data directory."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

from tests.support.cli import Cli, Env


def test_list_shows_the_events_and_json_has_every_field(ready_sqlite: Env, cli: Cli) -> None:
    cli.ok("cert", "issue", "alice")
    assert "cert.issue" in cli.ok("audit", "list").out
    events = json.loads(cli.ok("audit", "list", "--action", "cert.issue", "--json").out)
    assert len(events) == 1
    assert {"id", "at", "tenant", "actor", "source_ip", "action", "target", "outcome",
            "request_id", "details"} <= set(events[0])
    assert events[0]["actor"] == "cli" and events[0]["tenant"] == "default"


def test_export_writes_csv_with_times_in_the_chosen_zone(ready_sqlite: Env, cli: Cli) -> None:
    out = ready_sqlite.data_dir.parent / "audit.csv"
    cli.ok("audit", "export", "--tz", "Asia/Tokyo", "-o", str(out))
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0][:3] == ["id", "time_utc", "time_Asia/Tokyo"]
    assert len(rows) > 2 and all(r[2].endswith("+09:00") for r in rows[1:])
    assert out.stat().st_mode & 0o077 == 0
    only = cli.ok("audit", "export", "--action", "user.create").out.splitlines()
    assert len(only) == 2 and ",user.create,default/alice," in only[1]


def test_verify_passes_prints_the_head_and_fails_on_a_changed_event(ready_sqlite: Env,
                                                                     cli: Cli) -> None:
    report = json.loads(cli.ok("audit", "verify", "--json").out)
    assert report["intact"] is True
    assert [(c["tenant"], c["intact"], len(c["head"])) for c in report["chains"]] == [
        (None, True, 64), ("default", True, 64)]
    assert report["events"] == sum(c["events"] for c in report["chains"])
    text = cli.ok("audit", "verify").out.splitlines()
    operator, default = report["chains"]
    assert text == [f"{report['events']} events in 2 chains, every chain intact",
                    f"  operator: {operator['events']} events, head {operator['head']}",
                    f"  tenant default: {default['events']} events, head {default['head']}"]

    assert ready_sqlite.sqlite_file is not None
    with sqlite3.connect(ready_sqlite.sqlite_file) as conn:
        conn.execute("UPDATE audit_events SET target = 'mallory' WHERE id = "
                     "(SELECT min(id) FROM audit_events)")
    result = cli("audit", "verify")
    assert result.code == 1 and "chain broken at event" in result.out
