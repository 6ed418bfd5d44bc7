"""Key material at rest: sealed with AES-256-GCM under a data-protection key kept in the key
directory, never in the database. The associated data binds each sealed blob to its purpose
and certificate, so a blob copied onto another row does not open."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ca.errors import ConfigError
from ca.signer import check_private_file, write_private_file

DATA_PROTECTION_FILE = "data-protection.key"
_VERSION = b"\x01"


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("the data-protection key must be 32 bytes")
        self.__aead = AESGCM(key)

    def __repr__(self) -> str:
        return "<Sealer>"

    def seal(self, plaintext: bytes, *, context: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self.__aead.encrypt(nonce, plaintext, context.encode())

    def open(self, sealed: bytes, *, context: str) -> bytes:
        if sealed[:1] != _VERSION or len(sealed) < 29:
            raise ConfigError("sealed key material has an unknown format")
        try:
            return self.__aead.decrypt(sealed[1:13], sealed[13:], context.encode())
        except InvalidTag:
            raise ConfigError("sealed key material does not open with this data-protection key"
                              " (wrong key directory, or the row was tampered with)") from None


def create_data_protection_key(directory: Path) -> bool:
    """Create the data-protection key unless it exists; True when this call created it."""
    path = directory / DATA_PROTECTION_FILE
    if path.exists():
        return False
    write_private_file(path, base64.b64encode(os.urandom(32)) + b"\n")
    return True


def remove_data_protection_key(directory: Path) -> None:
    (directory / DATA_PROTECTION_FILE).unlink(missing_ok=True)


def load_sealer(directory: Path) -> Sealer:
    path = directory / DATA_PROTECTION_FILE
    check_private_file(path, what="data-protection key")
    try:
        key = base64.b64decode(path.read_bytes().strip(), validate=True)
    except ValueError:
        raise ConfigError(f"data-protection key {path} is not base64") from None
    return Sealer(key)
