"""A tenant's default PKCS#12 profile, with `tegata tenant create --p12-profile` and
`tegata tenant set --p12-profile`, shown by `tegata tenant show` (text and --json). The same
use case as ``PUT /api/v1/tenants/<t>/settings/p12-profile``
(tests/api/test_p12_profile_setting_api.py). A refused value is one line, exit 2, and
changes nothing, not even a setting named with it."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from tests.support.cli import Cli, Env, as_json, issue
from tests.support.pkcs12_structure import what_it_is

REFUSED_MESSAGE = "PKCS#12 profile 'legacy' is not compat or modern"


def p12_events(cli: Cli) -> list[tuple[str, str, str, dict[str, object]]]:
    events = json.loads(cli.ok("audit", "list", "--action", "tenant.update", "--json").out)
    return [(e["actor"], e["target"], e["tenant"], e["details"]) for e in events
            if "p12_profile" in e["details"]]


def test_set_changes_the_default_shown_both_ways_and_audited_once_per_change(
        ready: Env, cli: Cli) -> None:
    before = as_json(cli, "tenant", "show")
    answer = as_json(cli, "tenant", "set", "--p12-profile", "modern")
    same = as_json(cli, "tenant", "set", "--p12-profile", "modern")  # no change: no event
    after = as_json(cli, "tenant", "show")
    text = cli.ok("tenant", "show").out
    said = cli.ok("tenant", "set", "--p12-profile", "compat").out

    assert before == {"tenant": "default", "ocsp_validity_seconds": 300, "upn_suffix": None,
                      "user_download": True, "p12_profile": "compat",
                      "default_validity": "P1Y", "timezone": "UTC"}
    assert answer == same == {"tenant": "default", "p12_profile": "modern"}
    assert after == {**before, "p12_profile": "modern"}
    assert text.splitlines()[-2] == "  default PKCS#12 profile: modern"
    assert said == ("tenant default: bundles of certificates issued without a profile are "
                    "made in compat\n")
    assert p12_events(cli) == [
        ("cli", "default", "default", {"p12_profile": "modern",
                                       "previous_p12_profile": "compat"}),
        ("cli", "default", "default", {"p12_profile": "compat",
                                       "previous_p12_profile": "modern"}),
    ]


def test_a_tenant_created_with_a_profile_has_it(ready: Env, cli: Cli) -> None:
    cli.ok("tenant", "create", "sakura", "--display-name", "さくら商事", "--p12-profile",
           "modern")
    cli.ok("tenant", "create", "momiji", "--display-name", "もみじ銀行")

    assert as_json(cli, "tenant", "show", "--tenant", "sakura")["p12_profile"] == "modern"
    assert as_json(cli, "tenant", "show", "--tenant", "momiji")["p12_profile"] == "compat"


@pytest.mark.parametrize("argv", [
    ["tenant", "set", "--p12-profile", "legacy"],
    # refused before the other setting given with it changes
    ["tenant", "set", "--ocsp-validity", "120", "--p12-profile", "legacy"],
    ["tenant", "create", "kaede", "--display-name", "かえで", "--p12-profile", "legacy"],
], ids=["set", "set-with-another", "create"])
def test_a_refused_profile_is_one_line_exit_2_and_changes_nothing(
        ready_sqlite: Env, cli: Cli, argv: list[str]) -> None:
    before = (ready_sqlite.dump(), ready_sqlite.key_files())

    result = cli(*argv)

    assert (result.code, result.error(), result.out) == (2, REFUSED_MESSAGE, "")
    assert (ready_sqlite.dump(), ready_sqlite.key_files()) == before


def test_after_setting_modern_a_certificate_issued_without_a_choice_exports_modern(
        ready: Env, cli: Cli, tmp_path: Path) -> None:
    serial = issue(cli)["serial"]

    def exported(name: str) -> str:
        out = tmp_path / f"{name}.zip"
        cli.ok("cert", "export", serial, "--out", str(out))
        with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as archive:
            return what_it_is(archive.read("alice.p12"),
                              archive.read("alice-password.txt").decode().strip())

    before = exported("before")
    cli.ok("tenant", "set", "--p12-profile", "modern")

    assert (before, exported("after")) == ("compat", "modern")
