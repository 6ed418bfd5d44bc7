"""API tokens (pure): random, shown once, stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Literal, get_args

PREFIX = "tgt_"
# what a token may do: the type the API's routes declare, and the values checked against
Role = Literal["operator", "admin", "user", "gateway"]
ROLES: tuple[str, ...] = get_args(Role)
# the largest id the token table's INTEGER key holds on every database
ID_MAX = 2**31 - 1
# a token id as written: ASCII digits, no sign, no leading zero, no space, "_" or "."
_ID = re.compile(r"[1-9][0-9]*")


def is_id(text: str) -> bool:
    """``text`` is a token id as Tegata writes one (it may still name no token)."""
    return _ID.fullmatch(text) is not None


def not_an_id(text: str) -> str:
    """The one message for a malformed token id, the API's and the CLI's."""
    return f"{text[:40]!r} is not a token id"


def generate() -> str:
    # 256 bits from the OS; a token this long needs no slow hash, SHA-256 suffices
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def display_prefix(token: str) -> str:
    """The first characters, to tell tokens apart in listings without revealing them."""
    return token[: len(PREFIX) + 6]
