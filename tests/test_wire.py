"""The wire format over loopback: raw bodies and SSE frames, checked against OpenAI's spec.

Every non-streamed body and every streamed chunk is validated against the official OpenAPI
schema (``tests/openapi.py``), and the stream's framing is checked by hand: ``data:`` lines
only, one chunk per choice event, the role first, ``finish_reason`` last, whole tokens in
each chunk, usage last, then ``data: [DONE]``. Errors must be OpenAI-shaped JSON with the
offending field in ``param`` and never a traceback.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from conftest import server_in_thread
from helpers import ENC, tokens
from openapi import validate

if TYPE_CHECKING:
    from collections.abc import Iterator

    from conftest import StartServer

CHAT = "/v1/chat/completions"
MESSAGES = [{"role": "user", "content": "Say something."}]
FINGERPRINT = "fp_wire_test"
TIMEOUT = httpx.Timeout(10.0)

Json = dict[str, Any]


def sse_data(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking that nothing else is in it."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), text[-200:]
    payloads = []
    for event in text.removesuffix("\n\n").split("\n\n"):
        (line,) = event.split("\n")  # one data line per event, no comments or fields
        assert line.startswith("data: "), line
        payloads.append(line.removeprefix("data: "))
    return payloads


async def post_stream(url: str, body: Json) -> list[Json]:
    """POST a streamed request; return its chunks, each validated against the spec."""
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        response = await client.post(CHAT, json=body | {"stream": True})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_data(response.content)
    assert payloads[-1] == "[DONE]"
    assert "[DONE]" not in payloads[:-1]
    chunks: list[Json] = [json.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    return chunks


async def post_json(url: str, body: Json) -> Json:
    """POST a non-streamed request; return its body, validated against the spec."""
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        response = await client.post(CHAT, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    completion: Json = response.json()
    validate("CreateChatCompletionResponse", completion)
    return completion


def check_envelope(body: Json, obj: str, model: str) -> None:
    assert body["id"].startswith("chatcmpl-")
    assert len(body["id"]) > len("chatcmpl-")
    assert body["object"] == obj
    assert isinstance(body["created"], int)
    assert abs(body["created"] - time.time()) < 60
    assert body["model"] == model
    assert body["system_fingerprint"] == FINGERPRINT


def check_stream(
    chunks: list[Json], *, n: int, model: str, include_usage: bool, per_event: tuple[int, int]
) -> list[list[str]]:
    """Check a stream's structure; return each choice's content pieces (one per event)."""
    assert len({c["id"] for c in chunks}) == 1, "every chunk of a stream shares one id"
    assert len({c["created"] for c in chunks}) == 1
    for chunk in chunks:
        check_envelope(chunk, "chat.completion.chunk", model)
    if include_usage:
        *chunks, last = chunks
        assert last["choices"] == []
        usage = last["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert all("usage" in c and c["usage"] is None for c in chunks)
    else:
        assert all(c.get("usage") is None for c in chunks)

    events: defaultdict[int, list[Json]] = defaultdict(list)
    for chunk in chunks:
        (choice,) = chunk["choices"]  # one choice per chunk, as OpenAI streams them
        events[choice["index"]].append(choice)
    assert sorted(events) == list(range(n))

    contents: list[list[str]] = []
    for index in range(n):
        first, *rest = events[index]
        assert first["delta"]["role"] == "assistant", (
            "the first chunk of each choice names the role"
        )
        assert first["delta"].get("content") in ("", None)
        assert first["finish_reason"] is None
        assert rest, "at least one content chunk follows the role chunk"
        assert all("role" not in e["delta"] for e in rest)
        assert all(e["finish_reason"] is None for e in rest[:-1])
        assert rest[-1]["finish_reason"] in ("stop", "length"), (
            "the last chunk carries finish_reason"
        )
        pieces = [e["delta"]["content"] for e in rest]
        assert all(pieces), "content chunks are never empty"
        low, high = per_event
        counts = [tokens(p) for p in pieces]
        # Whole tokens: chunk boundaries are token boundaries, so counts add up.
        assert sum(counts) == tokens("".join(pieces))
        assert all(low <= c <= high for c in counts[:-1]), counts
        assert 1 <= counts[-1] <= high, counts  # the remainder may fall below the minimum
        contents.append(pieces)
    if include_usage:
        assert usage["completion_tokens"] == sum(tokens("".join(p)) for p in contents)
    return contents


# --- non-streamed bodies ---------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3])
async def test_body_matches_spec(start_server: StartServer, n: int) -> None:
    url = await start_server(system_fingerprint=FINGERPRINT, output_tokens_mean=20)
    body = await post_json(url, {"model": "wire-model", "messages": MESSAGES, "n": n})
    check_envelope(body, "chat.completion", "wire-model")
    assert [c["index"] for c in body["choices"]] == list(range(n))
    texts = [c["message"]["content"] for c in body["choices"]]
    assert all(c["message"]["role"] == "assistant" for c in body["choices"])
    assert all(c["finish_reason"] == "stop" for c in body["choices"])
    usage = body["usage"]
    assert usage["completion_tokens"] == sum(tokens(t) for t in texts)
    assert usage["prompt_tokens"] == 3 + (3 + tokens(MESSAGES[0]["content"]) + 1)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_body_capped_by_max_tokens(start_server: StartServer) -> None:
    url = await start_server(
        system_fingerprint=FINGERPRINT, output_tokens_mean=8, output_tokens_stddev=0
    )
    uncapped = await post_json(url, {"model": "m", "messages": MESSAGES, "max_tokens": 9})
    assert uncapped["choices"][0]["finish_reason"] == "stop"
    assert uncapped["usage"]["completion_tokens"] == 8
    body = await post_json(url, {"model": "m", "messages": MESSAGES, "max_tokens": 7})
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "length"
    assert tokens(choice["message"]["content"]) == 7 == body["usage"]["completion_tokens"]


# --- streams -----------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("n", [1, 3])
async def test_stream_matches_spec(start_server: StartServer, n: int, include_usage: bool) -> None:
    url = await start_server(system_fingerprint=FINGERPRINT, output_tokens_mean=30)
    body: Json = {"model": "wire-model", "messages": MESSAGES, "n": n, "seed": 7}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    chunks = await post_stream(url, body)
    contents = check_stream(
        chunks, n=n, model="wire-model", include_usage=include_usage, per_event=(1, 1)
    )
    # Same seed, not streamed: the same texts, and the body's usage matches the streamed one.
    completion = await post_json(url, {k: v for k, v in body.items() if k != "stream_options"})
    assert ["".join(p) for p in contents] == [
        c["message"]["content"] for c in completion["choices"]
    ]
    if include_usage:
        assert chunks[-1]["usage"] == completion["usage"]


async def test_stream_without_stream_options_has_no_usage_chunk(start_server: StartServer) -> None:
    url = await start_server(system_fingerprint=FINGERPRINT)
    chunks = await post_stream(url, {"model": "m", "messages": MESSAGES})
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


async def test_stream_tokens_per_event_range(start_server: StartServer) -> None:
    url = await start_server(
        system_fingerprint=FINGERPRINT,
        tokens_per_event_min=1,
        tokens_per_event_max=4,
        output_tokens_mean=80,
        output_tokens_stddev=0,
    )
    body = {
        "model": "m",
        "messages": MESSAGES,
        "n": 2,
        "seed": 3,
        "stream_options": {"include_usage": True},
    }
    chunks = await post_stream(url, body)
    contents = check_stream(chunks, n=2, model="m", include_usage=True, per_event=(1, 4))
    sizes = {tokens(p) for pieces in contents for p in pieces}
    assert len(sizes) > 1, "events of several sizes within 1..4"
    assert max(sizes) > 1
    assert chunks[-1]["usage"]["completion_tokens"] == 2 * 80


async def test_stream_tokens_per_event_fixed_size(start_server: StartServer) -> None:
    url = await start_server(
        system_fingerprint=FINGERPRINT,
        tokens_per_event_min=3,
        tokens_per_event_max=3,
        output_tokens_mean=10,
        output_tokens_stddev=0,
    )
    chunks = await post_stream(url, {"model": "m", "messages": MESSAGES})
    (pieces,) = check_stream(chunks, n=1, model="m", include_usage=False, per_event=(3, 3))
    assert [tokens(p) for p in pieces] == [3, 3, 3, 1]


# --- output modes --------------------------------------------------------------------------


async def test_echo_mode(start_server: StartServer) -> None:
    url = await start_server(system_fingerprint=FINGERPRINT, output_mode="echo")
    said = "Repeat after me, exactly: the quick brown fox."
    messages = [
        {"role": "system", "content": "You are a parrot."},
        {"role": "user", "content": "An earlier message."},
        {"role": "assistant", "content": "An earlier reply."},
        {"role": "user", "content": said},
    ]
    body = await post_json(url, {"model": "m", "messages": messages})
    (choice,) = body["choices"]
    assert choice["message"]["content"] == said
    assert choice["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == tokens(said)

    chunks = await post_stream(url, {"model": "m", "messages": messages, "n": 2})
    contents = check_stream(chunks, n=2, model="m", include_usage=False, per_event=(1, 1))
    assert ["".join(p) for p in contents] == [said, said]

    capped = await post_json(url, {"model": "m", "messages": messages, "max_tokens": 3})
    (choice,) = capped["choices"]
    assert choice["message"]["content"] == ENC.decode(ENC.encode(said)[:3])
    assert choice["finish_reason"] == "length"


async def test_fixed_mode(start_server: StartServer) -> None:
    fixed = "A fixed reply, every time."
    url = await start_server(system_fingerprint=FINGERPRINT, output_mode="fixed", fixed_text=fixed)
    body = await post_json(url, {"model": "m", "messages": MESSAGES, "n": 2})
    assert [c["message"]["content"] for c in body["choices"]] == [fixed, fixed]
    assert body["usage"]["completion_tokens"] == 2 * tokens(fixed)

    chunks = await post_stream(
        url, {"model": "m", "messages": MESSAGES, "stream_options": {"include_usage": True}}
    )
    (pieces,) = check_stream(chunks, n=1, model="m", include_usage=True, per_event=(1, 1))
    assert "".join(pieces) == fixed
    assert len(pieces) == tokens(fixed)


# --- models --------------------------------------------------------------------------------


async def test_models_match_spec(start_server: StartServer) -> None:
    """OpenAI's model object, plus vLLM's root, parent and context length."""
    url = await start_server(
        models=("alpha", "beta"), owned_by="wire-owner", context_lengths=("beta=4096",)
    )
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        listing = await client.get("/v1/models")
        one = await client.get("/v1/models/beta")
    assert listing.status_code == 200
    validate("ListModelsResponse", listing.json())
    assert [m["id"] for m in listing.json()["data"]] == ["alpha", "beta"]
    assert one.status_code == 200
    validate("Model", one.json())
    assert one.json()["id"] == "beta"
    assert one.json()["owned_by"] == "wire-owner"
    assert [(m["root"], m["parent"]) for m in listing.json()["data"]] == [
        ("alpha", None),
        ("beta", None),
    ]
    assert one.json()["max_model_len"] == 4096


# --- errors --------------------------------------------------------------------------------

BODY: Json = {"model": "trio-mock", "messages": MESSAGES}
MAX_BODY = 4096

ERRORS = [
    # (id, method, path, request kwargs, status, param, code)
    ("malformed-json", "POST", CHAT, {"content": b'{"model": "trio-mock",'}, 400, None, None),
    ("not-an-object", "POST", CHAT, {"json": [BODY]}, 400, None, None),
    (
        "bad-role",
        "POST",
        CHAT,
        {"json": BODY | {"messages": [{"role": "robot", "content": "hi"}]}},
        400,
        "messages[0].role",
        "invalid_value",
    ),
    (
        "bad-content-type",
        "POST",
        CHAT,
        {"json": BODY | {"messages": [*MESSAGES, {"role": "user", "content": 5}]}},
        400,
        "messages[1].content",
        "invalid_type",
    ),
    (
        "messages-not-array",
        "POST",
        CHAT,
        {"json": BODY | {"messages": "hi"}},
        400,
        "messages",
        "invalid_type",
    ),
    (
        "max-tokens-string",
        "POST",
        CHAT,
        {"json": BODY | {"max_tokens": "5"}},
        400,
        "max_tokens",
        "invalid_type",
    ),
    (
        "include-usage-string",
        "POST",
        CHAT,
        {"json": BODY | {"stream": True, "stream_options": {"include_usage": "yes"}}},
        400,
        "stream_options.include_usage",
        "invalid_type",
    ),
    (
        "stream-options-without-stream",
        "POST",
        CHAT,
        {"json": BODY | {"stream_options": {"include_usage": True}}},
        400,
        "stream_options",
        None,
    ),
    (
        "missing-model",
        "POST",
        CHAT,
        {"json": {"messages": MESSAGES}},
        400,
        "model",
        "missing_required_parameter",
    ),
    (
        "missing-messages",
        "POST",
        CHAT,
        {"json": {"model": "trio-mock"}},
        400,
        "messages",
        "missing_required_parameter",
    ),
    (
        "empty-messages",
        "POST",
        CHAT,
        {"json": BODY | {"messages": []}},
        400,
        "messages",
        "empty_array",
    ),
    (
        "max-tokens-0",
        "POST",
        CHAT,
        {"json": BODY | {"max_tokens": 0}},
        400,
        "max_tokens",
        "integer_below_min_value",
    ),
    (
        "max-completion-tokens-0",
        "POST",
        CHAT,
        {"json": BODY | {"max_completion_tokens": 0}},
        400,
        "max_completion_tokens",
        "integer_below_min_value",
    ),
    ("n-0", "POST", CHAT, {"json": BODY | {"n": 0}}, 400, "n", "integer_below_min_value"),
    (
        "n-0-stream",
        "POST",
        CHAT,
        {"json": BODY | {"n": 0, "stream": True}},
        400,
        "n",
        "integer_below_min_value",
    ),
    (
        "unknown-model",
        "POST",
        CHAT,
        {"json": BODY | {"model": "gpt-nope"}},
        404,
        "model",
        "model_not_found",
    ),
    (
        "unknown-model-stream",
        "POST",
        CHAT,
        {"json": BODY | {"model": "gpt-nope", "stream": True}},
        404,
        "model",
        "model_not_found",
    ),
    ("unknown-model-get", "GET", "/v1/models/gpt-nope", {}, 404, "model", "model_not_found"),
    ("unknown-path", "GET", "/v1/nowhere", {}, 404, None, "unknown_url"),
    (
        "unknown-path-post",
        "POST",
        "/v1/completions/nowhere",
        {"json": BODY},
        404,
        None,
        "unknown_url",
    ),
    ("wrong-method", "GET", CHAT, {}, 405, None, "method_not_allowed"),
    ("wrong-method-models", "POST", "/v1/models", {"json": {}}, 405, None, "method_not_allowed"),
    (
        "body-too-large",
        "POST",
        CHAT,
        {"json": BODY | {"user": "x" * (2 * MAX_BODY)}},
        413,
        None,
        "request_too_large",
    ),
]


@pytest.fixture(scope="module")
def error_server() -> Iterator[str]:
    """One server (in its own thread) for all the error cases: they share its settings."""
    with server_in_thread(any_model=False, max_body_bytes=MAX_BODY) as url:
        yield url


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "param", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in ERRORS],
)
async def test_error_response(
    error_server: str,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    param: str | None,
    code: str | None,
) -> None:
    async with httpx.AsyncClient(base_url=error_server, timeout=TIMEOUT) as client:
        response = await client.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    body = response.json()
    validate("ErrorResponse", body)
    error = body["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert error["message"]


async def test_body_under_limit_is_accepted(start_server: StartServer) -> None:
    """The 413 above is the limit at work, not every padded body being refused."""
    url = await start_server(max_body_bytes=MAX_BODY)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        response = await client.post(CHAT, json=BODY | {"user": "x" * (MAX_BODY // 2)})
    assert response.status_code == 200, response.text


async def test_known_model_accepted_when_any_model_off(start_server: StartServer) -> None:
    """The 404s above are for unknown names only."""
    url = await start_server(any_model=False, models=("a", "b"), system_fingerprint=FINGERPRINT)
    body = await post_json(url, {"model": "b", "messages": MESSAGES})
    assert body["model"] == "b"
