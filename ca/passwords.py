"""Bundle passwords (pure): random, at least 112 bits, easy to read aloud and type.

The alphabet leaves out look-alikes (0 O o, 1 l I i, and 5 S, 2 Z, 8 B pairs are kept apart
by dropping S, Z and B) so that a password read from a screen or paper is typed right.
Groups of four separated by hyphens keep the place while typing.
"""

from __future__ import annotations

import math
import secrets

ALPHABET = "2345678ACDEFGHJKLMNPQRTUVWXYabcdefghjkmnpqrstuvwxyz"
GROUP = 4
GROUPS = 6
# 112 bits is the strength of 3DES, which the compat PKCS#12 profile uses (NIST SP 800-57)
MIN_BITS = 112


def entropy_bits(length: int = GROUP * GROUPS) -> float:
    return length * math.log2(len(ALPHABET))


def generate() -> str:
    chars = [secrets.choice(ALPHABET) for _ in range(GROUP * GROUPS)]
    return "-".join("".join(chars[i:i + GROUP]) for i in range(0, len(chars), GROUP))


assert entropy_bits() >= MIN_BITS, "bundle passwords must carry at least 112 bits"
