"""Key material at rest: sealed with AES-256-GCM under a data-protection key kept in the key
directory, never in the database. The associated data binds each sealed blob to its purpose
and certificate, so a blob copied onto another row does not open.

The data-protection key itself is stored wrapped under the CA key passphrase (a key
derived with scrypt, then AES-256-GCM), so the data directory and the key directory together
open nothing without the passphrase. The file is one JSON object that names its format, its
version and the KDF's parameters::

    {"format": "tegata-data-protection-key", "version": 2, "cipher": "AES-256-GCM",
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<base64>"},
     "nonce": "<base64>", "wrapped": "<base64>"}

Version 1 (releases before this one) was the bare key in base64; it is wrapped in place the
first time it is loaded with the passphrase.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ca.errors import ConfigError
from ca.signer import KEY_SUFFIX, check_private_file, write_private_file

DATA_PROTECTION_FILE = "data-protection.key"
_VERSION = b"\x01"
FILE_FORMAT = "tegata-data-protection-key"
FILE_VERSION = 2
CIPHER = "AES-256-GCM"


@dataclass(frozen=True, kw_only=True)
class ScryptParams:
    """scrypt's cost: memory is 128 * n * r bytes, time grows with n * r * p."""

    n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        # bounds for what a file may ask of us: a tampered file must not claim gigabytes
        if not (2**10 <= self.n <= 2**20 and self.n & (self.n - 1) == 0
                and 1 <= self.r <= 32 and 1 <= self.p <= 16 and 128 * self.n * self.r <= 2**30):
            raise ConfigError(f"scrypt parameters n={self.n} r={self.r} p={self.p} are out of "
                              "range (n a power of two 2^10..2^20, r 1..32, p 1..16, "
                              "at most 1 GiB)")

    def derive(self, passphrase: bytes, salt: bytes) -> bytes:
        return Scrypt(salt=salt, length=32, n=self.n, r=self.r, p=self.p).derive(passphrase)


# 128 MiB and about a quarter of a second, paid once per process start (OWASP's scrypt
# recommendation, 2023)
KDF = ScryptParams(n=2**17, r=8, p=1)


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

    # A client key and its bundle password are sealed under the certificate's serial, so a
    # sealed value moved to another row does not open (the AAD binds it to its certificate).

    def seal_key_material(self, key_der: bytes, password: str, *,
                          serial: str) -> tuple[bytes, bytes]:
        """(sealed key, sealed password) of the certificate ``serial``."""
        return (self.seal(key_der, context=f"key:{serial}"),
                self.seal(password.encode(), context=f"password:{serial}"))

    def open_key_material(self, sealed_key: bytes, sealed_password: bytes, *,
                          serial: str) -> tuple[bytes, str]:
        """(key DER, password) sealed by ``seal_key_material`` for ``serial``."""
        return (self.open(sealed_key, context=f"key:{serial}"),
                self.open(sealed_password, context=f"password:{serial}").decode())


def wrap_key(key: bytes, passphrase: bytes, *, kdf: ScryptParams | None = None) -> bytes:
    """The file's content: ``key`` under a key derived from ``passphrase`` with a fresh salt."""
    kdf = kdf or KDF
    salt, nonce = os.urandom(16), os.urandom(12)
    header: dict[str, Any] = {
        "format": FILE_FORMAT, "version": FILE_VERSION, "cipher": CIPHER,
        "kdf": {"name": "scrypt", "n": kdf.n, "r": kdf.r, "p": kdf.p,
                "salt": base64.b64encode(salt).decode()}}
    wrapped = AESGCM(kdf.derive(passphrase, salt)).encrypt(nonce, key, _aad(header))
    body = {**header, "nonce": base64.b64encode(nonce).decode(),
            "wrapped": base64.b64encode(wrapped).decode()}
    return json.dumps(body, indent=1).encode() + b"\n"


def unwrap_key(data: bytes, passphrase: bytes, *, path: Path, passphrase_source: str) -> bytes:
    """The data-protection key from a wrapped file's content; ``ConfigError`` when the
    passphrase is wrong, the file was altered or its format is not one we know."""
    unknown = ConfigError(f"data-protection key {path} is not in a format this release "
                          "reads")
    try:
        body = json.loads(data)
        header = {k: body[k] for k in ("format", "version", "cipher", "kdf")}
        spec = header["kdf"]
        if (header["format"], header["version"], header["cipher"], spec["name"]) != (
                FILE_FORMAT, FILE_VERSION, CIPHER, "scrypt"):
            raise unknown
        kdf = ScryptParams(n=int(spec["n"]), r=int(spec["r"]), p=int(spec["p"]))
        salt = base64.b64decode(spec["salt"], validate=True)
        nonce = base64.b64decode(body["nonce"], validate=True)
        wrapped = base64.b64decode(body["wrapped"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise unknown from None
    if len(salt) < 16 or len(nonce) != 12:
        raise unknown
    try:
        return AESGCM(kdf.derive(passphrase, salt)).decrypt(nonce, wrapped, _aad(header))
    except InvalidTag:
        raise ConfigError(f"data-protection key {path}: wrong passphrase ({passphrase_source})"
                          " or the file was altered") from None


def _aad(header: dict[str, Any]) -> bytes:
    # the format, version and KDF parameters are authenticated with the key
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def create_data_protection_key(directory: Path, passphrase: bytes) -> bool:
    """Create the data-protection key, wrapped under ``passphrase``, unless it exists; True
    when this call created it."""
    path = directory / DATA_PROTECTION_FILE
    if path.exists():
        return False
    write_private_file(path, wrap_key(os.urandom(32), passphrase))
    return True


def remove_data_protection_key(directory: Path) -> None:
    (directory / DATA_PROTECTION_FILE).unlink(missing_ok=True)


def is_unwrapped(directory: Path) -> bool:
    """True when the key directory holds a data-protection key of version 1 (bare base64)."""
    path = directory / DATA_PROTECTION_FILE
    try:
        return not path.read_bytes().lstrip().startswith(b"{")
    except FileNotFoundError:
        return False


def load_sealer(directory: Path, passphrase: bytes, *, passphrase_source: str) -> Sealer:
    """The sealer, its key unwrapped with ``passphrase``. A version 1 key (bare base64, as
    earlier releases wrote it) is wrapped in place first, so it is on disk in the clear no
    longer than until this start; but only under the passphrase that opens the CA keys
    beside it, never under a mistyped one that nobody could give again."""
    path = directory / DATA_PROTECTION_FILE
    check_private_file(path, what="data-protection key")
    data = path.read_bytes()
    if data.lstrip().startswith(b"{"):
        return Sealer(unwrap_key(data, passphrase, path=path,
                                 passphrase_source=passphrase_source))
    try:
        key = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        raise ConfigError(f"data-protection key {path} is not base64") from None
    sealer = Sealer(key)
    _check_ca_passphrase(directory, passphrase, passphrase_source)
    _replace_private_file(path, wrap_key(key, passphrase))
    return sealer


def check_passphrase(directory: Path, passphrase: bytes, *, passphrase_source: str) -> None:
    """``ConfigError`` unless ``passphrase`` opens the data-protection key (or, for one an
    earlier release left in the clear, the CA keys beside it), as ``load_sealer`` would;
    nothing is written. For steps that must not begin under a wrong passphrase (the
    migrations of ``tegata db upgrade``, which would otherwise run before the wrapping
    fails)."""
    path = directory / DATA_PROTECTION_FILE
    if path.exists():
        check_private_file(path, what="data-protection key")
        data = path.read_bytes()
        if data.lstrip().startswith(b"{"):
            unwrap_key(data, passphrase, path=path, passphrase_source=passphrase_source)
            return
    _check_ca_passphrase(directory, passphrase, passphrase_source)


def _check_ca_passphrase(directory: Path, passphrase: bytes, source: str) -> None:
    for path in sorted(directory.glob(f"*{KEY_SUFFIX}"))[:1]:
        try:
            serialization.load_pem_private_key(path.read_bytes(), passphrase)
        except (ValueError, TypeError):
            raise ConfigError(f"CA key file {path}: wrong passphrase ({source}); the "
                              "data-protection key is wrapped only under the right one") from None


def _replace_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` (0600) and rename it over ``path``: a reader sees the
    old file or the new one, never half of either."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        write_private_file(temporary, data)
        temporary.replace(path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"data-protection key {path} must be wrapped under the passphrase "
                          f"but cannot be rewritten ({exc.strerror}): make the key directory "
                          "writable for one start") from None
