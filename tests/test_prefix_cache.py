"""The prefix (KV) cache (issue 22): vLLM's chained block hashes in a per-model LRU.

A prompt whose leading blocks the cache holds skips their prefill, so with
``prefill_ms_per_token`` its TTFT falls by exactly ``cached * prefill_ms_per_token``;
every API reports the cached tokens as its vendor does, the journal keeps them and the
vLLM metrics count them. Off (the default), nothing changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from asgi import call, token_times
from conftest import async_client, fast_settings
from trio_mock import Settings, create_app
from trio_mock._config._knobs import SettingsError
from trio_mock._openai._prompt_ids import message_ids, priming_ids
from trio_mock._sim._prefix_cache import (
    MAX_MODELS,
    PrefixCache,
    PrefixCaches,
    approx_ids,
    block_hashes,
)

if TYPE_CHECKING:
    import trio.testing

    from conftest import StartServer

# A system prompt long enough to fill blocks; the user's question follows it.
SYSTEM = "You are a careful assistant who answers in full sentences. " * 8
CACHED: dict[str, Any] = {"prefix_cache_blocks": 64, "kv_block_size": 16}
PACED: dict[str, Any] = {
    "ttft_ms": 100,
    "itl_ms": 10,
    "prefill_ms_per_token": 1.0,
    "output_tokens_mean": 4,
    "output_tokens_stddev": 0,
}
VERSION = {"anthropic-version": "2023-06-01"}


def chat(question: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return {"model": "m", "messages": messages} | extra


def app_with(**leaves: Any) -> Any:
    return create_app(fast_settings(**leaves))


def most_cached(prompt_tokens: int, block_size: int = 16) -> int:
    """What a repeated prompt hits: every full block short of its last token."""
    return (prompt_tokens - 1) // block_size * block_size


# --- the cache itself (pure) -------------------------------------------------------------


def test_hashes_chain_so_a_block_hits_only_after_the_same_prefix() -> None:
    ids = list(range(40))
    hashes = block_hashes(ids, 16)
    assert len(hashes) == 2  # the partial third block is not hashed
    assert block_hashes([*ids[:32], 99, 98], 16) == hashes  # the same full blocks
    changed = block_hashes([1000, *ids[1:]], 16)
    assert changed[0] != hashes[0]
    assert changed[1] != hashes[1]  # same tokens, different parent


def test_lookup_misses_then_hits_short_of_the_last_token() -> None:
    cache = PrefixCache(blocks=8, block_size=4)
    hashes = block_hashes(list(range(16)), 4)
    assert cache.lookup(hashes, 16) == 0
    assert cache.lookup(hashes, 16) == 12  # the last block holds the last token: recomputed
    longer = block_hashes(list(range(20)), 4)
    assert cache.lookup(longer, 21) == 16
    assert cache.usage == 5 / 8


def test_least_recently_used_blocks_are_evicted() -> None:
    cache = PrefixCache(blocks=4, block_size=2)
    first, second = block_hashes([1, 2, 3, 4], 2), block_hashes([5, 6, 7, 8], 2)
    cache.lookup(first, 5)
    cache.lookup(second, 5)  # full: 4 blocks
    assert cache.lookup(first, 5) == 4  # refreshed: now the most recent
    cache.lookup(block_hashes([9, 10, 11, 12], 2), 5)  # evicts the oldest: second's
    assert cache.lookup(first, 5) == 4
    assert cache.lookup(second, 5) == 0
    assert len(cache.blocks) == 4


def test_each_model_has_its_own_cache_and_their_number_is_bounded() -> None:
    caches = PrefixCaches(blocks=4, block_size=2)
    hashes = block_hashes([1, 2, 3, 4], 2)
    caches.lookup("a", hashes, 5)
    assert caches.lookup("b", hashes, 5) == 0
    assert caches.lookup("a", hashes, 5) == 4
    for i in range(MAX_MODELS):
        caches.lookup(f"other-{i}", hashes, 5)
    assert len(caches.caches) == MAX_MODELS
    assert "a" not in caches.caches  # the least recently used model's cache went
    assert caches.fits(7)
    assert not caches.fits(8)  # 4 blocks of prompt and one for the first output token


def test_approx_ids_tell_texts_apart() -> None:
    assert approx_ids("abcdefgh") == approx_ids("abcdefgh")
    assert approx_ids("abcdefgh") != approx_ids("abcdxxxx")
    assert len(approx_ids("abcdefghi")) == 3
    assert min(approx_ids("some text here")) >= 0


def test_framing_is_as_long_as_openai_counts_it() -> None:
    assert len(message_ids("user", [7, 8, 9])) == 3 + 3 + 1
    assert len(message_ids("user", [7], name=[5, 6], images=2)) == 3 + 1 + 1 + 1 + 2 + 170
    assert message_ids("assistant", [])[:3] == priming_ids()  # the next turn starts so


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaves", "named"),
    [
        ({"kv_block_size": 0}, "--kv-block-size (TRIO_MOCK_KV_BLOCK_SIZE): must be >= 1"),
        ({"kv_block_size": 4096}, "--kv-block-size (TRIO_MOCK_KV_BLOCK_SIZE): must be <= 1024"),
        (
            {"prefix_cache_blocks": -1},
            "--prefix-cache-blocks (TRIO_MOCK_PREFIX_CACHE_BLOCKS): must be >= 0",
        ),
        (
            {"prefix_cache_blocks": 10**7},
            "--prefix-cache-blocks (TRIO_MOCK_PREFIX_CACHE_BLOCKS): must be <= 1000000",
        ),
    ],
)
def test_bad_settings_are_refused_with_the_knob_named(leaves: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError, match=r"^" + named.replace("(", r"\(").replace(")", r"\)")):
        Settings().replace(**leaves)


def test_the_cache_is_off_by_default() -> None:
    assert Settings().latency.prefix_cache_blocks == 0
    assert create_app(fast_settings()).live.model.prefix_caches is None


# --- TTFT: a hit skips its prefill -------------------------------------------------------


async def first_token_at(app: Any, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    answer = await call(app, "/v1/chat/completions", body | {"stream": True})
    assert answer.status == 200, answer.body
    events = answer.events()
    usage = next(e[2]["usage"] for e in events if isinstance(e[2], dict) and e[2].get("usage"))
    return token_times(events)[0], usage


async def test_a_hit_skips_exactly_its_prefill(autojump_clock: trio.testing.MockClock) -> None:
    app = app_with(**PACED, **CACHED)
    body = chat("What is the capital of France?", stream_options={"include_usage": True})
    miss_at, miss = await first_token_at(app, body)
    prompt = miss["prompt_tokens"]
    assert miss["prompt_tokens_details"]["cached_tokens"] == 0
    assert miss_at == pytest.approx(0.100 + prompt * 0.001, abs=1e-9)
    hit_at, hit = await first_token_at(app, body)
    cached = hit["prompt_tokens_details"]["cached_tokens"]
    assert cached == most_cached(prompt) > 0
    assert hit_at == pytest.approx(0.100 + (prompt - cached) * 0.001, abs=1e-9)
    other = chat("And of Spain?", stream_options={"include_usage": True})
    shared_at, shared = await first_token_at(app, other)  # the system prompt's blocks hit
    shared_cached = shared["prompt_tokens_details"]["cached_tokens"]
    assert 0 < shared_cached < shared["prompt_tokens"]
    assert shared_at == pytest.approx(
        0.100 + (shared["prompt_tokens"] - shared_cached) * 0.001, abs=1e-9
    )


async def test_off_the_same_prompt_pays_its_prefill_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = app_with(**PACED)
    body = chat("What is the capital of France?", stream_options={"include_usage": True})
    first_at, first = await first_token_at(app, body)
    again_at, again = await first_token_at(app, body)
    expected = 0.100 + first["prompt_tokens"] * 0.001
    assert first_at == pytest.approx(expected, abs=1e-9)
    assert again_at == pytest.approx(expected, abs=1e-9)
    assert again["prompt_tokens_details"]["cached_tokens"] == 0


# --- every API reports the cached tokens -------------------------------------------------


async def twice(app: Any, path: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """The second answer's usage, after a first identical request."""
    for _ in range(2):
        answer = await call(app, path, body, **kw)
        assert answer.status == 200, answer.body
    usage: dict[str, Any] = answer.json()["usage"]
    return usage


async def test_cached_tokens_in_every_api() -> None:
    app = app_with(**CACHED)
    same = await twice(app, "/v1/chat/completions", chat("Hello?"))
    assert same["prompt_tokens_details"]["cached_tokens"] == most_cached(same["prompt_tokens"])
    off = await twice(app_with(), "/v1/chat/completions", chat("Hello?"))
    assert off["prompt_tokens"] == same["prompt_tokens"]  # the framing counts as before
    assert off["prompt_tokens_details"]["cached_tokens"] == 0

    prompt = {"model": "m", "prompt": SYSTEM, "max_tokens": 3}
    completions = await twice(app, "/v1/completions", prompt)
    cached = completions["prompt_tokens_details"]["cached_tokens"]
    assert cached == most_cached(completions["prompt_tokens"]) > 0
    two = await twice(app, "/v1/completions", prompt | {"prompt": [SYSTEM, SYSTEM + " Go."]})
    assert two["prompt_tokens_details"]["cached_tokens"] > cached  # per prompt, summed

    responses = await twice(
        app, "/v1/responses", {"model": "m", "instructions": SYSTEM, "input": "Hello?"}
    )
    details = responses["input_tokens_details"]
    assert details["cached_tokens"] == most_cached(responses["input_tokens"]) > 0

    body = {"model": "m", "max_tokens": 5, "system": SYSTEM,
            "messages": [{"role": "user", "content": "Hello?"}]}  # fmt: skip
    first = await call(app, "/v1/messages", body, headers=VERSION)
    assert first.json()["usage"]["cache_read_input_tokens"] == 0
    total = first.json()["usage"]["input_tokens"]
    messages = await twice(app, "/v1/messages", body, headers=VERSION)
    read = messages["cache_read_input_tokens"]
    assert read == most_cached(total) > 0
    assert messages["input_tokens"] == total - read  # Anthropic's input excludes cache reads


async def test_a_prompt_larger_than_the_cache_is_refused_naming_the_knob() -> None:
    app = app_with(prefix_cache_blocks=4, kv_block_size=16)
    answer = await call(app, "/v1/chat/completions", chat("Hello?"))
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["param"] == "messages"
    assert "--prefix-cache-blocks (TRIO_MOCK_PREFIX_CACHE_BLOCKS)" in error["message"]


# --- journal, metrics, runtime changes ---------------------------------------------------


async def test_journal_and_vllm_metrics_count_the_cache() -> None:
    app = app_with(**CACHED)
    served = Settings().models.models[0]  # a listed model keeps its label
    usage = await twice(app, "/v1/chat/completions", chat("Hello?", model=served))
    listing = await call(app, "/_mock/requests", method="GET")
    plans = [entry["plan"] for entry in listing.json()["data"]]
    assert sorted(p["cached_tokens"] for p in plans) == [0, most_cached(usage["prompt_tokens"])]
    text = (await call(app, "/metrics", method="GET")).body.decode()
    prompt, cached = usage["prompt_tokens"], most_cached(usage["prompt_tokens"])
    for name, value in (
        ("vllm:prefix_cache_queries_total", 2 * prompt),
        ("vllm:gpu_prefix_cache_queries_total", 2 * prompt),
        ("vllm:prefix_cache_hits_total", cached),
        ("vllm:gpu_prefix_cache_hits_total", cached),
        ("vllm:kv_cache_usage_perc", prompt // 16 / 64),
        ("vllm:gpu_cache_usage_perc", prompt // 16 / 64),
    ):
        assert f'{name}{{engine="0",model_name="{served}"}} {float(value)}' in text, name


async def test_off_the_journal_shows_no_cache() -> None:
    app = app_with()
    await twice(app, "/v1/chat/completions", chat("Hello?"))
    listing = await call(app, "/_mock/requests", method="GET")
    assert [entry["plan"]["cached_tokens"] for entry in listing.json()["data"]] == [None] * 2


async def test_a_runtime_change_keeps_what_the_cache_holds() -> None:
    app = app_with(**CACHED)
    await call(app, "/v1/chat/completions", chat("Hello?"))
    change = await call(app, "/_mock/config", {"ttft_ms": 5}, method="PATCH")
    assert change.status == 200, change.body
    answer = await call(app, "/v1/chat/completions", chat("Hello?"))
    assert answer.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


# --- the official SDK --------------------------------------------------------------------


async def test_sdk_sees_cached_tokens_on_a_conversations_next_turn(
    start_server: StartServer,
) -> None:
    url = await start_server(**CACHED, output_tokens_mean=8, output_tokens_stddev=0)
    async with async_client(url) as client:
        messages: list[Any] = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Hello?"},
        ]
        first = await client.chat.completions.create(model="m", messages=messages)
        assert first.usage is not None
        assert first.usage.prompt_tokens_details is not None
        assert first.usage.prompt_tokens_details.cached_tokens == 0
        reply = first.choices[0].message.content
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "More?"}]
        second = await client.chat.completions.create(model="m", messages=messages)
    assert second.usage is not None
    assert second.usage.prompt_tokens_details is not None
    # The whole first prompt's full blocks, priming included, open the second one.
    assert second.usage.prompt_tokens_details.cached_tokens == first.usage.prompt_tokens // 16 * 16
