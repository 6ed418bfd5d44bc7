"""``tegata tenant subscription set`` with a mistyped end: one line and
exit 2, nothing changed on disk; ``--allow-past`` suspends at once and revocation waits a
full grace period; a correction inside it restores every certificate. The command runs at
named moments through a FixedClock."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509

from ca.clock import FixedClock
from tests.integration.test_subscription_guard import REFUSAL
from tests.moments import MOMENTS
from tests.support.cli import Cli, Env, as_json

T = ("--tenant", "acme")
SET = ("tenant", "subscription", "set", "--tz", "Asia/Tokyo", *T)


def gateway_view(cli: Cli) -> dict[str, Any]:
    """Certificate states from the database and the CRL the gateways fetch."""
    crl = x509.load_pem_x509_crl(cli.ok("crl", "show", "--pem", *T).out.encode())
    entries = {}
    for entry in crl:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        entries[format(entry.serial_number, "X")] = reason
    certs = as_json(cli, "cert", "list", *T)
    return {"states": {c["login"]: (c["state"], c["revocation_reason"]) for c in certs},
            "crl": {next(c["login"] for c in certs if c["serial"] == s): r
                    for s, r in entries.items()}}


def test_a_mistyped_end_is_refused_in_one_line_then_confirmed_then_corrected(
        ready_sqlite: Env, cli: Cli, cli_clock: FixedClock) -> None:
    cli.ok("tenant", "create", "acme", "--display-name", "株式会社アクメ",
           "--key-type", "ec-p256")
    for login in ("alice", "bob"):
        cli.ok("user", "add", login, "--email", f"{login}@example.co.jp", "--allow", *T)
    cli.ok("cert", "issue", "alice", "bob", *T)
    cli.ok(*SET, "--ends", "2026-12-31")
    valid = {"states": {"alice": ("valid", None), "bob": ("valid", None)}, "crl": {}}
    assert gateway_view(cli) == valid
    before = ready_sqlite.dump()

    refused = cli(*SET, "--ends", "2025-12-31")

    assert (refused.code, refused.error()) == (
        2, REFUSAL + ". Check it, or confirm with --allow-past")
    assert ready_sqlite.dump() == before
    assert gateway_view(cli) == valid

    shown = as_json(cli, *SET, "--ends", "2025-12-31", "--allow-past")
    assert {k: shown[k] for k in ("state", "suspended_at", "grace_ends_at")} == {
        "state": "grace", "suspended_at": "2026-03-02T09:00:00Z",
        "grace_ends_at": "2026-04-01T09:00:00Z"}
    suspended = {"states": {"alice": ("suspended", None), "bob": ("suspended", None)},
                 "crl": {"alice": "certificateHold", "bob": "certificateHold"}}
    assert gateway_view(cli) == suspended

    cli_clock.set(MOMENTS.grace_day_29)
    assert as_json(cli, "lifecycle", "run")["revoked"] == 0
    assert gateway_view(cli) == suspended
    shown = as_json(cli, *SET, "--ends", "2026-12-31")
    assert (shown["state"], shown["suspended_at"]) == ("active", None)
    assert gateway_view(cli) == valid
    cli_clock.set(MOMENTS.grace_end_after_start)
    assert as_json(cli, "lifecycle", "run")["revoked"] == 0
    assert gateway_view(cli) == valid


def test_allow_past_still_waits_a_full_grace_period_before_revoking(
        ready_sqlite: Env, cli: Cli, cli_clock: FixedClock) -> None:
    cli.ok("tenant", "create", "acme", "--display-name",
           "Example Holdings International Corporation Japan Branch Tokyo",
           "--key-type", "ec-p256")
    cli.ok("user", "add", "alice", "--email", "alice@example.co.jp", "--allow", *T)
    cli.ok("cert", "issue", "alice", *T)
    cli.ok(*SET, "--ends", "2025-12-31", "--allow-past")

    cli_clock.set(MOMENTS.grace_end_after_start - dt.timedelta(hours=1))
    assert as_json(cli, "lifecycle", "run")["revoked"] == 0
    assert gateway_view(cli)["states"] == {"alice": ("suspended", None)}
    cli_clock.set(MOMENTS.grace_end_after_start)
    assert as_json(cli, "lifecycle", "run")["revoked"] == 1
    assert gateway_view(cli) == {"states": {"alice": ("revoked", "cessationOfOperation")},
                                 "crl": {"alice": "cessationOfOperation"}}
