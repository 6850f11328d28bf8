"""Scripted responses (issue 6): rules posted to ``/_mock/scripts`` or read from ``--scripts-file``.

What this file proves:

- The issue's own example, through the official SDK over loopback: rules posted in order
  answer the first call with fixed content, the second with a tool call (parsed by the SDK,
  ``finish_reason`` ``tool_calls``), the third with a 503 (``InternalServerError``), and the
  fourth falls back to generated text; streamed, the content deltas join to the exact
  content and the tool call's argument deltas to the JSON given.
- Matching: endpoint (short names and paths, with or without ``/v1``), model (name or glob),
  text (a substring of the last message only), regex, headers (exact value, any case of the
  name), all ANDed; the text is the prompt for completions, the input (string, or the last
  item of a list) for responses, the input for embeddings.
- Counts: ``times`` 1 and 3, absent = forever; the first rule with uses left wins; hits and
  remaining in the listing; DELETE clears all or one (unknown id: 404). Twenty concurrent
  requests against a ``times=5`` rule: exactly five get the scripted answer.
- Reply parts: a custom error reaches the client verbatim, a bare status gets the body the
  ``x-mock-fault`` header gives for it; fault rules behave exactly as the header (under
  MockClock, frame by frame); ``ttft_ms``/``itl_ms`` show in ``x-mock-ttft-ms``/``x-mock-itl-ms``
  and in frame times, and the request's own header wins; ``output_tokens``; ``max_tokens``
  cuts scripted content; the responses API answers ``output_text`` and a ``function_call``
  item; completions answer a tool call's arguments as text.
- Bad rules are 400s naming the rule and the problem, and a list with one bad rule adds none.
- ``--scripts-file`` (TOML ``[[rules]]`` or JSON) loads at start; a bad file is a
  ``SettingsError`` naming ``--scripts-file``.
- The journal names the rule that fired.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import httpx
import openai
import orjson
import pytest
import trio
import trio.testing
from openai.types.chat import ChatCompletionMessageFunctionToolCall
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage

from asgi import Answer, call, chat_content, token_times
from conftest import check_error, fast_settings, server_in_thread, sync_client
from openapi import validate
from trio_mock import Settings, SettingsError, create_app

if TYPE_CHECKING:
    from pathlib import Path

    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
    from quart_trio import QuartTrio

    from conftest import StartServer

Json = dict[str, Any]
TIMEOUT_S = 10.0
MODEL = "m"
EMBEDDING_MODEL = "text-embedding-3-small"
CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
BODIES: dict[str, Json] = {
    CHAT: {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}]},
    COMPLETIONS: {"model": MODEL, "prompt": "Say hello."},
    RESPONSES: {"model": MODEL, "input": "Say hello."},
    EMBEDDINGS: {"model": EMBEDDING_MODEL, "input": "Say hello."},
}
# Generated replies are 20 tokens, so a scripted answer is never mistaken for one.
TWENTY: Json = {"output_tokens_mean": 20, "output_tokens_stddev": 0}
FIXED = "The answer is exactly forty-two, my friend."
WEATHER_ARGS: Json = {"city": "Paris", "unit": "celsius", "days": [1, 2]}
ISSUE_RULES: list[Json] = [
    {"name": "fixed", "match": {"endpoint": "chat"}, "reply": {"content": FIXED}, "times": 1},
    {
        "name": "tool",
        "match": {"endpoint": "chat"},
        "reply": {"tool_call": {"name": "get_weather", "arguments": WEATHER_ARGS}},
        "times": 1,
    },
    {
        "name": "outage",
        "match": {"endpoint": "chat"},
        "reply": {"error": {"status": 503}},
        "times": 1,
    },
]
# MockClock schedule of the settings: token i at 0.1 + i * 0.01 s, 10 tokens, 5 s limit.
PACED: Json = {
    "ttft_ms": 100,
    "itl_ms": 10,
    "output_tokens_mean": 10,
    "output_tokens_stddev": 0,
    "max_request_s": 5.0,
}
COUNTING = "one two three four five six seven eight"  # one token a word (cl100k)


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mock_url() -> Generator[str]:
    """One server for the loopback tests; each test starts and ends without rules."""
    with server_in_thread(**TWENTY) as url:
        yield url


@pytest.fixture
def http(mock_url: str) -> Generator[httpx.Client]:
    with httpx.Client(base_url=mock_url, timeout=TIMEOUT_S) as client:
        assert client.delete("/_mock/scripts").status_code == 200
        yield client
        client.delete("/_mock/scripts")


@pytest.fixture
def sdk(mock_url: str) -> Generator[openai.OpenAI]:
    """The official SDK against the module's server, closed after the test."""
    with sync_client(mock_url) as client:
        yield client


def add(client: httpx.Client, rules: Any) -> list[Json]:
    """Post rules; the added rules as listed."""
    response = client.post("/_mock/scripts", json=rules)
    assert response.status_code == 200, response.text
    added: list[Json] = response.json()["data"]
    return added


def listing(client: httpx.Client) -> list[Json]:
    response = client.get("/_mock/scripts")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list"
    rules: list[Json] = body["data"]
    return rules


def fired(
    client: httpx.Client, path: str, body: Json, headers: Mapping[str, str] | None = None
) -> int | None:
    """Send one request; the id of the rule that answered it, if any."""
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 200, response.text
    rule = response.headers.get("x-mock-rule")
    return None if rule is None else int(rule)


def chat_body(*texts: str, model: str = MODEL) -> Json:
    """A conversation of ``texts``, alternately from the user and the assistant."""
    roles = ("user", "assistant")
    messages = [{"role": roles[i % 2], "content": text} for i, text in enumerate(texts)]
    return {"model": model, "messages": messages}


def chat_text(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    text: str = response.json()["choices"][0]["message"]["content"]
    return text


def stream_text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finish_reasons(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def compact(value: Any) -> str:
    """JSON as the server writes a rule's object arguments."""
    return orjson.dumps(value).decode()


# --- 1. the issue's example through the official SDK ----------------------------------------


def test_issue_example_in_order_through_the_sdk(http: httpx.Client, sdk: openai.OpenAI) -> None:
    ids = [rule["id"] for rule in add(http, ISSUE_RULES)]

    first = sdk.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
    assert first.headers["x-mock-rule"] == str(ids[0])
    choice = first.parse().choices[0]
    assert (choice.message.content, choice.finish_reason) == (FIXED, "stop")
    assert choice.message.tool_calls is None

    second = sdk.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
    assert second.headers["x-mock-rule"] == str(ids[1])
    completion = second.parse()
    validate("CreateChatCompletionResponse", completion.to_dict())
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == WEATHER_ARGS

    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert isinstance(caught.value, openai.APIStatusError)
    assert caught.value.status_code == 503
    assert caught.value.response.headers["x-mock-rule"] == str(ids[2])

    fourth = sdk.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
    assert "x-mock-rule" not in fourth.headers
    generated = fourth.parse()
    assert generated.choices[0].message.content not in (None, "", FIXED)
    assert generated.choices[0].message.tool_calls is None
    assert generated.usage is not None
    assert generated.usage.completion_tokens == 20  # the settings' length, not a rule's

    assert [(r["hits"], r["remaining"]) for r in listing(http)] == [(1, 0)] * 3


def test_issue_example_streamed_through_the_sdk(http: httpx.Client, sdk: openai.OpenAI) -> None:
    add(http, ISSUE_RULES)

    with sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True) as stream:
        chunks = list(stream)
    assert stream_text(chunks) == FIXED
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1  # streamed
    assert finish_reasons(chunks) == ["stop"]

    with sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True) as stream:
        chunks = list(stream)
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert len(deltas) > 2  # the arguments come in pieces
    head = deltas[0]
    assert head.id is not None
    assert head.id.startswith("call_")
    assert head.function is not None
    assert head.function.name == "get_weather"
    assert {d.index for d in deltas} == {0}
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function is not None)
    assert arguments == compact(WEATHER_ARGS)
    assert stream_text(chunks) == ""
    assert finish_reasons(chunks) == ["tool_calls"]

    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
    assert caught.value.status_code == 503

    with sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True) as stream:
        chunks = list(stream)
    assert stream_text(chunks) not in ("", FIXED)
    assert finish_reasons(chunks) == ["stop"]


def test_string_arguments_stream_verbatim(http: httpx.Client, sdk: openai.OpenAI) -> None:
    """Arguments given as a JSON string are sent as written, spacing and order kept."""
    written = '{"unit": "C",  "city": "Oslo"}'
    add(http, {"reply": {"tool_call": {"name": "get_weather", "arguments": written}}})
    with sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=True) as stream:
        chunks = list(stream)
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert "".join(d.function.arguments or "" for d in deltas if d.function) == written
    completion = sdk.chat.completions.create(model=MODEL, messages=HELLO)
    (call,) = completion.choices[0].message.tool_calls or []
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.function.arguments == written


# --- 2. matching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "path", "fires"),
    [
        ("chat", "/v1/chat/completions", True),
        ("chat", "/chat/completions", True),
        ("/v1/chat/completions", "/chat/completions", True),
        ("/chat/completions", "/v1/chat/completions", True),
        ("chat", "/v1/completions", False),
        ("completions", "/v1/completions", True),
        ("completions", "/v1/chat/completions", False),
        ("/v1/completions", "/completions", True),
        ("responses", "/v1/responses", True),
        ("/responses", "/responses", True),
        ("responses", "/v1/chat/completions", False),
        ("embeddings", "/v1/embeddings", True),
        ("/v1/embeddings", "/embeddings", True),
        ("embeddings", "/v1/completions", False),
    ],
)
def test_endpoint_by_short_name_or_path(
    http: httpx.Client, endpoint: str, path: str, fires: bool
) -> None:
    (rule,) = add(http, {"match": {"endpoint": endpoint}, "reply": {"ttft_ms": 0}})
    body = BODIES["/v1" + path.removeprefix("/v1")]
    assert fired(http, path, body) == (rule["id"] if fires else None)


@pytest.mark.parametrize(
    ("pattern", "model", "fires"),
    [
        ("gpt-4*", "gpt-4o", True),
        ("gpt-4*", "gpt-4", True),
        ("gpt-4*", "gpt-3.5-turbo", False),
        ("*-mini", "gpt-4o-mini", True),
        ("llama-?b", "llama-8b", True),
        ("exact", "exact", True),
        ("exact", "exactly", False),
        ("exact", "not-exact", False),
    ],
)
def test_model_by_name_or_glob(http: httpx.Client, pattern: str, model: str, fires: bool) -> None:
    (rule,) = add(http, {"match": {"model": pattern}, "reply": {"content": "matched"}})
    response = http.post(CHAT, json=chat_body("hi", model=model))
    assert response.headers.get("x-mock-rule") == (str(rule["id"]) if fires else None)
    assert (chat_text(response) == "matched") is fires


@pytest.mark.parametrize(
    ("messages", "fires"),
    [
        (chat_body("what is the weather like?")["messages"], True),
        (chat_body("hi", "hello", "and the weather tomorrow?")["messages"], True),
        (chat_body("what is the weather?", "sunny", "thanks")["messages"], False),
        ([{"role": "system", "content": "Talk about the weather."}, *HELLO], False),
        ([{"role": "user", "content": [{"type": "text", "text": "the weather, please"}]}], True),
        ([{"role": "user", "content": [{"type": "text", "text": "no"}]}], False),
    ],
)
def test_text_is_a_substring_of_the_last_message(
    http: httpx.Client, messages: list[Json], fires: bool
) -> None:
    (rule,) = add(http, {"match": {"text": "weather"}, "reply": {"content": "Sunny."}})
    body = {"model": MODEL, "messages": messages}
    assert fired(http, CHAT, body) == (rule["id"] if fires else None)


@pytest.mark.parametrize(
    ("text", "fires"),
    [
        ("Where is order #123?", True),
        ("order #42", True),
        ("order #abc", False),
        ("Where is order 123?", False),
    ],
)
def test_regex_is_searched_in_the_text(http: httpx.Client, text: str, fires: bool) -> None:
    (rule,) = add(http, {"match": {"regex": r"order #\d+\b"}, "reply": {"content": "Shipped."}})
    assert fired(http, CHAT, chat_body(text)) == (rule["id"] if fires else None)


def test_regex_anchors_apply_to_the_last_message(http: httpx.Client) -> None:
    (rule,) = add(http, {"match": {"regex": "^Hi"}, "reply": {"content": "Hello."}})
    assert fired(http, CHAT, chat_body("Hi there")) == rule["id"]
    assert fired(http, CHAT, chat_body("Say Hi")) is None
    assert fired(http, CHAT, chat_body("Hi", "Hello", "bye")) is None


@pytest.mark.parametrize(
    ("headers", "fires"),
    [
        ({"x-tenant": "acme"}, True),
        ({"X-TENANT": "acme"}, True),
        ({"x-tenant": "Acme"}, False),
        ({"x-tenant": "acme-2"}, False),
        ({"x-other": "acme"}, False),
        ({}, False),
    ],
)
def test_header_value_exact_name_in_any_case(
    http: httpx.Client, headers: dict[str, str], fires: bool
) -> None:
    (rule,) = add(http, {"match": {"headers": {"X-Tenant": "acme"}}, "reply": {"ttft_ms": 0}})
    assert fired(http, CHAT, BODIES[CHAT], headers) == (rule["id"] if fires else None)


@pytest.mark.parametrize("broken", [None, "endpoint", "model", "text", "regex", "headers"], ids=str)
def test_every_condition_must_hold(http: httpx.Client, broken: str | None) -> None:
    (rule,) = add(
        http,
        {
            "match": {
                "endpoint": "chat",
                "model": "gpt-*",
                "text": "ping",
                "regex": r"\d{3}",
                "headers": {"x-case": "and"},
            },
            "reply": {"content": "pong"},
        },
    )
    path = COMPLETIONS if broken == "endpoint" else CHAT
    model = "claude" if broken == "model" else "gpt-4o"
    text = {"text": "pong 123", "regex": "ping 12"}.get(broken or "", "ping 123")
    body = {"model": model, "prompt": text} if path == COMPLETIONS else chat_body(text, model=model)
    headers = {"x-case": "or" if broken == "headers" else "and"}
    assert fired(http, path, body, headers) == (None if broken else rule["id"])


def test_completions_match_the_prompt(http: httpx.Client, sdk: openai.OpenAI) -> None:
    add(http, {"match": {"text": "capital of France"}, "reply": {"content": " Paris."}})
    answer = sdk.completions.create(model=MODEL, prompt="What is the capital of France?")
    assert (answer.choices[0].text, answer.choices[0].finish_reason) == (" Paris.", "stop")
    other = sdk.completions.create(model=MODEL, prompt="What is the capital of Spain?")
    assert other.choices[0].text != " Paris."


@pytest.mark.parametrize(
    ("given", "fires"),
    [
        ("please translate: cat", True),
        ("hello", False),
        ([{"role": "user", "content": "translate: cat"}], True),
        (
            [
                {"role": "user", "content": "translate: cat"},
                {"role": "assistant", "content": "chat"},
                {"role": "user", "content": "thanks"},
            ],
            False,
        ),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "user", "content": [{"type": "input_text", "text": "translate: dog"}]},
            ],
            True,
        ),
    ],
)
def test_responses_match_the_input_or_its_last_item(
    http: httpx.Client, given: str | list[Json], fires: bool
) -> None:
    (rule,) = add(http, {"match": {"text": "translate"}, "reply": {"content": "Bonjour."}})
    response = http.post(RESPONSES, json={"model": MODEL, "input": given})
    assert response.status_code == 200, response.text
    assert response.headers.get("x-mock-rule") == (str(rule["id"]) if fires else None)
    texts = [
        part["text"]
        for item in response.json()["output"]
        if item["type"] == "message"
        for part in item["content"]
    ]
    assert (texts == ["Bonjour."]) is fires


def test_embeddings_match_the_input_with_an_error_rule(
    http: httpx.Client, sdk: openai.OpenAI
) -> None:
    add(
        http,
        {
            "match": {"endpoint": "embeddings", "text": "poison"},
            "reply": {"error": {"status": 429, "message": "Too many poisoned inputs."}},
        },
    )
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.embeddings.create(model=EMBEDDING_MODEL, input="a poison pill")
    assert caught.value.body == {
        "message": "Too many poisoned inputs.",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    fine = sdk.embeddings.create(model=EMBEDDING_MODEL, input="a vitamin pill")
    assert len(fine.data) == 1
    # The same text on another endpoint does not meet the embeddings rule.
    assert fired(http, CHAT, chat_body("a poison pill")) is None


async def test_embeddings_latency_rule_delays_the_reply(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    app = scripted_app(
        tmp_path, [{"match": {"endpoint": "embeddings"}, "reply": {"ttft_ms": 250}}], **PACED
    )
    answer = await call(app, EMBEDDINGS, BODIES[EMBEDDINGS])
    assert answer.status == 200
    assert answer.headers["x-mock-rule"] == "1"
    assert answer.headers["x-mock-ttft-ms"] == "250.000"
    assert answer.started_at == pytest.approx(0.25, abs=1e-9)


# --- 3. counts ----------------------------------------------------------------------------------


def test_times_one_fires_once_and_the_rule_stays_listed(http: httpx.Client) -> None:
    (rule,) = add(http, {"reply": {"content": "once"}, "times": 1})
    assert rule["hits"] == 0
    assert rule["remaining"] == 1
    assert chat_text(http.post(CHAT, json=BODIES[CHAT])) == "once"
    later = [http.post(CHAT, json=BODIES[CHAT]) for _ in range(3)]
    assert ["x-mock-rule" in r.headers for r in later] == [False] * 3
    assert "once" not in map(chat_text, later)
    (listed,) = listing(http)
    assert (listed["id"], listed["hits"], listed["remaining"]) == (rule["id"], 1, 0)


def test_times_three_then_the_next_rule_forever(http: httpx.Client) -> None:
    three, forever = add(
        http,
        [
            {"name": "three", "reply": {"content": "A"}, "times": 3},
            {"name": "forever", "reply": {"content": "B"}},
        ],
    )
    assert forever["times"] is None
    assert forever["remaining"] is None
    answers = [chat_text(http.post(CHAT, json=BODIES[CHAT])) for _ in range(6)]
    assert answers == ["A", "A", "A", "B", "B", "B"]
    assert [(r["id"], r["hits"], r["remaining"]) for r in listing(http)] == [
        (three["id"], 3, 0),
        (forever["id"], 3, None),
    ]


def test_first_matching_rule_wins(http: httpx.Client) -> None:
    add(
        http,
        [
            {"match": {"text": "zzz"}, "reply": {"content": "never"}},
            {"match": {"text": "hello"}, "reply": {"content": "first"}},
            {"match": {"text": "hello"}, "reply": {"content": "second"}},
        ],
    )
    add(http, {"reply": {"content": "added later"}})
    answers = [chat_text(http.post(CHAT, json=chat_body("hello you"))) for _ in range(3)]
    assert answers == ["first"] * 3
    assert chat_text(http.post(CHAT, json=chat_body("bye"))) == "added later"
    assert [r["hits"] for r in listing(http)] == [0, 3, 0, 1]


def test_listing_shows_the_rules_as_given(http: httpx.Client) -> None:
    given = {
        "name": "full",
        "match": {
            "endpoint": "chat",
            "model": "gpt-*",
            "text": "a",
            "regex": "b",
            "headers": {"x-a": "1"},
        },
        "reply": {"content": "c", "ttft_ms": 5.0, "itl_ms": 2.0, "output_tokens": 3},
        "times": 2,
    }
    (added,) = add(http, {"rules": [given]})
    (listed,) = listing(http)
    assert listed == added
    assert listed["name"] == "full"
    assert listed["match"] == given["match"]
    assert {k: v for k, v in listed["reply"].items() if v is not None} == given["reply"]
    assert (listed["times"], listed["hits"], listed["remaining"]) == (2, 0, 2)


def test_delete_one_then_all(http: httpx.Client) -> None:
    first, second, third = add(
        http,
        {"rules": [{"match": {"text": w}, "reply": {"content": w.upper()}} for w in "xyz"]},
    )
    assert first["id"] < second["id"] < third["id"]
    assert fired(http, CHAT, chat_body("y")) == second["id"]

    deleted = http.delete(f"/_mock/scripts/{second['id']}")
    assert (deleted.status_code, deleted.json()) == (200, {"deleted": 1})
    assert [r["id"] for r in listing(http)] == [first["id"], third["id"]]
    assert fired(http, CHAT, chat_body("y")) is None
    assert fired(http, CHAT, chat_body("z")) == third["id"]

    again = http.delete(f"/_mock/scripts/{second['id']}")
    assert again.status_code == 404
    error = again.json()["error"]
    assert error["code"] == "not_found"
    assert str(second["id"]) in error["message"]
    assert http.delete("/_mock/scripts/987654").status_code == 404

    cleared = http.delete("/_mock/scripts")
    assert (cleared.status_code, cleared.json()) == (200, {"deleted": 2})
    assert listing(http) == []
    assert fired(http, CHAT, chat_body("x")) is None
    assert http.delete("/_mock/scripts").json() == {"deleted": 0}


# --- 4. concurrency -----------------------------------------------------------------------------


async def test_twenty_concurrent_requests_meet_a_five_shot_rule_five_times(
    start_server: StartServer,
) -> None:
    """A rule is used up as it is matched, so concurrent requests never share a use."""
    url = await start_server(ttft_ms=20, itl_ms=1, **TWENTY)  # the requests overlap
    answers: list[tuple[str | None, str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        posted = await client.post(
            "/_mock/scripts", json={"reply": {"content": "scripted"}, "times": 5}
        )
        assert posted.status_code == 200, posted.text

        async def one() -> None:
            response = await client.post(CHAT, json=BODIES[CHAT])
            answers.append((response.headers.get("x-mock-rule"), chat_text(response)))

        with trio.fail_after(TIMEOUT_S):
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(one)
        listed = (await client.get("/_mock/scripts")).json()["data"]
    assert len(answers) == 20
    scripted = [text for rule, text in answers if rule is not None]
    assert scripted == ["scripted"] * 5
    assert all(text != "scripted" for rule, text in answers if rule is None)
    assert [(r["hits"], r["remaining"]) for r in listed] == [(5, 0)]


async def test_requests_matched_in_one_batch_share_a_five_shot_rule_five_times(
    tmp_path: Path,
) -> None:
    """In process, twenty requests all reach the rules before any is answered: an await
    between match and count would let more than five through."""
    app = scripted_app(tmp_path, [{"reply": {"content": "scripted"}, "times": 5}], ttft_ms=20)
    answers: list[Answer] = []

    async def one() -> None:
        answers.append(await call(app, CHAT, BODIES[CHAT]))

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(one)
    texts = [orjson.loads(a.body)["choices"][0]["message"]["content"] for a in answers]
    rules = [a.headers.get("x-mock-rule") for a in answers]
    assert len(answers) == 20
    assert sorted(t for t, r in zip(texts, rules, strict=True) if r is not None) == ["scripted"] * 5
    assert texts.count("scripted") == 5


# --- 5. reply parts ----------------------------------------------------------------------------


CUSTOM_ERROR: Json = {
    "message": "Scripted: temperature is too hot.",
    "type": "invalid_request_error",
    "code": "too_hot",
    "param": "temperature",
}


@pytest.mark.parametrize("stream", [False, True])
def test_custom_error_reaches_the_client_verbatim(
    http: httpx.Client, sdk: openai.OpenAI, stream: bool
) -> None:
    add(http, {"reply": {"error": {"status": 422, **CUSTOM_ERROR}}})
    response = http.post(CHAT, json=BODIES[CHAT] | {"stream": stream})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": CUSTOM_ERROR}
    validate("ErrorResponse", response.json())
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        sdk.chat.completions.create(model=MODEL, messages=HELLO, stream=stream)
    assert caught.value.status_code == 422
    assert caught.value.body == CUSTOM_ERROR
    assert (caught.value.code, caught.value.param, caught.value.type) == (
        "too_hot",
        "temperature",
        "invalid_request_error",
    )


@pytest.mark.parametrize("status", [400, 401, 404, 418, 429, 500, 502, 503, 504, 599])
def test_bare_status_gets_the_usual_body(http: httpx.Client, status: int) -> None:
    """The body a rule gives for a bare status is the one ``x-mock-fault`` gives for it."""
    add(http, {"match": {"headers": {"x-scripted": "yes"}}, "reply": {"error": {"status": status}}})
    scripted = http.post(CHAT, json=BODIES[CHAT], headers={"x-scripted": "yes"})
    faulted = http.post(CHAT, json=BODIES[CHAT], headers={"x-mock-fault": str(status)})
    assert "x-mock-rule" in scripted.headers
    assert "x-mock-rule" not in faulted.headers
    assert scripted.status_code == faulted.status_code == status
    assert scripted.json() == faulted.json()
    error = scripted.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Scripted" not in error["message"]


def test_bare_503_is_openais_overloaded_body(http: httpx.Client) -> None:
    add(http, {"reply": {"error": {"status": 503}}})
    response = http.post(CHAT, json=BODIES[CHAT])
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "message": "The server is overloaded or not ready yet.",
            "type": "server_error",
            "param": None,
            "code": "service_unavailable",
        }
    }


def test_error_fields_default_one_by_one(http: httpx.Client) -> None:
    """A message alone keeps the status's usual type and code."""
    add(http, {"reply": {"error": {"status": 503, "message": "Down for lunch."}}})
    error = http.post(CHAT, json=BODIES[CHAT]).json()["error"]
    assert error == {
        "message": "Down for lunch.",
        "type": "server_error",
        "param": None,
        "code": "service_unavailable",
    }


def test_output_tokens_rule_and_the_header_wins(http: httpx.Client) -> None:
    (rule,) = add(http, {"match": {"text": "long"}, "reply": {"output_tokens": 7}})
    response = http.post(CHAT, json=chat_body("a long one"))
    assert response.status_code == 200
    assert response.headers["x-mock-output-tokens"] == "7"
    assert response.json()["usage"]["completion_tokens"] == 7
    mine = http.post(CHAT, json=chat_body("a long one"), headers={"x-mock-output-tokens": "3"})
    assert mine.headers["x-mock-rule"] == str(rule["id"])
    assert mine.headers["x-mock-output-tokens"] == "3"
    assert mine.json()["usage"]["completion_tokens"] == 3


def test_content_is_cut_by_max_tokens(http: httpx.Client, sdk: openai.OpenAI) -> None:
    add(http, {"reply": {"content": COUNTING}})
    whole = sdk.chat.completions.create(model=MODEL, messages=HELLO)
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == (COUNTING, "stop")
    cut = sdk.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=3)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == (
        "one two three",
        "length",
    )
    assert cut.usage is not None
    assert cut.usage.completion_tokens == 3
    with sdk.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=3, stream=True
    ) as stream:
        chunks = list(stream)
    assert (stream_text(chunks), finish_reasons(chunks)) == ("one two three", ["length"])
    text = sdk.completions.create(model=MODEL, prompt="count", max_tokens=2).choices[0]
    assert (text.text, text.finish_reason) == ("one two", "length")


def test_responses_answer_output_text_and_a_function_call(
    http: httpx.Client, sdk: openai.OpenAI
) -> None:
    add(
        http,
        [
            {"match": {"text": "greet"}, "reply": {"content": FIXED}},
            {
                "match": {"text": "call"},
                "reply": {"tool_call": {"name": "lookup", "arguments": {"id": 7}}},
            },
        ],
    )
    text = sdk.responses.create(model=MODEL, input="greet me")
    validate("Response", text.to_dict())
    assert text.output_text == FIXED
    (message,) = text.output
    assert isinstance(message, ResponseOutputMessage)
    assert [part.type for part in message.content] == ["output_text"]

    called = sdk.responses.create(model=MODEL, input="call it")
    validate("Response", called.to_dict())
    (item,) = called.output
    assert isinstance(item, ResponseFunctionToolCall)
    assert (item.type, item.name, item.status) == ("function_call", "lookup", "completed")
    assert json.loads(item.arguments) == {"id": 7}
    assert item.call_id.startswith("call_")
    assert called.output_text == ""

    with sdk.responses.create(model=MODEL, input="greet again", stream=True) as stream:
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1
    assert "".join(deltas) == FIXED
    with sdk.responses.create(model=MODEL, input="call again", stream=True) as stream:
        events = list(stream)
    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(pieces) == compact({"id": 7})
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done.arguments == compact({"id": 7})


def test_completions_answer_a_tool_call_as_text(http: httpx.Client, sdk: openai.OpenAI) -> None:
    arguments = {"query": "weather", "n": 2}
    add(http, {"reply": {"tool_call": {"name": "search", "arguments": arguments}}})
    choice = sdk.completions.create(model=MODEL, prompt="go", max_tokens=50).choices[0]
    assert (choice.text, choice.finish_reason) == (compact(arguments), "stop")
    with sdk.completions.create(model=MODEL, prompt="go", max_tokens=50, stream=True) as stream:
        texts = [c.choices[0].text for c in stream if c.choices]
    assert "".join(texts) == compact(arguments)


# --- 5b. faults and latency under MockClock (the app's ASGI entry point, no sockets) -------------


def scripted_app(tmp_path: Path, rules: list[Json], **leaves: Any) -> QuartTrio:
    """An app whose rules come from a ``--scripts-file``."""
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules), encoding="utf-8")
    return create_app(fast_settings(**leaves, scripts_file=str(path)))


UNSTABLE = frozenset({"id", "created", "created_at", "item_id", "call_id"})


def scrub(value: Any) -> Any:
    """``value`` without the fields that differ between two otherwise equal replies."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in UNSTABLE}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def seen(answer: Answer) -> tuple[Any, ...]:
    """What a client meets, and when: status, ends, frames (or body) with their times."""
    frames = [(round(at, 9), name, scrub(data)) for at, name, data in answer.events()]
    body = scrub(orjson.loads(answer.body)) if answer.body and not frames else None
    return (answer.status, round(answer.started_at, 9), answer.ended, frames, body)


FAULTS = ("disconnect-after=2", "error-after=1")
FAULT_RULES: list[Json] = [
    {"name": spec, "match": {"headers": {"x-fault-rule": spec}}, "reply": {"fault": spec}}
    for spec in FAULTS
]


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "body"])
@pytest.mark.parametrize("path", [CHAT, COMPLETIONS, RESPONSES])
@pytest.mark.parametrize("spec", FAULTS)
async def test_fault_rule_acts_as_the_fault_header(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, spec: str, path: str, stream: bool
) -> None:
    app = scripted_app(tmp_path, FAULT_RULES, **PACED)
    body = BODIES[path] | {"stream": stream}
    seed = (b"x-mock-seed", b"7")  # the same text both times
    by_rule = await call(app, path, body, headers=(seed, (b"x-fault-rule", spec.encode())))
    by_header = await call(app, path, body, headers=(seed, (b"x-mock-fault", spec.encode())))
    assert by_rule.headers["x-mock-rule"] == str(FAULTS.index(spec) + 1)
    assert "x-mock-rule" not in by_header.headers
    assert by_rule.headers["x-mock-fault"] == by_header.headers["x-mock-fault"] == spec
    assert seen(by_rule) == seen(by_header)
    # ...and it is the fault asked for, not a normal reply both times.
    kept = 2 if spec.startswith("disconnect") else 1
    next_due = 0.1 + kept * 0.01
    if stream:
        assert token_times(by_rule.events()) == pytest.approx(
            [0.1 + i * 0.01 for i in range(kept)], abs=1e-9
        )
        assert by_rule.ended is spec.startswith("error")
        if spec.startswith("error"):
            assert by_rule.events()[-1][0] == pytest.approx(next_due, abs=1e-9)
    elif spec.startswith("disconnect"):
        assert (by_rule.status, by_rule.ended, by_rule.body) == (200, False, b"")
        assert by_rule.started_at == pytest.approx(next_due, abs=1e-9)
    else:
        assert by_rule.status == 500
        assert by_rule.started_at == pytest.approx(next_due, abs=1e-9)


LATENCY_RULE: list[Json] = [
    {
        "match": {"text": "slow"},
        "reply": {"content": "one two three four five", "ttft_ms": 250, "itl_ms": 20},
    },
    {"match": {"text": "plain"}, "reply": {"content": "one two three four five"}},
]


@pytest.mark.parametrize(
    ("text", "headers", "ttft_s", "itl_s"),
    [
        ("slow", (), 0.25, 0.02),
        ("slow", ((b"x-mock-ttft-ms", b"40"),), 0.04, 0.02),
        ("slow", ((b"x-mock-itl-ms", b"5"),), 0.25, 0.005),
        ("plain", (), 0.1, 0.01),  # a rule without latency keeps the settings'
    ],
    ids=["rule", "header-ttft-wins", "header-itl-wins", "no-latency"],
)
async def test_latency_rule_in_headers_and_frame_times(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    text: str,
    headers: tuple[tuple[bytes, bytes], ...],
    ttft_s: float,
    itl_s: float,
) -> None:
    app = scripted_app(tmp_path, LATENCY_RULE, **PACED)
    body = chat_body(f"{text}, please") | {"stream": True}
    answer = await call(app, CHAT, body, headers=headers)
    assert answer.status == 200
    assert "x-mock-rule" in answer.headers
    assert answer.headers["x-mock-ttft-ms"] == f"{ttft_s * 1000:.3f}"
    assert answer.headers["x-mock-itl-ms"] == f"{itl_s * 1000:.3f}"
    events = answer.events()
    assert chat_content(events) == "one two three four five"
    assert token_times(events) == pytest.approx([ttft_s + i * itl_s for i in range(5)], abs=1e-9)

    whole = await call(app, CHAT, chat_body(f"{text}, please"), headers=headers)
    assert whole.headers["x-mock-ttft-ms"] == f"{ttft_s * 1000:.3f}"
    assert whole.started_at == pytest.approx(ttft_s + 4 * itl_s, abs=1e-9)
    assert orjson.loads(whole.body)["choices"][0]["message"]["content"] == "one two three four five"


# --- 6. bad rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "param", "words"),
    [
        ({"match": {"txt": "x"}, "reply": {"content": "y"}}, "match", ["txt"]),
        ({"reply": {"content": "y"}, "times": 0}, "times", ["times", "at least 1"]),
        ({"reply": {"content": "y"}, "times": -2}, "times", ["times"]),
        ({"match": {"regex": "(unclosed"}, "reply": {}}, "match.regex", ["regex"]),
        ({"reply": {"fault": "disconect-after=2"}}, "reply.fault", ["disconect"]),
        ({"reply": {"fault": "error-after=two"}}, "reply.fault", ["error-after=two"]),
        ({"reply": {"fault": "600"}}, "reply.fault", ["600"]),
        ({"match": {"endpoint": "models"}, "reply": {}}, "match.endpoint", ["models"]),
        ({"match": {"endpoint": "/v1/models"}, "reply": {}}, "match.endpoint", ["/v1/models"]),
        ({"reply": {"error": {"status": 200}}}, "reply.error.status", ["400-599"]),
        ({"reply": {"error": {"status": 600}}}, "reply.error.status", ["400-599"]),
        ({"reply": {"error": {"message": "no status"}}}, "reply.error.status", ["status"]),
        ({"reply": {"error": {"status": 503, "colour": "red"}}}, "reply.error", ["colour"]),
        ({"match": {}}, "reply", ["reply"]),
        ({"reply": {"ttft_ms": "fast"}}, "reply.ttft_ms", ["ttft_ms", "number"]),
        ({"reply": {"itl_ms": -5}}, "reply.itl_ms", ["itl_ms", ">= 0"]),
        ({"reply": {"output_tokens": 1.5}}, "reply.output_tokens", ["integer"]),
        ({"reply": {"output_tokens": -1}}, "reply.output_tokens", ["output_tokens"]),
        ({"reply": {}, "times": "3"}, "times", ["integer"]),
        ({"reply": {}, "times": True}, "times", ["integer"]),
        ({"reply": {"content": 5}}, "reply.content", ["string"]),
        ({"name": 5, "reply": {}}, "name", ["string"]),
        ({"match": {"model": ["a"]}, "reply": {}}, "match.model", ["string"]),
        (
            {"reply": {"tool_call": {"name": "f", "arguments": [1, 2]}}},
            "reply.tool_call.arguments",
            ["arguments"],
        ),
        ({"reply": {"tool_call": {"arguments": {}}}}, "reply.tool_call.name", ["name"]),
        ({"match": {"headers": {"x-a": 1}}, "reply": {}}, "match.headers['x-a']", ["string"]),
    ],
)
def test_bad_rule_is_a_400_naming_the_problem(
    http: httpx.Client, rule: Json, param: str, words: list[str]
) -> None:
    response = http.post("/_mock/scripts", json=rule)
    error = check_error(response, 400, param)
    assert error["message"].startswith("rules[0]")
    for word in words:
        assert word in error["message"], error
    assert listing(http) == []


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (5, None, ["rule"]),
        ("a rule", None, ["rule"]),
        ([{"reply": {}}, "not a rule"], "rules[1]", ["rules[1]", "object"]),
        ({"rules": [{"reply": {}}, 7]}, "rules[1]", ["rules[1]", "object"]),
    ],
)
def test_non_object_rule_is_a_400(
    http: httpx.Client, body: Any, param: str | None, words: list[str]
) -> None:
    error = check_error(http.post("/_mock/scripts", json=body), 400, param)
    for word in words:
        assert word in error["message"], error
    assert listing(http) == []


def test_body_not_json_is_a_400(http: httpx.Client) -> None:
    check_error(http.post("/_mock/scripts", content=b"{not json"), 400, None)


def test_one_bad_rule_adds_none_of_the_list(http: httpx.Client) -> None:
    (kept,) = add(http, {"reply": {"content": "kept"}})
    rules = [
        {"match": {"text": "a"}, "reply": {"content": "A"}},
        {"match": {"text": "b"}, "reply": {"content": "B"}},
        {"match": {"text": "c"}, "reply": {"content": "C"}, "times": 0},
    ]
    error = check_error(http.post("/_mock/scripts", json=rules), 400, "times")
    assert "rules[2]" in error["message"]
    assert [r["id"] for r in listing(http)] == [kept["id"]]
    assert chat_text(http.post(CHAT, json=chat_body("a"))) == "kept"


def test_unknown_top_level_key_is_named_cleanly(http: httpx.Client) -> None:
    error = check_error(http.post("/_mock/scripts", json={"mtch": {}, "reply": {}}), 400, None)
    assert "mtch" in error["message"]
    assert "None" not in error["message"]


@pytest.mark.parametrize("rule", [{"reply": "hi"}, {"match": "chat", "reply": {}}])
def test_non_object_part_is_a_type_error(http: httpx.Client, rule: Json) -> None:
    (part,) = [k for k, v in rule.items() if isinstance(v, str)]
    error = check_error(http.post("/_mock/scripts", json=rule), 400, part)
    assert "expected an object" in error["message"], error
    assert "unknown error" not in error["message"]


def test_header_value_outside_latin1_is_a_400(http: httpx.Client) -> None:
    response = http.post(
        "/_mock/scripts", json={"match": {"headers": {"x-lang": "日本"}}, "reply": {}}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "x-lang" in error["message"]


# --- 7. --scripts-file ----------------------------------------------------------------------------


TOML_RULES = """\
[[rules]]
name = "greeting"
times = 1
match = { endpoint = "chat", text = "hello" }
reply = { content = "Hi from TOML!" }

[[rules]]
match = { endpoint = "completions" }

[rules.reply.tool_call]
name = "lookup"
arguments = { id = 7 }
"""
JSON_RULES: list[Json] = [
    {
        "name": "greeting",
        "times": 1,
        "match": {"endpoint": "chat", "text": "hello"},
        "reply": {"content": "Hi from TOML!"},
    },
    {
        "match": {"endpoint": "completions"},
        "reply": {"tool_call": {"name": "lookup", "arguments": {"id": 7}}},
    },
]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("rules.toml", TOML_RULES),
        ("rules.json", json.dumps(JSON_RULES)),
        ("wrapped.json", json.dumps({"rules": JSON_RULES})),
    ],
)
def test_scripts_file_loads_at_start(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with (
        server_in_thread(fast_settings(scripts_file=str(path))) as url,
        httpx.Client(base_url=url, timeout=TIMEOUT_S) as client,
    ):
        rules = listing(client)
        assert [(r["id"], r["name"], r["times"]) for r in rules] == [
            (1, "greeting", 1),
            (2, None, None),
        ]
        assert rules[1]["reply"]["tool_call"] == {"name": "lookup", "arguments": {"id": 7}}
        assert chat_text(client.post(CHAT, json=chat_body("hello there"))) == "Hi from TOML!"
        assert chat_text(client.post(CHAT, json=chat_body("hello there"))) != "Hi from TOML!"
        completion = client.post(COMPLETIONS, json=BODIES[COMPLETIONS] | {"max_tokens": 50})
        assert completion.json()["choices"][0]["text"] == '{"id":7}'
        # Loaded rules are ordinary rules: they can be deleted like posted ones.
        assert client.delete("/_mock/scripts/1").json() == {"deleted": 1}
        assert [r["id"] for r in listing(client)] == [2]


@pytest.mark.parametrize(
    ("name", "text", "words"),
    [
        ("syntax.toml", "[[rules]\n", ["syntax.toml"]),
        ("syntax.json", "{not json", ["syntax.json"]),
        ("typo.toml", '[[rules]]\nmatch = { txt = "x" }\nreply = { content = "y" }\n', ["txt"]),
        ("zero.json", '[{"reply": {"content": "y"}, "times": 0}]', ["times"]),
        ("status.toml", "[[rules]]\nreply = { error = { status = 200 } }\n", ["400-599"]),
        ("noreply.json", '{"rules": [{"match": {}}]}', ["reply"]),
        ("fault.json", '[{"reply": {"fault": "explode"}}]', ["explode"]),
        ("second.json", '[{"reply": {}}, {"reply": {}, "times": -1}]', ["rules[1]"]),
    ],
)
def test_bad_scripts_file_is_a_settings_error(
    tmp_path: Path, name: str, text: str, words: list[str]
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        create_app(Settings().replace(scripts_file=str(path)))
    message = str(caught.value)
    assert message.startswith("--scripts-file"), message
    assert name in message
    for word in words:
        assert word in message, message


def test_missing_scripts_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings().replace(scripts_file=str(tmp_path / "absent.toml"))
    assert str(caught.value).startswith("--scripts-file"), caught.value
    assert "absent.toml" in str(caught.value)


# --- 8. the journal names the rule ---------------------------------------------------------------


def test_journal_names_the_rule_that_fired(http: httpx.Client) -> None:
    named, unnamed = add(
        http,
        [
            {"name": "greeting", "match": {"text": "hello"}, "reply": {"content": "Hi!"}},
            {"match": {"text": "boom"}, "reply": {"error": {"status": 503}}},
        ],
    )
    assert http.delete("/_mock/requests").status_code == 200
    streamed = chat_body("hello") | {"stream": True}
    assert http.post(CHAT, json=streamed).status_code == 200
    assert http.post(CHAT, json=chat_body("boom")).status_code == 503
    assert http.post(CHAT, json=chat_body("nothing") | {"stream": True}).status_code == 200
    response = http.get("/_mock/requests")
    assert response.status_code == 200, response.text
    entries = response.json()["data"]
    assert [(e["rule"], e["status"]) for e in entries] == [
        ("greeting", 200),
        (f"rule {unnamed['id']}", 503),
        (None, 200),
    ]
    assert entries[1]["error"]["code"] == "service_unavailable"
    assert named["name"] == "greeting"


def test_journal_names_the_rule_of_a_body(http: httpx.Client) -> None:
    """A non-streamed scripted reply is listed too (its events were once a 500 here)."""
    add(http, {"name": "plain", "reply": {"content": "Hi!"}})
    assert http.delete("/_mock/requests").status_code == 200
    assert chat_text(http.post(CHAT, json=BODIES[CHAT])) == "Hi!"
    response = http.get("/_mock/requests")
    assert response.status_code == 200, response.text
    assert [e["rule"] for e in response.json()["data"]] == ["plain"]
