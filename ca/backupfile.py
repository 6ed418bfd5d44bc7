"""The backup file: an authenticated, encrypted stream of JSON records (pure: it reads and
writes the handles it is given, and knows nothing of databases).

    header   b"TEGATA-BACKUP\\0" | version (1) | salt (32) | nonce prefix (7) | key check (16)
    chunk*   length (4, big-endian) | AES-256-GCM ciphertext and tag of at most CHUNK bytes

The file key is HKDF-SHA256(the operator's 32-byte key, salt): every file has its own, so a
nonce never repeats under one key whatever the number of backups. Chunk ``i`` is sealed with
the nonce ``prefix | i (4) | last (1)`` and the whole header as associated data (the STREAM
construction of Hoang, Reyhanitabar, Rogaway and Vizár): a chunk moved, dropped, repeated or
taken from another file fails its tag, and a file cut after any chunk lacks the one marked
last, so truncation is detected as surely as tampering. The key check (HMAC-SHA256 of the
salt under the operator's key, cut to 16 bytes) tells a wrong key from a damaged file before
any chunk is opened.

The plaintext is a zlib stream of JSON lines, one record a line; values JSON cannot carry
are tagged objects: ``{"$b": base64}`` bytes, ``{"$t": ISO 8601}`` an aware datetime,
``{"$d": ISO date}`` a date. Reading and writing go chunk by chunk: a large database never
sits in memory whole.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import os
import struct
import zlib
from collections.abc import Iterator
from typing import IO, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ca.errors import ConfigError, InvalidInput

MAGIC = b"TEGATA-BACKUP\x00"
VERSION = 1
KEY_BYTES = 32
CHUNK = 1 << 20  # plaintext bytes per chunk: one chunk is what reading holds at once
_SALT, _PREFIX, _CHECK, _TAG = 32, 7, 16, 16
HEADER_BYTES = len(MAGIC) + 1 + _SALT + _PREFIX + _CHECK
_LENGTH = struct.Struct(">I")
_MAX_SEALED = CHUNK + _TAG


def new_key() -> bytes:
    """A fresh backup key (32 random bytes)."""
    return os.urandom(KEY_BYTES)


def encode_key(key: bytes) -> bytes:
    """The key file's content: the key in base64, one line."""
    return base64.b64encode(key) + b"\n"


def decode_key(text: bytes, *, source: str) -> bytes:
    """The key of a key file's content; anything but 32 bytes in base64 is refused."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"backup key file {source} does not hold a backup key (32 bytes "
                          "in base64)", field="key_file")
    return key


def _file_key(key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt,
                info=b"tegata backup v1").derive(key)


def _key_check(key: bytes, salt: bytes) -> bytes:
    return hmac.new(key, b"tegata backup key check" + salt, hashlib.sha256).digest()[:_CHECK]


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


class Writer:
    """Writes records to ``out``, sealed chunk by chunk; ``close`` writes the last chunk.
    Without ``close`` the file has no last chunk, and every reader refuses it."""

    def __init__(self, out: IO[bytes], key: bytes) -> None:
        salt, self._prefix = os.urandom(_SALT), os.urandom(_PREFIX)
        self._header = MAGIC + bytes([VERSION]) + salt + self._prefix + _key_check(key, salt)
        self._aead = AESGCM(_file_key(key, salt))
        self._out = out
        self._zip = zlib.compressobj(6)
        self._pending = bytearray()
        self._index = 0
        out.write(self._header)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False,
                          default=_tagged).encode() + b"\n"
        self._pending += self._zip.compress(line)
        while len(self._pending) > CHUNK:
            self._seal(bytes(self._pending[:CHUNK]), last=False)
            del self._pending[:CHUNK]

    def close(self) -> None:
        self._pending += self._zip.flush()
        while len(self._pending) > CHUNK:
            self._seal(bytes(self._pending[:CHUNK]), last=False)
            del self._pending[:CHUNK]
        self._seal(bytes(self._pending), last=True)
        self._pending.clear()

    def _seal(self, plain: bytes, *, last: bool) -> None:
        sealed = self._aead.encrypt(_nonce(self._prefix, self._index, last), plain,
                                    self._header)
        self._out.write(_LENGTH.pack(len(sealed)) + sealed)
        self._index += 1


def read(source: IO[bytes], key: bytes, *, name: str) -> Iterator[dict[str, Any]]:
    """The records of a backup, each only after the chunk that holds it is authenticated.
    A wrong key is a ``ConfigError``; a damaged, cut or foreign file an ``InvalidInput``
    (raised where it is found: a caller that acts on records must read to the end first)."""
    header = source.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES or not header.startswith(MAGIC):
        raise InvalidInput(f"{name} is not a Tegata backup", field="file")
    if header[len(MAGIC)] != VERSION:
        raise InvalidInput(f"{name}: backup format version {header[len(MAGIC)]} is not "
                           f"known (this release reads {VERSION})", field="file")
    at = len(MAGIC) + 1
    salt, prefix = header[at:at + _SALT], header[at + _SALT:at + _SALT + _PREFIX]
    if not hmac.compare_digest(header[-_CHECK:], _key_check(key, salt)):
        raise ConfigError(f"{name} was not made with this backup key", field="key_file")
    aead = AESGCM(_file_key(key, salt))
    unzip = zlib.decompressobj()
    buffered = b""
    for plain in _chunks(source, aead, prefix, header, name):
        buffered += unzip.decompress(plain)
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            yield _record(line, name)
    buffered += unzip.flush()
    if not unzip.eof or buffered:
        raise InvalidInput(f"{name} is damaged: its content does not end where it should",
                           field="file")


def _chunks(source: IO[bytes], aead: AESGCM, prefix: bytes, header: bytes,
            name: str) -> Iterator[bytes]:
    damaged = InvalidInput(f"{name} is damaged or was altered (authentication failed)",
                           field="file")
    index = 0
    while True:
        length = source.read(_LENGTH.size)
        if not length:
            raise InvalidInput(f"{name} is cut short: its last part is missing", field="file")
        if len(length) < _LENGTH.size:
            raise damaged
        (size,) = _LENGTH.unpack(length)
        if not _TAG <= size <= _MAX_SEALED:
            raise damaged
        sealed = source.read(size)
        if len(sealed) < size:
            raise InvalidInput(f"{name} is cut short: its last part is missing", field="file")
        for last in (False, True):
            try:
                plain = aead.decrypt(_nonce(prefix, index, last), sealed, header)
            except InvalidTag:
                continue
            break
        else:
            raise damaged
        yield plain
        index += 1
        if last:
            if source.read(1):
                raise InvalidInput(f"{name} is damaged: data follows its last part",
                                   field="file")
            return


def _record(line: bytes, name: str) -> dict[str, Any]:
    try:
        record = json.loads(line, object_hook=_untagged)
    except ValueError:
        raise InvalidInput(f"{name} is damaged: a record is not JSON", field="file") from None
    if not isinstance(record, dict) or not isinstance(record.get("kind"), str):
        raise InvalidInput(f"{name} is damaged: a record has no kind", field="file")
    return record


def _tagged(value: object) -> dict[str, str]:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return {"$t": aware.astimezone(dt.UTC).isoformat()}
    if isinstance(value, dt.date):
        return {"$d": value.isoformat()}
    raise TypeError(f"a value of type {type(value).__name__} has no backup form")


def _untagged(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        (tag, value), = obj.items()
        if tag == "$b":
            return base64.b64decode(value)
        if tag == "$t":
            return dt.datetime.fromisoformat(value)
        if tag == "$d":
            return dt.date.fromisoformat(value)
    return obj
