"""The request journal (``GET``/``DELETE /_mock/requests``, ``--journal-*``) and the
``x-mock-*`` plan headers (issue 6).

What this file proves:

- Under MockClock (raw ASGI, in memory) a chat, completions or responses stream's entry
  lists each write at exactly the time it was due: first token at the TTFT, then one ITL
  apart, the closing frame with the last token; the timing block and the plan agree. The
  request's own ``x-mock-*`` knobs and time spent queued show up in both. A slow client's
  writes show late, overdue frames joined. A body has due times but no write times; a
  fault's cut lists only what was really written.
- ``x-mock-ttft-ms``, ``x-mock-itl-ms``, ``x-mock-prompt-tokens`` and
  ``x-mock-output-tokens`` on all four endpoints, streamed or not, agree with the body's
  usage and with the journal's plan.
- Filters (model, endpoint with or without ``/v1``, status, since, limit) select what they
  say; bad values are OpenAI-shaped 400s naming the parameter; DELETE clears.
- The ring keeps the newest ``journal_size`` entries (0: none, resizable at runtime); the
  JSONL file holds one line per request (lines reach the disk within about a second, and
  all of them once the server has stopped), whatever the ring size, each line the entry
  GET lists, ``worker`` (0 for one process) included.
- Bodies are cut at ``journal_body_bytes`` with a note of what was left out; secret headers
  are redacted in the ring and in the file.
- Refused requests (400, 401), injected faults (503, error-after, disconnect-after), a
  client that leaves mid-stream (real loopback) and the time limit are all recorded with
  their status, error, fault and cut.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
import trio
import trio.testing

from asgi import Answer, Headers, call
from conftest import check_error, fast_settings, server_in_thread
from trio_mock import create_app
from trio_mock._openai._errors import INJECTED_ERROR, status_error

if TYPE_CHECKING:
    from pathlib import Path

    from quart_trio import QuartTrio

    from conftest import StartServer

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
STREAMING = [CHAT, COMPLETIONS, RESPONSES]
EMBEDDING_MODEL = "text-embedding-3-small"
BODIES: dict[str, dict[str, Any]] = {
    CHAT: {"model": "m", "messages": [{"role": "user", "content": "Say hello."}]},
    COMPLETIONS: {"model": "m", "prompt": "Say hello."},
    RESPONSES: {"model": "m", "input": "Say hello."},
    EMBEDDINGS: {"model": EMBEDDING_MODEL, "input": "Say hello."},
}
# Streams ask for usage where it is optional, so the last chunk can be checked.
STREAM_EXTRA: dict[str, dict[str, Any]] = {
    CHAT: {"stream": True, "stream_options": {"include_usage": True}},
    COMPLETIONS: {"stream": True, "stream_options": {"include_usage": True}},
    RESPONSES: {"stream": True},
}
# A schedule without randomness: token i due at TTFT + i * ITL ms after arrival.
TTFT_MS, ITL_MS, TOKENS = 100.0, 10.0, 5
PACED: dict[str, Any] = {
    "ttft_distribution": "constant",
    "itl_distribution": "constant",
    "ttft_ms": TTFT_MS,
    "itl_ms": ITL_MS,
    "output_tokens_distribution": "fixed",
    "output_tokens_mean": TOKENS,
    "embedding_ms": 20,
}
SECRETS = {
    "authorization": "Bearer sk-very-secret",
    "api-key": "sk-also-secret",
    "x-admin-key": "admin-secret",
    "cookie": "session=secret-cookie",
}
POLL_S, POLL_STEP_S = 5.0, 0.02


def schedule_ms(count: int = TOKENS, ttft: float = TTFT_MS, itl: float = ITL_MS) -> list[float]:
    return [ttft + i * itl for i in range(count)]


def stream_body(path: str) -> dict[str, Any]:
    return BODIES[path] | STREAM_EXTRA[path]


def body_for(path: str, stream: bool) -> dict[str, Any]:
    return stream_body(path) if stream else BODIES[path]


async def journal(app: QuartTrio, query: str = "", headers: Headers = ()) -> list[dict[str, Any]]:
    """The entries ``GET /_mock/requests?query`` lists."""
    answer = await call(app, "/_mock/requests", method="GET", query=query, headers=headers)
    assert answer.status == 200, answer.body
    listing = answer.json()
    assert listing["object"] == "list"
    data: list[dict[str, Any]] = listing["data"]
    return data


async def only_entry(app: QuartTrio) -> dict[str, Any]:
    (entry,) = await journal(app)
    return entry


def token_events(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in entry["events"] if e["kind"] == "token"]


def on_time(times: Sequence[float], kind: str = "token") -> list[dict[str, Any]]:
    """The events of writes that went out exactly when due."""
    return [{"due_ms": t, "sent_ms": t, "kind": kind} for t in times]


@pytest.fixture
def paced_app() -> QuartTrio:
    return create_app(fast_settings(**PACED))


# --- streams: every write, when due and when sent ---------------------------------------------


@pytest.mark.parametrize("path", STREAMING)
async def test_stream_events_follow_the_schedule(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio, path: str
) -> None:
    answer = await call(paced_app, path, stream_body(path))
    assert answer.status == 200
    entry = await only_entry(paced_app)
    last = schedule_ms()[-1]
    # Each token when due, then the closing frame (usage, [DONE], response.completed) with it.
    assert entry["events"] == on_time(schedule_ms()) + on_time([last], "frame")
    assert entry["timing"] == {
        "admitted_ms": 0.0,
        "headers_sent_ms": 0.0,
        "first_token_due_ms": TTFT_MS,
        "first_token_sent_ms": TTFT_MS,
        "last_token_due_ms": last,
        "last_token_sent_ms": last,
        "ended_ms": last,
        "lag_max_ms": 0.0,
        "lag_p99_ms": 0.0,
    }
    plan = entry["plan"]
    assert plan["ttft_ms"] == pytest.approx(TTFT_MS)
    assert plan["itl_ms"] == pytest.approx(ITL_MS)
    assert plan["completion_tokens"] == TOKENS
    assert plan["finish_reason"] == "stop"
    assert entry["id"] == answer.headers["x-request-id"]
    assert (entry["method"], entry["endpoint"], entry["model"]) == ("POST", path, "m")
    assert (entry["stream"], entry["status"]) == (True, 200)
    assert (entry["error"], entry["fault"], entry["rule"], entry["cut"]) == (None,) * 4
    assert entry["disconnected"] is False
    assert orjson.loads(entry["body"]) == stream_body(path)
    assert isinstance(entry["seq"], int)
    assert abs(entry["arrived"] - time.time()) < 600  # a unix time, not trio's clock


async def test_slow_client_writes_are_late_and_joined(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio
) -> None:
    """Each write takes 50 ms: the first token goes out 50 ms after it was due, and the
    rest, overdue by then, leave together in the next write."""
    await call(paced_app, CHAT, stream_body(CHAT), write_s=0.05)
    entry = await only_entry(paced_app)
    first, *rest = schedule_ms()
    late = TTFT_MS + 50
    joined = late + 50
    assert entry["events"] == [
        {"due_ms": first, "sent_ms": late, "kind": "token"},
        *[{"due_ms": due, "sent_ms": joined, "kind": "token"} for due in rest],
        {"due_ms": rest[-1], "sent_ms": joined, "kind": "frame"},
    ]
    timing = entry["timing"]
    assert (timing["first_token_due_ms"], timing["first_token_sent_ms"]) == (first, late)
    assert (timing["last_token_due_ms"], timing["last_token_sent_ms"]) == (rest[-1], joined)


async def test_entry_id_is_the_clients_request_id(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio
) -> None:
    answer = await call(paced_app, CHAT, stream_body(CHAT), headers={"x-request-id": "run-7"})
    assert answer.headers["x-request-id"] == "run-7"
    assert (await only_entry(paced_app))["id"] == "run-7"


async def test_request_knobs_set_the_plan_and_the_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """On a jittery server the request's own x-mock-* headers make the schedule exact."""
    app = create_app(fast_settings(ttft_ms=80, ttft_jitter_ms=30, itl_ms=9, itl_jitter_ms=4))
    knobs = {"x-mock-ttft-ms": "250", "x-mock-itl-ms": "5", "x-mock-output-tokens": "7"}
    answer = await call(app, CHAT, stream_body(CHAT), headers=knobs)
    assert answer.headers["x-mock-ttft-ms"] == "250.000"
    assert answer.headers["x-mock-itl-ms"] == "5.000"
    assert answer.headers["x-mock-output-tokens"] == "7"
    assert answer.events()[-2][2]["usage"]["completion_tokens"] == 7
    entry = await only_entry(app)
    assert token_events(entry) == on_time(schedule_ms(7, 250, 5))
    assert entry["plan"]["ttft_ms"] == pytest.approx(250)
    assert entry["plan"]["itl_ms"] == pytest.approx(5)
    assert entry["plan"]["completion_tokens"] == 7
    assert entry["headers"]["x-mock-ttft-ms"] == "250"  # the request's headers, as sent


async def test_queue_time_counts_in_the_planned_ttft(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With one slot the second stream waits for the first; its TTFT (header and plan)
    counts from arrival, the queue included, and its schedule runs from admission."""
    app = create_app(fast_settings(**PACED, max_concurrency=1))
    answers: dict[str, Answer] = {}

    async def one(rid: str) -> None:
        answers[rid] = await call(app, CHAT, stream_body(CHAT), headers={"x-request-id": rid})

    async with trio.open_nursery() as nursery:
        for rid in ("first", "second"):
            nursery.start_soon(one, rid)
    entries = {e["id"]: e for e in await journal(app)}
    queued = max(entries.values(), key=lambda e: e["timing"]["admitted_ms"])
    waited = queued["timing"]["admitted_ms"]
    assert waited == schedule_ms()[-1]  # admitted as the first one ended
    assert answers[queued["id"]].headers["x-mock-ttft-ms"] == f"{waited + TTFT_MS:.3f}"
    assert queued["plan"]["ttft_ms"] == pytest.approx(waited + TTFT_MS)
    assert token_events(queued) == on_time(schedule_ms(ttft=waited + TTFT_MS))
    other = entries[({"first", "second"} - {queued["id"]}).pop()]
    assert other["timing"]["admitted_ms"] == 0.0
    assert other["plan"]["ttft_ms"] == pytest.approx(TTFT_MS)


@pytest.mark.parametrize("path", STREAMING)
async def test_body_has_due_times_but_no_sent_times(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio, path: str
) -> None:
    answer = await call(paced_app, path, BODIES[path])
    assert answer.status == 200
    entry = await only_entry(paced_app)
    last = schedule_ms()[-1]
    timing = entry["timing"]
    assert (timing["first_token_due_ms"], timing["last_token_due_ms"]) == (TTFT_MS, last)
    assert (timing["first_token_sent_ms"], timing["last_token_sent_ms"]) == (None, None)
    assert timing["headers_sent_ms"] == last  # the body goes when its last token is due
    assert all(event["sent_ms"] is None for event in entry["events"])
    assert entry["stream"] is False


# --- x-mock-* headers: the plan, told to the client -------------------------------------------


def usage_tokens(path: str, answer: Answer) -> tuple[int, int]:
    """(prompt, output) tokens from the body's usage, or the last stream event's."""
    if answer.headers["content-type"].startswith("text/event-stream"):
        events = [data for _, _, data in answer.events()]
        final = events[-1] if path == RESPONSES else events[-2]  # before [DONE]
        usage = final["response"]["usage"] if path == RESPONSES else final["usage"]
    else:
        usage = answer.json()["usage"]
    if path == RESPONSES:
        return usage["input_tokens"], usage["output_tokens"]
    return usage["prompt_tokens"], usage.get("completion_tokens", 0)


def plan_headers(answer: Answer) -> tuple[float, float, int, int]:
    h = answer.headers
    return (
        float(h["x-mock-ttft-ms"]),
        float(h["x-mock-itl-ms"]),
        int(h["x-mock-prompt-tokens"]),
        int(h["x-mock-output-tokens"]),
    )


PLANNED = [
    *[(path, True) for path in STREAMING],
    *[(path, False) for path in [*STREAMING, EMBEDDINGS]],
]


@pytest.mark.parametrize(("path", "stream"), PLANNED)
async def test_plan_headers_agree_with_usage(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio, path: str, stream: bool
) -> None:
    answer = await call(paced_app, path, body_for(path, stream))
    assert answer.status == 200
    ttft, itl, prompt, output = plan_headers(answer)
    assert (prompt, output) == usage_tokens(path, answer)
    assert prompt > 0
    if path == EMBEDDINGS:
        assert (ttft, itl, output) == (20.0, 0.0, 0)  # embedding_ms, one "event"
    else:
        assert (ttft, itl, output) == (TTFT_MS, ITL_MS, TOKENS)


@pytest.mark.parametrize(
    ("path", "stream"),
    [pytest.param(path, stream, id=f"{path}-{stream}") for path, stream in PLANNED],
)
async def test_plan_headers_agree_with_the_journal(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio, path: str, stream: bool
) -> None:
    answer = await call(paced_app, path, body_for(path, stream))
    entry = await only_entry(paced_app)
    plan = entry["plan"]
    ttft, itl, prompt, output = plan_headers(answer)
    assert plan["ttft_ms"] == pytest.approx(ttft, abs=5e-4)
    assert plan["itl_ms"] == pytest.approx(itl, abs=5e-4)
    assert (plan["prompt_tokens"], plan["completion_tokens"]) == (prompt, output)
    assert entry["timing"]["first_token_due_ms"] == pytest.approx(ttft, abs=5e-4)
    assert entry["stream"] is stream


# --- filters, clearing ------------------------------------------------------------------------


async def filtered(app: QuartTrio, query: str) -> list[str]:
    return [entry["id"] for entry in await journal(app, query)]


async def test_filters() -> None:
    """Real time here (no latency is set), so that arrivals differ on the wall clock."""
    app = create_app(fast_settings())
    requests = [
        ("a-chat", CHAT, stream_body(CHAT) | {"model": "a"}),
        ("b-completions", "/completions", stream_body(COMPLETIONS) | {"model": "b"}),
        ("a-bad", "/chat/completions", {"model": "a"}),  # no messages: 400
        ("b-responses", RESPONSES, stream_body(RESPONSES) | {"model": "b"}),
    ]
    for rid, path, body in requests:
        await trio.sleep(0.002)  # distinct wall-clock arrivals, for ``since``
        await call(app, path, body, headers={"x-request-id": rid})
    everything = await journal(app)
    assert [e["id"] for e in everything] == [rid for rid, _, _ in requests]  # oldest first
    assert [e["seq"] for e in everything] == sorted({e["seq"] for e in everything})
    arrived = [e["arrived"] for e in everything]
    assert arrived == sorted(arrived)
    assert arrived[1] > arrived[0]

    assert await filtered(app, "model=a") == ["a-chat", "a-bad"]
    assert await filtered(app, "model=nobody") == []
    for spelled in ("/chat/completions", "/v1/chat/completions"):
        assert await filtered(app, f"endpoint={spelled}") == ["a-chat", "a-bad"]
    for spelled in ("/completions", "/v1/completions"):
        assert await filtered(app, f"endpoint={spelled}") == ["b-completions"]
    assert await filtered(app, "endpoint=/v1/embeddings") == []
    assert await filtered(app, "status=400") == ["a-bad"]
    assert await filtered(app, "status=200") == ["a-chat", "b-completions", "b-responses"]
    assert await filtered(app, "status=404") == []
    assert await filtered(app, f"since={arrived[1]!r}") == ["b-completions", "a-bad", "b-responses"]
    assert await filtered(app, "since=0") == [rid for rid, _, _ in requests]
    assert await filtered(app, f"since={arrived[-1] + 1!r}") == []
    assert await filtered(app, "limit=2") == ["a-bad", "b-responses"]  # the newest, in order
    assert await filtered(app, "limit=10") == [rid for rid, _, _ in requests]
    assert await filtered(app, "limit=0") == []
    assert await filtered(app, "model=b&status=200&limit=1") == ["b-responses"]
    assert await filtered(app, "model=a&endpoint=/completions") == []
    assert await filtered(app, "model=&status=") == [rid for rid, _, _ in requests]  # empty: unset


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("status=abc", "status"),
        ("status=99", "status"),
        ("status=2.5", "status"),
        ("since=yesterday", "since"),
        ("since=-1", "since"),
        ("since=nan", "since"),
        ("since=inf", "since"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
    ],
)
async def test_bad_filter_values_are_openai_400s(query: str, param: str) -> None:
    app = create_app(fast_settings())
    answer = await call(app, "/_mock/requests", method="GET", query=query)
    check_error(answer.response(), 400, param)


async def test_delete_clears(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings())
    for path in STREAMING:
        await call(app, path, stream_body(path))
    assert len(await journal(app)) == 3
    cleared = await call(app, "/_mock/requests", method="DELETE")
    assert (cleared.status, cleared.json()) == (200, {"deleted": 3})
    assert await journal(app) == []
    again = await call(app, "/_mock/requests", method="DELETE")
    assert again.json() == {"deleted": 0}
    await call(app, CHAT, stream_body(CHAT), headers={"x-request-id": "after"})
    assert await filtered(app, "") == ["after"]  # recording goes on


# --- the ring ---------------------------------------------------------------------------------


async def send_numbered(app: QuartTrio, count: int) -> list[str]:
    ids = [f"r{i}" for i in range(count)]
    for rid in ids:
        answer = await call(app, CHAT, stream_body(CHAT), headers={"x-request-id": rid})
        assert answer.status == 200
    return ids


async def test_ring_keeps_the_newest(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(journal_size=3))
    ids = await send_numbered(app, 5)
    assert await filtered(app, "") == ids[-3:]
    assert await filtered(app, "limit=5") == ids[-3:]
    deleted = await call(app, "/_mock/requests", method="DELETE")
    assert deleted.json() == {"deleted": 3}


async def test_ring_of_zero_keeps_none(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(journal_size=0))
    await send_numbered(app, 3)
    assert await journal(app) == []


async def test_ring_resizes_at_runtime(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(journal_size=4))
    ids = await send_numbered(app, 4)
    changed = await call(app, "/_mock/config", {"journal_size": 2}, method="PATCH")
    assert changed.json()["changed"] == ["journal_size"]
    assert await filtered(app, "") == ids[-2:]  # the newest survive the shrink
    more = await send_numbered(app, 1)
    assert await filtered(app, "") == [ids[-1], *more]


# --- the JSONL file ---------------------------------------------------------------------------


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.parametrize("size", [1000, 0])
def test_jsonl_file_has_a_line_per_request(tmp_path: Path, size: int) -> None:
    """Every request, whatever the ring keeps; complete once the server has stopped;
    secrets redacted there too."""
    path = tmp_path / "journal.jsonl"
    with (
        server_in_thread(journal_file=str(path), journal_size=size) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        for i, endpoint in enumerate(STREAMING):
            response = client.post(
                endpoint, json=stream_body(endpoint), headers={"x-request-id": f"s{i}"}
            )
            assert response.status_code == 200
        bad = client.post(CHAT, content=b"{oops", headers={"x-request-id": "bad"} | SECRETS)
        assert bad.status_code == 400
        kept = client.get("/_mock/requests").json()["data"]
        assert len(kept) == (4 if size else 0)
    assert not any(secret in path.read_text() for secret in SECRETS.values())
    entries = lines_of(path)
    assert [e["id"] for e in entries] == ["s0", "s1", "s2", "bad"]
    assert [e["endpoint"] for e in entries] == [*STREAMING, CHAT]
    assert [e["status"] for e in entries] == [200, 200, 200, 400]
    assert all(len(token_events(e)) == e["plan"]["completion_tokens"] for e in entries[:3])
    assert entries[3]["body"] == "{oops"
    assert {name: entries[3]["headers"][name] for name in SECRETS} == dict.fromkeys(
        SECRETS, "[redacted]"
    )
    assert {e["worker"] for e in entries} == {0}  # one process: worker 0, as GET shows
    if size:  # the same entries as GET lists
        assert kept == entries


def test_jsonl_file_records_bodies(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    with (
        server_in_thread(journal_file=str(path)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        for endpoint in [*STREAMING, EMBEDDINGS]:
            assert client.post(endpoint, json=BODIES[endpoint]).status_code == 200
    entries = lines_of(path)
    assert [e["endpoint"] for e in entries] == [*STREAMING, EMBEDDINGS]


async def test_jsonl_file_is_flushed_within_a_second(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """A tail of the file sees each request soon: at most 1 s late, as promised (the
    housekeeping task flushes four times a second; on MockClock the second is exact)."""
    path = tmp_path / "journal.jsonl"
    short: dict[str, Any] = {"output_tokens_distribution": "fixed", "output_tokens_mean": 3}
    app = create_app(fast_settings(journal_file=str(path), **short))  # lines of < 8 KiB
    async with app.test_app():  # serving: its housekeeping task runs
        for endpoint in STREAMING:
            assert (await call(app, endpoint, stream_body(endpoint))).status == 200
        await trio.sleep(1.0)
        assert len(path.read_bytes().splitlines()) == len(STREAMING)


# --- what is kept of a request: bodies cut, secrets redacted ----------------------------------


@pytest.mark.parametrize("cut", [0, 1, 10])
async def test_body_is_cut_with_a_note(autojump_clock: trio.testing.MockClock, cut: int) -> None:
    raw = orjson.dumps(stream_body(CHAT))
    limit = len(raw) - cut
    app = create_app(fast_settings(journal_body_bytes=limit))
    await call(app, CHAT, raw)
    expected = raw[:limit].decode() + (f"... [{cut} more bytes]" if cut else "")
    assert (await only_entry(app))["body"] == expected


async def test_body_limit_zero_keeps_only_the_note(autojump_clock: trio.testing.MockClock) -> None:
    raw = orjson.dumps(stream_body(CHAT))
    app = create_app(fast_settings(journal_body_bytes=0))
    await call(app, CHAT, raw)
    assert (await only_entry(app))["body"] == f"... [{len(raw)} more bytes]"


async def test_secret_headers_are_redacted(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings())
    headers = SECRETS | {"x-trace": "keep-me", "user-agent": "tests/1.0"}
    await call(app, CHAT, stream_body(CHAT), headers=headers)
    listing = await call(app, "/_mock/requests", method="GET")
    for secret in SECRETS.values():
        assert secret.encode() not in listing.body
    shown = listing.json()["data"][0]["headers"]
    assert {name: shown[name] for name in SECRETS} == dict.fromkeys(SECRETS, "[redacted]")
    assert (shown["x-trace"], shown["user-agent"]) == ("keep-me", "tests/1.0")


async def test_scripted_rule_is_named(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings())
    rules = [{"name": "greeting", "match": {"text": "hello"}, "reply": {"content": "Hi."}}]
    rules.append({"match": {"text": "bye"}, "reply": {"content": "Bye."}})
    added = await call(app, "/_mock/scripts", rules)
    named, unnamed = (rule["id"] for rule in added.json()["data"])
    hit = await call(app, CHAT, stream_body(CHAT))
    bye = [{"role": "user", "content": "Say bye."}]
    other = await call(app, CHAT, stream_body(CHAT) | {"messages": bye})
    miss = await call(app, RESPONSES, stream_body(RESPONSES) | {"input": "Nothing."})
    assert hit.headers["x-mock-rule"] == str(named)
    assert other.headers["x-mock-rule"] == str(unnamed)
    assert "x-mock-rule" not in miss.headers
    assert [e["rule"] for e in await journal(app)] == ["greeting", f"rule {unnamed}", None]


# --- refused requests, faults, disconnects, the time limit -------------------------------------


async def test_invalid_bodies_are_recorded_with_their_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings())
    broken = await call(app, CHAT, b"{not json", headers={"x-request-id": "broken"})
    missing = await call(app, COMPLETIONS, {"model": "m"}, headers={"x-request-id": "missing"})
    assert (broken.status, missing.status) == (400, 400)
    entries = {e["id"]: e for e in await journal(app, "status=400")}
    assert entries["broken"]["error"] == broken.json()["error"]
    assert entries["broken"]["body"] == "{not json"
    assert entries["broken"]["model"] is None
    assert entries["missing"]["error"] == missing.json()["error"]
    assert entries["missing"]["error"]["param"] == "prompt"
    assert entries["missing"]["model"] == "m"
    for entry in entries.values():
        assert entry["status"] == 400
        assert entry["events"] == []
        assert entry["plan"]["ttft_ms"] is None
        assert entry["timing"]["first_token_due_ms"] is None


async def test_unauthorized_requests_are_recorded(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(api_keys=("sk-good",)))
    answer = await call(app, CHAT, stream_body(CHAT), headers={"authorization": "Bearer sk-bad"})
    assert answer.status == 401
    (entry,) = await journal(app, headers={"authorization": "Bearer sk-good"})
    assert entry["status"] == 401
    assert entry["error"] == answer.json()["error"]
    assert entry["headers"]["authorization"] == "[redacted]"
    assert entry["events"] == []


async def test_status_fault_is_recorded(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio
) -> None:
    answer = await call(paced_app, CHAT, stream_body(CHAT), headers={"x-mock-fault": "503"})
    assert answer.status == 503
    entry = await only_entry(paced_app)
    assert (entry["status"], entry["fault"], entry["cut"]) == (503, "503", None)
    assert entry["error"] == status_error(503).to_body()["error"]
    assert entry["events"] == []


async def test_error_after_fault_is_recorded(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio
) -> None:
    fault = {"x-mock-fault": "error-after=2"}
    answer = await call(paced_app, CHAT, stream_body(CHAT), headers=fault)
    assert answer.headers["x-mock-fault"] == "error-after=2"
    entry = await only_entry(paced_app)
    assert (entry["status"], entry["fault"]) == (200, "error-after=2")
    assert entry["error"] == INJECTED_ERROR.to_body()["error"]
    assert entry["disconnected"] is False
    # Two tokens on time, then the error frame when the third was due.
    assert entry["events"] == on_time(schedule_ms(2)) + on_time([schedule_ms(3)[-1]], "frame")


async def test_disconnect_after_fault_is_recorded(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio
) -> None:
    fault = {"x-mock-fault": "disconnect-after=2"}
    answer = await call(paced_app, CHAT, stream_body(CHAT), headers=fault)
    assert not answer.ended
    entry = await only_entry(paced_app)
    assert (entry["status"], entry["fault"], entry["cut"]) == (200, "disconnect-after=2", "fault")
    assert entry["error"] is None
    assert entry["disconnected"] is False  # the server hung up, not the client
    assert token_events(entry) == on_time(schedule_ms(2))
    assert entry["timing"]["ended_ms"] == schedule_ms(3)[-1]  # when the third was due


async def test_disconnect_after_fault_lists_only_what_was_written(
    autojump_clock: trio.testing.MockClock, paced_app: QuartTrio
) -> None:
    fault = {"x-mock-fault": "disconnect-after=2"}
    await call(paced_app, CHAT, stream_body(CHAT), headers=fault)
    assert (await only_entry(paced_app))["events"] == on_time(schedule_ms(2))


# Leaving a stream early leaves httpx's inner async generators to the garbage collector, and
# trio warns about each (as in test_faults.py; STYLE.md section 6).
@pytest.mark.filterwarnings("ignore:Async generator 'httpx?(core)?\\.:ResourceWarning")
async def test_client_leaving_mid_stream_is_marked_disconnected(
    start_server: StartServer,
) -> None:
    """Over loopback: read the first token, then close the response (and so the
    connection); the server notices, stops and journals the request as disconnected."""
    tokens = 400
    url = await start_server(
        ttft_ms=0, itl_ms=25, output_tokens_distribution="fixed", output_tokens_mean=tokens
    )
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        with trio.fail_after(10):
            async with client.stream(
                "POST", CHAT, json=stream_body(CHAT), headers={"x-request-id": "leaver"}
            ) as response:
                assert response.status_code == 200
                seen = b""
                async for chunk in response.aiter_bytes():
                    seen += chunk
                    if b'"content":"' in seen:
                        break
            gc.collect()  # the abandoned generators warn now, inside this test
        found: list[dict[str, Any]] = []
        with trio.move_on_after(POLL_S):
            while not found:
                found = (await client.get("/_mock/requests")).json()["data"]
                await trio.sleep(POLL_STEP_S)
    assert len(found) == 1, "no journal entry within the polling time"
    (entry,) = found
    assert entry["id"] == "leaver"
    assert entry["disconnected"] is True
    assert (entry["status"], entry["cut"], entry["error"]) == (200, None, None)
    assert 1 <= len(token_events(entry)) < tokens
    assert all(event["kind"] == "token" for event in entry["events"])  # no closing frame


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
async def test_time_limit_cut_is_recorded(
    autojump_clock: trio.testing.MockClock, stream: bool
) -> None:
    limit_ms = 500.0
    app = create_app(
        fast_settings(**PACED | {"output_tokens_mean": 100}, max_request_s=limit_ms / 1000)
    )
    answer = await call(app, CHAT, body_for(CHAT, stream))
    entry = await only_entry(app)
    assert entry["cut"] == "time_limit"
    assert entry["error"]["code"] == "timeout"
    assert entry["timing"]["ended_ms"] == limit_ms
    if stream:
        assert answer.status == 200
        in_time = [t for t in schedule_ms(100) if t <= limit_ms]
        assert entry["events"] == on_time(in_time) + on_time([limit_ms], "frame")
    else:
        assert (answer.status, entry["status"]) == (504, 504)
        assert entry["timing"]["first_token_due_ms"] == TTFT_MS


async def test_shutdown_does_not_wait_for_the_journal_flusher(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    """The once-a-quarter-second flusher is cancelled on shutdown: Quart-Trio would
    otherwise give it BACKGROUND_TASK_SHUTDOWN_TIMEOUT (5 s) before cancelling it."""
    journal = tmp_path / "journal.jsonl"
    app = create_app(fast_settings(journal_file=str(journal)))
    async with app.test_app() as test_app:
        response = await test_app.test_client().post(
            "/v1/embeddings", json={"model": "e", "input": "hi"}
        )
        assert response.status_code == 200
        stopping = trio.current_time()
    assert trio.current_time() == stopping
    assert len(journal.read_bytes().splitlines()) == 1


async def test_a_stall_lists_its_tokens_then_the_time_limit_frame(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """``stall-after=3``: three token events on schedule, then only the time limit's
    frame; the cut's empty ending, written with the tokens due at once, is not an
    event."""
    app = create_app(fast_settings(ttft_ms=100, itl_ms=0, max_request_s=1))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    headers = {"x-mock-fault": "stall-after=3", "x-mock-output-tokens": "10"}
    async with app.test_app() as test_app:
        client = test_app.test_client()
        await (await client.post("/v1/chat/completions", json=body, headers=headers)).get_data()
        listing = await (await client.get("/_mock/requests")).get_json()
    (entry,) = listing["data"]
    assert entry["cut"] == "time_limit"
    assert [(e["due_ms"], e["kind"]) for e in entry["events"]] == [
        (100.0, "token"),
        (100.0, "token"),
        (100.0, "token"),
        (1000.0, "frame"),
    ]
