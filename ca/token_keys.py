"""Private key objects whose ``sign`` asks a PKCS#11 token (pure, no session here).

cryptography's builders (certificates, CRLs, OCSP responses) take a private key object and
call its Python ``sign`` when it is not one of their own: these hash in software and hand
the digest to a ``raw_sign(key_id, data, mechanism)`` (``ca.token.TokenStore.raw_sign``):
CKM_ECDSA, whose raw r || s becomes the DER SEQUENCE X.509 wants, or CKM_RSA_PKCS over a
DigestInfo (PKCS #1 v1.5). Everything else a private key offers is refused: the key never
leaves the token.
"""

from __future__ import annotations

from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from pkcs11 import Mechanism

from ca.errors import ConfigError

# DigestInfo prefixes for CKM_RSA_PKCS (RFC 8017, 9.2 note 1)
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}


class RawSigner(Protocol):
    def raw_sign(self, key_id: str, data: bytes, mechanism: Mechanism) -> bytes: ...


def _digest(data: bytes | bytearray | memoryview, algorithm: Any) -> tuple[bytes, str]:
    if isinstance(algorithm, utils.Prehashed):
        return bytes(data), algorithm._algorithm.name
    if not isinstance(algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
        raise ConfigError(f"hash {getattr(algorithm, 'name', algorithm)!r} is not supported "
                          "for a CA key in a token")
    digest = hashes.Hash(algorithm)
    digest.update(data)
    return digest.finalize(), algorithm.name


class TokenECKey(ec.EllipticCurvePrivateKey):
    """An EC private key that lives in the token: only ``sign`` and ``public_key`` work."""

    def __init__(self, key_id: str, store: RawSigner, public: ec.EllipticCurvePublicKey) -> None:
        self._key_id = key_id
        self._store = store
        self._public = public

    def sign(self, data: bytes | bytearray | memoryview,
             signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        assert isinstance(signature_algorithm, ec.ECDSA)
        digest, _ = _digest(data, signature_algorithm.algorithm)
        raw = self._store.raw_sign(self._key_id, digest, Mechanism.ECDSA)
        half = len(raw) // 2  # the token gives r || s; X.509 wants the DER SEQUENCE
        return utils.encode_dss_signature(int.from_bytes(raw[:half], "big"),
                                          int.from_bytes(raw[half:], "big"))

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise NotImplementedError("a CA key in a token only signs")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotImplementedError("a CA key in a token never leaves it")

    def private_bytes(self, encoding: serialization.Encoding,
                      format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        raise NotImplementedError("a CA key in a token never leaves it")

    def __copy__(self) -> TokenECKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenECKey:
        return self


class TokenRSAKey(rsa.RSAPrivateKey):
    """An RSA private key that lives in the token: PKCS #1 v1.5 signatures only."""

    def __init__(self, key_id: str, store: RawSigner, public: rsa.RSAPublicKey) -> None:
        self._key_id = key_id
        self._store = store
        self._public = public

    def sign(self, data: bytes, padding: padding.AsymmetricPadding,
             algorithm: Any) -> bytes:
        if padding.name != "EMSA-PKCS1-v1_5":
            raise ConfigError("a CA key in a token signs with PKCS #1 v1.5 only")
        digest, name = _digest(data, algorithm)
        return self._store.raw_sign(self._key_id, _DIGEST_INFO[name] + digest,
                                    Mechanism.RSA_PKCS)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: padding.AsymmetricPadding) -> bytes:
        raise NotImplementedError("a CA key in a token only signs")

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise NotImplementedError("a CA key in a token never leaves it")

    def private_bytes(self, encoding: serialization.Encoding,
                      format: serialization.PrivateFormat,
                      encryption_algorithm: serialization.KeySerializationEncryption) -> bytes:
        raise NotImplementedError("a CA key in a token never leaves it")

    def __copy__(self) -> TokenRSAKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenRSAKey:
        return self
