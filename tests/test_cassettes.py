"""Cassettes (issue 21): replay a recording with its own timing, and record one through the
proxy from a real upstream (another trio-mock on loopback).

Replay runs in memory under MockClock, where each chunk must leave exactly at its recorded
offset; recording runs on the real clock, the upstream and the recorder each a
``MockServer`` in a thread of its own.
"""

from __future__ import annotations

import http.server
import math
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import numpy as np
import openai
import orjson
import pytest
import trio
import trio.testing

from asgi import call, chat_content
from conftest import fast_settings
from helpers import free_port
from trio_mock import Settings, SettingsError, create_app, running
from trio_mock._app._cli import main
from trio_mock._openai._cassette import (
    Cassette,
    CassetteError,
    matching_key,
    parse_cassette,
    recording_line,
)
from trio_mock._serve._proxy import append_line
from trio_mock._sim._fit import fit_families
from trio_mock.testing import MockServer

pytest_plugins = ["pytester"]

if TYPE_CHECKING:
    from collections.abc import Generator

    from trio_mock._sim._latency import FloatArray

CHAT = "/v1/chat/completions"
ASK = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
OFFSETS = [0.25, 0.3125, 0.5, 0.5, 1.75]


def chunk(content: str, finish: str | None = None) -> str:
    data = {
        "id": "chatcmpl-recorded123",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }
    return "data: " + orjson.dumps(data).decode() + "\n\n"


def streamed(**extra: Any) -> dict[str, Any]:
    """A hand-written recording of a chat stream: four chunks and ``[DONE]``."""
    texts = [
        chunk("Hello"),
        chunk(" there"),
        chunk(","),
        chunk(" friend", "stop"),
        "data: [DONE]\n\n",
    ]
    return {
        "version": 1,
        "endpoint": "/chat/completions",
        "request": {"headers": {"content-type": "application/json"}, "body": ASK},
        "response": {
            "status": 200,
            "headers": {
                "content-type": "text/event-stream",
                "x-ratelimit-remaining-requests": "99",
            },
            "chunks": [[at, text] for at, text in zip(OFFSETS, texts, strict=True)],
        },
        **extra,
    }


def refused() -> dict[str, Any]:
    body = {**ASK, "stream": False, "messages": [{"role": "user", "content": "again"}]}
    error = {
        "message": "Slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    return {
        "endpoint": "/v1/chat/completions",
        "request": {"body": body},
        "response": {
            "status": 429,
            "headers": {"retry-after": "7"},
            "body": {"error": error},
            "at": 0.1,
        },
    }


def write_cassette(path: Path, *lines: dict[str, Any]) -> str:
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    return str(path)


# --- the format ---------------------------------------------------------------------------


def test_unknown_fields_load_and_are_kept() -> None:
    line = streamed(from_the_future={"x": 1})
    line["response"]["also_new"] = True
    (recording,) = parse_cassette(orjson.dumps(line).decode(), "c.jsonl")
    assert recording.data["from_the_future"] == {"x": 1}
    assert recording.data["response"]["also_new"] is True
    assert recording.label == "c.jsonl:1"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"endpoint": "/chat/completions"', "c.jsonl:2: not JSON (truncated?)"),
        ("[1, 2]", "c.jsonl:2: not a recording: expected a JSON object"),
        ('{"endpoint": "/x", "request": {"body": {}}}', "c.jsonl:2: not a recording: missing field 'response'"),
        (orjson.dumps(streamed() | {"response": {"status": 200, "chunks": [[2, "a"], [1, "b"]]}}).decode(),
         "c.jsonl:2: not a recording: response.chunks[1]: offsets must not go back"),
        (orjson.dumps(streamed() | {"response": {"status": 200, "chunks": [[-1, "a"]]}}).decode(),
         "c.jsonl:2: not a recording: response.chunks[0]: an offset is seconds"),
    ],
)  # fmt: skip
def test_a_bad_line_is_named_by_file_and_line(text: str, problem: str) -> None:
    good = orjson.dumps(streamed()).decode()
    with pytest.raises(CassetteError) as caught:
        parse_cassette(f"{good}\n{text}\n", "c.jsonl")
    assert str(caught.value).startswith(problem)


def test_a_corrupt_cassette_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(orjson.dumps(streamed()).decode() + '\n{"endpoint": "/chat/comp')
    with pytest.raises(SettingsError, match=rf"--cassette .*{path.name}:2: not JSON"):
        create_app(fast_settings(cassette=str(path)))


def test_matching_ignores_key_order_prefixes_and_listed_fields() -> None:
    a = matching_key("/v1/chat/completions", {"model": "m", "user": "u1", "n": 1}, ["user"])
    b = matching_key("/chat/completions", {"n": 1, "model": "m", "user": "u2"}, ["user"])
    assert a == b
    assert a != matching_key("/chat/completions", {"n": 2, "model": "m"}, ["user"])


def test_recordings_of_one_key_are_replayed_in_turn() -> None:
    first, second = parse_cassette(
        "\n".join(orjson.dumps(streamed(take=i)).decode() for i in (1, 2)), "c.jsonl"
    )
    cassette = Cassette([first, second])
    taken = [cassette.take(CHAT, ASK) for _ in range(3)]
    assert taken == [first, second, first]
    assert cassette.take(CHAT, {**ASK, "stream": False}) is None


def test_secrets_are_never_written() -> None:
    line = recording_line(
        endpoint=CHAT,
        request=ASK,
        request_headers={"Authorization": "Bearer sk-secret", "api-key": "k1", "X-Api-Key": "k2",
                         "content-type": "application/json"},
        status=200,
        headers={"content-type": "application/json"},
        body=b"{}",
    )  # fmt: skip
    assert b"sk-secret" not in line
    assert b"k1" not in line
    assert b"k2" not in line
    assert orjson.loads(line)["request"]["headers"] == {"content-type": "application/json"}


# --- replay (MockClock, in memory) ------------------------------------------------------------


async def test_replay_sends_each_chunk_at_its_recorded_offset(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    path = write_cassette(tmp_path / "c.jsonl", streamed())
    app = create_app(fast_settings(cassette=path))
    async with app.test_app():
        answer = await call(app, CHAT, ASK)
        journal = app.live.journal.select()
    assert answer.status == 200
    assert answer.headers["x-ratelimit-remaining-requests"] == "99"
    assert answer.headers["x-mock-recording"] == f"{path}:1"
    assert [at for at, _ in answer.pieces] == [0.25, 0.3125, 0.5, 1.75]  # two were due at 0.5
    events = answer.events()
    assert chat_content(events) == "Hello there, friend"
    assert events[-1][2] == "[DONE]"
    ids = {data["id"] for _, _, data in events if isinstance(data, dict)}
    assert len(ids) == 1
    assert ids != {"chatcmpl-recorded123"}  # fresh, with the recorded prefix
    assert next(iter(ids)).startswith("chatcmpl-")
    assert journal[0]["recording"] == f"{path}:1"


async def test_replay_speed_and_kept_ids(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    path = write_cassette(tmp_path / "c.jsonl", streamed())
    app = create_app(fast_settings(cassette=path, replay_speed=2, replay_keep_ids=True))
    async with app.test_app():
        answer = await call(app, CHAT, ASK)
    assert [at for at, _ in answer.pieces] == [0.125, 0.15625, 0.25, 0.875]
    assert {d["id"] for _, _, d in answer.events() if isinstance(d, dict)} == {
        "chatcmpl-recorded123"
    }
    assert b'"created":1700000000' in answer.body


async def test_a_recorded_error_comes_back_with_its_status_and_headers(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    path = write_cassette(tmp_path / "c.jsonl", streamed(), refused())
    app = create_app(fast_settings(cassette=path))
    async with app.test_app():
        answer = await call(app, CHAT, refused()["request"]["body"])
    assert answer.status == 429
    assert answer.headers["retry-after"] == "7"
    assert answer.json()["error"] == refused()["response"]["body"]["error"]


async def test_unmatched_requests_are_generated_or_refused_in_strict_mode(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    path = write_cassette(tmp_path / "c.jsonl", streamed())
    other = {**ASK, "messages": [{"role": "user", "content": "something else"}]}
    app = create_app(fast_settings(cassette=path))
    async with app.test_app():
        generated = await call(app, CHAT, other)
        assert generated.status == 200
        assert "x-mock-recording" not in generated.headers
        await app.live.update({"replay_strict": True})
        strict = await call(app, CHAT, other)
    assert strict.status == 404
    assert strict.json()["error"]["code"] == "recording_not_found"


async def test_a_missing_cassette_is_an_empty_one(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    app = create_app(fast_settings(cassette=str(tmp_path / "none-yet.jsonl"), replay_strict=True))
    async with app.test_app():
        assert (await call(app, CHAT, ASK)).status == 404


# --- record (real upstream on loopback, real clock) ------------------------------------------

UPSTREAM: dict[str, Any] = {"output_mode": "fixed", "fixed_text": "one two three four five six",
                            "ttft_ms": 150, "itl_ms": 30}  # fmt: skip


def record(cassette: Path, upstream_url: str, body: dict[str, Any], **knobs: Any) -> httpx.Response:
    """One request through a recording trio-mock in front of ``upstream_url``."""
    settings = fast_settings(record_upstream=upstream_url, cassette=str(cassette), **knobs)
    with MockServer(settings) as recorder, httpx.Client(timeout=30) as client:
        url, key = recorder.url + "/chat/completions", {"authorization": "Bearer sk-never-written"}
        return client.post(url, json=body, headers=key)


def lines(cassette: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in cassette.read_bytes().splitlines()]


def test_record_then_replay_keeps_content_status_headers_and_timing(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    with MockServer(fast_settings(**UPSTREAM, rate_limit_rpm=1000)) as upstream:
        live = record(cassette, upstream.url, ASK)
    assert live.status_code == 200
    assert b"sk-never-written" not in cassette.read_bytes()
    (line,) = lines(cassette)
    assert line["response"]["headers"]["x-ratelimit-limit-requests"] == "1000"
    offsets = [at for at, _ in line["response"]["chunks"]]
    tokens = len(UPSTREAM["fixed_text"].split())
    assert len(offsets) == 1 + tokens + 1  # the role chunk (sent with the first token), [DONE]
    assert offsets[1] == pytest.approx(0.15, abs=0.1)  # loopback, a shared machine
    assert offsets[tokens] - offsets[1] == pytest.approx((tokens - 1) * 0.03, abs=0.1)

    async def replay() -> tuple[Any, list[float]]:
        app = create_app(fast_settings(cassette=str(cassette)))
        async with app.test_app():
            return await call(app, CHAT, ASK), offsets

    answer, _ = trio.run(replay, clock=trio.testing.MockClock(autojump_threshold=0))
    assert answer.status == live.status_code
    assert (
        answer.headers["x-ratelimit-limit-requests"] == live.headers["x-ratelimit-limit-requests"]
    )
    assert answer.headers["content-type"] == live.headers["content-type"]
    replayed = answer.events()
    assert chat_content(replayed) == UPSTREAM["fixed_text"]
    sent = sorted({at for at, _, _ in replayed})
    assert sent == sorted(set(offsets))  # exactly the recorded offsets


def test_upstream_errors_are_answered_and_recorded(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    faulty = fast_settings(failure_percent=100, failure_mix="429", fault_retry_after_s=3)
    with MockServer(faulty) as upstream:
        limited = record(cassette, upstream.url, ASK)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    closed = f"http://127.0.0.1:{free_port()}/v1"
    unreachable = record(cassette, closed, ASK)
    assert unreachable.status_code == 502
    assert unreachable.json()["error"]["code"] == "upstream_unreachable"
    with MockServer(fast_settings(ttft_ms=3000)) as slow:
        timed_out = record(cassette, slow.url, {**ASK, "stream": False}, upstream_timeout_s=0.3)
    assert timed_out.status_code == 504
    assert timed_out.json()["error"]["code"] == "upstream_timeout"
    cutting = fast_settings(failure_percent=100, failure_mix="disconnect-after=2")
    with MockServer(cutting) as cut, pytest.raises(httpx.HTTPError):
        record(cassette, cut.url, ASK)
    recorded = lines(cassette)
    assert [r["response"]["status"] for r in recorded] == [429, 502, 504, 200]
    assert recorded[0]["response"]["headers"]["retry-after"] == "3"
    assert recorded[1]["response"]["body"]["error"]["code"] == "upstream_unreachable"
    assert "cut" in recorded[3]["response"]
    assert len(recorded[3]["response"]["chunks"]) == 3  # the role chunk and two tokens


class SlowToEnd(http.server.BaseHTTPRequestHandler):
    """An upstream whose SSE stream sends its events, then keeps the stream open for
    ``hold_s`` before it ends (the chunked body's terminator): as a real upstream can after
    ``data: [DONE]``, and as one mid-stream does."""

    protocol_version = "HTTP/1.1"
    events: ClassVar[list[str]] = [chunk("Hi"), chunk(" there", "stop"), "data: [DONE]\n\n"]
    hold_s: ClassVar[float] = 0.3

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for event in self.events:
            data = event.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        time.sleep(self.hold_s)
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def slow_to_end(events: list[str], hold_s: float) -> Generator[str]:
    """A ``SlowToEnd`` upstream on loopback, in a thread; its base URL."""
    handler = type("Handler", (SlowToEnd,), {"events": events, "hold_s": hold_s})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def leave_after(recorder: MockServer, last: str) -> None:
    """Stream a chat through ``recorder`` and close the connection once an event starts
    with ``last``, as the openai SDK does at ``data: [DONE]``."""
    with (
        httpx.Client(timeout=10) as client,
        client.stream("POST", recorder.url + "/chat/completions", json=ASK) as response,
    ):
        for line in response.iter_lines():
            if line.startswith(last):
                break


def test_a_client_that_leaves_at_done_still_gets_its_stream_recorded(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    with (
        slow_to_end(SlowToEnd.events, hold_s=0.3) as upstream,
        MockServer(fast_settings(record_upstream=upstream, cassette=str(cassette))) as recorder,
    ):
        leave_after(recorder, "data: [DONE]")
        deadline = time.monotonic() + 5  # the upstream ends 0.3 s later; then the line
        while not (cassette.exists() and cassette.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.02)
    (line,) = lines(cassette)
    assert [text for _, text in line["response"]["chunks"]] == SlowToEnd.events
    assert "cut" not in line["response"]


def test_a_client_that_leaves_mid_stream_is_not_recorded(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    first = SlowToEnd.events[:1]  # then the upstream holds the stream for 3 s
    with (
        slow_to_end(first, hold_s=3.0) as upstream,
        MockServer(fast_settings(record_upstream=upstream, cassette=str(cassette))) as recorder,
    ):
        started = time.monotonic()
        leave_after(recorder, "data: ")
        while not recorder.requests() and time.monotonic() < started + 5:
            time.sleep(0.02)  # the proxy gave up on the upstream (after DRAIN_S)
        (entry,) = recorder.requests()
    assert entry["disconnected"]
    assert time.monotonic() - started < 3.0  # not the upstream's 3 s: DRAIN_S after leaving
    assert not cassette.exists() or cassette.read_bytes() == b""


# --- fit ----------------------------------------------------------------------------------


def lognormal(rng: np.random.Generator, mean: float, sd: float, size: int) -> FloatArray:
    """Draws with this mean and standard deviation (the knobs' parametrisation)."""
    sigma2 = math.log1p((sd / mean) ** 2)
    return rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), size)


def test_fit_recovers_lognormal_ttft_and_itl(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(21)
    cassette, profile = tmp_path / "c.jsonl", tmp_path / "profile.toml"
    with cassette.open("wb") as out:
        for ttft_ms in lognormal(rng, 200, 60, 1500):
            gaps_ms = lognormal(rng, 20, 8, 9)
            times = np.cumsum([ttft_ms, *gaps_ms]) / 1000
            chunks = [(float(at), chunk(f" w{i}").encode()) for i, at in enumerate(times)]
            chunks.append((float(times[-1]), b"data: [DONE]\n\n"))
            out.write(recording_line(endpoint=CHAT, request=ASK, request_headers={}, status=200,
                                     headers={}, chunks=chunks))  # fmt: skip
    with pytest.raises(SystemExit) as exited:
        main(["fit", str(cassette), "--output", str(profile)])
    assert exited.value.code == 0
    text = profile.read_text()
    assert "# TTFT: lognormal fits best" in text
    latency = Settings.load(config=profile, env={}).latency
    assert (latency.ttft_distribution, latency.itl_distribution) == ("lognormal", "lognormal")
    assert latency.ttft_ms == pytest.approx(200, rel=0.1)
    assert latency.ttft_jitter_ms == pytest.approx(60, rel=0.1)
    assert latency.itl_ms == pytest.approx(20, rel=0.1)
    assert latency.itl_jitter_ms == pytest.approx(8, rel=0.1)
    output = Settings.load(config=profile, env={}).output
    assert output.output_tokens_mean == 10  # every stream: 10 text chunks, no usage
    assert output.output_tokens_distribution == "fixed"
    main_exit = pytest.raises(SystemExit)
    with main_exit:
        main(["fit", str(tmp_path / "empty.jsonl")])
    assert main_exit.excinfo.value.code == 2
    assert "no streamed answer with text" in capsys.readouterr().err


def test_fit_tells_normal_from_lognormal() -> None:
    rng = np.random.default_rng(5)
    fits = fit_families(rng.normal(100, 10, 2000).tolist())
    assert fits[0].family == "normal"
    assert fits[0].mean == pytest.approx(100, rel=0.02)
    assert fits[0].ks < 0.05
    assert fit_families([3.0, 3.0])[0].family == "constant"


# --- the library and the pytest plugin --------------------------------------------------------


async def test_running_takes_a_cassette(tmp_path: Path) -> None:
    path = write_cassette(tmp_path / "c.jsonl", streamed())
    async with running(fast_settings(), cassette=path, replay_speed=100) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            answer = await client.post(server.url + "/chat/completions", json=ASK)
        entries = await server.requests()
    assert answer.headers["x-mock-recording"] == f"{path}:1"
    assert "Hello there, friend" in "".join(
        c["choices"][0]["delta"].get("content", "")
        for c in (
            orjson.loads(line[6:])
            for line in answer.text.splitlines()
            if line.startswith("data: {")
        )
    )
    assert entries[0]["recording"] == f"{path}:1"


SUITE = """
    import httpx

    def test_asks(trio_mock_server):
        body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}]}
        answer = httpx.post(trio_mock_server.url + "/chat/completions", json=body, timeout=30)
        assert answer.status_code == 200
        print("RECORDING", answer.headers.get("x-mock-recording"))
"""


@pytest.mark.slow
def test_the_plugin_records_once_then_replays(pytester: pytest.Pytester) -> None:
    cassette = pytester.path / "llm.jsonl"
    pytester.makepyfile(test_suite=SUITE)
    with MockServer(fast_settings(output_mode="fixed", fixed_text="recorded words")) as upstream:
        recorded = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-s", "--trio-mock-record", upstream.url,
            "--trio-mock-cassette", str(cassette),
        )  # fmt: skip
    recorded.assert_outcomes(passed=1)
    (line,) = lines(cassette)
    assert line["response"]["body"]["choices"][0]["message"]["content"] == "recorded words"
    replayed = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-s", "--trio-mock-cassette", str(cassette)
    )
    replayed.assert_outcomes(passed=1)
    replayed.stdout.fnmatch_lines([f"*RECORDING {cassette}:1*"])


def test_the_readme_walk_through_with_the_openai_sdk(tmp_path: Path) -> None:
    """Record a stream through the proxy with the SDK, then replay it to the same code."""
    cassette = str(tmp_path / "llm.jsonl")

    def ask(url: str) -> str:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        stream = client.chat.completions.create(
            model="gpt-4o-mini", stream=True,
            messages=[{"role": "user", "content": "Name three rivers."}],
        )  # fmt: skip
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    text = "Rhine, Danube and Volga."
    with MockServer(fast_settings(output_mode="fixed", fixed_text=text, itl_ms=5)) as upstream:
        recording = fast_settings(record_upstream=upstream.url, cassette=cassette)
        with MockServer(recording) as recorder:
            assert ask(recorder.url) == text
    with MockServer(fast_settings(cassette=cassette, replay_strict=True)) as replayer:
        assert ask(replayer.url) == text
        assert replayer.requests()[0]["recording"] == f"{cassette}:1"


def test_recording_needs_a_cassette() -> None:
    with pytest.raises(SettingsError, match=r"--record-upstream .*needs --cassette"):
        create_app(fast_settings(record_upstream="http://127.0.0.1:1/v1"))


def test_the_cli_names_a_corrupt_line_and_exits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(orjson.dumps(streamed()).decode() + "\n\n" + '{"endpoint": "/chat/comp')
    with pytest.raises(SystemExit) as exited:
        main(["--cassette", str(path), "--corpus-articles", "8", "--tokenizer", "approx"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"trio-mock: error: --cassette (TRIO_MOCK_CASSETTE): {path}:3: not JSON")
    assert len(err.splitlines()) == 1


def test_lines_appended_at_once_never_interleave(tmp_path: Path) -> None:
    """Several writers (workers) appending big lines: each line stays whole."""
    path = str(tmp_path / "c.jsonl")

    def writer(n: int) -> None:
        for i in range(20):
            line = streamed(writer=n, turn=i, padding="x" * 200_000)
            append_line(path, orjson.dumps(line) + b"\n")

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    recordings = parse_cassette(Path(path).read_text(), path)
    assert sorted((r.data["writer"], r.data["turn"]) for r in recordings) == [
        (n, i) for n in range(4) for i in range(20)
    ]
