"""Certificate signing requests (pure): only the public key is taken, after every check.

The profile decides everything else; requested extensions and the subject are ignored. Parsing
is defensive: cryptography raises ValueError, TypeError, UnsupportedAlgorithm and, for some
malformed input, a Rust panic that is not an ``Exception`` subclass; each becomes
``InvalidInput`` with a message that says what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ca.errors import InvalidInput

T = TypeVar("T")
MAX_CSR_BYTES = 64 * 1024
ALLOWED_CURVES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192


@dataclass(frozen=True, kw_only=True)
class CheckedKey:
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    key_type: str


def _refuse(message: str) -> InvalidInput:
    return InvalidInput(f"CSR: {message}", field="csr")


def _parse(data: bytes) -> x509.CertificateSigningRequest:
    stripped = data.strip()
    if stripped.startswith(b"-----BEGIN"):
        return x509.load_pem_x509_csr(stripped)
    return x509.load_der_x509_csr(data)


def _guarded(what: str, action: Callable[[], T]) -> T:
    try:
        return action()
    except (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError):
        raise
    except BaseException as exc:  # Rust panics (pyo3) derive from BaseException
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise _refuse(f"{what}: {reason}") from None


def load(data: bytes) -> CheckedKey:
    """The public key of a well-formed, self-signed CSR with an acceptable key."""
    if not data.strip():
        raise _refuse("empty")
    if len(data) > MAX_CSR_BYTES:
        raise _refuse(f"larger than {MAX_CSR_BYTES} bytes")
    csr = _guarded("not a PEM or DER PKCS#10 request", lambda: _parse(data))
    _guarded("malformed extensions", lambda: csr.extensions)
    key = _guarded("unsupported public key algorithm", csr.public_key)
    if not _guarded("bad signature", lambda: csr.is_signature_valid):
        raise _refuse("the signature does not verify with the request's own key")
    if isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise _refuse(f"RSA key of {key.key_size} bits; {MIN_RSA_BITS} to {MAX_RSA_BITS} "
                          "bits are accepted")
        return CheckedKey(public_key=key, key_type=f"rsa-{key.key_size}")
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ALLOWED_CURVES:
            raise _refuse(f"curve {key.curve.name} is not accepted; use P-256, P-384 or P-521")
        return CheckedKey(public_key=key, key_type=ALLOWED_CURVES[key.curve.name])
    raise _refuse(f"{type(key).__name__.removesuffix('PublicKey') or 'this'} keys are not "
                  "accepted; use EC P-256/P-384/P-521 or RSA 2048+")
