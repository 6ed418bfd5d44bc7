"""Certificate expiry as a calendar date in a time zone (pure).

A certificate whose expiry is date D in zone Z works through the whole of D in Z: its
``notAfter`` is the first instant of D+1 in Z, minus one second, in UTC. Seeds example:
2014-08-01 in Asia/Tokyo -> 2014-08-01T14:59:59Z.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass

from ca.clock import require_aware
from ca.errors import InvalidInput

EARLIEST_DATE = dt.date(1900, 1, 1)
# 9999-12-30 keeps notAfter inside year 9999 in every zone (UTC-12 included), and leaves
# 9999-12-31T23:59:59Z its RFC 5280 (4.1.2.5) meaning of "no well-defined expiration date".
LATEST_DATE = dt.date(9999, 12, 30)
ONE_SECOND = dt.timedelta(seconds=1)

_PERIOD = re.compile(r"P(?:(\d{1,3})Y)?(?:(\d{1,4})M)?(?:(\d{1,5})D)?")


@dataclass(frozen=True, kw_only=True)
class Period:
    """A calendar validity such as one year (``P1Y``) or 90 days (``P90D``)."""

    years: int = 0
    months: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        if min(self.years, self.months, self.days) < 0:
            raise InvalidInput(f"validity {self.text} has a negative part", field="validity")
        if self.years == self.months == self.days == 0:
            raise InvalidInput("a validity of zero length is not a validity", field="validity")

    @classmethod
    def parse(cls, text: str) -> Period:
        match = _PERIOD.fullmatch(text.strip().upper())
        if not match or not any(match.groups()):
            raise InvalidInput(f"validity {text[:32]!r} is not of the form P1Y, P6M, P90D or "
                               "P1Y6M", field="validity")
        years, months, days = (int(g) if g else 0 for g in match.groups())
        return cls(years=years, months=months, days=days)

    @property
    def text(self) -> str:
        parts = [f"{n}{unit}" for n, unit in ((self.years, "Y"), (self.months, "M"),
                                              (self.days, "D")) if n]
        return "P" + "".join(parts)

    def after(self, start: dt.date) -> dt.date:
        """``start`` plus this period; a day missing from the target month falls back to the
        month's last day (29 Feb + 1 year = 28 Feb)."""
        month_index = start.year * 12 + (start.month - 1) + self.years * 12 + self.months
        year, month = divmod(month_index, 12)
        month += 1
        if year > 9999:
            raise InvalidInput(f"{start} + {self.text} is beyond year 9999", field="validity")
        day = min(start.day, _days_in_month(year, month))
        try:
            return dt.date(year, month, day) + dt.timedelta(days=self.days)
        except OverflowError:
            raise InvalidInput(f"{start} + {self.text} is beyond year 9999",
                               field="validity") from None


ONE_YEAR = Period(years=1)


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (dt.date(year, month + 1, 1) - dt.timedelta(days=1)).day


def start_of_day(day: dt.date, zone: dt.tzinfo) -> dt.datetime:
    """The first instant of ``day`` in ``zone``, in UTC.

    Where midnight does not exist (a DST change or a skipped day), the day starts at its
    first existing instant; where midnight happens twice, at the first of them.
    """
    wall = dt.datetime.combine(day, dt.time())
    real = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(dt.UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            real.append(instant)
    if real:
        return min(real)
    # Midnight fell into a gap: find the first instant whose local date is ``day`` or later.
    # Gaps are forward jumps, so the local date only grows across this window.
    hi = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    lo = hi - dt.timedelta(days=2)
    while hi - lo > ONE_SECOND:
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid.astimezone(zone).date() >= day:
            hi = mid
        else:
            lo = mid
    return hi


def not_after(expiry: dt.date, zone: dt.tzinfo) -> dt.datetime:
    """The ``notAfter`` of a certificate valid through the whole of ``expiry`` in ``zone``."""
    check_range(expiry)
    return start_of_day(expiry + dt.timedelta(days=1), zone) - ONE_SECOND


def today_in(zone: dt.tzinfo, *, now: dt.datetime) -> dt.date:
    return require_aware(now).astimezone(zone).date()


def default_expiry(zone: dt.tzinfo, *, now: dt.datetime, validity: Period = ONE_YEAR) -> dt.date:
    """The expiry offered when the admin names none: ``validity`` after today in ``zone``."""
    try:
        return min(validity.after(today_in(zone, now=now)), LATEST_DATE)
    except InvalidInput:  # a long validity near the end of the calendar stops at its end
        return LATEST_DATE


def latest_within(limit: dt.datetime, zone: dt.tzinfo) -> dt.date:
    """The last date whose whole day in ``zone`` ends by ``limit`` (an issuer's notAfter):
    a certificate must not outlive the CA that vouches for it."""
    last = (require_aware(limit) + ONE_SECOND).astimezone(zone).date() - dt.timedelta(days=1)
    return min(last, LATEST_DATE)


def check_range(expiry: dt.date) -> None:
    if expiry < EARLIEST_DATE:
        raise InvalidInput(f"expiry {expiry} is before the earliest allowed, {EARLIEST_DATE}",
                           field="expires")
    if expiry > LATEST_DATE:
        raise InvalidInput(f"requested {expiry}, latest allowed {LATEST_DATE}", field="expires")


def check_expiry(expiry: dt.date, zone: dt.tzinfo, *, now: dt.datetime) -> None:
    """Refuse a date outside 1900-01-01 .. 9999-12-30 or before today in ``zone``."""
    check_range(expiry)
    today = today_in(zone, now=now)
    if expiry < today:
        raise InvalidInput(f"expiry {expiry} is before today ({today} in {zone})",
                           field="expires")


def parse_date(text: str) -> dt.date:
    """A ``YYYY-MM-DD`` date typed by a person; the message names what is wrong with it."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        raise InvalidInput(f"expiry {text[:32]!r} is not of the form YYYY-MM-DD", field="expires")
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"expiry {text.strip()} is not a date", field="expires") from None


def zone(name: str) -> zoneinfo.ZoneInfo:
    """An IANA zone, or ``InvalidInput`` naming the bad name."""
    from ca.settings import load_zone

    try:
        return load_zone(name)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="timezone") from None
