"""The largest RSA key a CSR may carry is 8192 bits, taken as it is (mutation pass:
the upper bound made exclusive went unnoticed). The CSR is kept in tests/unit/data (public
data only: a request holds the public key and its signature) since making an 8192-bit key
takes seconds."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from ca.x509 import csr

DATA = Path(__file__).parent / "data"


def test_an_rsa_8192_csr_is_accepted() -> None:
    loaded = csr.load((DATA / "rsa-8192.csr.pem").read_bytes())

    assert isinstance(loaded.public_key, rsa.RSAPublicKey)
    assert loaded.public_key.key_size == 8192
    assert loaded.key_type == "rsa-8192"
