"""The data-protection key file read strictly: base64 with a stray character is a malformed
file, not a wrong passphrase; the authenticated header does not depend on the order in which
a JSON writer put its keys. (Survivors of the mutation pass over ca/sealing.py.)"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from ca import sealing
from ca.errors import ConfigError
from ca.sealing import DATA_PROTECTION_FILE

PASSPHRASE = "合言葉はさくら".encode()
KEY = bytes(range(32))
CHEAP = sealing.ScryptParams(n=2**10, r=8, p=1)


def wrapped() -> dict[str, object]:
    return json.loads(sealing.wrap_key(KEY, PASSPHRASE, kdf=CHEAP))


def unwrap(body: dict[str, object]) -> bytes:
    return sealing.unwrap_key(json.dumps(body).encode(), PASSPHRASE, path=Path("dp.key"),
                              passphrase_source="TEGATA_KEY_PASSPHRASE")


def with_stray_character(text: str) -> str:
    return text[:4] + "!" + text[4:]


@pytest.mark.parametrize("field", ["salt", "nonce", "wrapped"])
def test_a_stray_character_in_a_base64_field_is_an_unknown_format(field: str) -> None:
    body = wrapped()
    holder = body["kdf"] if field == "salt" else body
    assert isinstance(holder, dict)
    holder[field] = with_stray_character(holder[field])
    with pytest.raises(ConfigError, match="is not in a format this release reads"):
        unwrap(body)


def test_the_header_opens_whatever_order_its_keys_were_written_in() -> None:
    body = wrapped()
    reordered = json.loads(json.dumps(body, sort_keys=True))
    kdf = reordered["kdf"]
    reordered["kdf"] = dict(reversed(list(kdf.items())))
    reordered = dict(reversed(list(reordered.items())))
    assert list(reordered["kdf"]) != list(body["kdf"])  # type: ignore[arg-type]
    assert unwrap(reordered) == KEY


def test_a_key_in_the_clear_with_a_stray_character_is_refused_not_wrapped(
        tmp_path: Path) -> None:
    path = tmp_path / DATA_PROTECTION_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(with_stray_character(base64.b64encode(KEY).decode()).encode() + b"\n")
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="is not base64"):
        sealing.load_sealer(tmp_path, PASSPHRASE, passphrase_source="TEGATA_KEY_PASSPHRASE")
    assert path.read_bytes() == before


# --- the key file's life: created once, removed, and refused when others can read it ---------

def test_the_key_is_created_once_and_a_second_call_leaves_it_alone(tmp_path: Path) -> None:
    path = tmp_path / DATA_PROTECTION_FILE
    assert not sealing.is_unwrapped(tmp_path)  # no file yet: nothing in the clear either
    assert sealing.create_data_protection_key(tmp_path, PASSPHRASE) is True
    first = path.read_bytes()
    assert sealing.create_data_protection_key(tmp_path, PASSPHRASE) is False
    assert path.read_bytes() == first
    assert not sealing.is_unwrapped(tmp_path)


def test_removing_the_key_removes_it_and_may_be_asked_twice(tmp_path: Path) -> None:
    sealing.create_data_protection_key(tmp_path, PASSPHRASE)
    sealing.remove_data_protection_key(tmp_path)
    assert not (tmp_path / DATA_PROTECTION_FILE).exists()
    sealing.remove_data_protection_key(tmp_path)  # an initialisation cleaning up after itself
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_is_refused_before_it_is_read(tmp_path: Path,
                                                                 mode: int) -> None:
    sealing.create_data_protection_key(tmp_path, PASSPHRASE)
    path = tmp_path / DATA_PROTECTION_FILE
    path.chmod(mode)
    with pytest.raises(ConfigError, match=f"is readable by others \\(mode {mode:04o}\\)"):
        sealing.load_sealer(tmp_path, PASSPHRASE, passphrase_source="TEGATA_KEY_PASSPHRASE")
    with pytest.raises(ConfigError, match=f"is readable by others \\(mode {mode:04o}\\)"):
        sealing.check_passphrase(tmp_path, PASSPHRASE, passphrase_source="X")


def legacy_key(directory: Path) -> Path:
    """A data-protection key as releases before the wrapping wrote it: bare base64."""
    path = directory / DATA_PROTECTION_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(KEY) + b"\n")
    return path


def test_a_key_that_cannot_be_rewritten_leaves_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = legacy_key(tmp_path)

    def refuse(self: Path, target: object) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(ConfigError, match="cannot be rewritten \\(Permission denied\\)"):
        sealing.load_sealer(tmp_path, PASSPHRASE, passphrase_source="TEGATA_KEY_PASSPHRASE")
    assert [p.name for p in tmp_path.iterdir()] == [DATA_PROTECTION_FILE]
    assert sealing.is_unwrapped(tmp_path) and path.stat().st_mode & 0o777 == 0o600


def test_wrapping_a_key_in_place_leaves_no_descriptor_open(tmp_path: Path) -> None:
    legacy_key(tmp_path)
    before = len(os.listdir("/proc/self/fd"))
    sealing.load_sealer(tmp_path, PASSPHRASE, passphrase_source="TEGATA_KEY_PASSPHRASE")
    assert len(os.listdir("/proc/self/fd")) == before
    assert not sealing.is_unwrapped(tmp_path)


def test_a_key_whose_rewrite_cannot_even_start_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    legacy_key(tmp_path)

    def full(path: Path, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sealing, "write_private_file", full)
    with pytest.raises(ConfigError, match="cannot be rewritten \\(No space left on device\\)"):
        sealing.load_sealer(tmp_path, PASSPHRASE, passphrase_source="TEGATA_KEY_PASSPHRASE")
    assert [p.name for p in tmp_path.iterdir()] == [DATA_PROTECTION_FILE]
