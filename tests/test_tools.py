"""Chat completions beyond plain text: tool calls, structured output, logprobs, reasoning, stop.

Each feature is driven over loopback through the official ``openai`` SDK (sync client
against ``server_in_thread``, async client against ``start_server``) and through raw httpx
for the wire. Every non-streamed body is validated against the spec's
``CreateChatCompletionResponse`` and every chunk against ``CreateChatCompletionStreamResponse``
(``tests/openapi.py``); SDK objects are validated through ``to_dict()``, which keeps exactly
the fields that came over the wire.

``reasoning_content`` is a vLLM/DeepSeek extension, not in OpenAI's spec. The spec's
``ChatCompletionResponseMessage`` and ``ChatCompletionStreamResponseDelta`` do not set
``additionalProperties`` (JSON Schema then allows any extra property), so bodies carrying it
still validate; ``test_spec_allows_extra_properties`` pins that assumption down.

What is proved: tool calls name a listed function, carry a ``call_`` id and arguments valid
against that function's schema, honour ``tool_choice`` (none, auto with its rate knob,
required, a named function), ``parallel_tool_calls`` and ``max_parallel_tool_calls``, and
stream as the SDK expects (id and name first, then argument fragments); JSON modes answer
JSON valid for the schema, which the SDK's ``parse`` accepts; logprobs match the tokens
sent, chunk by chunk; reasoning models think first, in tokens that usage counts, scaled by
``reasoning_effort``; stop strings cut the content; bad inputs are 400s naming ``param``;
the routes without ``/v1`` behave the same. Known bugs are ``xfail(strict=True)`` tests.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, cast

import httpx
import openai
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from openai.types.chat import ParsedChatCompletion
from pydantic import BaseModel, Field

from conftest import async_client, server_in_thread, sync_client
from helpers import tokens
from openapi import validate

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from openai.types.chat import (
        ChatCompletion,
        ChatCompletionChunk,
        ChatCompletionFunctionToolParam,
        ChatCompletionMessageParam,
    )
    from openai.types.shared_params import ResponseFormatJSONSchema

    from conftest import StartServer

CHAT = "/v1/chat/completions"
TIMEOUT_S = 10.0
Json = dict[str, Any]

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the weather?"}]
WIRE_MESSAGES = [{"role": "user", "content": "What is the weather?"}]
SEEDS = range(12)

# Replies of exactly 5 tokens (corpus mode).
FIVE: dict[str, Any] = {"output_tokens_mean": 5, "output_tokens_stddev": 0}
# Reasoning of exactly 40 tokens at medium effort, by model name or by the knob's own entry.
REASONING: dict[str, Any] = {
    "reasoning_models": ("o3*", "my-reasoner"),
    "reasoning_tokens_mean": 40,
    "reasoning_tokens_stddev": 0,
}
FOX = "The quick brown fox jumps over the lazy dog."

# See tests/test_sdk.py: openai's AsyncStream leaves its inner async generators to trio's
# finalizer, which warns about each one.

# --- tools ------------------------------------------------------------------------------

WEATHER: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather and a forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "minLength": 1, "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
                "location": {
                    "type": "object",
                    "properties": {
                        "lat": {"type": "number", "minimum": -90, "maximum": 90},
                        "lon": {"type": "number", "minimum": -180, "maximum": 180},
                    },
                    "required": ["lat", "lon"],
                    "additionalProperties": False,
                },
                "include": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["temperature", "wind", "humidity"]},
                    "minItems": 1,
                    "maxItems": 3,
                    "uniqueItems": True,
                },
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
FLIGHTS: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "search_flights",
        "description": "Find flights between two airports.",
        "parameters": {
            "type": "object",
            "properties": {
                "origin": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "destination": {"type": "string", "pattern": "^[A-Z]{3}$"},
                "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
                "cabin": {"enum": ["economy", "business", "first"]},
            },
            "required": ["origin", "destination", "passengers"],
            "additionalProperties": False,
        },
    },
}
CLOCK: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}
NO_PARAMETERS: ChatCompletionFunctionToolParam = {
    "type": "function",
    "function": {"name": "ping", "description": "Takes no arguments."},
}
TWO_TOOLS = [WEATHER, FLIGHTS]
THREE_TOOLS = [WEATHER, FLIGHTS, CLOCK]


def parameters(tools: Iterable[ChatCompletionFunctionToolParam]) -> dict[str, Mapping[str, Any]]:
    """Each tool's name and its parameters schema."""
    return {t["function"]["name"]: t["function"].get("parameters", {}) for t in tools}


# --- structured output ---------------------------------------------------------------------

PERSON_SCHEMA: Json = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "email": {"type": ["string", "null"]},
        "address": {
            "type": "object",
            "properties": {
                "street": {"type": "string"},
                "city": {"type": "string"},
                "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
            },
            "required": ["street", "city", "zip"],
            "additionalProperties": False,
        },
        "tags": {
            "type": "array",
            "items": {"type": "string", "enum": ["admin", "staff", "guest"]},
            "minItems": 1,
            "maxItems": 3,
        },
        "scores": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}},
    },
    "required": ["name", "age", "email", "address", "tags", "scores"],
    "additionalProperties": False,
}
PERSON_FORMAT: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {"name": "person", "schema": PERSON_SCHEMA, "strict": True},
}


class Address(BaseModel):
    street: str
    city: str
    zip: str = Field(pattern=r"^[0-9]{5}$")


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=130)
    role: Literal["admin", "staff", "guest"]
    address: Address
    tags: list[str]
    nickname: str | None


class Forecast(BaseModel):
    city: str
    days: int = Field(ge=1, le=14)
    unit: Literal["celsius", "fahrenheit"]


# --- helpers -------------------------------------------------------------------------------


def checked(completion: ChatCompletion) -> Json:
    """An SDK completion as it came over the wire, validated against the spec.

    ``parse()`` results carry SDK-made fields (``message.parsed``, a tool call's
    ``function.parsed_arguments``) that were never on the wire; they are dropped here.
    """
    if not isinstance(completion, ParsedChatCompletion):
        body: Json = completion.to_dict()
        validate("CreateChatCompletionResponse", body)
        return body
    body = cast(
        "Json", completion.to_dict(warnings=False)
    )  # pydantic warns about the parsed fields' types
    for choice in body["choices"]:
        message = choice["message"]
        message.pop("parsed")
        if message["tool_calls"] is None:  # parse() sets it; the wire had no such key
            del message["tool_calls"]
        for call in message.get("tool_calls") or ():
            call["function"].pop("parsed_arguments")
    validate("CreateChatCompletionResponse", body)
    return body


def checked_chunks(chunks: Iterable[ChatCompletionChunk]) -> list[Json]:
    out = [chunk.to_dict() for chunk in chunks]
    for chunk in out:
        validate("CreateChatCompletionStreamResponse", chunk)
    return out


async def collect(stream: openai.AsyncStream[ChatCompletionChunk]) -> list[Json]:
    async with stream:
        return checked_chunks([chunk async for chunk in stream])


async def post(
    client: httpx.AsyncClient,
    body: Json,
    *,
    path: str = CHAT,
    headers: dict[str, str] | None = None,
) -> Json:
    """POST a non-streamed chat request; return its body, validated against the spec."""
    response = await client.post(path, json={"messages": WIRE_MESSAGES} | body, headers=headers)
    assert response.status_code == 200, response.text
    completion: Json = response.json()
    validate("CreateChatCompletionResponse", completion)
    return completion


async def post_stream(client: httpx.AsyncClient, body: Json, *, path: str = CHAT) -> list[Json]:
    """POST a streamed chat request; return its chunks, each validated against the spec."""
    full = {"messages": WIRE_MESSAGES} | body | {"stream": True}
    response = await client.post(path, json=full)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.removesuffix("\n\n").split("\n\n")
    assert all(e.startswith("data: ") for e in events), events
    payloads = [e.removeprefix("data: ") for e in events]
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk)
    return chunks


async def post_error(client: httpx.AsyncClient, body: Json) -> Json:
    """POST a request that must be refused with an OpenAI-shaped 400, streamed or not."""
    errors = []
    for stream in (False, True):
        full = {"model": "m", "messages": WIRE_MESSAGES} | body | {"stream": stream}
        response = await client.post(CHAT, json=full)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/json"
        (error,) = response.json().values()
        assert error["type"] == "invalid_request_error"
        assert error["message"]
        errors.append(error)
    assert errors[0] == errors[1], "streamed or not, the same refusal"
    result: Json = errors[0]
    return result


def http(url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(TIMEOUT_S))


def assemble(chunks: list[Json]) -> dict[int, Json]:
    """Fold each choice's deltas into the message a non-streamed body would hold.

    Checks the framing on the way: the role comes first and once, a tool call's first delta
    carries its id, type and name with empty arguments and later ones only argument
    fragments, and ``finish_reason`` is set on the choice's last chunk only.
    """
    out: dict[int, Json] = {}
    ends: dict[int, list[str | None]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            index, delta = choice["index"], choice["delta"]
            if index not in out:
                assert delta.get("role") == "assistant", "the first delta names the role"
                out[index] = {"role": "assistant", "content": None, "tool_calls": []}
            else:
                assert "role" not in delta
            message = out[index]
            ends.setdefault(index, []).append(choice["finish_reason"])
            if delta.get("content"):
                message["content"] = (message["content"] or "") + delta["content"]
            if "reasoning_content" in delta:
                message["reasoning_content"] = (
                    message.get("reasoning_content", "") + delta["reasoning_content"]
                )
            for call in delta.get("tool_calls") or ():
                calls: list[Json] = message["tool_calls"]
                if call["index"] == len(calls):  # a new call opens with its id and name
                    assert set(call) == {"index", "id", "type", "function"}, call
                    assert call["function"]["arguments"] == ""
                    calls.append(
                        {
                            "id": call["id"],
                            "type": call["type"],
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    )
                else:
                    assert call["index"] == len(calls) - 1, "calls arrive one after another"
                    assert set(call) == {"index", "function"}, call
                    assert set(call["function"]) == {"arguments"}
                    calls[-1]["function"]["arguments"] += call["function"]["arguments"]
    for index, reasons in ends.items():
        assert all(r is None for r in reasons[:-1]), reasons
        assert reasons[-1] is not None
        out[index]["finish_reason"] = reasons[-1]
        if not out[index]["tool_calls"]:
            del out[index]["tool_calls"]
    return out


def without_ids(calls: list[Json]) -> list[tuple[str, str]]:
    """Tool calls as (name, arguments): ids are unique per response, not seeded."""
    return [(c["function"]["name"], c["function"]["arguments"]) for c in calls]


def check_calls(message: Json, tools: Iterable[ChatCompletionFunctionToolParam]) -> list[Json]:
    """Check a message's tool calls against the tools offered; return them."""
    schemas = parameters(tools)
    calls: list[Json] = message["tool_calls"]
    assert calls, "at least one call"
    assert len({c["id"] for c in calls}) == len(calls), "distinct ids"
    for call in calls:
        assert call["id"].startswith("call_")
        assert len(call["id"]) > len("call_")
        assert call["type"] == "function"
        name = call["function"]["name"]
        assert name in schemas
        arguments = json.loads(call["function"]["arguments"])
        Draft202012Validator(schemas[name]).validate(arguments)
    return calls


def check_tool_reply(body: Json, tools: Iterable[ChatCompletionFunctionToolParam]) -> list[Json]:
    """A non-streamed tool-calling reply: no content, valid calls, usage counts them."""
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message["content"] is None
    calls = check_calls(message, tools)
    arguments = [c["function"]["arguments"] for c in calls]
    assert body["usage"]["completion_tokens"] == sum(tokens(a) for a in arguments)
    return calls


# --- the spec's view of extension fields -----------------------------------------------------


def test_spec_allows_extra_properties() -> None:
    """reasoning_content validates because the spec's message objects are open, not because
    the validator skips them: an unknown property passes, a mistyped known one does not."""
    message = {"role": "assistant", "content": "hi", "refusal": None}
    body: Json = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": message | {"reasoning_content": "hm", "x_unknown": [1]},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    validate("CreateChatCompletionResponse", body)
    chunk: Json = {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": {"reasoning_content": "hm"}, "finish_reason": None}],
    }
    validate("CreateChatCompletionStreamResponse", chunk)
    body["choices"][0]["message"]["content"] = 5
    with pytest.raises(AssertionError, match=r"content"):
        validate("CreateChatCompletionResponse", body)


# --- tool calls: tool_choice ----------------------------------------------------------------


def test_required_sync_sdk() -> None:
    with server_in_thread() as url, sync_client(url) as client:
        bodies = [
            checked(
                client.chat.completions.create(
                    model="m", messages=HELLO, tools=TWO_TOOLS, tool_choice="required", seed=seed
                )
            )
            for seed in SEEDS
        ]
        typed = client.chat.completions.create(
            model="m", messages=HELLO, tools=TWO_TOOLS, tool_choice="required", seed=1
        )
    names = set()
    for body in bodies:
        names |= {c["function"]["name"] for c in check_tool_reply(body, TWO_TOOLS)}
    assert names == {"get_weather", "search_flights"}, "over a few seeds both tools get called"
    (choice,) = typed.choices
    assert choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name in parameters(TWO_TOOLS)


async def test_required_wire(start_server: StartServer) -> None:
    url = await start_server()
    async with http(url) as client:
        for seed in SEEDS:
            body = await post(
                client, {"model": "m", "tools": TWO_TOOLS, "tool_choice": "required", "seed": seed}
            )
            check_tool_reply(body, TWO_TOOLS)
            assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_named_tool_choice(start_server: StartServer) -> None:
    url = await start_server(max_parallel_tool_calls=3)
    async with async_client(url) as client:
        for name in ("search_flights", "get_time"):
            for seed in SEEDS:
                completion = await client.chat.completions.create(
                    model="m",
                    messages=HELLO,
                    tools=THREE_TOOLS,
                    tool_choice={"type": "function", "function": {"name": name}},
                    seed=seed,
                )
                (call,) = check_tool_reply(checked(completion), THREE_TOOLS)
                assert call["function"]["name"] == name


async def test_tool_choice_none(start_server: StartServer) -> None:
    url = await start_server(tool_call_rate=1.0, **FIVE)
    async with async_client(url) as client:
        for seed in SEEDS:
            completion = await client.chat.completions.create(
                model="m", messages=HELLO, tools=TWO_TOOLS, tool_choice="none", seed=seed
            )
            body = checked(completion)
            (choice,) = body["choices"]
            assert choice["finish_reason"] == "stop"
            assert "tool_calls" not in choice["message"]
            assert tokens(choice["message"]["content"]) == 5


@pytest.mark.parametrize(("rate", "calls"), [(1.0, True), (0.0, False)])
async def test_auto_rate_extremes(start_server: StartServer, rate: float, calls: bool) -> None:
    url = await start_server(tool_call_rate=rate)
    async with http(url) as client:
        for seed in range(30):
            body: Json = {"model": "m", "tools": TWO_TOOLS, "seed": seed}
            if seed % 2:  # auto is also the default when tools are sent
                body["tool_choice"] = "auto"
            completion = await post(client, body)
            (choice,) = completion["choices"]
            if calls:
                check_tool_reply(completion, TWO_TOOLS)
            else:
                assert "tool_calls" not in choice["message"]
                assert choice["message"]["content"]
                assert choice["finish_reason"] in ("stop", "length")


async def test_auto_rate_half(start_server: StartServer) -> None:
    url = await start_server(tool_call_rate=0.5, **FIVE)
    called = 0
    async with http(url) as client:
        for seed in range(200):
            # Even seeds through the body, odd ones through the header: both seed the reply.
            if seed % 2:
                body = await post(
                    client,
                    {"model": "m", "tools": TWO_TOOLS, "tool_choice": "auto"},
                    headers={"x-mock-seed": str(seed)},
                )
            else:
                body = await post(
                    client, {"model": "m", "tools": TWO_TOOLS, "tool_choice": "auto", "seed": seed}
                )
            (choice,) = body["choices"]
            if "tool_calls" in choice["message"]:
                check_tool_reply(body, TWO_TOOLS)
                called += 1
            else:
                assert choice["finish_reason"] == "stop"
                assert tokens(choice["message"]["content"]) == 5
        # The header and the body field seed the same decision.
        by_header = await post(
            client, {"model": "m", "tools": TWO_TOOLS}, headers={"x-mock-seed": "8"}
        )
        by_body = await post(client, {"model": "m", "tools": TWO_TOOLS, "seed": 8})
    assert 0.35 <= called / 200 <= 0.65, called
    header_calls = without_ids(by_header["choices"][0]["message"].get("tool_calls", []))
    assert header_calls == without_ids(by_body["choices"][0]["message"].get("tool_calls", []))
    assert (
        by_header["choices"][0]["message"]["content"] == by_body["choices"][0]["message"]["content"]
    )


async def test_parallel_calls(start_server: StartServer) -> None:
    url = await start_server(max_parallel_tool_calls=3)
    counts = []
    async with http(url) as client:
        for seed in range(40):
            body: Json = {"model": "m", "tools": THREE_TOOLS, "tool_choice": "required"}
            completion = await post(client, body | {"seed": seed})
            calls = check_tool_reply(completion, THREE_TOOLS)
            assert len({c["function"]["name"] for c in calls}) == len(calls)
            counts.append(len(calls))
            if seed < 10:  # the stream numbers the same calls 0..k-1
                chunks = await post_stream(client, body | {"seed": seed})
                indexes = [
                    call["index"]
                    for chunk in chunks
                    for choice in chunk["choices"]
                    for call in choice["delta"].get("tool_calls") or ()
                    if "id" in call
                ]
                assert indexes == list(range(len(calls)))
                (streamed,) = assemble(chunks).values()
                assert without_ids(streamed["tool_calls"]) == without_ids(calls)
    assert set(counts) <= {1, 2, 3}
    assert max(counts) > 1, "sometimes more than one call"
    assert min(counts) == 1


async def test_parallel_tool_calls_false(start_server: StartServer) -> None:
    url = await start_server(max_parallel_tool_calls=3, tool_call_rate=1.0)
    async with async_client(url) as client:
        for seed in range(30):
            completion = await client.chat.completions.create(
                model="m",
                messages=HELLO,
                tools=THREE_TOOLS,
                tool_choice="required" if seed % 2 else "auto",
                parallel_tool_calls=False,
                seed=seed,
            )
            assert len(check_tool_reply(checked(completion), THREE_TOOLS)) == 1


async def test_max_parallel_bounded_by_tools(start_server: StartServer) -> None:
    """More parallel calls allowed than tools offered: each tool is called at most once."""
    url = await start_server(max_parallel_tool_calls=5)
    async with http(url) as client:
        for seed in range(20):
            body = await post(
                client, {"model": "m", "tools": TWO_TOOLS, "tool_choice": "required", "seed": seed}
            )
            calls = check_tool_reply(body, TWO_TOOLS)
            assert len(calls) <= 2
            assert len({c["function"]["name"] for c in calls}) == len(calls)


async def test_n_choices_call_independently(start_server: StartServer) -> None:
    url = await start_server()
    async with http(url) as client:
        body = await post(
            client,
            {"model": "m", "tools": TWO_TOOLS, "tool_choice": "required", "n": 3, "seed": 4},
        )
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    ids = []
    for choice in body["choices"]:
        assert choice["finish_reason"] == "tool_calls"
        ids += [c["id"] for c in check_calls(choice["message"], TWO_TOOLS)]
    assert len(set(ids)) == len(ids), "ids are unique across choices"


async def test_tool_without_parameters(start_server: StartServer) -> None:
    url = await start_server()
    async with http(url) as client:
        for seed in range(8):
            body: Json = {
                "model": "m",
                "tools": [NO_PARAMETERS],
                "tool_choice": "required",
                "seed": seed,
            }
            (call,) = check_tool_reply(await post(client, body), [NO_PARAMETERS])
            assert call["function"] == {"name": "ping", "arguments": "{}"}
            (streamed,) = assemble(await post_stream(client, body)).values()
            assert without_ids(streamed["tool_calls"]) == [("ping", "{}")]


async def test_tool_calls_cut_by_max_tokens(start_server: StartServer) -> None:
    """A cap inside the arguments ends the reply with "length" and the arguments cut short,
    streamed or not; a later call that gets no token is left out."""
    url = await start_server(max_parallel_tool_calls=3)
    async with http(url) as client:
        cut_seen = 0
        for seed in range(12):
            body: Json = {
                "model": "m",
                "tools": THREE_TOOLS,
                "tool_choice": "required",
                "seed": seed,
            }
            whole = without_ids(check_tool_reply(await post(client, body), THREE_TOOLS))
            first_tokens = tokens(whole[0][1])
            capped: Json = body | {"max_tokens": first_tokens - 1}
            (choice,) = (await post(client, capped))["choices"]
            assert choice["finish_reason"] == "length"
            assert choice["message"]["content"] is None
            (call,) = choice["message"]["tool_calls"]  # the next calls got no token
            name, arguments = call["function"]["name"], call["function"]["arguments"]
            assert name == whole[0][0]
            assert whole[0][1].startswith(arguments)
            assert tokens(arguments) == first_tokens - 1
            (streamed,) = assemble(await post_stream(client, capped)).values()
            assert streamed["finish_reason"] == "length"
            assert without_ids(streamed["tool_calls"]) == [(name, arguments)]
            cut_seen += 1
    assert cut_seen == 12


async def test_allowed_tools_choice(start_server: StartServer) -> None:
    url = await start_server(max_parallel_tool_calls=3)
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": "required",
            "tools": [{"type": "function", "function": {"name": "get_time"}}],
        },
    }
    async with http(url) as client:
        for seed in range(4):
            body = await post(
                client, {"model": "m", "tools": THREE_TOOLS, "tool_choice": choice, "seed": seed}
            )
            calls = check_tool_reply(body, THREE_TOOLS)
            assert {c["function"]["name"] for c in calls} == {"get_time"}


# --- tool calls: streaming --------------------------------------------------------------------


async def test_stream_equals_non_stream(start_server: StartServer) -> None:
    url = await start_server(max_parallel_tool_calls=3)
    async with async_client(url) as client:
        for seed in SEEDS:
            plain = checked(
                await client.chat.completions.create(
                    model="m", messages=HELLO, tools=THREE_TOOLS, tool_choice="required", seed=seed
                )
            )
            stream = await client.chat.completions.create(
                model="m",
                messages=HELLO,
                tools=THREE_TOOLS,
                tool_choice="required",
                seed=seed,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = await collect(stream)
            *content, last = chunks
            assert content[0]["choices"][0]["delta"]["role"] == "assistant"
            assert content[0]["choices"][0]["delta"]["content"] is None
            assert content[-1]["choices"][0]["finish_reason"] == "tool_calls"
            assert last["choices"] == []
            assert last["usage"] == plain["usage"]
            (streamed,) = assemble(content).values()
            (choice,) = plain["choices"]
            assert streamed["content"] is None
            assert streamed["finish_reason"] == "tool_calls"
            assert without_ids(streamed["tool_calls"]) == without_ids(
                choice["message"]["tool_calls"]
            )
            check_calls(streamed, THREE_TOOLS)


async def test_stream_fragments_are_tokens(start_server: StartServer) -> None:
    """Arguments arrive in whole-token fragments (2-3 per chunk here), after the header."""
    url = await start_server(tokens_per_event_min=2, tokens_per_event_max=3)
    async with http(url) as client:
        for seed in range(6):
            chunks = await post_stream(
                client, {"model": "m", "tools": [WEATHER], "tool_choice": "required", "seed": seed}
            )
            fragments = [
                call["function"]["arguments"]
                for chunk in chunks
                for call in chunk["choices"][0]["delta"].get("tool_calls") or ()
                if "id" not in call
            ]
            counts = [tokens(f) for f in fragments]
            assert sum(counts) == tokens("".join(fragments))
            assert all(2 <= c <= 3 for c in counts[:-1]), counts
            assert 1 <= counts[-1] <= 3
            (streamed,) = assemble(chunks).values()
            check_calls(streamed, [WEATHER])


def test_sdk_stream_helper_parses_tool_calls() -> None:
    tool = openai.pydantic_function_tool(Forecast, name="forecast")
    with server_in_thread() as url, sync_client(url) as client:
        helper = getattr(client.chat.completions, "stream", None) or (
            client.beta.chat.completions.stream
        )
        with helper(
            model="m", messages=HELLO, tools=[tool], tool_choice="required", seed=3
        ) as stream:
            events = list(stream)
            final = stream.get_final_completion()
    done = [e for e in events if e.type == "tool_calls.function.arguments.done"]
    assert len(done) == 1
    assert done[0].name == "forecast"
    assert isinstance(done[0].parsed_arguments, Forecast)
    deltas = [e for e in events if e.type == "tool_calls.function.arguments.delta"]
    assert "".join(e.arguments_delta for e in deltas) == done[0].arguments
    checked_chunks([e.chunk for e in events if e.type == "chunk"])
    (choice,) = final.choices
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert call.function.name == "forecast"
    parsed = call.function.parsed_arguments
    assert isinstance(parsed, Forecast)
    assert parsed == Forecast.model_validate_json(call.function.arguments)
    assert 1 <= parsed.days <= 14


# --- tool calls: errors ---------------------------------------------------------------------

BAD_TOOLS: list[tuple[str, Json, str]] = [
    (
        "tool-type-retrieval",
        {"tools": [{"type": "retrieval", "function": {"name": "x"}}]},
        "tools[0].type",
    ),
    (
        "second-tool-type",
        {"tools": [WEATHER, {"type": "code_interpreter", "function": {"name": "x"}}]},
        "tools[1].type",
    ),
    (
        "unknown-function",
        {"tools": TWO_TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice",
    ),
    ("required-without-tools", {"tool_choice": "required"}, "tool_choice"),
    ("required-empty-tools", {"tools": [], "tool_choice": "required"}, "tool_choice"),
    ("unknown-mode", {"tools": TWO_TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    (
        "broken-parameters",
        {
            "tools": [
                {"type": "function", "function": {"name": "x", "parameters": {"type": "strng"}}}
            ]
        },
        "tools[0].function.parameters",
    ),
    (
        "missing-name",
        {"tools": [{"type": "function", "function": {"description": "no name"}}]},
        "tools[0].function.name",
    ),
]


@pytest.mark.parametrize(("body", "param"), [pytest.param(*c[1:], id=c[0]) for c in BAD_TOOLS])
async def test_bad_tools(start_server: StartServer, body: Json, param: str) -> None:
    url = await start_server()
    async with http(url) as client:
        error = await post_error(client, body)
    assert error["param"] == param


async def test_bad_tool_type_without_function(start_server: StartServer) -> None:
    url = await start_server()
    async with http(url) as client:
        error = await post_error(client, {"tools": [{"type": "retrieval"}]})
    assert error["param"] == "tools[0].type"


def test_bad_tools_sync_sdk() -> None:
    with (
        server_in_thread() as url,
        sync_client(url) as client,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        client.chat.completions.create(
            model="m",
            messages=HELLO,
            tools=TWO_TOOLS,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    assert caught.value.status_code == 400
    assert caught.value.param == "tool_choice"
    assert "get_time" in caught.value.message


# --- structured output ---------------------------------------------------------------------


async def test_json_object(start_server: StartServer) -> None:
    url = await start_server()
    async with http(url) as client:
        for seed in SEEDS:
            body: Json = {"model": "m", "response_format": {"type": "json_object"}, "seed": seed}
            completion = await post(client, body)
            (choice,) = completion["choices"]
            assert choice["finish_reason"] == "stop"
            content = choice["message"]["content"]
            assert isinstance(json.loads(content), dict)
            assert completion["usage"]["completion_tokens"] == tokens(content)
            (streamed,) = assemble(await post_stream(client, body)).values()
            assert streamed["content"] == content


async def test_json_schema(start_server: StartServer) -> None:
    url = await start_server(tokens_per_event_min=1, tokens_per_event_max=4)
    check = Draft202012Validator(PERSON_SCHEMA)
    async with http(url) as client:
        for seed in SEEDS:
            body: Json = {"model": "m", "response_format": PERSON_FORMAT, "seed": seed}
            (choice,) = (await post(client, body))["choices"]
            assert choice["finish_reason"] == "stop"
            content = choice["message"]["content"]
            check.validate(json.loads(content))
            chunks = await post_stream(client, body)
            joined = "".join(
                c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
            )
            check.validate(json.loads(joined))
            assert joined == content


def test_parse_sync_sdk() -> None:
    with server_in_thread() as url, sync_client(url) as client:
        completions = [
            client.chat.completions.parse(
                model="m", messages=HELLO, response_format=Person, seed=seed
            )
            for seed in SEEDS
        ]
    for completion in completions:
        checked(completion)
        (choice,) = completion.choices
        assert choice.finish_reason == "stop"
        person = choice.message.parsed
        assert isinstance(person, Person)
        assert person == Person.model_validate_json(choice.message.content or "")
        assert 0 <= person.age <= 130
    assert len({c.choices[0].message.content for c in completions}) > 1, "seeds vary the value"


async def test_parse_async_sdk(start_server: StartServer) -> None:
    url = await start_server()
    async with async_client(url) as client:
        completion = await client.chat.completions.parse(
            model="m", messages=HELLO, response_format=Person, seed=5
        )
        again = await client.chat.completions.parse(
            model="m", messages=HELLO, response_format=Person, seed=5
        )
    checked(completion)
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person)
    assert again.choices[0].message.parsed == person, "the same seed, the same value"


async def test_stream_helper_parses_content(start_server: StartServer) -> None:
    url = await start_server(tokens_per_event_min=2, tokens_per_event_max=3)
    async with (
        async_client(url) as client,
        client.chat.completions.stream(
            model="m", messages=HELLO, response_format=Person, seed=9
        ) as stream,
    ):
        events = [event async for event in stream]
        final = await stream.get_final_completion()
    (done,) = [e for e in events if e.type == "content.done"]
    assert isinstance(done.parsed, Person)
    assert final.choices[0].message.parsed == done.parsed
    checked_chunks([e.chunk for e in events if e.type == "chunk"])


def test_parse_length_sync_sdk() -> None:
    with server_in_thread() as url, sync_client(url) as client:
        full = client.chat.completions.create(
            model="m",
            messages=HELLO,
            response_format=PERSON_FORMAT,
            seed=2,
        )
        cut = client.chat.completions.create(
            model="m",
            messages=HELLO,
            response_format=PERSON_FORMAT,
            seed=2,
            max_tokens=6,
        )
        with pytest.raises(openai.LengthFinishReasonError) as caught:
            client.chat.completions.parse(
                model="m", messages=HELLO, response_format=Person, seed=2, max_tokens=6
            )
    checked(full)
    checked(cut)
    text = full.choices[0].message.content or ""
    assert tokens(text) > 6
    (choice,) = cut.choices
    assert choice.finish_reason == "length"
    assert cut.usage is not None
    assert cut.usage.completion_tokens == 6
    assert text.startswith(choice.message.content or "<none>"), "a prefix of the whole JSON"
    assert caught.value.completion.choices[0].finish_reason == "length"


async def test_bad_response_format(start_server: StartServer) -> None:
    url = await start_server()
    async with http(url) as client:
        missing = await post_error(client, {"response_format": {"type": "json_schema"}})
        broken = await post_error(
            client,
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "strng"}},
                }
            },
        )
        unknown = await post_error(client, {"response_format": {"type": "yaml"}})
    assert missing["param"] == "response_format.json_schema"
    assert broken["param"] == "response_format.json_schema.schema"
    assert unknown["param"] == "response_format.type"


# --- logprobs -----------------------------------------------------------------------------


def check_logprobs(entries: list[Json], content: str, top: int) -> None:
    assert "".join(e["token"] for e in entries) == content, "tokens join to the content"
    for entry in entries:
        assert entry["logprob"] <= 0
        assert entry["bytes"] == list(entry["token"].encode())
        alternatives = entry["top_logprobs"]
        assert len(alternatives) == top
        if not top:
            continue
        assert alternatives[0]["token"] == entry["token"], "the chosen token is first"
        assert alternatives[0]["logprob"] == entry["logprob"]
        values = [a["logprob"] for a in alternatives]
        assert values == sorted(values, reverse=True), "descending"
        assert len({a["token"] for a in alternatives}) == top, "distinct tokens"
        for alternative in alternatives:
            assert alternative["logprob"] <= 0
            assert alternative["bytes"] == list(alternative["token"].encode())


async def test_logprobs(start_server: StartServer) -> None:
    url = await start_server(output_tokens_mean=20, output_tokens_stddev=0)
    async with async_client(url) as client:
        for seed in range(4):
            completion = await client.chat.completions.create(
                model="m", messages=HELLO, logprobs=True, top_logprobs=3, seed=seed
            )
            body = checked(completion)
            (choice,) = body["choices"]
            content = choice["message"]["content"]
            entries = choice["logprobs"]["content"]
            assert len(entries) == body["usage"]["completion_tokens"] == tokens(content) == 20
            check_logprobs(entries, content, 3)
            # The SDK's typed view agrees.
            typed = completion.choices[0].logprobs
            assert typed is not None
            assert typed.content is not None
            assert [t.token for t in typed.content] == [e["token"] for e in entries]
        plain = checked(await client.chat.completions.create(model="m", messages=HELLO, seed=1))
        no_top = checked(
            await client.chat.completions.create(model="m", messages=HELLO, logprobs=True, seed=1)
        )
    assert plain["choices"][0]["logprobs"] is None
    (choice,) = no_top["choices"]
    assert choice["message"]["content"] == plain["choices"][0]["message"]["content"]
    check_logprobs(choice["logprobs"]["content"], choice["message"]["content"], 0)


@pytest.mark.parametrize("top", [1, 20])
async def test_logprobs_top_bounds(start_server: StartServer, top: int) -> None:
    url = await start_server(**FIVE)
    async with http(url) as client:
        body = await post(client, {"model": "m", "logprobs": True, "top_logprobs": top, "seed": 3})
    (choice,) = body["choices"]
    check_logprobs(choice["logprobs"]["content"], choice["message"]["content"], top)


async def test_bad_logprobs(start_server: StartServer) -> None:
    url = await start_server()
    async with http(url) as client:
        without = await post_error(client, {"top_logprobs": 3})
        off = await post_error(client, {"logprobs": False, "top_logprobs": 3})
        too_many = await post_error(client, {"logprobs": True, "top_logprobs": 21})
        negative = await post_error(client, {"logprobs": True, "top_logprobs": -1})
    assert without["param"] == off["param"] == too_many["param"] == negative["param"]
    assert without["param"] == "top_logprobs"
    assert "20" in too_many["message"]


@pytest.mark.parametrize("per_event", [(1, 1), (2, 3)])
async def test_logprobs_streamed(start_server: StartServer, per_event: tuple[int, int]) -> None:
    low, high = per_event
    url = await start_server(
        output_tokens_mean=25,
        output_tokens_stddev=0,
        tokens_per_event_min=low,
        tokens_per_event_max=high,
    )
    async with http(url) as client:
        for seed in range(3):
            body: Json = {"model": "m", "logprobs": True, "top_logprobs": 2, "seed": seed}
            chunks = await post_stream(client, body)
            whole = await post(client, body)
            streamed_entries: list[Json] = []
            counts = []
            for chunk in chunks[1:]:  # after the role chunk
                (choice,) = chunk["choices"]
                piece = choice["delta"]["content"]
                entries = choice["logprobs"]["content"]
                check_logprobs(entries, piece, 2)  # exactly this chunk's tokens
                counts.append(len(entries))
                streamed_entries += entries
            assert chunks[0]["choices"][0]["logprobs"] is None
            assert sum(counts) == 25
            assert all(low <= c <= high for c in counts[:-1]), counts
            assert streamed_entries == whole["choices"][0]["logprobs"]["content"]


# --- reasoning ------------------------------------------------------------------------------


def reasoning_of(message: Any) -> str | None:
    """The SDK message's reasoning_content, wherever this SDK version keeps it."""
    extra = message.model_extra or {}
    value = extra.get("reasoning_content", getattr(message, "reasoning_content", None))
    assert value is None or isinstance(value, str)
    return value


@pytest.mark.parametrize("model", ["o3-mini", "my-reasoner"])
def test_reasoning_sync_sdk(model: str) -> None:
    with server_in_thread(**REASONING, **FIVE) as url, sync_client(url) as client:
        completion = client.chat.completions.create(model=model, messages=HELLO, seed=1)
    body = checked(completion)
    (choice,) = completion.choices
    reasoning = reasoning_of(choice.message)
    assert reasoning
    assert reasoning == body["choices"][0]["message"]["reasoning_content"]
    content = choice.message.content or ""
    usage = completion.usage
    assert usage is not None
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == tokens(reasoning) == 40
    assert usage.completion_tokens == 40 + tokens(content) == 45
    assert choice.finish_reason == "stop"


async def test_reasoning_streamed(start_server: StartServer) -> None:
    url = await start_server(**REASONING, **FIVE)
    async with async_client(url) as client:
        plain = checked(
            await client.chat.completions.create(model="o3-mini", messages=HELLO, seed=6)
        )
        stream = await client.chat.completions.create(
            model="o3-mini",
            messages=HELLO,
            seed=6,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = await collect(stream)
    *content, last = chunks
    kinds = []
    for chunk in content:
        delta = chunk["choices"][0]["delta"]
        if delta.get("reasoning_content"):
            kinds.append("reasoning")
        if delta.get("content"):
            kinds.append("content")
    assert kinds == ["reasoning"] * 40 + ["content"] * 5, "all reasoning strictly first"
    (streamed,) = assemble(content).values()
    message = plain["choices"][0]["message"]
    assert streamed["reasoning_content"] == message["reasoning_content"]
    assert streamed["content"] == message["content"]
    assert last["usage"] == plain["usage"]
    assert last["usage"]["completion_tokens_details"]["reasoning_tokens"] == 40


EFFORTS: list[tuple[str | None, int]] = [
    (None, 40),
    ("minimal", 5),
    ("low", 20),
    ("medium", 40),
    ("high", 80),
    ("xhigh", 160),
    ("none", 0),
]


async def test_reasoning_effort(start_server: StartServer) -> None:
    url = await start_server(**REASONING, **FIVE)
    async with http(url) as client:
        for effort, want in EFFORTS:
            body: Json = {"model": "my-reasoner", "seed": 2}
            if effort is not None:
                body["reasoning_effort"] = effort
            completion = await post(client, body)
            usage = completion["usage"]
            message = completion["choices"][0]["message"]
            assert usage["completion_tokens_details"]["reasoning_tokens"] == want, effort
            assert usage["completion_tokens"] == want + 5
            if want:
                assert tokens(message["reasoning_content"]) == want
            else:
                assert "reasoning_content" not in message, "no reasoning at all"
            assert tokens(message["content"]) == 5


async def test_reasoning_effort_max(start_server: StartServer) -> None:
    url = await start_server(**REASONING, **FIVE)
    async with async_client(url) as client:
        completion = await client.chat.completions.create(
            model="o3-mini", messages=HELLO, reasoning_effort="max", seed=2
        )
    usage = checked(completion)["usage"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] >= 160, "at least xhigh's"


async def test_reasoning_with_logprobs(start_server: StartServer) -> None:
    """Logprobs cover the answer's tokens only, never the reasoning."""
    url = await start_server(**REASONING, **FIVE)
    async with http(url) as client:
        body: Json = {"model": "o3-mini", "logprobs": True, "top_logprobs": 2, "seed": 4}
        completion = await post(client, body)
        chunks = await post_stream(client, body)
    (choice,) = completion["choices"]
    entries = choice["logprobs"]["content"]
    assert len(entries) == 5
    check_logprobs(entries, choice["message"]["content"], 2)
    for chunk in chunks:
        (streamed,) = chunk["choices"]
        if streamed["delta"].get("reasoning_content"):
            assert streamed["logprobs"] is None
        if streamed["delta"].get("content"):
            check_logprobs(streamed["logprobs"]["content"], streamed["delta"]["content"], 2)


async def test_reasoning_cut_by_max_tokens(start_server: StartServer) -> None:
    url = await start_server(**REASONING, **FIVE)
    async with http(url) as client:
        body: Json = {"model": "o3-mini", "max_tokens": 15, "seed": 3}
        completion = await post(client, body)
        chunks = await post_stream(client, body)
    (choice,) = completion["choices"]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == ""
    assert tokens(choice["message"]["reasoning_content"]) == 15
    usage = completion["usage"]
    assert (
        usage["completion_tokens"] == usage["completion_tokens_details"]["reasoning_tokens"] == 15
    )
    (streamed,) = assemble(chunks).values()
    assert streamed["content"] is None, "no content delta at all"
    assert streamed["reasoning_content"] == choice["message"]["reasoning_content"]
    assert streamed["finish_reason"] == "length"


async def test_reasoning_then_tool_calls(start_server: StartServer) -> None:
    url = await start_server(**REASONING)
    async with http(url) as client:
        body: Json = {"model": "o3-mini", "tools": TWO_TOOLS, "tool_choice": "required", "seed": 1}
        completion = await post(client, body)
        chunks = await post_stream(client, body)
    (choice,) = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None
    calls = check_calls(message, TWO_TOOLS)
    arguments = sum(tokens(c["function"]["arguments"]) for c in calls)
    assert tokens(message["reasoning_content"]) == 40
    assert completion["usage"]["completion_tokens"] == 40 + arguments
    first_call = next(i for i, c in enumerate(chunks) if c["choices"][0]["delta"].get("tool_calls"))
    last_reasoning = max(
        i for i, c in enumerate(chunks) if c["choices"][0]["delta"].get("reasoning_content")
    )
    assert last_reasoning < first_call
    (streamed,) = assemble(chunks).values()
    assert without_ids(streamed["tool_calls"]) == without_ids(calls)


async def test_not_a_reasoning_model(start_server: StartServer) -> None:
    url = await start_server(**REASONING, **FIVE)
    async with async_client(url) as client:
        completion = await client.chat.completions.create(
            model="gpt-4o-mini", messages=HELLO, reasoning_effort="high"
        )
    body = checked(completion)
    message = body["choices"][0]["message"]
    assert "reasoning_content" not in message
    assert reasoning_of(completion.choices[0].message) is None
    assert body["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0
    assert body["usage"]["completion_tokens"] == 5


async def test_reasoning_models_knob_replaces_defaults(start_server: StartServer) -> None:
    url = await start_server(reasoning_models=("my-reasoner",), **FIVE)
    async with http(url) as client:
        o3 = await post(client, {"model": "o3-mini"})
        mine = await post(client, {"model": "my-reasoner"})
    assert "reasoning_content" not in o3["choices"][0]["message"]
    assert mine["choices"][0]["message"]["reasoning_content"]


async def test_bad_reasoning_effort(start_server: StartServer) -> None:
    url = await start_server(**REASONING)
    async with http(url) as client:
        error = await post_error(client, {"model": "o3-mini", "reasoning_effort": "extreme"})
    assert error["param"] == "reasoning_effort"
    assert "extreme" in error["message"]


# --- stop -----------------------------------------------------------------------------------

STOPS: list[tuple[Any, str]] = [
    (["fox"], "The quick brown "),
    ("fox", "The quick brown "),  # a single string
    (["own f"], "The quick br"),  # across a token boundary
    (["lazy", "quick", "zzz"], "The "),  # the earliest of several
    (["o"], "The quick br"),  # the first of many occurrences
    (["The"], ""),  # at the very start
    (["cat"], FOX),  # not present: unchanged
    ([], FOX),
]


@pytest.mark.parametrize(("stop", "want"), STOPS)
async def test_stop(start_server: StartServer, stop: Any, want: str) -> None:
    url = await start_server(output_mode="fixed", fixed_text=FOX)
    async with http(url) as client:
        body: Json = {"model": "m", "stop": stop}
        completion = await post(client, body)
        chunks = await post_stream(client, body | {"logprobs": True})
    (choice,) = completion["choices"]
    assert choice["message"]["content"] == want
    assert choice["finish_reason"] == "stop"
    (streamed,) = assemble(chunks).values()
    assert (streamed["content"] or "") == want
    assert streamed["finish_reason"] == "stop"
    entries = [e for c in chunks for e in (c["choices"][0]["logprobs"] or {}).get("content", [])]
    assert "".join(e["token"] for e in entries) == want, "logprobs are cut with the text"
    assert completion["usage"]["completion_tokens"] == len(entries)


def test_stop_sync_sdk() -> None:
    with server_in_thread(output_mode="fixed", fixed_text=FOX) as url, sync_client(url) as client:
        listed = client.chat.completions.create(model="m", messages=HELLO, stop=["jumps"])
        single = client.chat.completions.create(model="m", messages=HELLO, stop="jumps")
        capped = client.chat.completions.create(model="m", messages=HELLO, stop="dog", max_tokens=3)
    for completion in (listed, single):
        checked(completion)
        assert completion.choices[0].message.content == "The quick brown fox "
        assert completion.choices[0].finish_reason == "stop"
    assert capped.choices[0].message.content == "The quick brown"
    assert capped.choices[0].finish_reason == "length", "the cap comes before the stop string"


async def test_stop_applies_to_content_only(start_server: StartServer) -> None:
    url = await start_server(output_mode="fixed", fixed_text=FOX, **REASONING)
    async with http(url) as client:
        completion = await post(client, {"model": "o3-mini", "stop": ["quick"]})
    message = completion["choices"][0]["message"]
    assert "quick" in message["reasoning_content"]
    assert message["content"] == "The "
    assert completion["choices"][0]["finish_reason"] == "stop"


async def test_bad_stop(start_server: StartServer) -> None:
    url = await start_server()
    async with http(url) as client:
        five = await post_error(client, {"stop": ["a", "b", "c", "d", "e"]})
        number = await post_error(client, {"stop": 5})
        numbers = await post_error(client, {"stop": [1]})
    assert five["param"] == number["param"] == numbers["param"] == "stop"
    assert five["code"] == "array_above_max_length"


# --- routes without /v1 -----------------------------------------------------------------------


async def test_route_without_v1(start_server: StartServer) -> None:
    url = await start_server()
    async with http(url) as client:
        body: Json = {"model": "m", "tools": TWO_TOOLS, "tool_choice": "required", "seed": 7}
        short = await post(client, body, path="/chat/completions")
        full = await post(client, body)
        chunks = await post_stream(client, body, path="/chat/completions")
    calls = check_tool_reply(short, TWO_TOOLS)
    assert without_ids(calls) == without_ids(check_tool_reply(full, TWO_TOOLS))
    (streamed,) = assemble(chunks).values()
    assert without_ids(streamed["tool_calls"]) == without_ids(calls)
