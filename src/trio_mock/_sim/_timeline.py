"""A reply's whole timeline: its events on schedule, cut by its fault or its time limit.

The one place where an injected fault (``_config._faults``) and the request's time limit
meet the schedule (``_schedule``): HTTP streams, HTTP bodies and Realtime responses all
play what ``timeline`` gives, so they cut, stall and end the same way. Pure: the caller
supplies the frames, and the transport sleeps until each deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from itertools import chain, repeat

from attrs import frozen

from .._config._faults import CUTS, Fault
from ._schedule import Ending, Event, cut_after, cut_at, ending_with, schedule, tokens_per_event

Choices = Sequence[tuple[Sequence[float], Iterator[bytes]]]


@frozen
class Clock:
    """When a reply's schedule runs: from ``start``, stretched by the load model (TTFT by
    ``ttft_scale``, each later gap by ``itl_scale()`` as it comes), and cut at ``limit``."""

    start: float
    limit: float = math.inf
    ttft_scale: float = 1.0
    itl_scale: Callable[[], float] | None = None
    on_first: Callable[[], None] | None = None  # the first token's moment has come
    stepped: Sequence[Iterator[float]] | None = None  # the batched engine's, per choice


def timeline(
    choices: Choices,
    event_ends: Sequence[Sequence[int]],
    clock: Clock,
    closing: Ending,
    late: Ending,
    fault: Fault | None = None,
    injected: Ending | None = None,
) -> Iterator[Event]:
    """Every event the client is to get, in order.

    Without a fault: the choices' events on schedule, then ``closing``. A cutting fault
    stops them at its token, when the next one was due: with ``injected`` (an ``error``),
    with an empty ending (a ``disconnect``: the transport hangs up), or, for a ``stall``,
    with silence. Whatever falls due after ``clock.limit`` becomes ``late``.

    Args:
      event_ends: each choice's tokens sent by the end of each of its events.
    """
    args = clock.start, clock.ttft_scale, clock.itl_scale, clock.on_first, clock.stepped
    if fault is None or fault.kind not in CUTS:
        events: Iterator[Event] = ending_with(schedule(choices, *args), closing)
    else:
        counted = [
            (offsets, zip(tokens_per_event(ends), repeat(frames)))
            for (offsets, frames), ends in zip(choices, event_ends, strict=True)
        ]
        tokens = fault.tokens_before(sum(ends[-1] for ends in event_ends))
        if fault.kind == "error" and injected is not None:
            ending = injected
        else:
            ending = Ending(bytes, cut="fault")  # nothing more goes out
        events = cut_after(schedule(counted, *args), tokens, ending)
        if fault.kind == "stall":  # the tokens only, then silence until the limit
            tokens_only = (event for event in events if event[1] is not ending)
            events = chain(tokens_only, [(math.inf, repeat(b""))])
    return cut_at(events, clock.limit, late)
