"""Named moments for tests: time is injected, never read from the machine."""

from __future__ import annotations

import datetime as dt


class MOMENTS:
    # a quiet Monday morning, well inside every CA's validity
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    # 2028-02-29 exists: the day after which "one year later" must fall back to 28 Feb
    leap_day = dt.datetime(2028, 2, 29, 12, 0, tzinfo=dt.UTC)
    # the operator mistypes a contract end at `start` (2025 for 2026): the suspension is
    # published then, and the 30-day grace period runs from there, not from the typed date
    grace_day_29 = start + dt.timedelta(days=29)
    grace_end_after_start = start + dt.timedelta(days=30)
    # ten years on: the tenant's first issuing CA (made at `start`, 20 years) has ten left,
    # the root (25 years) fifteen; a rollover now makes a CA that ends with the root
    rollover = dt.datetime(2036, 3, 3, 9, 0, tzinfo=dt.UTC)
    # a user's last day the first issuing CA cannot reach (it ends 2046-03-02) and its
    # successor can (it ends with the root, 2051-03-02)
    past_first_ca = dt.date(2048, 1, 31)
