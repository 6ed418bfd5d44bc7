"""``tegata tenant subscription set`` at the edges (from an outside
tester): with 0 grace days the refusal of a past end says that confirming revokes and purges
now; an end of 9999-12-30 works (it overflowed into exit 70); an end outside the range is one
line naming the subscription end, exit 2, nothing changed."""

from __future__ import annotations

import json
from typing import Any

import pytest
import typer

from ca.clock import FixedClock
from cli.main import app
from tests.support.cli import Cli, Env

T = ("--tenant", "acme")
SET = ("tenant", "subscription", "set", *T)


@pytest.fixture
def acme(ready_sqlite: Env, cli: Cli, cli_clock: FixedClock) -> Env:
    cli.ok("tenant", "create", "acme", "--display-name",
           "Example Holdings International Corporation Japan Branch Osaka",
           "--key-type", "ec-p256")
    cli.ok("user", "add", "alice", "--email", "alice@example.co.jp", "--allow", *T)
    cli.ok("cert", "issue", "alice", *T)
    cli.ok(*SET, "--tz", "Asia/Tokyo", "--ends", "2026-12-31", "--grace-days", "0")
    return ready_sqlite


def test_with_no_grace_the_refusal_says_revoked_and_purged_now(acme: Env, cli: Cli) -> None:
    before = acme.dump()

    refused = cli(*SET, "--tz", "Asia/Tokyo", "--ends", "2025-12-31")

    assert (refused.code, refused.error()) == (
        2, "acme: subscription end 2025-12-31 in Asia/Tokyo is already past; confirming it "
           "would revoke every certificate (cessationOfOperation) and purge its key now, "
           "with no grace period. Check it, or confirm with --allow-past")
    assert acme.dump() == before


def test_the_allow_past_help_names_both_outcomes() -> None:
    command: Any = typer.main.get_command(app)  # typer's own click classes
    option = next(p for p in command.commands["tenant"].commands["subscription"]
                  .commands["set"].params if p.name == "allow_past")
    assert option.help == (
        "Accept an end date already past: every certificate is suspended now and revoked a "
        "full grace period later unless the end is corrected; with 0 grace days, every "
        "certificate is revoked and its key purged now. Without it such a date is refused "
        "(exit 2), saying which of the two it would be.")


def test_the_latest_end_works(acme: Env, cli: Cli) -> None:
    shown = json.loads(cli.ok(*SET, "--ends", "9999-12-30", "--grace-days", "3650",
                              "--tz", "Pacific/Kiritimati", "--json").out)
    assert {k: shown[k] for k in ("ends_on", "state", "grace_days", "grace_ends_at")} == {
        "ends_on": "9999-12-30", "state": "active", "grace_days": 3650,
        "grace_ends_at": "9999-12-31T23:59:59Z"}
    assert json.loads(cli.ok("tenant", "subscription", "show", *T, "--json").out) == shown


@pytest.mark.parametrize(("ends", "message"), [
    ("9999-12-31", "subscription end 9999-12-31 is after the latest allowed, 9999-12-30"),
    ("0001-01-01", "subscription end 0001-01-01 is before the earliest allowed, 1900-01-01"),
    ("2026-13-01", "subscription end '2026-13-01' is not a date of the form YYYY-MM-DD"),
])
def test_an_end_outside_the_range_is_one_line_and_exit_2(
        acme: Env, cli: Cli, ends: str, message: str) -> None:
    before = acme.dump()

    refused = cli(*SET, "--ends", ends, "--allow-past")

    assert (refused.code, refused.error()) == (2, message)
    assert acme.dump() == before
