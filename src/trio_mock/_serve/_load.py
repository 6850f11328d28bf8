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

from .._openai._errors import OpenAIError

if TYPE_CHECKING:
    from .._config._settings import CapacitySettings, LatencySettings


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
        self.queued = self.prefilling = self.decoding = 0
        self.finished = 0  # admitted requests that have finished, ever
        # Made on first need, then resized in place: requests holding a slot keep it.
        self.slots: trio.CapacityLimiter | None = None
        self.configure(capacity, latency)

    def configure(self, capacity: CapacitySettings, latency: LatencySettings) -> None:
        """Take new capacity and load-factor settings, for requests admitted from now on."""
        self.capacity = capacity
        self.ttft_factor = latency.ttft_load_factor
        self.itl_factor = latency.itl_load_factor
        total = capacity.max_concurrency or math.inf
        if self.slots is not None:
            self.slots.total_tokens = total  # raising it admits the queue at once
        elif capacity.max_concurrency:
            self.slots = trio.CapacityLimiter(total)

    def snapshot(self) -> dict[str, int]:
        return {
            "queued": self.queued,
            "running": self.prefilling + self.decoding,
            "prefilling": self.prefilling,
            "decoding": self.decoding,
        }

    def admit_now(self) -> Admission | None:
        """A slot at once, with no checkpoint (a scheduler pass is time added to every
        TTFT when many streams run); None when the request must queue (``admit``)."""
        slots = self.slots
        holder = Admission(self, slots)
        if slots is not None:
            if slots.available_tokens <= 0:
                return None
            slots.acquire_on_behalf_of_nowait(holder)
        return self.started(holder)

    async def admit(self) -> Admission:
        """Wait for a slot, first come first served; refuse when the queue is full or the
        wait exceeds ``queue_timeout_s``.

        Raises:
          OpenAIError: 503 or 429 (``overload_status``).
        """
        slots = self.slots
        holder = Admission(self, slots)
        if slots is not None:
            cap = self.capacity
            full = slots.available_tokens <= 0
            if full and cap.max_queue is not None and self.queued >= cap.max_queue:
                raise overloaded(cap.overload_status, f"{self.queued} requests already queued")
            acquired = False
            self.queued += 1
            try:
                with trio.move_on_after(cap.queue_timeout_s or math.inf):
                    await slots.acquire_on_behalf_of(holder)
                    acquired = True
            finally:
                self.queued -= 1
            if not acquired:
                raise overloaded(cap.overload_status, f"no slot within {cap.queue_timeout_s:g} s")
        return self.started(holder)

    def started(self, holder: Admission) -> Admission:
        """``holder`` enters prefill, slowed by the others already there."""
        holder.ttft_scale = 1.0 + self.ttft_factor * self.prefilling
        self.prefilling += 1
        return holder

    def itl_scale(self, factor: float | None = None) -> float:
        """ITL multiplier now: 1 + factor x (streams decoding - 1). A stream passes the
        factor it started with, so a runtime change does not reach it."""
        factor = self.itl_factor if factor is None else factor
        return 1.0 + factor * max(self.decoding - 1, 0)


class Admission:
    """One admitted request's place in the load: prefill, then decode, then gone."""

    def __init__(self, load: Load, slots: trio.CapacityLimiter | None) -> None:
        self.load = load
        self.slots = slots  # the limiter it holds a slot of, if any
        self.ttft_scale = 1.0
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
        self.load.finished += 1
        if self.decoding:
            self.load.decoding -= 1
        else:
            self.load.prefilling -= 1
        if self.slots is not None:
            self.slots.release_on_behalf_of(self)
