"""Anthropic's Messages API on ``/v1/messages`` (issue 20), through the official ``anthropic``
SDK over loopback, raw HTTP where the SDK hides the wire, and the Quart test client on a
MockClock for the schedule.

Shapes are checked against the SDK's own typed models (``anthropic.types``: ``Message``,
the ``Raw*Event`` stream events, ``MessageTokensCount``, ``ModelInfo``) and Anthropic's API
reference (https://docs.anthropic.com/en/api/messages, /messages-streaming, /errors,
/rate-limits, /versioning).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anthropic
import httpx
import jsonschema  # type: ignore[import-untyped]
import orjson
import pytest
import trio
import trio.testing

from conftest import SDK_TIMEOUT_S, fast_settings, server_in_thread
from helpers import HTTP_TIMEOUT_S, on_schedule, tokens
from trio_mock import create_app, running
from trio_mock._openai._errors import OpenAIError, anthropic_error_body, status_error
from trio_mock._serve._messages import AnthropicDialect, seconds_of

if TYPE_CHECKING:
    from anthropic.types import MessageParam, ToolParam

HI: list[MessageParam] = [{"role": "user", "content": "Say hello."}]
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"enum": ["c", "f"]},
    },
    "required": ["city", "days"],
    "additionalProperties": False,
}
TOOLS: list[ToolParam] = [
    {"name": "get_weather", "description": "The forecast.", "input_schema": WEATHER_SCHEMA},
    {"name": "get_time", "input_schema": {"type": "object", "properties": {"zone": {"type": "string"}}}},
]  # fmt: skip
FIVE: dict[str, Any] = {"output_tokens_mean": 5, "output_tokens_stddev": 0}
VERSION = {"anthropic-version": "2023-06-01"}
BODY: dict[str, Any] = {"model": "claude-test", "max_tokens": 64, "messages": HI}


def sync_sdk(url: str, **options: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=url, api_key="sk-ant-test", max_retries=0, timeout=SDK_TIMEOUT_S, **options
    )


def async_sdk(url: str, **options: Any) -> anthropic.AsyncAnthropic:
    options = {"max_retries": 0} | options
    return anthropic.AsyncAnthropic(
        base_url=url, api_key="sk-ant-test", timeout=SDK_TIMEOUT_S, **options
    )


async def post(
    url: str, path: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_S) as client:
        return await client.post(path, json=body, headers=VERSION | (headers or {}))


def events_of(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """Each named SSE event: (``event:`` name, decoded ``data:``)."""
    found = []
    for block in raw.split(b"\n\n"):
        if not block.strip():
            continue
        name, data = block.split(b"\n")
        assert name.startswith(b"event: ")
        assert data.startswith(b"data: ")
        event = orjson.loads(data[6:])
        assert event["type"] == name[7:].decode()  # the name repeats the data's type
        found.append((name[7:].decode(), event))
    return found


# --- the SDK: messages.create and messages.stream ------------------------------------------


def test_sync_create_and_stream() -> None:
    with server_in_thread(**FIVE) as url, sync_sdk(url) as client:
        message = client.messages.create(model="claude-test", max_tokens=64, messages=HI)
        with client.messages.stream(model="claude-test", max_tokens=64, messages=HI) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_message()

    assert message.id.startswith("msg_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "claude-test"
    (block,) = message.content
    assert block.type == "text"
    assert block.text
    assert tokens(block.text) == 5
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    usage = message.usage
    assert usage.output_tokens == 5
    assert usage.input_tokens > 0
    assert usage.cache_creation_input_tokens == 0
    assert usage.cache_read_input_tokens == 0

    # The SDK's event iterator adds its own "text" events after each delta.
    raw = [k for k in kinds if k != "text"]
    assert raw == [
        "message_start", "content_block_start", *["content_block_delta"] * 5,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5
    assert final.content[0].type == "text"
    assert tokens(final.content[0].text) == 5


async def test_async_create_and_stream() -> None:
    async with running(fast_settings(**FIVE)) as server, async_sdk(server.base_url) as client:
        message = await client.messages.create(model="claude-test", max_tokens=64, messages=HI)
        async with client.messages.stream(
            model="claude-test", max_tokens=64, messages=HI
        ) as stream:
            texts = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        entries = await server.requests()

    assert message.content[0].type == "text"
    assert tokens(message.content[0].text) == 5
    assert len(texts) == 5
    assert final.content[0].type == "text"
    assert "".join(texts) == final.content[0].text
    journal = [(e["endpoint"], e["status"], e["plan"]["finish_reason"]) for e in entries]
    assert journal == [("/v1/messages", 200, "end_turn")] * 2


async def test_the_wire_order_with_ping() -> None:
    """message_start, the first block's start and a ping, then deltas, stop, message_delta
    (stop reason and final usage), message_stop: the reference's order."""
    async with running(fast_settings(**FIVE)) as server:
        response = await post(server.base_url, "/v1/messages", BODY | {"stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = events_of(response.content)
    names = [name for name, _ in events]
    assert names == [
        "message_start", "content_block_start", "ping", *["content_block_delta"] * 5,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    start = events[0][1]["message"]
    assert start["content"] == []
    assert start["stop_reason"] is None
    assert start["usage"]["output_tokens"] == 1
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert all(e["delta"]["type"] == "text_delta" for n, e in events if n == "content_block_delta")
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 5
    assert delta["usage"]["input_tokens"] == start["usage"]["input_tokens"]


def test_max_tokens_and_stop_sequences() -> None:
    fixed: dict[str, Any] = {"output_mode": "fixed", "fixed_text": "alpha beta gamma delta epsilon"}
    with server_in_thread(**fixed) as url, sync_sdk(url) as client:
        capped = client.messages.create(model="claude-test", max_tokens=2, messages=HI)
        stopped = client.messages.create(
            model="claude-test", max_tokens=64, messages=HI, stop_sequences=["zeta", " gamma"]
        )
        with client.messages.stream(
            model="claude-test", max_tokens=64, messages=HI, stop_sequences=[" gamma"]
        ) as stream:
            streamed = stream.get_final_message()
    assert capped.stop_reason == "max_tokens"
    assert capped.usage.output_tokens == 2
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == " gamma"
    assert stopped.content[0].type == "text"
    assert stopped.content[0].text == "alpha beta"
    assert (streamed.stop_reason, streamed.stop_sequence) == ("stop_sequence", " gamma")


# --- tools and thinking --------------------------------------------------------------------


def test_tool_use_any_and_named() -> None:
    """tool_choice any and a named tool: tool_use blocks whose input parses and is valid
    for the tool's schema, streamed or not."""
    with server_in_thread() as url, sync_sdk(url) as client:
        anyone = client.messages.create(
            model="claude-test", max_tokens=512, messages=HI, tools=TOOLS,
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
        )  # fmt: skip
        named = client.messages.create(
            model="claude-test", max_tokens=512, messages=HI, tools=TOOLS,
            tool_choice={"type": "tool", "name": "get_weather"},
        )  # fmt: skip
        with client.messages.stream(
            model="claude-test", max_tokens=512, messages=HI, tools=TOOLS,
            tool_choice={"type": "tool", "name": "get_weather"},
        ) as stream:  # fmt: skip
            kinds = {event.type for event in stream}
            streamed = stream.get_final_message()

    schemas = {tool["name"]: tool["input_schema"] for tool in TOOLS}
    (call,) = anyone.content
    assert call.type == "tool_use"
    assert call.name in schemas
    jsonschema.validate(call.input, schemas[call.name])
    assert anyone.stop_reason == "tool_use"
    for message in (named, streamed):
        (call,) = message.content
        assert call.type == "tool_use"
        assert call.id.startswith("toolu_")
        assert call.name == "get_weather"
        jsonschema.validate(call.input, WEATHER_SCHEMA)
        assert message.stop_reason == "tool_use"
    assert "input_json" in kinds  # the SDK's event for each input_json_delta


def test_tool_result_round_trip() -> None:
    """A tool_result answering the previous message's tool_use is accepted."""
    with server_in_thread(**FIVE) as url, sync_sdk(url) as client:
        first = client.messages.create(
            model="claude-test", max_tokens=256, messages=HI, tools=TOOLS,
            tool_choice={"type": "tool", "name": "get_time"},
        )  # fmt: skip
        call = first.content[0]
        assert call.type == "tool_use"
        used: Any = call.model_dump(include={"type", "id", "name", "input"})
        turns: list[MessageParam] = [
            *HI,
            {"role": "assistant", "content": [used]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "12:00"}]},
        ]  # fmt: skip
        second = client.messages.create(
            model="claude-test", max_tokens=32, tools=TOOLS, messages=turns,
            tool_choice={"type": "none"},
        )  # fmt: skip
    assert second.content[0].type == "text"
    assert second.stop_reason == "end_turn"


def test_thinking_blocks() -> None:
    """Extended thinking: a thinking block with a signature first, within its budget,
    streamed as thinking_delta then signature_delta."""
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    thinks = fast_settings(reasoning_tokens_mean=40, reasoning_tokens_stddev=0, **FIVE)
    with server_in_thread(thinks) as url, sync_sdk(url) as client:
        message = client.messages.create(
            model="claude-test", max_tokens=2048, messages=HI, thinking=thinking
        )
        with client.messages.stream(
            model="claude-test", max_tokens=2048, messages=HI, thinking=thinking
        ) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_message()
        plain = client.messages.create(model="claude-test", max_tokens=64, messages=HI)
    for reply in (message, final):
        thought, text = reply.content
        assert thought.type == "thinking"
        assert tokens(thought.thinking) == 40
        assert len(thought.signature) > 64
        assert text.type == "text"
        assert reply.usage.output_tokens == 45
    assert "thinking" in kinds
    assert "signature" in kinds  # the SDK's event for the signature_delta
    assert kinds.index("signature") < kinds.index("text")
    assert [block.type for block in plain.content] == ["text"]  # only when asked for


async def test_thinking_events_on_the_wire() -> None:
    body = BODY | {"stream": True, "max_tokens": 2048,
                   "thinking": {"type": "enabled", "budget_tokens": 1500}}  # fmt: skip
    async with running(
        fast_settings(reasoning_tokens_mean=3, reasoning_tokens_stddev=0, **FIVE)
    ) as server:
        response = await post(server.base_url, "/v1/messages", body)
    events = events_of(response.content)
    blocks = [
        (e["index"], e["content_block"]["type"]) for n, e in events if n == "content_block_start"
    ]
    assert blocks == [(0, "thinking"), (1, "text")]
    deltas = [(e["index"], e["delta"]["type"]) for n, e in events if n == "content_block_delta"]
    assert deltas == [
        (0, "thinking_delta"), (0, "thinking_delta"), (0, "thinking_delta"),
        (0, "signature_delta"), *[(1, "text_delta")] * 5,
    ]  # fmt: skip
    stops = [e["index"] for n, e in events if n == "content_block_stop"]
    assert stops == [0, 1]


# --- count_tokens and models ---------------------------------------------------------------


def test_count_tokens_and_models() -> None:
    with server_in_thread(**FIVE) as url, sync_sdk(url) as client:
        short = client.messages.count_tokens(model="claude-test", messages=HI)
        longer = client.messages.count_tokens(
            model="claude-test", messages=HI, system="You are a weather bot.", tools=TOOLS
        )
        message = client.messages.create(model="claude-test", max_tokens=8, messages=HI)
        models = client.models.list()
        one = client.models.retrieve("trio-mock")
        with pytest.raises(anthropic.BadRequestError) as bad:
            client.messages.count_tokens(model="claude-test", messages=[])
        openai_listing = httpx.get(url + "/v1/models", timeout=HTTP_TIMEOUT_S).json()
    assert short.input_tokens == message.usage.input_tokens
    assert longer.input_tokens > short.input_tokens + 346  # the tools' own system prompt
    (listed,) = models.data
    assert (listed.type, listed.id, listed.display_name) == ("model", "trio-mock", "trio-mock")
    assert listed.max_input_tokens == 131072
    assert one.id == "trio-mock"
    assert isinstance(bad.value.body, dict)
    assert bad.value.body["error"]["message"] == "messages: at least one message is required"
    assert openai_listing["object"] == "list"  # without anthropic-version: OpenAI's
    assert openai_listing["data"][0]["object"] == "model"


# --- errors --------------------------------------------------------------------------------


def error_of(response: httpx.Response, status: int, kind: str) -> str:
    """Anthropic's ``{"type": "error", "error": {"type", "message"}}``; the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"type", "error"}
    assert body["type"] == "error"
    assert set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind
    message: str = body["error"]["message"]
    return message


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"model": "m", "messages": HI}, "max_tokens: Field required"),
    (BODY | {"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
    (BODY | {"max_tokens": "9"}, "max_tokens: Input should be a valid integer"),
    ({"model": "m", "max_tokens": 9}, "messages: Field required"),
    (BODY | {"messages": [{"role": "system", "content": "x"}]}, "messages.0.role: Input should be 'user', 'assistant'"),
    (BODY | {"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages.0.content.0.type: Input tag 'video'"),
    (BODY | {"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0.text: Field required"),
    (BODY | {"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x"}]}]},
     "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_x."),
    (BODY | {"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": ""}}]}]},
     "messages.0.content.0.source.media_type: Input should be"),
    (BODY | {"messages": [{"role": "user", "content": []}]}, "messages.0: all messages must have non-empty content"),
    (BODY | {"messages": [*HI, {"role": "assistant", "content": ""}, *HI]}, "messages.1: all messages must have non-empty content"),
    (BODY | {"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
    (BODY | {"top_p": -0.1}, "top_p: Input should be greater than or equal to 0"),
    (BODY | {"top_k": -1}, "top_k: Input should be greater than or equal to 0"),
    (BODY | {"stop_sequences": "x"}, "stop_sequences: Input should be a valid list"),
    (BODY | {"stop_sequences": ["x"] * 65}, "stop_sequences: List should have at most 64 items"),
    (BODY | {"metadata": {"user_id": "u" * 257}}, "metadata.user_id: String should have at most 256"),
    (BODY | {"system": [{"type": "image"}]}, "system.0.type: Input should be 'text'"),
    (BODY | {"tools": [{"name": "x"}]}, "tools.0.input_schema: Field required"),
    (BODY | {"tools": [{"name": "bad name", "input_schema": {"type": "object"}}]}, "tools.0.name: String should match pattern"),
    (BODY | {"tools": [{"name": "x", "input_schema": {"type": "array"}}]}, "tools.0.input_schema.type: Input should be 'object'"),
    (BODY | {"tool_choice": {"type": "any"}}, "tool_choice: tool_choice.type 'any' requires at least one tool"),
    (BODY | {"tools": TOOLS, "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice.name: Tool 'nope' not found"),
    (BODY | {"tools": TOOLS, "tool_choice": {"type": "sometimes"}}, "tool_choice.type: Input should be"),
    (BODY | {"thinking": {"type": "enabled", "budget_tokens": 100}}, "thinking.budget_tokens: Input should be greater than or equal to 1024"),
    (BODY | {"thinking": {"type": "enabled", "budget_tokens": 2000}}, "max_tokens: `max_tokens` must be greater than `thinking.budget_tokens`"),
    (BODY | {"max_tokens": 4000, "thinking": {"type": "enabled", "budget_tokens": 2000}, "temperature": 0.5},
     "temperature: may only be set to 1 when thinking is enabled"),
    (BODY | {"max_tokens": 4000, "tools": TOOLS, "tool_choice": {"type": "any"}, "thinking": {"type": "enabled", "budget_tokens": 2000}},
     "thinking: Thinking may not be enabled when tool_choice forces tool use."),
    (BODY | {"max_tokens": 10**9}, "input length and `max_tokens` exceed context limit"),
    (BODY | {"stream": "yes"}, "stream: Input should be a valid boolean"),
]  # fmt: skip


async def test_bad_input_is_an_anthropic_400_naming_the_field() -> None:
    async with running(fast_settings()) as server:
        answers = [await post(server.base_url, "/v1/messages", body) for body, _ in BAD_BODIES]
        not_json = await post(server.base_url, "/v1/messages", None)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT_S) as client:
            broken = await client.post("/v1/messages", content=b"{nope", headers=VERSION)
            no_version = await client.post("/v1/messages", json=BODY)
            odd_version = await client.post("/v1/messages", json=BODY,
                                            headers={"anthropic-version": "latest"})  # fmt: skip
    for response, (_, expected) in zip(answers, BAD_BODIES, strict=True):
        assert error_of(response, 400, "invalid_request_error").startswith(expected)
    error_of(not_json, 400, "invalid_request_error")
    error_of(broken, 400, "invalid_request_error")
    assert (
        error_of(no_version, 400, "invalid_request_error")
        == "anthropic-version: header is required"
    )
    assert "is not a valid version" in error_of(odd_version, 400, "invalid_request_error")


def test_the_sdk_error_classes() -> None:
    settings = fast_settings(fault_retry_after_s=0.2, models=("claude-test",), any_model=False)
    with server_in_thread(settings) as url, sync_sdk(url) as client:
        raised = {}
        for fault, kind in [("500", anthropic.InternalServerError),
                                ("529", anthropic.OverloadedError),
                                ("429", anthropic.RateLimitError)]:  # fmt: skip
            with pytest.raises(kind) as caught:
                client.messages.create(model="claude-test", max_tokens=8, messages=HI,
                                           extra_headers={"x-mock-fault": fault})  # fmt: skip
            raised[fault] = caught.value
        with pytest.raises(anthropic.BadRequestError):
            client.messages.create(model="claude-test", max_tokens=-1, messages=HI)
        with pytest.raises(anthropic.NotFoundError) as missing:
            client.messages.create(model="claude-unknown", max_tokens=8, messages=HI)
    assert raised["529"].body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert raised["500"].body == {
        "type": "error",
        "error": {"type": "api_error", "message": "Internal server error"},
    }
    assert isinstance(raised["429"].body, dict)
    assert raised["429"].body["error"]["type"] == "rate_limit_error"
    assert raised["429"].response.headers["retry-after"] == "1"
    assert raised["529"].response.headers["retry-after"] == "1"
    assert "anthropic-ratelimit-requests-remaining" in raised["429"].response.headers
    assert isinstance(missing.value.body, dict)
    assert missing.value.body["error"]["type"] == "not_found_error"


def test_authentication_with_x_api_key_or_bearer() -> None:
    with server_in_thread(api_keys=("sk-ant-right",)) as url:
        with sync_sdk(url) as wrong, pytest.raises(anthropic.AuthenticationError) as denied:
            wrong.messages.create(model="claude-test", max_tokens=8, messages=HI)
        with anthropic.Anthropic(base_url=url, api_key="sk-ant-right", max_retries=0) as right:
            message = right.messages.create(model="claude-test", max_tokens=8, messages=HI)
        by_header = httpx.post(url + "/v1/messages", json=BODY, timeout=HTTP_TIMEOUT_S,
                               headers=VERSION | {"x-api-key": "sk-ant-right"})  # fmt: skip
        wrong_header = httpx.post(url + "/v1/messages/count_tokens", json=BODY,
                                  timeout=HTTP_TIMEOUT_S,
                                  headers=VERSION | {"x-api-key": "sk-ant-wrong"})  # fmt: skip
    assert isinstance(denied.value.body, dict)
    assert denied.value.body["error"]["type"] == "authentication_error"
    assert message.content
    assert by_header.status_code == 200
    error_of(wrong_header, 401, "authentication_error")


async def test_sdk_waits_retry_after_then_succeeds() -> None:
    """A scripted 429 for messages, twice: the SDK waits retry-after (1.5 s, above its own
    backoff) before each retry, and the third attempt is answered."""
    async with running(fast_settings(fault_retry_after_s=1.5)) as server:
        server.script({"match": {"endpoint": "messages"}, "reply": {"error": {"status": 429}},
                       "times": 2})  # fmt: skip
        async with async_sdk(server.base_url, max_retries=2) as client:
            start = trio.current_time()
            raw = await client.messages.with_raw_response.create(
                model="claude-test", max_tokens=8, messages=HI
            )
            waited = trio.current_time() - start
        entries = await server.requests()
    assert raw.retries_taken == 2
    assert (await raw.parse()).content
    assert [entry["status"] for entry in entries] == [429, 429, 200]
    assert waited >= 3.0


async def test_rate_limit_headers_are_anthropic_s() -> None:
    async with running(fast_settings(rate_limit_rpm=2)) as server:
        answers = [await post(server.base_url, "/v1/messages", BODY) for _ in range(3)]
    first, _, refused = answers
    assert first.status_code == 200
    assert first.headers["anthropic-ratelimit-requests-limit"] == "2"
    assert first.headers["anthropic-ratelimit-requests-remaining"] == "1"
    assert first.headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert not [h for h in first.headers if h.startswith("x-ratelimit-")]
    error_of(refused, 429, "rate_limit_error")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"


async def test_a_mid_stream_error_is_an_error_event() -> None:
    async with running(fast_settings(**FIVE)) as server:
        response = await post(server.base_url, "/v1/messages", BODY | {"stream": True},
                              {"x-mock-fault": "error-after=2"})  # fmt: skip
        async with async_sdk(server.base_url) as client, client.messages.stream(
            model="claude-test", max_tokens=64, messages=HI,
            extra_headers={"x-mock-fault": "error-after=2"},
        ) as stream:  # fmt: skip
            with pytest.raises(anthropic.APIStatusError) as caught:
                await stream.get_final_message()
    events = events_of(response.content)
    assert [n for n, _ in events][-3:] == ["content_block_delta", "content_block_delta", "error"]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "api_error", "message": "Internal server error"},
    }
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "api_error"


def test_error_shape_of_each_status() -> None:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
             500: "api_error", 502: "api_error", 504: "timeout_error", 529: "overloaded_error"}  # fmt: skip
    for status, kind in kinds.items():
        body = anthropic_error_body(OpenAIError(status, "why"))
        assert body == {"type": "error", "error": {"type": kind, "message": "why"}}
    assert anthropic_error_body(status_error(529))["error"] == {"type": "overloaded_error",
                                                                "message": "Overloaded"}  # fmt: skip


# --- scripted replies, the journal, metrics ------------------------------------------------


async def test_scripted_rule_for_messages() -> None:
    """Rules target ``endpoint: messages`` (content, or a tool call as a tool_use block);
    metrics count the requests under ``endpoint=\"/messages\"``."""
    async with running(fast_settings()) as server:
        server.script(
            {"match": {"endpoint": "messages", "text": "weather"}, "reply": {"content": "Sunny."}},
            {"match": {"endpoint": "messages", "text": "call"},
             "reply": {"tool_call": {"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}}},
        )  # fmt: skip
        async with async_sdk(server.base_url) as client:
            sunny = await client.messages.create(
                model="claude-test", max_tokens=32,
                messages=[{"role": "user", "content": "How is the weather?"}],
            )  # fmt: skip
            called = await client.messages.create(
                model="claude-test", max_tokens=32, tools=TOOLS,
                messages=[{"role": "user", "content": [{"type": "text", "text": "call it"}]}],
            )  # fmt: skip
            chat = await post(server.base_url, "/v1/chat/completions",
                              {"model": "m", "messages": [{"role": "user", "content": "weather?"}]})  # fmt: skip
        async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT_S) as http:
            metrics = (await http.get("/metrics")).text
    assert sunny.content[0].type == "text"
    assert sunny.content[0].text == "Sunny."
    (call,) = called.content
    assert call.type == "tool_use"
    assert (call.name, call.input) == ("get_weather", {"city": "Oslo", "days": 2})
    assert called.stop_reason == "tool_use"
    assert chat.json()["choices"][0]["message"]["content"] != "Sunny."  # messages only
    counted = [
        line for line in metrics.splitlines() if line.startswith("trio_mock_requests_total{")
    ]
    assert any('endpoint="/messages"' in line and 'status="200"' in line for line in counted)


# --- the schedule, on a MockClock ----------------------------------------------------------


async def timed_events(
    body: dict[str, Any], **leaves: Any
) -> list[tuple[float, str, dict[str, Any]]]:
    """POST ``body`` to /v1/messages in memory; each event with its arrival."""
    app = create_app(fast_settings(**leaves))
    out: list[tuple[float, str, dict[str, Any]]] = []
    async with app.test_app() as test_app:
        client = test_app.test_client()
        start = trio.current_time()
        headers = {"content-type": "application/json"} | VERSION
        async with client.request("/v1/messages", method="POST", headers=headers) as conn:
            await conn.send(orjson.dumps(body))
            await conn.send_complete()
            while True:
                try:
                    data = await conn.receive()
                except Exception:  # the test connection signals the end with an exception
                    break
                arrived = trio.current_time() - start
                out += [(arrived, name, event) for name, event in events_of(data)]
                if b"message_stop" in data:
                    break
    return out


async def test_events_follow_the_schedule(autojump_clock: trio.testing.MockClock) -> None:
    """The opening (message_start, the block's start, ping) leaves at once; delta ``i`` at
    ``ttft + i * itl``; message_delta and message_stop with the last one."""
    body = BODY | {"stream": True, "max_tokens": 4}
    events = await timed_events(body, ttft_ms=200, itl_ms=25)
    at = {name: t for t, name, _ in reversed(events)}
    assert at["message_start"] == at["content_block_start"] == at["ping"] == 0.0
    deltas = [t for t, name, _ in events if name == "content_block_delta"]
    assert deltas == pytest.approx(on_schedule(4, 0.2, 0.025), abs=1e-9)
    last = {name: t for t, name, _ in events}
    assert last["message_delta"] == last["message_stop"] == pytest.approx(0.275, abs=1e-9)


async def test_thinking_then_text_on_one_schedule(autojump_clock: trio.testing.MockClock) -> None:
    body = BODY | {"stream": True, "max_tokens": 2000,
                   "thinking": {"type": "enabled", "budget_tokens": 1024}}  # fmt: skip
    events = await timed_events(body, ttft_ms=100, itl_ms=10, reasoning_tokens_mean=3,
                                reasoning_tokens_stddev=0, **FIVE)  # fmt: skip
    tokens_at = [t for t, name, e in events
                 if name == "content_block_delta" and e["delta"]["type"] != "signature_delta"]  # fmt: skip
    assert tokens_at == pytest.approx(on_schedule(8, 0.1, 0.01), abs=1e-9)
    (text_start,) = [t for t, name, e in events
                     if name == "content_block_start" and e["index"] == 1]  # fmt: skip
    assert text_start == pytest.approx(0.13, abs=1e-9)  # with the text's first token


async def test_a_body_waits_for_its_last_token(autojump_clock: trio.testing.MockClock) -> None:
    events = await timed_body(BODY | {"max_tokens": 4}, ttft_ms=200, itl_ms=25)
    assert events == pytest.approx(0.275, abs=1e-9)


async def timed_body(body: dict[str, Any], **leaves: Any) -> float:
    app = create_app(fast_settings(**leaves))
    async with app.test_app() as test_app:
        client = test_app.test_client()
        start = trio.current_time()
        response = await client.post("/v1/messages", json=body, headers=VERSION)
        assert response.status_code == 200
        assert (await response.get_json())["usage"]["output_tokens"] == 4
        return trio.current_time() - start


async def test_the_journal_redacts_x_api_key() -> None:
    async with running(fast_settings()) as server:
        await post(server.base_url, "/v1/messages", BODY, {"x-api-key": "sk-ant-secret"})
        (entry,) = await server.requests()
    assert entry["headers"]["x-api-key"] == "[redacted]"
    assert "sk-ant-secret" not in orjson.dumps(entry).decode()


def test_rate_limit_headers_renamed() -> None:
    """The limiter's OpenAI headers as Anthropic names them; a reset becomes a UTC time."""
    renamed = dict(AnthropicDialect().renamed([
        (b"x-ratelimit-limit-requests", b"60"),
        (b"x-ratelimit-remaining-tokens", b"10"),
        (b"x-ratelimit-reset-requests", b"1m30s"),
        (b"retry-after", b"2"),
    ]))  # fmt: skip
    reset = renamed.pop(b"anthropic-ratelimit-requests-reset").decode()
    assert renamed == {
        b"anthropic-ratelimit-requests-limit": b"60",
        b"anthropic-ratelimit-tokens-remaining": b"10",
        b"retry-after": b"2",
    }
    in_s = datetime.fromisoformat(reset).timestamp() - time.time()
    assert 88 <= in_s <= 91
    assert [seconds_of(d) for d in (b"0s", b"20ms", b"1.5s", b"6m0s", b"bad")] == [
        0.0, 0.02, 1.5, 360.0, 0.0,
    ]  # fmt: skip
