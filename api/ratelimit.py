"""Rate limits: a token bucket per key (a client address, an API token)."""

from __future__ import annotations

import datetime as dt
import threading


class RateLimiter:
    """A token bucket per client address: ``burst`` requests at once, refilled at
    ``per_minute``. In memory, per process: it slows guessing and hammering, nothing more
    (a token has 256 bits; guessing is hopeless anyway)."""

    def __init__(self, *, per_minute: int = 20, burst: int = 20,
                 max_clients: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, dt.datetime]] = {}
        self._lock = threading.Lock()

    def admit(self, client: str, *, now: dt.datetime) -> float | None:
        """None when the request may go on; else the seconds until one more would."""
        with self._lock:
            tokens = self._level(client, now=now)
            admitted = tokens >= 1.0
            self._buckets[client] = (tokens - 1.0 if admitted else tokens, now)
            if len(self._buckets) > self.max_clients:
                self._forget(now=now)
            return None if admitted else (1.0 - tokens) / self.rate

    def _level(self, client: str, *, now: dt.datetime) -> float:
        tokens, last = self._buckets.get(client, (self.burst, now))
        elapsed = max(0.0, (now - last).total_seconds())
        return min(self.burst, tokens + elapsed * self.rate)

    def _forget(self, *, now: dt.datetime) -> None:
        """Drop full buckets (they mean nothing); if that is not enough, the oldest half."""
        for client in [c for c in self._buckets if self._level(c, now=now) >= self.burst]:
            del self._buckets[client]
        if len(self._buckets) > self.max_clients:
            oldest = sorted(self._buckets, key=lambda c: self._buckets[c][1])
            for client in oldest[: len(oldest) // 2]:
                del self._buckets[client]
