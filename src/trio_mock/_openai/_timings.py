"""What a cassette says about its upstream's timing: each stream's TTFT, the gaps between
its text chunks, and its output length, for ``trio-mock fit``. Pure.

A chunk counts when it carries text (chat's ``delta`` content, reasoning or tool call
arguments, completions' ``text``, a Responses ``*.delta`` event): role chunks and the
closing ``[DONE]`` carry none. Errors and cut streams are left out.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import orjson
from attrs import frozen

from ._replay import usage_of

if TYPE_CHECKING:
    from ._cassette import Recording


@frozen
class Timings:
    """Samples in milliseconds and tokens; ``coalesced`` gaps of 0 (chunks that arrived in
    one read, which no model produces) are counted, not kept."""

    ttft_ms: list[float]
    itl_ms: list[float]
    lengths: list[float]
    streams: int
    coalesced: int


def carries_text(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    kind = data.get("type")
    if isinstance(kind, str):
        return kind.endswith(".delta") and bool(data.get("delta"))
    for choice in data.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta") or {}
        if choice.get("text") or any(
            delta.get(k) for k in ("content", "reasoning_content", "reasoning", "tool_calls")
        ):
            return True
    return False


def text_offsets(recording: Recording) -> list[float]:
    """When each chunk with text arrived, seconds after the request."""
    out = []
    for at, chunk in recording.chunks or ():
        for line in chunk.split(b"\n"):
            if not line.startswith(b"data: {"):
                continue
            try:
                decoded = orjson.loads(line[6:])
            except orjson.JSONDecodeError:
                continue
            if carries_text(decoded):
                out.append(at)
                break
    return out


def timings(recordings: Iterable[Recording]) -> Timings:
    ttft, gaps, lengths = [], [], []
    streams = coalesced = 0
    for recording in recordings:
        if recording.status != 200 or recording.cut is not None or recording.chunks is None:
            continue
        offsets = text_offsets(recording)
        if not offsets:
            continue
        streams += 1
        ttft.append(offsets[0] * 1000)
        for before, after in pairwise(offsets):
            if after > before:
                gaps.append((after - before) * 1000)
            else:
                coalesced += 1
        tokens = usage_of(recording).get("completion_tokens")
        if not isinstance(tokens, int):
            tokens = usage_of(recording).get("output_tokens")
        lengths.append(float(tokens if isinstance(tokens, int) else len(offsets)))
    return Timings(ttft, gaps, lengths, streams, coalesced)
