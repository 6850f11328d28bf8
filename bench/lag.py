"""The server's own reading of its lateness, from ``/metrics``, to set beside the client's.

trio-mock exports ``trio_mock_schedule_lag_seconds``, a Prometheus histogram of how late each
paced write went out against its due time. A mock that is late should say so by itself; the
bench checks that it does by scraping the histogram around each paced run (the difference of
two scrapes is that run's writes) and printing its p50, p99 and mean next to what the load
client measured. Parsed with prometheus-client's text parser (installed with trio-mock); an
older server without the metric gives None, not an error.
"""

from __future__ import annotations

import contextlib
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

METRIC = "trio_mock_schedule_lag_seconds"
FLUSH_S = 0.5  # trio-mock hands its metrics to /metrics four times a second


@dataclass
class Histogram:
    """One histogram summed over its labels: cumulative counts per upper bound, sum, count."""

    buckets: dict[float, float] = field(default_factory=dict)
    total: float = 0.0
    count: float = 0.0

    def __sub__(self, other: Histogram) -> Histogram:
        """The observations made between two scrapes (``self`` the later one)."""
        buckets = {le: n - other.buckets.get(le, 0.0) for le, n in self.buckets.items()}
        return Histogram(buckets, self.total - other.total, self.count - other.count)

    def quantile(self, q: float) -> float | None:
        """Prometheus' ``histogram_quantile``: linear within the bucket the rank falls in."""
        if self.count <= 0:
            return None
        rank, lower, below = q * self.count, 0.0, 0.0
        for le in sorted(self.buckets):
            n = self.buckets[le]
            if n >= rank:
                if le == float("inf"):
                    return lower  # past the last finite bound: that bound is all we know
                share = (rank - below) / (n - below) if n > below else 1.0
                return lower + (le - lower) * share
            lower, below = le, n
        return lower

    def summary(self) -> dict[str, Any]:
        """p50, p99 and mean in ms, and how many writes they are of."""
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        mean = self.total / self.count if self.count > 0 else None
        return {
            "server_lag_p50_ms": ms(p50),
            "server_lag_p99_ms": ms(p99),
            "server_lag_mean_ms": ms(mean),
            "server_lag_writes": int(self.count),
        }


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 3)


def parse(text: str, name: str = METRIC) -> Histogram | None:
    """The histogram ``name`` in a text exposition, summed over labels; None if absent."""
    found, hist = False, Histogram()
    for family in text_string_to_metric_families(text):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                bound = float(sample.labels["le"])  # "+Inf" parses
                hist.buckets[bound] = hist.buckets.get(bound, 0.0) + sample.value
                found = True
            elif sample.name == f"{name}_sum":
                hist.total += sample.value
            elif sample.name == f"{name}_count":
                hist.count += sample.value
                found = True
    return hist if found else None


def scrape(url: str) -> Histogram | None:
    """``GET {url}/metrics`` and parse the lag histogram; None if unreachable or absent."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy
    with contextlib.suppress(OSError, ValueError), opener.open(f"{url}/metrics", timeout=5) as r:
        return parse(r.read().decode(errors="replace"))
    return None


def reading(before: Histogram | None, after: Histogram | None) -> dict[str, Any]:
    """The lag figures of the writes between two scrapes; all None if the metric is
    missing after the run (an older server). Missing before it means nothing was paced
    yet: the series appear with their first observation."""
    if after is None:
        return {
            "server_lag_p50_ms": None,
            "server_lag_p99_ms": None,
            "server_lag_mean_ms": None,
            "server_lag_writes": None,
        }
    return (after - (before or Histogram())).summary()
