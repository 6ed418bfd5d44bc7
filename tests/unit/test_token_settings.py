"""The PKCS#11 settings told apart without a token: the PIN file keeps a PIN's blanks (only
one line ending is not the PIN's), the module setting empty, a directory or missing, and
token labels as PKCS#11 has them (32 bytes of UTF-8, no control character)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ca import validate
from ca.errors import ConfigError, InvalidInput
from ca.token import check_module, read_pin_file


@pytest.mark.parametrize(("written", "pin"), [
    (b" 12345678", " 12345678"), (b" 12345678 \n", " 12345678 "),
    (b"12345678\r\n", "12345678"), (b"12345678\n\n", "12345678\n"),
    (b"\t1234 5678\t", "\t1234 5678\t"), (b"12345678\r", "12345678\r"),
])
def test_the_pin_file_loses_only_one_trailing_line_ending(tmp_path: Path, written: bytes,
                                                          pin: str) -> None:
    path = tmp_path / "pin"
    path.write_bytes(written)
    path.chmod(0o600)
    assert read_pin_file(path, what="TEGATA_PKCS11_PIN_FILE:") == pin


def test_a_pin_file_of_a_line_ending_only_holds_no_pin(tmp_path: Path) -> None:
    path = tmp_path / "pin"
    path.write_bytes(b"123\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError) as caught:
        read_pin_file(path, what="TEGATA_PKCS11_PIN_FILE:")
    assert caught.value.message == (f"TEGATA_PKCS11_PIN_FILE: {path} holds no PIN of at "
                                    "least 4 characters")


def test_the_module_setting_is_told_empty_a_directory_or_missing(tmp_path: Path) -> None:
    told = {}
    for name, module in (("empty", Path("")), ("directory", tmp_path),
                         ("missing", tmp_path / "absent.so")):
        with pytest.raises(ConfigError) as caught:
            check_module(module)
        told[name] = (caught.value.message, caught.value.field)
    assert told == {
        "empty": ("PKCS#11 module setting TEGATA_PKCS11_MODULE is empty",
                  "TEGATA_PKCS11_MODULE"),
        "directory": (f"PKCS#11 module {tmp_path} is a directory, not a file",
                      "TEGATA_PKCS11_MODULE"),
        "missing": (f"PKCS#11 module {tmp_path / 'absent.so'} does not exist",
                    "TEGATA_PKCS11_MODULE")}


@pytest.mark.parametrize("label", ["tegata-ca", "日本語トークン", "a", "x" * 32, "鍵" * 10,
                                   "two words"])
def test_token_labels_of_up_to_32_bytes_of_utf8_are_accepted(label: str) -> None:
    assert validate.token_label(label) == label


@pytest.mark.parametrize("label", ["", "x" * 33, "鍵" * 11, " padded", "padded ", "tab\there",
                                   "new\nline", "nul\x00", "del\x7f", "c1\x85", "\ud800"])
def test_token_labels_too_long_padded_or_with_control_characters_are_refused(
        label: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate.token_label(label)
    assert caught.value.field == "pkcs11_token"
    assert caught.value.message.endswith(
        " must be 1-32 bytes of UTF-8 without control characters, not starting or ending "
        "with a space")
