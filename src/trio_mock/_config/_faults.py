"""Injected faults: which request fails on purpose, how, and at which token.

A fault comes from the request's ``x-mock-fault`` header, or is drawn for a share of the
requests (``--failure-percent``, varied by ``--failure-jitter``) from ``--failure-mix``.
Both use one spelling:

- ``503`` (any status 400-599): answered at once, with the body OpenAI sends for it.
- ``disconnect``, ``error``, ``stall``, each optionally ``-after=K``: after K tokens, at the
  moment the next one was due, the connection closes; or an error event ends the stream (a
  body gets a 500); or nothing more is sent until the request's time limit. Without ``K``
  the point is drawn over the reply's tokens.
- ``slow-headers=MS``: the status line waits MS milliseconds (at most an hour, as every
  latency); the reply is then normal.
- ``none``: in the header, no fault for this request whatever the failure rate; in the
  mix, a draw that spares the request.

A request's draws are made when it arrives and depend only on ``--fault-seed`` and its
arrival number (a hash of the two, ``unit``), so the same sequence of requests meets
the same faults; with several workers the number is the server's (``arrivals``). The cut
point of a header's fault comes from one generator per app, seeded likewise.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import TYPE_CHECKING, Literal

import attrs
from attrs import frozen

from ._ranges import LATENCY_MS

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._settings import FaultSettings

FaultKind = Literal["status", "disconnect", "error", "stall", "slow-headers", "none"]
CUTS = frozenset({"disconnect", "error", "stall"})
MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment
TO_UNIT = 2.0**-53


@frozen
class Fault:
    """One request's fault, as spelled in the header or the mix."""

    kind: FaultKind
    spec: str  # as written: echoed in the response's x-mock-fault header
    status: int = 0  # for kind "status"
    after: int | None = None  # tokens sent before a cut; None: drawn with ``share``
    delay_s: float = 0.0  # for kind "slow-headers"
    share: float = 0.0  # where a cut without ``after`` falls, as a share of the reply

    def tokens_before(self, total: int) -> int:
        """How many of the reply's ``total`` tokens go out before the cut."""
        if self.after is not None:
            return self.after
        return min(math.floor(self.share * (total + 1)), total)


def parse_fault(text: str) -> Fault:
    """Read one fault spelling.

    Raises:
      ValueError: the spelling is not one of the module docstring's.
    """
    spec = text.strip().lower()
    if spec.isdigit():
        status = int(spec)
        if not 400 <= status <= 599:
            raise ValueError(f"a fault status must be in 400-599, got {text!r}")
        return Fault("status", spec, status=status)
    if spec == "none":
        return Fault("none", spec)
    name, _, value = spec.partition("=")
    if name == "slow-headers" and is_number(value):
        delay_ms = float(value)
        if delay_ms not in LATENCY_MS:
            raise ValueError(
                f"a slow-headers fault waits {LATENCY_MS.span()} milliseconds, got {text!r}"
            )
        return Fault("slow-headers", spec, delay_s=delay_ms / 1000)
    if spec in CUTS:
        return Fault(spec, spec)  # type: ignore[arg-type]  # checked against CUTS
    kind = name.removesuffix("-after")
    if kind in CUTS and name.endswith("-after") and value.isdigit():
        return Fault(kind, spec, after=int(value))  # type: ignore[arg-type]
    raise ValueError(
        f"unknown fault {text!r}; expected a status (e.g. 503), disconnect, error or stall "
        "(optionally -after=K tokens), slow-headers=MS or none"
    )


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class FaultInjector:
    """Draws the faults of ``--failure-percent`` requests, reproducibly under a seed."""

    def __init__(self, settings: FaultSettings, arrivals: Callable[[], int] | None = None) -> None:
        """Args:
        arrivals: each call numbers an arrival (the server's, with several workers);
          None counts this injector's own, from 0.
        """
        self.percent = settings.failure_percent
        self.jitter = settings.failure_jitter
        self.mix = [parse_fault(spec) for spec in settings.failure_mix]
        seed = settings.fault_seed
        self.seed = random.getrandbits(64) if seed is None else seed
        self.rng = random.Random(seed)  # header cut points; None: seeded from the OS
        self.arrivals = arrivals if arrivals is not None else itertools.count().__next__
        self.active = self.percent > 0 or self.jitter > 0

    def draw(self) -> Fault | None:
        """This request's fault, if it is one of the unlucky ones (call once per arrival)."""
        if not self.active:
            return None
        seed, arrival = self.seed, self.arrivals()
        rate = self.percent
        if self.jitter:
            rate += (2.0 * unit(seed, arrival, 0) - 1.0) * self.jitter
        if unit(seed, arrival, 1) * 100 >= rate:
            return None
        fault = self.mix[int(unit(seed, arrival, 2) * len(self.mix))]
        if fault.kind == "none":
            return None
        if fault.kind in CUTS and fault.after is None:
            return attrs.evolve(fault, share=unit(seed, arrival, 3))
        return fault

    def decide(self, drawn: Fault | None, asked: Fault | None) -> Fault | None:
        """The request's fault: the header's when it sent one (``none``: no fault), else
        the draw."""
        if asked is None:
            return drawn
        return None if asked.kind == "none" else self.placed(asked)

    def placed(self, fault: Fault) -> Fault:
        """``fault`` with its cut point drawn, when it is a cut that names none."""
        if fault.kind in CUTS and fault.after is None:
            return attrs.evolve(fault, share=self.rng.random())
        return fault


def unit(seed: int, arrival: int, draw: int) -> float:
    """Draw number ``draw`` of an arrival, in [0, 1): splitmix64's output for a state mixed
    of the three (a few integer operations, where seeding a ``random.Random`` per request
    would cost microseconds)."""
    z = (seed * GOLDEN + arrival * 0xD1B54A32D192ED03 + (draw + 1) * GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return ((z ^ (z >> 31)) >> 11) * TO_UNIT


# (deadline, source of (tokens the event carries, source of its frame)): the count is read
# without building the frame.
