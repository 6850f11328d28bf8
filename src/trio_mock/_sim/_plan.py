"""The plan of a reply: its tokens, how they group into events, and when each is due.

Sans-IO and pure: the same request, settings and seed give the same plan. A reply is a
sequence of *parts* (reasoning, the answer's text, or one tool call's arguments), planned
together: the request's token limits apply to the whole, and token ``i`` of the reply is due
``ttft + gap_1 + ... + gap_i`` seconds after admission (``ttft + i * itl`` when constant),
TTFT including the prompt's prefill cost. A streamed event holds tokens of one part only and
is due when its last token is. Load-dependent slowdown is applied later, at send time
(``_pacing.deadlines``).

A plan lives as long as its stream, so its per-event figures are kept without a Python
object per event: event ends as a ``range`` (one token an event) or an ``array`` of
integers, due times as an ``array`` of doubles. A 120k-token stream's plan would otherwise
hold a quarter of a million small objects, which outlive the stream in the allocator's
partly used pages.
"""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
import orjson
from attrs import frozen

from ._latency import FloatArray, constant, draw_itl_s, draw_ttft_s

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._config._settings import LatencySettings
    from ._text import TextSource

FinishReason = Literal["stop", "length", "tool_calls"]
PartKind = Literal["reasoning", "content", "tool"]


@frozen
class ToolCall:
    """A function call the reply makes; its arguments are the part's tokens."""

    id: str
    name: str
    index: int  # among the reply's tool calls


@frozen(kw_only=True)
class Segment:
    """A part of the reply before limits: where its tokens come from and how many it has."""

    kind: PartKind
    source: TextSource
    natural: int
    call: ToolCall | None = None


@frozen(kw_only=True)
class Part:
    """A planned part: tokens ``start..end`` of the reply, events ``first_event..end_event``."""

    kind: PartKind
    start: int
    end: int
    first_event: int
    end_event: int
    call: ToolCall | None = None


@frozen(kw_only=True)
class Logprobs:
    """Per token: its log probability and the top alternatives (itself first)."""

    values: list[float]
    top: list[list[tuple[str, float]]]


@frozen(kw_only=True)
class ChoicePlan:
    """One choice: its tokens, their parts and events, and the events' due times."""

    index: int
    pieces: list[str]  # one per token
    escaped: list[bytes]  # JSON-escaped pieces
    finish_reason: FinishReason
    event_ends: Sequence[int]  # exclusive end (token index) of each event; [0] for no tokens
    offsets: Sequence[float]  # seconds after arrival each event is due
    parts: list[Part]
    logprobs: Logprobs | None = None
    stop_sequence: str | None = None  # the stop string that ended it (Anthropic names it)

    @property
    def tokens(self) -> int:
        return len(self.pieces)

    @property
    def text(self) -> str:
        """The answer's text (reasoning and tool arguments excluded)."""
        return self.text_of("content")

    def text_of(self, kind: PartKind) -> str:
        return "".join("".join(self.pieces[p.start : p.end]) for p in self.parts if p.kind == kind)

    def count(self, kind: PartKind) -> int:
        return sum(p.end - p.start for p in self.parts if p.kind == kind)

    @property
    def calls(self) -> list[tuple[ToolCall, str]]:
        """Each tool call with its arguments' text."""
        return [
            (p.call, "".join(self.pieces[p.start : p.end]))
            for p in self.parts
            if p.call is not None
        ]


@frozen(kw_only=True)
class Limits:
    """The request's say on length: the cap, vLLM's floor, whether to ignore EOS, stops."""

    max_tokens: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    stop: tuple[str, ...] = ()
    room: int | None = None  # what the context window leaves: the reply stops there


def completion_length(natural: int, limits: Limits) -> tuple[int, Literal["stop", "length"]]:
    """Apply the request's limits to the source's natural length."""
    n = natural
    if limits.ignore_eos and limits.max_tokens is not None:
        n = limits.max_tokens
    n = max(n, limits.min_tokens)
    if limits.max_tokens is not None and n >= limits.max_tokens:
        return limits.max_tokens, "length"
    if limits.room is not None and n >= limits.room:
        return limits.room, "length"
    return n, "stop"


def token_offsets(
    n: int, latency: LatencySettings, rng: np.random.Generator, prompt_tokens: int = 0
) -> FloatArray:
    """Seconds after the schedule's start (arrival) at which each of ``n`` tokens is due (at
    least one entry)."""
    ttft = draw_ttft_s(latency, prompt_tokens, rng)
    if n <= 1:
        return np.array([ttft])
    if constant(latency.itl_distribution, latency.itl_jitter_ms):
        itl = min(max(latency.itl_ms, latency.itl_min_ms), latency.itl_max_ms or math.inf)
        return (ttft + itl / 1000 * np.arange(n)).astype(np.float64)  # exact: no summed rounding
    return ttft + np.concatenate(([0.0], np.cumsum(draw_itl_s(latency, n - 1, rng))))


def event_ends(n: int, low: int, high: int, rng: np.random.Generator) -> Sequence[int]:
    """Group ``n`` tokens into events of ``low..high`` tokens; exclusive end of each."""
    if n == 0:
        return range(1)  # [0]: one empty event
    if high == 1:
        return range(1, n + 1)
    ends = np.cumsum(rng.integers(low, high + 1, size=n))
    cut = int(np.searchsorted(ends, n))
    return array("q", np.append(ends[:cut], n).astype(np.int64).tobytes())


def joined_ends(parts: Sequence[tuple[int, Sequence[int]]]) -> Sequence[int]:
    """The reply's event ends from each part's (first token, ends within the part)."""
    if len(parts) == 1 and parts[0][0] == 0:
        return parts[0][1]
    ends = array("q")
    for start, part_ends in parts:
        ends.extend(start + e for e in part_ends)
    return ends


def as_indices(ends: Sequence[int]) -> npt.NDArray[np.int64]:
    """``ends`` as a numpy array, without a Python int per event."""
    if isinstance(ends, range):
        return np.arange(ends.start, ends.stop, ends.step, dtype=np.int64)
    if isinstance(ends, array):
        return np.frombuffer(ends, dtype=np.int64)
    return np.asarray(ends, dtype=np.int64)


def stop_at(pieces: list[str], stops: Sequence[str]) -> int | None:
    """Where the text must end for the earliest stop string: a piece index whose piece may
    need trimming, or None when no stop string occurs. The stop string itself is not sent."""
    hit = stop_hit(pieces, stops)
    return None if hit is None else hit[0]


def stop_hit(pieces: list[str], stops: Sequence[str]) -> tuple[int, str] | None:
    """The earliest stop string in the text: where it starts, and which one it is."""
    text = "".join(pieces)
    hits = [(i, s) for i, s in ((text.find(s), s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def cut_text(pieces: list[str], escaped: list[bytes], at_char: int) -> int:
    """Trim ``pieces`` (in place) to their first ``at_char`` characters; return the count."""
    seen = 0
    for i, piece in enumerate(pieces):
        if seen + len(piece) >= at_char:
            keep = at_char - seen
            if keep == 0:
                return i
            pieces[i], escaped[i] = piece[:keep], orjson.dumps(piece[:keep])[1:-1]
            return i + 1
        seen += len(piece)
    return len(pieces)


def plan_reply(
    index: int,
    segments: Sequence[Segment],
    limits: Limits,
    latency: LatencySettings,
    tokens_per_event: tuple[int, int],
    rng: np.random.Generator,
    *,
    prompt_tokens: int = 0,
    top_logprobs: int | None = None,
    alternatives: Sequence[str] = (),
) -> ChoicePlan:
    """Plan one choice made of ``segments`` (in order; the last one stretches when the
    limits ask for more tokens than the segments have).

    Args:
      top_logprobs: None for no logprobs; else how many alternatives each token lists.
      alternatives: strings to draw alternative tokens from.
    """
    n, capped = completion_length(sum(s.natural for s in segments), limits)
    finish: FinishReason = capped
    pieces: list[str] = []
    escaped: list[bytes] = []
    spans: list[tuple[Segment, int, int]] = []
    stopped_by: str | None = None
    remaining = n
    for k, segment in enumerate(segments):
        take = remaining if k == len(segments) - 1 else min(segment.natural, remaining)
        if take == 0 and (spans or k < len(segments) - 1):
            continue
        text, esc = segment.source.pieces(take, rng)
        if (
            segment.kind == "content"
            and limits.stop
            and (hit := stop_hit(text, limits.stop)) is not None
        ):
            at, stopped_by = hit
            take = cut_text(text, esc, at)
            del text[take:], esc[take:]
            finish, remaining = "stop", take
        spans.append((segment, len(pieces), len(pieces) + take))
        pieces += text
        escaped += esc
        remaining -= take
    if finish == "stop" and any(s.kind == "tool" for s, _, _ in spans):
        finish = "tool_calls"
    every_ends: list[tuple[int, Sequence[int]]] = []
    parts: list[Part] = []
    events = 0
    for segment, start, end in spans:
        part_ends = event_ends(end - start, *tokens_per_event, rng)
        every_ends.append((start, part_ends))
        parts.append(
            Part(
                kind=segment.kind,
                start=start,
                end=end,
                first_event=events,
                end_event=events + len(part_ends),
                call=segment.call,
            )
        )
        events += len(part_ends)
    ends = joined_ends(every_ends)
    token_due = token_offsets(len(pieces), latency, rng, prompt_tokens)
    offsets = array("d", token_due[np.maximum(as_indices(ends) - 1, 0)].tobytes())
    return ChoicePlan(
        index=index,
        pieces=pieces,
        escaped=escaped,
        finish_reason=finish,
        event_ends=ends,
        offsets=offsets,
        parts=parts,
        stop_sequence=stopped_by,
        logprobs=None
        if top_logprobs is None
        else token_logprobs(pieces, top_logprobs, alternatives, rng),
    )


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
    """Plan a plain text reply.

    Args:
      natural: the reply's length before limits, when the request fixes it (a header);
        otherwise the source draws it.
    """
    natural = source.natural_length(rng) if natural is None else natural
    segment = Segment(kind="content", source=source, natural=natural)
    return plan_reply(
        index, [segment], limits, latency, tokens_per_event, rng, prompt_tokens=prompt_tokens
    )


COMMON_TOKENS = (" the", " a", " of", " and", " to", " in", ",", ".", " is", " that", " it")


def token_logprobs(
    pieces: Sequence[str], top: int, alternatives: Sequence[str], rng: np.random.Generator
) -> Logprobs:
    """Plausible log probabilities: the chosen token is the likeliest, each distinct
    alternative less likely than the one before; all are <= 0."""
    pool = list(dict.fromkeys([*alternatives, *COMMON_TOKENS]))
    values = (-rng.exponential(0.25, len(pieces))).tolist()
    tops: list[list[tuple[str, float]]] = []
    for value, piece in zip(values, pieces, strict=True):
        row = [(piece, value)]
        if top > 1:
            picks = rng.choice(len(pool), size=min(top, len(pool)), replace=False)
            others = [pool[i] for i in picks if pool[i] != piece][: top - 1]
            drops = np.cumsum(rng.exponential(1.5, len(others)) + 1e-3)
            row += [(alt, value - float(d)) for alt, d in zip(others, drops, strict=True)]
        tops.append(row if top else [])
    return Logprobs(values=values, top=tops)
