"""The only place in Tegata that reads the time.

Everything else takes ``now`` as a keyword argument or holds a ``Clock``; tests pass a
``FixedClock`` set to a named moment instead of patching ``datetime``.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current instant, an aware UTC datetime."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock that says what it is told; ``advance`` moves it forward."""

    def __init__(self, at: dt.datetime) -> None:
        require_aware(at)
        self._at = at.astimezone(dt.UTC)

    def now(self) -> dt.datetime:
        return self._at

    def set(self, at: dt.datetime) -> None:
        require_aware(at)
        self._at = at.astimezone(dt.UTC)

    def advance(self, delta: dt.timedelta) -> None:
        self._at += delta


def require_aware(value: dt.datetime) -> dt.datetime:
    """Refuse naive datetimes: every instant in Tegata carries its zone."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} where an aware one is required")
    return value
