"""Schedule lag: how late the server's writes went out against their due times.

A user must be able to tell from the server alone whether the mock or their own system was
late. Every write of a paced answer carries events whose deadlines the plan set; an event's
lag is ``max(0, written - due)``. ``Observer.close`` hands each finished record to
``LagMonitor.measure``, which reads the due and sent times the record already holds, so
nothing is added to a write (the hot path): a stream costs a few numpy calls per request, a
body (one write, due with its last token) a subtraction. The measure feeds three outlets:
the record (its max and p99, for the journal), the ``trio_mock_schedule_lag_seconds``
histogram (through the metrics batch), and a five-second window whose p99, above the
larger of 10 ms and the configured ITL, logs a warning at most every
``QUIET_S``. The window is a fixed ring of per-second bucket counts: bounded memory
whatever the load. Lag is counted when a request ends, so a long stream's writes reach
the window then.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._journal import Record

FloatArray = np.ndarray[Any, np.dtype[np.float64]]
log = logging.getLogger("trio_mock.lag")  # its own name: a test of something else may ignore it

# /metrics: from half a millisecond (on time, for a server) to ten seconds (hopeless), at
# most 1.5x apart above 20 ms, so a quantile read from them is close to the client's.
LAG_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2,
               0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # fmt: skip
# Lags are differences of clock readings: 0.05 late can come out as 0.05000000000000071
# and would land above le="0.05". A nanosecond off each puts it back, more cheaply than
# rounding (and, by far, within every bucket's precision).
NUDGE_S = 1e-9
# The window's buckets: 50 us to ~100 s in steps of 2^(1/8) (9 %), so a p99 read from
# them is at most 9 % high.
WINDOW_BOUNDS = tuple(5e-5 * 2 ** (k / 8) for k in range(8 * 21 + 1))
BOUNDS_ARRAY = np.asarray(WINDOW_BOUNDS)  # numpy searches an array, converts a tuple each time
SLOT_S = 1.0  # the window moves a second at a time ...
SLOTS = 5  # ... and spans five of them
CHECK_S = 1.0  # the window's p99 is read at most this often
QUIET_S = 15.0  # at most one warning this often
MIN_EVENTS = 20  # fewer events in the window than this: one slow write is no trend
# A p99 lag below the larger of these is within what a client on a busy machine measures
# as its own jitter (at 50 paced streams on one worker, a few ms from the burst of their
# first tokens): never worth a warning. A token late by more than a whole ITL is.
FLOOR_S = 0.010
ITL_SHARE = 1.0
QUANTILE = 0.99


def nearest_rank(count: int, q: float = QUANTILE) -> int:
    """The 0-based index of the ``q`` quantile of ``count`` sorted values (nearest rank)."""
    return max(math.ceil(q * count) - 1, 0)


def stream_lags(due: Any, sent: Any) -> FloatArray:
    """Each event's lag, sorted, from equal-length buffers of doubles (a record's
    ``array('d')``): sorted, the max and any quantile are a look-up.

    The views are dropped on return: an ``array`` exporting its buffer cannot shrink, and
    the journal trims it next."""
    lags = np.frombuffer(sent, dtype=np.float64) - np.frombuffer(due, dtype=np.float64)
    lags -= NUDGE_S
    np.maximum(lags, 0.0, out=lags)
    lags.sort()  # mostly zeros: fast
    return lags


def body_lag(record: Record) -> float | None:
    """A whole body's lag: it is due with its last token, and went out with its headers;
    None when it did not go out whole (refused, cut, client gone)."""
    if (
        record.status != 200
        or record.headers_sent is None
        or not record.due
        or record.cut is not None
        or record.disconnected
    ):
        return None
    return max(0.0, record.headers_sent - record.due[-1] - NUDGE_S)


class LagWindow:
    """Event lags of the last ``slots`` seconds, as bucket counts per second in a ring:
    a numpy row for streams' arrays, a list for bodies' single lags (a list item is
    cheaper to count one in)."""

    def __init__(self, slot_s: float = SLOT_S, slots: int = SLOTS) -> None:
        self.slot_s = slot_s
        self.counts = np.zeros((slots, len(WINDOW_BOUNDS) + 1), dtype=np.int64)
        self.singles = [[0] * (len(WINDOW_BOUNDS) + 1) for _ in range(slots)]
        self.held = [-1] * slots  # the absolute slot number each row counts

    def slot(self, now: float) -> int:
        """The ring index of the second holding ``now``, emptied when the ring comes round."""
        n = int(now // self.slot_s)
        i = n % len(self.held)
        if self.held[i] != n:
            self.counts[i] = 0
            self.singles[i] = [0] * (len(WINDOW_BOUNDS) + 1)
            self.held[i] = n
        return i

    def add(self, lags: FloatArray | float, now: float) -> None:
        i = self.slot(now)
        if isinstance(lags, float):
            self.singles[i][bisect_left(WINDOW_BOUNDS, lags)] += 1
        elif len(lags):
            placed = np.searchsorted(BOUNDS_ARRAY, lags, side="left")
            self.counts[i] += np.bincount(placed, minlength=len(WINDOW_BOUNDS) + 1)

    def summary(self, now: float, q: float = QUANTILE) -> tuple[int, float]:
        """Events counted in the window and their ``q`` quantile: the upper bound of its
        bucket (the largest bound past them all); (0, 0.0) when there are none."""
        n = int(now // self.slot_s)
        live = [i for i, held in enumerate(self.held) if n - len(self.held) < held <= n]
        if not live:
            return 0, 0.0
        total = self.counts[live].sum(axis=0) + np.sum([self.singles[i] for i in live], axis=0)
        count = int(total.sum())
        if not count:
            return 0, 0.0
        i = int(np.searchsorted(np.cumsum(total), nearest_rank(count, q) + 1, side="left"))
        return count, WINDOW_BOUNDS[min(i, len(WINDOW_BOUNDS) - 1)]


class LagMonitor:
    """Measures each finished request's lag and warns, rate-limited, when the server falls
    behind its schedule."""

    def __init__(self, itl_s: float = 0.0) -> None:
        self.window = LagWindow()
        self.threshold_s = FLOOR_S
        self.configure(itl_s)
        self.next_check = -math.inf
        self.quiet_until = -math.inf

    def configure(self, itl_s: float) -> None:
        """Take the configured mean ITL (at start and on a runtime change)."""
        self.threshold_s = max(FLOOR_S, ITL_SHARE * itl_s)

    def measure(self, record: Record, now: float) -> FloatArray | float | None:
        """The lag of each event ``record`` wrote (one float for a body), noted in the
        record as ``lag_max_s``/``lag_p99_s`` and in the window; None if it wrote none."""
        lags: FloatArray | float
        if record.sent:
            lags = events = stream_lags(record.due, record.sent)
            record.lag_max_s = float(events[-1])
            record.lag_p99_s = float(events[nearest_rank(len(events))])
        elif not record.stream and (lag := body_lag(record)) is not None:
            lags = record.lag_max_s = record.lag_p99_s = lag
        else:
            return None
        self.window.add(lags, now)
        if now >= self.next_check:
            self.next_check = now + CHECK_S
            self.check(now)
        return lags

    def check(self, now: float) -> bool:
        """Warn if the window's p99 is past the threshold and no warning went out lately."""
        count, p99 = self.window.summary(now)
        if count < MIN_EVENTS or p99 <= self.threshold_s or now < self.quiet_until:
            return False
        self.quiet_until = now + QUIET_S
        log.warning(
            "trio-mock is behind its own schedule: p99 lag of its writes over the last %g s "
            "is %.1f ms (%d events; warns above %.1f ms). The mock, not the client, is late: "
            "its event loop cannot keep up with this load. Run more worker processes "
            "(--workers N, or --workers auto for one per CPU) or lower the load per worker.",
            SLOT_S * len(self.window.held),
            p99 * 1000,
            count,
            self.threshold_s * 1000,
            extra={"lag_p99_ms": round(p99 * 1000, 3), "lag_events": count},
        )
        return True
