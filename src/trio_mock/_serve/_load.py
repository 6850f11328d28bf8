"""The simulated server's load: capacity, the FIFO queue, and who is in prefill or decode.

One ``Load`` per app (one Trio run), shared by its requests. It answers two questions of
the latency model: how many other requests are in prefill when one is admitted (TTFT
slowdown) and how many streams decode right now (ITL slowdown). With no capacity limit and
zero load factors it is just three counters.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

import trio

from .._openai._errors import OpenAIError
from ._slots import ADMITTED, FULL

if TYPE_CHECKING:
    from .._config._settings import CapacitySettings, LatencySettings
    from ._slots import SharedSlots


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
        return self.own_snapshot()

    def own_snapshot(self) -> dict[str, int]:
        """This process's figures (with several workers, the metrics' gauges sum them)."""
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
            if not await self.queue_for(partial(slots.acquire_on_behalf_of, holder)):
                raise self.timed_out()
        return self.started(holder)

    async def queue_for(self, slot: Callable[[], Awaitable[object]]) -> bool:
        """Wait for ``slot`` as one of the queued, at most ``queue_timeout_s``; whether
        it came in time."""
        self.queued += 1
        try:
            with trio.move_on_after(self.capacity.queue_timeout_s or math.inf):
                await slot()
                return True
            return False
        finally:
            self.queued -= 1

    def timed_out(self) -> OpenAIError:
        cap = self.capacity
        return overloaded(cap.overload_status, f"no slot within {cap.queue_timeout_s:g} s")

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


POLL_S = 0.002  # how soon a queued request hears of a slot released in another worker


class SharedLoad(Load):
    """A worker's part of the server's load with ``--workers N``: capacity, the queue and
    the load factors' counts are the server's (``_slots``). Without a capacity limit a
    request takes no lock, only publishes its worker's counts (two words).

    A queued request waits on a Trio event: a release in this worker sets it at once; for
    releases in other workers the oldest waiter here reads the shared ``granted`` count
    every ``POLL_S`` and wakes those it reaches (one poll per worker, not per request).
    """

    def __init__(
        self,
        capacity: CapacitySettings,
        latency: LatencySettings,
        table: SharedSlots,
        worker: int,
    ) -> None:
        self.table = table
        self.worker = worker
        self.waiters: dict[int, trio.Event] = {}  # by ticket, oldest first
        super().__init__(capacity, latency)

    def configure(self, capacity: CapacitySettings, latency: LatencySettings) -> None:
        self.capacity = capacity
        self.ttft_factor = latency.ttft_load_factor
        self.itl_factor = latency.itl_load_factor
        self.table.set_limit(capacity.max_concurrency)  # raising it admits the queue
        self.wake_granted()

    def snapshot(self) -> dict[str, int]:
        """The server's figures (``own_snapshot``: this worker's)."""
        prefilling, decoding = self.table.prefilling(), self.table.decoding()
        return {
            "queued": self.table.waiting(),
            "running": prefilling + decoding,
            "prefilling": prefilling,
            "decoding": decoding,
        }

    def admit_now(self) -> Admission | None:
        if not self.capacity.max_concurrency:
            return self.started(SharedAdmission(self, held=False))
        if not self.table.take(self.worker):
            return None
        return self.started(SharedAdmission(self, held=True))

    async def admit(self) -> Admission:
        await trio.lowlevel.checkpoint()  # before the claim: a cancel must not strand a slot
        cap = self.capacity
        if not cap.max_concurrency:
            return self.started(SharedAdmission(self, held=False))
        ticket = self.table.claim(self.worker, cap.max_queue)
        if ticket == FULL:
            raise overloaded(cap.overload_status, "the queue is full")
        if ticket == ADMITTED:
            return self.started(SharedAdmission(self, held=True))
        granted = False
        try:
            granted = await self.queue_for(partial(self.wait_granted, ticket))
        finally:
            if not granted:  # timed out or cancelled: its slot, if granted meanwhile, goes on
                self.table.give_up(self.worker, ticket)
                self.wake_granted()
        if not granted:
            raise self.timed_out()
        return self.started(SharedAdmission(self, held=True))

    async def wait_granted(self, ticket: int) -> None:
        """Until ``ticket`` holds a slot. Only the oldest waiter here polls."""
        event = self.waiters[ticket] = trio.Event()
        try:
            while ticket >= self.table.granted():
                head = next(iter(self.waiters)) == ticket
                with trio.move_on_after(POLL_S if head else math.inf):
                    await event.wait()
                if event.is_set():
                    event = self.waiters[ticket] = trio.Event()
                if head:
                    self.wake_granted()
        finally:
            del self.waiters[ticket]
            if self.waiters:  # the next oldest polls now
                next(iter(self.waiters.values())).set()

    def wake_granted(self) -> None:
        """Wake this worker's waiters whose tickets were granted."""
        if not self.waiters:
            return
        granted = self.table.granted()
        for ticket, event in self.waiters.items():
            if ticket >= granted:
                break
            event.set()

    def started(self, holder: Admission) -> Admission:
        prefilling = self.table.prefilling() if self.ttft_factor else 0
        holder.ttft_scale = 1.0 + self.ttft_factor * prefilling
        self.prefilling += 1
        self.publish()
        return holder

    def itl_scale(self, factor: float | None = None) -> float:
        factor = self.itl_factor if factor is None else factor
        return 1.0 + factor * max(self.table.decoding() - 1, 0) if factor else 1.0

    def publish(self) -> None:
        self.table.publish(self.worker, self.prefilling, self.decoding)


class SharedAdmission(Admission):
    """An admission to a ``SharedLoad``: its moves reach the shared counts."""

    def __init__(self, load: SharedLoad, *, held: bool) -> None:
        super().__init__(load, None)
        self.shared = load
        self.held = held  # a slot of the server's (taken while a limit was set)

    def first_token(self) -> None:
        super().first_token()
        self.shared.publish()

    def finish(self) -> None:
        if self.done:
            return
        super().finish()
        load = self.shared
        load.publish()
        if self.held:
            load.table.release(load.worker)
            load.wake_granted()
