"""``tegata user ...`` and the bulk ``cert`` commands: import with a dry run and best
effort, the admin list, allow/deny, issuance for a selection, and the bulk zip on disk."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path

from tests.support.cli import Cli, Env, as_json

PEOPLE = ("login,email,name,groups,secure_access\n"
          "bob,bob@example.com,Bob,Sales,yes\n"
          "carol,carol@example.com,\"Carol, C.\",Sales;Dev,yes\n"
          "dave,dave@example.com,Dave,,no\n"
          "yamada,yamada@example.jp,山田 太郎,営業部,yes\n")


def logins(cli: Cli, *argv: str) -> list[str]:
    return [u["login"] for u in as_json(cli, "user", "list", *argv)]


def write(tmp: Path, text: str | bytes, name: str = "users.csv") -> str:
    path = tmp / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def people(cli: Cli, tmp: Path) -> None:
    cli.ok("user", "import", write(tmp, PEOPLE))


def states(cli: Cli) -> dict[str, str]:
    """login -> state of each certificate (one per user in these tests)."""
    return {c["login"]: c["state"] for c in as_json(cli, "cert", "list")}


def test_user_list_pages_and_searches_as_the_api_does(ready: Env, cli: Cli,
                                                       tmp_path: Path) -> None:
    people(cli, tmp_path)
    assert logins(cli, "--limit", "2") == ["alice", "bob"]
    assert logins(cli, "--limit", "2", "--offset", "2") == ["carol", "dave"]
    assert logins(cli, "--search", "山田") == ["yamada"]
    assert logins(cli, "-q", "C.", "--group", "Sales") == ["carol"]
    done = cli.ok("user", "list", "--search", "EXAMPLE.COM", "--limit", "1", "--offset", "1")
    assert done.out.split()[0] == "bob"  # of alice, bob, carol and dave
    assert done.err == "1 of 4 users from 1\n"
    assert cli("user", "list", "--limit", "0").error() == (
        "a page is 1..1000 users from offset 0..9223372036854775807")


# --- import --------------------------------------------------------------------------------


def test_user_import_dry_run_reports_then_the_import_creates_the_users(
        ready: Env, cli: Cli, tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbf" + PEOPLE.encode())
    report = as_json(cli, "user", "import", path, "--dry-run")
    assert report["dry_run"] is True
    assert report["created"] == ["bob", "carol", "dave", "yamada"]
    assert "would create 4" in cli.ok("user", "import", path, "--dry-run").out
    assert logins(cli) == ["alice"]

    out = cli.ok("user", "import", path).out
    assert "created 4, updated 0, unchanged 0, bad rows 0" in out
    users = {u["login"]: u for u in as_json(cli, "user", "list")}
    assert set(users) == {"alice", "bob", "carol", "dave", "yamada"}
    assert users["carol"]["display_name"] == "Carol, C."
    assert users["carol"]["groups"] == ["Dev", "Sales"]
    assert users["yamada"]["display_name"] == "山田 太郎"
    assert users["dave"]["secure_access"] is False
    groups = as_json(cli, "group", "list")
    assert {g["name"]: g["members"] for g in groups} == {"Dev": 1, "Sales": 2, "営業部": 1}
    assert "unchanged 4" in cli.ok("user", "import", path).out


BAD = ("login,email\n"
       "bob,bob@example.com\n"
       "../x,x@example.com\n"
       "carol,carol@\n")


def test_user_import_with_bad_rows_exits_1_and_says_nothing_was_written(
        ready: Env, cli: Cli, tmp_path: Path) -> None:
    result = cli("user", "import", write(tmp_path, BAD))
    assert result.code == 1
    assert "line 3: ../x:" in result.out and "line 4: carol:" in result.out
    assert "nothing was written" in result.out
    assert "Traceback" not in result.out + result.err
    assert logins(cli) == ["alice"]


def test_user_import_best_effort_writes_the_good_rows_and_lists_the_bad(
        ready: Env, cli: Cli, tmp_path: Path) -> None:
    result = cli("user", "import", write(tmp_path, BAD), "--best-effort", "--json")
    report = json.loads(result.out)
    assert report["created"] == ["bob"]
    assert [(e["line"], e["login"]) for e in report["errors"]] == [(3, "../x"), (4, "carol")]
    assert logins(cli) == ["alice", "bob"]


def test_user_import_of_a_bad_file_fails_with_one_line(ready_sqlite: Env, cli: Cli,
                                                       tmp_path: Path) -> None:
    message = cli("user", "import", write(tmp_path, "login,email,boss\n")).error()
    assert "line 1" in message and "'boss'" in message
    message = cli("user", "import", str(tmp_path / "absent.csv")).error()
    assert "cannot read" in message
    assert logins(cli) == ["alice"]


# --- the admin list and permission ---------------------------------------------------------


def test_user_list_filters_by_group_and_certificate_status(ready: Env, cli: Cli,
                                                           tmp_path: Path) -> None:
    people(cli, tmp_path)
    cli.ok("cert", "issue", "bob")
    assert logins(cli, "--group", "sales") == ["bob", "carol"]
    assert logins(cli, "--group", "Sales", "--status", "valid") == ["bob"]
    assert logins(cli, "--group", "Sales", "--status", "unissued") == ["carol"]
    assert logins(cli, "--unaffiliated") == ["alice", "dave"]
    assert logins(cli, "--status", "valid") == ["bob"]
    listed = as_json(cli, "user", "list", "--group", "営業部")
    assert listed[0]["login"] == "yamada" and listed[0]["certificate_status"] == "unissued"
    assert "unissued" in cli("user", "list", "--status", "nonsense").error()


def test_user_deny_suspends_and_allow_reinstates(ready: Env, cli: Cli,
                                                 tmp_path: Path) -> None:
    people(cli, tmp_path)
    cli.ok("cert", "issue", "alice", "bob", "carol")
    denied = as_json(cli, "user", "deny", "alice", "bob")
    assert [(u["login"], u["secure_access"]) for u in denied] == [
        ("alice", False), ("bob", False)]
    assert states(cli) == {"alice": "suspended", "bob": "suspended", "carol": "valid"}
    assert logins(cli, "--status", "suspended") == ["alice", "bob"]
    # an unknown login: nothing changes
    assert "ghost" in cli("user", "allow", "alice", "ghost").error()
    assert states(cli)["alice"] == "suspended"
    cli.ok("user", "allow", "alice", "bob")
    assert set(states(cli).values()) == {"valid"}


# --- issuance for a selection --------------------------------------------------------------


def test_cert_issue_for_a_group_then_for_all_still_unissued(ready: Env, cli: Cli,
                                                           tmp_path: Path) -> None:
    people(cli, tmp_path)
    cli.ok("user", "allow", "dave")
    [first] = as_json(cli, "cert", "issue", "alice")
    issued = as_json(cli, "cert", "issue", "--group", "Sales")
    assert [c["login"] for c in issued] == ["bob", "carol"]
    issued = as_json(cli, "cert", "issue", "--all", "--status", "unissued")
    assert [c["login"] for c in issued] == ["dave", "yamada"]
    alices = [c for c in as_json(cli, "cert", "list") if c["login"] == "alice"]
    assert [c["serial"] for c in alices] == [first["serial"]]
    assert "no user matched" in cli.ok("cert", "issue", "--all", "--status", "unissued").out


def test_cert_issue_all_is_all_or_nothing_naming_the_refused_user(
        ready: Env, cli: Cli, tmp_path: Path) -> None:
    people(cli, tmp_path)
    message = cli("cert", "issue", "--all").error()
    assert "dave" in message and "permission" in message
    assert as_json(cli, "cert", "list") == []


def test_cert_issue_all_best_effort_lists_the_failures_and_exits_1(
        ready: Env, cli: Cli, tmp_path: Path) -> None:
    people(cli, tmp_path)
    result = cli("cert", "issue", "--all", "--best-effort", "--json")
    assert result.code == 1
    data = json.loads(result.out)
    assert [c["login"] for c in data["issued"]] == ["alice", "bob", "carol", "yamada"]
    assert [f["login"] for f in data["failures"]] == ["dave"]
    assert "permission" in data["failures"][0]["reason"]
    assert sorted(states(cli)) == ["alice", "bob", "carol", "yamada"]
    # and when everyone can have one: exit 0
    cli.ok("cert", "issue", "--group", "Sales", "--best-effort", "--json")


# --- the bulk zip on disk ------------------------------------------------------------------


def test_cert_download_writes_the_whole_zip_readable_by_its_owner_only(
        ready: Env, cli: Cli, tmp_path: Path) -> None:
    people(cli, tmp_path)
    cli.ok("cert", "issue", "--group", "Sales")
    cli.ok("cert", "issue", "alice")
    out = tmp_path / "all.zip"
    report = as_json(cli, "cert", "download", "--out", str(out), "--all")
    assert report["users"] == 3 and report["bytes"] == out.stat().st_size
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == ["alice.zip", "bob.zip", "carol.zip",
                                              "manifest.csv"]
        with zipfile.ZipFile(io.BytesIO(archive.read("bob.zip"))) as inner:
            assert inner.namelist() == ["bob.p12", "bob-password.txt"]
    assert sorted(p.name for p in tmp_path.iterdir() if "all.zip" in p.name) == ["all.zip"]

    group = tmp_path / "sales.zip"
    cli.ok("cert", "download", "--out", str(group), "--group", "Sales")
    with zipfile.ZipFile(group) as archive:
        assert sorted(archive.namelist()) == ["bob.zip", "carol.zip", "manifest.csv"]


def test_cert_download_refuses_to_overwrite_without_force(ready_sqlite: Env, cli: Cli,
                                                          tmp_path: Path) -> None:
    cli.ok("cert", "issue", "alice")
    out = tmp_path / "certs.zip"
    out.write_bytes(b"keep me")
    assert "--force" in cli("cert", "download", "--out", str(out), "--all").error()
    assert out.read_bytes() == b"keep me"
    cli.ok("cert", "download", "--out", str(out), "--all", "--force")
    assert zipfile.is_zipfile(out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_cert_download_with_nothing_to_download_fails_and_writes_no_file(
        ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "none.zip"
    assert "no selected user has a valid certificate" in cli(
        "cert", "download", "--out", str(out), "--all").error()
    assert list(tmp_path.glob("*none.zip*")) == []


def test_hostile_logins_and_names_fail_with_one_clean_line(ready_sqlite: Env,
                                                           cli: Cli) -> None:
    for argv in (["../x", "--email", "x@example.com"],
                 ["a\x1b[31mb", "--email", "x@example.com"],
                 ["bob", "--email", "bob@example.com", "--name", "a\u202eb"],
                 ["bob", "--email", "bob@example.com", "--groups", "a\x07b"],
                 ["bob", "--email", "bob@example.com", "--groups", "x" * 10_240]):
        message = cli("user", "add", *argv).error()
        assert len(message) < 300
        assert not any(ord(ch) < 32 or ch == "\u202e" for ch in message), message
    assert logins(cli) == ["alice"]
