"""`tegata db upgrade` wraps a data-protection key that the previous release left in the clear,
and the bundles made before keep opening with their passwords."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ca.sealing import DATA_PROTECTION_FILE
from tests.integration.test_data_protection import (
    as_the_previous_release_left_it,
    key_forms,
    open_bundle,
)
from tests.support.cli import Cli, Env


def download(cli: Cli, out: Path) -> tuple[str, bytes, bytes]:
    """alice's password, private key and scalar, from a `cert download` zip."""
    cli.ok("cert", "download", "alice", "--out", str(out))
    with zipfile.ZipFile(out) as outer:
        return open_bundle(outer.read("alice.zip"), "alice")


def test_db_upgrade_wraps_a_key_left_in_the_clear_and_the_bundles_still_open(
        ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    cli.ok("cert", "issue", "alice")
    before = download(cli, tmp_path / "before.zip")
    key = as_the_previous_release_left_it(ready_sqlite.key_dir)

    out = cli.ok("db", "upgrade").out

    assert out == ("data-protection key wrapped under the CA key passphrase\n"
                   "database schema is current\n")
    data = (ready_sqlite.key_dir / DATA_PROTECTION_FILE).read_bytes()
    assert json.loads(data)["version"] == 2
    assert [name for name, form in key_forms(key).items() if form in data] == []
    assert download(cli, tmp_path / "after.zip") == before
    assert cli.ok("db", "upgrade").out == "database schema is current\n"
