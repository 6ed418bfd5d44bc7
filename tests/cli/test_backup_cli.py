"""`tegata backup`, `backup verify`, `backup keygen`, `restore` and the replay, driven as an
operator would: a changed, cut or foreign backup and a wrong key are refused with nothing
written; a non-empty target is refused and left as it was; generations are kept exactly;
no secret reaches the output."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ca import backupfile
from ca.errors import InvalidInput
from tests.support.cli import Cli, Env, as_json, issue
from tests.support.environment import PASSPHRASE


def keygen(cli: Cli, tmp_path: Path) -> Path:
    key = tmp_path / "backup.key"
    cli.ok("backup", "keygen", "--out", str(key))
    assert key.stat().st_mode & 0o777 == 0o600
    return key


def backup(cli: Cli, tmp_path: Path, key: Path) -> Path:
    out = tmp_path / "one.tgbk"
    cli.ok("backup", "--out", str(out), "--key-file", str(key))
    return out


def elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Env:
    """Point the CLI at a new, empty deployment (the embedded SQLite in a new directory)."""
    target = Env(data_dir=tmp_path / "target", database_url=None)
    monkeypatch.setenv("TEGATA_DATA_DIR", str(target.data_dir))
    monkeypatch.delenv("TEGATA_DATABASE_URL", raising=False)
    return target


def test_a_backup_restores_into_an_empty_deployment(ready: Env, cli: Cli, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    serial = issue(cli)["serial"]
    key = keygen(cli, tmp_path)
    out = backup(cli, tmp_path, key)
    assert out.stat().st_mode & 0o777 == 0o600
    shown = as_json(cli, "backup", "verify", str(out), "--key-file", str(key))
    assert shown["rows"]["certificates"] == 1 and shown["rows"]["users"] == 1
    assert {(ca["kind"], ca["tenant"]) for ca in shown["cas"]} == {
        ("root", None), ("issuing", "default")}
    assert shown["files"] == ready.key_files()

    target = elsewhere(monkeypatch, tmp_path)
    monkeypatch.setenv("TEGATA_PUBLIC_BASE_URL", "https://moved.example.com")
    restored = cli.ok("restore", str(out), "--key-file", str(key))
    assert f"made after {shown['taken_at']} are not in the database" in restored.out
    assert (f"setting public_base_url: the backup's {shown['settings']['public_base_url']!r}, "
            "this deployment's 'https://moved.example.com'") in restored.out
    assert target.key_files() == ready.key_files()
    assert {(target.key_dir / f).stat().st_mode & 0o777 for f in target.key_files()} == {0o600}
    listed = as_json(cli, "cert", "list")
    assert [c["serial"] for c in listed] == [serial]
    issue(cli)  # the restored deployment issues


def test_a_changed_cut_or_foreign_backup_and_a_wrong_key_are_refused(
        ready_sqlite: Env, cli: Cli, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    key = keygen(cli, tmp_path)
    out = backup(cli, tmp_path, key)
    data = out.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2 + backupfile.HEADER_BYTES // 2] ^= 0x01
    other_key = tmp_path / "other.key"
    cli.ok("backup", "keygen", "--out", str(other_key))
    loose_key = tmp_path / "loose.key"
    loose_key.write_bytes(key.read_bytes())
    loose_key.chmod(0o644)
    cases = {  # the file, the key, the exit code, the words of the message
        "altered": (bytes(flipped), key, 2, "damaged or was altered"),
        "cut": (data[:-7], key, 2, "cut short"),
        "last part dropped": (data[:backupfile.HEADER_BYTES], key, 2, "cut short"),
        "extended": (data + data[backupfile.HEADER_BYTES:], key, 2, "data follows"),
        "foreign": (b"PK\x03\x04" + data[4:], key, 2, "not a Tegata backup"),
        "wrong key": (data, other_key, 78, "not made with this backup key"),
        "readable key": (data, loose_key, 78, "readable by others"),
    }
    target = elsewhere(monkeypatch, tmp_path)
    for name, (content, key_file, code, words) in cases.items():
        candidate = tmp_path / f"{name}.tgbk"
        candidate.write_bytes(content)
        for argv in (["backup", "verify"], ["restore"]):
            result = cli(*argv, str(candidate), "--key-file", str(key_file))
            assert result.code == code, (name, argv, result.err)
            assert words in result.error(), (name, result.err)
        assert not target.data_dir.exists(), name  # nothing written, not even a database
    assert cli("backup", "verify", str(out), "--key-file", str(key)).code == 0  # the control


def test_a_non_empty_target_is_refused_and_left_as_it_was(ready: Env, cli: Cli,
                                                           tmp_path: Path) -> None:
    issue(cli)
    key = keygen(cli, tmp_path)
    out = backup(cli, tmp_path, key)
    rows, keys = ready.dump(), {f: (ready.key_dir / f).read_bytes() for f in ready.key_files()}
    result = cli("restore", str(out), "--key-file", str(key))
    assert result.code == 1
    assert "is not empty" in result.error()
    assert ready.dump() == rows
    assert {f: (ready.key_dir / f).read_bytes() for f in ready.key_files()} == keys


def test_an_empty_database_with_a_key_file_left_is_not_empty(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = keygen(cli, tmp_path)
    out = backup(cli, tmp_path, key)
    target = elsewhere(monkeypatch, tmp_path)
    target.key_dir.mkdir(parents=True)
    (target.key_dir / "stray.key.pem").write_bytes(b"x")
    result = cli("restore", str(out), "--key-file", str(key))
    assert result.code == 1 and "key directory" in result.error()
    assert target.key_files() == ["stray.key.pem"]
    assert not (target.data_dir / "tegata.db").exists()


def test_a_directory_keeps_exactly_the_newest_generations(ready_sqlite: Env, cli: Cli,
                                                          tmp_path: Path) -> None:
    key = keygen(cli, tmp_path)
    directory = tmp_path / "nightly"
    directory.mkdir()
    (directory / "notes.txt").write_text("kept")
    made = []
    for _ in range(5):
        result = as_json(cli, "backup", "--dir", str(directory), "--keep", "3",
                         "--key-file", str(key))
        made.append(Path(result["file"]).name)
    assert made == sorted(made) and len(set(made)) == 5  # name order is time order
    assert sorted(p.name for p in directory.iterdir()) == sorted([*made[2:], "notes.txt"])


def test_a_missing_directory_is_made_private_and_a_file_in_its_place_is_refused(
        ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    key = keygen(cli, tmp_path)
    directory = tmp_path / "バックアップ" / "nightly"  # the first night: neither exists yet
    result = as_json(cli, "backup", "--dir", str(directory), "--key-file", str(key))
    assert [p.name for p in directory.iterdir()] == [Path(result["file"]).name]
    assert directory.stat().st_mode & 0o777 == 0o700
    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    refused = cli("backup", "--dir", str(taken), "--key-file", str(key))
    assert refused.code == 2 and "is not a directory" in refused.error()
    assert taken.read_text() == "not a directory"


def test_no_secret_reaches_the_output_or_the_file(ready_sqlite: Env, cli: Cli,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    key = keygen(cli, tmp_path)
    secret = base64.b64decode(key.read_bytes())
    outputs = [cli.ok("backup", "--out", str(tmp_path / "b.tgbk"), "--key-file", str(key)),
               cli.ok("backup", "verify", str(tmp_path / "b.tgbk"), "--key-file", str(key),
                      "--json")]
    wrong = tmp_path / "wrong.key"
    cli.ok("backup", "keygen", "--out", str(wrong))
    outputs.append(cli("backup", "verify", str(tmp_path / "b.tgbk"), "--key-file", str(wrong)))
    elsewhere(monkeypatch, tmp_path)
    outputs.append(cli.ok("restore", str(tmp_path / "b.tgbk"), "--key-file", str(key)))
    texts = [r.out + r.err for r in outputs]
    for secret_text in (key.read_text().strip(), wrong.read_text().strip(), PASSPHRASE,
                        secret.hex()):
        assert not any(secret_text in t for t in texts)
    content = (tmp_path / "b.tgbk").read_bytes()
    for plain in (b"alice@example.com", b"ENCRYPTED PRIVATE KEY", b"default"):
        assert plain not in content
    json.loads(outputs[1].out)  # the control: verify did print what it holds


def test_restore_replays_the_gateways_chain_crl(ready: Env, cli: Cli, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    kept, lost = issue(cli)["serial"], issue(cli)["serial"]
    key = keygen(cli, tmp_path)
    out = backup(cli, tmp_path, key)
    cli.ok("cert", "revoke", lost, "--reason", "keyCompromise")
    chain = tmp_path / "gateway-chain.pem"
    cli.ok("crl", "export", "--chain", "--out", str(chain))
    number = as_json(cli, "crl", "show")["number"]

    elsewhere(monkeypatch, tmp_path)
    result = as_json(cli, "restore", str(out), "--key-file", str(key),
                     "--replay-from", str(chain))
    entries = [e for r in result["replayed"] for e in r["entries"]]
    assert [(e["serial"], e["reason"], e["applied"]) for e in entries] == [
        (lost, "keyCompromise", True)]
    assert {r["number"] for r in result["replayed"]} >= {number}
    assert as_json(cli, "cert", "show", lost)["state"] == "revoked"
    assert as_json(cli, "cert", "show", kept)["state"] == "valid"
    assert as_json(cli, "crl", "show")["number"] > number


def test_replay_after_the_fact_and_a_foreign_crl_is_refused(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lost = issue(cli)["serial"]
    key = keygen(cli, tmp_path)
    out = backup(cli, tmp_path, key)
    cli.ok("cert", "suspend", lost)
    crl = tmp_path / "default.crl"
    cli.ok("crl", "export", "--out", str(crl))
    foreign = tmp_path / "foreign.crl"
    foreign.write_bytes(crl.read_bytes())

    # another deployment's CRL: made by a CA of the same name, another key
    monkeypatch.setenv("TEGATA_DATA_DIR", str(tmp_path / "other"))
    cli.ok("init", "--key-type", "ec-p256")
    cli.ok("crl", "export", "--out", str(foreign), "--force")

    elsewhere(monkeypatch, tmp_path)
    restored = cli.ok("restore", str(out), "--key-file", str(key))
    assert "tegata backup replay" in restored.out
    before = as_json(cli, "crl", "show")
    refused = cli("backup", "replay", str(crl), str(foreign))
    assert refused.code == 2 and "no CA of this deployment signed it" in refused.error()
    assert as_json(cli, "cert", "show", lost)["state"] == "valid"  # nothing applied
    assert as_json(cli, "crl", "show") == before

    replayed = as_json(cli, "backup", "replay", str(crl))
    assert [(e["serial"], e["reason"]) for e in replayed[0]["entries"]] == [
        (lost, "certificateHold")]
    assert as_json(cli, "cert", "show", lost)["state"] == "suspended"
    assert as_json(cli, "crl", "show")["number"] > replayed[0]["number"]


def test_a_passphrase_that_does_not_open_the_backups_keys_changes_nothing(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = keygen(cli, tmp_path)
    out = backup(cli, tmp_path, key)
    target = elsewhere(monkeypatch, tmp_path)
    monkeypatch.setenv("TEGATA_KEY_PASSPHRASE", "another-passphrase-entirely")
    result = cli("restore", str(out), "--key-file", str(key))
    assert result.code == 78
    assert "wrong passphrase" in result.error()
    assert result.error() == (f"data-protection key {out}'s data-protection.key: wrong "
                              "passphrase (TEGATA_KEY_PASSPHRASE) or the file was altered")
    assert "tegata-restore-" not in result.err
    assert "another-passphrase-entirely" not in result.err
    assert not target.data_dir.exists()


def test_a_backup_named_before_existing_generations_is_kept_with_a_warning(
        ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    # the clock went back (or generations were copied in): 20 names sort after "now"
    key = keygen(cli, tmp_path)
    directory = tmp_path / "nightly"
    directory.mkdir()
    future = [f"tegata-backup-2999010{n // 10}T0000000000{n % 10}0Z.tgbk" for n in range(20)]
    for name in future:
        (directory / name).write_bytes(b"an older generation")
    result = cli.ok("backup", "--dir", str(directory), "--key-file", str(key), "--json")
    made = Path(json.loads(result.out)["file"]).name
    assert made < min(future)
    assert json.loads(result.out)["removed"] == [future[0]]  # default --keep 20
    assert sorted(p.name for p in directory.iterdir()) == sorted([made, *future[1:]])
    assert result.err.count("\n") == 1 and "did the clock go back?" in result.err
    assert f"20 backup(s) in {directory} are named after this one" in result.err
    cli.ok("backup", "verify", str(directory / made), "--key-file", str(key))

    kept_one = cli.ok("backup", "--dir", str(directory), "--keep", "1",
                      "--key-file", str(key), "--json")
    newest = Path(json.loads(kept_one.out)["file"]).name
    assert sorted(p.name for p in directory.iterdir()) == [newest]


def test_a_backup_is_on_disk_before_its_name_and_its_name_before_any_prune(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    key = keygen(cli, tmp_path)
    directory = tmp_path / "nightly"
    directory.mkdir()
    old = directory / "tegata-backup-20000101T000000000000Z.tgbk"
    old.write_bytes(b"an old generation")
    calls: list[tuple[str, object]] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, Path.unlink

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        size = path.stat().st_size if path.is_file() else None
        calls.append(("fsync", (path.name if path.is_file() else path, size)))
        real_fsync(fd)

    def replace(src: object, dst: object) -> None:
        calls.append(("replace", Path(str(dst)).name))
        real_replace(src, dst)  # type: ignore[arg-type]

    def unlink(self: Path, missing_ok: bool = False) -> None:
        calls.append(("unlink", self.name))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    result = as_json(cli, "backup", "--dir", str(directory), "--keep", "1",
                     "--key-file", str(key))
    made = Path(result["file"])
    size = made.stat().st_size
    at = calls.index(("replace", made.name))
    partial = f".{made.name}.partial"
    assert ("fsync", (partial, size)) in calls[:at]  # the content, after the last write
    assert ("fsync", (directory, None)) in calls[at + 1:]
    synced_dir = calls.index(("fsync", (directory, None)), at + 1)
    assert calls.index(("unlink", old.name)) > synced_dir  # pruned only after
    assert sorted(p.name for p in directory.iterdir()) == [made.name]


def test_a_replay_crl_of_another_deployment_is_refused_before_the_restore_writes(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    issue(cli)
    key = keygen(cli, tmp_path)
    out = backup(cli, tmp_path, key)
    foreign = tmp_path / "foreign.crl"
    monkeypatch.setenv("TEGATA_DATA_DIR", str(tmp_path / "other"))
    cli.ok("init", "--key-type", "ec-p256")  # a CA of the same name, another key
    cli.ok("crl", "export", "--out", str(foreign))

    target = elsewhere(monkeypatch, tmp_path)
    refused = cli("restore", str(out), "--key-file", str(key), "--replay-from", str(foreign))
    assert refused.code == 2
    assert refused.error().startswith(f"{foreign}: no CA of the backup signed it (issuer ")
    assert not target.data_dir.exists()  # nothing written
    cli.ok("restore", str(out), "--key-file", str(key))  # the target is still empty


def test_a_replay_that_fails_after_the_restore_says_the_restore_is_done(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ca.service import replay as replay_module

    lost = issue(cli)["serial"]
    key = keygen(cli, tmp_path)
    out = backup(cli, tmp_path, key)
    backed_up = as_json(cli, "backup", "verify", str(out), "--key-file", str(key))["rows"]["crls"]
    cli.ok("cert", "revoke", lost, "--reason", "keyCompromise")
    crl = tmp_path / "default.crl"
    cli.ok("crl", "export", "--out", str(crl))
    number = as_json(cli, "crl", "show")["number"]

    def broken(*args: object, **kwargs: object) -> list[object]:
        raise InvalidInput("the CRL's entry 1 is broken", field="replay_from")

    target = elsewhere(monkeypatch, tmp_path)
    with monkeypatch.context() as patched:
        patched.setattr(replay_module, "_apply", broken)  # passes the check, fails after
        failed = cli("restore", str(out), "--key-file", str(key), "--replay-from", str(crl))
    assert failed.code == 2
    assert failed.error() == (
        f"restored {out}; replay failed: the CRL's entry 1 is broken; the CRLs were "
        "published without it: run `tegata backup replay CRLFILE ...` once fixed")
    assert len(target.rows("crls")) == backed_up + 2  # the root and the issuing CA's, anew
    assert as_json(cli, "cert", "show", lost)["state"] == "valid"
    replayed = as_json(cli, "backup", "replay", str(crl))
    assert [(e["serial"], e["applied"]) for e in replayed[0]["entries"]] == [(lost, True)]
    assert as_json(cli, "crl", "show")["number"] > number


def test_a_replayed_entry_skipped_as_stale_is_listed_so() -> None:
    import datetime as dt

    from ca.service.replay import ReplayedCrl, ReplayedEntry
    from cli.backup import replayed_data, replayed_text

    at = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
    replayed = ReplayedCrl(name="stale.crl", ca="CN=Issuing", number=7, entries=(
        ReplayedEntry(ca="CN=Issuing", serial="0A", reason="certificateHold", date=at,
                      applied=False, login="alice", changed_after=True),
        ReplayedEntry(ca="CN=Issuing", serial="0B", reason="certificateHold", date=at,
                      applied=True, login="bob")))
    assert replayed_text(replayed).splitlines() == [
        "replayed stale.crl (CRL 7 of CN=Issuing): 1 applied again, 1 skipped (changed "
        "after this CRL)",
        "  0A (alice): certificateHold at 2026-03-02T10:00:00+00:00; skipped: changed after "
        "this CRL",
        "  0B (bob): certificateHold at 2026-03-02T10:00:00+00:00, applied again"]
    assert [e["skipped"] for e in replayed_data(replayed)["entries"]] == [
        "changed after this CRL", None]


def test_a_restore_killed_after_its_second_key_file_can_be_retried(
        ready_sqlite: Env, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import subprocess
    import sys

    key = keygen(cli, tmp_path)
    out = backup(cli, tmp_path, key)
    assert len(ready_sqlite.key_files()) >= 3
    target = elsewhere(monkeypatch, tmp_path)
    crash = tmp_path / "crash.py"
    crash.write_text(
        "import os, sys\n"
        "import ca.service.backups as backups\n"
        "real, written = backups.write_private_file, []\n"
        "def write(path, data):\n"
        "    real(path, data)\n"
        f"    if str(path).startswith({str(target.key_dir)!r}):\n"
        "        written.append(path)\n"
        "        if len(written) == 2:\n"
        "            os._exit(137)  # killed: no clean-up runs\n"
        "backups.write_private_file = write\n"
        "from cli.main import main\n"
        "main(sys.argv[1:])\n")
    killed = subprocess.run([sys.executable, str(crash), "restore", str(out), "--key-file",
                             str(key)], env=os.environ.copy(), capture_output=True,
                            timeout=120, check=False)
    assert killed.returncode == 137, killed.stderr
    assert target.key_files() == [".restore-in-progress"]  # no key file under its name
    assert len(list((target.key_dir / ".restore-in-progress").iterdir())) == 2

    cli.ok("restore", str(out), "--key-file", str(key))  # the retry clears what it left
    assert target.key_files() == ready_sqlite.key_files()
    issue(cli)

    # killed after the commit, before the renames: the refusal says what to do
    staging = target.key_dir / ".restore-in-progress"
    staging.mkdir()
    for name in target.key_files():
        if name != staging.name:
            (target.key_dir / name).rename(staging / name)
    message = (f"a restore was interrupted after its database commit: move the files of "
               f"{staging} into {target.key_dir}, remove that directory, and start the service")
    refused = cli("restore", str(out), "--key-file", str(key))
    assert refused.code == 1 and refused.error() == message
    # killed midway through the renames: some files in place, the rest staged
    (first, *_) = sorted(staging.iterdir())
    first.rename(target.key_dir / first.name)
    refused = cli("restore", str(out), "--key-file", str(key))
    assert refused.code == 1 and refused.error() == message


def test_backup_json_names_the_cas_as_verify_does(ready_sqlite: Env, cli: Cli,
                                                   tmp_path: Path) -> None:
    key = keygen(cli, tmp_path)
    made = as_json(cli, "backup", "--out", str(tmp_path / "b.tgbk"), "--key-file", str(key))
    verified = as_json(cli, "backup", "verify", str(tmp_path / "b.tgbk"), "--key-file", str(key))
    assert made["cas"] == verified["cas"]
    assert {(ca["kind"], ca["tenant"], ca["retired"]) for ca in made["cas"]} == {
        ("root", None, False), ("issuing", "default", False)}


def test_a_symlinked_key_file_is_refused(ready_sqlite: Env, cli: Cli, tmp_path: Path) -> None:
    key = keygen(cli, tmp_path)
    link = tmp_path / "link.key"
    link.symlink_to(key)
    result = cli("backup", "--out", str(tmp_path / "b.tgbk"), "--key-file", str(link))
    assert result.code == 78
    assert result.error() == (f"backup key file {link} is a symbolic link: give the key "
                              "file itself")
    assert not (tmp_path / "b.tgbk").exists()
