"""Client key generation (pure)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ca.errors import InvalidInput
from ca.profiles import CLIENT_KEY_TYPES

ClientKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def generate_client_key(key_type: str) -> ClientKey:
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in ("rsa-2048", "rsa-3072"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise InvalidInput(f"key type {key_type[:32]!r} is not one of {', '.join(CLIENT_KEY_TYPES)}",
                       field="key_type")


def generate_der_pair(key_type: str) -> tuple[bytes, bytes]:
    """A new key as (PKCS#8 DER, SubjectPublicKeyInfo DER): picklable, for worker processes."""
    key = generate_client_key(key_type)
    return private_der(key), key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_der(key: ClientKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
