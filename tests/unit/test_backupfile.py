"""The backup file format: records round-trip whatever their number and types; a chunk
moved, dropped, repeated, taken from another file, or a file cut at a chunk boundary is
refused (the STREAM construction's promises, checked on a file of many chunks)."""

from __future__ import annotations

import datetime as dt
import io
import struct
from typing import Any

import pytest

from ca import backupfile
from ca.errors import ConfigError, InvalidInput

KEY = bytes(range(32))
RECORDS = [{"kind": "rows", "n": i, "at": dt.datetime(2026, 3, 2, 9, i % 60, tzinfo=dt.UTC),
            "day": dt.date(2026, 3, 2), "blob": bytes([i % 256]) * 40, "text": "田中 " * 5,
            "none": None} for i in range(400)]


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backupfile, "CHUNK", 256)
    monkeypatch.setattr(backupfile, "_MAX_SEALED", 256 + 16)


def written(records: list[dict[str, Any]], key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    writer = backupfile.Writer(out, key)
    for record in records:
        writer.write(record)
    writer.close()
    return out.getvalue()


def chunks(data: bytes) -> tuple[bytes, list[bytes]]:
    """The header and the framed chunks (length and ciphertext each)."""
    header, rest, found = data[:backupfile.HEADER_BYTES], data[backupfile.HEADER_BYTES:], []
    while rest:
        (size,) = struct.unpack(">I", rest[:4])
        found.append(rest[:4 + size])
        rest = rest[4 + size:]
    return header, found


def read_all(data: bytes, key: bytes = KEY) -> list[dict[str, Any]]:
    return list(backupfile.read(io.BytesIO(data), key, name="b"))


def test_records_round_trip_over_many_chunks() -> None:
    data = written(RECORDS)
    assert len(chunks(data)[1]) > 10
    assert read_all(data) == RECORDS


def test_an_empty_stream_round_trips() -> None:
    assert read_all(written([])) == []


@pytest.mark.parametrize("change", ["swap", "drop-middle", "drop-last", "repeat", "foreign"],
                         ids=["two-chunks-swapped", "a-middle-chunk-dropped",
                              "cut-at-a-chunk-boundary", "a-chunk-repeated",
                              "a-chunk-of-another-file"])
def test_a_changed_sequence_of_chunks_is_refused(change: str) -> None:
    header, parts = chunks(written(RECORDS))
    _, others = chunks(written(RECORDS))
    if change == "swap":
        parts[2], parts[3] = parts[3], parts[2]
    elif change == "drop-middle":
        del parts[4]
    elif change == "drop-last":
        del parts[-1]
    elif change == "repeat":
        parts.insert(3, parts[3])
    else:
        parts[3] = others[3]
    # a file cut at a chunk boundary is told by its missing last chunk (not only by the
    # compressed stream's end, a second line of defence)
    words = "cut short" if change == "drop-last" else "damaged or was altered"
    with pytest.raises(InvalidInput, match=words):
        read_all(header + b"".join(parts))


def test_a_wrong_key_is_told_apart_from_damage() -> None:
    with pytest.raises(ConfigError, match="not made with this backup key"):
        read_all(written(RECORDS), key=bytes(32))


@pytest.mark.parametrize("text", [b"", b"abc\n", b"QUJD\n", b"!" * 44],
                         ids=["empty", "not-base64", "too-short", "not-base64-of-length"])
def test_a_key_file_must_hold_32_bytes_in_base64(text: bytes) -> None:
    with pytest.raises(ConfigError, match="does not hold a backup key"):
        backupfile.decode_key(text, source="k")
    assert backupfile.decode_key(backupfile.encode_key(KEY), source="k") == KEY
