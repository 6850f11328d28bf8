"""The seeds' remaining knobs (issue 19, part 5): per-address rate limits and the
``big-payload`` profile.

What this file proves:

- ``--rate-limit-scope ip`` gives each client address its own buckets over loopback (two
  clients bound to 127.0.0.1 and 127.0.0.2 with the same key): one refused, the other
  served; under ``key`` the same two share the key's bucket. The table of addresses stays
  under its cap however many addresses come, and the newest is kept.
- ``--profile big-payload`` answers ~10 KB chat and responses bodies and 4096-dimension
  embeddings, and an explicit knob still wins over it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from conftest import SDK_TIMEOUT_S, fast_settings
from trio_mock._config._settings import Settings
from trio_mock._serve import _ratelimit
from trio_mock._serve._ratelimit import RateLimiter

if TYPE_CHECKING:
    import trio.testing

    from conftest import StartServer

CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
KEY = {"authorization": "Bearer sk-same"}


def client_from(url: str, address: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=url, transport=transport, headers=KEY, timeout=SDK_TIMEOUT_S)


async def statuses(url: str, *addresses: str) -> list[int]:
    """One chat request from each address in turn; their statuses."""
    found = []
    for address in addresses:
        async with client_from(url, address) as client:
            found.append((await client.post("/v1/chat/completions", json=CHAT)).status_code)
    return found


async def test_ip_scope_gives_each_address_its_buckets(start_server: StartServer) -> None:
    url = await start_server(rate_limit_rpm=1, rate_limit_scope="ip")
    assert await statuses(url, "127.0.0.1", "127.0.0.1", "127.0.0.2") == [200, 429, 200]


async def test_key_scope_shares_the_keys_bucket_across_addresses(
    start_server: StartServer,
) -> None:
    url = await start_server(rate_limit_rpm=1, rate_limit_scope="key")
    assert await statuses(url, "127.0.0.1", "127.0.0.2") == [200, 429]


async def test_address_buckets_stay_bounded(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setattr(_ratelimit, "MAX_KEYS", 100)
    limiter = RateLimiter(fast_settings(rate_limit_rpm=60, rate_limit_scope="ip").rate_limits)
    for i in range(1_000):
        limiter.charge([], "m", 1, peer=f"10.0.{i // 256}.{i % 256}")
        assert len(limiter.buckets) <= 100
    newest = limiter.buckets["10.0.3.231"][0]  # the 1000th address, kept
    assert newest is not None
    assert newest.level == pytest.approx(59)


def test_scope_takes_ip() -> None:
    assert (
        Settings.load(cli={"rate_limit_scope": "ip"}, env={}).rate_limits.rate_limit_scope == "ip"
    )


# --- --profile big-payload -------------------------------------------------------------------


async def test_big_payload_profile(start_server: StartServer) -> None:
    leaves = {"ttft_ms": "0", "itl_ms": "0", "corpus_articles": "64", "port": "0"}
    url = await start_server(Settings.load(cli={"profile": "big-payload", **leaves}, env={}))
    async with httpx.AsyncClient(base_url=url + "/v1", timeout=SDK_TIMEOUT_S) as client:
        chat = await client.post("/chat/completions", json=CHAT)
        responses = await client.post("/responses", json={"model": "m", "input": "hi"})
        embedding = await client.post("/embeddings", json={"model": "e", "input": "hi"})
        short = await client.post("/chat/completions", json=CHAT | {"max_tokens": 5})
    text = chat.json()["choices"][0]["message"]["content"]
    assert 8_000 <= len(text.encode()) <= 12_000  # ~10 KB, as Bifrost's -big-payload
    assert 8_000 <= len(responses.content) <= 13_000
    assert len(embedding.json()["data"][0]["embedding"]) == 4096
    assert short.json()["usage"]["completion_tokens"] == 5  # the request's cap still holds


def test_explicit_knobs_beat_big_payload() -> None:
    settings = Settings.load(cli={"profile": "big-payload", "embedding_dimensions": "8"}, env={})
    assert settings.models.embedding_dimensions == 8
    assert settings.output.output_tokens_mean == 2500
