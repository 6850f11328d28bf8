"""The only timing code: release frames at their deadlines.

Every deadline is ``start + offset`` from one anchor (the request's arrival), through
``trio.sleep_until``, so pacing never drifts. Frames that are due together, or overdue
because the client pushed back, leave in one write: fewer, fuller writes cost less.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Sequence
from itertools import chain, islice

import trio


async def paced(
    frames: Iterator[bytes], offsets: Sequence[float], start: float
) -> AsyncGenerator[bytes]:
    """Yield ``frames`` (one per offset), each batch when its first frame is due.

    Args:
      offsets: seconds after ``start``, non-decreasing.
      start: a ``trio.current_time()`` reading, normally the request's arrival.
    """
    i, n = 0, len(offsets)
    while i < n:
        await trio.sleep_until(start + offsets[i])  # a past deadline is just a checkpoint
        now = trio.current_time() - start
        j = i + 1
        while j < n and offsets[j] <= now:
            j += 1
        yield b"".join(islice(frames, j - i))
        i = j


def cut_at(
    offsets: list[float], frames: Iterator[bytes], limit_s: float, last: bytes
) -> tuple[list[float], Iterator[bytes]]:
    """Truncate a schedule at ``limit_s`` seconds: what is due later is replaced by ``last``."""
    if not offsets or offsets[-1] <= limit_s:
        return offsets, frames
    keep = sum(1 for o in offsets if o <= limit_s)
    return [*offsets[:keep], limit_s], chain(islice(frames, keep), (last,))
