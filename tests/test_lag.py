"""Schedule lag (``_lag``): how late the server's writes went out, and the warning.

What this file proves:

- Under MockClock, a loop blocked for a known time while a paced stream is due (a task
  that jumps the clock, as a synchronous busy section would) makes the overdue events
  late by exactly what the schedule says: the ``trio_mock_schedule_lag_seconds``
  histogram counts one observation per event in the right buckets, and the journal entry
  holds the request's lag max and p99. A body that should have gone out during the block
  is as late as its last token. A request on time shows zero lag and no warning.
- The warning fires when the server is behind (p99 above the larger of 10 ms and the
  configured ITL), names the mock and ``--workers``, and is rate-limited: none again
  within ``QUIET_S``, one after; a lag under the threshold, or a few late events, never warn.
- The window's p99 (bucket upper bounds, at most 9 % high) and its ring: old seconds are
  forgotten and the memory is fixed.
- Through a real server, ``/metrics`` and ``/_mock/stats`` expose the histogram after a
  streamed request, one observation per event the journal lists.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest
import trio
import trio.testing

from asgi import call
from conftest import fast_settings
from exposition import parse, value
from trio_mock import create_app
from trio_mock._observe._journal import Record
from trio_mock._observe._lag import (
    MIN_EVENTS,
    QUIET_S,
    WINDOW_BOUNDS,
    LagMonitor,
    LagWindow,
    nearest_rank,
    stream_lags,
)

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from conftest import StartServer

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
LAG = "trio_mock_schedule_lag_seconds"
TTFT_MS, ITL_MS = 100.0, 10.0


def paced_app(tokens: int) -> QuartTrio:
    return create_app(
        fast_settings(
            ttft_distribution="constant",
            itl_distribution="constant",
            ttft_ms=TTFT_MS,
            itl_ms=ITL_MS,
            output_tokens_distribution="fixed",
            output_tokens_mean=tokens,
        )
    )


def chat(stream: bool = True) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "Hi."}], "stream": stream}


async def blocked_call(
    clock: trio.testing.MockClock, app: QuartTrio, body: dict[str, Any], at: float, block: float
) -> None:
    """``body`` to the chat endpoint while the loop is held for ``block`` seconds,
    ``at`` seconds after arrival: the clock jumps, and everything due meanwhile is late."""
    start = trio.current_time()

    async def block_loop() -> None:
        await trio.sleep_until(start + at)
        clock.jump(block)  # as a synchronous busy section: no task ran meanwhile

    async with trio.open_nursery() as nursery:
        nursery.start_soon(block_loop)
        answer = await call(app, CHAT if "messages" in body else COMPLETIONS, body)
    assert answer.status == 200


async def entries(app: QuartTrio) -> list[dict[str, Any]]:
    answer = await call(app, "/_mock/requests", method="GET")
    data: list[dict[str, Any]] = answer.json()["data"]
    return data


def lag_buckets(app: QuartTrio) -> dict[str, float]:
    samples = parse(app.live.metrics.exposition().decode())  # type: ignore[attr-defined]
    return {
        dict(labels)["le"]: v for (name, labels), v in samples.items() if name == LAG + "_bucket"
    }


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "trio_mock.lag" and r.levelno == logging.WARNING and "behind" in r.getMessage()
    ]


# --- the real app, its loop blocked ---------------------------------------------------------------


async def test_a_blocked_loop_makes_a_streams_events_late_by_the_block(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """200 tokens due at 100, 110, ... ms; at 105 ms the loop is held 48 ms. The tokens
    due at 110..150 go out at 153 (43, 33, 23, 13 and 3 ms late), the rest on time."""
    app = paced_app(200)
    with caplog.at_level(logging.WARNING, logger="trio_mock"):
        await blocked_call(autojump_clock, app, chat(), at=0.105, block=0.048)
    (entry,) = await entries(app)
    late = {
        round(e["sent_ms"] - e["due_ms"], 3) for e in entry["events"] if e["sent_ms"] > e["due_ms"]
    }
    assert late == {43.0, 33.0, 23.0, 13.0, 3.0}
    assert len(entry["events"]) == 201  # 200 tokens and the closing frame
    # Nearest rank of 201 events: the 199th smallest, i.e. the third largest.
    assert entry["timing"]["lag_max_ms"] == pytest.approx(43.0)
    assert entry["timing"]["lag_p99_ms"] == pytest.approx(23.0)
    cumulative = lag_buckets(app)
    assert [cumulative[le] for le in ("0.0005", "0.002", "0.005", "0.01", "0.02", "0.05")] == [
        196, 196, 197, 197, 198, 201,
    ]  # fmt: skip
    assert cumulative["+Inf"] == 201
    samples = parse(app.live.metrics.exposition().decode())  # type: ignore[attr-defined]
    assert value(samples, LAG + "_sum", endpoint="/chat/completions") == pytest.approx(0.115)
    (warning,) = warnings(caplog)
    assert "the mock, not the client, is late" in warning.lower()
    assert "--workers" in warning
    # The window's p99: 23 ms, read as its bucket's upper bound (at most 9 % more).
    assert "is 23.5 ms (201 events; warns above 10.0 ms)" in warning


async def test_a_body_due_during_the_block_is_as_late_as_its_last_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Five tokens, the last due at 140 ms; the loop is held from 135 to 185 ms."""
    app = paced_app(5)
    await blocked_call(autojump_clock, app, chat(stream=False), at=0.135, block=0.05)
    (entry,) = await entries(app)
    timing = entry["timing"]
    assert timing["lag_max_ms"] == timing["lag_p99_ms"] == pytest.approx(45.0)
    cumulative = lag_buckets(app)
    assert (cumulative["0.02"], cumulative["0.05"], cumulative["+Inf"]) == (0, 1, 1)


async def test_on_time_streams_and_bodies_show_no_lag_and_no_warning(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    app = paced_app(200)
    with caplog.at_level(logging.WARNING, logger="trio_mock"):
        assert (await call(app, CHAT, chat())).status == 200
        assert (await call(app, CHAT, chat(stream=False))).status == 200
    for entry in await entries(app):
        assert (entry["timing"]["lag_max_ms"], entry["timing"]["lag_p99_ms"]) == (0.0, 0.0)
    cumulative = lag_buckets(app)
    assert cumulative["0.0005"] == cumulative["+Inf"] == 202  # 201 stream events, 1 body
    assert warnings(caplog) == []


async def test_the_warning_is_rate_limited(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Three late streams: the first warns, the second (within QUIET_S) does not, the
    third (QUIET_S later) warns again."""
    app = paced_app(200)
    with caplog.at_level(logging.WARNING, logger="trio_mock"):
        await blocked_call(autojump_clock, app, chat(), at=0.105, block=0.048)
        await blocked_call(autojump_clock, app, chat(), at=0.105, block=0.048)
        assert len(warnings(caplog)) == 1
        await trio.sleep(QUIET_S)
        await blocked_call(autojump_clock, app, chat(), at=0.105, block=0.048)
    assert len(warnings(caplog)) == 2


async def test_requests_without_writes_have_no_lag(autojump_clock: trio.testing.MockClock) -> None:
    app = paced_app(5)
    assert (await call(app, CHAT, {"model": "m"})).status == 400
    (entry,) = await entries(app)
    assert (entry["timing"]["lag_max_ms"], entry["timing"]["lag_p99_ms"]) == (None, None)
    assert lag_buckets(app) == {}  # no observation: no child yet


# --- the monitor and its window, alone ------------------------------------------------------------


def stream_record(due: list[float], sent: list[float]) -> Record:
    record = Record(0.0, CHAT, [])
    record.stream, record.status = True, 200
    for d, s in zip(due, sent, strict=True):
        record.wrote((d,), s)
    return record


def late_record(lag_s: float, events: int = 100) -> Record:
    """``events`` writes, every one ``lag_s`` late."""
    due = [0.01 * i for i in range(events)]
    return stream_record(due, [d + lag_s for d in due])


def test_nearest_rank() -> None:
    assert [nearest_rank(n) for n in (1, 2, 100, 101, 201)] == [0, 1, 98, 99, 198]


def test_stream_lags_are_sorted_never_negative_and_leave_the_record_resizable() -> None:
    record = stream_record([1.0, 2.0, 3.0], [1.5, 1.9, 3.25])
    assert stream_lags(record.due, record.sent).tolist() == pytest.approx([0.0, 0.25, 0.5])
    record.trim(keep=0)  # the journal trims next: the arrays must not still be exported


def test_window_p99_is_the_upper_bound_of_its_bucket() -> None:
    window = LagWindow()
    window.add(np.zeros(98), 0.5)
    window.add(np.array([0.1, 0.1]), 0.5)
    count, p99 = window.summary(0.9)
    assert count == 100
    assert 0.1 <= p99 < 0.1 * 2 ** (1 / 8)
    window.add(np.zeros(99), 0.9)
    window.add(0.0, 0.9)  # a body's single float
    assert window.summary(0.9) == (200, WINDOW_BOUNDS[0])  # now the 198th of 200 is 0


def test_window_forgets_old_seconds_in_fixed_memory() -> None:
    window = LagWindow(slot_s=1.0, slots=5)
    shape = window.counts.shape
    for second in range(100):
        window.add(np.full(10, 1.0), second + 0.5)
    assert window.summary(99.5)[0] == 50  # the last five seconds only
    assert window.summary(200.0) == (0, 0.0)
    assert window.counts.shape == shape
    window.add(1e6, 200.0)  # past the last bound: counted, read as the last bound
    assert window.summary(200.0) == (1, WINDOW_BOUNDS[-1])


@pytest.mark.parametrize(
    ("itl_s", "lag_s", "warns"),
    [
        (0.005, 0.0095, False),  # under the 10 ms floor
        (0.005, 0.0120, True),
        (0.100, 0.0900, False),  # under a 100 ms ITL
        (0.100, 0.1200, True),
    ],
)
def test_threshold_is_the_larger_of_10_ms_and_the_itl(
    itl_s: float, lag_s: float, warns: bool, caplog: pytest.LogCaptureFixture
) -> None:
    monitor = LagMonitor(itl_s)
    with caplog.at_level(logging.WARNING, logger="trio_mock"):
        monitor.measure(late_record(lag_s), now=1.5)
    assert bool(warnings(caplog)) is warns


def test_a_few_late_events_are_no_trend(caplog: pytest.LogCaptureFixture) -> None:
    monitor = LagMonitor(0.01)
    with caplog.at_level(logging.WARNING, logger="trio_mock"):
        monitor.measure(late_record(0.5, events=MIN_EVENTS - 1), now=1.5)
        assert warnings(caplog) == []
        monitor.measure(late_record(0.5, events=1), now=2.6)  # the window now holds enough
    assert len(warnings(caplog)) == 1


def test_warnings_wait_for_quiet_and_the_window_to_move_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = LagMonitor(0.01)
    with caplog.at_level(logging.WARNING, logger="trio_mock"):
        for now in np.arange(1.0, 1.0 + QUIET_S, 0.5):  # behind all along: one warning
            monitor.measure(late_record(0.05), now=float(now))
        assert len(warnings(caplog)) == 1
        monitor.measure(late_record(0.0), now=1.0 + QUIET_S + 10)  # caught up: the old
        assert len(warnings(caplog)) == 1  # seconds are gone, nothing to warn of
        monitor.measure(late_record(0.05), now=1.0 + QUIET_S + 12)
    assert len(warnings(caplog)) == 2


def test_a_cut_or_refused_body_has_no_lag() -> None:
    monitor = LagMonitor()
    record = Record(0.0, COMPLETIONS, [])
    record.due.append(1.0)
    record.status, record.headers_sent, record.cut = 200, 1.5, "fault"
    assert monitor.measure(record, now=2.0) is None
    assert record.lag_max_s is None
    record.cut = None
    assert monitor.measure(record, now=2.0) == pytest.approx(0.5)


# --- through a real server --------------------------------------------------------------------------


async def test_metrics_expose_the_histogram_after_a_streamed_request(
    start_server: StartServer,
) -> None:
    url = await start_server(ttft_ms=20, itl_ms=2, output_tokens_mean=20)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.post(CHAT, json=chat())
        assert response.status_code == 200
        (entry,) = (await client.get("/_mock/requests")).json()["data"]
        metrics = await client.get("/metrics")
        stats = (await client.get("/_mock/stats")).json()
    events = len(entry["events"])
    assert events > 1
    assert entry["timing"]["lag_max_ms"] >= entry["timing"]["lag_p99_ms"] >= 0
    assert f"# TYPE {LAG} histogram" in metrics.text
    samples = parse(metrics.text)
    assert value(samples, LAG + "_count", endpoint="/chat/completions") == events
    assert value(samples, LAG + "_bucket", endpoint="/chat/completions", le="+Inf") == events
    assert stats["histograms"][LAG]["+Inf"] == events
