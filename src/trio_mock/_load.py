"""The simulated server's load: capacity, the FIFO queue, and who is in prefill or decode.

One ``Load`` per app (one Trio run), shared by its requests. It answers two questions of
the latency model: how many other requests are in prefill when one is admitted (TTFT
slowdown) and how many streams decode right now (ITL slowdown). With no capacity limit and
zero load factors it is just three counters.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ._errors import OpenAIError

if TYPE_CHECKING:
    from ._settings import CapacitySettings, LatencySettings


def overloaded(status: int, why: str) -> OpenAIError:
    """The refusal OpenAI sends when it is overloaded (503) or rate limited (429)."""
    if status == 429:
        return OpenAIError(
            429, f"Rate limit reached: {why}. Please try again later.", code="rate_limit_exceeded"
        )
    return OpenAIError(
        503,
        f"The server is currently overloaded ({why}), please try again later.",
        type="server_error",
        code="server_overloaded",
    )


class Load:
    """Requests queued, in prefill and decoding, and the slots they compete for."""

    def __init__(self, capacity: CapacitySettings, latency: LatencySettings) -> None:
        self.capacity = capacity
        self.queued = self.prefilling = self.decoding = 0
        self.slots = trio.Semaphore(capacity.max_concurrency) if capacity.max_concurrency else None
        self.ttft_factor = latency.ttft_load_factor
        self.itl_factor = latency.itl_load_factor

    def snapshot(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "running": self.prefilling + self.decoding,
            "prefilling": self.prefilling,
            "decoding": self.decoding,
        }

    async def admit(self) -> Admission:
        """Wait for a slot, first come first served; refuse when the queue is full or the
        wait exceeds ``queue_timeout_s``.

        Raises:
          OpenAIError: 503 or 429 (``overload_status``).
        """
        if self.slots is not None:
            cap = self.capacity
            if self.slots.value == 0 and cap.max_queue is not None and self.queued >= cap.max_queue:
                raise overloaded(cap.overload_status, f"{self.queued} requests already queued")
            acquired = False
            self.queued += 1
            try:
                with trio.move_on_after(cap.queue_timeout_s or math.inf):
                    await self.slots.acquire()
                    acquired = True
            finally:
                self.queued -= 1
            if not acquired:
                raise overloaded(cap.overload_status, f"no slot within {cap.queue_timeout_s:g} s")
        ttft_scale = 1.0 + self.ttft_factor * self.prefilling
        self.prefilling += 1
        return Admission(self, ttft_scale)

    def itl_scale(self) -> float:
        """ITL multiplier now: 1 + factor x (streams decoding - 1)."""
        return 1.0 + self.itl_factor * max(self.decoding - 1, 0)


class Admission:
    """One admitted request's place in the load: prefill, then decode, then gone."""

    def __init__(self, load: Load, ttft_scale: float) -> None:
        self.load = load
        self.ttft_scale = ttft_scale
        self.decoding = False
        self.done = False

    def first_token(self) -> None:
        if not self.decoding and not self.done:
            self.load.prefilling -= 1
            self.load.decoding += 1
            self.decoding = True

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        if self.decoding:
            self.load.decoding -= 1
        else:
            self.load.prefilling -= 1
        if self.load.slots is not None:
            self.load.slots.release()
