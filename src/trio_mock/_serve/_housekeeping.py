"""What the app's housekeeping task (``_app._runtime``'s ``Live.housekeeping``) does
between requests, besides flushing: enforce the streams' far deadlines, and give memory
back once a burst is over.

**Far deadlines.** Trio keeps every cancel scope's deadline in a heap that it cleans
lazily: an entry outlives its scope until the deadline passes, or until stale entries
outnumber live ones by 1000. A stream's backstop is ``max_request_s`` away (ten minutes by
default) and nearly every stream ends long before, so a burst of streams left up to a
thousand dead scopes in that heap for ten minutes: small objects scattered over the pages
the burst used, which keep Python's allocator from handing those pages back. The
``Watchdog`` keeps such deadlines in a dict instead, removed when their scope exits, and
cancels the overdue ones: a backstop fires at most one housekeeping period late. Without
housekeeping (an app called without the ASGI lifespan), scopes get trio's deadlines.

**Freed memory.** glibc keeps what a burst freed (in the main heap and in the arenas of
the tokenizer's threads) for reuse rather than returning it. ``Trimmer`` calls
``malloc_trim(0)`` in a worker thread once the load has at least halved since its peak
after some requests finished, at most every ``TRIM_EVERY_S``: a few milliseconds after a
burst (about 20 ms for 100 MB), off the event loop.
"""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from .._sim._corpus import release_free_memory
from ._worker import WRITER_DEADLINE

if TYPE_CHECKING:
    from collections.abc import Generator

    from ._load import Load

log = logging.getLogger("trio_mock")

TRIM_EVERY_S = 10.0


class Watchdog:
    """Cancel scopes whose deadline ``expire`` enforces."""

    def __init__(self) -> None:
        self.deadlines: dict[trio.CancelScope, float] = {}
        self.earliest = math.inf  # no deadline in ``deadlines`` is earlier
        self.running = False  # something calls ``expire`` regularly

    @contextmanager
    def move_on_at(self, deadline: float) -> Generator[trio.CancelScope]:
        """``trio.move_on_at(deadline)``, with the deadline kept here."""
        if not self.running:
            with trio.move_on_at(deadline) as scope:
                yield scope
            return
        scope = trio.CancelScope()
        self.deadlines[scope] = deadline
        self.earliest = min(self.earliest, deadline)
        token = WRITER_DEADLINE.set(deadline)  # a write blocked past it is cut too
        try:
            with scope:
                yield scope
        finally:
            WRITER_DEADLINE.reset(token)
            self.deadlines.pop(scope, None)

    def expire(self, now: float) -> None:
        """Cancel the scopes whose deadline has come."""
        if now < self.earliest:
            return
        earliest = math.inf
        for scope, deadline in list(self.deadlines.items()):
            if deadline <= now:
                scope.cancel()
                del self.deadlines[scope]
            else:
                earliest = min(earliest, deadline)
        self.earliest = earliest


class Trimmer:
    """Decides when freed memory goes back to the system: requests finished since the
    last trim, the load is down to half its peak since then (a burst is over, or the
    server is idle), and ``TRIM_EVERY_S`` have passed."""

    def __init__(self, load: Load) -> None:
        self.load = load
        self.last = -math.inf  # when memory was last trimmed
        self.finished = load.finished  # requests finished by then
        self.peak = 0  # most requests running or queued at once since then

    def due(self, now: float) -> bool:
        """Whether to trim now (called each housekeeping period)."""
        load = self.load
        busy = load.queued + load.prefilling + load.decoding
        self.peak = max(self.peak, busy)
        return (
            load.finished > self.finished
            and busy <= self.peak / 2
            and now - self.last >= TRIM_EVERY_S
        )

    async def trim(self, now: float) -> None:
        """Hand freed memory back, from a worker thread."""
        load = self.load
        self.last, self.finished = now, load.finished
        self.peak = load.queued + load.prefilling + load.decoding
        before, started = resident(), time.perf_counter()
        await trio.to_thread.run_sync(release_free_memory)
        took_ms = (time.perf_counter() - started) * 1000
        log.debug(
            "memory trimmed in %.1f ms: resident %.1f -> %.1f MB", took_ms, before, resident()
        )


def resident() -> float:
    """This process's resident memory in MB (NaN where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_bytes().split()[1])
    except (OSError, IndexError, ValueError):
        return math.nan
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
