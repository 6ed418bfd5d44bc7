"""Named moments for tests: time is injected, never read from the machine."""

from __future__ import annotations

import datetime as dt


class MOMENTS:
    # a quiet Monday morning, well inside every CA's validity
    start = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
    # 2028-02-29 exists: the day after which "one year later" must fall back to 28 Feb
    leap_day = dt.datetime(2028, 2, 29, 12, 0, tzinfo=dt.UTC)
