"""Prometheus metrics (issue 6): ``GET /metrics`` under trio-mock's names and vLLM's, and
``GET /_mock/stats``.

What this file proves:

- After a known mix over loopback (streamed and cut chats, with and without ``/v1``, bodies
  ending on "stop" and on "length", embeddings, invalid 400s, injected 503s) every counter
  holds exactly what the responses reported: requests by endpoint/model/status, prompt and
  generation tokens (a cut stream counts the tokens it sent), faults by kind, and the
  histograms' counts (TTFT: one per planned request; ITL: one per gap between token events;
  e2e), under both naming schemes; vLLM's success counter splits stop/length/abort.
- The running/waiting gauges show requests held by a slow TTFT behind
  ``max_concurrency=1`` while they are in flight, and fall back to 0; a client that leaves
  counts as a disconnect and as an "abort".
- ``observe_many`` exposes what one ``observe`` per value does (bounds, ``+Inf``, empty).
- Under MockClock each duration lands in the bucket its schedule says.
- ``/metrics`` is open when API keys are set; ``--no-metrics`` makes it a 404.
- With ``--workers 2`` (the real CLI) every scrape, whichever worker answers it, counts the
  requests of both.
- ``/_mock/stats`` sums the same samples ``/metrics`` shows.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx
import orjson
import pytest
import trio
import trio.testing
from hypothesis import given, settings as hypothesis_settings, strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from conftest import check_error, fast_settings
from exposition import Samples, by_label, parse, value
from helpers import clean_env
from trio_mock import create_app
from trio_mock._observe._metrics import ITL_BUCKETS, TTFT_BUCKETS, VLLM_ITL_BUCKETS, observe_many

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from conftest import StartServer
    from trio_mock._serve._request import ASGIApp, Message

CHAT, COMPLETIONS, EMBEDDINGS = "/v1/chat/completions", "/v1/completions", "/v1/embeddings"
# The server's first configured model: what the vLLM gauges are labelled with.
SERVED_MODEL = "trio-mock"
POLL_S = 0.02
WAIT_S = 5.0


# --- reading the exposition -------------------------------------------------------------------


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def vllm(model: str) -> dict[str, str]:
    return {"model_name": model, "engine": "0"}


def sse(text: str) -> list[dict[str, Any]]:
    """The JSON data of every SSE event of a body, ``[DONE]`` left out."""
    return [
        orjson.loads(line[6:])
        for line in text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


def token_events(chunks: list[dict[str, Any]]) -> int:
    """Chat chunks that carry content (one token each at the default tokens_per_event)."""
    return sum(1 for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("content"))


# --- (1) exact values after a known request mix ------------------------------------------------


def chat(text: str, *, stream: bool = False, model: str = "chat-a") -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def test_counters_and_histogram_counts_match_a_known_mix(start_server: StartServer) -> None:
    url = await start_server(models=(SERVED_MODEL, "chat-a", "comp-b", "emb"))  # own labels
    prompt = {"chat-a": 0, "comp-b": 0, "emb": 0}
    generated = {"chat-a": 0, "comp-b": 0, "emb": 0}
    gaps = {"chat-a": 0, "comp-b": 0, "emb": 0}
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        # Three streamed chats, one of them without the /v1 prefix.
        for path, text, n in [
            (CHAT, "Tell me a story.", 4),
            ("/chat/completions", "Count to ten, please, slowly.", 6),
            (CHAT, "Hi.", 9),
        ]:
            r = await client.post(
                path, json=chat(text, stream=True), headers={"x-mock-output-tokens": str(n)}
            )
            assert r.status_code == 200, r.text
            chunks = sse(r.text)
            usage = chunks[-1]["usage"]
            assert token_events(chunks) == usage["completion_tokens"] == n
            prompt["chat-a"] += usage["prompt_tokens"]
            generated["chat-a"] += n
            gaps["chat-a"] += n - 1
        # A stream cut by an injected error after 2 of its 5 tokens: 2 tokens, 1 gap.
        r = await client.post(
            CHAT,
            json=chat("Cut me.", stream=True),
            headers={"x-mock-output-tokens": "5", "x-mock-fault": "error-after=2"},
        )
        assert r.status_code == 200
        chunks = sse(r.text)
        assert "error" in chunks[-1]
        assert token_events(chunks) == 2
        prompt["chat-a"] += int(r.headers["x-mock-prompt-tokens"])
        generated["chat-a"] += 2
        gaps["chat-a"] += 1
        # Two completions bodies: one stops, one hits max_tokens.
        finish: list[str] = []
        for text, extra in [("Once upon a time", {}), ("In a galaxy far away", {"max_tokens": 3})]:
            r = await client.post(
                COMPLETIONS,
                json={"model": "comp-b", "prompt": text, **extra},
                headers={"x-mock-output-tokens": "7"},
            )
            assert r.status_code == 200, r.text
            data = r.json()
            finish.append(data["choices"][0]["finish_reason"])
            prompt["comp-b"] += data["usage"]["prompt_tokens"]
            generated["comp-b"] += data["usage"]["completion_tokens"]
            gaps["comp-b"] += data["usage"]["completion_tokens"] - 1  # from the schedule
        assert finish == ["stop", "length"]
        assert generated["comp-b"] == 7 + 3
        # Two embeddings: prompt tokens only.
        for text in ["the quick brown fox", "jumps over the lazy dog, twice over"]:
            r = await client.post(EMBEDDINGS, json={"model": "emb", "input": text})
            assert r.status_code == 200, r.text
            prompt["emb"] += r.json()["usage"]["prompt_tokens"]
        # Refused before planning: no tokens, no latency observed.
        r = await client.post(CHAT, json={"model": "chat-a", "messages": []})
        check_error(r, 400, "messages")
        r = await client.post(
            COMPLETIONS, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        for _ in range(2):
            r = await client.post(CHAT, json=chat("Fail."), headers={"x-mock-fault": "503"})
            assert r.status_code == 503
        samples = await scrape(client)

    assert by_label(samples, "trio_mock_requests_total", "endpoint", "model", "status") == {
        ("/chat/completions", "chat-a", "200"): 4,
        ("/chat/completions", "chat-a", "400"): 1,
        ("/chat/completions", "chat-a", "503"): 2,
        ("/completions", "comp-b", "200"): 2,
        ("/completions", "", "400"): 1,
        ("/embeddings", "emb", "200"): 2,
    }
    assert by_label(samples, "trio_mock_faults_total", "kind") == {("503",): 2, ("error",): 1}
    assert value(samples, "trio_mock_client_disconnects_total") == 0
    assert all(prompt.values())
    endpoints = {"chat-a": "/chat/completions", "comp-b": "/completions", "emb": "/embeddings"}
    planned = {"chat-a": 4, "comp-b": 2, "emb": 2}
    for model, endpoint in endpoints.items():
        own = {"endpoint": endpoint, "model": model}
        theirs = vllm(model)
        for name, labels in [("trio_mock_", own), ("vllm:", theirs)]:
            assert value(samples, f"{name}prompt_tokens_total", **labels) == prompt[model]
            assert value(samples, f"{name}generation_tokens_total", **labels) == generated[model]
        for own_name, vllm_name, count in [
            ("time_to_first_token_seconds", "time_to_first_token_seconds", planned[model]),
            ("inter_token_latency_seconds", "inter_token_latency_seconds", gaps[model]),
            ("e2e_request_latency_seconds", "e2e_request_latency_seconds", planned[model]),
        ]:
            assert value(samples, f"trio_mock_{own_name}_count", **own) == count, own_name
            assert value(samples, f"vllm:{vllm_name}_count", **theirs) == count, vllm_name
            bucket = {"le": "+Inf"}
            assert value(samples, f"trio_mock_{own_name}_bucket", **own, **bucket) == count
    success = by_label(
        samples, "vllm:request_success_total", "finished_reason", "model_name", "engine"
    )
    assert success == {
        ("stop", "chat-a", "0"): 3,
        ("abort", "chat-a", "0"): 1,  # the stream cut by an error
        ("stop", "comp-b", "0"): 1,
        ("length", "comp-b", "0"): 1,
    }
    # Every vLLM series carries both labels.
    for name, label_set in samples:
        if name.startswith("vllm:"):
            assert {"model_name", "engine"} <= dict(label_set).keys(), name


# --- (2) running and waiting gauges --------------------------------------------------------------


def gauges(samples: Samples) -> tuple[float, float, float, float]:
    return (
        value(samples, "trio_mock_requests_running"),
        value(samples, "trio_mock_requests_waiting"),
        value(samples, "vllm:num_requests_running", **vllm(SERVED_MODEL)),
        value(samples, "vllm:num_requests_waiting", **vllm(SERVED_MODEL)),
    )


async def wait_for_gauges(
    client: httpx.AsyncClient, expected: tuple[float, float, float, float]
) -> Samples:
    """Scrape until the gauges read ``expected`` (bounded)."""
    with trio.fail_after(WAIT_S):
        while gauges(samples := await scrape(client)) != expected:  # ruff: ignore[async-busy-wait]
            await trio.sleep(POLL_S)
    return samples


async def test_gauges_follow_requests_held_by_ttft_and_queue(start_server: StartServer) -> None:
    url = await start_server(max_concurrency=1)
    held = trio.CancelScope()
    done: list[int] = []

    async def hold() -> None:
        """A stream whose first token is 30 s away; its client leaves when cancelled."""
        with held:
            async with httpx.AsyncClient(base_url=url, timeout=30) as own:
                body = chat("Hold on.", stream=True, model=SERVED_MODEL)
                async with own.stream(
                    "POST", CHAT, json=body, headers={"x-mock-ttft-ms": "30000"}
                ) as r:
                    async for _ in r.aiter_bytes():
                        pass

    async def queued(client: httpx.AsyncClient) -> None:
        r = await client.post(
            CHAT, json=chat("Next.", model=SERVED_MODEL), headers={"x-mock-ttft-ms": "0"}
        )
        done.append(r.status_code)

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert gauges(await scrape(client)) == (0, 0, 0, 0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)
            await wait_for_gauges(client, (1, 0, 1, 0))
            nursery.start_soon(queued, client)
            nursery.start_soon(queued, client)
            await wait_for_gauges(client, (1, 2, 1, 2))
            assert done == []
            held.cancel()  # the held client leaves; the queue drains
        samples = await wait_for_gauges(client, (0, 0, 0, 0))
    assert done == [200, 200]
    assert value(samples, "trio_mock_client_disconnects_total", endpoint="/chat/completions") == 1
    success = by_label(samples, "vllm:request_success_total", "finished_reason")
    assert success == {("stop",): 2, ("abort",): 1}
    assert value(samples, "vllm:generation_tokens_total") == value(
        samples, "trio_mock_generation_tokens_total", endpoint="/chat/completions"
    )
    # The held stream never sent a token: no TTFT for it.
    assert value(samples, "trio_mock_time_to_first_token_seconds_count") == 2


# --- (3) observe_many ----------------------------------------------------------------------------


def two_histograms(
    buckets: Sequence[float],
) -> tuple[CollectorRegistry, Any, CollectorRegistry, Any]:
    """Two identical labelled histograms in registries of their own; their children."""
    out: list[Any] = []
    for _ in range(2):
        registry = CollectorRegistry()
        histogram = Histogram("h_seconds", "h", ["k"], buckets=buckets, registry=registry)
        out += [registry, histogram.labels("x")]
    return out[0], out[1], out[2], out[3]


def exposed(registry: CollectorRegistry) -> str:
    text = generate_latest(registry).decode()
    return "\n".join(line for line in text.splitlines() if "_created" not in line)


# Exact binary fractions, so that sums cannot differ by rounding: bucket bounds of
# ITL_BUCKETS (0.25, 0.5, 1.0, 2.5), between them, below the first, above the last.
EXACT_BATCHES: list[list[float]] = [
    [0.25, 0.5, 1.0, 2.5, 0.25, 0.375, 0.0, 4.0, 1024.0],
    [],
    [2.5, 2.5, 0.125],
]


def test_observe_many_exposes_what_observe_does() -> None:
    one_by_one, child_a, bulk, child_b = two_histograms(ITL_BUCKETS)
    for batch in EXACT_BATCHES:
        for v in batch:
            child_a.observe(v)
        observe_many(child_b, batch)
        assert exposed(bulk) == exposed(one_by_one)
    assert value(parse(exposed(bulk)), "h_seconds_count") == sum(map(len, EXACT_BATCHES))


def test_observe_many_of_nothing_exposes_an_empty_child() -> None:
    one_by_one, _, bulk, child = two_histograms(ITL_BUCKETS)
    observe_many(child, [])
    assert exposed(bulk) == exposed(one_by_one)
    assert value(parse(exposed(bulk)), "h_seconds_count") == 0


@hypothesis_settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(
            st.sampled_from([*ITL_BUCKETS, *VLLM_ITL_BUCKETS, *TTFT_BUCKETS])
            | st.floats(min_value=0, max_value=100, allow_nan=False),
            max_size=30,
        ),
        max_size=4,
    )
)
def test_observe_many_buckets_match_observe_on_bounds_and_between(
    batches: list[list[float]],
) -> None:
    """Any values, in several calls: the same bucket counts and count; the sum within float
    rounding (it is added once per call, not once per value)."""
    one_by_one, child_a, bulk, child_b = two_histograms(ITL_BUCKETS)
    for batch in batches:
        for v in batch:
            child_a.observe(v)
        observe_many(child_b, batch)
    a, b = parse(exposed(one_by_one)), parse(exposed(bulk))
    assert a.keys() == b.keys()
    for key, expected in a.items():
        if key[0] == "h_seconds_sum":
            assert b[key] == pytest.approx(expected, rel=1e-12, abs=1e-12)
        else:
            assert b[key] == expected, key


# --- (4) bucket placement under MockClock --------------------------------------------------------


def buckets(samples: Samples, name: str) -> dict[str, float]:
    """A histogram's cumulative bucket counts by ``le``, over all its children."""
    out: dict[str, float] = {}
    for (n, ls), v in samples.items():
        if n == name + "_bucket":
            le = dict(ls)["le"]
            out[le] = out.get(le, 0) + v
    return out


def placed(app: QuartTrio) -> Samples:
    return parse(app.live.metrics.exposition().decode())  # type: ignore[attr-defined]


async def exchange(app: QuartTrio, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str]]:
    """POST ``body`` through the app's ASGI entry point, in memory (as in test_faults);
    the status and headers, once the answer has ended."""
    sent: list[Message] = []
    pending: list[Message] = [{"type": "http.request", "body": orjson.dumps(body)}]

    async def receive() -> Message:
        if not pending:
            await trio.sleep_forever()  # the client stays connected
        return pending.pop()

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Message = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "path": path,
        "headers": [(b"content-type", b"application/json")],
    }
    await cast("ASGIApp", app)(scope, receive, send)
    start, *_, end = sent
    assert not end.get("more_body", False)
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


async def paced_requests(app: QuartTrio) -> None:
    """A chat stream and a completions body, one after the other, on the same schedule."""
    stream = await exchange(app, CHAT, chat("Pace me.", stream=True, model="m"))
    body = await exchange(app, COMPLETIONS, {"model": "m", "prompt": "Pace me.", "max_tokens": 50})
    assert (stream[0], body[0]) == (200, 200)
    assert stream[1]["x-mock-output-tokens"] == body[1]["x-mock-output-tokens"] == "10"


def paced(ttft_ms: float, itl_ms: float) -> QuartTrio:
    return create_app(
        fast_settings(ttft_ms=ttft_ms, itl_ms=itl_ms, output_tokens_mean=10, output_tokens_stddev=0)
    )


async def test_durations_land_in_their_buckets(autojump_clock: trio.testing.MockClock) -> None:
    """TTFT 90 ms, 9 gaps of 12 ms, e2e 198 ms: each clear of every bound."""
    app = paced(90, 12)
    await paced_requests(app)
    s = placed(app)
    own_ttft = buckets(s, "trio_mock_time_to_first_token_seconds")
    assert (own_ttft["0.075"], own_ttft["0.1"], own_ttft["+Inf"]) == (0, 2, 2)
    own_itl = buckets(s, "trio_mock_inter_token_latency_seconds")
    assert (own_itl["0.01"], own_itl["0.015"], own_itl["+Inf"]) == (0, 18, 18)
    own_e2e = buckets(s, "trio_mock_e2e_request_latency_seconds")
    assert (own_e2e["0.1"], own_e2e["0.25"]) == (0, 2)
    vllm_ttft = buckets(s, "vllm:time_to_first_token_seconds")
    assert (vllm_ttft["0.08"], vllm_ttft["0.1"]) == (0, 2)
    vllm_itl = buckets(s, "vllm:inter_token_latency_seconds")
    assert (vllm_itl["0.01"], vllm_itl["0.025"]) == (0, 18)
    vllm_e2e = buckets(s, "vllm:e2e_request_latency_seconds")
    assert vllm_e2e["0.3"] == 2
    assert value(s, "trio_mock_inter_token_latency_seconds_sum") == pytest.approx(18 * 0.012)
    assert value(s, "vllm:e2e_request_latency_seconds_sum") == pytest.approx(2 * 0.198)


async def test_durations_on_a_bound_land_in_that_bucket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """TTFT 100 ms and ITL 10 ms are bucket bounds, and ``le`` is inclusive."""
    app = paced(100, 10)
    await paced_requests(app)
    s = placed(app)
    assert buckets(s, "trio_mock_time_to_first_token_seconds")["0.1"] == 2
    assert buckets(s, "vllm:time_to_first_token_seconds")["0.1"] == 2
    assert buckets(s, "trio_mock_inter_token_latency_seconds")["0.01"] == 18
    assert buckets(s, "vllm:inter_token_latency_seconds")["0.01"] == 18


# --- (5) who may read /metrics ---------------------------------------------------------------------


async def test_metrics_open_without_a_key_when_keys_are_set(start_server: StartServer) -> None:
    url = await start_server(api_keys=("sk-metrics-test-key",))
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        r = await client.post(CHAT, json=chat("Hi."))
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        r = await client.get("/_mock/stats")
        assert r.status_code == 401  # the dashboard's data is not open
        r = await client.post(
            CHAT, json=chat("Hi."), headers={"authorization": "Bearer sk-metrics-test-key"}
        )
        assert r.status_code == 200
        samples = await scrape(client)  # no key
    assert by_label(samples, "trio_mock_requests_total", "status") == {("401",): 1, ("200",): 1}


async def test_no_metrics_gives_openai_shaped_404(start_server: StartServer) -> None:
    url = await start_server(metrics=False)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        r = await client.post(CHAT, json=chat("Hi."))
        assert r.status_code == 200  # requests are served without metrics
        for path in ["/metrics", "/_mock/stats"]:
            r = await client.get(path)
            error = check_error(r, 404, None)
            assert error["code"] == "not_found"
            assert "--no-metrics" in error["message"]


# --- (6) several workers: every scrape counts every worker's requests ------------------------------

BIN = Path(sys.executable).parent
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10
WORKER_REQUESTS = 40


class Cluster:
    """``trio-mock --workers 2`` on loopback, and how many requests it was sent."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, journal_file: Path) -> None:
        self.process = process
        self.url = url
        self.journal_file = journal_file
        self.sent = 0
        self.clients: list[httpx.Client] = []

    def client(self) -> httpx.Client:
        """A client keeping one connection alive, so one worker serves all it sends."""
        client = httpx.Client(base_url=self.url, timeout=10)
        self.clients.append(client)
        return client

    def post(self, client: httpx.Client, request_id: str = "") -> None:
        """One streamed chat of 3 tokens."""
        body = chat(f"Request {self.sent}.", stream=True, model=SERVED_MODEL)
        headers = {"x-mock-output-tokens": "3", "x-request-id": request_id or f"r{self.sent}"}
        r = client.post(CHAT, json=body, headers=headers)
        assert r.status_code == 200, r.text
        self.sent += 1

    def counted(self, client: httpx.Client) -> float:
        return value(self.scrape(client), "trio_mock_requests_total")

    @staticmethod
    def scrape(client: httpx.Client) -> Samples:
        r = client.get("/metrics")
        assert r.status_code == 200, r.text
        return parse(r.text)

    def settle(self, client: httpx.Client) -> None:
        """Wait (bounded) until a scrape counts every request sent: each worker moves its
        batch to the shared files at least once a second."""
        for _ in range(int(WAIT_S / 0.05)):
            if self.counted(client) == self.sent:
                return
            time.sleep(0.05)

    def two_workers(self) -> tuple[httpx.Client, httpx.Client]:
        """Two clients whose connections two different workers serve: the journal (one
        view of every worker's) names the worker that served each one's probes."""
        first = self.client()
        served_first = self.worker_of(first)
        for _ in range(30):
            second = self.client()
            if self.worker_of(second) != served_first:
                return first, second
            second.close()
        pytest.fail("30 connections in a row went to one worker")

    def worker_of(self, client: httpx.Client) -> int:
        """The worker serving ``client``'s connection, as the journal names it. A request
        is journaled a moment after its last byte, so a probe may show only once a later
        one was sent: probes go until one shows (no sleeping)."""
        probes: set[str] = set()
        for _ in range(20):
            probes.add(probe := f"probe-{self.sent}")
            self.post(client, probe)
            r = client.get("/_mock/requests", params={"limit": 1000})
            assert r.status_code == 200, r.text
            for entry in r.json()["data"]:
                if entry["id"] in probes:
                    return int(entry["worker"])
        pytest.fail(f"none of {sorted(probes)} is in the journal")

    @staticmethod
    def journal(client: httpx.Client) -> list[str]:
        r = client.get("/_mock/requests", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return [entry["id"] for entry in r.json()["data"]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The real CLI with 2 workers; stopped by SIGTERM (bounded), then its session killed."""
    directory = tmp_path_factory.mktemp("workers")
    log = directory / "server.log"
    fast = "--workers 2 --ttft-ms 0 --itl-ms 0 --corpus-articles 64".split()
    journal = ["--journal-file", str(directory / "journal.jsonl")]
    args = [str(BIN / "trio-mock"), "--port", "0", *fast, *journal]
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    running = Cluster(process, "", directory / "journal.jsonl")  # its URL once it is logged
    try:
        # Port 0: the supervisor binds before it logs, so its line names the real port. The
        # workers are other processes, so this polls (bounded) rather than waits on an event.
        for _ in range(int(START_TIMEOUT_S / 0.05)):
            if found := re.search(r"serving on (http://\S+)", log.read_text()):
                running.url = found.group(1)
                with suppress(httpx.TransportError):
                    if httpx.get(running.url + "/health", timeout=2).status_code == 200:
                        break
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
            time.sleep(0.05)
        else:
            pytest.fail(f"no /health within {START_TIMEOUT_S} s:\n{log.read_text()}")
        yield running
        for client in running.clients:
            client.close()
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=STOP_TIMEOUT_S)
        assert returncode == 0, log.read_text()
        assert "Traceback" not in log.read_text()
    finally:
        for client in running.clients:
            client.close()
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)


def metric_files(pid: int) -> set[str]:
    """The counter files in the multiprocess directory the CLI (``pid``) gave its workers
    (a child's /proc maps show the metric files it has mapped)."""
    found = set()
    for entry in Path("/proc").iterdir():
        with suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                for line in (entry / "maps").read_text().splitlines():
                    mapped = Path(line.split(maxsplit=5)[-1])
                    if mapped.suffix == ".db" and mapped.name.startswith("counter_"):
                        found |= {p.name for p in mapped.parent.glob("counter_*.db")}
    return found


@pytest.mark.slow
def test_two_workers_scrapes_count_every_worker(cluster: Cluster) -> None:
    """Once settled, every scrape, whichever worker answers it, counts both workers'
    requests, tokens and latencies, and no request in flight."""
    first, second = cluster.two_workers()
    for i in range(WORKER_REQUESTS):
        cluster.post(first if i % 2 else second)
    cluster.settle(first)
    totals = []
    for client in [first, second] * 2 + [cluster.client() for _ in range(4)]:
        samples = cluster.scrape(client)
        totals.append(
            (
                value(samples, "trio_mock_requests_total"),
                value(samples, "vllm:generation_tokens_total"),
                value(samples, "trio_mock_time_to_first_token_seconds_count"),
                gauges(samples),
            )
        )
    expected = (cluster.sent, 3 * cluster.sent, cluster.sent, (0, 0, 0, 0))
    assert totals == [expected] * len(totals)
    if Path("/proc/self/stat").exists():
        assert len(metric_files(cluster.process.pid)) == 2  # one per worker, in the CLI's dir


@pytest.mark.slow
def test_two_workers_count_the_other_workers_request_within_a_flush(cluster: Cluster) -> None:
    """A scrape answered by one worker counts a request the other worker served once that
    worker's housekeeping has flushed its batch (four times a second): polled, bounded."""
    first, second = cluster.two_workers()
    cluster.settle(first)
    for _ in range(3):
        cluster.post(second)
        cluster.settle(first)
        assert cluster.counted(first) == cluster.sent


# --- (7) /_mock/stats sums what /metrics shows --------------------------------------------------


async def test_stats_agree_with_metrics(start_server: StartServer) -> None:
    url = await start_server(ttft_ms=5, itl_ms=2)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        for i in range(3):
            r = await client.post(
                CHAT, json=chat(f"Hello {i}.", stream=i == 0), headers={"x-mock-output-tokens": "4"}
            )
            assert r.status_code == 200
        r = await client.post(
            COMPLETIONS, json={"model": "c", "prompt": "Go."}, headers={"x-mock-output-tokens": "5"}
        )
        assert r.status_code == 200
        r = await client.post(EMBEDDINGS, json={"model": "e", "input": "vectors"})
        assert r.status_code == 200
        r = await client.post(CHAT, json={"model": "chat-a"})
        assert r.status_code == 400
        r = await client.post(CHAT, json=chat("No."), headers={"x-mock-fault": "429"})
        assert r.status_code == 429
        samples = await scrape(client)
        r = await client.get("/_mock/stats")
    assert r.status_code == 200
    stats = r.json()
    assert set(stats) == {"time", "totals", "statuses", "histograms"}
    assert isinstance(stats["time"], float)
    assert stats["statuses"] == {"200": 5, "400": 1, "429": 1}
    assert stats["statuses"] == {
        k[0]: v for k, v in by_label(samples, "trio_mock_requests_total", "status").items()
    }
    totals: dict[str, float] = {}
    histograms: dict[str, dict[str, float]] = {}
    for (name, _), v in samples.items():
        if not name.startswith("trio_mock_"):
            continue
        if name.endswith("_bucket"):
            histograms[name.removesuffix("_bucket")] = buckets(
                samples, name.removesuffix("_bucket")
            )
        else:
            totals[name] = totals.get(name, 0) + v
    assert stats["totals"].keys() == totals.keys()
    for name, expected in totals.items():
        assert stats["totals"][name] == pytest.approx(expected, rel=1e-9), name
    assert stats["histograms"] == histograms
    assert stats["totals"]["trio_mock_requests_total"] == 7
    assert stats["totals"]["trio_mock_generation_tokens_total"] == 3 * 4 + 5
    assert stats["totals"]["trio_mock_requests_running"] == 0
    ttft = stats["histograms"]["trio_mock_time_to_first_token_seconds"]
    assert ttft["+Inf"] == stats["totals"]["trio_mock_time_to_first_token_seconds_count"] == 5
    assert list(ttft.values()) == sorted(ttft.values())  # cumulative
    assert stats["totals"]["trio_mock_e2e_request_latency_seconds_sum"] > 0


@pytest.mark.slow
def test_two_workers_share_one_journal_file_line_by_line(cluster: Cluster) -> None:
    """Both workers append to one JSONL file; each line is written whole, so lines longer
    than a pipe's atomic 4 KiB, sent by both workers at once, still parse one by one."""
    first, second = cluster.two_workers()
    padding = "x" * 6000  # each entry's body: well past 4 KiB
    ids = [f"shared-{i}" for i in range(WORKER_REQUESTS)]

    def send(client: httpx.Client, request_id: str) -> None:
        body = chat(padding, stream=True, model=SERVED_MODEL)
        headers = {"x-mock-output-tokens": "3", "x-request-id": request_id}
        assert client.post(CHAT, json=body, headers=headers).status_code == 200

    with ThreadPoolExecutor(2) as pool:  # the two workers write at the same time
        list(pool.map(send, [first, second] * (WORKER_REQUESTS // 2), ids))
    cluster.sent += WORKER_REQUESTS
    found: list[str] = []
    for _ in range(int(WAIT_S / 0.05)):
        lines = cluster.journal_file.read_bytes().splitlines()
        found = [entry["id"] for entry in map(orjson.loads, lines) if entry["id"] in ids]
        if len(found) >= len(ids):
            break
        time.sleep(0.05)
    assert sorted(found) == sorted(ids)
    assert all(id_ in cluster.journal(first) + cluster.journal(second) for id_ in ids)
