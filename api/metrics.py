"""Prometheus metrics: counters of the server's workers, and figures read from the database.

Issuances, revocations, suspensions and key-material downloads are counted from the audit
log (so every replica reports the same totals); HTTP requests, OCSP requests and their
latency, and the lifecycle job's runs and failures, are counted by each worker in
``REGISTRY`` and summed over the workers of this host by ``api.sharedmetrics``.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


@dataclass
class Totals:
    """Counters and the OCSP histogram as numbers: one worker's, or the sum of several."""

    counters: Counter[tuple[str, str]] = field(default_factory=Counter)
    ocsp_seconds: Histogram = field(default_factory=Histogram)

    def add(self, other: Totals) -> None:
        self.counters.update(other.counters)
        for n, count in enumerate(other.ocsp_seconds.counts):
            self.ocsp_seconds.counts[n] += count
        self.ocsp_seconds.total += other.ocsp_seconds.total

    def to_json(self) -> dict[str, Any]:
        return {"counters": [[name, label, n] for (name, label), n in self.counters.items()],
                "ocsp_counts": self.ocsp_seconds.counts, "ocsp_total": self.ocsp_seconds.total}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Totals:
        counts = [int(n) for n in data["ocsp_counts"]]
        if len(counts) != len(BUCKETS) + 1:
            raise ValueError("another release's buckets")
        return cls(counters=Counter({(str(name), str(label)): int(n)
                                     for name, label, n in data["counters"]}),
                   ocsp_seconds=Histogram(counts=counts, total=float(data["ocsp_total"])))


@dataclass
class Registry:
    """This process's counters; ``changes`` tells a writer whether they moved."""

    counters: Counter[tuple[str, str]] = field(default_factory=Counter)
    ocsp_seconds: Histogram = field(default_factory=Histogram)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changes: int = 0

    def count(self, name: str, label: str = "") -> None:
        with self.lock:
            self.counters[(name, label)] += 1
            self.changes += 1

    def observe_ocsp(self, seconds: float) -> None:
        with self.lock:
            self.ocsp_seconds.observe(seconds)
            self.changes += 1

    def snapshot(self) -> tuple[int, Totals]:
        with self.lock:
            return self.changes, Totals(
                counters=Counter(self.counters),
                ocsp_seconds=Histogram(counts=list(self.ocsp_seconds.counts),
                                       total=self.ocsp_seconds.total))


REGISTRY = Registry()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(audit_counts: dict[str, int], crls: list[tuple[str, float, float]],
           totals: Totals) -> str:
    """The exposition text. ``crls``: (tenant, age seconds, seconds to nextUpdate);
    ``totals``: the workers' counters."""
    lines = ["# HELP tegata_events_total Audited actions by kind (issue, revoke, download...).",
             "# TYPE tegata_events_total counter"]
    lines += [f'tegata_events_total{{action="{_label(a)}"}} {n}'
              for a, n in sorted(audit_counts.items())]
    counters, hist = totals.counters, totals.ocsp_seconds
    for name, help_text, label_name in (
            ("tegata_http_requests_total", "HTTP requests answered, by route.", "route"),
            ("tegata_ocsp_requests_total", "OCSP requests answered, by method.", "method"),
            ("tegata_lifecycle_runs_total", "Lifecycle job runs, by outcome.", "outcome")):
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines += [f'{name}{{{label_name}="{_label(label)}"}} {n}'
                  for (metric, label), n in sorted(counters.items()) if metric == name]
    lines += ["# HELP tegata_ocsp_seconds Time to answer an OCSP request.",
              "# TYPE tegata_ocsp_seconds histogram"]
    running = 0
    for bound, count in zip((*BUCKETS, float("inf")), hist.counts, strict=True):
        running += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f'tegata_ocsp_seconds_bucket{{le="{le}"}} {running}')
    lines += [f"tegata_ocsp_seconds_sum {hist.total}", f"tegata_ocsp_seconds_count {running}"]
    lines += ["# HELP tegata_crl_age_seconds Age of each tenant's newest CRL.",
              "# TYPE tegata_crl_age_seconds gauge"]
    lines += [f'tegata_crl_age_seconds{{tenant="{_label(t)}"}} {age:.0f}' for t, age, _ in crls]
    lines += ["# HELP tegata_crl_expires_in_seconds Time left before a tenant's newest CRL's "
              "nextUpdate.", "# TYPE tegata_crl_expires_in_seconds gauge"]
    lines += [f'tegata_crl_expires_in_seconds{{tenant="{_label(t)}"}} {left:.0f}'
              for t, _, left in crls]
    return "\n".join(lines) + "\n"
