"""Streamed deltas built from pre-encoded templates are the bytes the dict builders gave.

Responses and Realtime deltas are spliced from per-response templates and each token's
already escaped bytes. Here every delta event is compared with what the previous builder
made of the same plan, ``orjson.dumps`` of the event's dict, byte for byte: text that needs
escaping (quotes, backslashes, control characters, U+2028, emoji), several tokens per event,
reasoning, tool-call arguments, and both Realtime dialects. Realtime's ``event_id``s, now
drawn in blocks, keep their shape and stay unique.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from conftest import fast_settings
from trio_mock._openai._model import Ask, MockModel
from trio_mock._openai._overrides import Overrides
from trio_mock._openai._realtime_events import delta_frames, random_ids
from trio_mock._serve._responses import ResponsesEmitter, ResponsesHandler, sse
from trio_mock._sim._plan import Limits
from trio_mock._sim._tokens import load_tokenizer

TRICKY = 'He said "hi" \\ back,\n\ttabbed \x01 é 😀 </script> \u2028 and \u00a0 done.'
TOOL = {
    "type": "function",
    "name": "lookup",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
}


def model() -> MockModel:
    """Events of 1 to 3 tokens, so deltas join several escaped pieces too."""
    settings = fast_settings(tokens_per_event_min=1, tokens_per_event_max=3)
    return MockModel(settings, load_tokenizer(settings.output.tokenizer))


def split_sse(data: bytes) -> list[tuple[str, bytes]]:
    """``(event name, data line)`` of each SSE event in ``data``."""
    events = []
    for block in data.split(b"\n\n")[:-1]:
        name, body = block.split(b"\n")
        assert name.startswith(b"event: ")
        assert body.startswith(b"data: ")
        events.append((name.removeprefix(b"event: ").decode(), body.removeprefix(b"data: ")))
    return events


def previous_delta(emitter: ResponsesEmitter, k: int, start: int, end: int, seq: int) -> bytes:
    """The delta event as the dict builder made it for item ``k``, tokens ``start..end``."""
    part = emitter.choice.parts[k]
    kind = {
        "tool": "response.function_call_arguments.delta",
        "reasoning": "response.reasoning_text.delta",
        "content": "response.output_text.delta",
    }[part.kind]
    fields: dict[str, Any] = {"type": kind, "item_id": emitter.item_ids[k], "output_index": k}
    if part.kind != "tool":
        fields["content_index"] = 0
    fields["delta"] = "".join(emitter.choice.pieces[start:end])
    if part.kind == "content":
        fields["logprobs"] = []
    return sse(kind, fields | {"sequence_number": seq})


@pytest.mark.parametrize(
    ("body", "overrides"),
    [
        ({"model": "gpt-4o", "input": "hi"}, Overrides(content=TRICKY, seed=1)),
        ({"model": "gpt-4o", "input": "hi"}, Overrides(output_tokens=60, seed=2)),
        ({"model": "o4-mini", "input": "hi"}, Overrides(output_tokens=30, seed=3)),
        (
            {"model": "m", "input": "hi", "tools": [TOOL], "tool_choice": "required"},
            Overrides(seed=4),
        ),
    ],
    ids=["escaping", "corpus", "reasoning", "tool"],
)
async def test_responses_deltas_are_the_dict_builders_bytes(
    body: dict[str, Any], overrides: Overrides
) -> None:
    emitter = await ResponsesHandler(model()).prepare(body | {"stream": True}, overrides)
    choice = emitter.choice
    events = split_sse(emitter.opening() + b"".join(emitter.frames()) + emitter.closing())
    parsed = [orjson.loads(data) for _, data in events]
    assert [e["sequence_number"] for e in parsed] == list(range(len(events)))
    assert [name for name, _ in events] == [e["type"] for e in parsed]
    deltas = [(data, e) for (_, data), e in zip(events, parsed, strict=True) if "delta" in e]
    assert len(deltas) == len(choice.event_ends)
    assert any(b - a > 1 for a, b in zip([0, *choice.event_ends], choice.event_ends, strict=False))
    start = 0
    for k, part in enumerate(choice.parts):
        for e in range(part.first_event, part.end_event):
            data, event = deltas[e]
            end = choice.event_ends[e]
            want = previous_delta(emitter, k, start, end, event["sequence_number"])
            assert b"event: %s\ndata: %s\n\n" % (event["type"].encode(), data) == want
            start = end
    if overrides.content is not None:
        assert "".join(e["delta"] for _, e in deltas) == TRICKY


@pytest.mark.parametrize("ga", [False, True], ids=["beta", "ga"])
@pytest.mark.parametrize("content", [TRICKY, None], ids=["escaping", "corpus"])
async def test_realtime_deltas_are_the_dict_builders_bytes(ga: bool, content: str | None) -> None:
    mock = model()
    overrides = Overrides(content=content, output_tokens=300 if content is None else None, seed=5)
    ask = Ask(model="gpt-realtime", limits=Limits(), can_reason=False)
    (plan,) = await mock.plan(ask, 10, overrides)
    ids = {"response_id": "resp_A1", "item_id": "item_B2", "output_index": 0}
    frames = list(delta_frames(plan, ids, ga))
    kind = "response.output_text.delta" if ga else "response.text.delta"
    assert len(frames) == len(plan.event_ends)
    start, event_ids, text = 0, [], ""
    for frame, end in zip(frames, plan.event_ends, strict=True):
        event_id = orjson.loads(frame)["event_id"]
        delta = "".join(plan.pieces[start:end])
        event = {"event_id": event_id, "type": kind, **ids, "content_index": 0, "delta": delta}
        assert frame == orjson.dumps(event)
        event_ids.append(event_id)
        start, text = end, text + delta
    if content is not None:
        assert text == content
    assert all(re.fullmatch(r"event_[A-Za-z0-9]{29}", i) for i in event_ids)
    assert len(set(event_ids)) == len(event_ids)


def test_random_ids_across_blocks() -> None:
    drawn = random_ids(length=29, block=4)
    ids = [next(drawn) for _ in range(10)]  # three blocks
    assert all(re.fullmatch(rb"[A-Za-z0-9]{29}", i) for i in ids)
    assert len(set(ids)) == 10
