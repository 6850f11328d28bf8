"""Rate limits that are the server's, not each worker's (issue 18, phase 2).

What this file proves:

- ``SharedBuckets`` (levels in shared memory) with an injected clock: a caller starts
  full, refills continuously at limit/60 per second up to its capacity, and two limiters
  on one table (two workers) draw from the same buckets: the 31st request of a 30 RPM
  minute is refused by either, with ``retry-after`` the exact wait, and fits after it.
  TPM too; callers are kept apart by key; a lowered limit caps what is left; ``clear``
  fills every bucket; a full probe window forgets its least recently charged caller.
- The supervisor's hub clears the levels when a change touches a rate-limit knob, and
  only then.
- Through the real CLI with ``--workers 3 --rate-limit-rpm 30`` (loopback, bounded), or
  the limit turned on by one PATCH: of 60 requests on fresh connections, served by
  several workers, exactly 30 succeed, each with its own ``x-ratelimit-remaining-requests``
  from 29 down to 0, and the other 30 are 429s with ``retry-after``.
- ``rate_limit_after_s`` counts from the table's making, in a worker started later too.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

from conftest import fast_settings
from test_shared_state import LIMIT_S, REQUESTS, cluster, journal, send_all
from trio_mock._app._hub import Hub
from trio_mock._openai._errors import OpenAIError
from trio_mock._serve import _buckets
from trio_mock._serve._buckets import SharedBuckets
from trio_mock._serve._ratelimit import RateLimiter
from trio_mock._serve._scripts import Scripts
from trio_mock._serve._tally import Tally

Pairs = list[tuple[bytes, bytes]]


class Clock:
    """Seconds that move only when a test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def workers(clock: Clock, count: int = 2, slots: int = 64, **leaves: Any) -> list[RateLimiter]:
    """``count`` limiters sharing one table, as the workers of one server do."""
    shared = SharedBuckets(slots, clock)
    return [RateLimiter(fast_settings(**leaves).rate_limits, shared) for _ in range(count)]


def key(name: str) -> Pairs:
    return [(b"authorization", f"Bearer {name}".encode())]


def remaining(headers: Pairs, unit: str = "requests") -> str:
    return dict(headers)[f"x-ratelimit-remaining-{unit}".encode()].decode()


def refused(limiter: RateLimiter, headers: Pairs, tokens: int = 1) -> dict[bytes, bytes]:
    with pytest.raises(OpenAIError) as caught:
        limiter.charge(headers, "m", tokens)
    assert caught.value.status == 429
    return dict(caught.value.headers)


async def test_two_workers_draw_from_one_bucket_that_refills_continuously() -> None:
    clock = Clock()
    first, second = workers(clock, rate_limit_rpm=30)
    taken = [(first, second)[i % 2].charge(key("a"), "m", 1) for i in range(30)]
    assert [remaining(h) for h in taken] == [str(n) for n in range(29, -1, -1)]
    for limiter in (first, second):
        headers = refused(limiter, key("a"))
        assert (headers[b"retry-after"], headers[b"retry-after-ms"]) == (b"2", b"2000")
        assert headers[b"x-ratelimit-remaining-requests"] == b"0"
    clock.now += 1.999  # 30 a minute: one request every 2 s
    refused(second, key("a"))
    clock.now += 0.001
    assert remaining(second.charge(key("a"), "m", 1)) == "0"
    refused(first, key("a"))
    clock.now += 600  # never above the capacity
    assert remaining(first.charge(key("a"), "m", 1)) == "29"
    assert remaining(second.charge(key("b"), "m", 1)) == "29"  # another key's own bucket


async def test_tokens_are_shared_and_a_refusal_takes_nothing() -> None:
    clock = Clock()
    first, second = workers(clock, rate_limit_tpm=600, rate_limit_rpm=100)
    assert remaining(first.charge(key("a"), "m", 500), "tokens") == "100"
    headers = refused(second, key("a"), tokens=200)
    assert headers[b"retry-after-ms"] == b"10000"  # 100 more at 10 a second
    assert headers[b"x-ratelimit-remaining-requests"] == b"99"  # the refusal took no request
    clock.now += 10
    answer = dict(second.charge(key("a"), "m", 200))
    assert answer[b"x-ratelimit-remaining-tokens"] == b"0"
    assert answer[b"x-ratelimit-remaining-requests"] == b"99"  # refilled to 100 in 10 s


async def test_a_lowered_limit_caps_the_level_and_clear_fills_every_bucket() -> None:
    clock = Clock()
    (limiter,) = workers(clock, count=1, rate_limit_rpm=60)
    assert limiter.shared is not None
    limiter.charge(key("a"), "m", 1)
    lower = RateLimiter(fast_settings(rate_limit_rpm=10).rate_limits, limiter.shared)
    assert remaining(lower.charge(key("a"), "m", 1)) == "9"  # 59 left, capped at 10
    limiter.shared.clear()
    assert remaining(limiter.charge(key("a"), "m", 1)) == "59"


async def test_a_full_probe_window_forgets_its_least_recently_charged_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_buckets, "PROBES", 2)
    clock = Clock()
    (limiter,) = workers(clock, count=1, slots=2, rate_limit_rpm=30)
    for name in ("a", "b"):
        limiter.charge(key(name), "m", 1)
        clock.now += 0.1
    assert remaining(limiter.charge(key("a"), "m", 1)) == "28"
    assert remaining(limiter.charge(key("c"), "m", 1)) == "29"  # took "b"'s slot
    assert remaining(limiter.charge(key("a"), "m", 1)) == "27"
    assert remaining(limiter.charge(key("b"), "m", 1)) == "29"  # forgotten: full again


async def test_the_hub_clears_the_levels_only_for_a_rate_limit_change() -> None:
    shared = SharedBuckets(8, Clock())
    settings = fast_settings(rate_limit_rpm=30)
    limiter = RateLimiter(settings.rate_limits, shared)
    hub = Hub(settings, Scripts(Tally(slots=4)), shared)
    limiter.charge([], "m", 1)
    hub.configure({"ttft_ms": 5})
    assert remaining(limiter.charge([], "m", 1)) == "28"
    hub.configure({"rate_limit_rpm": 30})  # no change: nothing cleared
    assert remaining(limiter.charge([], "m", 1)) == "27"
    hub.configure({"rate_limit_tpm": 1000})
    assert remaining(limiter.charge([], "m", 1)) == "29"


def test_the_default_clock_is_one_for_every_process() -> None:
    assert SharedBuckets(1).clock is time.monotonic


RPM = 30


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "patch"])
async def test_three_workers_share_one_requests_bucket(tmp_path: Path, how: str) -> None:
    """Set at start-up, or turned on later by one PATCH (the table is there either way)."""
    flags = ["--rate-limit-rpm", str(RPM)] if how == "flag" else []
    with trio.fail_after(LIMIT_S):
        async with cluster(tmp_path, *flags) as server:
            if how == "patch":
                async with server.client() as client:
                    answer = await client.patch("/_mock/config", json={"rate_limit_rpm": RPM})
                assert answer.status_code == 200, answer.text
                assert answer.json()["workers"] == {"applied": [0, 1, 2], "failed": []}
            began = trio.current_time()
            responses = await send_all(server, REQUESTS)
            elapsed_s = trio.current_time() - began
            entries = await journal(server, REQUESTS)
    # 30 a minute refill one request every 2 s: the burst must end before one has.
    assert elapsed_s < 60 / RPM, elapsed_s
    statuses = Counter(r.status_code for r in responses.values())
    assert statuses == {200: RPM, 429: REQUESTS - RPM}
    ok = [r for r in responses.values() if r.status_code == 200]
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in ok) == list(range(RPM))
    assert {r.headers["x-ratelimit-limit-requests"] for r in responses.values()} == {str(RPM)}
    for answer in responses.values():
        if answer.status_code == 429:
            assert answer.json()["error"]["code"] == "rate_limit_exceeded"
            assert answer.headers["x-ratelimit-remaining-requests"] == "0"
            wait_ms = int(answer.headers["retry-after-ms"])
            assert 0 < wait_ms <= 2000
            assert int(answer.headers["retry-after"]) == math.ceil(wait_ms / 1000)
    assert len({e["worker"] for e in entries}) >= 2  # the kernel spread the connections
    assert Counter(e["status"] for e in entries) == statuses


async def test_the_window_counts_from_the_tables_making_in_every_worker() -> None:
    """A worker that starts later (a replacement) does not open the window again."""
    clock = Clock()
    early, late = workers(clock, rate_limit_after_s=10, rate_limit_for_s=5)
    early.start()
    clock.now += 12
    late.start()
    for limiter in (early, late):
        assert refused(limiter, key("a"))[b"retry-after"] == b"3"
    clock.now += 3
    assert late.charge(key("a"), "m", 1) == []  # no buckets: only the window
