"""When each event of a reply is due: planned offsets turned into absolute deadlines.

Every deadline is absolute (on the server's clock) and each one is computed from the
previous *deadline*, never from when a sleep happened to end, so pacing does not drift.
Unloaded, deadline ``i`` is exactly ``start + offset_i``. Under the load model the steps
between offsets stretch: TTFT by the factor fixed at admission, each later gap by the ITL
factor at the moment the previous token is sent.

An event is a deadline and the source its frame is drawn from when it goes out: a frame is
built only when it is sent, so a stream cut before an event never builds (or numbers) it.
Pure: the transport (``_serve._pacing.paced``) sleeps until each deadline.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice, repeat
from operator import itemgetter
from typing import TypeVar

Event = tuple[float, Iterator[bytes]]  # (deadline, where its frame is drawn from)
Counted = tuple[float, Iterator[tuple[int, Iterator[bytes]]]]  # with its token count
Frame = TypeVar("Frame")


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
    stepped: Sequence[Iterator[float]] | None = None,
) -> Iterator[tuple[float, Iterator[Frame]]]:
    """Every choice's events, in due order (ties keep choice order): each deadline with the
    choice's frame source, from which the caller draws the frame as it goes out.

    Each choice keeps its own deadlines, so each one's TTFT and gaps follow the model; the
    merge is lazy, so a choice's next deadline is computed as its previous frame goes out.

    Args:
      stepped: each choice's deadlines from the batched engine (``_engine``), instead of
        its offsets (which tell ``on_first`` themselves).
    """
    if stepped is not None:
        timed = [
            zip(times, repeat(frames)) for times, (_, frames) in zip(stepped, choices, strict=True)
        ]
    else:
        timed = [
            zip(deadlines(offsets, start, ttft_scale, itl_scale, on_first), repeat(frames))
            for offsets, frames in choices
        ]
    if len(timed) == 1:
        return timed[0]
    return heapq.merge(*timed, key=itemgetter(0))


class Ending:
    """The event that ends a stream and carries no token: its closing (``data: [DONE]``),
    or the frame that cuts it short (``cut``: ``"time_limit"`` or ``"fault"``, with the
    ``error`` it tells the client). Built by ``frame()`` only when it goes out; a frame
    source like any other, which the journal tells apart from the token events."""

    __slots__ = ("cut", "error", "frame")

    def __init__(
        self,
        frame: Callable[[], bytes],
        cut: str | None = None,
        error: dict[str, object] | None = None,
    ) -> None:
        self.frame, self.cut, self.error = frame, cut, error

    def __iter__(self) -> Ending:
        return self

    def __next__(self) -> bytes:
        return self.frame()


def ending_with(events: Iterable[Event], ending: Ending) -> Iterator[Event]:
    """``events``, then ``ending`` as soon as the last of them went out (it is built only
    then, so it may depend on what was sent)."""
    last = -math.inf
    for event in events:
        last = event[0]
        yield event
    yield last, ending


def cut_at(events: Iterable[Event], limit: float, ending: Ending) -> Iterator[Event]:
    """Stop a schedule at the absolute time ``limit``: what is due later becomes
    ``ending``, and is never built."""
    for deadline, source in events:
        if deadline > limit:
            yield limit, ending
            return
        yield deadline, source


def cut_after(events: Iterable[Counted], tokens: int, ending: Ending) -> Iterator[Event]:
    """The events that carry the first ``tokens`` tokens, then ``ending`` when the next
    event was due (or with the final one, when the reply is no longer): where an injected
    fault cuts a stream. Events go whole; the first one left out is never built."""
    sent = 0
    when = -math.inf
    for when, counted in events:
        count, source = next(counted)
        if sent + count > tokens:
            break
        sent += count
        yield when, source
    yield when, ending


def tokens_per_event(ends: Sequence[int]) -> Iterator[int]:
    """How many tokens each event carries, from the running ends."""
    previous = 0
    for end in ends:
        yield end - previous
        previous = end
