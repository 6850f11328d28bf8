"""The latency and load model, checked exactly.

Sampling (``draw``, output lengths) gets plain sync tests on 200k seeded samples. Timing goes
through Quart's in-memory test client under trio's MockClock (no sockets, so autojump is
safe): many requests run in one nursery against one app, and every received write is stamped
with ``trio.current_time()``, so each TTFT and gap is compared with the model's formula to
1e-9 s. The formulas are the README's "Latency and load model".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pytest
import trio
import trio.testing

from conftest import fast_settings
from trio_mock import Settings, SettingsError, create_app
from trio_mock._config._knobs import parse_value
from trio_mock._config._profiles import PROFILES
from trio_mock._config._settings import KNOBS, LatencySettings
from trio_mock._sim._corpus import Corpus
from trio_mock._sim._latency import draw
from trio_mock._sim._plan import Limits, plan_choice
from trio_mock._sim._text import CorpusText
from trio_mock._sim._tokens import load_tokenizer

if TYPE_CHECKING:
    from quart.typing import TestClientProtocol

CHAT = "/v1/chat/completions"
EXACT = 1e-9  # MockClock: times are exact up to float rounding
SAMPLES = 200_000
SEED = 20240601
USAGE = {"stream_options": {"include_usage": True}}
GIVE_UP_S = 60.0


# --- helpers -------------------------------------------------------------------------------


@dataclass
class Reply:
    """One request as its client saw it; every time is absolute (``trio.current_time()``)."""

    sent: float
    status: int
    request_id: str | None
    frames: list[tuple[float, dict[str, Any]]]  # SSE data frames with their arrival
    body: dict[str, Any] | None  # a JSON (non-SSE) body
    ended: float  # when the response body ended

    def content_times(self, index: int = 0) -> list[float]:
        """Arrival of each content chunk of choice ``index``, relative to sending."""
        return [
            t - self.sent
            for t, chunk in self.frames
            for choice in chunk.get("choices", [])
            if choice["index"] == index and choice["delta"].get("content")
        ]

    @property
    def ttft(self) -> float:
        return self.content_times()[0]

    @property
    def gaps(self) -> list[float]:
        times = self.content_times()
        return [b - a for a, b in itertools.pairwise(times)]

    @property
    def text(self) -> str:
        return "".join(
            choice["delta"].get("content") or ""
            for _, chunk in self.frames
            for choice in chunk.get("choices", [])
        )

    @property
    def usage(self) -> dict[str, Any]:
        found = [chunk["usage"] for _, chunk in self.frames if chunk.get("usage")]
        assert len(found) == 1, "ask for usage with stream_options.include_usage"
        return dict(found[0])

    @property
    def elapsed(self) -> float:
        return self.ended - self.sent


async def chat(
    client: TestClientProtocol,
    body: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    delay: float = 0.0,
    stream: bool = True,
    out: list[Reply] | None = None,
) -> Reply:
    """Send one chat request after ``delay`` seconds and read its whole response.

    Args:
      out: the reply is appended here too, for requests started in a nursery.
    """
    await trio.sleep(delay)
    payload = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "stream": stream,
    } | dict(body or {})
    sent = trio.current_time()
    received: list[tuple[float, bytes]] = []
    # Virtual seconds: a request the server never answers fails the test instead of hanging it.
    with trio.fail_after(GIVE_UP_S):
        async with client.request(
            CHAT, method="POST", headers={"content-type": "application/json"} | dict(headers or {})
        ) as conn:
            await conn.send(orjson.dumps(payload))
            await conn.send_complete()
            while True:
                try:
                    data = await conn.receive()
                except trio.EndOfChannel:  # the app sent its last body part
                    break
                received.append((trio.current_time(), data))
            response = await conn.as_response()
    raw = b"".join(data for _, data in received)
    frames: list[tuple[float, dict[str, Any]]] = []
    json_body: dict[str, Any] | None = None
    if response.mimetype == "text/event-stream":
        for arrived, data in received:
            for line in data.split(b"\n\n"):
                if line.startswith(b"data: {"):
                    frames.append((arrived, orjson.loads(line[6:])))
    else:
        json_body = orjson.loads(raw)
    reply = Reply(
        sent=sent,
        status=response.status_code,
        request_id=response.headers.get("x-request-id"),
        frames=frames,
        body=json_body,
        ended=received[-1][0],
    )
    if out is not None:
        out.append(reply)
    return reply


async def load_now(client: TestClientProtocol) -> dict[str, int]:
    response = await client.get("/")
    data = await response.get_json()
    return dict(data["load"])


def openai_error(reply: Reply) -> dict[str, Any]:
    """The ``error`` object of a refused request, checked for OpenAI's shape."""
    assert reply.body is not None
    assert set(reply.body) == {"error"}
    error = reply.body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


# --- 1. sampling ---------------------------------------------------------------------------


def samples(distribution: str, mean: float, stddev: float, low: float, high: float | None) -> Any:
    return draw(distribution, mean, stddev, low, high, SAMPLES, np.random.default_rng(SEED))


@pytest.mark.parametrize("distribution", ["normal", "lognormal"])
def test_draw_keeps_the_mean_and_stddev(distribution: str) -> None:
    mean, stddev = 100.0, 20.0
    x = samples(distribution, mean, stddev, 0.0, None)
    # Five standard errors of the mean; the sample stddev is far tighter than 2 %.
    assert x.mean() == pytest.approx(mean, abs=5 * stddev / math.sqrt(SAMPLES))
    assert x.std() == pytest.approx(stddev, rel=0.02)
    if distribution == "lognormal":  # skewed: the median sits at mean / sqrt(1 + cv^2)
        assert x.min() > 0
        assert np.median(x) == pytest.approx(mean / math.sqrt(1 + (stddev / mean) ** 2), rel=0.01)
    else:  # symmetric, 68.3 % within one stddev
        assert np.median(x) == pytest.approx(mean, abs=0.3)
        assert np.mean(np.abs(x - mean) < stddev) == pytest.approx(0.6827, abs=0.005)


def test_uniform_spans_its_bounds() -> None:
    x = samples("uniform", 0.0, 0.0, 2.0, 6.0)  # mean and stddev do not apply
    assert x.min() >= 2.0
    assert x.max() <= 6.0
    assert x.min() < 2.001
    assert x.max() > 5.999
    assert x.mean() == pytest.approx(4.0, abs=0.01)
    assert x.std() == pytest.approx(4.0 / math.sqrt(12), rel=0.01)


@pytest.mark.parametrize(
    ("distribution", "stddev"), [("constant", 30.0), ("fixed", 30.0), ("normal", 0.0)]
)
def test_constant_is_exact(distribution: str, stddev: float) -> None:
    assert samples(distribution, 7.25, stddev, 0.0, None).tolist() == [7.25] * SAMPLES


@pytest.mark.parametrize("distribution", ["normal", "lognormal"])
def test_draw_clamps(distribution: str) -> None:
    x = samples(distribution, 100.0, 50.0, 80.0, 120.0)
    assert x.min() == 80.0  # both tails are clamped, not redrawn
    assert x.max() == 120.0
    assert np.mean(x == 80.0) > 0.1
    assert np.mean(x == 120.0) > 0.1


def test_constant_is_clamped_too() -> None:
    assert set(samples("constant", 5.0, 0.0, 10.0, None).tolist()) == {10.0}
    assert set(samples("constant", 50.0, 0.0, 0.0, 20.0).tolist()) == {20.0}


def test_normal_never_goes_below_zero() -> None:
    x = samples("normal", 10.0, 20.0, 0.0, None)
    assert x.min() == 0.0  # a third of the draws would be negative


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    return Corpus(load_tokenizer("approx"), 8, 0)


def lengths(corpus: Corpus, count: int = 100_000, **leaves: Any) -> Any:
    source = CorpusText(corpus, Settings().replace(**leaves).output)
    rng = np.random.default_rng(SEED)
    return np.array([source.natural_length(rng) for _ in range(count)])


@pytest.mark.parametrize(
    ("distribution", "mean", "stddev"), [("normal", 128.0, 32.0), ("lognormal", 300.0, 120.0)]
)
def test_output_length_keeps_its_mean(
    corpus: Corpus, distribution: str, mean: float, stddev: float
) -> None:
    n = lengths(
        corpus,
        output_tokens_distribution=distribution,
        output_tokens_mean=mean,
        output_tokens_stddev=stddev,
    )
    assert n.dtype.kind == "i"
    assert n.min() >= 1
    assert n.mean() == pytest.approx(mean, abs=5 * stddev / math.sqrt(len(n)))
    assert n.std() == pytest.approx(stddev, rel=0.02)


def test_output_length_fixed_uniform_and_clamped(corpus: Corpus) -> None:
    fixed = lengths(corpus, 1000, output_tokens_distribution="fixed", output_tokens_mean=42)
    assert set(fixed.tolist()) == {42}
    uniform = lengths(
        corpus, output_tokens_distribution="uniform", output_tokens_min=50, output_tokens_max=150
    )
    assert (uniform.min(), uniform.max()) == (50, 150)
    assert uniform.mean() == pytest.approx(100, abs=0.5)
    clamped = lengths(
        corpus,
        output_tokens_mean=128,
        output_tokens_stddev=64,
        output_tokens_min=100,
        output_tokens_max=140,
    )
    assert (clamped.min(), clamped.max()) == (100, 140)


def test_plan_choice_follows_output_length_knobs(corpus: Corpus) -> None:
    output = Settings().replace(
        output_tokens_distribution="uniform", output_tokens_min=5, output_tokens_max=9
    )
    source = CorpusText(corpus, output.output)
    latency = LatencySettings(ttft_ms=0, itl_ms=0)
    free, capped = [], []
    for seed in range(300):
        plan = plan_choice(0, source, Limits(), latency, (1, 1), np.random.default_rng(seed))
        assert plan.finish_reason == "stop"
        free.append(plan.tokens)
        plan = plan_choice(
            0, source, Limits(max_tokens=7), latency, (1, 1), np.random.default_rng(seed)
        )
        assert plan.tokens == min(free[-1], 7)
        assert plan.finish_reason == ("length" if plan.tokens == 7 else "stop")
        capped.append(plan.tokens)
    assert set(free) == {5, 6, 7, 8, 9}
    assert set(capped) == {5, 6, 7}


# --- 2. prefill ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leaves", "ttft_s"),
    [({"ttft_ms": 40}, 0.04), ({"ttft_ms": 100, "ttft_max_ms": 60}, 0.06)],
    ids=["plain", "clamped-before-prefill"],
)
async def test_prefill_adds_per_prompt_token(
    autojump_clock: trio.testing.MockClock, leaves: dict[str, Any], ttft_s: float
) -> None:
    app = create_app(fast_settings(itl_ms=10, prefill_ms_per_token=0.5, **leaves))
    prompts = ["hi", "a much longer prompt " * 40]
    async with app.test_app() as test_app:
        client = test_app.test_client()
        replies = [
            await chat(client, USAGE | {"messages": [{"role": "user", "content": p}]})
            for p in prompts
        ]
    short, long = (r.usage["prompt_tokens"] for r in replies)
    assert long > short + 100
    for reply in replies:
        p = reply.usage["prompt_tokens"]
        expected = [ttft_s + p * 0.0005 + 0.01 * k for k in range(5)]
        assert reply.content_times() == pytest.approx(expected, abs=EXACT)


# --- 3. load -------------------------------------------------------------------------------


@pytest.mark.parametrize("stagger", [0.0, 0.001], ids=["same-instant", "staggered"])
async def test_ttft_grows_with_requests_in_prefill(
    autojump_clock: trio.testing.MockClock, stagger: float
) -> None:
    n, factor = 12, 0.25
    app = create_app(
        fast_settings(ttft_ms=100, prefill_ms_per_token=0.5, itl_ms=10, ttft_load_factor=factor)
    )
    replies: list[Reply] = []
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(
                    partial(
                        chat,
                        client,
                        USAGE,
                        {"x-request-id": f"r{i}"},
                        delay=stagger * i,
                        out=replies,
                    )
                )
    (p,) = {r.usage["prompt_tokens"] for r in replies}
    base = 0.1 + p * 0.0005  # the prefill cost is stretched too
    expected = [base * (1 + factor * k) for k in range(n)]
    assert sorted(r.ttft for r in replies) == pytest.approx(expected, abs=EXACT)
    for reply in replies:
        assert reply.gaps == pytest.approx([0.01] * 4, abs=EXACT)  # itl_load_factor is 0
    if stagger:  # arrival order is admission order: the k-th had k others in prefill
        by_id = {r.request_id: r for r in replies}
        assert [by_id[f"r{k}"].ttft for k in range(n)] == pytest.approx(expected, abs=EXACT)


async def test_itl_grows_with_streams_decoding(autojump_clock: trio.testing.MockClock) -> None:
    n, factor = 8, 0.5
    app = create_app(fast_settings(ttft_ms=100, itl_ms=10, itl_load_factor=factor))
    replies: list[Reply] = []
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(partial(chat, client, {"max_tokens": 6}, out=replies))
    loaded = 0.01 * (1 + factor * (n - 1))
    for reply in replies:
        assert reply.ttft == pytest.approx(0.1, abs=EXACT)  # ttft_load_factor is 0
        # From the second token on, all N are decoding.
        assert reply.gaps[1:] == pytest.approx([loaded] * 4, abs=EXACT)
    # All N send their first token at the same instant, one after another: the j-th to send
    # sees j + 1 streams decoding (itself included) when its first gap is computed.
    first_gaps = sorted(reply.gaps[0] for reply in replies)
    assert first_gaps == pytest.approx([0.01 * (1 + factor * j) for j in range(n)], abs=EXACT)


async def test_zero_load_factors_keep_the_unloaded_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(ttft_ms=100, itl_ms=10))
    replies: list[Reply] = []
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with trio.open_nursery() as nursery:
            for _ in range(16):
                nursery.start_soon(partial(chat, client, out=replies))
            nursery.start_soon(partial(chat, client, stream=False, out=replies))
    assert [r.status for r in replies] == [200] * 17
    for reply in replies:
        if reply.body is None:
            assert reply.content_times() == pytest.approx(
                [0.1 + 0.01 * k for k in range(5)], abs=EXACT
            )
        else:
            assert reply.elapsed == pytest.approx(0.14, abs=EXACT)


async def test_non_streamed_requests_count_in_prefill_then_in_decode(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(
        fast_settings(ttft_ms=100, itl_ms=10, ttft_load_factor=0.5, itl_load_factor=0.5)
    )
    snapshots: list[dict[str, int]] = []
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(chat, client, {"max_tokens": 30}, stream=False))
            await trio.sleep(0.05)
            snapshots.append(await load_now(client))
            stream = await chat(client)  # arrives at 0.05 with the non-streamed one in prefill
            snapshots.append(await load_now(client))
    assert snapshots == [
        {"queued": 0, "running": 1, "prefilling": 1, "decoding": 0},
        {"queued": 0, "running": 1, "prefilling": 0, "decoding": 1},
    ]
    assert stream.ttft == pytest.approx(0.1 * 1.5, abs=EXACT)
    # From its second token on, the non-streamed request decodes beside it: D = 2.
    assert stream.gaps[1:] == pytest.approx([0.01 * 1.5] * 3, abs=EXACT)


async def probe_under_load(*, stream: bool) -> Reply:
    """Three long streams arrive at t=0 (TTFT 20 ms, factor 0.5: first tokens at 20, 30 and
    40 ms); a 5-token probe arrives at 1 ms, with those three in prefill, and decodes while
    all four are decoding (ITL 10 ms, factor 0.25)."""
    app = create_app(
        fast_settings(ttft_ms=20, itl_ms=10, ttft_load_factor=0.5, itl_load_factor=0.25)
    )
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(partial(chat, client, {"max_tokens": 60}))
            probe = await chat(client, delay=0.001, stream=stream)
    return probe


PROBE_TTFT = 0.02 * (1 + 0.5 * 3)  # three others in prefill when admitted
PROBE_GAP = 0.01 * (1 + 0.25 * 3)  # four streams decoding, the probe included


async def test_non_streamed_reply_under_load_comes_when_its_last_token_is_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    probe = await probe_under_load(stream=False)
    assert probe.status == 200
    assert probe.body is not None
    assert probe.body["usage"]["completion_tokens"] == 5
    assert probe.elapsed == pytest.approx(PROBE_TTFT + 4 * PROBE_GAP, abs=EXACT)


async def test_stream_under_load_follows_the_model(autojump_clock: trio.testing.MockClock) -> None:
    probe = await probe_under_load(stream=True)
    assert probe.ttft == pytest.approx(PROBE_TTFT, abs=EXACT)
    # The first gap too: once its first token is out, the probe counts itself in D, as the
    # non-streamed reply does (this gap used 0.01 x (1 + 0.25 x 2) before 4d0d84e).
    assert probe.gaps == pytest.approx([PROBE_GAP] * 4, abs=EXACT)


async def test_every_choice_ttft_is_stretched_by_load(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = fast_settings(ttft_ms=100, ttft_jitter_ms=30, itl_ms=10, ttft_load_factor=1.0)
    body = {"n": 2, "seed": 3, "max_tokens": 3}
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        alone = await chat(client, body)
        async with trio.open_nursery() as nursery:
            # In prefill until 0.2, so the probe (admitted at 0.001) has P = 1: TTFT x 2.
            nursery.start_soon(partial(chat, client, None, {"x-mock-ttft-ms": "200"}))
            loaded = await chat(client, body, delay=0.001)
    ttfts = [alone.content_times(index)[0] for index in range(2)]
    assert abs(ttfts[0] - ttfts[1]) > 0.01  # the seed draws two different TTFTs
    for index, ttft in enumerate(ttfts):
        expected = [t + ttft for t in alone.content_times(index)]  # ttft x 2, then the gaps
        assert loaded.content_times(index) == pytest.approx(expected, abs=EXACT)


# --- 4. capacity and the queue -------------------------------------------------------------


async def test_queue_is_fifo_and_ttft_includes_the_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Each request runs 140 ms from admission (TTFT 100 ms, then four 10 ms gaps).
    app = create_app(fast_settings(ttft_ms=100, itl_ms=10, max_concurrency=2))
    replies: list[Reply] = []
    snapshots: dict[float, dict[str, int]] = {}
    async with app.test_app() as test_app:
        client = test_app.test_client()
        t0 = trio.current_time()

        async def watch() -> None:
            for at in (0.05, 0.12, 0.2, 0.5):
                await trio.sleep_until(t0 + at)
                snapshots[at] = await load_now(client)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            for i in range(5):
                nursery.start_soon(
                    partial(
                        chat, client, None, {"x-request-id": f"r{i}"}, delay=0.001 * i, out=replies
                    )
                )
    by_id = {r.request_id: r for r in replies}
    # Admitted at 0, 0.001, then as the slots free: r0 ends at 0.14, r1 at 0.141, r2 at 0.28.
    admitted = [0.0, 0.001, 0.14, 0.141, 0.28]
    for i, at in enumerate(admitted):
        reply = by_id[f"r{i}"]
        assert reply.sent - t0 == pytest.approx(0.001 * i, abs=EXACT)
        assert reply.ttft == pytest.approx(at + 0.1 - 0.001 * i, abs=EXACT)  # arrival to token
        assert reply.gaps == pytest.approx([0.01] * 4, abs=EXACT)
        assert reply.ended - t0 == pytest.approx(at + 0.14, abs=EXACT)
    assert snapshots == {
        0.05: {"queued": 3, "running": 2, "prefilling": 2, "decoding": 0},
        0.12: {"queued": 3, "running": 2, "prefilling": 0, "decoding": 2},
        0.2: {"queued": 1, "running": 2, "prefilling": 2, "decoding": 0},
        0.5: {"queued": 0, "running": 0, "prefilling": 0, "decoding": 0},
    }


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [(503, "server_error", "server_overloaded"), (429, "requests", "rate_limit_exceeded")],
)
async def test_full_queue_refuses_at_once(
    autojump_clock: trio.testing.MockClock, status: int, kind: str, code: str
) -> None:
    app = create_app(
        fast_settings(
            ttft_ms=100, itl_ms=10, max_concurrency=1, max_queue=1, overload_status=status
        )
    )
    replies: list[Reply] = []
    async with app.test_app() as test_app:
        client = test_app.test_client()
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(
                    partial(
                        chat, client, None, {"x-request-id": f"r{i}"}, delay=0.001 * i, out=replies
                    )
                )
            await trio.sleep(0.05)
            assert await load_now(client) == {
                "queued": 1,
                "running": 1,
                "prefilling": 1,
                "decoding": 0,
            }
    by_id = {r.request_id: r for r in replies}
    refused = by_id["r2"]
    assert refused.status == status
    assert refused.elapsed == 0  # no wait at all
    error = openai_error(refused)
    assert (error["type"], error["code"], error["param"]) == (kind, code, None)
    assert by_id["r0"].ttft == pytest.approx(0.1, abs=EXACT)
    assert by_id["r1"].sent - t0 + by_id["r1"].ttft == pytest.approx(0.24, abs=EXACT)
    assert by_id["r1"].status == 200


async def test_queue_timeout_refuses_exactly_at_the_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(ttft_ms=100, itl_ms=10, max_concurrency=1, queue_timeout_s=0.05))
    replies: list[Reply] = []
    async with app.test_app() as test_app:
        client = test_app.test_client()
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i, delay in enumerate((0.0, 0.001, 0.1)):
                nursery.start_soon(
                    partial(chat, client, None, {"x-request-id": f"r{i}"}, delay=delay, out=replies)
                )
    by_id = {r.request_id: r for r in replies}
    timed_out = by_id["r1"]
    assert timed_out.status == 503
    assert timed_out.elapsed == pytest.approx(0.05, abs=EXACT)
    error = openai_error(timed_out)
    assert (error["type"], error["code"]) == ("server_error", "server_overloaded")
    # r2 waited 40 ms (r0 ends at 0.14), less than the timeout: it is served.
    assert by_id["r2"].status == 200
    assert by_id["r2"].sent - t0 + by_id["r2"].ttft == pytest.approx(0.24, abs=EXACT)


async def test_client_leaving_the_queue_frees_its_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The leaving client talks raw ASGI: the test client cannot leave before an answer.
    app = create_app(fast_settings(ttft_ms=100, itl_ms=10, max_concurrency=1, max_queue=1))
    to_app, from_client = trio.open_memory_channel[Any](4)
    answered: list[Any] = []

    async def send(message: Any) -> None:
        answered.append(message)

    scope: Any = {
        "type": "http",
        "method": "POST",
        "path": CHAT,
        "headers": [(b"content-type", b"application/json")],
    }
    body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(chat, client))  # holds the slot until 0.14
            await trio.sleep(0.001)
            nursery.start_soon(app, scope, from_client.receive, send)
            await to_app.send({"type": "http.request", "body": body, "more_body": False})
            await trio.sleep(0.001)
            assert (await load_now(client))["queued"] == 1
            await to_app.send({"type": "http.disconnect"})
            await trio.sleep(0.001)
            left = await load_now(client)
            newcomer = await chat(client)
    assert left == {"queued": 0, "running": 1, "prefilling": 1, "decoding": 0}
    assert newcomer.status == 200  # not refused for a queue the leaver no longer holds
    assert answered == []  # nothing is sent to a client that is gone


async def test_time_limit_counts_from_arrival_not_admission(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(ttft_ms=100, itl_ms=10, max_concurrency=1, max_request_s=0.2))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(chat, client))
            queued = await chat(client, delay=0.001)  # admitted at 0.14, token 0 due at 0.24
    arrived, last = queued.frames[-1]
    assert last["error"]["code"] == "timeout"
    assert arrived - queued.sent == pytest.approx(0.2, abs=EXACT)
    assert queued.content_times() == []


async def test_request_queued_until_its_limit_is_cut_at_the_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The slot's holder is cut at its own limit (0.1), so the queued request (arrived at
    # 0.001) is admitted with 1 ms left and answered 504 exactly at its limit.
    app = create_app(fast_settings(ttft_ms=100, itl_ms=10, max_concurrency=1, max_request_s=0.1))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(chat, client, {"max_tokens": 5}))  # cut at 0.1
            queued = await chat(client, delay=0.001, stream=False)
    assert queued.status == 504
    assert openai_error(queued)["code"] == "timeout"
    assert queued.elapsed == pytest.approx(0.1, abs=EXACT)


# --- 5. x-mock-* headers -------------------------------------------------------------------


async def test_latency_headers_apply_to_their_request_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(ttft_ms=100, itl_ms=10, prefill_ms_per_token=1))
    replies: list[Reply] = []
    cases: list[dict[str, str]] = [
        {"x-mock-ttft-ms": "250", "x-mock-itl-ms": "40"},
        {"x-mock-ttft-ms": "250"},
        {"x-mock-itl-ms": "40"},
        {},
    ]
    async with app.test_app() as test_app:
        client = test_app.test_client()
        async with trio.open_nursery() as nursery:
            for i, headers in enumerate(cases):
                h = headers | {"x-request-id": f"r{i}"}
                nursery.start_soon(partial(chat, client, USAGE, h, out=replies))
    by_id = {r.request_id: r for r in replies}
    p = by_id["r0"].usage["prompt_tokens"]
    settings_ttft = 0.1 + p * 0.001  # the header's TTFT has no prefill cost
    for i, (ttft, itl) in enumerate(
        [(0.25, 0.04), (0.25, 0.01), (settings_ttft, 0.04), (settings_ttft, 0.01)]
    ):
        expected = [ttft + itl * k for k in range(5)]
        assert by_id[f"r{i}"].content_times() == pytest.approx(expected, abs=EXACT)


async def test_latency_headers_ignore_jitter_and_clamps(
    autojump_clock: trio.testing.MockClock,
) -> None:
    settings = fast_settings(
        ttft_ms=100,
        ttft_jitter_ms=30,
        ttft_min_ms=300,
        ttft_max_ms=400,
        itl_ms=10,
        itl_jitter_ms=5,
        itl_min_ms=5,
        itl_max_ms=30,
        prefill_ms_per_token=1,
    )
    body = {"max_tokens": 20} | USAGE
    async with create_app(settings).test_app() as test_app:
        client = test_app.test_client()
        # 250 ms is below the TTFT clamp and 40 ms above the ITL clamp: both are lifted.
        exact = await chat(client, body, {"x-mock-ttft-ms": "250", "x-mock-itl-ms": "40"})
        plain = await chat(client, body)
    assert exact.content_times() == pytest.approx([0.25 + 0.04 * k for k in range(20)], abs=EXACT)
    # Without the headers the settings hold: TTFT clamped up to 300 ms plus prefill, and
    # jittered gaps within their clamps.
    p = plain.usage["prompt_tokens"]
    assert plain.ttft == pytest.approx(0.3 + p * 0.001, abs=EXACT)
    assert all(0.005 - EXACT <= g <= 0.03 + EXACT for g in plain.gaps)
    assert max(plain.gaps) - min(plain.gaps) > 0.005


@pytest.mark.parametrize(
    ("max_tokens", "tokens", "finish"), [(None, 7, "stop"), (5, 5, "length"), (7, 7, "length")]
)
async def test_output_tokens_header_sets_the_length(
    autojump_clock: trio.testing.MockClock, max_tokens: int | None, tokens: int, finish: str
) -> None:
    headers = {"x-mock-output-tokens": "7"}
    body = {"max_tokens": max_tokens} | USAGE
    async with create_app(fast_settings(output_tokens_mean=500)).test_app() as test_app:
        client = test_app.test_client()
        whole = await chat(client, {"max_tokens": max_tokens}, headers, stream=False)
        streamed = await chat(client, body, headers)
    assert whole.body is not None
    assert whole.body["usage"]["completion_tokens"] == tokens
    assert whole.body["choices"][0]["finish_reason"] == finish
    assert streamed.usage["completion_tokens"] == tokens
    assert len(streamed.content_times()) == tokens
    finishes = [c["finish_reason"] for _, f in streamed.frames for c in f.get("choices", [])]
    assert finishes[-1] == finish


async def test_seed_header_reproduces_the_text_like_the_body_seed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with create_app(fast_settings()).test_app() as test_app:
        client = test_app.test_client()
        body = {"max_tokens": 40}
        by_header = await chat(client, body, {"x-mock-seed": "5"})
        again = await chat(client, body, {"x-mock-seed": "5"})
        by_body = await chat(client, body | {"seed": 5})
        header_wins = await chat(client, body | {"seed": 6}, {"x-mock-seed": "5"})
        other = await chat(client, body, {"x-mock-seed": "6"})
    assert by_header.text
    assert by_header.text == again.text == by_body.text == header_wins.text
    assert other.text != by_header.text


@pytest.mark.parametrize(
    "header", ["x-mock-ttft-ms", "x-mock-itl-ms", "x-mock-output-tokens", "x-mock-seed"]
)
@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", ""])
async def test_bad_header_values_are_a_400_naming_the_header(
    autojump_clock: trio.testing.MockClock, header: str, value: str
) -> None:
    async with create_app(fast_settings()).test_app() as test_app:
        client = test_app.test_client()
        reply = await chat(client, None, {header: value})
    assert reply.status == 400
    error = openai_error(reply)
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        header,
        "invalid_header",
    )
    assert header in error["message"]
    assert reply.elapsed == 0


# --- 6. profiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_builds_valid_settings(name: str) -> None:
    settings = Settings.load(cli={"profile": name}, env={})
    assert settings.latency.profile == name
    for knob, value in PROFILES[name].items():
        assert settings.value(knob) == parse_value(KNOBS[knob].type, value), knob
    assert Settings().replace(profile=name) == settings
    assert Settings.from_json(settings.to_json()) == settings  # what the workers receive


def test_explicit_knobs_override_the_profile(tmp_path: Path) -> None:
    preset = PROFILES["vllm-8b-h100"]
    settings = Settings.load(cli={"profile": "vllm-8b-h100", "itl_ms": "9"}, env={})
    assert settings.latency.itl_ms == 9.0
    assert settings.latency.ttft_ms == preset["ttft_ms"]
    assert settings.capacity.max_concurrency == preset["max_concurrency"]
    # From the environment, under a knob from the command line, the environment or a file.
    from_env = Settings.load(cli={"itl_ms": "9"}, env={"TRIO_MOCK_PROFILE": "vllm-8b-h100"})
    assert (from_env.latency.profile, from_env.latency.itl_ms) == ("vllm-8b-h100", 9.0)
    assert from_env.latency.itl_load_factor == preset["itl_load_factor"]
    env_knob = Settings.load(cli={"profile": "overloaded"}, env={"TRIO_MOCK_MAX_QUEUE": "3"})
    assert (env_knob.capacity.max_queue, env_knob.capacity.max_concurrency) == (3, 8)
    config = tmp_path / "mock.toml"
    config.write_text("[capacity]\nmax_concurrency = 2\n", encoding="utf-8")
    from_file = Settings.load(env={"TRIO_MOCK_PROFILE": "overloaded"}, config=config)
    assert (from_file.capacity.max_concurrency, from_file.capacity.max_queue) == (2, 16)


def test_no_profile_changes_nothing() -> None:
    assert Settings.load(cli={"profile": "none"}, env={}) == Settings()


@pytest.mark.parametrize("where", ["cli", "env"])
def test_unknown_profile_names_the_knob(where: str) -> None:
    cli, env = (
        ({"profile": "h100-turbo"}, {})
        if where == "cli"
        else ({}, {"TRIO_MOCK_PROFILE": "h100-turbo"})
    )
    with pytest.raises(SettingsError, match="--profile") as caught:
        Settings.load(cli=cli, env=env)
    message = str(caught.value)
    assert "TRIO_MOCK_PROFILE" in message
    assert "'h100-turbo'" in message
    assert all(name in message for name in PROFILES)
