"""notAfter around DST gaps that do not start at midnight, and around repeated midnights.

tests/unit/test_expiry.py covered gaps that start exactly at local midnight only. For those,
the first guess of ``ca.expiry.start_of_day`` (midnight read in the offset before the change)
is already the answer, so its search for the first instant of the day was never exercised,
and an off-by-one in it went unseen. Here every expected ``notAfter`` is worked out by hand
from the zone's rules (the comment on each case shows the sum), never from the code.
"""

from __future__ import annotations

import datetime as dt
import io
import struct
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ca import expiry

Z = zoneinfo.ZoneInfo
D = dt.date
SECOND = dt.timedelta(seconds=1)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


# (expiry date, zone, notAfter): notAfter is the first instant of the next day in the zone,
# minus one second
REAL_ZONES = [
    # Toronto 1919-03-30: clocks went from 23:30 EST (-5) to 00:30 EDT (-4), at 04:30Z: the
    # only gap of the IANA database since 1900 that covers midnight without starting at it.
    # The 31st begins at 00:30 EDT = 04:30Z
    (D(1919, 3, 30), "America/Toronto", utc(1919, 3, 31, 4, 29, 59)),
    # the day after, midnight exists again, in EDT: 04-01 00:00 -4 = 04:00Z
    (D(1919, 3, 31), "America/Toronto", utc(1919, 4, 1, 3, 59, 59)),
    # Berlin 2024-03-31, gap 02:00 -> 03:00 local: the 31st starts at 00:00 CET (+1) =
    # 03-30 23:00Z; the 23-hour 31st ends at 04-01 00:00 CEST (+2) = 03-31 22:00Z
    (D(2024, 3, 30), "Europe/Berlin", utc(2024, 3, 30, 22, 59, 59)),
    (D(2024, 3, 31), "Europe/Berlin", utc(2024, 3, 31, 21, 59, 59)),
    # London 2024-03-31, gap 01:00 -> 02:00: 03-31 00:00 GMT = 00:00Z; 04-01 00:00 BST =
    # 03-31 23:00Z
    (D(2024, 3, 30), "Europe/London", utc(2024, 3, 30, 23, 59, 59)),
    (D(2024, 3, 31), "Europe/London", utc(2024, 3, 31, 22, 59, 59)),
    # New York 2024-03-10, gap 02:00 -> 03:00: 03-10 00:00 EST (-5) = 05:00Z; 03-11 00:00
    # EDT (-4) = 04:00Z
    (D(2024, 3, 9), "America/New_York", utc(2024, 3, 10, 4, 59, 59)),
    (D(2024, 3, 10), "America/New_York", utc(2024, 3, 11, 3, 59, 59)),
    # Lord Howe moves by half an hour, gap 02:00 -> 02:30 on 2024-10-06: 10-06 00:00 +10:30
    # = 10-05 13:30Z; 10-07 00:00 +11 = 10-06 13:00Z
    (D(2024, 10, 5), "Australia/Lord_Howe", utc(2024, 10, 5, 13, 29, 59)),
    (D(2024, 10, 6), "Australia/Lord_Howe", utc(2024, 10, 6, 12, 59, 59)),
    # Chatham, +12:45 -> +13:45 with a gap at 02:45 local on 2024-09-29: 09-29 00:00 +12:45
    # = 09-28 11:15Z; 09-30 00:00 +13:45 = 09-29 10:15Z
    (D(2024, 9, 28), "Pacific/Chatham", utc(2024, 9, 28, 11, 14, 59)),
    (D(2024, 9, 29), "Pacific/Chatham", utc(2024, 9, 29, 10, 14, 59)),
    # Japan's DST 1948: Sat 05-01 24:00 JST -> 05-02 01:00 JDT (+10); 05-02 begins at 01:00
    # JDT = 05-01 15:00Z, 05-03 at 00:00 JDT = 05-02 14:00Z
    (D(1948, 5, 1), "Asia/Tokyo", utc(1948, 5, 1, 14, 59, 59)),
    (D(1948, 5, 2), "Asia/Tokyo", utc(1948, 5, 2, 13, 59, 59)),
    # ... and back on Sat 09-11 "25:00" (09-12 01:00 JDT -> 00:00 JST): the 12th's midnight
    # happens twice; the day starts at the first, 00:00 JDT = 09-11 14:00Z (not 15:00Z)
    (D(1948, 9, 11), "Asia/Tokyo", utc(1948, 9, 11, 13, 59, 59)),
    # Sao Paulo 2017-10-15, midnight skipped (00:00 -3 -> 01:00 -2): 01:00 -2 = 03:00Z
    (D(2017, 10, 14), "America/Sao_Paulo", utc(2017, 10, 15, 2, 59, 59)),
    # Sao Paulo 2018-02-18: at 00:00 -2 the clock went back to 02-17 23:00 -3, so the 18th's
    # midnight happens once, at 00:00 -3 = 03:00Z
    (D(2018, 2, 17), "America/Sao_Paulo", utc(2018, 2, 18, 2, 59, 59)),
    # Havana 2024-11-03, 01:00 CDT -> 00:00 CST: two midnights; the first is 00:00 -4 = 04:00Z
    (D(2024, 11, 2), "America/Havana", utc(2024, 11, 3, 3, 59, 59)),
    # Havana 2025-03-09, midnight skipped: 01:00 CDT (-4) = 05:00Z
    (D(2025, 3, 8), "America/Havana", utc(2025, 3, 9, 4, 59, 59)),
    # Santiago 2024-09-08, midnight skipped (00:00 -4 -> 01:00 -3): 01:00 -3 = 04:00Z
    (D(2024, 9, 7), "America/Santiago", utc(2024, 9, 8, 3, 59, 59)),
    # Santiago 2024-04-07, back at 03:00Z from 00:00 -3 to 04-06 23:00 -4: the 7th starts at
    # 00:00 -4 = 04:00Z
    (D(2024, 4, 6), "America/Santiago", utc(2024, 4, 7, 3, 59, 59)),
    # Kwajalein skipped all of 1993-08-21 (-12 -> +12 at 08-20 24:00): the next day that
    # exists starts 08-22 00:00 +12 = 08-21 12:00Z; a skipped expiry date ends there too
    (D(1993, 8, 20), "Pacific/Kwajalein", utc(1993, 8, 21, 11, 59, 59)),
    (D(1993, 8, 21), "Pacific/Kwajalein", utc(1993, 8, 21, 11, 59, 59)),
    # Monrovia left -0:44:30 for GMT at 1972-01-07 00:00: that day starts at 00:44:30 GMT,
    # an instant that is not a whole minute
    (D(1972, 1, 6), "Africa/Monrovia", utc(1972, 1, 7, 0, 44, 29)),
]


@pytest.mark.parametrize(("day", "zone", "expected"), REAL_ZONES,
                         ids=[f"{z}-{d}" for d, z, _ in REAL_ZONES])
def test_not_after_around_real_transitions(day: dt.date, zone: str,
                                           expected: dt.datetime) -> None:
    assert expiry.not_after(day, Z(zone)) == expected


# --- zones made for the test: a gap [start, start + length) across local midnight --------

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def tzif(transition: dt.datetime, before: dt.timedelta, after: dt.timedelta) -> Z:
    """A zone with one transition, from UTC offset ``before`` to ``after``, at ``transition``
    (UTC): a version 1 TZif file (RFC 8536) written here."""
    names = b"BEF\x00AFT\x00"
    header = b"TZif" + b"\x00" + b"\x00" * 15 + struct.pack(">6l", 0, 0, 0, 1, 2, len(names))
    when = int((transition - EPOCH).total_seconds())
    body = (struct.pack(">l", when) + struct.pack(">B", 1)
            + struct.pack(">lBB", int(before.total_seconds()), 0, 0)
            + struct.pack(">lBB", int(after.total_seconds()), 1, 4) + names)
    return Z.from_file(io.BytesIO(header + body), key="Test/Gap")


H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
S = dt.timedelta(seconds=1)

# (local start of the gap on 2030-06-14, length of the gap, offset before); the 15th starts
# where the gap ends, so the 14th's notAfter is the transition minus one second
SYNTHETIC = [
    (dt.time(23, 30), H, -5 * H),  # Toronto 1919's shape
    (dt.time(23, 0), 2 * H, 1 * H),
    (dt.time(23, 59, 59), H, 9 * H),  # midnight is the gap's second second
    (dt.time(23, 59, 59), 2 * S, 0 * H),  # a gap of two seconds
    (dt.time(22, 17, 33), 3 * H, 5 * H + 30 * M),
    (dt.time(23, 45), 30 * M, 12 * H + 45 * M),
    (dt.time(12, 0), 24 * H, -12 * H),  # the 15th skipped: it "starts" at its own noon
]


@pytest.mark.parametrize(("start", "length", "before"), SYNTHETIC,
                         ids=[f"{s.isoformat()}+{int(n.total_seconds())}s"
                              for s, n, _ in SYNTHETIC])
def test_gap_across_midnight_ends_the_day_before_at_the_transition(
        start: dt.time, length: dt.timedelta, before: dt.timedelta) -> None:
    local_start = dt.datetime.combine(D(2030, 6, 14), start)
    transition = (local_start - before).replace(tzinfo=dt.UTC)
    zone = tzif(transition, before, before + length)
    # the gap is what the test means it to be: one second earlier is still the 14th
    assert (transition - S).astimezone(zone).date() == D(2030, 6, 14)
    assert transition.astimezone(zone).date() > D(2030, 6, 14)
    assert expiry.start_of_day(D(2030, 6, 15), zone) == transition
    assert expiry.not_after(D(2030, 6, 14), zone) == transition - S


def test_gap_before_midnight_leaves_midnight_as_the_start() -> None:
    # a gap [23:00, 00:00) ends exactly at midnight, which therefore exists: the day starts
    # there, and the search for a first instant is not needed
    transition = dt.datetime(2030, 6, 14, 23, 0, tzinfo=dt.UTC)
    zone = tzif(transition, dt.timedelta(0), H)
    assert expiry.not_after(D(2030, 6, 14), zone) == transition - S


# --- every zone, any date: the day starts at an instant of that day, after one that is not --

ZONES = sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})


@settings(max_examples=300, deadline=None)
@given(zone=st.sampled_from(ZONES), day=st.dates(min_value=D(1900, 1, 2),
                                                 max_value=D(2060, 12, 31)))
def test_the_day_starts_at_its_first_instant_in_every_zone(zone: str, day: dt.date) -> None:
    tz = Z(zone)
    start = expiry.start_of_day(day, tz)
    assert start.microsecond == 0
    assert start.astimezone(tz).date() >= day
    assert (start - S).astimezone(tz).date() < day
