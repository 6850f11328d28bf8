"""Embedding trio-mock: ``trio_mock.running()`` in a Trio program, ``MockServer`` anywhere.

What this file proves, over real loopback HTTP (httpx and the official SDK):

- ``running()``: ``base_url`` answers ``/health``, ``url`` is what ``openai.AsyncOpenAI``
  takes; the journal lists each request with its model, endpoint and status, filters and
  clears; ``configure`` changes the next request's ``x-mock-ttft-ms`` and returns the
  names that changed; a bad or unknown knob raises ``SettingsError`` and changes nothing
  (not even the good knobs given with it); a start-up-only knob is refused; ``script``
  makes the next reply exact; ``reset`` empties the journal and the scripts, restores the
  settings and zeroes ``/metrics``, and refuses a start-up-only difference.
- Leaving ``running()`` mid-stream: a stream that ends within ``graceful_timeout_s`` is
  delivered whole, and the exit does not wait out the period; a longer one is cut once the
  period is over, not before.
- ``MockServer``: the same from a plain sync test (the sync SDK), from inside a pytest-trio
  task (its sync methods called on a Trio thread), and from ``asyncio.run``;
  ``reset()`` goes back to its start settings; ``stop()`` from a worker thread lets an
  in-flight stream finish; stop is idempotent, a second start is refused, a stopped server
  can start again, and a stopped one refuses calls.
- Start-up failures (port held by our own socket, a bad scripts file, an unknown tokenizer)
  raise from ``start()``/``__enter__`` at once, and the server's thread is gone.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import socket
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import openai
import pytest
import trio

import trio_mock
from trio_mock import Settings, SettingsError
from trio_mock._openai._errors import OpenAIError
from trio_mock.testing import MockServer

if TYPE_CHECKING:
    from pathlib import Path

    from openai.types.chat import ChatCompletionMessageParam

FAST: dict[str, Any] = {"ttft_ms": 0, "itl_ms": 0, "corpus_articles": 64}
TIMEOUT_S = 10.0
CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
HELLO: list[dict[str, str]] = [{"role": "user", "content": "Say hello."}]
SDK_HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
EXACT = "Exactly this reply, word for word."
RULE: dict[str, Any] = {"match": {"endpoint": "chat"}, "reply": {"content": EXACT}, "times": 1}
THREAD_NAME = "trio-mock"  # MockServer's thread


def chat(model: str = "m", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": HELLO, **extra}


def content(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


def ttft_header(response: httpx.Response) -> float:
    assert response.status_code == 200, response.text
    return float(response.headers["x-mock-ttft-ms"])


def requests_total(metrics_text: str) -> list[str]:
    """The ``trio_mock_requests_total`` samples of a ``/metrics`` page."""
    return [
        line for line in metrics_text.splitlines() if line.startswith("trio_mock_requests_total{")
    ]


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]


def summary(entries: list[dict[str, Any]]) -> list[tuple[str, str | None, int | None]]:
    return [(e["endpoint"], e["model"], e["status"]) for e in entries]


# --- running(): in the caller's Trio run -------------------------------------------------------


async def test_running_base_url_and_url_serve_http_and_the_sdk() -> None:
    async with trio_mock.running(**FAST) as server:
        assert server.url == server.base_url + "/v1"
        host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0  # port 0 resolved to the bound one
        async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http:
            health = await http.get("/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        async with openai.AsyncOpenAI(
            base_url=server.url, api_key="unused", max_retries=0, timeout=TIMEOUT_S
        ) as sdk:
            completion = await sdk.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )
        assert completion.choices[0].message.content
        assert completion.model == "gpt-4o-mini"
        (entry,) = await server.requests()
        assert (entry["endpoint"], entry["model"], entry["status"]) == (
            "/v1/chat/completions",
            "gpt-4o-mini",
            200,
        )
        assert server.settings == Settings().replace(port=0, **FAST)


async def test_running_applies_knobs_over_the_settings_given() -> None:
    given = Settings().replace(port=0, corpus_articles=64, output_mode="fixed", fixed_text="A")
    async with (
        trio_mock.running(given, fixed_text="B", ttft_ms=0, itl_ms=0) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http,
    ):
        assert server.settings == given.replace(fixed_text="B", ttft_ms=0, itl_ms=0)
        assert content(await http.post(CHAT, json=chat())) == "B"


@pytest.mark.parametrize(
    ("knobs", "words"), [({"no_such_knob": 1}, "no_such_knob"), ({"port": -1}, "--port")]
)
async def test_running_bad_knob_raises_before_serving(knobs: dict[str, Any], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        async with trio_mock.running(**knobs):
            pytest.fail("the body ran")


async def test_running_journal_shows_requests_filters_and_clears() -> None:
    async with (
        trio_mock.running(**FAST) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http,
    ):
        assert await server.requests() == []
        assert (await http.post(CHAT, json=chat("alpha"))).status_code == 200
        assert (await http.post(CHAT, json=chat("beta", stream=True))).status_code == 200
        embedding = await http.post(EMBEDDINGS, json={"model": "emb", "input": "x"})
        assert embedding.status_code == 200
        bad = await http.post(CHAT, json={"model": "alpha", "messages": "not a list"})
        assert bad.status_code == 400

        entries = await server.requests()
        assert summary(entries) == [
            (CHAT, "alpha", 200),
            (CHAT, "beta", 200),
            (EMBEDDINGS, "emb", 200),
            (CHAT, "alpha", 400),
        ]
        assert [e["stream"] for e in entries] == [False, True, False, False]
        assert summary(await server.requests(model="alpha")) == [
            (CHAT, "alpha", 200),
            (CHAT, "alpha", 400),
        ]
        assert summary(await server.requests(endpoint="/embeddings")) == [(EMBEDDINGS, "emb", 200)]
        assert summary(await server.requests(status=400)) == [(CHAT, "alpha", 400)]
        assert summary(await server.requests(limit=1)) == [(CHAT, "alpha", 400)]

        assert server.clear_requests() == 4
        assert await server.requests() == []


async def test_running_configure_changes_the_next_request() -> None:
    async with (
        trio_mock.running(**FAST) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http,
    ):
        before = ttft_header(await http.post(CHAT, json=chat()))
        assert before < 150

        assert await server.configure(ttft_ms=150, ttft_distribution="constant") == [
            "ttft_distribution",
            "ttft_ms",
        ]
        assert server.settings.latency.ttft_ms == 150
        after = ttft_header(await http.post(CHAT, json=chat()))
        assert 150 <= after < 1000
        (_, entry) = await server.requests()
        assert entry["plan"]["ttft_ms"] == pytest.approx(after, abs=0.01)

        # The same values again change nothing; a mapping works as keywords do.
        assert await server.configure({"ttft_ms": 150}) == []
        assert await server.configure({"latency": {"ttft_ms": 0}}) == ["ttft_ms"]
        assert ttft_header(await http.post(CHAT, json=chat())) < 150


@pytest.mark.parametrize(
    ("knobs", "words"),
    [
        ({"ttft_ms": -5}, ["--ttft-ms", "-5"]),
        ({"itl_ms": 3, "ttft_ms": "soon"}, ["--ttft-ms", "soon"]),  # the good one is not applied
        ({"itl_ms": 3, "no_such_knob": 1}, ["no_such_knob"]),
        ({"output_mode": "poetry"}, ["--output-mode", "poetry"]),
    ],
)
async def test_running_bad_knob_raises_and_changes_nothing(
    knobs: dict[str, Any], words: list[str]
) -> None:
    async with (
        trio_mock.running(**FAST) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http,
    ):
        before = server.settings
        with pytest.raises(SettingsError) as caught:
            await server.configure(**knobs)
        for word in words:
            assert word in str(caught.value)
        assert server.settings == before
        response = await http.post(CHAT, json=chat())
        assert response.headers["x-mock-itl-ms"] == "0.000"


@pytest.mark.parametrize("knobs", [{"port": 1}, {"workers": 2}, {"backlog": 16}, {"host": "::1"}])
async def test_running_start_up_only_knob_is_refused(knobs: dict[str, Any]) -> None:
    async with trio_mock.running(**FAST) as server:
        before = server.settings
        with pytest.raises(SettingsError, match="read at start-up only"):
            await server.configure(ttft_ms=7, **knobs)
        assert server.settings == before


async def test_running_script_makes_the_next_reply_exact() -> None:
    async with (
        trio_mock.running(**FAST) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http,
    ):
        (rule,) = server.script(RULE)
        assert isinstance(rule["id"], int)
        assert rule["reply"]["content"] == EXACT
        scripted = await http.post(CHAT, json=chat())
        assert content(scripted) == EXACT
        assert scripted.headers["x-mock-rule"] == str(rule["id"])
        assert content(await http.post(CHAT, json=chat())) != EXACT  # times=1: used up
        (listed,) = server.scripts()
        assert (listed["id"], listed["hits"], listed["remaining"]) == (rule["id"], 1, 0)
        assert [e["rule"] for e in await server.requests()] == [f"rule {rule['id']}", None]
        assert server.clear_scripts() == 1
        assert server.scripts() == []


async def test_running_bad_rule_adds_nothing() -> None:
    async with trio_mock.running(**FAST) as server:
        with pytest.raises(OpenAIError, match="nope"):
            server.script(RULE, {"reply": {"nope": 1}})
        assert server.scripts() == []


async def test_running_reset_forgets_everything() -> None:
    async with (
        trio_mock.running(**FAST) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http,
    ):
        start = server.settings
        assert (await http.post(CHAT, json=chat())).status_code == 200
        server.script(RULE | {"times": None})
        await server.configure(ttft_ms=120, output_mode="fixed")
        metrics = (await http.get("/metrics")).text  # "m" is not listed: it counts as "other"
        assert requests_total(metrics) == [
            'trio_mock_requests_total{endpoint="/chat/completions",model="other",status="200"} 1.0'
        ]

        await server.reset(start)

        assert server.settings == start
        assert await server.requests() == []
        assert server.scripts() == []
        assert requests_total((await http.get("/metrics")).text) == []
        reply = await http.post(CHAT, json=chat())
        assert content(reply) != EXACT
        assert ttft_header(reply) < 120
        metrics = (await http.get("/metrics")).text
        assert requests_total(metrics) == [
            'trio_mock_requests_total{endpoint="/chat/completions",model="other",status="200"} 1.0'
        ]

        with pytest.raises(SettingsError, match="read at start-up only"):
            await server.reset(start.replace(workers=2))
        assert server.settings == start


async def test_running_reset_refills_rate_limit_buckets() -> None:
    async with (
        trio_mock.running(**FAST, rate_limit_rpm=1) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http,
    ):
        assert (await http.post(CHAT, json=chat())).status_code == 200
        assert (await http.post(CHAT, json=chat())).status_code == 429
        await server.reset(server.settings)
        assert (await http.post(CHAT, json=chat())).status_code == 200
        assert (await http.post(CHAT, json=chat())).status_code == 429


async def test_running_reset_to_other_settings() -> None:
    async with (
        trio_mock.running(**FAST) as server,
        httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http,
    ):
        target = server.settings.replace(output_mode="fixed", fixed_text="After reset.")
        await server.reset(target)
        assert server.settings == target
        assert content(await http.post(CHAT, json=chat())) == "After reset."


# --- running(): leaving it while a stream is in flight ------------------------------------------


STREAM = chat(stream=True)


async def stream_lines(
    url: str, lines: list[str], first: trio.Event, failures: list[Exception]
) -> None:
    """Read one chat stream's SSE lines into ``lines``; note a transport failure."""
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as http:
        try:
            async with http.stream("POST", CHAT, json=STREAM) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line:
                        lines.append(line)
                        first.set()
        except httpx.TransportError as error:
            failures.append(error)


async def exit_mid_stream(
    graceful_s: float, tokens: int, itl_ms: float
) -> tuple[float, list[str], list[Exception]]:
    """Leave ``running()`` once a stream has begun; return how long the exit took, the
    lines the client read and its transport failures."""
    lines: list[str] = []
    failures: list[Exception] = []
    first = trio.Event()
    settings = Settings().replace(
        port=0,
        corpus_articles=64,
        ttft_ms=0,
        itl_ms=itl_ms,
        itl_distribution="constant",
        output_tokens_mean=tokens,
        output_tokens_distribution="fixed",
        graceful_timeout_s=graceful_s,
    )
    with trio.fail_after(graceful_s + 5):
        async with trio.open_nursery() as nursery:
            async with trio_mock.running(settings) as server:
                nursery.start_soon(stream_lines, server.base_url, lines, first, failures)
                await first.wait()
                leaving = trio.current_time()
            took = trio.current_time() - leaving
    return took, lines, failures


async def test_exit_lets_a_short_stream_finish() -> None:
    took, lines, failures = await exit_mid_stream(graceful_s=5.0, tokens=20, itl_ms=20)
    assert failures == []
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == 20
    assert took < 5.0  # done when the stream is, not at the end of the period


async def test_exit_cuts_a_long_stream_after_the_period() -> None:
    graceful_s = 0.5
    took, lines, failures = await exit_mid_stream(graceful_s=graceful_s, tokens=100, itl_ms=100)
    assert graceful_s - 0.05 <= took < graceful_s + 3  # the stream itself needs 10 s
    assert "data: [DONE]" not in lines
    assert 1 <= len(lines) < 50
    assert len(failures) == 1
    assert isinstance(failures[0], httpx.RemoteProtocolError)


# --- MockServer: its own thread, from sync, Trio and asyncio code -------------------------------


def test_mock_server_from_a_sync_test() -> None:
    with MockServer(**FAST) as server:
        assert server.url == server.base_url + "/v1"
        with openai.OpenAI(
            base_url=server.url, api_key="unused", max_retries=0, timeout=TIMEOUT_S
        ) as sdk:
            completion = sdk.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
            )
            assert completion.choices[0].message.content
            assert summary(server.requests()) == [(CHAT, "gpt-4o-mini", 200)]

            assert server.configure(ttft_ms=150, ttft_distribution="constant") == [
                "ttft_distribution",
                "ttft_ms",
            ]
            assert server.current_settings.latency.ttft_ms == 150
            assert server.settings.latency.ttft_ms == 0  # the start settings stay
            raw = sdk.chat.completions.with_raw_response.create(model="m", messages=SDK_HELLO)
            assert 150 <= float(raw.headers["x-mock-ttft-ms"]) < 1000

            with pytest.raises(SettingsError, match="--itl-ms"):
                server.configure(itl_ms=-1)
            with pytest.raises(SettingsError, match="read at start-up only"):
                server.configure(port=1)
            assert server.current_settings.latency.itl_ms == 0

            (rule,) = server.script(RULE)
            reply = sdk.chat.completions.create(model="m", messages=SDK_HELLO)
            assert reply.choices[0].message.content == EXACT
            assert [r["hits"] for r in server.scripts()] == [1]
            assert [e["rule"] for e in server.requests(limit=1)] == [f"rule {rule['id']}"]
            assert server.clear_requests() == 3

            server.script(RULE)
            server.reset()
            assert server.current_settings == server.settings
            assert server.requests() == []
            assert server.scripts() == []
            raw = sdk.chat.completions.with_raw_response.create(model="m", messages=SDK_HELLO)
            assert float(raw.headers["x-mock-ttft-ms"]) < 150
            assert raw.parse().choices[0].message.content != EXACT

            server.reset(server.settings.replace(output_mode="fixed", fixed_text="Reset to this."))
            reply = sdk.chat.completions.create(model="m", messages=SDK_HELLO)
            assert reply.choices[0].message.content == "Reset to this."
            assert server.clear_scripts() == 0


async def test_mock_server_sync_methods_inside_a_trio_task() -> None:
    assert trio.lowlevel.current_trio_token() is not None  # this test's thread runs Trio
    with MockServer(**FAST, models=("m", "trio-model")) as server:  # each its own label
        async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http:
            assert content(await http.post(CHAT, json=chat("trio-model"))) != EXACT
            assert summary(server.requests()) == [(CHAT, "trio-model", 200)]
            assert server.configure(ttft_ms=150, ttft_distribution="constant") != []
            assert ttft_header(await http.post(CHAT, json=chat())) >= 150
            server.script(RULE)
            assert content(await http.post(CHAT, json=chat())) == EXACT
            metrics = (await http.get("/metrics")).text
            assert len(requests_total(metrics)) == 2  # two models
            server.reset()
            assert server.requests() == []
            assert server.scripts() == []
            assert server.current_settings == server.settings
            assert requests_total((await http.get("/metrics")).text) == []


def test_mock_server_from_asyncio() -> None:
    async def main(server: MockServer) -> list[str]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT_S) as http:
            server.script(RULE)
            first = content(await http.post(CHAT, json=chat("aio")))
            server.configure(output_mode="fixed", fixed_text="From asyncio.")
            second = content(await http.post(CHAT, json=chat("aio")))
            assert summary(server.requests(model="aio")) == [(CHAT, "aio", 200)] * 2
            return [first, second]

    with MockServer(**FAST) as server:
        assert asyncio.run(main(server)) == [EXACT, "From asyncio."]


async def test_mock_server_stop_from_a_thread_lets_a_stream_finish() -> None:
    lines: list[str] = []
    failures: list[Exception] = []
    first = trio.Event()
    server = MockServer(
        **(FAST | {"itl_ms": 20}),
        itl_distribution="constant",
        output_tokens_mean=20,
        output_tokens_distribution="fixed",
        graceful_timeout_s=5.0,
    ).start()
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream_lines, server.base_url, lines, first, failures)
                await first.wait()
                await trio.to_thread.run_sync(server.stop)
                assert server_threads() == []
    finally:
        server.stop()
    assert failures == []
    assert lines[-1] == "data: [DONE]"


def test_mock_server_stop_is_idempotent_and_restart_works() -> None:
    server = MockServer(**FAST)
    server.stop()  # never started: nothing to do
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    with pytest.raises(RuntimeError, match="not running"):
        server.requests()

    with server:
        with pytest.raises(RuntimeError, match="already started"):
            server.start()
        with httpx.Client(base_url=server.base_url, timeout=TIMEOUT_S) as http:
            assert http.get("/health").status_code == 200
    assert server_threads() == []
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        server.configure(ttft_ms=1)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.current_settings

    with server, httpx.Client(base_url=server.base_url, timeout=TIMEOUT_S) as http:
        assert http.get("/health").status_code == 200
        assert server.requests() == []
    assert server_threads() == []


# --- MockServer: start-up failures ---------------------------------------------------------------


def held_port() -> socket.socket:
    """A loopback socket bound and listening: its port is taken while we hold it."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    return holder


class PortFailure(NamedTuple):
    """What ``start()`` on a taken port did, kept as plain data: a live exception holds
    the failed socket through its traceback."""

    kind: type[BaseException]
    leaves: list[tuple[type[BaseException], int | None]]
    took_s: float
    threads: list[threading.Thread]
    unclosed: list[str]  # ResourceWarnings once the exception is garbage


def leaf_errors(error: BaseException) -> list[tuple[type[BaseException], int | None]]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for member in error.exceptions for leaf in leaf_errors(member)]
    return [(type(error), getattr(error, "errno", None))]


def start_on_taken_port() -> PortFailure:
    with held_port() as holder:
        server = MockServer(**FAST, port=holder.getsockname()[1])
        began = time.monotonic()
        try:
            server.start()
        except BaseException as error:
            kind, leaves = type(error), leaf_errors(error)
        else:
            server.stop()
            pytest.fail("start() succeeded on a taken port")
        took_s = time.monotonic() - began
    threads = server_threads()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url
    server.stop()  # nothing to stop
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    return PortFailure(kind, leaves, took_s, threads, unclosed)


def test_start_on_a_taken_port_fails_at_once_and_the_thread_ends() -> None:
    failure = start_on_taken_port()
    assert failure.leaves == [(OSError, errno.EADDRINUSE)]
    assert failure.took_s < 5.0
    assert failure.threads == []


def test_start_on_a_taken_port_raises_os_error() -> None:
    assert start_on_taken_port().kind is OSError


def test_start_on_a_taken_port_closes_its_socket() -> None:
    assert start_on_taken_port().unclosed == []


def test_bad_scripts_file_fails_in_enter(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text('[{"reply": {"content": "x"}, "times": 0}]', encoding="utf-8")
    server = MockServer(**FAST, scripts_file=str(rules))
    with pytest.raises(SettingsError, match="--scripts-file") as caught, server:
        pytest.fail("the body ran")
    assert "times" in str(caught.value)
    assert server_threads() == []


def test_unknown_tokenizer_fails_in_start() -> None:
    server = MockServer(**FAST, tokenizer="no-such-encoding")
    with pytest.raises(ValueError, match="no-such-encoding"):
        server.start()
    assert server_threads() == []


@pytest.mark.parametrize(
    ("knobs", "words"),
    [({"no_such_knob": 1}, "no_such_knob"), ({"ttft_ms": -1}, "--ttft-ms")],
)
def test_bad_knob_fails_before_any_thread(knobs: dict[str, Any], words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        MockServer(**knobs)
    assert server_threads() == []


async def test_an_error_in_the_body_comes_out_as_itself() -> None:
    """Not wrapped in the ExceptionGroup of the server's nursery: ``except`` and
    ``pytest.raises`` see what the body raised."""
    with pytest.raises(KeyError, match="mine"):
        async with trio_mock.running(**FAST):
            raise KeyError("mine")
