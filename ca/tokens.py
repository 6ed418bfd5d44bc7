"""API tokens (pure): random, shown once, stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal, get_args

PREFIX = "tgt_"
# what a token may do: the type the API's routes declare, and the values checked against
Role = Literal["operator", "admin", "user", "gateway"]
ROLES: tuple[str, ...] = get_args(Role)


def generate() -> str:
    # 256 bits from the OS; a token this long needs no slow hash, SHA-256 suffices
    return PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def display_prefix(token: str) -> str:
    """The first characters, to tell tokens apart in listings without revealing them."""
    return token[: len(PREFIX) + 6]
