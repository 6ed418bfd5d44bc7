"""Expiry: a calendar date in a zone -> notAfter (first instant of the next day, minus 1 s)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from ca import expiry
from ca.errors import InvalidInput

Z = zoneinfo.ZoneInfo
D = dt.date


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("day", "zone", "expected"),
    [
        (D(2014, 8, 1), "Asia/Tokyo", utc(2014, 8, 1, 14, 59, 59)),
        (D(2014, 8, 1), "Pacific/Honolulu", utc(2014, 8, 2, 9, 59, 59)),
        (D(2014, 8, 1), "UTC", utc(2014, 8, 1, 23, 59, 59)),
        # UTC-12 and UTC+14, the two ends of the world's clocks
        (D(2030, 6, 15), "Etc/GMT+12", utc(2030, 6, 16, 11, 59, 59)),
        (D(2030, 6, 15), "Pacific/Kiritimati", utc(2030, 6, 15, 9, 59, 59)),
        # Sao Paulo skipped midnight on 2018-11-04 (00:00 -> 01:00): that day starts at 01:00
        (D(2018, 11, 3), "America/Sao_Paulo", utc(2018, 11, 4, 2, 59, 59)),
        # Havana skips midnight too (2024-03-10 00:00 -> 01:00, UTC-5 -> UTC-4)
        (D(2024, 3, 9), "America/Havana", utc(2024, 3, 10, 4, 59, 59)),
        # Samoa skipped all of 2011-12-30: the next existing day starts at 12-31 00:00 +14
        (D(2011, 12, 29), "Pacific/Apia", utc(2011, 12, 30, 9, 59, 59)),
        # leap days
        (D(2028, 2, 29), "Asia/Tokyo", utc(2028, 2, 29, 14, 59, 59)),
        (D(2028, 2, 28), "UTC", utc(2028, 2, 28, 23, 59, 59)),
        # both ends of the allowed range
        (D(1900, 1, 1), "UTC", utc(1900, 1, 1, 23, 59, 59)),
        (D(9999, 12, 30), "UTC", utc(9999, 12, 30, 23, 59, 59)),
        (D(9999, 12, 30), "Etc/GMT+12", utc(9999, 12, 31, 11, 59, 59)),
        (D(9999, 12, 30), "Pacific/Kiritimati", utc(9999, 12, 30, 9, 59, 59)),
    ],
    ids=["seeds-tokyo", "honolulu", "utc", "utc-12", "utc+14", "sao-paulo-gap",
         "havana-gap", "samoa-skipped-day", "leap-day", "before-leap-day", "earliest",
         "latest-utc", "latest-utc-12", "latest-utc+14"],
)
def test_not_after_is_last_second_of_the_day_in_the_zone(day: dt.date, zone: str,
                                                          expected: dt.datetime) -> None:
    assert expiry.not_after(day, Z(zone)) == expected


def test_seeds_example_stops_at_midnight_tokyo_which_is_5am_in_honolulu() -> None:
    end = expiry.not_after(D(2014, 8, 1), Z("Asia/Tokyo")) + dt.timedelta(seconds=1)
    assert end.astimezone(Z("Asia/Tokyo")) == dt.datetime(2014, 8, 2, tzinfo=Z("Asia/Tokyo"))
    assert end.astimezone(Z("Pacific/Honolulu")).replace(tzinfo=None) == dt.datetime(
        2014, 8, 1, 5, 0)


def test_day_starts_at_first_of_two_midnights_when_midnight_repeats() -> None:
    # America/Santiago fell back at 00:00 on 2024-04-07 (to 23:00 of the 6th): midnight of the
    # 7th happens once in the new offset; the day must start exactly there, never an hour late
    start = expiry.start_of_day(D(2024, 4, 7), Z("America/Santiago"))
    assert start.astimezone(Z("America/Santiago")).date() == D(2024, 4, 7)
    assert (start - dt.timedelta(seconds=1)).astimezone(Z("America/Santiago")).date() < D(
        2024, 4, 7)


@pytest.mark.parametrize(
    ("today", "validity", "expected"),
    [
        (D(2026, 3, 2), "P1Y", D(2027, 3, 2)),
        (D(2028, 2, 29), "P1Y", D(2029, 2, 28)),
        (D(2028, 2, 29), "P4Y", D(2032, 2, 29)),
        (D(2026, 1, 31), "P1M", D(2026, 2, 28)),
        (D(2026, 3, 2), "P90D", D(2026, 5, 31)),
        (D(2026, 3, 2), "P100Y", D(2126, 3, 2)),
        (D(9990, 1, 1), "P100Y", D(9999, 12, 30)),
    ],
    ids=["one-year", "leap-day-to-28-feb", "leap-to-leap", "month-end", "90-days",
         "100-years", "clamped-to-latest"],
)
def test_default_expiry_is_validity_after_today_in_the_zone(today: dt.date, validity: str,
                                                            expected: dt.date) -> None:
    now = dt.datetime.combine(today, dt.time(12), tzinfo=dt.UTC)
    assert expiry.default_expiry(Z("UTC"), now=now,
                                 validity=expiry.Period.parse(validity)) == expected


def test_default_expiry_uses_today_in_the_zone_not_in_utc() -> None:
    # 2026-03-02 20:00 UTC is already 2026-03-03 in Tokyo
    now = dt.datetime(2026, 3, 2, 20, 0, tzinfo=dt.UTC)
    assert expiry.default_expiry(Z("Asia/Tokyo"), now=now) == D(2027, 3, 3)
    assert expiry.default_expiry(Z("UTC"), now=now) == D(2027, 3, 2)


def test_expiry_before_today_in_the_zone_is_refused() -> None:
    now = dt.datetime(2026, 3, 2, 20, 0, tzinfo=dt.UTC)  # 2026-03-03 in Tokyo
    expiry.check_expiry(D(2026, 3, 2), Z("UTC"), now=now)  # today in UTC: allowed
    with pytest.raises(InvalidInput, match=r"before today \(2026-03-03 in Asia/Tokyo\)"):
        expiry.check_expiry(D(2026, 3, 2), Z("Asia/Tokyo"), now=now)


@pytest.mark.parametrize(
    ("day", "message"),
    [(D(9999, 12, 31), "requested 9999-12-31, latest allowed 9999-12-30"),
     (D(1899, 12, 31), "before the earliest allowed, 1900-01-01")],
    ids=["after-latest", "before-earliest"],
)
def test_dates_outside_the_allowed_range_are_refused(day: dt.date, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        expiry.not_after(day, Z("UTC"))


@pytest.mark.parametrize(
    ("text", "message"),
    [("2026-02-30", "expiry 2026-02-30 is not a date"),
     ("2026/02/01", "is not of the form YYYY-MM-DD"),
     ("tomorrow", "is not of the form YYYY-MM-DD"),
     ("2026-1-1", "is not of the form YYYY-MM-DD")],
    ids=["no-such-day", "slashes", "word", "short"],
)
def test_unparseable_dates_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        expiry.parse_date(text)


@pytest.mark.parametrize("name", ["Mars/Base", "../etc/passwd", "", "/etc/localtime", "x" * 100])
def test_unknown_zones_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="is not an IANA time zone"):
        expiry.zone(name)


@pytest.mark.parametrize("text", ["P0Y", "1Y", "P-1Y", "PY", "P1W", ""])
def test_bad_validity_periods_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput):
        expiry.Period.parse(text)


@pytest.mark.parametrize(
    ("limit", "zone", "expected"),
    [(utc(2046, 3, 2, 9, 0, 0), "UTC", D(2046, 3, 1)),
     (utc(2046, 3, 2, 23, 59, 59), "UTC", D(2046, 3, 2)),
     (utc(2046, 3, 2, 14, 59, 59), "Asia/Tokyo", D(2046, 3, 2)),
     (utc(2046, 3, 2, 14, 59, 58), "Asia/Tokyo", D(2046, 3, 1))],
    ids=["mid-day", "last-second", "tokyo-last-second", "tokyo-one-short"],
)
def test_latest_date_is_the_last_whole_day_within_the_issuer(limit: dt.datetime, zone: str,
                                                             expected: dt.date) -> None:
    latest = expiry.latest_within(limit, Z(zone))
    assert latest == expected
    assert expiry.not_after(latest, Z(zone)) <= limit
    assert expiry.not_after(latest + dt.timedelta(days=1), Z(zone)) > limit
