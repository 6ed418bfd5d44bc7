"""Certificate serial numbers in one canonical form: uppercase hex, no leading zeros."""

from __future__ import annotations

import re

from ca.errors import InvalidInput

_HEX = re.compile(r"[0-9A-Fa-f]{1,40}")


def to_text(serial: int) -> str:
    """The canonical text of a serial: ``0x00AB`` and ``171`` both become ``AB``."""
    if serial <= 0:
        # RFC 5280, 4.1.2.2: serials MUST be positive integers
        raise ValueError(f"serial {serial} is not positive")
    return format(serial, "X")


def parse(text: str) -> int:
    """Read a serial typed by a person: hex, with or without colons, ``0x`` or leading zeros."""
    cleaned = text.strip().replace(":", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    if len(cleaned) <= 64:  # leading zeros are padding, not part of the number
        cleaned = cleaned.lstrip("0") or "0"
    if not _HEX.fullmatch(cleaned):
        raise InvalidInput(f"serial {text[:64]!r} is not a hexadecimal number of at most 20 octets",
                           field="serial")
    value = int(cleaned, 16)
    if value <= 0 or value.bit_length() > 160:
        raise InvalidInput(f"serial {text[:64]!r} is outside 1 .. 2^160-1", field="serial")
    return value


def canonical(text: str) -> str:
    return to_text(parse(text))
