"""Memory that outlives its requests (issue 15, item 9): what a burst of abandoned streams or
one very long stream leaves behind is bounded, whatever the clients did.

What this file proves (each check fails on the code before the fix; none times anything):

- A long reply's plan holds no Python object per token: its event ends and due times are
  compact, not 100k ints and floats that outlive the stream in partly used pages.
- A 20k-token zero-ITL stream goes out in writes of about ``WRITE_BYTES``, not in one
  5 MB write built from 20k frames at once; its journal entry keeps the first
  ``EVENTS_KEPT`` events and the last two and counts the rest, while the timing block and
  the metrics still count every token.
- The metrics batch holds token times as doubles, not a float object per token, and is
  summed into the metrics before it holds ``BATCH_TOKENS`` of them.
- Over loopback, streams whose clients hang up leave nothing behind once they are over:
  no cancel scope with a far deadline (trio kept each stream's ``max_request_s`` backstop
  in its deadline heap for ten minutes), no watchdog entry, no metrics batch (housekeeping
  sums it), nothing running in the load model.
- The watchdog cancels a scope once its deadline has come (and without housekeeping the
  scope has trio's own deadline); the trimmer trims once a burst is over, not during it.
"""

from __future__ import annotations

import gc
import math
import tracemalloc
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pytest
import trio
import trio.testing

from asgi import call
from conftest import fast_settings
from exposition import parse, value
from trio_mock import create_app
from trio_mock._app._server import serve_app
from trio_mock._config._settings import CapacitySettings, LatencySettings
from trio_mock._observe._journal import EVENTS_KEPT, EVENTS_TAIL
from trio_mock._observe._metrics import BATCH_TOKENS
from trio_mock._serve._housekeeping import TRIM_EVERY_S, Trimmer, Watchdog
from trio_mock._serve._load import Load
from trio_mock._serve._pacing import WRITE_BYTES
from trio_mock._sim._plan import Limits, plan_choice
from trio_mock._sim._text import RepeatedText

if TYPE_CHECKING:
    from trio_mock._app._quart_app import TrioMockApp

CHAT = "/v1/chat/completions"
LONG = 20_000  # tokens: long enough to tell O(1) from O(tokens), quick in memory
BODY = {"model": "m", "messages": [{"role": "user", "content": "Tell me a story."}]}


def stream_body(**extra: Any) -> dict[str, Any]:
    return BODY | {"stream": True} | extra


# --- one long reply ---------------------------------------------------------------------


def test_long_plan_holds_no_object_per_token() -> None:
    source = RepeatedText([" once", " upon", " a", " time"])
    latency = LatencySettings(ttft_ms=10, itl_ms=1, itl_jitter_ms=0.2)  # drawn gaps
    limits = Limits(max_tokens=100_000, ignore_eos=True)
    warm_up = Limits(max_tokens=10, ignore_eos=True)  # lazy imports are not the plan's
    plan_choice(0, source, warm_up, latency, (1, 4), np.random.default_rng(7))
    for tokens_per_event in [(1, 1), (1, 4)]:
        gc.collect()
        tracemalloc.start()
        try:
            rng = np.random.default_rng(7)
            plan = plan_choice(0, source, limits, latency, tokens_per_event, rng)
            blocks = sum(stat.count for stat in tracemalloc.take_snapshot().statistics("filename"))
        finally:
            tracemalloc.stop()
        assert plan.tokens == 100_000
        assert blocks < 200, f"{blocks} memory blocks kept by a 100k-token plan"
        assert plan.event_ends[-1] == 100_000
        assert len(plan.offsets) == len(plan.event_ends)


async def test_long_stream_writes_and_journal_entry_are_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings())
    headers = {"x-mock-output-tokens": str(LONG)}
    answer = await call(app, CHAT, stream_body(), headers=headers)
    assert answer.status == 200
    frames = answer.body.count(b"data: ")
    assert frames == LONG + 2  # the role chunk, every token's chunk, then [DONE]
    biggest = max(len(piece) for _, piece in answer.pieces)
    assert len(answer.pieces) > 1
    assert biggest < WRITE_BYTES + 1024, f"one write of {biggest} bytes"

    (record,) = app.live.journal.records
    assert len(record.due) == len(record.sent) == EVENTS_KEPT + EVENTS_TAIL
    listing = (await call(app, "/_mock/requests", method="GET")).json()
    (entry,) = listing["data"]
    events = entry["events"]
    assert len(events) == EVENTS_KEPT + EVENTS_TAIL
    assert entry["events_omitted"] == LONG + 1 - len(events)  # LONG tokens, then [DONE]
    assert [e["kind"] for e in events[-2:]] == ["token", "frame"]
    timing = entry["timing"]
    assert timing["last_token_sent_ms"] == events[-2]["sent_ms"]
    assert timing["last_token_due_ms"] == events[-2]["due_ms"]

    metrics = parse((await call(app, "/metrics", method="GET")).body.decode())
    assert value(metrics, "trio_mock_generation_tokens_total") == LONG
    assert value(metrics, "trio_mock_inter_token_latency_seconds_count") == LONG - 1


async def test_metrics_batch_holds_doubles_and_is_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings())
    metrics = app.live.metrics
    assert metrics is not None
    headers = {"x-mock-output-tokens": str(LONG)}
    await call(app, CHAT, stream_body(), headers=headers)
    batch = metrics.batch
    assert metrics.pending == 1  # kept for the next flush
    held = gc.get_referents(*batch.times.values())
    assert not [o for o in held if type(o) is float], "a float object per token"
    for _ in range(BATCH_TOKENS // LONG + 1):
        await call(app, CHAT, stream_body(), headers=headers)
        assert metrics.batch.tokens < BATCH_TOKENS


# --- a burst of abandoned streams, over loopback ----------------------------------------


async def leave_after_first_token(port: int, payload: bytes) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(payload)
        seen = b""
        while b'"content":"' not in seen:
            chunk = await stream.receive_some(65536)
            assert chunk, "the server closed the stream before its first token"
            seen += chunk


def far_scopes(horizon_s: float = 60.0) -> list[trio.CancelScope]:
    """Cancel scopes still alive whose deadline is more than ``horizon_s`` away."""
    gc.collect()
    far = trio.current_time() + horizon_s
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, trio.CancelScope) and not math.isinf(o.deadline) and o.deadline > far
    ]


async def wait_until_over(app: TrioMockApp, requests: int) -> None:
    """Return once ``requests`` are journaled and nothing runs."""
    live = app.live

    def over() -> bool:
        return len(live.journal.records) >= requests and not any(live.load.snapshot().values())

    # Polls: no event of the app's tells when its last request is over.
    with trio.fail_after(20):
        while not over():  # ruff: ignore[async-busy-wait]
            await trio.sleep(0.05)


@pytest.mark.slow
async def test_abandoned_streams_leave_nothing_behind(nursery: trio.Nursery) -> None:
    streams = 100
    settings = fast_settings(ttft_ms=5, itl_ms=10, max_request_s=600)
    app = create_app(settings)
    binds: list[str] = await nursery.start(partial(serve_app, app, settings))
    port = int(binds[0].rsplit(":", 1)[1])
    data = orjson.dumps(stream_body(max_tokens=1000, ignore_eos=True))
    payload = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(data), data)
    )
    before = len(far_scopes())
    async with trio.open_nursery() as burst:
        for _ in range(streams):
            burst.start_soon(leave_after_first_token, port, payload)
    await wait_until_over(app, streams)

    assert all(r.disconnected for r in app.live.journal.records)
    assert len(far_scopes()) - before < streams // 10, "stream backstops left in trio's heap"
    assert not app.live.watchdog.deadlines
    metrics = app.live.metrics
    assert metrics is not None
    with trio.move_on_after(5):  # housekeeping sums the batch four times a second
        while metrics.pending:  # ruff: ignore[async-busy-wait]
            await trio.sleep(0.05)
    assert not metrics.pending, "the burst's figures wait in the batch for the next request"


# --- the watchdog and the trimmer -------------------------------------------------------


async def test_watchdog_cancels_at_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    watchdog = Watchdog()
    watchdog.running = True
    start = trio.current_time()
    done: list[bool] = []

    async def guarded() -> None:
        with watchdog.move_on_at(start + 1) as scope:
            await trio.sleep(math.inf)
        done.append(scope.cancelled_caught)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(guarded)
        await trio.testing.wait_all_tasks_blocked()
        assert list(watchdog.deadlines.values()) == [start + 1]
        watchdog.expire(start + 0.5)
        await trio.testing.wait_all_tasks_blocked()
        assert not done
        watchdog.expire(start + 1)
    assert done == [True]
    assert not watchdog.deadlines


async def test_watchdog_without_housekeeping_uses_trio_deadlines(
    autojump_clock: trio.testing.MockClock,
) -> None:
    watchdog = Watchdog()  # nothing calls expire
    with watchdog.move_on_at(trio.current_time() + 1) as scope:
        await trio.sleep(5)
    assert scope.cancelled_caught
    assert not watchdog.deadlines


async def test_trimmer_waits_for_the_burst_to_end() -> None:
    load = Load(CapacitySettings(), LatencySettings())
    trimmer = Trimmer(load)
    now = 1000.0
    assert not trimmer.due(now)  # nothing happened yet
    load.decoding = 100  # a burst
    assert not trimmer.due(now)
    load.decoding, load.finished = 60, 40  # going on
    assert not trimmer.due(now)
    load.decoding, load.finished = 10, 90  # mostly over
    assert trimmer.due(now)
    await trimmer.trim(now)
    load.decoding, load.finished = 0, 100
    assert not trimmer.due(now + TRIM_EVERY_S / 2)  # trimmed a moment ago
    assert trimmer.due(now + TRIM_EVERY_S)
