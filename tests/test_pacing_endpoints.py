"""Every generation endpoint paces on the same schedule (MockClock, in memory).

Completions, the responses API, tool calls, reasoning and embeddings go through the same
scheduler as chat: token ``i`` arrives at exactly ``ttft + i * itl`` after the request, the
responses API's ``response.created`` and ``response.in_progress`` leave at once, and an
embeddings reply waits ``embedding_ms + embedding_ms_per_token * tokens``.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing

from conftest import fast_settings
from helpers import on_schedule
from trio_mock import create_app

Frame = tuple[float, dict[str, Any]]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


async def timed(path: str, body: dict[str, Any], **leaves: Any) -> list[Frame]:
    """POST ``body``; return (arrival, decoded data) for each SSE data line, or one entry
    for a JSON body."""
    app = create_app(fast_settings(**leaves))
    out: list[Frame] = []
    async with app.test_app() as test_app:
        client = test_app.test_client()
        start = trio.current_time()
        async with client.request(
            path, method="POST", headers={"content-type": "application/json"}
        ) as conn:
            await conn.send(orjson.dumps(body))
            await conn.send_complete()
            while True:
                try:
                    data = await conn.receive()
                except Exception:  # the test connection signals the end with an exception
                    break
                arrived = trio.current_time() - start
                if data.startswith(b"{"):
                    out.append((arrived, orjson.loads(data)))
                    break
                for event in data.split(b"\n\n"):
                    for line in event.split(b"\n"):
                        if line.startswith(b"data: {"):
                            out.append((arrived, orjson.loads(line[6:])))
                if b"data: [DONE]" in data or b"response.completed" in data:
                    break
    return out


async def test_completions_stream_on_schedule(autojump_clock: trio.testing.MockClock) -> None:
    body = {"model": "m", "prompt": "hi", "stream": True, "max_tokens": 4}
    frames = await timed("/v1/completions", body, ttft_ms=200, itl_ms=25)
    arrivals = [t for t, chunk in frames if chunk["choices"] and chunk["choices"][0]["text"]]
    assert arrivals == pytest.approx(on_schedule(4, 0.2, 0.025), abs=1e-9)


async def test_responses_open_at_once_then_pace(autojump_clock: trio.testing.MockClock) -> None:
    body = {"model": "m", "input": "hi", "stream": True, "max_output_tokens": 4}
    frames = await timed("/v1/responses", body, ttft_ms=300, itl_ms=40)
    at = {event["type"]: t for t, event in reversed(frames)}  # first arrival of each type
    assert at["response.created"] == at["response.in_progress"] == 0.0
    deltas = [t for t, event in frames if event["type"] == "response.output_text.delta"]
    assert deltas == pytest.approx(on_schedule(4, 0.3, 0.04), abs=1e-9)
    assert at["response.output_item.added"] == pytest.approx(0.3)  # opens with its first token
    done = [t for t, event in frames if event["type"].startswith("response.incomplete")]
    assert done == pytest.approx([deltas[-1]])


async def test_tool_call_arguments_pace_like_text(autojump_clock: trio.testing.MockClock) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [WEATHER],
        "tool_choice": "required",
        "stream": True,
    }
    frames = await timed("/v1/chat/completions", body, ttft_ms=100, itl_ms=10)
    arguments = [
        t
        for t, chunk in frames
        for choice in chunk["choices"]
        for call in choice["delta"].get("tool_calls") or []
        if call["function"].get("arguments")
    ]
    assert len(arguments) >= 3
    assert arguments == pytest.approx(on_schedule(len(arguments), 0.1, 0.01), abs=1e-9)


async def test_reasoning_then_answer_on_one_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = {
        "model": "o3-mini",
        "messages": [{"role": "user", "content": "think"}],
        "stream": True,
        "max_tokens": 6,
    }
    leaves = {"ttft_ms": 50, "itl_ms": 5, "reasoning_tokens_mean": 3, "reasoning_tokens_stddev": 0}
    frames = await timed("/v1/chat/completions", body, **leaves)
    kinds = [
        (t, "reasoning" if choice["delta"].get("reasoning_content") else "content")
        for t, chunk in frames
        for choice in chunk["choices"]
        if choice["delta"].get("reasoning_content") or choice["delta"].get("content")
    ]
    assert [kind for _, kind in kinds] == ["reasoning"] * 3 + ["content"] * 3
    assert [t for t, _ in kinds] == pytest.approx(on_schedule(6, 0.05, 0.005), abs=1e-9)


async def test_embeddings_wait_base_plus_per_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = {"model": "text-embedding-3-small", "input": [[1, 2, 3, 4], [5, 6]]}
    ((arrived, reply),) = await timed(
        "/v1/embeddings", body, embedding_ms=30, embedding_ms_per_token=2.5
    )
    assert reply["usage"]["prompt_tokens"] == 6
    assert arrived == pytest.approx(0.030 + 6 * 0.0025, abs=1e-9)
