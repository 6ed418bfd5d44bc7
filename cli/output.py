"""What the CLI writes: files created whole or not at all, and user strings made safe to show.

A file the command writes is opened before the service does anything, so that a path that
cannot be written fails first and changes nothing (no audit event, no new CRL); its content
goes to a hidden partial file beside it and takes its name only when complete: the file is
fsynced after its last write, renamed, and the directory fsynced after the rename.
"""

from __future__ import annotations

import contextlib
import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ca.errors import InvalidInput
from ca.signer import sync_directory, write_private_file

SHOWN_LIMIT = 200


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """``value`` for a terminal: control and bidirectional-formatting characters and
    undecodable bytes escaped (a name cannot start a new line or turn text around), and cut
    to ``limit`` characters."""
    text = str(value)
    cut = len(text) > limit
    out = []
    for ch in text[:limit]:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out) + ("…" if cut else "")


@contextlib.contextmanager
def output_file(out: Path, *, force: bool = False, mode: int = 0o600,
                field: str = "out") -> Iterator[BinaryIO]:
    """Write ``out`` whole or not at all; refuse an existing file unless ``force``."""
    if not force and _exists(out, field):
        raise InvalidInput(f"{shown(out)} exists; pass --force to overwrite it", field=field)
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.unlink(missing_ok=True)
        write_private_file(partial, b"")
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot write {shown(out)}: {_reason(exc)}", field=field) from None
    try:
        with partial.open("ab") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the content on disk before the name points at it
        if mode != 0o600:
            partial.chmod(mode)
        partial.replace(out)
        sync_directory(out.parent)  # the new name on disk too
    except OSError as exc:
        raise InvalidInput(f"cannot write {shown(out)}: {_reason(exc)}", field=field) from None
    finally:
        partial.unlink(missing_ok=True)


def write_file(out: Path, data: bytes, *, force: bool = False, mode: int = 0o600,
               field: str = "out") -> None:
    with output_file(out, force=force, mode=mode, field=field) as handle:
        handle.write(data)


def read_file(path: Path, *, limit: int, field: str, what: str = "") -> bytes:
    """At most ``limit`` bytes of ``path``; a clear error for a missing or larger file."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {what}{shown(path)}: {_reason(exc)}",
                           field=field) from None
    if len(data) > limit:
        raise InvalidInput(f"{what}{shown(path)} is larger than {limit} bytes", field=field)
    return data


def _exists(path: Path, field: str) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError) as exc:  # a name too long, a NUL
        raise InvalidInput(f"cannot write {shown(path)}: {_reason(exc)}", field=field) from None


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return "not a usable file name" if isinstance(exc, ValueError) else type(exc).__name__


def check_arguments(argv: list[str]) -> None:
    """Refuse bytes that are not UTF-8 (Python holds them as surrogate escapes, which
    nothing downstream could store, print or send)."""
    for position, arg in enumerate(argv, start=1):
        if any("\udc80" <= ch <= "\udcff" for ch in arg):
            raise InvalidInput(f"argument {position} is not valid UTF-8: {shown(arg, 60)}")
