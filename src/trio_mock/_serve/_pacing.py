"""Releasing frames on their deadlines (``_sim._schedule`` computes them, and
``_sim._timeline`` cuts them): one timer task for every paced stream, and one loop that
HTTP streams and Realtime responses share.

Frames that are due together, or overdue because the client pushed back, leave in one
write of up to 64 KiB: fewer, fuller writes cost less.
"""

from __future__ import annotations

import heapq
import itertools
import math
from array import array
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import trio

from .._sim._schedule import Ending, Event

# Overdue frames go out together, but in writes of at most about this size: a stream with
# no ITL (or a client far behind) must not build all of its frames at once, which for a
# 120k-token stream is 30 MB of small objects and as much again joined.
WRITE_BYTES = 1 << 16
Batch = TypeVar("Batch")
SleepUntil = Callable[[float], Awaitable[None]]
COMPACT_AT = 1024  # abandoned waits the pacer keeps before it drops them all at once


class Pacer:
    """Wakes paced streams at their deadlines: one timer task for all of them.

    ``trio.sleep_until`` costs a cancel scope, a deadline registration and a ``Cancelled``
    exception per call, about 30 us a token when a thousand streams run (against 10 here,
    measured with 1000 streams of 100 tokens). Here a stream parks itself on a heap and the
    timer task wakes every stream that is due in one pass. Until ``run`` runs (an app
    served without its lifespan), ``sleep_until`` is trio's.
    """

    def __init__(self) -> None:
        self.heap: list[list[Any]] = []  # [deadline, order, task or None once abandoned]
        self.order = itertools.count()
        self.wake_at = math.inf  # the timer's deadline
        self.timer: trio.CancelScope | None = None
        self.abandoned = 0
        self.running = False

    async def sleep_until(self, deadline: float) -> None:
        """``trio.sleep_until(deadline)``: a checkpoint at least, cancellable."""
        if not self.running or deadline == math.inf:
            await trio.sleep_until(deadline)
            return
        if deadline <= trio.current_time():
            await trio.lowlevel.checkpoint()
            return
        wait = [deadline, next(self.order), trio.lowlevel.current_task()]
        heapq.heappush(self.heap, wait)
        if deadline < self.wake_at and self.timer is not None:
            self.wake_at = self.timer.deadline = deadline

        def abandon(_: Any) -> trio.lowlevel.Abort:
            wait[2] = None
            self.abandoned += 1
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abandon)

    async def run(self) -> None:
        """The timer task: wake whoever is due, sleep until the next deadline, repeat."""
        heap = self.heap
        self.running = True
        try:
            while True:
                now = trio.current_time()
                while heap and heap[0][0] <= now:
                    task = heapq.heappop(heap)[2]
                    if task is not None:
                        trio.lowlevel.reschedule(task)
                    else:
                        self.abandoned -= 1
                if self.abandoned > COMPACT_AT and self.abandoned * 2 > len(heap):
                    heap[:] = [wait for wait in heap if wait[2] is not None]  # disconnects
                    heapq.heapify(heap)
                    self.abandoned = 0
                self.wake_at = heap[0][0] if heap else math.inf
                with trio.CancelScope(deadline=self.wake_at) as self.timer:
                    await trio.sleep_forever()
        finally:
            self.running, self.timer = False, None
            for wait in heap:  # never reached while streams run: the app's nursery ends last
                if wait[2] is not None:
                    trio.lowlevel.reschedule(wait[2])
            heap.clear()


def joined(frames: list[bytes]) -> bytes:
    return frames[0] if len(frames) == 1 else b"".join(frames)


async def paced(
    events: Iterable[Event],
    sleep_until: SleepUntil,
    gather: Callable[[list[bytes]], Batch],
) -> AsyncGenerator[tuple[array[float], Ending | None, Batch]]:
    """Yield each event's frame at its deadline, gathering frames that are due together
    (into one write, or for a WebSocket one burst of messages) up to ``WRITE_BYTES``; with
    each batch, the deadlines of the events it carries and the ``Ending`` among them if
    the last one is the stream's end, for the journal.

    Args:
      sleep_until: trio's, or a ``Pacer``'s.
      gather: what the frames become: one bytes string to write (``joined``), or a list
        of WebSocket messages.
    """
    pending = iter(events)
    nxt = next(pending, None)
    while nxt is not None:
        await sleep_until(nxt[0])  # a past deadline is just a checkpoint
        now = trio.current_time()
        due = array("d", (nxt[0],))
        batch = [next(nxt[1])]
        size = len(batch[0])
        last, nxt = nxt, next(pending, None)
        while nxt is not None and nxt[0] <= now and size < WRITE_BYTES:
            due.append(nxt[0])
            batch.append(next(nxt[1]))
            size += len(batch[-1])
            last, nxt = nxt, next(pending, None)
        data = gather(batch)
        # While a slow client's write waits, it holds one buffer and an array, not every
        # frame and event: bytes and tuples that would scatter over the allocator's pages.
        del batch
        ending = last[1]
        yield due, ending if type(ending) is Ending else None, data
