"""Zip bundles (pure): a user's PKCS#12 and its password, under names no input can subvert."""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile

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
