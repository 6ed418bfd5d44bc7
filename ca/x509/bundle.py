"""Zip bundles (pure): a user's PKCS#12 and its password, under names no input can subvert;
and ``entry_zips``, the bulk download's work for a worker process (which imports no more than
this module and ``pkcs12``, so that the workers stay small)."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ca.x509 import pkcs12

# a login is checked at creation (ca.validate.login); this second check guards every name that
# reaches a zip, so that no path ('..', '/', '\\'), NUL or control character can ever appear
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")


def safe_name(name: str) -> str:
    if not _SAFE.fullmatch(name) or ".." in name:
        raise ValueError(f"unsafe file name {name[:40]!r}")
    return name


def _entry(name: str, when: dt.datetime) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(safe_name(name), date_time=when.timetuple()[:6])
    info.external_attr = (0o100600 & 0xFFFF) << 16  # a regular file, owner read/write only
    info.create_system = 3  # Unix, so that the mode above is honoured
    return info


def user_zip(*, login: str, p12: bytes, password: str, when: dt.datetime) -> bytes:
    """``<login>.zip`` holding ``<login>.p12`` and ``<login>-password.txt``."""
    stamp = max(when, dt.datetime(1980, 1, 1, tzinfo=dt.UTC))  # the zip format starts in 1980
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(_entry(f"{login}.p12", stamp), p12, compress_type=zipfile.ZIP_STORED)
        archive.writestr(_entry(f"{login}-password.txt", stamp), password + "\n",
                         compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def zip_name(login: str) -> str:
    return safe_name(f"{login}.zip")


@dataclass(frozen=True, kw_only=True)
class Entry:
    """What one user's zip in a bulk download needs, all picklable for a worker process."""

    login: str
    serial: str
    not_after: dt.datetime
    fingerprint: str
    cert_der: bytes
    key_der: bytes = field(repr=False)  # a private key and its PKCS#12 password: never shown
    password: str = field(repr=False)
    chain_der: tuple[bytes, ...]
    friendly_name: str
    profile: str
    when: dt.datetime


def entry_zip(entry: Entry) -> bytes:
    """The per-user zip for one entry."""
    key = serialization.load_der_private_key(entry.key_der, None,
                                             unsafe_skip_rsa_key_validation=True)
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    p12 = pkcs12.build(key=key, cert=x509.load_der_x509_certificate(entry.cert_der),
                       chain=[x509.load_der_x509_certificate(d) for d in entry.chain_der],
                       friendly_name=entry.friendly_name, password=entry.password,
                       profile=pkcs12.Profile(entry.profile))
    return user_zip(login=entry.login, p12=p12, password=entry.password, when=entry.when)


def entry_zips(entries: list[tuple[int, Entry]]) -> list[tuple[int, Entry, bytes]]:
    """Each entry's zip, beside its certificate id and entry (one task of a worker)."""
    return [(cid, entry, entry_zip(entry)) for cid, entry in entries]
