"""Runtime configuration (issue 6): ``/_mock/config``, AIPerf's ``/configure``, the admin key.

What this file proves:

- ``GET /_mock/config`` shows the current settings by group, secrets masked (``api_keys`` as
  "N set", ``admin_key`` as "set"), and the start-up-only knobs.
- ``PATCH``/``POST /_mock/config``, flat or grouped, change what the next request gets:
  latency (``x-mock-ttft-ms``/``x-mock-itl-ms``, frame times and the journal under
  MockClock), text, length, faults, rate limits, capacity (queueing starts; raising it admits
  the queue at once), the model list, API keys, the log level and the corpus. ``changed``
  names exactly the knobs whose values changed; a no-op gives ``[]``.
- A request that arrived before a change keeps its schedule, text and time limit (running or
  queued); the next one uses the new settings. Rate-limit buckets and seeded fault draws
  carry on across changes of other knobs.
- Every bad value is refused with the start-up error's own text, as an OpenAI-shaped 400
  (``param`` = knob, ``code`` = ``invalid_setting``); unknown names, non-object bodies and
  start-up-only knobs are refused too, and a refused change changes nothing at all.
- ``POST /configure`` takes AIPerf's body (``ttft``/``itl`` aliases; ``tokenizer_models``
  pre-loads, and a missing one is refused naming where it was looked for, changing nothing:
  tests/test_hf_tokenizers.py loads real ones).
- With ``--admin-key`` the control routes need it (Bearer, ``api-key`` or ``x-admin-key``;
  an API key does not do), while ``/_mock/ui``, ``/health`` and ``/metrics`` stay open;
  without it they need an API key when ``--api-keys`` is set. Over loopback too.

Regressions of bugs this file found (fixed in add0fca): concurrent changes lost one;
PATCHing GET's masked view back set ``api_keys`` to ``["0 set"]``; a runtime ``log_level``
missed Hypercorn's log.

Most tests call the app's ASGI entry point in memory (tests/asgi.py's ``call``), so
under MockClock the times are exact.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import orjson
import pytest
import trio
import trio.testing

import trio_mock._app._runtime
from asgi import Answer, Headers, call, chat_content, token_times
from conftest import check_error, fast_settings
from helpers import on_schedule
from trio_mock import Settings, create_app
from trio_mock._config._knobs import SettingsError
from trio_mock._config._settings import KNOBS
from trio_mock._openai._model import MockModel

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from conftest import StartServer

CHAT = "/v1/chat/completions"
CONFIG = "/_mock/config"
ASK: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Say hello."}]}
STREAM: dict[str, Any] = ASK | {"stream": True}
# Small corpus, replies of exactly 5 tokens.
BASE: dict[str, Any] = {"corpus_articles": 8, "output_tokens_mean": 5, "output_tokens_stddev": 0}
# MockClock schedule of the paced app: first token at 100 ms, then one every 10 ms.
PACED: dict[str, Any] = {"ttft_ms": 100, "itl_ms": 10}
GROUPS = {
    "cassettes",
    "server",
    "models",
    "latency",
    "capacity",
    "output",
    "faults",
    "rate_limits",
    "observability",
}
STARTUP_ONLY_NAMED = {"port", "workers", "tokenizer", "admin_key", "metrics", "journal_file"}
ADMIN = "adm-secret-key"
API_KEY = "sk-api-key-one"
BASE_FIXED_TEXT = Settings().output.fixed_text


def app_with(**leaves: Any) -> QuartTrio:
    return create_app(fast_settings(**(BASE | leaves)))


@pytest.fixture(autouse=True)
def keep_log_level() -> Iterator[None]:
    """A runtime change sets the loggers' levels; other tests get theirs back."""
    loggers = [logging.getLogger(name) for name in ("trio_mock", "hypercorn.error")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def reply_text(answer: Answer) -> str:
    """The chat reply's text, streamed or not."""
    if answer.headers["content-type"].startswith("text/event-stream"):
        return chat_content(answer.events())
    content: str = answer.json()["choices"][0]["message"]["content"]
    return content


async def get_config(app: QuartTrio, headers: Headers = ()) -> dict[str, Any]:
    answer = await call(app, CONFIG, method="GET", headers=headers)
    assert answer.status == 200, answer.body
    view: dict[str, Any] = answer.json()
    return view


async def change(
    app: QuartTrio, body: Any, method: str = "PATCH", headers: Headers = ()
) -> dict[str, Any]:
    """A config change that must succeed; its answer."""
    answer = await call(app, CONFIG, body, method=method, headers=headers)
    assert answer.status == 200, answer.body
    view: dict[str, Any] = answer.json()
    assert set(view) == {"settings", "start_up_only", "changed"}
    return view


def bad_change(answer: Answer, param: str | None) -> dict[str, Any]:
    """A refused change: OpenAI's 400 shape, code ``invalid_setting``; its error object."""
    error = check_error(answer.response(), 400, param)
    assert error["code"] == "invalid_setting", error
    return error


async def newest_entry(app: QuartTrio) -> dict[str, Any]:
    answer = await call(app, "/_mock/requests", method="GET", query="limit=1")
    assert answer.status == 200
    (entry,) = answer.json()["data"]
    return cast("dict[str, Any]", entry)


# --- 1. GET /_mock/config -----------------------------------------------------------------


async def test_get_shows_current_settings_by_group_and_the_start_up_only_knobs() -> None:
    settings = fast_settings(**BASE, ttft_ms=7, models=["alpha", "beta"], rate_limit_rpm=30)
    view = await get_config(create_app(settings))
    assert set(view) == {"settings", "start_up_only"}  # no "changed" on a GET
    current = view["settings"]
    assert set(current) == GROUPS
    assert current["latency"]["ttft_ms"] == 7.0
    assert current["models"]["models"] == ["alpha", "beta"]
    assert current["rate_limits"]["rate_limit_rpm"] == 30
    assert current["output"]["corpus_articles"] == 8
    assert current == orjson.loads(orjson.dumps(settings.public()))
    assert view["start_up_only"] == [k.name for k in KNOBS.values() if not k.live]
    assert set(view["start_up_only"]) >= STARTUP_ONLY_NAMED
    assert "ttft_ms" not in view["start_up_only"]


async def test_get_masks_the_secrets() -> None:
    app = app_with(api_keys=[API_KEY, "sk-api-key-two"], admin_key=ADMIN)
    admin = ((b"x-admin-key", ADMIN.encode()),)
    answer = await call(app, CONFIG, method="GET", headers=admin)
    assert answer.status == 200
    current = answer.json()["settings"]
    assert current["server"]["api_keys"] == "2 set"
    assert current["observability"]["admin_key"] == "set"
    for secret in (API_KEY, "sk-api-key-two", ADMIN):
        assert secret.encode() not in answer.body
    changed = await call(
        app, CONFIG, {"api_keys": "sk-new-key-a,sk-new-key-b,x"}, method="PATCH", headers=admin
    )
    assert changed.status == 200
    assert changed.json()["settings"]["server"]["api_keys"] == "3 set"
    assert b"sk-new-key-a" not in changed.body


async def test_get_without_secrets_shows_none_set() -> None:
    current = (await get_config(app_with()))["settings"]
    assert current["server"]["api_keys"] == "0 set"
    assert current["observability"]["admin_key"] is None


# --- 2. changing knobs ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["PATCH", "POST"])
@pytest.mark.parametrize(
    "body",
    [{"ttft_ms": 30, "itl_ms": 2}, {"latency": {"ttft_ms": 30, "itl_ms": 2}}],
    ids=["flat", "grouped"],
)
async def test_latency_change_shows_in_headers_frames_and_journal(
    autojump_clock: trio.testing.MockClock, method: str, body: dict[str, Any]
) -> None:
    app = app_with(**PACED)
    before = await call(app, CHAT, STREAM)
    assert (before.headers["x-mock-ttft-ms"], before.headers["x-mock-itl-ms"]) == (
        "100.000",
        "10.000",
    )
    assert token_times(before.events()) == pytest.approx(on_schedule(5, 0.1, 0.01), abs=1e-9)

    view = await change(app, body, method)
    assert view["changed"] == ["ttft_ms", "itl_ms"]
    assert (view["settings"]["latency"]["ttft_ms"], view["settings"]["latency"]["itl_ms"]) == (
        30.0,
        2.0,
    )
    after = await call(app, CHAT, STREAM)
    assert (after.headers["x-mock-ttft-ms"], after.headers["x-mock-itl-ms"]) == ("30.000", "2.000")
    assert token_times(after.events()) == pytest.approx(on_schedule(5, 0.03, 0.002), abs=1e-9)
    entry = await newest_entry(app)
    assert entry["plan"]["ttft_ms"] == pytest.approx(30.0)
    assert entry["plan"]["itl_ms"] == pytest.approx(2.0)
    due = [e["due_ms"] for e in entry["events"] if e["kind"] == "token"]
    assert due == pytest.approx([30.0, 32.0, 34.0, 36.0, 38.0], abs=1e-6)
    assert (await get_config(app))["settings"]["latency"]["ttft_ms"] == 30.0


async def test_changed_lists_exactly_the_changed_knobs() -> None:
    app = app_with(fixed_text="Same text.")
    body = {
        "ttft_ms": 0,  # its current value
        "itl_ms": 3,
        "output": {"fixed_text": "Same text.", "output_mode": "echo"},
        "rate_limits": {"rate_limit_scope": "key"},  # its current value
    }
    assert (await change(app, body))["changed"] == ["itl_ms", "output_mode"]
    assert (await change(app, body))["changed"] == []  # the same again: a no-op
    assert (await change(app, {}))["changed"] == []
    assert (await change(app, {}, "POST"))["changed"] == []


async def test_output_mode_and_fixed_text_change_the_next_reply() -> None:
    app = app_with()
    corpus_text = reply_text(await call(app, CHAT, ASK))
    view = await change(app, {"output_mode": "fixed", "fixed_text": "Configured at runtime."})
    assert view["changed"] == ["output_mode", "fixed_text"]
    assert reply_text(await call(app, CHAT, ASK)) == "Configured at runtime."
    assert reply_text(await call(app, CHAT, STREAM)) == "Configured at runtime."
    await change(app, {"output": {"fixed_text": "Second text."}})
    assert reply_text(await call(app, CHAT, ASK)) == "Second text."
    await change(app, {"output_mode": "echo"})
    assert reply_text(await call(app, CHAT, ASK)) == "Say hello."
    await change(app, {"output_mode": "corpus"})
    back = reply_text(await call(app, CHAT, ASK))
    assert back not in {"Second text.", "Say hello."}
    assert corpus_text
    assert back


@pytest.mark.parametrize(
    ("body", "tokens"),
    [
        ({"output_tokens_mean": 7}, 7),
        ({"output": {"output_tokens_mean": 3}}, 3),
        ({"output_tokens_mean": 50, "output_tokens_max": 4}, 4),
        ({"output_tokens_distribution": "fixed", "output_tokens_mean": 9}, 9),
    ],
)
async def test_output_length_follows_the_runtime_knobs(body: dict[str, Any], tokens: int) -> None:
    app = app_with()
    first = await call(app, CHAT, ASK)
    assert first.json()["usage"]["completion_tokens"] == 5
    await change(app, body)
    answer = await call(app, CHAT, ASK)
    assert answer.json()["usage"]["completion_tokens"] == tokens
    assert answer.headers["x-mock-output-tokens"] == str(tokens)


async def test_failure_percent_and_mix_fail_the_next_request() -> None:
    app = app_with()
    assert (await call(app, CHAT, ASK)).status == 200
    view = await change(app, {"faults": {"failure_percent": 100, "failure_mix": ["503"]}})
    assert view["changed"] == ["failure_percent", "failure_mix"]
    for _ in range(3):
        failed = await call(app, CHAT, ASK)
        assert failed.status == 503
        assert failed.headers["x-mock-fault"] == "503"
        assert set(failed.json()) == {"error"}
    await change(app, {"failure_percent": 0})
    spared = await call(app, CHAT, ASK)
    assert spared.status == 200
    assert "x-mock-fault" not in spared.headers


async def test_rate_limit_rpm_applies_from_the_next_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = app_with()
    free = await call(app, CHAT, ASK)
    assert not any(name.startswith("x-ratelimit-") for name in free.headers)
    assert (await change(app, {"rate_limit_rpm": 2}))["changed"] == ["rate_limit_rpm"]
    first = await call(app, CHAT, ASK)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert (await call(app, CHAT, ASK)).status == 200
    refused = await call(app, CHAT, ASK)
    assert refused.status == 429
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    await change(app, {"rate_limits": {"rate_limit_rpm": None}})
    again = await call(app, CHAT, ASK)
    assert again.status == 200
    assert "x-ratelimit-limit-requests" not in again.headers


async def stream_into(
    out: dict[str, Answer], app: QuartTrio, name: str, delay: float = 0.0
) -> None:
    """A chat stream arriving ``delay`` from now; its answer goes to ``out[name]``."""
    await trio.sleep(delay)
    out[name] = await call(app, CHAT, STREAM)


async def two_streams(app: QuartTrio, gap_s: float = 0.001) -> tuple[Answer, Answer]:
    """Two streams, the second arriving ``gap_s`` after the first."""
    out: dict[str, Answer] = {}

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream_into, out, app, "a", 0.0)
        nursery.start_soon(stream_into, out, app, "b", gap_s)
    return out["a"], out["b"]


async def test_max_concurrency_change_starts_queueing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Each stream runs 140 ms from admission: TTFT 100 ms, then four 10 ms gaps.
    app = app_with(**PACED)
    a, b = await two_streams(app)
    assert b.headers["x-mock-ttft-ms"] == "100.000"  # no limit: both run at once
    assert (await change(app, {"capacity": {"max_concurrency": 1}}))["changed"] == [
        "max_concurrency"
    ]
    a, b = await two_streams(app)
    assert a.headers["x-mock-ttft-ms"] == "100.000"
    # b waits for a's slot (0.139 s after it arrived), then its own 100 ms.
    assert b.headers["x-mock-ttft-ms"] == "239.000"
    assert token_times(b.events()) == pytest.approx(on_schedule(5, 0.239, 0.01), abs=1e-9)
    entry = await newest_entry(app)
    assert entry["timing"]["admitted_ms"] == pytest.approx(139.0, abs=1e-6)


async def test_raising_max_concurrency_admits_the_queue_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = app_with(**PACED, max_concurrency=1)
    out: dict[str, Answer] = {}

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream_into, out, app, "a", 0.0)
        nursery.start_soon(stream_into, out, app, "b", 0.001)  # queued behind a
        await trio.sleep(0.02)
        await change(app, {"max_concurrency": None})
    # b was admitted at the change (0.019 s after it arrived), not when a finished.
    assert out["b"].headers["x-mock-ttft-ms"] == "119.000"
    assert token_times(out["b"].events()) == pytest.approx(on_schedule(5, 0.119, 0.01), abs=1e-9)


async def test_models_list_and_any_model() -> None:
    app = app_with()
    assert [m["id"] for m in (await call(app, "/v1/models", method="GET")).json()["data"]] == [
        "trio-mock"
    ]
    assert (await call(app, CHAT, ASK | {"model": "gamma"})).status == 200
    view = await change(app, {"models": {"models": ["alpha", "beta"], "any_model": False}})
    assert view["changed"] == ["models", "any_model"]
    listed = (await call(app, "/v1/models", method="GET")).json()["data"]
    assert [m["id"] for m in listed] == ["alpha", "beta"]
    refused = await call(app, CHAT, ASK | {"model": "gamma"})
    error = check_error(refused.response(), 404, "model")
    assert error["code"] == "model_not_found"
    assert (await call(app, "/v1/models/gamma", method="GET")).status == 404
    assert (await call(app, CHAT, ASK | {"model": "beta"})).status == 200
    assert (await call(app, "/v1/models/alpha", method="GET")).status == 200


async def test_api_keys_start_applying() -> None:
    app = app_with()
    assert (await call(app, CHAT, ASK)).status == 200
    assert (await change(app, {"api_keys": [API_KEY]}))["changed"] == ["api_keys"]
    refused = await call(app, CHAT, ASK)
    assert check_error(refused.response(), 401, None)["code"] == "invalid_api_key"
    bearer = ((b"authorization", f"Bearer {API_KEY}".encode()),)
    assert (await call(app, CHAT, ASK, headers=bearer)).status == 200
    assert (await call(app, CHAT, ASK, headers=((b"api-key", API_KEY.encode()),))).status == 200
    assert (await call(app, "/v1/models", method="GET")).status == 401
    # No admin key: the control routes now need the API key too.
    assert (await call(app, CONFIG, method="GET")).status == 401
    assert (await change(app, {"api_keys": []}, headers=bearer))["changed"] == ["api_keys"]
    assert (await call(app, CHAT, ASK)).status == 200


async def test_log_level_changes_the_logger(caplog: pytest.LogCaptureFixture) -> None:
    app = app_with()
    caplog.set_level(logging.INFO, logger="trio_mock")
    view = await change(app, {"observability": {"log_level": "error"}})
    assert view["changed"] == ["log_level"]
    assert view["settings"]["observability"]["log_level"] == "error"
    assert logging.getLogger("trio_mock").level == logging.ERROR
    await change(app, {"log_level": "debug"})
    assert logging.getLogger("trio_mock").level == logging.DEBUG
    assert "runtime config changed: log_level" in caplog.text


async def test_log_level_change_reaches_hypercorns_log_as_at_start_up() -> None:
    app = app_with()
    await change(app, {"log_level": "error"})
    assert logging.getLogger("hypercorn.error").level == logging.ERROR


async def test_curl_style_body_without_json_content_type_is_read() -> None:
    """The README's ``curl -d`` sends its JSON as a form's content type."""
    app = app_with()
    for path in (CONFIG, "/configure"):
        answer = await call(
            app,
            path,
            b'{"itl_ms": 6}' if path == CONFIG else b'{"itl": 7}',
            content_type=b"application/x-www-form-urlencoded",
        )
        assert answer.status == 200, answer.body
    assert (await get_config(app))["settings"]["latency"]["itl_ms"] == 7.0


async def test_rate_limit_buckets_carry_on_across_other_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = app_with(rate_limit_rpm=2)
    for _ in range(2):
        assert (await call(app, CHAT, ASK)).status == 200
    await change(app, {"ttft_ms": 1, "failure_jitter": 0.5, "max_concurrency": 4})
    assert (await call(app, CHAT, ASK)).status == 429  # the bucket is still empty
    await change(app, {"rate_limit_rpm": 3})  # its own knob: new, full buckets
    assert (await call(app, CHAT, ASK)).status == 200


async def test_fault_draws_carry_on_across_other_changes() -> None:
    """With a seed, the same requests meet the same faults, an unrelated change or not."""
    seeded: dict[str, Any] = {"failure_percent": 50, "failure_mix": ["503"], "fault_seed": 3}

    async def statuses(change_after: int | None) -> list[int]:
        app = app_with(**seeded)
        out: list[int] = []
        for i in range(24):
            if i == change_after:
                await change(app, {"ttft_ms": 1, "rate_limit_rpm": 1000})
            out.append((await call(app, CHAT, ASK)).status)
        return out

    plain = await statuses(None)
    assert set(plain) == {200, 503}
    assert await statuses(10) == plain
    app = app_with(**seeded)
    first = [(await call(app, CHAT, ASK)).status for _ in range(10)]
    await change(app, {"fault_seed": 3})  # no change at all: the draws carry on too
    first += [(await call(app, CHAT, ASK)).status for _ in range(14)]
    assert first == plain


async def test_corpus_rebuild_at_runtime_answers_the_next_request() -> None:
    app = app_with()
    live = cast("trio_mock._app._runtime.Live", app.live)  # type: ignore[attr-defined]
    corpus = live.model.corpus
    assert corpus is not None
    await change(app, {"ttft_ms": 1})
    assert live.model.corpus is corpus  # a latency change keeps the corpus it has
    view = await change(app, {"output": {"corpus_articles": 3, "corpus_seed": 11}})
    assert view["changed"] == ["corpus_articles", "corpus_seed"]
    assert live.model.corpus is not corpus
    for body in (ASK, STREAM):
        answer = await call(app, CHAT, body)
        assert answer.status == 200
        assert reply_text(answer)
    assert (await get_config(app))["settings"]["output"]["corpus_articles"] == 3


# --- 3. a request in flight keeps its settings ------------------------------------------------


async def change_at_once(
    clock: trio.testing.MockClock, app: QuartTrio, body: dict[str, Any]
) -> dict[str, Any]:
    """A change applied at this virtual instant. A latency or output change rebuilds the
    model in a thread, and an autojumping clock would run the other requests on meanwhile
    (to their end, typically), so the clock holds still until the change is done."""
    clock.autojump_threshold = math.inf
    try:
        return await change(app, body)
    finally:
        clock.autojump_threshold = 0


async def test_request_in_flight_keeps_its_schedule_while_the_next_uses_the_new(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = app_with(**PACED)
    out: dict[str, Answer] = {}

    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream_into, out, app, "old")
        await trio.sleep(0.05)  # before its first token
        await change_at_once(autojump_clock, app, {"ttft_ms": 20, "itl_ms": 1})
        assert trio.current_time() - t0 == pytest.approx(0.05, abs=1e-9)
        assert "old" not in out  # still in flight
        nursery.start_soon(stream_into, out, app, "new")
    assert out["old"].headers["x-mock-ttft-ms"] == "100.000"
    assert token_times(out["old"].events()) == pytest.approx(on_schedule(5, 0.1, 0.01), abs=1e-9)
    assert out["new"].headers["x-mock-ttft-ms"] == "20.000"
    assert token_times(out["new"].events()) == pytest.approx(on_schedule(5, 0.02, 0.001), abs=1e-9)


async def test_change_mid_stream_leaves_the_rest_of_the_stream_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    text = "one two three four five six seven eight"
    app = app_with(**PACED, output_mode="fixed", fixed_text=text)
    out: dict[str, Answer] = {}

    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream_into, out, app, "old")
        await trio.sleep(0.125)  # after its third token
        await change_at_once(autojump_clock, app, {"itl_ms": 50, "fixed_text": "Short."})
        assert trio.current_time() - t0 == pytest.approx(0.125, abs=1e-9)
        assert "old" not in out  # three tokens sent, five to go
        nursery.start_soon(stream_into, out, app, "new")
    old = out["old"]
    assert reply_text(old) == text
    times = token_times(old.events())
    assert len(times) == 8
    assert times == pytest.approx(on_schedule(8, 0.1, 0.01), abs=1e-9)
    assert reply_text(out["new"]) == "Short."
    assert out["new"].headers["x-mock-itl-ms"] == "50.000"


async def test_time_limit_change_spares_the_request_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = app_with(**PACED)  # streams end at 0.14 s
    out: dict[str, Answer] = {}

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream_into, out, app, "old")
        await trio.sleep(0.05)
        await change_at_once(autojump_clock, app, {"max_request_s": 0.125})
        nursery.start_soon(stream_into, out, app, "new")
    old, new = out["old"], out["new"]
    assert len(token_times(old.events())) == 5
    done_at, _, done = old.events()[-1]
    assert done == "[DONE]"
    assert done_at == pytest.approx(0.14, abs=1e-9)
    assert len(token_times(new.events())) == 3  # at 0.10, 0.11, 0.12; the fourth was due at 0.13
    at, _, frame = new.events()[-1]
    assert at == pytest.approx(0.125, abs=1e-9)
    assert frame["error"]["code"] == "timeout"


async def test_queued_request_keeps_the_settings_it_arrived_with(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = app_with(**PACED, max_concurrency=1)
    out: dict[str, Answer] = {}

    t0 = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream_into, out, app, "a", 0.0)
        nursery.start_soon(stream_into, out, app, "b", 0.001)  # queued behind a
        await trio.sleep(0.01)
        await change_at_once(autojump_clock, app, {"ttft_ms": 20})
        assert trio.current_time() - t0 == pytest.approx(0.01, abs=1e-9)
        nursery.start_soon(stream_into, out, app, "c", 0.0)  # queued behind b, with the new TTFT
    # b: admitted when a ends (0.14 s), then the old 100 ms; c (arrived at 0.01 s): when b
    # ends (0.28 s), then the new 20 ms.
    assert out["b"].headers["x-mock-ttft-ms"] == "239.000"
    assert out["c"].headers["x-mock-ttft-ms"] == "290.000"


# --- 4. validation -------------------------------------------------------------------------

BAD_VALUES: list[tuple[dict[str, Any], str]] = [
    ({"ttft_ms": -1}, "ttft_ms"),
    ({"itl_ms": "fast"}, "itl_ms"),
    ({"ttft_ms": True}, "ttft_ms"),
    ({"ttft_ms": None}, "ttft_ms"),
    ({"output_mode": "poetry"}, "output_mode"),
    ({"fixed_text": ""}, "fixed_text"),
    ({"output_tokens_mean": 0}, "output_tokens_mean"),
    ({"corpus_articles": 0}, "corpus_articles"),
    ({"failure_percent": 150}, "failure_percent"),
    ({"failure_mix": ["banana"]}, "failure_mix"),
    ({"failure_mix": []}, "failure_mix"),
    ({"models": []}, "models"),
    ({"any_model": "maybe"}, "any_model"),
    ({"api_keys": 5}, "api_keys"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"max_concurrency": 1.5}, "max_concurrency"),
    ({"overload_status": 500}, "overload_status"),
    ({"rate_limit_rpm": -5}, "rate_limit_rpm"),
    ({"rate_limit_scope": "planet"}, "rate_limit_scope"),
    ({"log_level": "loud"}, "log_level"),
    ({"max_request_s": 0}, "max_request_s"),
    ({"context_lengths": ["gpt-4"]}, "context_lengths"),
    ({"profile": "warp-speed"}, "profile"),
    ({"ttft_min_ms": 50, "ttft_max_ms": 10}, "ttft_min_ms"),
    ({"itl_distribution": "uniform"}, "itl_distribution"),
    ({"tokens_per_event_min": 3}, "tokens_per_event_min"),
]


def start_up_error(**leaves: Any) -> str:
    """The message the same values give at start-up."""
    with pytest.raises(SettingsError) as caught:
        fast_settings(**(BASE | leaves))
    return str(caught.value)


async def test_negative_ttft_message_is_worded_as_at_start_up() -> None:
    app = app_with()
    answer = await call(app, CONFIG, {"ttft_ms": -1}, method="PATCH")
    error = bad_change(answer, "ttft_ms")
    assert error["message"] == "--ttft-ms (TRIO_MOCK_TTFT_MS): must be >= 0, got -1.0"
    with pytest.raises(SettingsError) as caught:
        Settings.load(cli={"ttft_ms": "-1"}, env={})
    assert error["message"] == str(caught.value)


@pytest.mark.parametrize(("leaves", "param"), BAD_VALUES, ids=[p for _, p in BAD_VALUES])
async def test_bad_value_gives_the_start_up_message_and_changes_nothing(
    leaves: dict[str, Any], param: str
) -> None:
    app = app_with()
    before = await get_config(app)
    expected = start_up_error(**leaves)
    flat = bad_change(await call(app, CONFIG, leaves, method="PATCH"), param)
    assert flat["message"] == expected
    grouped_body: dict[str, dict[str, Any]] = {}
    for name, value in leaves.items():
        grouped_body.setdefault(KNOBS[name].group, {})[name] = value
    grouped = bad_change(await call(app, CONFIG, grouped_body), param)
    assert grouped["message"] == expected
    assert await get_config(app) == before


async def test_configure_bad_value_names_the_knob() -> None:
    app = app_with()
    error = bad_change(await call(app, "/configure", {"ttft": -1}), "ttft_ms")
    assert error["message"] == start_up_error(ttft_ms=-1)


@pytest.mark.parametrize(
    "body",
    [
        {"ttft": 5},  # AIPerf's alias, known to /configure only
        {"bogus_knob": 1},
        {"latency": {"bogus_knob": 1}},
        {"latency": {"models": ["x"]}},  # a knob under the wrong group
        {"latency": 5},
        {"ttft_ms": 5, "bogus_knob": 1},
    ],
)
async def test_unknown_knob_names_are_refused(body: dict[str, Any]) -> None:
    app = app_with()
    before = await get_config(app)
    error = bad_change(await call(app, CONFIG, body, method="PATCH"), None)
    assert "unknown setting" in error["message"]
    assert await get_config(app) == before


@pytest.mark.parametrize("path", [CONFIG, "/configure"])
@pytest.mark.parametrize("body", [b"[1, 2]", b'"ttft_ms"', b"5", b"null", b"{oops", b""])
async def test_non_object_body_is_refused(path: str, body: bytes) -> None:
    app = app_with()
    before = await get_config(app)
    check_error((await call(app, path, body)).response(), 400, None)
    if path == CONFIG:
        check_error((await call(app, path, body, method="PATCH")).response(), 400, None)
    assert await get_config(app) == before


START_UP_CHANGES: dict[str, dict[str, Any]] = {
    "host": {"host": "0.0.0.0"},
    "port": {"port": 1},
    "workers": {"workers": 2},
    "certfile": {"certfile": __file__, "keyfile": __file__},
    "keyfile": {"keyfile": __file__, "certfile": __file__},  # they go together
    "graceful_timeout_s": {"graceful_timeout_s": 1},
    "backlog": {"backlog": 10},
    "send_timeout_s": {"send_timeout_s": 5},
    "keep_alive_timeout_s": {"keep_alive_timeout_s": 1},
    "keep_alive_max_requests": {"keep_alive_max_requests": 10},
    "access_log": {"access_log": True},
    "cors_origins": {"cors_origins": "*"},
    "tokenizer": {"tokenizer": "approx"},
    "metrics": {"metrics": False},
    "log_format": {"log_format": "json"},
    "journal_file": {"journal_file": "/tmp/trio-mock-never-written.jsonl"},
    "scripts_file": {"scripts_file": __file__},
    "admin_key": {"admin_key": "new-admin"},
    "cassette": {"cassette": "/tmp/trio-mock-never-read.jsonl"},
    "record_upstream": {"record_upstream": "http://127.0.0.1:1/v1"},
    "upstream_api_key": {"upstream_api_key": "sk-other"},
    "upstream_timeout_s": {"upstream_timeout_s": 5},
    "replay_ignore": {"replay_ignore": "user"},
    "prefix_cache_blocks": {"prefix_cache_blocks": 64},
    "kv_block_size": {"kv_block_size": 32},
    "engine": {"engine": "batched"},
    "max_num_seqs": {"max_num_seqs": 8},
    "max_num_batched_tokens": {"max_num_batched_tokens": 512},
    "engine_seq_ms": {"engine_seq_ms": 1},
    "engine_knee_seqs": {"engine_knee_seqs": 8},
    "engine_past_knee_ms": {"engine_past_knee_ms": 1},
}


def test_every_start_up_only_knob_has_a_case() -> None:
    assert set(START_UP_CHANGES) == {k.name for k in KNOBS.values() if not k.live}


@pytest.mark.parametrize("name", sorted(START_UP_CHANGES))
async def test_start_up_only_knob_is_refused_and_nothing_changes(name: str) -> None:
    app = app_with()
    before = await get_config(app)
    knob = KNOBS["certfile" if name == "keyfile" else name]  # the first one named
    expected = f"{knob.flag} ({knob.env}): read at start-up only; restart the server to change it"
    body = START_UP_CHANGES[name] | {"ttft_ms": 5}  # with a live knob: it must not change
    error = bad_change(await call(app, CONFIG, body, method="PATCH"), knob.name)
    assert error["message"] == expected
    assert "read at start-up only" in error["message"]
    configure = bad_change(await call(app, "/configure", body), knob.name)
    assert configure["message"] == expected
    after = await get_config(app)
    assert after == before
    assert after["settings"]["latency"]["ttft_ms"] == 0.0


async def test_start_up_only_knob_at_its_current_value_is_no_change() -> None:
    app = app_with()
    view = await change(app, {"server": {"port": 0}, "tokenizer": "cl100k_base", "itl_ms": 4})
    assert view["changed"] == ["itl_ms"]


@pytest.mark.parametrize("bad", [{"itl_ms": -1}, {"port": 1}, {"bogus_knob": 1}])
async def test_mixed_change_with_one_bad_knob_changes_nothing(
    autojump_clock: trio.testing.MockClock, bad: dict[str, Any]
) -> None:
    app = app_with()
    before = await get_config(app)
    body = {
        "ttft_ms": 5,
        "rate_limit_rpm": 1,
        "failure_percent": 100,
        "output_mode": "fixed",
        "models": ["other"],
        "any_model": False,
        "api_keys": [API_KEY],
    } | bad
    assert (await call(app, CONFIG, body, method="PATCH")).status == 400
    assert await get_config(app) == before
    # Nothing built from the rejected values either: no limiter, faults, keys or model list.
    for _ in range(2):
        answer = await call(app, CHAT, ASK)
        assert answer.status == 200
        assert answer.headers["x-mock-ttft-ms"] == "0.000"
        assert "x-ratelimit-limit-requests" not in answer.headers
        assert reply_text(answer) != BASE_FIXED_TEXT
    listed = (await call(app, "/v1/models", method="GET")).json()["data"]
    assert [m["id"] for m in listed] == ["trio-mock"]


# --- 5. POST /configure (AIPerf) -----------------------------------------------------------


async def test_configure_takes_aiperfs_body(autojump_clock: trio.testing.MockClock) -> None:
    app = app_with()
    answer = await call(app, "/configure", {"ttft": 50, "itl": 5, "tokenizer_models": []})
    assert answer.status == 200, answer.body
    view = answer.json()
    assert view["status"] == "configured"
    assert view["ignored"] == []
    assert view["changed"] == ["ttft_ms", "itl_ms"]
    assert (view["settings"]["latency"]["ttft_ms"], view["settings"]["latency"]["itl_ms"]) == (
        50.0,
        5.0,
    )
    assert view["start_up_only"] == [k.name for k in KNOBS.values() if not k.live]
    stream = await call(app, CHAT, STREAM)
    assert (stream.headers["x-mock-ttft-ms"], stream.headers["x-mock-itl-ms"]) == (
        "50.000",
        "5.000",
    )
    assert token_times(stream.events()) == pytest.approx(on_schedule(5, 0.05, 0.005), abs=1e-9)
    settings = (await get_config(app))["settings"]
    assert (settings["latency"]["ttft_ms"], settings["latency"]["itl_ms"]) == (50.0, 5.0)


async def test_configure_refuses_a_tokenizer_not_on_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: never downloaded
    app = app_with()
    before = await get_config(app)
    body = {"ttft": 50, "tokenizer_models": ["no-such-org/no-such-model"]}
    answer = await call(app, "/configure", body)
    error = check_error(answer.response(), 400, "tokenizer_models")
    assert error["code"] == "invalid_setting"
    assert str(tmp_path / "models--no-such-org--no-such-model") in error["message"]
    assert await get_config(app) == before  # the ttft with it did not change either


async def test_configure_takes_knob_names_too() -> None:
    app = app_with()
    answer = await call(app, "/configure", {"itl_ms": 7, "output": {"fixed_text": "Hi."}})
    assert answer.status == 200
    assert answer.json()["ignored"] == []
    assert answer.json()["changed"] == ["itl_ms", "fixed_text"]


# --- 6. the admin key ---------------------------------------------------------------------

RULE: dict[str, Any] = {"match": {"text": "never-sent-text"}, "reply": {"content": "x"}}
ADMIN_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", CONFIG, None),
    ("PATCH", CONFIG, {"itl_ms": 1}),
    ("POST", CONFIG, {}),
    ("GET", "/_mock/requests", None),
    ("DELETE", "/_mock/requests", None),
    ("GET", "/_mock/scripts", None),
    ("POST", "/_mock/scripts", RULE),
    ("DELETE", "/_mock/scripts", None),
    ("GET", "/_mock/stats", None),
    ("POST", "/configure", {"ttft": 1}),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in ADMIN_ROUTES]
ADMIN_FORMS: dict[str, Headers] = {
    "bearer": ((b"authorization", f"Bearer {ADMIN}".encode()),),
    "api-key": ((b"api-key", ADMIN.encode()),),
    "x-admin-key": ((b"x-admin-key", ADMIN.encode()),),
}


def admin_refusal(answer: Answer) -> None:
    error = check_error(answer.response(), 401, None)
    assert error["code"] == "invalid_admin_key"


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES, ids=ROUTE_IDS)
async def test_admin_routes_refuse_without_the_admin_key(method: str, path: str, body: Any) -> None:
    app = app_with(admin_key=ADMIN, api_keys=[API_KEY])
    before = await get_config(app, ADMIN_FORMS["x-admin-key"])
    admin_refusal(await call(app, path, body, method=method))
    wrong = ((b"x-admin-key", b"not-the-key"),)
    admin_refusal(await call(app, path, body, method=method, headers=wrong))
    # An API key does not stand in for the admin key, in either form.
    for api_form in (
        ((b"authorization", f"Bearer {API_KEY}".encode()),),
        ((b"api-key", API_KEY.encode()),),
    ):
        admin_refusal(await call(app, path, body, method=method, headers=api_form))
    assert await get_config(app, ADMIN_FORMS["bearer"]) == before


@pytest.mark.parametrize("form", sorted(ADMIN_FORMS))
@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES, ids=ROUTE_IDS)
async def test_admin_routes_accept_the_admin_key(
    method: str, path: str, body: Any, form: str
) -> None:
    app = app_with(admin_key=ADMIN, api_keys=[API_KEY])
    answer = await call(app, path, body, method=method, headers=ADMIN_FORMS[form])
    assert answer.status == 200, answer.body


async def test_admin_key_changes_take_effect() -> None:
    app = app_with(admin_key=ADMIN)
    view = await change(app, {"itl_ms": 3}, headers=ADMIN_FORMS["api-key"])
    assert view["changed"] == ["itl_ms"]
    # No API keys: generation stays open, and shows the admin's change.
    answer = await call(app, CHAT, ASK)
    assert answer.status == 200
    assert answer.headers["x-mock-itl-ms"] == "3.000"


@pytest.mark.parametrize("path", ["/_mock/ui", "/health", "/metrics"])
async def test_open_routes_need_no_key(path: str) -> None:
    app = app_with(admin_key=ADMIN, api_keys=[API_KEY])
    answer = await call(app, path, method="GET")
    assert answer.status == 200, answer.body


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES, ids=ROUTE_IDS)
async def test_without_admin_key_control_routes_need_an_api_key(
    method: str, path: str, body: Any
) -> None:
    app = app_with(api_keys=[API_KEY])
    refused = await call(app, path, body, method=method)
    assert check_error(refused.response(), 401, None)["code"] == "invalid_api_key"
    for form in (
        ((b"authorization", f"Bearer {API_KEY}".encode()),),
        ((b"api-key", API_KEY.encode()),),
    ):
        assert (await call(app, path, body, method=method, headers=form)).status == 200
    for path_open in ("/_mock/ui", "/health", "/metrics"):
        assert (await call(app, path_open, method="GET")).status == 200


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES, ids=ROUTE_IDS)
async def test_without_any_key_control_routes_are_open(method: str, path: str, body: Any) -> None:
    assert (await call(app_with(), path, body, method=method)).status == 200


async def test_admin_key_over_loopback(start_server: StartServer) -> None:
    url = await start_server(fast_settings(**BASE, admin_key=ADMIN))
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        refused = await client.patch(CONFIG, json={"itl_ms": 2})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_admin_key"
        admin = {"authorization": f"Bearer {ADMIN}"}
        changed = await client.patch(CONFIG, json={"latency": {"itl_ms": 2}}, headers=admin)
        assert changed.status_code == 200
        assert changed.json()["changed"] == ["itl_ms"]
        answer = await client.post(CHAT, json=ASK)
        assert answer.status_code == 200
        assert answer.headers["x-mock-itl-ms"] == "2.000"  # the planned gap, not a measurement
        configured = await client.post(
            "/configure", json={"ttft": 1, "itl": 1}, headers={"x-admin-key": ADMIN}
        )
        assert configured.json()["changed"] == ["ttft_ms", "itl_ms"]
        assert (await client.get("/_mock/ui")).status_code == 200
        assert (await client.get("/_mock/config")).status_code == 401


# --- regressions ----------------------------------------------------------------------------


async def test_concurrent_changes_are_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_with()
    real = MockModel
    entered, gate = threading.Event(), threading.Event()

    def held_model(*args: Any, **kwargs: Any) -> MockModel:
        """The model rebuild, held until the test lets it go (it runs in a thread)."""
        entered.set()
        gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(trio_mock._app._runtime, "MockModel", held_model)
    out: dict[str, Answer] = {}

    async def patch(name: str, body: dict[str, Any]) -> None:
        out[name] = await call(app, CONFIG, body, method="PATCH")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(patch, "slow", {"ttft_ms": 5})
        assert await trio.to_thread.run_sync(entered.wait, 10)  # slow is rebuilding the model
        nursery.start_soon(patch, "quick", {"rate_limit_rpm": 10})
        await trio.testing.wait_all_tasks_blocked()  # quick is done, or waits its turn
        gate.set()
    quick = out["quick"]
    assert quick.status == 200
    assert out["slow"].status == 200
    current = (await get_config(app))["settings"]
    assert current["latency"]["ttft_ms"] == 5.0
    limited = await call(app, CHAT, ASK)
    assert limited.headers["x-ratelimit-limit-requests"] == "10"
    assert current["rate_limits"]["rate_limit_rpm"] == 10  # was lost before the fix


async def test_patching_the_current_view_back_changes_nothing() -> None:
    """GET's masked secrets sent back mean "unchanged", not a key named "0 set"."""
    app = app_with()
    current = (await get_config(app))["settings"]
    view = await change(app, current)
    assert view["changed"] == []
    assert (await call(app, CHAT, ASK)).status == 200
    guarded = app_with(api_keys=[API_KEY], admin_key=ADMIN)
    admin = ADMIN_FORMS["x-admin-key"]
    shown = (await get_config(guarded, admin))["settings"]
    assert (await change(guarded, shown, headers=admin))["changed"] == []
    bearer = ((b"authorization", f"Bearer {API_KEY}".encode()),)
    assert (await call(guarded, CHAT, ASK, headers=bearer)).status == 200
    assert (await call(guarded, CHAT, ASK)).status == 401  # the keys still apply
