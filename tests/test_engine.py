"""The batched engine (issue 22): continuous batching with a knee, and KV pressure.

The pure engine first: exact step deadlines for a small batch, chunked prefill across
steps, a cache hit against a miss, throughput flat past ``max_num_seqs``, and a
preemption's gap. Then through the app under MockClock: streams and bodies take their
deadlines from the steps, the journal and the metrics tell the steps and preemptions,
and impossible settings or requests are refused with the knob named.
"""

from __future__ import annotations

import itertools
import operator
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from asgi import call, token_times
from conftest import fast_settings
from trio_mock import create_app
from trio_mock._config._knobs import SettingsError
from trio_mock._sim._engine import MAX_MODELS, Engine, EngineProfile, Engines

MS = 0.001
# A lone decode step takes 10 ms; a prefilled token 1 ms; each sequence 1 ms more up to
# the knee at 4, 4 ms more past it.
PROFILE = EngineProfile(itl_s=10 * MS, prefill_s_per_token=1 * MS, seq_s=1 * MS, knee=4,
                        past_knee_s=4 * MS, max_num_seqs=8, max_batched_tokens=64)  # fmt: skip


def times(engine: Engine, seq: Any, count: int) -> list[float]:
    return [engine.token_at(seq, k) for k in range(1, count + 1)]


# --- the engine itself (pure) ------------------------------------------------------------


def test_step_time_follows_the_curve_with_its_knee() -> None:
    assert PROFILE.step_s(0, 1) == pytest.approx(10 * MS)
    assert PROFILE.step_s(0, 4) == pytest.approx(13 * MS)  # 3 more below the knee
    assert PROFILE.step_s(0, 6) == pytest.approx(21 * MS)  # 2 past it, 4 ms each
    assert PROFILE.step_s(100, 1) == pytest.approx(110 * MS)


def test_a_small_batch_steps_exactly() -> None:
    engine = Engine(PROFILE)
    a = engine.join(0.0, prompt=10, uncached=10, output=3)
    b = engine.join(0.005, prompt=20, uncached=20, output=3)
    # Step 1 (0 -> 20 ms): a prefills 10 tokens alone; b arrives during it.
    # Step 2 (20 -> 51 ms): a decodes, b prefills 20: 10 + 20 + 1 (a second sequence).
    # Step 3 (51 -> 62 ms): both decode. Step 4 (62 -> 72 ms): b's last token, alone.
    assert times(engine, a, 3) == pytest.approx([0.020, 0.051, 0.062])
    assert times(engine, b, 3) == pytest.approx([0.051, 0.062, 0.072])
    assert engine.steps == 4
    assert a.summary() == {"queue_s": 0.0, "prefill_steps": 1, "decode_steps": 2,
                           "preemptions": 0}  # fmt: skip
    assert b.summary()["queue_s"] == pytest.approx(0.015)  # from 5 ms to step 2's start
    assert not engine.running  # both finished: their blocks are free


def test_a_long_prompt_is_prefilled_in_chunks_beside_the_decodes() -> None:
    engine = Engine(PROFILE)
    short = engine.join(0.0, prompt=4, uncached=4, output=10)
    long = engine.join(0.0, prompt=150, uncached=150, output=1)
    # Step 1: short's 4 tokens and long's first chunk of 60 (the 64-token budget).
    # Step 2 and 3: short decodes (1 token of the budget), long takes 63, then its last 27
    # (a decode's token costs its sequence's share, not a prefilled token's).
    first = 10 + 64 + 1
    second = first + 10 + 63 + 1
    third = second + 10 + 27 + 1
    assert times(engine, long, 1) == pytest.approx([third * MS])
    assert times(engine, short, 3) == pytest.approx([first * MS, second * MS, third * MS])
    assert long.prefill_steps == 3


def test_a_cache_hit_prefills_only_what_the_cache_lacks() -> None:
    miss, hit = Engine(PROFILE), Engine(PROFILE)
    cold = miss.join(1.0, prompt=60, uncached=60, output=2)
    warm = hit.join(1.0, prompt=60, uncached=4, output=2)
    assert times(miss, cold, 2) == pytest.approx([1.070, 1.080])
    assert times(hit, warm, 2) == pytest.approx([1.014, 1.024])
    everything = Engine(PROFILE).join(0.0, prompt=16, uncached=0, output=1)
    assert everything.to_prefill == 1  # the last token is always computed


def decode_rate(concurrency: int) -> float:
    """Tokens per second over all sequences, once every slot is decoding."""
    engine = Engine(PROFILE)
    seqs = [engine.join(0.0, prompt=1, uncached=1, output=400) for _ in range(concurrency)]
    first = seqs[0]
    gap = engine.token_at(first, 101) - engine.token_at(first, 100)
    return min(concurrency, PROFILE.max_num_seqs) / gap


def test_throughput_grows_to_the_knee_then_slower_then_flat_past_max_num_seqs() -> None:
    rates = {n: decode_rate(n) for n in (1, 2, 4, 6, 8, 16, 64)}
    assert rates[1] == pytest.approx(100.0)  # a lone 10 ms step
    assert rates[4] == pytest.approx(4 / 0.013)
    assert rates[8] == pytest.approx(8 / 0.029)
    below = (rates[4] - rates[2]) / 2
    past = (rates[8] - rates[6]) / 2
    assert past < below / 4  # compute-bound past the knee: each sequence adds less
    assert rates[16] == rates[8] == rates[64]  # the batch is full: the rest wait


def test_running_out_of_kv_blocks_preempts_the_newest_and_leaves_a_gap() -> None:
    profile = EngineProfile(itl_s=10 * MS, prefill_s_per_token=1 * MS, seq_s=1 * MS, knee=4,
                            past_knee_s=4 * MS, max_num_seqs=8, max_batched_tokens=64,
                            kv_blocks=10, block_size=4)  # fmt: skip
    engine = Engine(profile)
    old = engine.join(0.0, prompt=8, uncached=8, output=20)
    new = engine.join(0.001, prompt=8, uncached=8, output=20)
    old_times, new_times = times(engine, old, 20), times(engine, new, 20)
    # After the step ending at 147 ms, old holds (8 + 12) // 4 + 1 = 6 blocks and new
    # (8 + 11) // 4 + 1 = 5: 11 > 10, so new goes back to the queue. It fits again only
    # when old ends (8 more 10 ms steps, at 227 ms), then prefills its 8 + 11 tokens again.
    assert engine.preemptions == new.preemptions == 1
    assert old.preemptions == 0
    assert new_times[10] == pytest.approx(0.147)
    assert old_times[-1] == pytest.approx(0.227)
    assert new_times[11] == pytest.approx(0.227 + 0.010 + 0.019)  # the gap
    gaps = [b - a for a, b in itertools.pairwise(new_times)]
    assert max(gaps) == pytest.approx(0.109)
    assert sorted(gaps)[-2] == pytest.approx(0.011)  # every other gap is a step
    assert engine.used_blocks == 0


def test_a_released_sequence_frees_its_place() -> None:
    profile = EngineProfile(itl_s=10 * MS, prefill_s_per_token=0.0, seq_s=0.0, knee=4,
                            past_knee_s=0.0, max_num_seqs=1, max_batched_tokens=64)  # fmt: skip
    engine = Engine(profile)
    first = engine.join(0.0, prompt=1, uncached=1, output=100)
    second = engine.join(0.0, prompt=1, uncached=1, output=2)
    assert engine.token_at(first, 2) == pytest.approx(0.020)
    engine.finish(first)  # its client left
    assert times(engine, second, 2) == pytest.approx([0.030, 0.040])
    assert engine.token_at(first, 3) == float("inf")  # never comes
    engine.finish(first)  # twice is harmless


def test_decode_runs_step_in_one_loop_exactly_as_step_by_step() -> None:
    fast, slow = Engine(PROFILE), Engine(attrs.evolve(PROFILE, kv_blocks=10**6))
    got = []
    for engine in (fast, slow):  # a KV limit takes the step-by-step path
        first = engine.join(0.0, prompt=4, uncached=4, output=30)
        second = engine.join(0.1, prompt=4, uncached=4, output=5)  # joins mid-way
        third = engine.join(0.2, prompt=4, uncached=4, output=20)  # after the second left
        got.append((times(engine, first, 30), times(engine, second, 5), times(engine, third, 20)))
    assert got[0] == got[1]
    first_times, second_times, _ = got[0]
    assert first_times[0] == pytest.approx(0.014)  # 10 ms + 4 prefilled tokens
    assert first_times[9] == pytest.approx(0.104)  # the step that ends past 100 ms ...
    assert second_times[0] == pytest.approx(0.104 + 0.015)  # ... and the one it joins
    assert fast.steps == slow.steps


def test_an_idle_engine_starts_at_the_next_arrival() -> None:
    engine = Engine(PROFILE)
    early = engine.join(0.0, prompt=1, uncached=1, output=1)
    assert engine.token_at(early, 1) == pytest.approx(0.011)
    late = engine.join(5.0, prompt=1, uncached=1, output=1)
    assert engine.token_at(late, 1) == pytest.approx(5.011)


def test_each_model_has_its_engine_and_their_number_is_bounded() -> None:
    engines = Engines(PROFILE)
    first = engines["a"]
    assert engines["a"] is first
    first.preemptions = 3
    for i in range(MAX_MODELS):
        engines[f"other-{i}"]
    assert len(engines.engines) == MAX_MODELS
    assert "a" not in engines.engines
    assert engines.preemptions == 3  # the counter never goes back


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaves", "named"),
    [
        ({"kv_block_size": 0}, "--kv-block-size (TRIO_MOCK_KV_BLOCK_SIZE): must be >= 1"),
        (
            {"engine": "batched", "kv_block_size": 32, "max_num_batched_tokens": 16,
             "max_num_seqs": 4},
            "--max-num-batched-tokens (TRIO_MOCK_MAX_NUM_BATCHED_TOKENS): must be at least "
            "kv_block_size (16 < 32)",
        ),
        (
            {"engine": "batched", "max_num_batched_tokens": 64, "max_num_seqs": 128},
            "--max-num-batched-tokens (TRIO_MOCK_MAX_NUM_BATCHED_TOKENS): must be at least "
            "max_num_seqs, a decode token each (64 < 128)",
        ),
        ({"max_num_seqs": 0}, "--max-num-seqs (TRIO_MOCK_MAX_NUM_SEQS): must be >= 1"),
        ({"engine": "fast"}, "--engine (TRIO_MOCK_ENGINE)"),
    ],
)  # fmt: skip
def test_bad_settings_are_refused_with_the_knob_named(leaves: dict[str, Any], named: str) -> None:
    with pytest.raises(SettingsError, match="^" + named.replace("(", r"\(").replace(")", r"\)")):
        fast_settings(**leaves)


# --- through the app ---------------------------------------------------------------------

BATCHED: dict[str, Any] = {
    "engine": "batched",
    "itl_ms": 10,
    "prefill_ms_per_token": 1.0,
    "engine_seq_ms": 1.0,
    "engine_knee_seqs": 4,
    "engine_past_knee_ms": 4.0,
    "output_tokens_distribution": "fixed",
    "output_tokens_mean": 5,
    "max_num_batched_tokens": 512,
}
SYSTEM = "You are a careful assistant who answers in full sentences. " * 8


def app_with(**leaves: Any) -> Any:
    return create_app(fast_settings(**(BATCHED | leaves)))


def chat(question: str, **extra: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
    return {"model": "m", "messages": messages, "stream": True,
            "stream_options": {"include_usage": True}} | extra  # fmt: skip


async def streamed(app: Any, body: dict[str, Any]) -> tuple[list[float], dict[str, Any]]:
    """A stream's token arrival times (from its start) and its usage."""
    answer = await call(app, "/v1/chat/completions", body)
    assert answer.status == 200, answer.body
    events = answer.events()
    usage = next(e[2]["usage"] for e in events if isinstance(e[2], dict) and e[2].get("usage"))
    return token_times(events), usage


async def test_a_cache_hit_shortens_ttft_by_its_prefill_exactly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = app_with(prefix_cache_blocks=64, kv_block_size=16)
    body = chat("What is the capital of France?")
    miss_times, miss = await streamed(app, body)
    prompt = miss["prompt_tokens"]
    assert miss_times == pytest.approx([(10 + prompt + 10 * k) * MS for k in range(5)])
    hit_times, hit = await streamed(app, body)
    cached = hit["prompt_tokens_details"]["cached_tokens"]
    assert cached == (prompt - 1) // 16 * 16 > 0
    assert hit_times[0] == pytest.approx((10 + prompt - cached) * MS)
    assert hit_times[1] - hit_times[0] == pytest.approx(10 * MS)  # a lone decode step


async def test_concurrent_streams_share_steps(autojump_clock: trio.testing.MockClock) -> None:
    app = app_with()
    results: list[tuple[list[float], dict[str, Any]]] = []

    async def one() -> None:
        results.append(await streamed(app, chat("Hello?")))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
    (first, usage), (second, _) = results
    prompt = usage["prompt_tokens"]
    # The first arrival finds the engine idle: its step is fixed at once, alone. The second
    # prefills in the next step, beside the first one's decode, which it stretches.
    alone = (10 + prompt) * MS
    shared = alone + (10 + prompt + 1) * MS
    assert first == pytest.approx([alone, shared, shared + 0.011, shared + 0.022, shared + 0.033])
    assert second == pytest.approx([shared, shared + 0.011, shared + 0.022, shared + 0.033,
                                    shared + 0.043])  # fmt: skip


async def test_each_choice_is_a_sequence_of_the_batch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = app_with()
    answer = await call(app, "/v1/chat/completions", chat("Hello?", n=2))
    events = answer.events()
    usage = next(e[2]["usage"] for e in events if isinstance(e[2], dict) and e[2].get("usage"))
    prompt = usage["prompt_tokens"]
    by_choice: dict[int, list[float]] = {0: [], 1: []}
    for at, _, data in events:
        for choice in data.get("choices", []) if isinstance(data, dict) else []:
            if (choice.get("delta") or {}).get("content"):
                by_choice[choice["index"]].append(at)
    first = (10 + 2 * prompt + 1) * MS  # both prefilled in one step of two sequences
    expected = [first + 11 * MS * k for k in range(5)]
    assert by_choice[0] == pytest.approx(expected)
    assert by_choice[1] == pytest.approx(expected)


async def test_a_stream_cut_short_leaves_the_batch(autojump_clock: trio.testing.MockClock) -> None:
    app = app_with(output_tokens_mean=100, max_request_s=0.5)
    cut = await call(app, "/v1/chat/completions", chat("Hello?"))
    assert b"timeout" in cut.body  # cut at 0.5 s, long before its 100th token
    await trio.sleep(0.05)  # past the step already fixed when the cut came
    later, usage = await streamed(app, chat("Hello again?", max_tokens=5))
    # Alone again: had the cut sequence stayed, it would decode beside this one (11 ms).
    assert later[1] - later[0] == pytest.approx(10 * MS)
    assert later[0] == pytest.approx((10 + usage["prompt_tokens"]) * MS)


async def test_a_body_comes_when_its_last_step_ends(autojump_clock: trio.testing.MockClock) -> None:
    app = app_with()
    start = trio.current_time()
    answer = await call(
        app, "/v1/chat/completions", chat("Hello?", stream=False, stream_options=None)
    )
    assert answer.status == 200
    prompt = answer.json()["usage"]["prompt_tokens"]
    assert trio.current_time() - start == pytest.approx((10 + prompt + 40) * MS)
    assert answer.headers["x-mock-ttft-ms"] == f"{10 + prompt:.3f}"


async def test_kv_pressure_preempts_and_is_counted(autojump_clock: trio.testing.MockClock) -> None:
    # Each prompt takes 7 blocks of 16 tokens, each reply of 60 tokens 4 more: each fits
    # the 14 blocks alone, not both together to the end, so the newer one is preempted.
    app = app_with(prefix_cache_blocks=14, kv_block_size=16, output_tokens_mean=60)
    results: dict[str, list[float]] = {}

    async def one(name: str, delay: float) -> None:
        await trio.sleep(delay)
        results[name] = (await streamed(app, chat(f"Question {name}?")))[0]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "old", 0.0)
        nursery.start_soon(one, "new", 0.001)
    new_gaps = [b - a for a, b in itertools.pairwise(results["new"])]
    assert max(new_gaps) > 20 * 11 * MS  # it waits for the old one to end, then recomputes
    listing = (await call(app, "/_mock/requests", method="GET")).json()["data"]
    old, new = sorted(listing, key=operator.itemgetter("seq"))  # in arrival order
    assert new["engine"][0]["preemptions"] == 1
    assert new["engine"][0]["prefill_steps"] == 2
    assert old["engine"][0] == {"queue_s": 0.0, "prefill_steps": 1,
                                           "decode_steps": 59, "preemptions": 0}  # fmt: skip
    text = (await call(app, "/metrics", method="GET")).body.decode()
    assert 'vllm:num_preemptions_total{engine="0",model_name=' in text
    assert next(line for line in text.splitlines()
                if line.startswith("vllm:num_preemptions_total")).endswith(" 1.0")  # fmt: skip
    index = (await call(app, "/", method="GET")).json()
    assert index["engine"]["kind"] == "batched"
    assert index["engine"]["preemptions"] == 1
    assert index["engine"]["prefix_cache_hit_rate"] >= 0


async def test_a_request_that_can_never_fit_gets_the_context_length_error() -> None:
    app = app_with(prefix_cache_blocks=8, kv_block_size=16, output_tokens_mean=200)
    answer = await call(
        app, "/v1/chat/completions", chat("Hello?", stream=False, stream_options=None)
    )
    assert answer.status == 400
    error = answer.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"
    assert "--prefix-cache-blocks" in error["message"]


async def test_the_simple_engine_stays_the_default() -> None:
    app = create_app(fast_settings())
    index = (await call(app, "/", method="GET")).json()
    assert index["engine"] == {"kind": "simple"}
    answer = await call(
        app, "/v1/chat/completions", chat("Hello?", stream=False, stream_options=None)
    )
    listing = (await call(app, "/_mock/requests", method="GET")).json()["data"]
    assert answer.status == 200
    assert listing[-1]["engine"] is None
