"""Injected faults (issue 5): ``x-mock-fault`` and ``--failure-percent/-jitter/-mix/--fault-seed``.

What this file proves:

- Every spelling parses as documented (statuses 400-599, ``disconnect``/``error``/``stall``
  with or without ``-after=K``, ``slow-headers=MS``, ``none``) and junk is refused: a
  ``ValueError`` from ``parse_fault``, a ``SettingsError`` naming the flag in settings, a 400
  ``invalid_header`` for the header. Status faults carry OpenAI's own bodies.
- ``cut_after`` counts tokens exactly, sends multi-token events whole, and puts the fault at
  the moment the next event was due (the last event's, when the reply is shorter).
- The issue's proof: with a fixed fault seed the same request sequence gets the same faults.
  10,000 requests in process (raw ASGI, no sockets, no latency) meet exactly the faults a
  ``FaultInjector`` with that seed predicts, twice over, request by request; invalid requests
  still consume their draw; the observed failure rate is within 4 sigma of the configured
  rate and the status mix within 4 sigma of ``failure_mix``'s weights.
- Under MockClock (in memory) a fault lands exactly when the next token was due, a
  ``slow-headers`` delay shifts the status line and the whole schedule, and a stall ends with
  the time-limit frame exactly at ``max_request_s``.
- Every error body and error event validates against the official OpenAPI spec.
- The official SDK (sync and async, over loopback) sees what it would see from OpenAI:
  ``InternalServerError``/``RateLimitError`` with the right body, ``APIConnectionError`` after
  exactly K streamed tokens, ``APIError`` from an in-stream error, ``APITimeoutError`` from a
  stall; its retries meet the seeded faults (all fail at 100 %, a seeded 50 % run succeeds).
- Over HTTP/2 (h2c) a ``disconnect-after=3`` stream gives 3 tokens, then the client fails it;
  the connection drops (a stream sharing it fails too), and the client goes on working on a
  new one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import h2.exceptions
import httpx
import openai
import orjson
import pytest
import trio
import trio.testing

from asgi import Answer, call, token_times
from conftest import async_client, check_error, fast_settings, server_in_thread, sync_client
from helpers import on_schedule
from openapi import validate
from trio_mock import Settings, create_app
from trio_mock._config._faults import Fault, FaultInjector, parse_fault
from trio_mock._config._knobs import SettingsError
from trio_mock._openai._errors import INJECTED_ERROR, STATUS_ERRORS, status_error
from trio_mock._sim._schedule import Counted, Ending, cut_after

if TYPE_CHECKING:
    from openai.types import Completion
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
    from openai.types.responses import ResponseStreamEvent
    from quart_trio import QuartTrio

    from conftest import StartServer

CHAT = "/v1/chat/completions"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
EMBEDDING_MODEL = "text-embedding-3-small"
BODIES: dict[str, dict[str, Any]] = {
    CHAT: {"model": "m", "messages": HELLO},
    "/v1/completions": {"model": "m", "prompt": "Say hello."},
    "/v1/responses": {"model": "m", "input": "Say hello."},
    "/v1/embeddings": {"model": EMBEDDING_MODEL, "input": "Say hello."},
}
# Replies of exactly 20 tokens (completions stop at their default max_tokens of 16).
TWENTY: dict[str, Any] = {"output_tokens_mean": 20, "output_tokens_stddev": 0}
# MockClock schedule: token i at 0.1 + i * 0.01 s, 10 tokens, requests cut at 5 s.
TTFT_S, ITL_S, TOKENS, LIMIT_S = 0.1, 0.01, 10, 5.0
PACED: dict[str, Any] = {
    "ttft_ms": TTFT_S * 1000,
    "itl_ms": ITL_S * 1000,
    "output_tokens_mean": TOKENS,
    "output_tokens_stddev": 0,
    "max_request_s": LIMIT_S,
}
SDK_STALL_TIMEOUT_S = 0.5
Item = TypeVar("Item")
# Leaving a failed h2 stream leaves httpx's inner async generators to the garbage collector,
# and trio warns about each (STYLE.md section 6).
IGNORE_HTTPX_GENERATORS = pytest.mark.filterwarnings(
    "ignore:Async generator 'httpx?(core)?\\.:ResourceWarning"
)


# --- a raw ASGI exchange, in memory ---------------------------------------------------------


async def exchange(
    app: QuartTrio,
    path: str,
    body: Any,
    fault: str | None = None,
    *,
    method: str = "POST",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> Answer:
    """``call`` with ``fault``, if any, as the ``x-mock-fault`` header."""
    if fault is not None:
        headers = (*headers, (b"x-mock-fault", fault.encode()))
    return await call(app, path, body, method=method, headers=headers)


def stream_body(path: str) -> dict[str, Any]:
    return BODIES[path] | {"stream": True}


# --- unit: spellings, bodies, cut points, settings -------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("503", Fault("status", "503", status=503)),
        ("400", Fault("status", "400", status=400)),
        ("599", Fault("status", "599", status=599)),
        (" 429 ", Fault("status", "429", status=429)),
        ("disconnect", Fault("disconnect", "disconnect")),
        ("error", Fault("error", "error")),
        ("stall", Fault("stall", "stall")),
        ("disconnect-after=5", Fault("disconnect", "disconnect-after=5", after=5)),
        ("error-after=0", Fault("error", "error-after=0", after=0)),
        ("Stall-After=12", Fault("stall", "stall-after=12", after=12)),
        ("slow-headers=250", Fault("slow-headers", "slow-headers=250", delay_s=0.25)),
        ("slow-headers=0", Fault("slow-headers", "slow-headers=0", delay_s=0.0)),
        ("slow-headers=2.5", Fault("slow-headers", "slow-headers=2.5", delay_s=0.0025)),
        ("NONE", Fault("none", "none")),
    ],
)
def test_parse_fault_spellings(text: str, expected: Fault) -> None:
    assert parse_fault(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "399",
        "600",
        "0",
        "5030",
        "503.0",
        "-503",
        "bogus",
        "disconnect-after",
        "disconnect-after=",
        "disconnect-after=x",
        "disconnect-after=-1",
        "disconnect-after=1.5",
        "error-before=3",
        "stall=3",
        "none-after=2",
        "slow-headers",
        "slow-headers=",
        "slow-headers=-5",
        "slow-headers=inf",
        "slow-headers=nan",
        "slow-headers=fast",
        "timeout",
    ],
)
def test_parse_fault_rejects_junk(text: str) -> None:
    with pytest.raises(ValueError, match="fault"):
        parse_fault(text)


@pytest.mark.parametrize(
    ("status", "message", "kind", "code"),
    [
        (429, "Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
        (500, "The server had an error while processing", "server_error", None),
        (502, "Bad gateway.", "cf_bad_gateway", None),
        (503, "The server is overloaded or not ready yet.", "server_error", "service_unavailable"),
        (504, "Gateway timeout.", "cf_gateway_timeout", None),
        (418, "I'm a Teapot.", "invalid_request_error", None),
        (501, "Not Implemented.", "server_error", None),
        (404, "Not Found.", "invalid_request_error", None),
    ],
)
def test_status_error_bodies(status: int, message: str, kind: str, code: str | None) -> None:
    error = status_error(status)
    assert error.status == status
    body = error.to_body()["error"]
    assert isinstance(body, dict)
    assert body["message"].startswith(message)
    assert body == {"message": body["message"], "type": kind, "param": None, "code": code}


@pytest.mark.parametrize("status", [499, 520, 524, 599])
async def test_status_error_for_unregistered_statuses(status: int) -> None:
    app = create_app(fast_settings())
    answer = await exchange(app, CHAT, BODIES[CHAT], str(status))
    assert answer.status == status
    assert status_error(status).status == status


def test_injected_error_is_the_500_body() -> None:
    assert INJECTED_ERROR == STATUS_ERRORS[500] == status_error(500)


A, BC, D = b"a", b"bc", b"d"
EVENTS = [(1.0, (A, 1)), (2.0, (BC, 2)), (3.0, (D, 1))]  # 4 tokens; the second event carries 2
LAST = b"<fault>"


def counted(events: list[tuple[float, tuple[bytes, int]]]) -> Iterator[Counted]:
    """Events as the scheduler gives them: each count and frame source drawn on demand."""
    return iter([(when, iter([(count, iter([frame]))])) for when, (frame, count) in events])


def drawn(events: Iterable[tuple[float, Iterator[bytes]]]) -> list[tuple[float, bytes]]:
    """Each event's deadline and its frame, drawn as a sender would."""
    return [(when, next(source)) for when, source in events]


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (0, [(1.0, LAST)]),
        (1, [(1.0, A), (2.0, LAST)]),
        (2, [(1.0, A), (2.0, LAST)]),  # the 2-token event goes whole or not at all
        (3, [(1.0, A), (2.0, BC), (3.0, LAST)]),
        (4, [(1.0, A), (2.0, BC), (3.0, D), (3.0, LAST)]),  # shorter reply: the last event's time
        (9, [(1.0, A), (2.0, BC), (3.0, D), (3.0, LAST)]),
    ],
)
def test_cut_after(tokens: int, expected: list[tuple[float, bytes]]) -> None:
    calls: list[int] = []

    def last() -> bytes:
        calls.append(1)
        return LAST

    assert drawn(cut_after(counted(EVENTS), tokens, Ending(last))) == expected
    assert calls == [1]


def test_cut_after_is_lazy_and_ends_an_empty_reply() -> None:
    built: list[bytes] = []

    def frames() -> Iterator[bytes]:
        for _, (frame, _) in EVENTS:
            built.append(frame)
            yield frame

    source = frames()  # one choice's frames, built only when drawn
    events = [(when, iter([(count, source)])) for when, (_, count) in EVENTS]
    cut = cut_after(iter(events), 1, Ending(lambda: LAST))
    when, first = next(cut)
    assert (when, built) == (1.0, [])  # not built until it goes out
    assert next(first) == A
    assert drawn(cut) == [(2.0, LAST)]
    assert built == [A]  # the event left out is never built
    assert drawn(cut_after(iter([]), 3, Ending(lambda: LAST))) == [(-math.inf, LAST)]


@pytest.mark.parametrize(
    ("share", "after", "total", "expected"),
    [
        (0.0, None, 10, 0),
        (0.5, None, 10, 5),
        (0.9999, None, 10, 10),
        (0.5, None, 0, 0),
        (0.1, 3, 10, 3),
        (0.9, 30, 10, 30),  # beyond the reply: cut_after then sends it all
    ],
)
def test_tokens_before(share: float, after: int | None, total: int, expected: int) -> None:
    fault = Fault("error", "error", after=after, share=share)
    assert fault.tokens_before(total) == expected


def test_drawn_cut_points_cover_zero_to_total() -> None:
    injector = FaultInjector(fast_settings(fault_seed=3).faults)
    points = Counter(injector.placed(parse_fault("error")).tokens_before(4) for _ in range(5000))
    assert set(points) == {0, 1, 2, 3, 4}
    assert all(abs(n - 1000) < 4 * math.sqrt(5000 * 0.2 * 0.8) for n in points.values())


@pytest.mark.parametrize(
    ("leaves", "flag"),
    [
        ({"failure_mix": ("500", "503x")}, "--failure-mix"),
        ({"failure_mix": ("disconnect-after=-2",)}, "--failure-mix"),
        ({"failure_mix": ("600",)}, "--failure-mix"),
        ({"failure_mix": ()}, "--failure-mix"),
        ({"failure_percent": 100.5}, "--failure-percent"),
        ({"failure_percent": -1}, "--failure-percent"),
        ({"failure_jitter": -1}, "--failure-jitter"),
        ({"fault_seed": -1}, "--fault-seed"),
    ],
)
def test_settings_reject_bad_fault_knobs(leaves: dict[str, Any], flag: str) -> None:
    with pytest.raises(SettingsError, match=flag):
        Settings().replace(**leaves)


def test_settings_take_a_comma_separated_mix() -> None:
    settings = Settings().replace(
        failure_mix="503,503,disconnect-after=2,slow-headers=50",
        failure_percent="12.5",
        fault_seed="7",
    )
    assert settings.faults.failure_mix == ("503", "503", "disconnect-after=2", "slow-headers=50")
    assert settings.faults.failure_percent == 12.5
    assert settings.faults.fault_seed == 7
    with pytest.raises(SettingsError, match="--failure-mix"):
        Settings().replace(failure_mix="503,junk")


# --- reproducibility: the FaultInjector ------------------------------------------------------

MIXED = ("500", "503", "429", "disconnect", "error-after=2", "stall", "slow-headers=30", "error")


def draws(count: int, **leaves: Any) -> list[Fault | None]:
    injector = FaultInjector(fast_settings(**leaves).faults)
    return [injector.draw() for _ in range(count)]


def test_same_seed_same_faults() -> None:
    leaves = {"failure_percent": 30, "failure_jitter": 10, "failure_mix": MIXED, "fault_seed": 11}
    first = draws(1000, **leaves)
    assert first == draws(1000, **leaves)  # kinds, statuses and drawn cut points alike
    faults = [f for f in first if f is not None]
    assert {f.spec for f in faults} == set(MIXED)
    shares = {f.share for f in faults if f.spec in {"disconnect", "stall", "error"}}
    assert len(shares) > 50  # the cut points themselves were drawn
    assert all(f.share == 0.0 for f in faults if f.spec not in {"disconnect", "stall", "error"})
    assert draws(1000, **(leaves | {"fault_seed": 12})) != first
    assert draws(1000, **(leaves | {"failure_jitter": 0})) != first  # jitter takes part


def test_zero_percent_never_draws() -> None:
    injector = FaultInjector(fast_settings(failure_percent=0, fault_seed=5).faults)
    state = injector.rng.getstate()
    assert [injector.draw() for _ in range(1000)] == [None] * 1000
    assert injector.rng.getstate() == state  # nothing consumed: header cut points stay seeded


@pytest.mark.parametrize(("percent", "jitter"), [(20, 0), (20, 15), (50, 50), (5, 5)])
def test_jitter_keeps_the_mean_rate(percent: float, jitter: float) -> None:
    count = 20_000
    got = draws(count, failure_percent=percent, failure_jitter=jitter, fault_seed=1)
    rate, p = sum(f is not None for f in got) / count, percent / 100
    assert abs(rate - p) <= 4 * math.sqrt(p * (1 - p) / count), rate


def test_weighted_mix() -> None:
    got = draws(20_000, failure_percent=100, failure_mix=("503", "503", "503", "429"), fault_seed=2)
    counts = Counter(f.status for f in got if f is not None)
    assert sum(counts.values()) == 20_000
    assert abs(counts[503] / 20_000 - 0.75) <= 4 * math.sqrt(0.75 * 0.25 / 20_000)


# --- the proof: 10,000 requests in process -------------------------------------------

PROOF: dict[str, Any] = {
    "failure_percent": 20,
    "failure_jitter": 5,
    "failure_mix": ("503", "503", "500", "429", "disconnect"),
    "fault_seed": 20_250_505,
}
ROUND = [
    (CHAT, BODIES[CHAT] | {"max_tokens": 2}),
    ("/v1/completions", BODIES["/v1/completions"] | {"max_tokens": 2}),
    ("/v1/responses", BODIES["/v1/responses"] | {"max_output_tokens": 16}),
    ("/v1/embeddings", BODIES["/v1/embeddings"]),
    (CHAT, {"model": "m"}),  # invalid (no messages): 400, but it still draws on arrival
]
Outcome = tuple[int, bool]  # (status, whether the body was finished)


async def run_requests(settings: Settings, count: int) -> list[Outcome]:
    app = create_app(settings)
    out: list[Outcome] = []
    for i in range(count):
        path, body = ROUND[i % len(ROUND)]
        answer = await exchange(app, path, body)
        out.append((answer.status, answer.ended))
    return out


def predicted(settings: Settings, count: int) -> list[Outcome]:
    """What each request must meet, from a FaultInjector with the same seed."""
    injector = FaultInjector(settings.faults)
    out: list[Outcome] = []
    for i in range(count):
        fault = injector.draw()
        if i % len(ROUND) == len(ROUND) - 1:
            out.append((400, True))
        elif fault is None:
            out.append((200, True))
        elif fault.kind == "status":
            out.append((fault.status, True))
        else:
            assert fault.kind == "disconnect"
            out.append((200, False))  # the status line, then the connection closes
    return out


@pytest.mark.slow
async def test_seeded_faults_over_10000_requests() -> None:
    count = 10_000
    settings = fast_settings(**PROOF)
    first = await run_requests(settings, count)
    assert first == predicted(settings, count)
    assert await run_requests(settings, count) == first  # the same, request by request
    other = fast_settings(**(PROOF | {"fault_seed": PROOF["fault_seed"] + 1}))
    assert await run_requests(other, 1000) != first[:1000]

    valid = [o for i, o in enumerate(first) if i % len(ROUND) != len(ROUND) - 1]
    assert {o for i, o in enumerate(first) if i % len(ROUND) == len(ROUND) - 1} == {(400, True)}
    failed = [o for o in valid if o != (200, True)]
    p, n = 0.20, len(valid)
    assert abs(len(failed) / n - p) <= 4 * math.sqrt(p * (1 - p) / n), len(failed) / n
    mix = Counter(failed)
    for outcome, share in [((503, True), 0.4), ((500, True), 0.2), ((429, True), 0.2)]:
        sigma = math.sqrt(share * (1 - share) / len(failed))
        assert abs(mix[outcome] / len(failed) - share) <= 4 * sigma, mix
    assert abs(mix[200, False] / len(failed) - 0.2) <= 4 * math.sqrt(0.16 / len(failed)), mix


async def test_checks_before_the_injected_status() -> None:
    """auth 401 -> method 405 -> validation 400 come first; then the drawn 503."""
    app = create_app(
        fast_settings(failure_percent=100, failure_mix=("503",), api_keys="sk-faults-0001")
    )
    key = ((b"authorization", b"Bearer sk-faults-0001"),)
    no_key = await exchange(app, CHAT, BODIES[CHAT])
    assert no_key.status == 401
    wrong_method = await exchange(app, CHAT, BODIES[CHAT], method="GET", headers=key)
    assert wrong_method.status == 405
    invalid = await exchange(app, CHAT, {"model": "m"}, headers=key)
    assert invalid.status == 400
    bad_header = await exchange(app, CHAT, BODIES[CHAT], "later", headers=key)
    assert bad_header.status == 400
    assert bad_header.json()["error"]["param"] == "x-mock-fault"
    assert "x-mock-fault" not in no_key.headers | invalid.headers | bad_header.headers
    drawn = await exchange(app, CHAT, BODIES[CHAT], headers=key)
    assert drawn.status == 503
    assert drawn.headers["x-mock-fault"] == "503"
    chosen = await exchange(app, CHAT, BODIES[CHAT], " Error-After=0 ", headers=key)
    assert chosen.status == 500  # the header wins over the draw
    assert chosen.headers["x-mock-fault"] == "error-after=0"  # as written, lowercased
    spared = await exchange(app, CHAT, BODIES[CHAT], "none", headers=key)
    assert spared.status == 200
    assert spared.json()["object"] == "chat.completion"
    assert "x-mock-fault" not in spared.headers


async def test_no_fault_no_header() -> None:
    app = create_app(fast_settings())
    for path, body in BODIES.items():
        answer = await exchange(app, path, body)
        assert answer.status == 200
        assert "x-mock-fault" not in answer.headers


# --- timing under MockClock (in memory) -------------------------------------------------------


@pytest.fixture
def paced_app() -> QuartTrio:
    return create_app(fast_settings(**PACED, fault_seed=9))


@pytest.mark.parametrize("path", [CHAT, "/v1/completions", "/v1/responses"])
async def test_stream_error_after_lands_when_the_next_token_was_due(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio, path: str
) -> None:
    answer = await exchange(paced_app, path, stream_body(path), "error-after=3")
    assert (answer.status, answer.started_at) == (200, 0.0)
    assert answer.headers["x-mock-fault"] == "error-after=3"
    events = answer.events()
    assert token_times(events) == pytest.approx(on_schedule(3, TTFT_S, ITL_S), abs=1e-9)
    at, name, data = events[-1]
    assert at == pytest.approx(TTFT_S + 3 * ITL_S, abs=1e-9)  # when token 4 was due
    assert answer.ended
    assert "[DONE]" not in [d for _, _, d in events]
    if path == "/v1/responses":
        assert name == "error"
        assert data["type"] == "error"
        assert data["message"] == INJECTED_ERROR.message
        assert not any(n == "response.completed" for _, n, _ in events)
    else:
        assert data == INJECTED_ERROR.to_body()


@pytest.mark.parametrize("spec", ["error-after=0", "error-after=3", "stall-after=2"])
async def test_responses_error_event_follows_the_last_sequence_number(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio, spec: str
) -> None:
    answer = await exchange(paced_app, "/v1/responses", stream_body("/v1/responses"), spec)
    numbers = [data["sequence_number"] for _, _, data in answer.events()]
    assert answer.events()[-1][1] == "error"
    assert numbers == list(range(len(numbers)))


async def test_error_after_beyond_the_reply_ends_at_the_last_token(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio
) -> None:
    answer = await exchange(paced_app, CHAT, stream_body(CHAT), "error-after=50")
    events = answer.events()
    assert token_times(events) == pytest.approx(on_schedule(TOKENS, TTFT_S, ITL_S), abs=1e-9)
    at, _, data = events[-1]
    assert data == INJECTED_ERROR.to_body()
    assert at == pytest.approx(on_schedule(TOKENS, TTFT_S, ITL_S)[-1], abs=1e-9)


async def test_multi_token_events_go_whole(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(**PACED, tokens_per_event_min=3, tokens_per_event_max=3))
    body = stream_body("/v1/completions")
    event_times = token_times((await exchange(app, "/v1/completions", body)).events())
    assert len(event_times) == math.ceil(TOKENS / 3)  # 3 + 3 + 3 + 1 tokens
    for after, events_sent in [(2, 0), (3, 1), (5, 1), (6, 2), (8, 2)]:
        answer = await exchange(app, "/v1/completions", body, f"error-after={after}")
        events = answer.events()
        assert token_times(events) == pytest.approx(event_times[:events_sent], abs=1e-9), after
        assert events[-1][2] == INJECTED_ERROR.to_body()
        assert events[-1][0] == pytest.approx(event_times[events_sent], abs=1e-9)


async def test_drawn_cut_point_follows_the_seed(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio
) -> None:
    expected = FaultInjector(fast_settings(fault_seed=9).faults).placed(parse_fault("error"))
    tokens = expected.tokens_before(TOKENS)
    answer = await exchange(paced_app, CHAT, stream_body(CHAT), "error")
    events = answer.events()
    assert len(token_times(events)) == tokens
    assert events[-1][0] == pytest.approx(TTFT_S + min(tokens, TOKENS - 1) * ITL_S, abs=1e-9)


@pytest.mark.parametrize("path", [CHAT, "/v1/responses"])
async def test_slow_headers_shift_everything(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio, path: str
) -> None:
    answer = await exchange(paced_app, path, stream_body(path), "slow-headers=250")
    assert answer.status == 200
    assert answer.started_at == pytest.approx(0.25, abs=1e-9)
    assert answer.pieces[0][0] >= 0.25
    events = answer.events()
    assert token_times(events) == pytest.approx(on_schedule(TOKENS, 0.35, ITL_S), abs=1e-9)
    assert answer.ended
    last = events[-1][2]
    assert last == "[DONE]" or last["type"] == "response.completed"
    body = await exchange(paced_app, path, BODIES[path], "slow-headers=250")
    assert body.status == 200
    assert body.started_at == pytest.approx(0.35 + (TOKENS - 1) * ITL_S, abs=1e-9)


@pytest.mark.parametrize("path", [CHAT, "/v1/responses"])
async def test_stall_ends_with_the_time_limit_frame(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio, path: str
) -> None:
    answer = await exchange(paced_app, path, stream_body(path), "stall-after=2")
    events = answer.events()
    assert token_times(events) == pytest.approx(on_schedule(2, TTFT_S, ITL_S), abs=1e-9)
    at, name, data = events[-1]
    assert at == pytest.approx(LIMIT_S, abs=1e-9)
    assert events[-2][0] < 0.2  # nothing between the last token and the time limit
    if path == "/v1/responses":
        assert (name, data["code"]) == ("error", "timeout")
    else:
        assert data["error"]["code"] == "timeout"
        assert data["error"]["type"] == "timeout"
    assert answer.ended


async def test_stream_disconnect_sends_k_tokens_and_never_ends(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio
) -> None:
    answer = await exchange(paced_app, CHAT, stream_body(CHAT), "disconnect-after=4")
    events = answer.events()
    assert token_times(events) == pytest.approx(on_schedule(4, TTFT_S, ITL_S), abs=1e-9)
    assert events[0][2]["choices"][0]["delta"]["role"] == "assistant"  # the role chunk first
    assert not answer.ended  # no end of body: the server closes the connection
    assert "[DONE]" not in [d for _, _, d in events]


@pytest.mark.parametrize(
    ("fault", "status", "at", "ended"),
    [
        ("error-after=4", 500, TTFT_S + 4 * ITL_S, True),
        ("error-after=0", 500, TTFT_S, True),
        ("stall", 504, LIMIT_S, True),
        ("stall-after=1", 504, LIMIT_S, True),
        ("disconnect-after=4", 200, TTFT_S + 4 * ITL_S, False),
        ("503", 503, 0.0, True),
        ("429", 429, 0.0, True),
    ],
)
async def test_body_faults_on_time(
    autojump_clock: trio.testing.MockClock,
    paced_app: QuartTrio,
    fault: str,
    status: int,
    at: float,
    ended: bool,
) -> None:
    answer = await exchange(paced_app, CHAT, BODIES[CHAT], fault)
    assert answer.status == status
    assert answer.started_at == pytest.approx(at, abs=1e-9)
    assert answer.headers["x-mock-fault"] == fault
    assert answer.ended is ended
    if status == 500:
        assert answer.json() == INJECTED_ERROR.to_body()
    elif status == 504:
        assert answer.json()["error"]["code"] == "timeout"
    elif status == 200:
        assert answer.pieces == []  # headers only; the body never comes
    else:
        assert answer.json() == status_error(status).to_body()


# --- OpenAPI: every error body and error event ------------------------------------------------


async def test_error_bodies_match_the_spec(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio
) -> None:
    checked = 0
    for status in (400, 401, 403, 404, 408, 409, 418, 422, 429, 500, 501, 502, 503, 504):
        answer = await exchange(paced_app, CHAT, BODIES[CHAT], str(status))
        assert answer.status == status
        validate("ErrorResponse", answer.json())
        checked += 1
    for fault in ("error-after=1", "stall", "junk"):
        for path in BODIES:
            answer = await exchange(paced_app, path, BODIES[path], fault)
            assert answer.status in {400, 500, 504}
            validate("ErrorResponse", answer.json())
            checked += 1
    for path in (CHAT, "/v1/completions"):
        for fault in ("error-after=2", "stall-after=2"):
            _, _, data = (await exchange(paced_app, path, stream_body(path), fault)).events()[-1]
            validate("ErrorResponse", data)
            checked += 1
    for fault in ("error-after=2", "stall-after=2"):
        answer = await exchange(paced_app, "/v1/responses", stream_body("/v1/responses"), fault)
        _, name, data = answer.events()[-1]
        assert name == "error"
        validate("ResponseErrorEvent", data)
        checked += 1
    assert checked == 14 + 12 + 4 + 2


# --- the official SDK over loopback (sync) ----------------------------------------------------


@pytest.fixture(scope="module")
def mock_url() -> Generator[str]:
    """One server for the sync SDK tests: 20-token replies, no injected failure rate."""
    with server_in_thread(**TWENTY, max_request_s=30) as url:
        yield url


def fault(spec: str) -> dict[str, str]:
    return {"x-mock-fault": spec}


def chat_tokens(chunk: ChatCompletionChunk) -> int:
    return sum(1 for choice in chunk.choices if choice.delta.content)


def completion_texts(completion: Completion) -> int:
    return sum(1 for choice in completion.choices if choice.text)


def text_deltas(event: ResponseStreamEvent) -> int:
    return int(event.type == "response.output_text.delta")


def drain(stream: Iterable[Item], count: Callable[[Item], int], seen: list[int]) -> None:
    """Count what ``stream`` yields into ``seen``, which keeps the counts if it raises."""
    for item in stream:
        seen.append(count(item))


async def adrain(
    stream: openai.AsyncStream[Item], count: Callable[[Item], int], seen: list[int]
) -> None:
    async with stream:
        async for item in stream:
            seen.append(count(item))


@pytest.mark.parametrize(
    ("status", "error_class", "kind", "code"),
    [
        (500, openai.InternalServerError, "server_error", None),
        (502, openai.InternalServerError, "cf_bad_gateway", None),
        (503, openai.InternalServerError, "server_error", "service_unavailable"),
        (504, openai.InternalServerError, "cf_gateway_timeout", None),
        (429, openai.RateLimitError, "requests", "rate_limit_exceeded"),
    ],
)
def test_sdk_status_faults(
    mock_url: str,
    status: int,
    error_class: type[openai.APIStatusError],
    kind: str,
    code: str | None,
) -> None:
    with sync_client(mock_url) as client:
        calls: list[Callable[[], object]] = [
            lambda: client.chat.completions.create(
                model="m", messages=HELLO, extra_headers=fault(str(status))
            ),
            lambda: client.chat.completions.create(
                model="m", messages=HELLO, stream=True, extra_headers=fault(str(status))
            ),
            lambda: client.completions.create(
                model="m", prompt="hi", extra_headers=fault(str(status))
            ),
            lambda: client.responses.create(
                model="m", input="hi", extra_headers=fault(str(status))
            ),
            lambda: client.embeddings.create(
                model=EMBEDDING_MODEL, input="hi", extra_headers=fault(str(status))
            ),
        ]
        for call in calls:
            with pytest.raises(error_class) as caught:
                call()
            error = caught.value
            assert error.status_code == status
            assert (error.type, error.code) == (kind, code)
            assert error.body == status_error(status).to_body()["error"]
            assert error.response.headers["x-mock-fault"] == str(status)


@pytest.mark.parametrize("path", [CHAT, "/v1/embeddings"])
def test_sdk_body_disconnect_and_error(mock_url: str, path: str) -> None:
    with sync_client(mock_url) as client:
        for spec in ("disconnect", "disconnect-after=3"):
            with pytest.raises(openai.APIConnectionError):
                client.post(
                    path[3:], body=BODIES[path], cast_to=object, options={"headers": fault(spec)}
                )
        with pytest.raises(openai.InternalServerError) as caught:
            client.post(
                path[3:],
                body=BODIES[path],
                cast_to=object,
                options={"headers": fault("error-after=3")},
            )
        assert caught.value.status_code == 500
        assert caught.value.body == INJECTED_ERROR.to_body()["error"]
        assert caught.value.response.headers["x-mock-fault"] == "error-after=3"
        reply = client.post(path[3:], body=BODIES[path], cast_to=object)  # the client goes on
        assert isinstance(reply, dict)


@pytest.mark.parametrize("k", [0, 3])
def test_sdk_streams_disconnect_after_k_tokens(mock_url: str, k: int) -> None:
    spec = fault(f"disconnect-after={k}")
    with sync_client(mock_url) as client:
        tokens: list[int] = []
        chat = client.chat.completions.create(
            model="m", messages=HELLO, stream=True, extra_headers=spec
        )
        with pytest.raises(openai.APIConnectionError):
            drain(chat, chat_tokens, tokens)
        assert sum(tokens) == k
        texts: list[int] = []
        completions = client.completions.create(
            model="m", prompt="hi", stream=True, extra_headers=spec
        )
        with pytest.raises(openai.APIConnectionError):
            drain(completions, completion_texts, texts)
        assert sum(texts) == k
        deltas: list[int] = []
        responses = client.responses.create(model="m", input="hi", stream=True, extra_headers=spec)
        with pytest.raises(openai.APIConnectionError):
            drain(responses, text_deltas, deltas)
        assert sum(deltas) == k


def test_sdk_streams_error_after_k_tokens(mock_url: str) -> None:
    spec = fault("error-after=4")
    with sync_client(mock_url) as client:
        tokens: list[int] = []
        chat = client.chat.completions.create(
            model="m", messages=HELLO, stream=True, extra_headers=spec
        )
        with pytest.raises(openai.APIError) as caught:
            drain(chat, chat_tokens, tokens)
        assert sum(tokens) == 4
        assert caught.value.message == INJECTED_ERROR.message
        assert caught.value.type == "server_error"
        texts: list[int] = []
        completions = client.completions.create(
            model="m", prompt="hi", stream=True, extra_headers=spec
        )
        with pytest.raises(openai.APIError) as caught:
            drain(completions, completion_texts, texts)
        assert sum(texts) == 4
        assert caught.value.message == INJECTED_ERROR.message
        # The responses API reports an in-stream error as an event, which the SDK yields.
        events = list(
            client.responses.create(model="m", input="hi", stream=True, extra_headers=spec)
        )
        assert sum(map(text_deltas, events)) == 4
        last = events[-1]
        assert last.type == "error"
        assert last.message == INJECTED_ERROR.message


def test_sdk_stall_times_out_after_k_tokens(mock_url: str) -> None:
    with sync_client(mock_url) as client:
        tokens: list[int] = []
        chat = client.with_options(timeout=SDK_STALL_TIMEOUT_S).chat.completions.create(
            model="m", messages=HELLO, stream=True, extra_headers=fault("stall-after=2")
        )
        with pytest.raises(openai.APITimeoutError):
            drain(chat, chat_tokens, tokens)
        assert sum(tokens) == 2


def test_sdk_non_stream_error_after(mock_url: str) -> None:
    with sync_client(mock_url) as client:
        raw = client.chat.completions.with_raw_response
        with pytest.raises(openai.InternalServerError) as caught:
            raw.create(model="m", messages=HELLO, extra_headers=fault("error-after=5"))
        assert caught.value.status_code == 500
        assert caught.value.body == INJECTED_ERROR.to_body()["error"]
        assert caught.value.response.headers["x-mock-fault"] == "error-after=5"
        slow = raw.create(model="m", messages=HELLO, extra_headers=fault("slow-headers=10"))
        assert slow.headers["x-mock-fault"] == "slow-headers=10"
        assert slow.parse().choices[0].message.content


def test_sdk_bad_fault_header(mock_url: str) -> None:
    with sync_client(mock_url) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="m", messages=HELLO, extra_headers=fault("disconnect-after=soon")
            )
        assert caught.value.status_code == 400
        assert (caught.value.param, caught.value.code) == ("x-mock-fault", "invalid_header")
        assert "disconnect-after=soon" in caught.value.message
    response = httpx.post(mock_url + CHAT, json=BODIES[CHAT], headers=fault("600"), timeout=10)
    assert check_error(response, 400, "x-mock-fault")["code"] == "invalid_header"


@pytest.fixture(scope="module")
def always_503_url() -> Generator[str]:
    with server_in_thread(failure_percent=100, failure_mix=("503",)) as url:
        yield url


def test_sdk_every_call_fails_at_100_percent(always_503_url: str) -> None:
    with sync_client(always_503_url) as client:
        for _ in range(3):
            for path, body in BODIES.items():
                with pytest.raises(openai.InternalServerError) as caught:
                    client.post(path[3:], body=body, cast_to=object)
                assert caught.value.status_code == 503
                assert caught.value.code == "service_unavailable"
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="m", messages=HELLO, stream=True)
        # ``none`` spares one request, whatever the failure rate.
        spared = client.chat.completions.with_raw_response.create(
            model="m", messages=HELLO, extra_headers=fault("none")
        )
        assert "x-mock-fault" not in spared.headers
        assert spared.parse().choices[0].message.content


@pytest.mark.slow
def test_sdk_retries_meet_a_fault_each_time(always_503_url: str) -> None:
    with (
        sync_client(always_503_url).with_options(max_retries=2) as client,
        pytest.raises(openai.InternalServerError) as caught,
    ):
        client.chat.completions.create(model="m", messages=HELLO)
    assert caught.value.status_code == 503
    assert caught.value.response.request.headers["x-stainless-retry-count"] == "2"


def fail_fail_succeed_fail_seed(leaves: dict[str, Any]) -> int:
    """A fault seed whose first draws are: fault, fault, no fault, fault."""
    for seed in range(1000):
        first = [fault is not None for fault in draws(4, **leaves, fault_seed=seed)]
        if first == [True, True, False, True]:
            return seed
    raise AssertionError("no seed in 0..999 starts fault, fault, no fault, fault")


@pytest.mark.slow
def test_sdk_retries_get_through_a_seeded_50_percent() -> None:
    leaves: dict[str, Any] = {"failure_percent": 50, "failure_mix": ("503",)}
    seed = fail_fail_succeed_fail_seed(leaves)
    with (
        server_in_thread(**leaves, fault_seed=seed) as url,
        sync_client(url).with_options(max_retries=5) as client,
    ):
        reply = client.chat.completions.with_raw_response.create(model="m", messages=HELLO)
        assert reply.http_request.headers["x-stainless-retry-count"] == "2"
        assert "x-mock-fault" not in reply.headers
        assert reply.parse().choices[0].message.content
        with pytest.raises(openai.InternalServerError):  # the 4th draw, as the seed says
            client.with_options(max_retries=0).chat.completions.create(model="m", messages=HELLO)


# --- the async SDK ------------------------------------------------------------------------------


async def test_async_sdk_faults(start_server: StartServer) -> None:
    url = await start_server(**TWENTY, max_request_s=30)
    async with async_client(url) as client:
        with pytest.raises(openai.InternalServerError) as server_error:
            await client.chat.completions.create(
                model="m", messages=HELLO, extra_headers=fault("502")
            )
        assert (server_error.value.status_code, server_error.value.type) == (502, "cf_bad_gateway")
        with pytest.raises(openai.RateLimitError) as limited:
            await client.embeddings.create(
                model=EMBEDDING_MODEL, input="x", extra_headers=fault("429")
            )
        assert limited.value.code == "rate_limit_exceeded"
        with pytest.raises(openai.APIConnectionError):
            await client.completions.create(
                model="m", prompt="hi", extra_headers=fault("disconnect")
            )

        tokens: list[int] = []
        chat = await client.chat.completions.create(
            model="m", messages=HELLO, stream=True, extra_headers=fault("disconnect-after=5")
        )
        with pytest.raises(openai.APIConnectionError):
            await adrain(chat, chat_tokens, tokens)
        assert sum(tokens) == 5

        texts: list[int] = []
        completions = await client.completions.create(
            model="m", prompt="hi", stream=True, extra_headers=fault("error-after=2")
        )
        with pytest.raises(openai.APIError) as caught:
            await adrain(completions, completion_texts, texts)
        assert sum(texts) == 2
        assert caught.value.message == INJECTED_ERROR.message

        deltas: list[int] = []
        responses = await client.responses.create(
            model="m", input="hi", stream=True, extra_headers=fault("disconnect-after=3")
        )
        with pytest.raises(openai.APIConnectionError):
            await adrain(responses, text_deltas, deltas)
        assert sum(deltas) == 3

        tokens = []
        stalled = await client.with_options(timeout=SDK_STALL_TIMEOUT_S).chat.completions.create(
            model="m", messages=HELLO, stream=True, extra_headers=fault("stall-after=3")
        )
        with pytest.raises(openai.APITimeoutError):
            await adrain(stalled, chat_tokens, tokens)
        assert sum(tokens) == 3

        with pytest.raises(openai.InternalServerError) as failed:
            await client.responses.create(
                model="m", input="hi", extra_headers=fault("error-after=7")
            )
        assert failed.value.status_code == 500
        reply = await client.chat.completions.create(model="m", messages=HELLO)
        assert reply.choices[0].message.content


async def test_async_sdk_at_100_percent(start_server: StartServer) -> None:
    url = await start_server(failure_percent=100, failure_mix=("503",))
    async with async_client(url) as client:
        for _ in range(5):
            with pytest.raises(openai.InternalServerError) as caught:
                await client.responses.create(model="m", input="hi")
            assert caught.value.status_code == 503
        reply = await client.responses.create(model="m", input="hi", extra_headers=fault("none"))
        assert reply.status == "completed"


# --- HTTP/2 (h2c, prior knowledge) --------------------------------------------------------------

H2_FAILURES = (httpx.HTTPError, h2.exceptions.ProtocolError)


async def stream_tokens(client: httpx.AsyncClient, url: str, spec: str | None) -> tuple[int, Any]:
    """Stream a chat reply; return its content tokens and the response's extensions."""
    headers = fault(spec) if spec is not None else {}
    tokens = 0
    async with client.stream("POST", url + CHAT, json=stream_body(CHAT), headers=headers) as r:
        assert r.http_version == "HTTP/2"
        extensions = r.extensions
        if spec is not None:
            assert r.headers["x-mock-fault"] == spec
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                chunk = orjson.loads(line[6:])
                tokens += sum(1 for c in chunk["choices"] if c["delta"].get("content"))
    return tokens, extensions


def h2c_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(http1=False, http2=True, timeout=5)


@IGNORE_HTTPX_GENERATORS
async def test_h2c_stream_disconnect_after_3(start_server: StartServer) -> None:
    url = await start_server(**TWENTY)
    async with h2c_client() as client:
        with trio.fail_after(5):
            tokens, _ = await stream_tokens(client, url, None)
            assert tokens == 20
            seen: list[int] = []

            async def cut() -> None:
                async with client.stream(
                    "POST", url + CHAT, json=stream_body(CHAT), headers=fault("disconnect-after=3")
                ) as r:
                    async for line in r.aiter_lines():
                        if line.startswith("data: {"):
                            chunk = orjson.loads(line[6:])
                            seen.extend(1 for c in chunk["choices"] if c["delta"].get("content"))

            with pytest.raises(H2_FAILURES):
                await cut()
            assert len(seen) == 3
            with pytest.raises(H2_FAILURES):  # a body cut after its status line
                await client.post(
                    url + CHAT, json=BODIES[CHAT], headers=fault("disconnect-after=2")
                )
            after = await client.post(url + CHAT, json=BODIES[CHAT])
            assert after.status_code == 200
            assert after.http_version == "HTTP/2"
            assert after.json()["usage"]["completion_tokens"] == 20
            tokens, _ = await stream_tokens(client, url, None)
            assert tokens == 20


@IGNORE_HTTPX_GENERATORS
async def test_h2c_disconnect_drops_the_whole_connection(start_server: StartServer) -> None:
    url = await start_server(**TWENTY, itl_ms=20)
    results: dict[str, object] = {}
    async with h2c_client() as client:
        await client.post(url + CHAT, json=BODIES[CHAT])  # one connection for both streams

        async def run(spec: str | None) -> None:
            try:
                results[str(spec)], _ = await stream_tokens(client, url, spec)
            except H2_FAILURES as error:
                results[str(spec)] = error

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, None)
                nursery.start_soon(run, "disconnect-after=3")
    assert isinstance(results["disconnect-after=3"], H2_FAILURES)
    # As when a connection drops: the stream sharing it fails too.
    assert isinstance(results["None"], H2_FAILURES), results
