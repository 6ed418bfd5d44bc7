"""The data-protection key at rest: wrapped under the CA key passphrase
(scrypt, AES-256-GCM) in a versioned file that records the KDF's parameters; the file holds
no form of the key; a wrong passphrase or an altered file opens nothing; a key written by an
earlier release (bare base64) is wrapped in place, and only under the right passphrase."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ca import sealing
from ca.errors import ConfigError
from ca.sealing import DATA_PROTECTION_FILE, Sealer
from ca.signer import FileKeyStore
from tests.support.environment import PRODUCTION_KDF

PASSPHRASE = b"correct horse battery staple"
KEY = bytes(range(32))


def forms(key: bytes) -> list[bytes]:
    """Every way the key could sit in a file: raw, base64 (both alphabets), hex."""
    return [key, base64.b64encode(key), base64.urlsafe_b64encode(key).rstrip(b"="),
            key.hex().encode(), key.hex().upper().encode()]


def test_the_key_is_wrapped_with_scrypt_at_128_mib_as_the_release_ships_it() -> None:
    assert (PRODUCTION_KDF.n, PRODUCTION_KDF.r, PRODUCTION_KDF.p) == (2**17, 8, 1)
    data = sealing.wrap_key(KEY, PASSPHRASE, kdf=PRODUCTION_KDF)
    body = json.loads(data)
    assert set(body) == {"format", "version", "cipher", "kdf", "nonce", "wrapped"}
    assert (body["format"], body["version"], body["cipher"]) == (
        "tegata-data-protection-key", 2, "AES-256-GCM")
    assert {k: v for k, v in body["kdf"].items() if k != "salt"} == {
        "name": "scrypt", "n": 131072, "r": 8, "p": 1}
    assert len(base64.b64decode(body["kdf"]["salt"])) == 16
    assert sealing.unwrap_key(data, PASSPHRASE, path=Path("k"), passphrase_source="X") == KEY
    assert not any(form in data for form in forms(KEY))


def test_two_wrappings_of_one_key_share_no_salt_nonce_or_ciphertext() -> None:
    one, two = (json.loads(sealing.wrap_key(KEY, PASSPHRASE)) for _ in range(2))
    assert {k: one[k] == two[k] for k in ("nonce", "wrapped")} == {"nonce": False,
                                                                   "wrapped": False}
    assert one["kdf"]["salt"] != two["kdf"]["salt"]


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        target = body
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _flip(body: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(body["wrapped"]))
    raw[0] ^= 1
    body["wrapped"] = base64.b64encode(bytes(raw)).decode()


WRONG = "data-protection key {path}: wrong passphrase (TEGATA_KEY_PASSPHRASE) or the file " \
        "was altered"
UNKNOWN = "data-protection key {path} is not in a format this release reads"
ALTERATIONS = {
    "wrong-passphrase": (None, WRONG),
    "ciphertext": (_flip, WRONG),
    "salt": (_set(("kdf", "salt"), base64.b64encode(b"\0" * 16).decode()), WRONG),
    "cost": (_set(("kdf", "n"), 2**11), WRONG),
    "version": (_set(("version",), 1), UNKNOWN),
    "format": (_set(("format",), "something-else"), UNKNOWN),
    "kdf-name": (_set(("kdf", "name"), "pbkdf2"), UNKNOWN),
    "short-nonce": (_set(("nonce",), base64.b64encode(b"\0" * 8).decode()), UNKNOWN),
    "not-base64": (_set(("wrapped",), "***"), UNKNOWN),
}


@pytest.mark.parametrize("case", list(ALTERATIONS), ids=list(ALTERATIONS))
def test_a_wrong_passphrase_or_an_altered_file_opens_nothing(case: str, tmp_path: Path) -> None:
    change, message = ALTERATIONS[case]
    body = json.loads(sealing.wrap_key(KEY, PASSPHRASE))
    passphrase = PASSPHRASE
    if change is None:
        passphrase = b"correct horse battery stapler"
    else:
        change(body)
    path = tmp_path / DATA_PROTECTION_FILE
    with pytest.raises(ConfigError) as refused:
        sealing.unwrap_key(json.dumps(body).encode(), passphrase, path=path,
                           passphrase_source="TEGATA_KEY_PASSPHRASE")
    assert refused.value.message == message.format(path=path)


def test_a_file_asking_for_gigabytes_of_scrypt_is_refused_before_any_work() -> None:
    body = json.loads(sealing.wrap_key(KEY, PASSPHRASE))
    body["kdf"]["n"] = 2**24
    with pytest.raises(ConfigError) as refused:
        sealing.unwrap_key(json.dumps(body).encode(), PASSPHRASE, path=Path("k"),
                           passphrase_source="X")
    assert refused.value.message == (
        "scrypt parameters n=16777216 r=8 p=1 are out of range (n a power of two "
        "2^10..2^20, r 1..32, p 1..16, at most 1 GiB)")


# --- the key an earlier release wrote ----------------------------------------------------------


@pytest.fixture
def earlier_release(tmp_path: Path) -> Path:
    """A key directory as releases before this one left it: a CA key under the passphrase
    and the data-protection key in bare base64 beside it."""
    directory = tmp_path / "keys"
    store = FileKeyStore(directory, PASSPHRASE, passphrase_source="TEGATA_KEY_PASSPHRASE")
    store.create("root-0123456789abcdef", ec.generate_private_key(ec.SECP256R1()))
    fd = os.open(directory / DATA_PROTECTION_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(KEY) + b"\n")
    return directory


def test_a_key_left_in_the_clear_by_an_earlier_release_is_wrapped_on_first_load(
        earlier_release: Path) -> None:
    sealed = Sealer(KEY).seal(b"alice's key", context="key:5A1F")
    assert sealing.is_unwrapped(earlier_release)

    sealer = sealing.load_sealer(earlier_release, PASSPHRASE,
                                 passphrase_source="TEGATA_KEY_PASSPHRASE")

    assert sealer.open(sealed, context="key:5A1F") == b"alice's key"
    path = earlier_release / DATA_PROTECTION_FILE
    data = path.read_bytes()
    assert not sealing.is_unwrapped(earlier_release)
    assert json.loads(data)["version"] == 2
    assert not any(form in data for form in forms(KEY))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in earlier_release.iterdir()) == [
        DATA_PROTECTION_FILE, "root-0123456789abcdef.key.pem"]  # no temporary file left
    again = sealing.load_sealer(earlier_release, PASSPHRASE, passphrase_source="X")
    assert again.open(sealed, context="key:5A1F") == b"alice's key"


def test_a_key_in_the_clear_is_never_wrapped_under_a_passphrase_that_opens_no_ca_key(
        earlier_release: Path) -> None:
    before = (earlier_release / DATA_PROTECTION_FILE).read_bytes()
    with pytest.raises(ConfigError) as refused:
        sealing.load_sealer(earlier_release, b"a mistyped passphrase",
                            passphrase_source="TEGATA_KEY_PASSPHRASE")
    assert refused.value.message == (
        f"CA key file {earlier_release / 'root-0123456789abcdef.key.pem'}: wrong passphrase "
        "(TEGATA_KEY_PASSPHRASE); the data-protection key is wrapped only under the right one")
    assert (earlier_release / DATA_PROTECTION_FILE).read_bytes() == before
