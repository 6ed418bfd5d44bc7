"""``tegata init`` and ``tegata tenant create`` with a CA key in a PKCS#11 token (SoftHSM2):
the options, the settings they stand for, and bad input told in one line, nothing made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pkcs11 import Attribute

from ca.token import TokenStore, finalize_modules
from tests.support.cli import Cli, Env
from tests.support.softhsm import SoftToken, make_token


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SoftToken]:
    made = make_token(tmp_path / "hsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(made.conf))
    yield made
    finalize_modules()


def token_labels(token: SoftToken) -> set[str]:
    with TokenStore(token.access())._open() as session:
        return {str(o[Attribute.LABEL]) for o in session.get_objects({})}


def test_init_and_tenant_create_put_the_ca_keys_in_the_token(
        sqlite_env: Env, cli: Cli, token: SoftToken, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.ok("init", "--key-type", "ec-p256", "--pkcs11-module", str(token.module),
           "--pkcs11-token", token.label, "--pin-file", str(token.pin_file))
    for name, value in token.env().items():
        monkeypatch.setenv(name, value)
    cli.ok("tenant", "create", "kansai", "--key-type", "ec-p384", "--pkcs11-token", token.label)
    rows = sqlite_env.dump()["authorities"]
    assert {(r["kind"], r["key_store"], r["key_token"]) for r in rows} == {
        ("root", "pkcs11", token.label), ("issuing", "pkcs11", token.label)}
    assert token_labels(token) == {r["key_id"] for r in rows}
    assert sqlite_env.key_files() == ["data-protection.key"]


def test_token_options_without_a_token_label_are_refused(sqlite_env: Env, cli: Cli,
                                                         token: SoftToken) -> None:
    result = cli("init", "--pkcs11-module", str(token.module), "--pin-file",
                 str(token.pin_file))
    assert result.code == 2
    assert result.error() == "--pkcs11-module and --pin-file go with --pkcs11-token"
    assert not (sqlite_env.data_dir / "tegata.db").exists()


def test_a_pin_file_others_can_read_stops_init_with_exit_78(sqlite_env: Env, cli: Cli,
                                                            token: SoftToken) -> None:
    token.pin_file.chmod(0o640)
    result = cli("init", "--pkcs11-module", str(token.module), "--pkcs11-token", token.label,
                 "--pin-file", str(token.pin_file))
    assert result.code == 78
    assert result.error() == (f"TEGATA_PKCS11_PIN_FILE: {token.pin_file} is readable by "
                              f"others (mode 0640); run chmod 600 {token.pin_file}")
    assert token.pin not in result.out + result.err
    assert token_labels(token) == set()


def test_an_absent_token_stops_init_before_anything_is_made(sqlite_env: Env, cli: Cli,
                                                            token: SoftToken) -> None:
    result = cli("init", "--pkcs11-module", str(token.module), "--pkcs11-token", "absent",
                 "--pin-file", str(token.pin_file))
    assert result.code == 78
    assert result.error() == f"PKCS#11 token 'absent' is not present in {token.module}"
    assert not (sqlite_env.data_dir / "tegata.db").exists()


def test_a_token_asked_for_where_no_module_or_pin_file_is_configured_exits_78(
        sqlite_env: Env, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli.ok("init", "--key-type", "ec-p256")
    for name in ("TEGATA_PKCS11_MODULE", "TEGATA_PKCS11_PIN_FILE"):
        monkeypatch.delenv(name, raising=False)
    result = cli("tenant", "create", "kansai", "--pkcs11-token", "tegata-ca")
    assert result.code == 78
    assert result.error() == (
        "a CA key in PKCS#11 token 'tegata-ca' was asked for, and no PKCS#11 module and PIN "
        "file are configured (give --pkcs11-module and --pin-file, or set "
        "TEGATA_PKCS11_MODULE and TEGATA_PKCS11_PIN_FILE)")
    assert {r["kind"] for r in sqlite_env.dump()["authorities"]} == {"root", "issuing"}
    assert len(sqlite_env.dump()["authorities"]) == 2


def test_a_token_with_a_utf8_label_holds_the_ca_keys(
        sqlite_env: Env, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = make_token(tmp_path / "utf8-hsm", label="日本語トークン")
    monkeypatch.setenv("SOFTHSM2_CONF", str(token.conf))
    try:
        cli.ok("init", "--key-type", "ec-p256", "--pkcs11-module", str(token.module),
               "--pkcs11-token", token.label, "--pin-file", str(token.pin_file))
        rows = sqlite_env.dump()["authorities"]
        assert {(r["kind"], r["key_store"], r["key_token"]) for r in rows} == {
            ("root", "pkcs11", "日本語トークン"), ("issuing", "pkcs11", "日本語トークン")}
        assert token_labels(token) == {r["key_id"] for r in rows}
    finally:
        finalize_modules()


def test_a_restore_whose_token_is_not_set_or_lacks_the_keys_writes_nothing(
        tmp_path: Path, sqlite_env: Env, cli: Cli, token: SoftToken,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cli.ok("init", "--key-type", "ec-p256", "--pkcs11-module", str(token.module),
           "--pkcs11-token", token.label, "--pin-file", str(token.pin_file))
    for name, value in token.env().items():
        monkeypatch.setenv(name, value)
    key = tmp_path / "backup.key"
    cli.ok("backup", "keygen", "--out", str(key))
    backup = tmp_path / "b.tgbk"
    cli.ok("backup", "--out", str(backup), "--key-file", str(key))
    target = tmp_path / "target"
    monkeypatch.setenv("TEGATA_DATA_DIR", str(target))

    def refused_and_untouched() -> str:
        result = cli("restore", str(backup), "--key-file", str(key))
        assert result.code == 78
        assert not (target / "tegata.db").exists() or Env(target, None).dump().get(
            "authorities", []) == []
        assert not (target / "keys").exists() or not any((target / "keys").iterdir())
        return result.error()

    with monkeypatch.context() as unset:
        unset.delenv("TEGATA_PKCS11_MODULE")
        unset.delenv("TEGATA_PKCS11_PIN_FILE")
        assert "TEGATA_PKCS11_MODULE" in refused_and_untouched()

    fresh = make_token(tmp_path / "hsm-fresh")  # the same label, none of the keys
    with monkeypatch.context() as elsewhere:
        for name, value in fresh.env().items():
            elsewhere.setenv(name, value)
        assert refused_and_untouched().startswith(
            f"PKCS#11 token {token.label!r} has no CA key ")
    finalize_modules()

    cli.ok("restore", str(backup), "--key-file", str(key))  # the token with the keys: done
    assert {r["key_store"] for r in Env(target, None).dump()["authorities"]} == {"pkcs11"}
