"""The CA key behind one small interface.

Nothing outside this module sees CA key bytes. ``FileKeyStore`` keeps each key as an
encrypted PKCS#8 PEM file created with mode 0600 from its first byte; a PKCS#11 store can
replace it by handing out objects with the same ``Signer`` interface.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from pathlib import Path
from typing import Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificateIssuerPublicKeyTypes,
)
from cryptography.x509 import ocsp

from ca.errors import ConfigError
from ca.x509 import der

_KEY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
KEY_SUFFIX = ".key.pem"

Signable = TypeVar("Signable", x509.CertificateBuilder, x509.CertificateRevocationListBuilder)


class Signer(Protocol):
    """What a CA key can do, whatever holds it."""

    key_id: str

    def public_key(self) -> CertificateIssuerPublicKeyTypes: ...

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate: ...

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList: ...

    def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder) -> ocsp.OCSPResponse: ...

    @property
    def signature_algorithm(self) -> bytes:
        """The DER AlgorithmIdentifier of what ``sign_tbs`` makes."""
        ...

    def sign_tbs(self, tbs: bytes) -> bytes:
        """The signatureValue over a to-be-signed structure the caller encoded (a large
        CRL's TBSCertList, ca/x509/crl.py)."""
        ...


SignatureHash = hashes.SHA256 | hashes.SHA384 | hashes.SHA512


def hash_for(key: CertificateIssuerPublicKeyTypes) -> SignatureHash:
    """The signature hash that matches the key's strength (P-384 -> SHA-384)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size >= 521:
            return hashes.SHA512()
        if key.curve.key_size >= 384:
            return hashes.SHA384()
        return hashes.SHA256()
    if isinstance(key, rsa.RSAPublicKey):
        return hashes.SHA256()
    raise ConfigError(f"CA key type {type(key).__name__} is not supported")


class FileSigner:
    """A CA key loaded from an encrypted PKCS#8 file; the key object never leaves it."""

    def __init__(self, key_id: str, key: CertificateIssuerPrivateKeyTypes) -> None:
        self.key_id = key_id
        self.__key = key
        self._hash = hash_for(key.public_key())

    def __repr__(self) -> str:
        return f"<FileSigner {self.key_id}>"

    def public_key(self) -> CertificateIssuerPublicKeyTypes:
        return self.__key.public_key()

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self.__key, self._hash)

    def sign_crl(
        self, builder: x509.CertificateRevocationListBuilder
    ) -> x509.CertificateRevocationList:
        return builder.sign(self.__key, self._hash)

    def sign_ocsp(self, builder: ocsp.OCSPResponseBuilder) -> ocsp.OCSPResponse:
        return builder.sign(self.__key, self._hash)

    @property
    def signature_algorithm(self) -> bytes:
        return der.signature_algorithm(self.__key.public_key(), self._hash)

    def sign_tbs(self, tbs: bytes) -> bytes:
        # the same schemes as cryptography's builders: ECDSA, or RSA PKCS #1 v1.5
        if isinstance(self.__key, ec.EllipticCurvePrivateKey):
            return self.__key.sign(tbs, ec.ECDSA(self._hash))
        if isinstance(self.__key, rsa.RSAPrivateKey):
            return self.__key.sign(tbs, padding.PKCS1v15(), self._hash)
        raise ConfigError(f"CA key type {type(self.__key).__name__} is not supported")


def generate_ca_key(key_type: str) -> CertificateIssuerPrivateKeyTypes:
    """A new CA key: ``ec-p384`` (default), ``ec-p256``, ``rsa-3072`` or ``rsa-4096``."""
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type in ("rsa-3072", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    raise ConfigError(f"CA key type {key_type!r} is not one of ec-p384, ec-p256, rsa-3072, "
                      "rsa-4096", field="key_type")


def check_private_file(path: Path, *, what: str) -> None:
    """Refuse a secret file that group or others can read or write."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what} {path} is not a regular file")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{what} {path} is readable by others (mode "
                          f"{info.st_mode & 0o777:04o}); run chmod 600 {path}")


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from its first byte; never overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask cannot widen 0600, but a shared volume's ACL might
        with os.fdopen(fd, "wb", closefd=False) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    finally:
        os.close(fd)


def sync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (an fsync of the directory)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileKeyStore:
    """CA keys as encrypted PKCS#8 files in one directory (mode 0700)."""

    def __init__(self, directory: Path, passphrase: bytes, *,
                 passphrase_source: str) -> None:
        self.directory = directory
        self.__passphrase = passphrase
        self._source = passphrase_source

    def __repr__(self) -> str:
        return f"<FileKeyStore {self.directory}>"

    def path_for(self, key_id: str) -> Path:
        if not _KEY_ID.fullmatch(key_id):
            raise ValueError(f"key id {key_id!r} is not a safe file name")
        return self.directory / f"{key_id}{KEY_SUFFIX}"

    def ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = self.directory.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"key directory {self.directory} is open to others (mode "
                              f"{mode & 0o777:04o}); run chmod 700 {self.directory}")

    def create(self, key_id: str, key: CertificateIssuerPrivateKeyTypes) -> FileSigner:
        """Store a new key; the file must not exist yet."""
        self.ensure_directory()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self.__passphrase),
        )
        write_private_file(self.path_for(key_id), pem)
        return FileSigner(key_id, key)

    def remove(self, key_id: str) -> None:
        self.path_for(key_id).unlink(missing_ok=True)

    def load(self, key_id: str) -> FileSigner:
        path = self.path_for(key_id)
        check_private_file(path, what="CA key file")
        pem = path.read_bytes()
        try:
            key = serialization.load_pem_private_key(pem, self.__passphrase)
        except (ValueError, TypeError):
            if not _looks_encrypted_pkcs8(pem):  # the passphrase is not at fault
                raise ConfigError(f"CA key file {path} could not be read: it is not an "
                                  "encrypted PKCS#8 PEM key (damaged or replaced)") from None
            raise ConfigError(f"CA key file {path} could not be decrypted: wrong passphrase "
                              f"({self._source}), or the file is damaged") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ConfigError(f"CA key file {path}: key type {type(key).__name__} not supported")
        return FileSigner(key_id, key)


def _looks_encrypted_pkcs8(pem: bytes) -> bool:
    """Whether ``pem`` is one encrypted PKCS#8 PEM block whose body is base64 (what only
    the passphrase can open); anything else is a damaged or foreign file."""
    lines = pem.strip().splitlines()
    if len(lines) < 3 or lines[0] != b"-----BEGIN ENCRYPTED PRIVATE KEY-----" or \
            lines[-1] != b"-----END ENCRYPTED PRIVATE KEY-----":
        return False
    try:
        return bool(base64.b64decode(b"".join(lines[1:-1]), validate=True))
    except binascii.Error:
        return False
