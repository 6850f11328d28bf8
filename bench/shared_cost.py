"""What the state the workers of ``--workers N`` share costs a request, in process.

    python bench/shared_cost.py

Each line: microseconds of CPU (``time.process_time``, the least of ``ROUNDS`` rounds of
``CALLS`` calls) for one request's part, kept in one process against kept in pages the
workers share (``_serve._shared_pages``): the load cycle (admission, first token, finish)
without and with ``--max-concurrency``, a fault draw (``--failure-percent``), and a
rate-limit charge (``--rate-limit-rpm`` and ``--rate-limit-tpm``). Uncontended: a second
worker taking the same lock adds its wait on top. The supervisor's own figures (a handoff
between workers, the journal spool) are ``handoff.py`` and ``spool_cost.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from trio_mock import Settings
from trio_mock._config._faults import FaultInjector
from trio_mock._serve._arrivals import SharedArrivals
from trio_mock._serve._buckets import SharedBuckets
from trio_mock._serve._load import Load, SharedLoad
from trio_mock._serve._ratelimit import RateLimiter
from trio_mock._serve._slots import SharedSlots

ROUNDS, CALLS = 5, 20_000


def least_us(call: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(CALLS):
            call()
        best = min(best, (time.process_time() - started) / CALLS * 1e6)
    return round(best, 2)


def load_cycle(load: Load) -> Callable[[], None]:
    def cycle() -> None:
        admission = load.admit_now()
        assert admission is not None
        admission.first_token()
        admission.finish()

    return cycle


def line(what: str, local: float, shared: float) -> None:
    print(f"{what:<34} one process {local:6.2f} us   shared {shared:6.2f} us   "
          f"+{shared - local:.2f} us")  # fmt: skip


async def main() -> None:
    for concurrency in (None, 64):
        settings = Settings().replace(max_concurrency=concurrency)
        capacity, latency = settings.capacity, settings.latency
        local = least_us(load_cycle(Load(capacity, latency)))
        shared = least_us(load_cycle(SharedLoad(capacity, latency, SharedSlots(2), 0)))
        line(f"load cycle, max_concurrency={concurrency}", local, shared)
    faults = Settings().replace(failure_percent=0.001, fault_seed=7).faults
    local = least_us(FaultInjector(faults).draw)
    shared = least_us(FaultInjector(faults, SharedArrivals().next).draw)
    line("fault draw", local, shared)
    limits = Settings().replace(rate_limit_rpm=10**9, rate_limit_tpm=10**12).rate_limits
    headers = [(b"authorization", b"Bearer key")]
    charges = []
    for buckets in (None, SharedBuckets()):
        limiter = RateLimiter(limits, buckets)
        charges.append(least_us(lambda limiter=limiter: limiter.charge(headers, "m", 30)))
    line("rate-limit charge", *charges)


if __name__ == "__main__":
    trio.run(main)
