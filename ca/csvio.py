"""User CSV files (pure): read rows by header, write cells no spreadsheet runs as formulas."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ca.errors import InvalidInput

COLUMNS = ("login", "email", "name", "groups", "secure_access", "kind")
# written by an export, ignored by an import, so that an export imports back as it is
READ_ONLY = ("status", "certificate_status")
REQUIRED = ("login",)
GROUP_SEPARATOR = ";"
MAX_BYTES = 50 * 1024 * 1024
TRUE = {"1", "true", "yes", "y", "on", "allow", "allowed"}
FALSE = {"0", "false", "no", "n", "off", "deny", "denied", ""}
# a cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (OWASP "CSV injection"); such cells are written with a leading apostrophe
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "|")


@dataclass(frozen=True, kw_only=True)
class Row:
    """One data row: its line number in the file and the cells it has (absent = unchanged)."""

    line: int
    cells: dict[str, str]
    problem: str | None = None  # a row that cannot be read; reported, never applied


def decode(data: bytes) -> str:
    """UTF-8, with or without the byte-order mark that Excel writes."""
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"the CSV file is larger than {MAX_BYTES // (1024 * 1024)} MB",
                           field="file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InvalidInput(f"line {line}: the CSV file is not UTF-8 (Shift_JIS?); save it as "
                           "'CSV UTF-8'", field="file") from None


def read(data: bytes) -> list[Row]:
    """Rows keyed by the header's column names; unknown or missing columns are refused."""
    text = decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise InvalidInput("the CSV file is empty: the first line must name the columns "
                               f"({', '.join(COLUMNS)})", field="file")
        names = [cell.strip().lower() for cell in header]
        unknown = [n for n in names if n not in COLUMNS + READ_ONLY]
        if unknown:
            raise InvalidInput(f"line 1: unknown column {unknown[0][:32]!r}; the columns are "
                               f"{', '.join(COLUMNS)}", field="file")
        if len(set(names)) != len(names):
            raise InvalidInput("line 1: a column is named twice", field="file")
        for column in REQUIRED:
            if column not in names:
                raise InvalidInput(f"line 1: the column {column!r} is required", field="file")
        rows = []
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # blank lines are allowed, as spreadsheets leave them
            if len(record) != len(names):
                at = names.index("login")
                login = record[at][:64] if at < len(record) else ""
                rows.append(Row(line=reader.line_num, cells={"login": login},
                                problem=f"{len(record)} cells where the header has "
                                        f"{len(names)}"))
                continue
            cells = {n: unquote_cell(v) for n, v in zip(names, record, strict=True)
                     if n not in READ_ONLY}
            rows.append(Row(line=reader.line_num, cells=cells))
        return rows
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num}: {exc}", field="file") from None


def parse_bool(value: str, *, line: int) -> bool:
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise InvalidInput(f"secure_access {value[:16]!r} is not yes or no",
                       field="secure_access")


def split_groups(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(g.strip() for g in value.split(GROUP_SEPARATOR) if g.strip()))


def safe_cell(value: str) -> str:
    """A cell that a spreadsheet shows as text, never evaluates. A leading apostrophe is
    doubled too, so that ``unquote_cell`` gives back exactly what was exported."""
    if value.startswith((*_FORMULA_START, "'")):
        return "'" + value
    return value


def unquote_cell(value: str) -> str:
    """Undo ``safe_cell`` and only that: an apostrophe before what a spreadsheet would
    evaluate (or before another apostrophe) is the text marker; a name like ``'t Hart``
    keeps its own."""
    if value.startswith("'") and value[1:].startswith((*_FORMULA_START, "'")):
        return value[1:]
    return value


def write(rows: Iterable[Iterable[str]]) -> Iterator[str]:
    """CSV lines (CRLF, as RFC 4180 says) with every cell made safe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([safe_cell(str(cell)) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
