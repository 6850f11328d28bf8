"""Per-model context length: the window, the 400 ``context_length_exceeded``, and the room left.

What this module proves:

- ``context_window`` gives a model the first ``context_lengths`` entry that names it (exact
  name or fnmatch ``*`` pattern; order decides), else ``context_length``; the settings take the
  entries from the CLI and the environment and refuse malformed ones (and a zero window) with a
  ``SettingsError`` naming the flag.
- ``check_context`` lets ``prompt + max_tokens == window`` through and refuses one more; without
  ``max_tokens`` one output token must still fit (``prompt == window`` fails, ``window - 1``
  passes); each API words the refusal its own way and names its own ``param``.
- Through the server, with the official SDK (sync and async, ``max_retries=0``): chat
  (``messages``), completions (``prompt``, checked per prompt) and responses (``input``) answer
  400 ``context_length_exceeded`` with OpenAI's exact message, computed from the prompt count the
  server reports for the same input against a model with a big window; streamed requests fail the
  same way before any chunk (a JSON 400, not an event stream); the boundary holds over the wire;
  a model no entry names gets ``context_length``; a refused request consumes no rate limit.
- A reply without ``max_tokens`` whose natural length exceeds the room (window - prompt) stops
  at exactly the room with finish_reason ``length`` (completions: each prompt its own room;
  responses: status ``incomplete``, reason ``max_output_tokens``).
- vLLM's ``/tokenize`` reports ``max_model_len`` = the named model's window, or the first listed
  model's when none is named.
- The raw 400 body validates against the OpenAPI spec's ``ErrorResponse``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from conftest import (
    async_client,
    check_error,
    collect,
    fast_settings,
    server_in_thread,
    sync_client,
)
from openapi import validate
from trio_mock import Settings
from trio_mock._config._knobs import SettingsError
from trio_mock._openai._context import check_context, context_window
from trio_mock._openai._errors import OpenAIError

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

    from conftest import StartServer

Json = dict[str, Any]

TIMEOUT_S = 10.0
WINDOW = 50  # the small window of every "tiny*" model
TINY: dict[str, Any] = {"context_lengths": (f"tiny*={WINDOW}",)}
# Replies of exactly 5 tokens, so a request that fits never meets the window by accident.
FIVE: dict[str, Any] = {"output_tokens_mean": 5, "output_tokens_stddev": 0}
# Replies that would run to 400 tokens: far past any room a tiny window leaves.
LONG_REPLY: dict[str, Any] = {"output_tokens_distribution": "fixed", "output_tokens_mean": 400}
FOX = "The quick brown fox jumps over the lazy dog. "
LONG_TEXT = FOX * 12  # about 120 tokens: over the tiny window on its own
LONG_MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": LONG_TEXT},
]
SHORT_MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]

CHAT_EXCEEDED = (
    "This model's maximum context length is {w} tokens. However, your messages resulted in "
    "{p} tokens. Please reduce the length of the messages."
)
CHAT_REQUESTED = (
    "This model's maximum context length is {w} tokens. However, you requested {t} tokens "
    "({p} in the messages, {m} in the completion). Please reduce the length of the messages "
    "or completion."
)
COMPLETIONS_REQUESTED = (
    "This model's maximum context length is {w} tokens, however you requested {t} tokens "
    "({p} in your prompt; {m} for the completion). Please reduce your prompt; or completion "
    "length."
)
RESPONSES_EXCEEDED = (
    "Your input exceeds the context window of this model. Please adjust your input and try again."
)


def refusal(check: pytest.ExceptionInfo[openai.BadRequestError], param: str) -> str:
    """The SDK's view of a context-length 400 naming ``param``; its message."""
    error = check.value
    assert error.status_code == 400
    assert error.code == "context_length_exceeded"
    assert error.param == param
    assert error.type == "invalid_request_error"
    assert isinstance(error.body, dict)
    message: str = error.body["message"]
    return message


# --- context_window: which window a model gets --------------------------------------------


def test_default_window_when_no_entry_names_the_model() -> None:
    models = fast_settings().models
    assert models.context_length == 131072
    assert models.context_lengths == ()
    assert context_window(models, "gpt-4o") == 131072
    assert context_window(fast_settings(context_length=4096).models, "gpt-4o") == 4096


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("gpt-4", 8192),  # exact name
        ("gpt-4-turbo", 1000),  # an exact name is not a prefix: the default
        ("gpt-3.5-turbo", 16385),  # pattern
        ("gpt-3.5", 16385),  # * matches nothing too
        ("my-gpt-3.5", 1000),  # a pattern is anchored at the start
        ("llama-3-8b-instruct", 2048),  # * in the middle
        ("llama-3-8b", 1000),
        ("GPT-4", 1000),  # names are case-sensitive, as model ids are
    ],
)
def test_exact_names_and_patterns(model: str, window: int) -> None:
    entries = ("gpt-4=8192", "gpt-3.5*=16385", "llama-*-instruct=2048")
    models = fast_settings(context_length=1000, context_lengths=entries).models
    assert context_window(models, model) == window


def test_first_matching_entry_wins() -> None:
    narrow_first = fast_settings(context_lengths=("gpt-4o*=1000", "gpt-4*=2000", "*=3000")).models
    assert context_window(narrow_first, "gpt-4o-mini") == 1000
    assert context_window(narrow_first, "gpt-4-turbo") == 2000
    assert context_window(narrow_first, "other") == 3000  # "*" catches the rest
    broad_first = fast_settings(context_lengths=("gpt-4*=2000", "gpt-4o*=1000")).models
    assert context_window(broad_first, "gpt-4o-mini") == 2000
    repeated = fast_settings(context_lengths=("m=10", "m=20")).models
    assert context_window(repeated, "m") == 10


def test_entries_from_cli_and_environment() -> None:
    cli = Settings.load(cli={"context_lengths": "gpt-4=8192, tiny*=50"}, env={})
    assert cli.models.context_lengths == ("gpt-4=8192", "tiny*=50")
    assert context_window(cli.models, "tiny-1") == 50
    env = {"TRIO_MOCK_CONTEXT_LENGTHS": "a=1,b*=2", "TRIO_MOCK_CONTEXT_LENGTH": "777"}
    from_env = Settings.load(env=env)
    assert from_env.models.context_lengths == ("a=1", "b*=2")
    assert [context_window(from_env.models, m) for m in ("a", "bc", "c")] == [1, 2, 777]


@pytest.mark.parametrize("entry", ["gpt-4", "gpt-4=", "=5", "gpt-4=0", "gpt-4=x", "gpt-4=-5"])
def test_settings_reject_bad_entries(entry: str) -> None:
    with pytest.raises(SettingsError, match="--context-lengths") as check:
        fast_settings(context_lengths=("ok=10", entry))
    assert repr(entry) in str(check.value)
    with pytest.raises(SettingsError, match="--context-lengths"):
        Settings.load(cli={"context_lengths": f"ok=10,{entry}"}, env={})


def test_settings_reject_zero_context_length() -> None:
    with pytest.raises(SettingsError, match="--context-length "):
        fast_settings(context_length=0)
    with pytest.raises(SettingsError, match="--context-length "):
        Settings.load(env={"TRIO_MOCK_CONTEXT_LENGTH": "-1"})


# --- check_context: the boundary and the wording -------------------------------------------


def refused(window: int, prompt: int, max_tokens: int | None, api: Any = "chat") -> OpenAIError:
    with pytest.raises(OpenAIError) as check:
        check_context(window, prompt, max_tokens, api)
    error = check.value
    assert error.status == 400
    assert error.code == "context_length_exceeded"
    return error


@pytest.mark.parametrize("api", ["chat", "completions", "responses"])
def test_boundary_with_max_tokens(api: Any) -> None:
    check_context(100, 90, 10, api)  # exactly full
    check_context(100, 1, 99, api)
    refused(100, 90, 11, api)
    refused(100, 1, 100, api)
    refused(100, 101, 1, api)


@pytest.mark.parametrize("api", ["chat", "completions", "responses"])
def test_boundary_without_max_tokens(api: Any) -> None:
    check_context(100, 99, None, api)  # room for one token
    check_context(100, 0, None, api)
    refused(100, 100, None, api)  # no room for even one token
    refused(100, 250, None, api)


def test_wording_and_param_per_api() -> None:
    chat = refused(100, 100, None, "chat")
    assert chat.param == "messages"
    assert chat.message == CHAT_EXCEEDED.format(w=100, p=100)
    chat_max = refused(100, 60, 50, "chat")
    assert chat_max.param == "messages"
    assert chat_max.message == CHAT_REQUESTED.format(w=100, t=110, p=60, m=50)
    completions = refused(100, 60, 50, "completions")
    assert completions.param == "prompt"
    assert completions.message == COMPLETIONS_REQUESTED.format(w=100, t=110, p=60, m=50)
    for max_tokens in (None, 50):
        responses = refused(100, 100, max_tokens, "responses")
        assert responses.param == "input"
        assert responses.message == RESPONSES_EXCEEDED
    assert chat.to_body() == {
        "error": {
            "message": chat.message,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }


async def test_completions_wording_adds_up_without_max_tokens(start_server: StartServer) -> None:
    url = await start_server(**TINY, **FIVE)
    async with async_client(url) as client:
        with pytest.raises(openai.BadRequestError) as check:
            await client.completions.create(model="tiny-c", prompt=LONG_TEXT, max_tokens=None)
    message = refusal(check, "prompt")
    found = re.search(r"requested (\d+) tokens \((\d+) in your prompt; (\d+) for", message)
    assert found is not None, message
    total, prompt, completion = map(int, found.groups())
    assert total == prompt + completion, message


# --- through the server: chat ----------------------------------------------------------------


def test_sync_chat_over_the_window() -> None:
    with server_in_thread(**TINY, **FIVE) as url, sync_client(url) as client:
        # The prompt count, as the server makes it, from a model with the default window.
        big = client.chat.completions.create(model="big-model", messages=LONG_MESSAGES)
        assert big.usage is not None
        prompt = big.usage.prompt_tokens
        assert prompt > WINDOW
        assert big.choices[0].finish_reason == "stop"
        with pytest.raises(openai.BadRequestError) as check:
            client.chat.completions.create(model="tiny-model", messages=LONG_MESSAGES)
        assert refusal(check, "messages") == CHAT_EXCEEDED.format(w=WINDOW, p=prompt)
        assert check.value.response.headers["content-type"] == "application/json"

        short = client.chat.completions.create(model="tiny-model", messages=SHORT_MESSAGES)
        assert short.usage is not None
        small = short.usage.prompt_tokens
        fits = WINDOW - small
        exact = client.chat.completions.create(
            model="tiny-model", messages=SHORT_MESSAGES, max_tokens=fits
        )
        assert exact.choices[0].message.content
        with pytest.raises(openai.BadRequestError) as over:
            client.chat.completions.create(
                model="tiny-model", messages=SHORT_MESSAGES, max_tokens=fits + 1
            )
        assert refusal(over, "messages") == CHAT_REQUESTED.format(
            w=WINDOW, t=WINDOW + 1, p=small, m=fits + 1
        )
        with pytest.raises(openai.BadRequestError) as over_new_name:
            client.chat.completions.create(
                model="tiny-model", messages=SHORT_MESSAGES, max_completion_tokens=fits + 7
            )
        assert refusal(over_new_name, "messages") == CHAT_REQUESTED.format(
            w=WINDOW, t=WINDOW + 7, p=small, m=fits + 7
        )


def test_sync_chat_stream_refused_before_any_chunk() -> None:
    with (
        server_in_thread(**TINY, **FIVE) as url,
        sync_client(url) as client,
        httpx.Client(base_url=url, timeout=TIMEOUT_S) as http,
    ):
        with pytest.raises(openai.BadRequestError) as check:
            client.chat.completions.create(model="tiny-model", messages=LONG_MESSAGES, stream=True)
        assert refusal(check, "messages").startswith(
            f"This model's maximum context length is {WINDOW} tokens."
        )
        body = {"model": "tiny-model", "messages": LONG_MESSAGES, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            raw = response.read()
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/json"
        assert b"data:" not in raw
        assert check_error(response, 400, "messages")["code"] == "context_length_exceeded"


async def test_async_chat_over_the_window(start_server: StartServer) -> None:
    url = await start_server(**TINY, **FIVE)
    async with async_client(url) as client:
        big = await client.chat.completions.create(model="big-model", messages=LONG_MESSAGES)
        assert big.usage is not None
        prompt = big.usage.prompt_tokens
        with pytest.raises(openai.BadRequestError) as check:
            await client.chat.completions.create(model="tiny-x", messages=LONG_MESSAGES)
        assert refusal(check, "messages") == CHAT_EXCEEDED.format(w=WINDOW, p=prompt)
        with pytest.raises(openai.BadRequestError) as with_max:
            await client.chat.completions.create(
                model="tiny-x", messages=LONG_MESSAGES, max_tokens=3
            )
        assert refusal(with_max, "messages") == CHAT_REQUESTED.format(
            w=WINDOW, t=prompt + 3, p=prompt, m=3
        )
        with pytest.raises(openai.BadRequestError) as streamed:
            await client.chat.completions.create(
                model="tiny-x", messages=LONG_MESSAGES, stream=True
            )
        assert refusal(streamed, "messages") == CHAT_EXCEEDED.format(w=WINDOW, p=prompt)
        # The window is per model: the big one still answers.
        again = await client.chat.completions.create(model="big-model", messages=LONG_MESSAGES)
        assert again.choices[0].message.content


async def test_unnamed_models_get_the_default_window(start_server: StartServer) -> None:
    url = await start_server(context_length=40, context_lengths=("roomy*=100000",), **FIVE)
    async with async_client(url) as client:
        roomy = await client.chat.completions.create(model="roomy-1", messages=LONG_MESSAGES)
        assert roomy.usage is not None
        prompt = roomy.usage.prompt_tokens
        assert prompt > 40
        with pytest.raises(openai.BadRequestError) as check:
            await client.chat.completions.create(model="plain", messages=LONG_MESSAGES)
        assert refusal(check, "messages") == CHAT_EXCEEDED.format(w=40, p=prompt)


async def test_boundary_over_the_wire(start_server: StartServer) -> None:
    # One model per window size, named after it, so the edge can be picked once the prompt
    # count is known.
    windows = tuple(f"w{k}={k}" for k in range(5, 160))
    url = await start_server(context_lengths=windows, **LONG_REPLY)
    async with async_client(url) as client:
        probe = await client.chat.completions.create(
            model="probe", messages=LONG_MESSAGES, max_tokens=1
        )
        assert probe.usage is not None
        prompt = probe.usage.prompt_tokens
        assert 5 < prompt < 150
        with pytest.raises(openai.BadRequestError) as full:
            await client.chat.completions.create(model=f"w{prompt}", messages=LONG_MESSAGES)
        assert refusal(full, "messages") == CHAT_EXCEEDED.format(w=prompt, p=prompt)
        one = await client.chat.completions.create(model=f"w{prompt + 1}", messages=LONG_MESSAGES)
        assert one.usage is not None
        assert one.usage.completion_tokens == 1
        assert one.choices[0].finish_reason == "length"
        exact = await client.chat.completions.create(
            model=f"w{prompt + 4}", messages=LONG_MESSAGES, max_tokens=4
        )
        assert exact.usage is not None
        assert exact.usage.completion_tokens == 4
        with pytest.raises(openai.BadRequestError) as over:
            await client.chat.completions.create(
                model=f"w{prompt + 3}", messages=LONG_MESSAGES, max_tokens=4
            )
        assert refusal(over, "messages") == CHAT_REQUESTED.format(
            w=prompt + 3, t=prompt + 4, p=prompt, m=4
        )


# --- through the server: completions and responses --------------------------------------------


async def test_completions_over_the_window(start_server: StartServer) -> None:
    url = await start_server(**TINY, **FIVE)
    async with async_client(url) as client:
        big = await client.completions.create(model="big", prompt=LONG_TEXT, max_tokens=1)
        assert big.usage is not None
        prompt = big.usage.prompt_tokens
        assert prompt > WINDOW
        with pytest.raises(openai.BadRequestError) as check:
            await client.completions.create(model="tiny-c", prompt=LONG_TEXT)
        # max_tokens defaults to 16 on this endpoint, and the message says so.
        assert refusal(check, "prompt") == COMPLETIONS_REQUESTED.format(
            w=WINDOW, t=prompt + 16, p=prompt, m=16
        )
        with pytest.raises(openai.BadRequestError) as with_max:
            await client.completions.create(model="tiny-c", prompt=LONG_TEXT, max_tokens=5)
        assert refusal(with_max, "prompt") == COMPLETIONS_REQUESTED.format(
            w=WINDOW, t=prompt + 5, p=prompt, m=5
        )
        # One long prompt in a list fails the whole request, and the message counts that one.
        with pytest.raises(openai.BadRequestError) as listed:
            await client.completions.create(
                model="tiny-c", prompt=["hi", LONG_TEXT, "bye"], max_tokens=5
            )
        assert refusal(listed, "prompt") == COMPLETIONS_REQUESTED.format(
            w=WINDOW, t=prompt + 5, p=prompt, m=5
        )
        with pytest.raises(openai.BadRequestError) as streamed:
            await client.completions.create(
                model="tiny-c", prompt=["hi", LONG_TEXT], max_tokens=5, stream=True
            )
        assert refusal(streamed, "prompt") == COMPLETIONS_REQUESTED.format(
            w=WINDOW, t=prompt + 5, p=prompt, m=5
        )
        # Checked per prompt: prompts that each fit pass, although together they do not.
        part = FOX * 3
        several = await client.completions.create(
            model="tiny-c", prompt=[part, part, part, part], max_tokens=5
        )
        assert several.usage is not None
        assert several.usage.prompt_tokens > WINDOW
        assert len(several.choices) == 4


async def test_responses_over_the_window(start_server: StartServer) -> None:
    url = await start_server(**TINY, **FIVE)
    async with async_client(url) as client:
        big = await client.responses.create(model="big", input=LONG_TEXT)
        assert big.usage is not None
        assert big.usage.input_tokens > WINDOW
        assert big.status == "completed"
        with pytest.raises(openai.BadRequestError) as check:
            await client.responses.create(model="tiny-r", input=LONG_TEXT)
        assert refusal(check, "input") == RESPONSES_EXCEEDED
        with pytest.raises(openai.BadRequestError) as with_max:
            await client.responses.create(model="tiny-r", input="hi", max_output_tokens=WINDOW)
        assert refusal(with_max, "input") == RESPONSES_EXCEEDED
        with pytest.raises(openai.BadRequestError) as instructed:
            await client.responses.create(model="tiny-r", input="hi", instructions=LONG_TEXT)
        assert refusal(instructed, "input") == RESPONSES_EXCEEDED  # instructions count too
        with pytest.raises(openai.BadRequestError) as streamed:
            await client.responses.create(model="tiny-r", input=LONG_TEXT, stream=True)
        assert refusal(streamed, "input") == RESPONSES_EXCEEDED


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": LONG_MESSAGES}, "messages"),
        ("/v1/completions", {"prompt": LONG_TEXT}, "prompt"),
        ("/v1/responses", {"input": LONG_TEXT}, "input"),
    ],
)
async def test_streams_refused_as_json_before_any_event(
    start_server: StartServer, path: str, body: Json, param: str
) -> None:
    url = await start_server(**TINY, **FIVE)
    request = {"model": "tiny-s", "stream": True, **body}
    async with (
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as http,
        http.stream("POST", path, json=request) as response,
    ):
        raw = await response.aread()
    assert response.status_code == 400
    assert not response.headers["content-type"].startswith("text/event-stream")
    assert b"data:" not in raw
    assert b"event:" not in raw
    assert check_error(response, 400, param)["code"] == "context_length_exceeded"


async def test_refused_request_consumes_no_rate_limit(start_server: StartServer) -> None:
    url = await start_server(rate_limit_rpm=1, **TINY, **FIVE)
    async with async_client(url) as client:
        for _ in range(3):
            with pytest.raises(openai.BadRequestError) as check:
                await client.chat.completions.create(model="tiny-q", messages=LONG_MESSAGES)
            refusal(check, "messages")
        reply = await client.chat.completions.create(model="tiny-q", messages=SHORT_MESSAGES)
        assert reply.choices[0].message.content
        with pytest.raises(openai.RateLimitError):  # the one request per minute is spent now
            await client.chat.completions.create(model="tiny-q", messages=SHORT_MESSAGES)


# --- the room a window leaves -------------------------------------------------------------------


def test_sync_chat_reply_stops_at_the_room() -> None:
    with server_in_thread(**TINY, **LONG_REPLY) as url, sync_client(url) as client:
        natural = client.chat.completions.create(model="big", messages=SHORT_MESSAGES)
        assert natural.usage is not None
        assert natural.usage.completion_tokens == 400  # what the reply would run to
        assert natural.choices[0].finish_reason == "stop"
        cut = client.chat.completions.create(model="tiny-room", messages=SHORT_MESSAGES, n=2)
        assert cut.usage is not None
        room = WINDOW - cut.usage.prompt_tokens
        assert 0 < room < 400
        assert cut.usage.completion_tokens == 2 * room
        assert [c.finish_reason for c in cut.choices] == ["length", "length"]
        # max_tokens below the room wins over it.
        capped = client.chat.completions.create(
            model="tiny-room", messages=SHORT_MESSAGES, max_tokens=room - 3
        )
        assert capped.usage is not None
        assert capped.usage.completion_tokens == room - 3
        assert capped.choices[0].finish_reason == "length"


async def test_async_chat_stream_stops_at_the_room(start_server: StartServer) -> None:
    url = await start_server(**TINY, **LONG_REPLY)
    async with async_client(url) as client:
        stream = await client.chat.completions.create(
            model="tiny-room",
            messages=SHORT_MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = await collect(stream)
    usage = chunks[-1].usage
    assert usage is not None
    room = WINDOW - usage.prompt_tokens
    assert usage.completion_tokens == room
    reasons = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert reasons == ["length"]
    deltas = [c.delta.content for chunk in chunks for c in chunk.choices if c.delta.content]
    assert len(deltas) == room  # one token per chunk by default


async def test_completions_each_prompt_stops_at_its_own_room(start_server: StartServer) -> None:
    url = await start_server(**TINY, **LONG_REPLY)
    prompts = ["hi", FOX * 2]
    async with async_client(url) as client:
        counts = []
        for text in prompts:
            probe = await client.completions.create(model="big", prompt=text, max_tokens=1)
            assert probe.usage is not None
            counts.append(probe.usage.prompt_tokens)
        assert counts[0] < counts[1] < WINDOW
        cut = await client.completions.create(
            model="tiny-room", prompt=prompts, max_tokens=None, logprobs=0
        )
        assert cut.usage is not None
        assert cut.usage.prompt_tokens == sum(counts)
        rooms = [WINDOW - count for count in counts]
        assert cut.usage.completion_tokens == sum(rooms)
        by_index = sorted(cut.choices, key=lambda c: c.index)
        assert [c.finish_reason for c in by_index] == ["length", "length"]
        lengths = [len(c.logprobs.tokens or []) if c.logprobs else -1 for c in by_index]
        assert lengths == rooms
        natural = await client.completions.create(model="big", prompt="hi", max_tokens=None)
        assert natural.usage is not None
        assert natural.usage.completion_tokens == 400
        assert natural.choices[0].finish_reason == "stop"


async def test_responses_incomplete_at_the_room(start_server: StartServer) -> None:
    url = await start_server(**TINY, **LONG_REPLY)
    async with async_client(url) as client:
        natural = await client.responses.create(model="big", input="hi")
        assert natural.status == "completed"
        assert natural.usage is not None
        assert natural.usage.output_tokens == 400
        cut = await client.responses.create(model="tiny-room", input="hi")
        assert cut.status == "incomplete"
        assert cut.incomplete_details is not None
        assert cut.incomplete_details.reason == "max_output_tokens"
        assert cut.usage is not None
        assert cut.usage.input_tokens == natural.usage.input_tokens
        assert cut.usage.output_tokens == WINDOW - cut.usage.input_tokens
        assert cut.output_text


# --- vLLM /tokenize and the wire ------------------------------------------------------------------


async def test_tokenize_reports_the_window(start_server: StartServer) -> None:
    url = await start_server(
        models=("first-model", "second"),
        context_length=9999,
        context_lengths=("first*=4096", "second=2048"),
    )
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as http:

        async def max_model_len(**fields: Any) -> int:
            response = await http.post("/tokenize", json={"prompt": "hi", **fields})
            assert response.status_code == 200, response.text
            value: int = response.json()["max_model_len"]
            return value

        assert await max_model_len() == 4096  # no model named: the first listed one
        assert await max_model_len(model="first-model") == 4096
        assert await max_model_len(model="second") == 2048
        assert await max_model_len(model="unlisted") == 9999
        chat = {"messages": [{"role": "user", "content": "hi"}], "model": "second"}
        response = await http.post("/tokenize", json=chat)
        assert response.json()["max_model_len"] == 2048
        shown = (await http.get("/")).json()["settings"]["models"]
        assert shown["context_length"] == 9999
        assert list(shown["context_lengths"]) == ["first*=4096", "second=2048"]


async def test_tokenize_without_entries_uses_the_default(start_server: StartServer) -> None:
    url = await start_server(models=("solo",))
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as http:
        response = await http.post("/tokenize", json={"prompt": "hi"})
    assert response.json()["max_model_len"] == 131072


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": LONG_MESSAGES}, "messages"),
        ("/chat/completions", {"messages": SHORT_MESSAGES, "max_tokens": WINDOW}, "messages"),
        ("/v1/completions", {"prompt": LONG_TEXT}, "prompt"),
        ("/v1/completions", {"prompt": [LONG_TEXT, "hi"], "stream": True}, "prompt"),
        ("/v1/responses", {"input": LONG_TEXT}, "input"),
        ("/responses", {"input": "hi", "max_output_tokens": WINDOW}, "input"),
    ],
)
async def test_error_body_matches_the_spec(
    start_server: StartServer, path: str, body: Json, param: str
) -> None:
    url = await start_server(**TINY, **FIVE)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as http:
        response = await http.post(path, json={"model": "tiny-spec", **body})
    error = check_error(response, 400, param)
    assert error["code"] == "context_length_exceeded"
    validate("ErrorResponse", response.json())
