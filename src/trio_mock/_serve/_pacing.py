"""The only timing code: turn planned offsets into deadlines, and release frames on them.

Every deadline is absolute (``trio.current_time()`` based) and each one is computed from
the previous *deadline*, never from when a sleep happened to end, so pacing does not drift.
Unloaded, deadline ``i`` is exactly ``start + offset_i``. Under the load model the steps
between offsets stretch: TTFT by the factor fixed at admission, each later gap by the ITL
factor at the moment the previous token is sent. Frames that are due together, or overdue
because the client pushed back, leave in one write of up to 64 KiB: fewer, fuller writes
cost less.

An event is a deadline and the source its frame is drawn from when it goes out: a frame is
built only when it is sent, so a stream cut before an event never builds (or numbers) it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from array import array
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Sequence
from itertools import islice, repeat
from operator import itemgetter
from typing import Any, TypeVar

import trio

Event = tuple[float, Iterator[bytes]]  # (deadline, where its frame is drawn from)
# Overdue frames go out together, but in writes of at most about this size: a stream with
# no ITL (or a client far behind) must not build all of its frames at once, which for a
# 120k-token stream is 30 MB of small objects and as much again joined.
WRITE_BYTES = 1 << 16
Frame = TypeVar("Frame")
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


def deadlines(
    offsets: Sequence[float],
    start: float,
    ttft_scale: float = 1.0,
    itl_scale: Callable[[], float] | None = None,
    on_first: Callable[[], None] | None = None,
) -> Iterator[float]:
    """Absolute deadlines for ``offsets`` (seconds after ``start``), lazily.

    Args:
      ttft_scale: stretch of the first offset (load at admission).
      itl_scale: called for each later step, when it is computed: as the previous frame
        goes out. None keeps every step as planned (deadline = start + offset, exactly).
      on_first: called once the first deadline has come (the stream now decodes).
    """
    previous_offset = offsets[0]
    previous = start + previous_offset * ttft_scale
    yield previous
    if on_first is not None:
        on_first()
    rest = islice(offsets, 1, None)
    if itl_scale is None:
        if ttft_scale == 1.0:
            yield from (start + offset for offset in rest)
        else:
            yield from (previous + offset - previous_offset for offset in rest)
        return
    for offset in rest:
        previous += (offset - previous_offset) * itl_scale()
        previous_offset = offset
        yield previous


def schedule(
    choices: Sequence[tuple[Sequence[float], Iterator[Frame]]],
    start: float,
    ttft_scale: float = 1.0,
    itl_scale: Callable[[], float] | None = None,
    on_first: Callable[[], None] | None = None,
) -> Iterator[tuple[float, Iterator[Frame]]]:
    """Every choice's events, in due order (ties keep choice order): each deadline with the
    choice's frame source, from which the caller draws the frame as it goes out.

    Each choice keeps its own deadlines, so each one's TTFT and gaps follow the model; the
    merge is lazy, so a choice's next deadline is computed as its previous frame goes out.
    """
    timed = [
        zip(deadlines(offsets, start, ttft_scale, itl_scale, on_first), repeat(frames))
        for offsets, frames in choices
    ]
    if len(timed) == 1:
        return timed[0]
    return heapq.merge(*timed, key=itemgetter(0))


class Built:
    """A frame source that builds ``frame()`` when drawn from: an event that carries no
    token (a stream's closing, an error), which the journal tells apart by this type."""

    __slots__ = ("frame",)

    def __init__(self, frame: Callable[[], bytes]) -> None:
        self.frame = frame

    def __iter__(self) -> Built:
        return self

    def __next__(self) -> bytes:
        return self.frame()


def built(frame: Callable[[], bytes]) -> Iterator[bytes]:
    """A frame source that builds ``frame()`` when drawn from."""
    return Built(frame)


def then(events: Iterable[Event], frame: Callable[[], bytes]) -> Iterator[Event]:
    """``events``, then ``frame()`` as soon as the last of them went out (it is built only
    then, so it may depend on what was sent)."""
    last = -math.inf
    for event in events:
        last = event[0]
        yield event
    yield last, built(frame)


def cut_at(events: Iterable[Event], limit: float, last: Callable[[], bytes]) -> Iterator[Event]:
    """Stop a schedule at the absolute time ``limit``: what is due later becomes ``last()``,
    and is never built."""
    for deadline, source in events:
        if deadline > limit:
            yield limit, built(last)
            return
        yield deadline, source


async def paced(
    events: Iterable[Event], sleep_until: SleepUntil = trio.sleep_until
) -> AsyncGenerator[tuple[array[float], bool, bytes]]:
    """Yield each event's frame at its deadline, joining frames that are due together into
    writes of up to ``WRITE_BYTES``; with each write, the deadlines of the events it
    carries and whether the last one carried no token (``Built``), for the journal.

    Args:
      sleep_until: trio's, or a ``Pacer``'s.
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
        data = batch[0] if len(batch) == 1 else b"".join(batch)
        # While a slow client's write waits, it holds one buffer and an array, not every
        # frame and event: bytes and tuples that would scatter over the allocator's pages.
        del batch
        yield due, type(last[1]) is Built, data


Counted = tuple[float, Iterator[tuple[int, Iterator[bytes]]]]


def cut_after(
    events: Iterable[Counted], tokens: int, last: Callable[[], bytes]
) -> Iterator[tuple[float, Iterator[bytes]]]:
    """The events that carry the first ``tokens`` tokens, then ``last()`` when the next
    event was due (or with the final one, when the reply is no longer): where an injected
    fault (``_faults``) cuts a stream. Events go whole; the first one left out is never
    built."""
    sent = 0
    when = -math.inf
    for when, counted in events:
        count, source = next(counted)
        if sent + count > tokens:
            break
        sent += count
        yield when, source
    yield when, built(last)
