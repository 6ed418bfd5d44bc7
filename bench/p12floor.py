"""The PKCS#12 floor of bulk work: bare ``cryptography`` making, for each user, an EC P-256
key, a client certificate signed by an EC CA, and a compat bundle (PBE-SHA1-3DES, SHA-1 MAC,
2,048 KDF rounds), on every core. No database, no zip, no sealing: the part of a bulk run that
no design removes. Run by bench/bulk.py in the same run as Tegata, or alone:

    .venv/bin/python bench/p12floor.py 10000
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import PrivateFormat, pkcs12
from cryptography.x509.oid import NameOID

CHUNK = 100


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _bundles(count: int) -> int:
    """``count`` keys, certificates and compat bundles; their total size."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    size = 0
    for n in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(f"user{n}"))
                .issuer_name(_name("floor CA")).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now)
                .not_valid_after(now + dt.timedelta(days=365))
                .sign(ca_key, hashes.SHA256()))
        encryption = (PrivateFormat.PKCS12.encryption_builder().kdf_rounds(2048)
                      .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                      .hmac_hash(hashes.SHA1()).build(b"correct horse battery staple"))
        size += len(pkcs12.serialize_key_and_certificates(b"user", key, cert, None,
                                                           encryption))
    return size


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended."""
    mine, theirs = (resource.getrusage(resource.RUSAGE_SELF),
                    resource.getrusage(resource.RUSAGE_CHILDREN))
    return mine.ru_utime + mine.ru_stime + theirs.ru_utime + theirs.ru_stime


def floor(users: int) -> tuple[float, float]:
    """Wall seconds and CPU seconds to make ``users`` bundles on every core (the pool's
    start-up included)."""
    start, cpu = time.perf_counter(), cpu_seconds()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        chunks = [CHUNK] * (users // CHUNK) + ([users % CHUNK] if users % CHUNK else [])
        list(pool.map(_bundles, chunks))
    return time.perf_counter() - start, cpu_seconds() - cpu


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    wall, cpu = floor(count)
    print(f"{count} compat bundles on {os.cpu_count()} cores: {wall:.2f} s, {cpu:.2f} s of CPU")
