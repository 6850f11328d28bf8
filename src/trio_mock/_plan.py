"""The plan of a reply: how many tokens, how they group into events, and when each is due.

Sans-IO and pure: the same request, settings and seed give the same plan. Token ``i`` is due
``ttft + gap_1 + ... + gap_i`` seconds after admission (``ttft + i * itl`` when constant),
TTFT including the prompt's prefill cost; a streamed event is due when its last token is.
Load-dependent slowdown is applied later, at send time (``_pacing.deadlines``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
from attrs import frozen

from ._latency import FloatArray, draw_itl_s, draw_ttft_s

if TYPE_CHECKING:
    from ._generate import TextSource
    from ._settings import LatencySettings

FinishReason = Literal["stop", "length"]


@frozen(kw_only=True)
class ChoicePlan:
    """One choice: its tokens, their grouping into events and the events' due times."""

    index: int
    pieces: list[str]  # one per token
    escaped: list[bytes]  # JSON-escaped pieces
    finish_reason: FinishReason
    event_ends: list[int]  # exclusive end (token index) of each event; [0] for no tokens
    offsets: list[float]  # seconds after arrival each event is due

    @property
    def tokens(self) -> int:
        return len(self.pieces)

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@frozen(kw_only=True)
class Limits:
    """The request's say on length: the cap, vLLM's floor, and whether to ignore EOS."""

    max_tokens: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False


def completion_length(natural: int, limits: Limits) -> tuple[int, FinishReason]:
    """Apply the request's limits to the source's natural length."""
    n = natural
    if limits.ignore_eos and limits.max_tokens is not None:
        n = limits.max_tokens
    n = max(n, limits.min_tokens)
    if limits.max_tokens is not None and n >= limits.max_tokens:
        return limits.max_tokens, "length"
    return n, "stop"


def token_offsets(
    n: int, latency: LatencySettings, rng: np.random.Generator, prompt_tokens: int = 0
) -> FloatArray:
    """Seconds after admission at which each of ``n`` tokens is due (at least one entry)."""
    ttft = draw_ttft_s(latency, prompt_tokens, rng)
    if n <= 1:
        return np.array([ttft])
    if latency.itl_distribution == "constant" or not (
        latency.itl_jitter_ms or latency.itl_distribution == "uniform"
    ):
        itl = min(max(latency.itl_ms, latency.itl_min_ms), latency.itl_max_ms or math.inf)
        return (ttft + itl / 1000 * np.arange(n)).astype(np.float64)  # exact: no summed rounding
    return ttft + np.concatenate(([0.0], np.cumsum(draw_itl_s(latency, n - 1, rng))))


def event_ends(n: int, low: int, high: int, rng: np.random.Generator) -> list[int]:
    """Group ``n`` tokens into events of ``low..high`` tokens; exclusive end of each."""
    if n == 0:
        return [0]
    if high == 1:
        return list(range(1, n + 1))
    ends = np.cumsum(rng.integers(low, high + 1, size=n))
    cut = int(np.searchsorted(ends, n))
    return [*ends[:cut].tolist(), n]


def plan_choice(
    index: int,
    source: TextSource,
    limits: Limits,
    latency: LatencySettings,
    tokens_per_event: tuple[int, int],
    rng: np.random.Generator,
    *,
    prompt_tokens: int = 0,
    natural: int | None = None,
) -> ChoicePlan:
    """Plan one choice.

    Args:
      natural: the reply's length before limits, when the request fixes it (a header);
        otherwise the source draws it.
    """
    natural = source.natural_length(rng) if natural is None else natural
    n, finish_reason = completion_length(natural, limits)
    pieces, escaped = source.pieces(n, rng)
    ends = event_ends(n, *tokens_per_event, rng)
    token_due = token_offsets(n, latency, rng, prompt_tokens)
    offsets = token_due[np.maximum(np.asarray(ends) - 1, 0)].tolist()
    return ChoicePlan(
        index=index,
        pieces=pieces,
        escaped=escaped,
        finish_reason=finish_reason,
        event_ends=ends,
        offsets=offsets,
    )
