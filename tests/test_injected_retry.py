"""Injected 429s and 503s carry what real ones carry (issue 19, part 4).

What this file proves:

- An injected 429 or 503, from the ``x-mock-fault`` header, the failure mix or a scripted
  error, sends ``retry-after`` and ``retry-after-ms`` from ``--fault-retry-after-s``; a 429
  also sends the ``x-ratelimit-*`` headers of an empty requests bucket that refills in that
  time, or the limiter's own when a limit is set (never both). Other statuses send none.
- The knob is bounded, and live.
- The official SDK honours it over loopback: it waits ``retry-after`` (longer than its own
  backoff, so the wait proves it) before each retry, and the journal counts the attempts;
  a scripted 503 that fires once is retried into a 200.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import openai
import pytest
import trio

from conftest import SDK_TIMEOUT_S, fast_settings
from trio_mock import create_app, running
from trio_mock._config._knobs import SettingsError

if TYPE_CHECKING:
    from quart.typing import TestClientProtocol
    from werkzeug.datastructures import Headers

CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
HI: list[Any] = CHAT["messages"]


@asynccontextmanager
async def in_memory(**leaves: Any) -> AsyncGenerator[TestClientProtocol]:
    app = create_app(fast_settings(**leaves))
    async with app.test_app() as test_app:
        yield test_app.test_client()


def ratelimit(headers: Headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}


def retry(headers: Headers) -> tuple[str | None, str | None]:
    return headers.get("retry-after"), headers.get("retry-after-ms")


EMPTY_BUCKET_2S = {  # 60 / 2 s = 30 a minute, none left, full again in a minute
    "x-ratelimit-limit-requests": "30",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "1m0s",
}


async def test_header_fault_429_and_503() -> None:
    async with in_memory() as client:
        limited = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"x-mock-fault": "429"}
        )
        busy = await client.post(
            "/v1/embeddings", json={"model": "e", "input": "hi"}, headers={"x-mock-fault": "503"}
        )
        broken = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"x-mock-fault": "500"}
        )
    assert limited.status_code == 429
    assert retry(limited.headers) == ("2", "2000")  # the default
    assert ratelimit(limited.headers) == EMPTY_BUCKET_2S
    assert busy.status_code == 503
    assert retry(busy.headers) == ("2", "2000")
    assert ratelimit(busy.headers) == {}  # a 503 is no rate limit
    assert broken.status_code == 500
    assert retry(broken.headers) == (None, None)


async def test_mix_and_scripted_errors_and_the_knob() -> None:
    async with in_memory(failure_percent=100, failure_mix=["429"], fault_retry_after_s=0.25) as c:
        drawn = await c.post("/v1/completions", json={"model": "m", "prompt": "hi"})
    assert drawn.status_code == 429
    assert drawn.headers["x-mock-fault"] == "429"
    assert retry(drawn.headers) == ("1", "250")  # whole seconds rounded up, and exact ms
    assert ratelimit(drawn.headers)["x-ratelimit-limit-requests"] == "240"

    async with in_memory(fault_retry_after_s=7) as client:
        rules = [
            {"reply": {"error": {"status": 503}}, "times": 1},
            {"reply": {"error": {"status": 429, "message": "Slow down."}}, "times": 1},
        ]
        added = await client.post("/_mock/scripts", json={"rules": rules})
        assert added.status_code == 200, await added.get_data()
        scripted_503 = await client.post("/v1/chat/completions", json=CHAT)
        scripted_429 = await client.post("/v1/chat/completions", json=CHAT)
    assert scripted_503.status_code == 503
    assert retry(scripted_503.headers) == ("7", "7000")
    assert scripted_429.status_code == 429
    assert (await scripted_429.get_json())["error"]["message"] == "Slow down."
    assert retry(scripted_429.headers) == ("7", "7000")
    assert ratelimit(scripted_429.headers)["x-ratelimit-limit-requests"] == "8"


async def test_limiter_headers_are_not_doubled() -> None:
    async with in_memory(rate_limit_rpm=100) as client:
        faulted = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"x-mock-fault": "429"}
        )
    assert faulted.status_code == 429
    assert faulted.headers.getlist("x-ratelimit-limit-requests") == ["100"]  # the limiter's
    assert faulted.headers["x-ratelimit-remaining-requests"] == "99"  # it charged this one
    assert retry(faulted.headers) == ("2", "2000")


@pytest.mark.parametrize("value", [0, -1, 3601])
def test_retry_after_is_bounded(value: float) -> None:
    with pytest.raises(SettingsError, match="fault-retry-after-s"):
        fast_settings(fault_retry_after_s=value)


async def test_retry_after_changes_live() -> None:
    async with running(fast_settings()) as server:
        assert await server.configure(fault_retry_after_s=0.5) == ["fault_retry_after_s"]
        async with openai.AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0) as client:
            with pytest.raises(openai.RateLimitError) as caught:
                await client.chat.completions.create(
                    model="m", messages=HI, extra_headers={"x-mock-fault": "429"}
                )
    assert retry(caught.value.response.headers) == ("1", "500")  # type: ignore[arg-type]


# --- the official SDK honours it (real clock, loopback) ------------------------------------


@pytest.mark.slow
async def test_sdk_waits_retry_after_before_each_retry() -> None:
    # 1.5 s is above the SDK's own backoff (0.5 s, then 1 s, at most), so the wait proves
    # that retry-after was read.
    async with running(fast_settings(fault_retry_after_s=1.5)) as server:
        sdk = openai.AsyncOpenAI(
            base_url=server.url, api_key="k", max_retries=1, timeout=SDK_TIMEOUT_S
        )
        start = trio.current_time()
        with pytest.raises(openai.RateLimitError):
            async with sdk:
                await sdk.chat.completions.create(
                    model="m", messages=HI, extra_headers={"x-mock-fault": "429"}
                )
        waited = trio.current_time() - start
        entries = await server.requests()
    assert [entry["status"] for entry in entries] == [429, 429]  # the call and one retry
    assert 1.5 <= waited < 1.5 + SDK_TIMEOUT_S


@pytest.mark.slow
async def test_sdk_retries_a_scripted_503_into_a_reply() -> None:
    async with running(fast_settings(fault_retry_after_s=0.3)) as server:
        server.script({"reply": {"error": {"status": 503}}, "times": 1})
        async with openai.AsyncOpenAI(
            base_url=server.url, api_key="k", max_retries=2, timeout=SDK_TIMEOUT_S
        ) as sdk:
            start = trio.current_time()
            raw = await sdk.chat.completions.with_raw_response.create(model="m", messages=HI)
            waited = trio.current_time() - start
        entries = await server.requests()
    assert raw.retries_taken == 1
    assert raw.parse().choices[0].message.content
    assert [entry["status"] for entry in entries] == [503, 200]
    assert waited >= 0.3
