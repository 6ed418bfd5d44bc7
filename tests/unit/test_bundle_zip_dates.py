"""The date written on a bundle zip's entries: the moment it was made, clamped to 1980-01-01,
where the zip format's dates begin (mutation pass: the clamp moved by a year went
unnoticed)."""

from __future__ import annotations

import datetime as dt
import io
import zipfile

import pytest

from ca.x509 import bundle


@pytest.mark.parametrize(("when", "dated"), [
    (dt.datetime(2026, 3, 2, 9, 0, 7, tzinfo=dt.UTC), (2026, 3, 2, 9, 0, 6)),  # even seconds
    (dt.datetime(1980, 6, 1, 12, 0, tzinfo=dt.UTC), (1980, 6, 1, 12, 0, 0)),
    (dt.datetime(1980, 1, 1, tzinfo=dt.UTC), (1980, 1, 1, 0, 0, 0)),
    (dt.datetime(1979, 12, 31, 23, 59, 59, tzinfo=dt.UTC), (1980, 1, 1, 0, 0, 0)),
    (dt.datetime(1970, 1, 1, tzinfo=dt.UTC), (1980, 1, 1, 0, 0, 0)),
], ids=["now", "mid-1980", "zip-epoch", "just-before", "unix-epoch"])
def test_entries_are_dated_when_made_from_1980_on(when: dt.datetime,
                                                  dated: tuple[int, ...]) -> None:
    data = bundle.user_zip(login="tanaka", p12=b"\x30\x00", password="さくら", when=when)

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert [(i.filename, i.date_time) for i in archive.infolist()] == [
            ("tanaka.p12", dated), ("tanaka-password.txt", dated)]
