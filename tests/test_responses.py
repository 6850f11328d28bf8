"""``POST /v1/responses`` (and ``/responses``) over loopback: the official SDK and the wire.

The ``openai`` SDK drives the endpoint sync (``server_in_thread``) and async (``start_server``),
plain and streamed, including its ``responses.stream(...)`` helper and ``get_final_response()``.
Raw httpx checks what the SDK would hide: every body validates against the spec's ``Response``,
every streamed event against ``ResponseStreamEvent`` and its own event schema, the SSE carries
an ``event:`` line naming each data's ``type``, ``sequence_number`` counts 0, 1, 2, ... and no
``[DONE]`` follows. Around that: input as a string or as items (message, ``input_text`` parts,
``function_call_output``), instructions and token accounting, ``max_output_tokens`` and the
``incomplete`` status, reasoning models and ``reasoning.effort``, function tools (arguments valid
for their schema, streamed as argument deltas), built-in tools that are never called,
structured output, and OpenAI-shaped errors naming the right ``param``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseReasoningItem,
    ResponseTextDeltaEvent,
)
from pydantic import BaseModel

from conftest import async_client, server_in_thread, sync_client
from helpers import post, tokens
from openapi import validate

if TYPE_CHECKING:
    from openai.types.responses import (
        FunctionToolParam,
        Response,
        ResponseInputParam,
        ResponseStreamEvent,
        ResponseTextConfigParam,
        WebSearchToolParam,
    )

    from conftest import StartServer

Json = dict[str, Any]

TIMEOUT_S = 10.0
PATH = "/v1/responses"
# Knobs for replies of exactly 5 tokens.
FIVE: dict[str, Any] = {"output_tokens_mean": 5, "output_tokens_stddev": 0}
# Reasoning of exactly 8 tokens at medium effort (4 at low, 16 at high).
THINK8: dict[str, Any] = {"reasoning_tokens_mean": 8, "reasoning_tokens_stddev": 0}

WEATHER_PARAMETERS: Json = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
    "additionalProperties": False,
}
WEATHER: Json = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather forecast for a city.",
    "parameters": WEATHER_PARAMETERS,
    "strict": True,
}
TIME_PARAMETERS: Json = {
    "type": "object",
    "properties": {"zone": {"type": "string"}},
    "required": ["zone"],
    "additionalProperties": False,
}
TIME: Json = {"type": "function", "name": "get_time", "parameters": TIME_PARAMETERS}
NEWS_PARAMETERS: Json = {
    "type": "object",
    "properties": {"topic": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["topic"],
}
NEWS: Json = {"type": "function", "name": "get_news", "parameters": NEWS_PARAMETERS}
PARAMETERS_OF = {"get_weather": WEATHER_PARAMETERS, "get_time": TIME_PARAMETERS}
PARAMETERS_OF["get_news"] = NEWS_PARAMETERS
WEB_SEARCH: WebSearchToolParam = {"type": "web_search"}
BAD_EFFORT: Any = {"effort": "extreme"}  # not a ReasoningEffort, on purpose

PERSON_SCHEMA: Json = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"type": "string"}},
        "role": {"type": "string", "enum": ["admin", "user"]},
    },
    "required": ["name", "age", "tags", "role"],
    "additionalProperties": False,
}
PERSON_FORMAT: ResponseTextConfigParam = {
    "format": {"type": "json_schema", "name": "person", "schema": PERSON_SCHEMA, "strict": True}
}

# The spec schema of each event type the endpoint may send.
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.reasoning_text.delta": "ResponseReasoningTextDeltaEvent",
    "response.reasoning_text.done": "ResponseReasoningTextDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
}
DELTA_TYPES = {
    "message": "response.output_text.delta",
    "reasoning": "response.reasoning_text.delta",
    "function_call": "response.function_call_arguments.delta",
}


def function_tool(tool: Json) -> FunctionToolParam:
    """The SDK's typed form of a wire tool (the SDK requires ``strict``, maybe None)."""
    return {
        "type": "function",
        "name": tool["name"],
        "parameters": tool["parameters"],
        "strict": tool.get("strict"),
    }


def message_item(items: list[Json]) -> Json:
    (message,) = [i for i in items if i["type"] == "message"]
    return message


def body_text(body: Json) -> str:
    """The text of a response body's message item (one ``output_text`` part)."""
    (part,) = message_item(body["output"])["content"]
    assert part["type"] == "output_text"
    text: str = part["text"]
    return text


def item_events(kind: str, n: int) -> list[str]:
    """The event types of one output item carrying ``n`` deltas, in order."""
    delta = DELTA_TYPES[kind]
    if kind == "function_call":
        return [
            "response.output_item.added",
            *[delta] * n,
            "response.function_call_arguments.done",
            "response.output_item.done",
        ]
    done = "response.output_text.done" if kind == "message" else "response.reasoning_text.done"
    return [
        "response.output_item.added",
        "response.content_part.added",
        *[delta] * n,
        done,
        "response.content_part.done",
        "response.output_item.done",
    ]


def stream_events(*items: tuple[str, int], end: str = "response.completed") -> list[str]:
    """The full event sequence for output items ``(kind, deltas)``."""
    middle = [t for kind, n in items for t in item_events(kind, n)]
    return ["response.created", "response.in_progress", *middle, end]


# --- raw wire helpers ------------------------------------------------------------------


async def post_json(
    url: str, body: Json, path: str = PATH, headers: dict[str, str] | None = None
) -> Json:
    """POST a non-streamed request; its body, validated against the spec's ``Response``."""
    response = await post(url, path, body, headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    decoded: Json = response.json()
    validate("Response", decoded)
    return decoded


def sse_events(raw: bytes) -> list[Json]:
    """Parse a Responses SSE body: each event is ``event: <type>`` then one ``data:`` line."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), text[-200:]
    events = []
    for block in text.removesuffix("\n\n").split("\n\n"):
        name_line, data_line = block.split("\n")  # exactly two lines, no comments
        assert name_line.startswith("event: "), block
        assert data_line.startswith("data: "), block
        payload = data_line.removeprefix("data: ")
        assert payload != "[DONE]", "the Responses API sends no [DONE]"
        event: Json = json.loads(payload)
        assert event["type"] == name_line.removeprefix("event: "), block
        events.append(event)
    return events


async def post_stream(
    url: str, body: Json, path: str = PATH, headers: dict[str, str] | None = None
) -> list[Json]:
    """POST a streamed request; its events, each checked by ``check_event``."""
    response = await post(url, path, body | {"stream": True}, headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.content)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        check_event(event)
    return events


def check_event(event: Json) -> None:
    """Validate one event against ``ResponseStreamEvent`` and its own schema."""
    assert event["type"] in EVENT_SCHEMAS, f"unexpected event type {event['type']!r}"
    validate("ResponseStreamEvent", event)
    validate(EVENT_SCHEMAS[event["type"]], event)


def check_stream_items(events: list[Json]) -> Json:
    """Check that each item's events name it consistently; return the final response.

    Every event after ``output_item.added`` at ``output_index`` k carries k and that item's
    id, each item's deltas join to its done text, and the final response's output equals
    the items as they were done.
    """
    created, in_progress, *middle, last = events
    assert created["response"]["status"] == in_progress["response"]["status"] == "in_progress"
    assert created["response"]["output"] == []
    assert created["response"].get("usage") is None, "no usage before the end"
    final: Json = last["response"]
    assert created["response"]["id"] == in_progress["response"]["id"] == final["id"]
    assert last["type"] == f"response.{final['status']}"
    done_items: list[Json] = []
    current: Json | None = None
    deltas: list[str] = []
    for event in middle:
        kind = event["type"]
        if kind == "response.output_item.added":
            assert current is None, "items do not overlap"
            assert event["output_index"] == len(done_items)
            current, deltas = event["item"], []
            assert current["status"] == "in_progress"
            continue
        assert current is not None, f"{kind} outside an item"
        assert event["output_index"] == len(done_items)
        if kind == "response.output_item.done":
            item = event["item"]
            assert item["id"] == current["id"]
            assert item["type"] == current["type"]
            assert item["status"] == final["status"]
            assert "".join(deltas) == item_text(item)
            done_items.append(item)
            current = None
            continue
        assert event["item_id"] == current["id"]
        if kind == DELTA_TYPES[current["type"]]:
            assert event["delta"], "deltas are never empty"
            deltas.append(event["delta"])
        elif kind in {"response.output_text.done", "response.reasoning_text.done"}:
            assert event["text"] == "".join(deltas)
        elif kind == "response.function_call_arguments.done":
            assert event["arguments"] == "".join(deltas)
            assert event["name"] == current["name"]
        elif kind == "response.content_part.done":
            assert event["part"]["text"] == "".join(deltas)
    assert current is None
    assert final["output"] == done_items
    return final


def item_text(item: Json) -> str:
    """What an output item's deltas spell: its text, reasoning text or arguments."""
    if item["type"] == "function_call":
        arguments: str = item["arguments"]
        return arguments
    (part,) = item["content"]
    text: str = part["text"]
    return text


def deltas_of(events: list[Json], kind: str) -> list[str]:
    return [e["delta"] for e in events if e["type"] == kind]


def check_arguments(name: str, arguments: str) -> Json:
    """The call's arguments, decoded and valid for its tool's parameters."""
    decoded: Json = json.loads(arguments)
    Draft202012Validator(PARAMETERS_OF[name]).validate(decoded)
    return decoded


def check_usage(body: Json) -> None:
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    texts = [item_text(i) for i in body["output"]]
    assert usage["output_tokens"] == sum(tokens(t) for t in texts)
    reasoning = [item_text(i) for i in body["output"] if i["type"] == "reasoning"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == sum(tokens(t) for t in reasoning)


# --- sync SDK ----------------------------------------------------------------------------


def test_sync_create() -> None:
    with server_in_thread(**FIVE) as url, sync_client(url) as client:
        response = client.responses.create(model="sdk-model", input="Say hello.")
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.model == "sdk-model"
    assert response.status == "completed"
    assert response.incomplete_details is None
    assert response.error is None
    (item,) = response.output
    assert isinstance(item, ResponseOutputMessage)
    assert item.id.startswith("msg_")
    assert item.role == "assistant"
    assert item.status == "completed"
    (part,) = item.content
    assert part.type == "output_text"
    assert response.output_text == part.text
    assert response.usage is not None
    assert response.usage.output_tokens == 5 == tokens(part.text)
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + 5


def test_sync_stream() -> None:
    with server_in_thread(**FIVE) as url, sync_client(url) as client:
        stream = client.responses.create(model="m", input="Say hello.", stream=True)
        with stream:
            events = list(stream)
    assert [e.type for e in events] == stream_events(("message", 5))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)]
    last = events[-1]
    assert last.type == "response.completed"
    assert "".join(deltas) == last.response.output_text
    assert tokens(last.response.output_text) == 5
    assert last.response.usage is not None
    assert last.response.usage.output_tokens == 5


def test_sync_stream_helper() -> None:
    with (
        server_in_thread(**FIVE) as url,
        sync_client(url) as client,
        client.responses.stream(model="m", input="Say hello.") as stream,
    ):
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) == 5
    assert final.status == "completed"
    assert final.output_text == "".join(deltas)
    assert final.usage is not None
    assert final.usage.output_tokens == 5


def test_sync_sdk_error_names_param() -> None:
    with (
        server_in_thread() as url,
        sync_client(url) as client,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        client.responses.create(model="m", input="hi", max_output_tokens=0)
    assert caught.value.status_code == 400
    assert caught.value.param == "max_output_tokens"


# --- async SDK: input, instructions, usage -----------------------------------------------


async def input_tokens(
    client: openai.AsyncOpenAI, value: str | ResponseInputParam, instructions: str | None = None
) -> int:
    response = await client.responses.create(model="m", input=value, instructions=instructions)
    assert response.usage is not None
    return response.usage.input_tokens


async def test_input_forms_count_alike(start_server: StartServer) -> None:
    """A string, a message item and ``input_text`` parts are the same input."""
    url = await start_server(**FIVE)
    text = "What is the weather in Paris today?"
    as_items: Any = [{"role": "user", "content": text}]
    as_typed: Any = [{"type": "message", "role": "user", "content": text}]
    as_parts: Any = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What is the weather"},
                {"type": "input_text", "text": " in Paris today?"},
            ],
        }
    ]
    async with async_client(url) as client:
        counts = [
            await input_tokens(client, value) for value in (text, as_items, as_typed, as_parts)
        ]
    assert len(set(counts)) == 1, counts


async def test_input_tokens_grow(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    short, long = "Hello there.", "Hello there, tell me everything about the weather in Paris."
    call: Any = {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    output: Any = {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": '{"temperature": 21, "sky": "clear"}',
    }
    user: Any = {"role": "user", "content": short}
    async with async_client(url) as client:
        base = await input_tokens(client, short)
        longer = await input_tokens(client, long)
        instructed = await input_tokens(client, short, "Answer in French.")
        conversation = [user, call, output]
        with_tools = await input_tokens(client, conversation)
        assistant: Any = {"role": "assistant", "content": "It is sunny."}
        with_history = await input_tokens(client, [user, assistant, user])
    # The same structure: the difference is the text's tokens exactly.
    assert longer - base == tokens(long) - tokens(short)
    assert instructed > base + tokens("Answer in French.")
    assert with_tools > base + tokens('{"temperature": 21, "sky": "clear"}')
    assert with_history > base + tokens("It is sunny.") + tokens(short)


async def test_instructions_echoed(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        response = await client.responses.create(
            model="m", input="hi", instructions="Be brief.", metadata={"k": "v"}
        )
        plain = await client.responses.create(model="m", input="hi")
    assert response.instructions == "Be brief."
    assert response.metadata == {"k": "v"}
    assert plain.instructions is None


async def test_echo_reads_input_text_parts(start_server: StartServer) -> None:
    """Echo mode repeats the last user message, also when given as ``input_text`` parts
    and followed by a tool's output (which is not a user message)."""
    url = await start_server(output_mode="echo")
    items: Any = [
        {"role": "user", "content": "ignored earlier turn"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": " echo"},
                {"type": "input_text", "text": " these words"},
            ],
        },
        {"type": "function_call_output", "call_id": "call_9", "output": "tool says no"},
    ]
    async with async_client(url) as client:
        response = await client.responses.create(model="m", input=items)
    assert response.output_text == " echo these words"


async def test_unprefixed_path(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    body = await post_json(url, {"model": "m", "input": "hi"}, path="/responses")
    assert body["object"] == "response"
    assert tokens(body_text(body)) == 5
    events = await post_stream(url, {"model": "m", "input": "hi"}, path="/responses")
    assert [e["type"] for e in events] == stream_events(("message", 5))


# --- max_output_tokens --------------------------------------------------------------------


async def test_max_output_tokens(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        capped = await client.responses.create(model="m", input="hi", max_output_tokens=3)
        roomy = await client.responses.create(model="m", input="hi", max_output_tokens=6)
        free = await client.responses.create(model="m", input="hi")
    assert capped.status == "incomplete"
    assert capped.incomplete_details is not None
    assert capped.incomplete_details.reason == "max_output_tokens"
    assert capped.max_output_tokens == 3
    assert capped.usage is not None
    assert capped.usage.output_tokens == 3 == tokens(capped.output_text)
    (item,) = capped.output
    assert isinstance(item, ResponseOutputMessage)
    assert item.status == "incomplete"
    for response in (roomy, free):
        assert response.status == "completed"
        assert response.incomplete_details is None
        assert response.usage is not None
        assert response.usage.output_tokens == 5 == tokens(response.output_text)


async def test_max_output_tokens_streamed(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    events = await post_stream(url, {"model": "m", "input": "hi", "max_output_tokens": 3})
    assert [e["type"] for e in events] == stream_events(("message", 3), end="response.incomplete")
    final = check_stream_items(events)
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["usage"]["output_tokens"] == 3
    check_usage(final)


# --- non-streamed and streamed wire -------------------------------------------------------


async def test_body_matches_spec(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    body = await post_json(url, {"model": "wire-model", "input": "hi", "instructions": "Be."})
    assert body["id"].startswith("resp_")
    assert body["object"] == "response"
    assert body["status"] == "completed"
    assert body["model"] == "wire-model"
    assert body["instructions"] == "Be."
    (item,) = body["output"]
    assert item["type"] == "message"
    assert item["role"] == "assistant"
    assert tokens(body_text(body)) == 5
    usage = body["usage"]
    assert usage["output_tokens"] == 5
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    check_usage(body)


async def test_stream_matches_spec(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    events = await post_stream(url, {"model": "wire-model", "input": "hi"})
    assert [e["type"] for e in events] == stream_events(("message", 5))
    final = check_stream_items(events)
    assert final["status"] == "completed"
    assert final["incomplete_details"] is None
    deltas = deltas_of(events, "response.output_text.delta")
    assert all(tokens(d) == 1 for d in deltas), "one token per event by default"
    assert "".join(deltas) == body_text(final)
    assert {e["item_id"] for e in events if "item_id" in e} == {final["output"][0]["id"]}
    assert {e["output_index"] for e in events if "output_index" in e} == {0}
    check_usage(final)


async def test_mock_headers(start_server: StartServer) -> None:
    """``x-mock-seed`` reproduces the text, streamed or not; ``x-mock-output-tokens`` sets
    the length."""
    url = await start_server(output_tokens_mean=20, output_tokens_stddev=5)
    body: Json = {"model": "m", "input": "hi"}
    seeded = {"x-mock-seed": "77"}
    plain = await post_json(url, body, headers=seeded)
    streamed = await post_stream(url, body, headers=seeded)
    other = await post_json(url, body, headers={"x-mock-seed": "78"})
    sized = await post_json(url, body, headers={"x-mock-output-tokens": "9"})
    assert "".join(deltas_of(streamed, "response.output_text.delta")) == body_text(plain)
    assert body_text(other) != body_text(plain)
    assert sized["usage"]["output_tokens"] == 9 == tokens(body_text(sized))


# --- async SDK streaming ------------------------------------------------------------------


async def test_async_stream(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        stream = await client.responses.create(model="m", input="hi", stream=True)
        async with stream:
            events: list[ResponseStreamEvent] = [e async for e in stream]
    assert [e.type for e in events] == stream_events(("message", 5))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    last = events[-1]
    assert last.type == "response.completed"
    deltas = [e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)]
    assert "".join(deltas) == last.response.output_text
    item_ids = {e.item_id for e in events if isinstance(e, ResponseTextDeltaEvent)}
    assert item_ids == {last.response.output[0].id}


async def test_async_stream_helper(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with (
        async_client(url) as client,
        client.responses.stream(model="m", input="hi", instructions="Be brief.") as stream,
    ):
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final: Response = await stream.get_final_response()
    assert len(deltas) == 5
    assert final.status == "completed"
    assert final.instructions == "Be brief."
    assert final.output_text == "".join(deltas)


async def test_async_stream_incomplete(start_server: StartServer) -> None:
    """A capped stream ends with ``response.incomplete`` (the SDK's ``stream()`` helper
    only finishes on ``response.completed``, so this iterates ``create(stream=True)``)."""
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        stream = await client.responses.create(
            model="m", input="hi", max_output_tokens=2, stream=True
        )
        async with stream:
            events: list[ResponseStreamEvent] = [e async for e in stream]
    assert [e.type for e in events] == stream_events(("message", 2), end="response.incomplete")
    last = events[-1]
    assert last.type == "response.incomplete"
    assert last.response.status == "incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    deltas = [e.delta for e in events if isinstance(e, ResponseTextDeltaEvent)]
    assert "".join(deltas) == last.response.output_text
    assert tokens(last.response.output_text) == 2


# --- reasoning -------------------------------------------------------------------------------


async def test_reasoning_model(start_server: StartServer) -> None:
    url = await start_server(**FIVE, **THINK8)
    async with async_client(url) as client:
        response = await client.responses.create(model="o4-mini", input="Think first.")
        plain = await client.responses.create(model="gpt-4o", input="Think first.")
    reasoning, message = response.output
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.id.startswith("rs_")
    assert reasoning.content is not None
    (part,) = reasoning.content
    assert part.type == "reasoning_text"
    assert isinstance(message, ResponseOutputMessage)
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == tokens(part.text) == 8
    assert response.usage.output_tokens == 8 + tokens(response.output_text) == 13
    assert part.text not in response.output_text, "output_text is the message alone"
    assert [item.type for item in plain.output] == ["message"]
    assert plain.usage is not None
    assert plain.usage.output_tokens_details.reasoning_tokens == 0


async def test_reasoning_models_knob(start_server: StartServer) -> None:
    url = await start_server(reasoning_models=("house-thinker*",), **FIVE, **THINK8)
    async with async_client(url) as client:
        thinker = await client.responses.create(model="house-thinker-2", input="hi")
        o4 = await client.responses.create(model="o4-mini", input="hi")
    assert [item.type for item in thinker.output] == ["reasoning", "message"]
    assert [item.type for item in o4.output] == ["message"], "the knob replaces the defaults"


@pytest.mark.parametrize(
    ("effort", "want"), [(None, 8), ("medium", 8), ("low", 4), ("high", 16), ("minimal", 1)]
)
async def test_reasoning_effort(start_server: StartServer, effort: str | None, want: int) -> None:
    url = await start_server(**FIVE, **THINK8)
    reasoning: Any = {"effort": effort} if effort is not None else None
    body: Json = {"model": "o3", "input": "hi"}
    if reasoning is not None:
        body["reasoning"] = reasoning
    response = await post_json(url, body)
    assert response["usage"]["output_tokens_details"]["reasoning_tokens"] == want
    assert response["reasoning"]["effort"] == effort
    assert [i["type"] for i in response["output"]] == ["reasoning", "message"]
    check_usage(response)


async def test_reasoning_effort_none_skips_reasoning(start_server: StartServer) -> None:
    url = await start_server(**FIVE, **THINK8)
    async with async_client(url) as client:
        response = await client.responses.create(
            model="o4-mini", input="hi", reasoning={"effort": "none"}
        )
    assert [item.type for item in response.output] == ["message"]
    assert response.usage is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 0


async def test_reasoning_effort_changes_mean(start_server: StartServer) -> None:
    """With a spread, high effort thinks longer on average than low (seeded, so stable)."""
    url = await start_server(reasoning_tokens_mean=40, reasoning_tokens_stddev=10, **FIVE)

    async def mean_reasoning(effort: Any) -> float:
        counts = []
        for seed in range(6):
            response = await client.responses.create(
                model="o4-mini",
                input="hi",
                reasoning={"effort": effort},
                extra_headers={"x-mock-seed": str(seed)},
            )
            assert response.usage is not None
            counts.append(response.usage.output_tokens_details.reasoning_tokens)
        return sum(counts) / len(counts)

    async with async_client(url) as client:
        low, medium, high = [await mean_reasoning(e) for e in ("low", "medium", "high")]
    assert 0 < low < medium < high
    assert high > 2.5 * low


async def test_reasoning_capped_by_max_output_tokens(start_server: StartServer) -> None:
    """A cap smaller than the reasoning leaves only a reasoning item, incomplete."""
    url = await start_server(**FIVE, **THINK8)
    async with async_client(url) as client:
        response = await client.responses.create(model="o4-mini", input="hi", max_output_tokens=6)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert [item.type for item in response.output] == ["reasoning"]
    assert response.output_text == ""
    assert response.usage is not None
    assert response.usage.output_tokens == 6
    assert response.usage.output_tokens_details.reasoning_tokens == 6


async def test_reasoning_stream(start_server: StartServer) -> None:
    url = await start_server(**FIVE, **THINK8)
    events = await post_stream(url, {"model": "o4-mini", "input": "hi"})
    assert [e["type"] for e in events] == stream_events(("reasoning", 8), ("message", 5))
    final = check_stream_items(events)
    reasoning_item, message = final["output"]
    assert reasoning_item["type"] == "reasoning"
    assert message["type"] == "message"
    (part,) = reasoning_item["content"]
    assert part["type"] == "reasoning_text"
    assert "".join(deltas_of(events, "response.reasoning_text.delta")) == part["text"]
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] == 8
    check_usage(final)
    added = [e for e in events if e["type"] == "response.content_part.added"]
    assert [a["part"]["type"] for a in added] == ["reasoning_text", "output_text"]


async def test_reasoning_body_matches_spec(start_server: StartServer) -> None:
    url = await start_server(**FIVE, **THINK8)
    body = await post_json(url, {"model": "o4-mini", "input": "hi", "reasoning": {"effort": "low"}})
    assert [i["type"] for i in body["output"]] == ["reasoning", "message"]
    assert body["output"][0]["id"].startswith("rs_")
    assert body["usage"]["output_tokens_details"]["reasoning_tokens"] == 4
    check_usage(body)


async def test_sdk_stream_reasoning(start_server: StartServer) -> None:
    url = await start_server(**FIVE, **THINK8)
    async with (
        async_client(url) as client,
        client.responses.stream(model="o4-mini", input="hi") as stream,
    ):
        kinds = [e.type async for e in stream]
        final = await stream.get_final_response()
    reasoning = [i for i, k in enumerate(kinds) if k == "response.reasoning_text.delta"]
    text = [i for i, k in enumerate(kinds) if k == "response.output_text.delta"]
    assert len(reasoning) == 8
    assert len(text) == 5
    assert max(reasoning) < min(text), "reasoning streams before the answer"
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert tokens(final.output_text) == 5


# --- tools --------------------------------------------------------------------------------


async def test_tool_choice_required(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        for seed in range(4):
            response = await client.responses.create(
                model="m",
                input="Weather in Paris?",
                tools=[function_tool(WEATHER), function_tool(TIME)],
                tool_choice="required",
                extra_headers={"x-mock-seed": str(seed)},
            )
            assert response.status == "completed"
            assert response.output
            assert response.output_text == ""
            calls = response.output
            assert all(isinstance(c, ResponseFunctionToolCall) for c in calls)
            total = 0
            for call in calls:
                assert isinstance(call, ResponseFunctionToolCall)
                assert call.call_id.startswith("call_")
                assert call.id is not None
                assert call.id.startswith("fc_")
                check_arguments(call.name, call.arguments)
                total += tokens(call.arguments)
            assert len({c.call_id for c in calls if isinstance(c, ResponseFunctionToolCall)}) == (
                len(calls)
            )
            assert response.usage is not None
            assert response.usage.output_tokens == total


async def test_tool_choice_named(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        for seed in range(3):
            response = await client.responses.create(
                model="m",
                input="Weather in Paris?",
                tools=[function_tool(TIME), function_tool(WEATHER)],
                tool_choice={"type": "function", "name": "get_weather"},
                extra_headers={"x-mock-seed": str(seed)},
            )
            (call,) = response.output
            assert isinstance(call, ResponseFunctionToolCall)
            assert call.name == "get_weather"
            arguments = check_arguments(call.name, call.arguments)
            assert set(arguments) == {"city", "unit", "days"}


async def test_tool_choice_none_and_builtin_tools(start_server: StartServer) -> None:
    """``none`` never calls; built-in tools are accepted and never called, even at rate 1."""
    url = await start_server(tool_call_rate=1.0, **FIVE)
    async with async_client(url) as client:
        none = await client.responses.create(
            model="m",
            input="hi",
            tools=[function_tool(WEATHER)],
            tool_choice="none",
        )
        builtin = await client.responses.create(
            model="m", input="Search the web.", tools=[WEB_SEARCH]
        )
        mixed = await client.responses.create(
            model="m",
            input="hi",
            tools=[WEB_SEARCH, function_tool(WEATHER)],
            tool_choice="required",
        )
        auto = await client.responses.create(
            model="m",
            input="hi",
            tools=[function_tool(WEATHER)],
        )
    assert [i.type for i in none.output] == ["message"]
    assert [i.type for i in builtin.output] == ["message"]
    assert tokens(builtin.output_text) == 5
    assert builtin.tools[0].type == "web_search"
    assert {i.type for i in mixed.output} == {"function_call"}
    assert all(
        isinstance(i, ResponseFunctionToolCall) and i.name == "get_weather" for i in mixed.output
    )
    assert [i.type for i in auto.output] == ["function_call"], "tool_call_rate=1 always calls"


async def test_parallel_tool_calls(start_server: StartServer) -> None:
    url = await start_server(max_parallel_tool_calls=3, **FIVE)
    tools = [function_tool(WEATHER), function_tool(TIME), function_tool(NEWS)]

    async def call_counts(parallel: bool) -> list[int]:
        counts = []
        for seed in range(10):
            response = await client.responses.create(
                model="m",
                input="hi",
                tools=tools,
                tool_choice="required",
                parallel_tool_calls=parallel,
                extra_headers={"x-mock-seed": str(seed)},
            )
            assert response.parallel_tool_calls is parallel
            for call in response.output:
                assert isinstance(call, ResponseFunctionToolCall)
                check_arguments(call.name, call.arguments)
            names = [c.name for c in response.output if isinstance(c, ResponseFunctionToolCall)]
            assert len(set(names)) == len(names), "each tool is called at most once"
            counts.append(len(response.output))
        return counts

    async with async_client(url) as client:
        parallel, serial = await call_counts(True), await call_counts(False)
    assert all(1 <= c <= 3 for c in parallel)
    assert max(parallel) > 1, parallel
    assert serial == [1] * 10


async def test_allowed_tools_choice(start_server: StartServer) -> None:
    """``allowed_tools`` narrows the tools: only the allowed function is ever called."""
    url = await start_server(tool_call_rate=1.0, max_parallel_tool_calls=3, **FIVE)
    for mode in ("required", "auto"):
        allowed: Json = {
            "type": "allowed_tools",
            "mode": mode,
            "tools": [{"type": "function", "name": "get_weather"}],
        }
        body: Json = {
            "model": "m",
            "input": "hi",
            "tools": [WEATHER, TIME, NEWS],
            "tool_choice": allowed,
        }
        for seed in range(3):
            response = await post_json(url, body, headers={"x-mock-seed": str(seed)})
            calls = response["output"]
            assert [c["type"] for c in calls] == ["function_call"], (mode, calls)
            assert calls[0]["name"] == "get_weather"
            check_arguments("get_weather", calls[0]["arguments"])
            assert response["tool_choice"] == allowed


async def test_tool_call_stream(start_server: StartServer) -> None:
    url = await start_server(max_parallel_tool_calls=2, **FIVE)
    body: Json = {
        "model": "m",
        "input": "hi",
        "tools": [WEATHER, TIME],
        "tool_choice": "required",
    }
    for seed in range(4):
        events = await post_stream(url, body, headers={"x-mock-seed": str(seed)})
        final = check_stream_items(events)
        calls = final["output"]
        assert calls
        assert all(c["type"] == "function_call" for c in calls)
        expected = stream_events(*[("function_call", tokens(c["arguments"])) for c in calls])
        assert [e["type"] for e in events] == expected
        dones = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert [(d["name"], d["arguments"]) for d in dones] == [
            (c["name"], c["arguments"]) for c in calls
        ]
        for call in calls:
            check_arguments(call["name"], call["arguments"])
            assert call["call_id"].startswith("call_")
        check_usage(final)


async def test_tool_call_body_matches_spec(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    body = await post_json(
        url,
        {
            "model": "m",
            "input": "hi",
            "tools": [WEATHER, {"type": "web_search"}],
            "tool_choice": {"type": "function", "name": "get_weather"},
        },
    )
    (call,) = body["output"]
    assert call["type"] == "function_call"
    assert call["name"] == "get_weather"
    check_arguments("get_weather", call["arguments"])
    assert body["tools"][0]["name"] == "get_weather"
    assert body["tool_choice"] == {"type": "function", "name": "get_weather"}
    check_usage(body)


async def test_sdk_stream_tool_call(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with (
        async_client(url) as client,
        client.responses.stream(
            model="m",
            input="hi",
            tools=[function_tool(WEATHER)],
            tool_choice="required",
        ) as stream,
    ):
        deltas = [
            e.delta async for e in stream if e.type == "response.function_call_arguments.delta"
        ]
        final = await stream.get_final_response()
    (call,) = final.output
    assert isinstance(call, ResponseFunctionToolCall)
    assert "".join(deltas) == call.arguments
    check_arguments(call.name, call.arguments)


# --- structured output ---------------------------------------------------------------------


async def test_json_schema(start_server: StartServer) -> None:
    url = await start_server()
    validator = Draft202012Validator(PERSON_SCHEMA)
    async with async_client(url) as client:
        for seed in range(3):
            response = await client.responses.create(
                model="m",
                input="A person, please.",
                text=PERSON_FORMAT,
                extra_headers={"x-mock-seed": str(seed)},
            )
            assert response.status == "completed"
            validator.validate(json.loads(response.output_text))
            assert response.usage is not None
            assert response.usage.output_tokens == tokens(response.output_text)
    assert response.text is not None
    assert response.text.format is not None
    assert response.text.format.type == "json_schema"


async def test_json_schema_stream(start_server: StartServer) -> None:
    url = await start_server(reasoning_tokens_mean=3, reasoning_tokens_stddev=0)
    body: Json = {"model": "o4-mini", "input": "A person.", "text": PERSON_FORMAT}
    events = await post_stream(url, body)
    final = check_stream_items(events)
    text = "".join(deltas_of(events, "response.output_text.delta"))
    Draft202012Validator(PERSON_SCHEMA).validate(json.loads(text))
    assert text == body_text(final)
    assert final["status"] == "completed"
    check_usage(final)


async def test_json_object(start_server: StartServer) -> None:
    url = await start_server()
    async with async_client(url) as client:
        for seed in range(3):
            response = await client.responses.create(
                model="m",
                input="Some JSON.",
                text={"format": {"type": "json_object"}},
                extra_headers={"x-mock-seed": str(seed)},
            )
            assert isinstance(json.loads(response.output_text), dict)


async def test_sdk_parse_text_format(start_server: StartServer) -> None:
    """The SDK's ``responses.parse`` with a pydantic model decodes the mock's JSON."""

    class Person(BaseModel):
        name: str
        age: int

    url = await start_server()
    async with async_client(url) as client:
        parsed = await client.responses.parse(model="m", input="hi", text_format=Person)
    assert isinstance(parsed.output_parsed, Person)


# --- errors -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def strict_server() -> Iterator[str]:
    """One server knowing only model "a", for the error cases."""
    with server_in_thread(any_model=False, models=("a",)) as url:
        yield url


BAD: list[tuple[str, Json, str, str | None]] = [
    ("missing-input", {"model": "a"}, "input", "missing_required_parameter"),
    ("input-number", {"model": "a", "input": 5}, "input", "invalid_type"),
    ("input-object", {"model": "a", "input": {"role": "user"}}, "input", "invalid_type"),
    ("item-not-object", {"model": "a", "input": ["hi"]}, "input[0]", "invalid_type"),
    (
        "item-bad-content",
        {"model": "a", "input": [{"role": "user", "content": 7}]},
        "input[0].content",
        "invalid_type",
    ),
    (
        "max-output-tokens-0",
        {"model": "a", "input": "hi", "max_output_tokens": 0},
        "max_output_tokens",
        "integer_below_min_value",
    ),
    (
        "bad-effort",
        {"model": "a", "input": "hi", "reasoning": {"effort": "extreme"}},
        "reasoning.effort",
        "invalid_value",
    ),
    (
        "unknown-tool-choice",
        {
            "model": "a",
            "input": "hi",
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "name": "get_stock"},
        },
        "tool_choice",
        "invalid_value",
    ),
    (
        "allowed-unknown-function",
        {
            "model": "a",
            "input": "hi",
            "tools": [WEATHER],
            "tool_choice": {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "get_stock"}],
            },
        },
        "tool_choice",
        "invalid_value",
    ),
    (
        "broken-schema",
        {
            "model": "a",
            "input": "hi",
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "strng"}}},
        },
        "text.format.schema",
        "invalid_json_schema",
    ),
    (
        "schema-missing",
        {"model": "a", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
        "text.format.schema",
        "missing_required_parameter",
    ),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("body", "param", "code"), [pytest.param(*case[1:], id=case[0]) for case in BAD]
)
def test_bad_request(
    strict_server: str, body: Json, param: str, code: str | None, stream: bool
) -> None:
    with httpx.Client(base_url=strict_server, timeout=TIMEOUT_S) as client:
        response = client.post(PATH, json=body | {"stream": stream})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert "Traceback" not in error["message"]


def test_unknown_model(strict_server: str) -> None:
    with sync_client(strict_server) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            client.responses.create(model="gpt-unknown", input="hi")
        known = client.responses.create(model="a", input="hi")
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert known.status == "completed"


def test_sdk_errors(strict_server: str) -> None:
    with sync_client(strict_server) as client:
        with pytest.raises(openai.BadRequestError) as effort:
            client.responses.create(
                model="a",
                input="hi",
                reasoning=BAD_EFFORT,
            )
        with pytest.raises(openai.BadRequestError) as choice:
            client.responses.create(
                model="a",
                input="hi",
                tools=[function_tool(WEATHER)],
                tool_choice={"type": "function", "name": "nope"},
            )
    assert effort.value.param == "reasoning.effort"
    assert choice.value.param == "tool_choice"


# --- fields the spec is strict about: present, typed, never null -------------------------


async def test_spec_usage_cache_write_tokens(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    body = (await post(url, PATH, {"model": "m", "input": "hi"})).json()
    validate("ResponseUsage", body["usage"])


async def test_spec_user_not_null(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    named = (await post(url, PATH, {"model": "m", "input": "hi", "user": "u-1"})).json()
    assert named["user"] == "u-1"
    body = (await post(url, PATH, {"model": "m", "input": "hi"})).json()
    assert body.get("user", "") is not None


async def test_spec_usage_not_null_in_progress(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    response = await post(url, PATH, {"model": "m", "input": "hi", "stream": True})
    created = sse_events(response.content)[0]
    assert created["type"] == "response.created"
    assert created["response"].get("usage", {}) is not None


async def test_spec_echoed_tool_has_strict(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    body = (await post(url, PATH, {"model": "m", "input": "hi", "tools": [TIME]})).json()
    validate("FunctionTool", body["tools"][0])


async def test_spec_raw_stream(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    body: Json = {"model": "m", "input": "hi", "tools": [TIME], "stream": True}
    for event in sse_events((await post(url, PATH, body)).content):
        validate("ResponseStreamEvent", event)


async def test_hosted_tool_choice_accepted(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    body: Json = {
        "model": "m",
        "input": "Search the web.",
        "tools": [{"type": "web_search_preview"}, WEATHER],
        "tool_choice": {"type": "web_search_preview"},
    }
    response = await post(url, PATH, body)
    assert response.status_code == 200, response.text
    assert [i["type"] for i in response.json()["output"]] == ["message"]
