"""PKCS#12 bundles (pure): the key, its certificate and the chain, under one password.

Two profiles. ``compat`` (the default) uses PBE-SHA1-3DES for key and certificates with a
SHA-1 MAC: the only scheme that macOS/iOS keychains, Android <= 12 and Windows Server <= 2016
import. ``modern`` uses PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) with a SHA-256 MAC, which those
reject with a misleading "wrong password". RC2 is never used: OpenSSL 3 cannot read it
without ``-legacy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    KeySerializationEncryption,
    PrivateFormat,
    pkcs12,
)

from ca.errors import InvalidInput

# Passwords are random with >= 112 bits, so KDF rounds add cost without adding security;
# 2048 is what OpenSSL and Windows write, and keeps bulk bundling fast.
KDF_ROUNDS = 2048


# the names, as the type both shells declare (tests/unit/test_rule_names.py: the same as Profile's)
ProfileName = Literal["compat", "modern"]


class Profile(StrEnum):
    COMPAT = "compat"
    MODERN = "modern"

    @classmethod
    def parse(cls, text: str) -> Profile:
        try:
            return cls(text)
        except ValueError:
            raise InvalidInput(f"PKCS#12 profile {text[:16]!r} is not compat or modern",
                               field="p12_profile") from None


def _encryption(profile: Profile, password: bytes) -> KeySerializationEncryption:
    builder = PrivateFormat.PKCS12.encryption_builder().kdf_rounds(KDF_ROUNDS)
    if profile is Profile.COMPAT:
        # justified: SHA-1 and 3DES are what macOS/iOS, Android <= 12 and Windows Server
        # <= 2016 import; the password carries 136 bits (bandit B303, ruff S303)
        builder = builder.key_cert_algorithm(
            pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC).hmac_hash(hashes.SHA1())  # noqa: S303  # nosec B303
    else:
        builder = builder.key_cert_algorithm(
            pkcs12.PBES.PBESv2SHA256AndAES256CBC).hmac_hash(hashes.SHA256())
    return builder.build(password)


def build(*, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cert: x509.Certificate,
          chain: Sequence[x509.Certificate], friendly_name: str, password: str,
          profile: Profile = Profile.COMPAT) -> bytes:
    """A PKCS#12 file; the key and certificate share a localKeyID, so importers pair them."""
    return pkcs12.serialize_key_and_certificates(
        friendly_name.encode(), key, cert, list(chain), _encryption(profile, password.encode()))
