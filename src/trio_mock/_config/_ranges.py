"""Ranges of numbers, each declared once and read by every surface that takes the value.

A knob's check (start-up, ``PATCH /_mock/config``, ``POST /configure``), the ``x-mock-*``
headers, scripted rules and the ``slow-headers`` fault all compare against the same
``Range``, so a latency refused on one surface is refused on all of them. The bounds are
generous for a load test and small enough that no single value makes every request wait
until ``--max-request-s`` or the server build something huge. Pure: no I/O, no imports
from the package.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

MAX_MS = 3_600_000  # one hour: the longest latency or delay, in milliseconds
MAX_S = 86_400  # one day: the longest duration knob, in seconds
# The longest context window served today (Llama 4 Scout's): no count of tokens, prompt or
# output, is larger.
MAX_TOKENS = 10_000_000
MAX_SEED = 2**64 - 1  # what numpy and random take without folding


def shown(value: float) -> str:
    """A bound or a value as people write it: ``3600000``, ``0.5``, ``-5``, ``1e+308``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


@frozen
class Range:
    """The closed range ``[low, high]`` (``(low, high]`` when ``open_low``). NaN and the
    infinities are outside every range, since no comparison holds for NaN and every
    ``high`` is finite."""

    low: float
    high: float
    open_low: bool = False  # "> low": a duration of zero means nothing for some knobs

    def __contains__(self, value: float) -> bool:
        if self.open_low:
            return self.low < value <= self.high
        return self.low <= value <= self.high

    def __call__(self, value: Any) -> str | None:
        """A knob's check: the problem with ``value`` in the settings' words, or None."""
        if value in self:
            return None
        if self.open_low and not value > self.low:
            return f"must be > {shown(self.low)}, got {value!r}"
        if not value >= self.low:
            return f"must be >= {shown(self.low)}, got {value!r}"
        return f"must be <= {shown(self.high)}, got {value!r}"

    def span(self) -> str:
        """``from 0 to 3600000``, for messages that name the whole range."""
        low = f"above {shown(self.low)}" if self.open_low else f"from {shown(self.low)}"
        return f"{low} to {shown(self.high)}"


# Shared by a knob and the per-request surfaces that set the same thing.
LATENCY_MS = Range(0, MAX_MS)  # ttft_ms, itl_ms and their kin; x-mock-*-ms; slow-headers=MS
TOKENS = Range(0, MAX_TOKENS)  # x-mock-output-tokens, a scripted rule's output_tokens
SEED = Range(0, MAX_SEED)  # x-mock-seed and the seed knobs
# Knob families.
SOME_TOKENS = Range(1, MAX_TOKENS)
PER_TOKEN_MS = Range(0, 1000)  # a cost per token: 1 s a token is already a crawl
LOAD_FACTOR = Range(0, 10)  # growth per other request: 10x per neighbour is already absurd
PERCENT = Range(0, 100)
SHARE = Range(0, 1)
SECONDS = Range(0, MAX_S)
SOME_SECONDS = Range(0, MAX_S, open_low=True)
RETRY_AFTER_S = Range(0, 3600, open_low=True)  # an hour: a client waits, so keep it in sight
