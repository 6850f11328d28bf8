"""The official ``openai`` SDK against trio-mock over loopback, sync and async.

The sync client talks to a server in its own thread (``server_in_thread``); the async client
runs inside the pytest-trio test, against a server in the test's nursery (``start_server``).
Latency is zero unless a test needs an order of arrival. Lengths are pinned with
``output_tokens_mean=5, output_tokens_stddev=0`` where a test counts tokens.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import openai
import pytest

from conftest import async_client, collect, server_in_thread, sync_client
from helpers import tokens

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

    from conftest import StartServer

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
# Knobs for replies of exactly 5 tokens.
FIVE: dict[str, Any] = {"output_tokens_mean": 5, "output_tokens_stddev": 0}


def texts_by_choice(chunks: list[ChatCompletionChunk]) -> dict[int, list[str]]:
    """Each choice's non-empty content deltas, in order of arrival."""
    out: dict[int, list[str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            pieces = out.setdefault(choice.index, [])
            if choice.delta.content:
                pieces.append(choice.delta.content)
    return out


def finish_reasons(chunks: list[ChatCompletionChunk]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            if choice.finish_reason is not None:
                out.setdefault(choice.index, []).append(choice.finish_reason)
    return out


# --- sync client ------------------------------------------------------------------------


def test_sync_create() -> None:
    with server_in_thread(**FIVE) as url, sync_client(url) as client:
        completion = client.chat.completions.create(model="sdk-model", messages=HELLO)
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "sdk-model"
    (choice,) = completion.choices
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert choice.message.content is not None
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5 == tokens(choice.message.content)
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_sync_stream_with_usage() -> None:
    with server_in_thread(**FIVE) as url, sync_client(url) as client:
        stream = client.chat.completions.create(
            model="sdk-model",
            messages=HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            chunks = list(stream)
    *content, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert all(c.usage is None for c in content)
    assert content[0].choices[0].delta.role == "assistant"
    pieces = texts_by_choice(content)[0]
    assert len(pieces) == last.usage.completion_tokens == 5
    assert tokens("".join(pieces)) == 5
    assert finish_reasons(content) == {0: ["stop"]}
    assert len({c.id for c in chunks}) == 1


def test_sync_models() -> None:
    with (
        server_in_thread(any_model=False, models=("a", "b")) as url,
        sync_client(url) as client,
    ):
        listed = [m.id for m in client.models.list()]
        model = client.models.retrieve("b")
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve("c")
    assert listed == ["a", "b"]
    assert model.id == "b"
    assert model.object == "model"
    assert model.owned_by == "trio-mock"
    assert caught.value.code == "model_not_found"


def test_sync_errors() -> None:
    with (
        server_in_thread(any_model=False, models=("a", "b")) as url,
        sync_client(url) as client,
    ):
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="a", messages=HELLO, n=0)
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="c", messages=HELLO)
    assert bad.value.status_code == 400
    assert bad.value.param == "n"
    assert missing.value.status_code == 404
    assert missing.value.code == "model_not_found"
    assert missing.value.param == "model"


def test_sync_request_id() -> None:
    with server_in_thread() as url, sync_client(url) as client:
        raw = client.chat.completions.with_raw_response.create(model="m", messages=HELLO)
        traced = client.chat.completions.with_raw_response.create(
            model="m", messages=HELLO, extra_headers={"x-request-id": "trace-sync-1"}
        )
    request_id = raw.headers["x-request-id"]
    assert request_id.startswith("req_")
    assert raw.parse()._request_id == request_id
    assert traced.headers["x-request-id"] == "trace-sync-1"


# --- async client: completions ------------------------------------------------------------


async def test_create(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        completion = await client.chat.completions.create(model="sdk-model", messages=HELLO)
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "sdk-model"
    assert completion.system_fingerprint == "fp_trio_mock"
    (choice,) = completion.choices
    assert choice.finish_reason == "stop"
    assert choice.message.content is not None
    assert completion.usage is not None
    assert completion.usage.completion_tokens == tokens(choice.message.content) == 5


async def test_stream(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        stream = await client.chat.completions.create(
            model="sdk-model", messages=HELLO, stream=True
        )
        chunks = await collect(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:])
    assert all(c.usage is None for c in chunks)
    assert all(c.model == "sdk-model" for c in chunks)
    pieces = texts_by_choice(chunks)[0]
    assert len(pieces) == 5
    assert finish_reasons(chunks) == {0: ["stop"]}
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_n_choices(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        completion = await client.chat.completions.create(model="m", messages=HELLO, n=3, seed=11)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    texts = [c.message.content or "" for c in completion.choices]
    assert len(set(texts)) > 1, "choices are drawn independently"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3 * 5 == sum(tokens(t) for t in texts)


async def test_n_choices_streamed_interleave(start_server: StartServer) -> None:
    # With 2 ms between tokens, the choices' tokens fall due in turns.
    url = await start_server(itl_ms=2, **FIVE)
    async with async_client(url) as client:
        stream = await client.chat.completions.create(
            model="m",
            messages=HELLO,
            n=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = await collect(stream)
    *content, last = chunks
    order = [c.choices[0].index for c in content if c.choices[0].delta.content]
    assert sorted(set(order)) == [0, 1, 2]
    firsts = [order.index(i) for i in range(3)]
    lasts = [len(order) - 1 - order[::-1].index(i) for i in range(3)]
    assert max(firsts) < min(lasts), f"choices arrive one after another: {order}"
    roles = [c.choices[0].index for c in content if c.choices[0].delta.role == "assistant"]
    assert sorted(roles) == [0, 1, 2], "each choice names its role once"
    assert finish_reasons(content) == {0: ["stop"], 1: ["stop"], 2: ["stop"]}
    assert last.usage is not None
    assert last.usage.completion_tokens == 3 * 5 == len(order)


async def test_include_usage(start_server: StartServer) -> None:
    url = await start_server(output_tokens_mean=40, output_tokens_stddev=10)
    async with async_client(url) as client:
        stream = await client.chat.completions.create(
            model="m", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = await collect(stream)
        plain = await client.chat.completions.create(model="m", messages=HELLO)
    *content, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert all(c.usage is None for c in content)
    assert all(len(c.choices) == 1 for c in content)
    pieces = texts_by_choice(content)[0]
    assert last.usage.completion_tokens == len(pieces) == tokens("".join(pieces))
    assert plain.usage is not None
    assert last.usage.prompt_tokens == plain.usage.prompt_tokens
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


# --- async client: length controls -------------------------------------------------------

# (cap, tokens, finish_reason) for a reply whose natural length is 5 tokens.
CAPS = [(3, 3, "length"), (5, 5, "length"), (6, 5, "stop"), (100, 5, "stop")]


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
async def test_token_cap(start_server: StartServer, name: str) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        for cap, want, reason in CAPS:
            if name == "max_tokens":
                completion = await client.chat.completions.create(
                    model="m", messages=HELLO, max_tokens=cap
                )
            else:
                completion = await client.chat.completions.create(
                    model="m", messages=HELLO, max_completion_tokens=cap
                )
            (choice,) = completion.choices
            assert completion.usage is not None
            assert (completion.usage.completion_tokens, choice.finish_reason) == (want, reason), cap
            assert tokens(choice.message.content or "") == want


@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
async def test_token_cap_streamed(start_server: StartServer, name: str) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        for cap, want, reason in CAPS:
            if name == "max_tokens":
                stream = await client.chat.completions.create(
                    model="m", messages=HELLO, max_tokens=cap, n=2, stream=True
                )
            else:
                stream = await client.chat.completions.create(
                    model="m", messages=HELLO, max_completion_tokens=cap, n=2, stream=True
                )
            chunks = await collect(stream)
            assert {i: len(p) for i, p in texts_by_choice(chunks).items()} == {0: want, 1: want}
            assert finish_reasons(chunks) == {0: [reason], 1: [reason]}, cap


async def test_max_completion_tokens_wins(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        completion = await client.chat.completions.create(
            model="m", messages=HELLO, max_tokens=2, max_completion_tokens=4
        )
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4


async def test_min_tokens_and_ignore_eos(start_server: StartServer) -> None:
    url = await start_server(**FIVE)

    async def ask(**kwargs: Any) -> tuple[int, str]:
        completion = await client.chat.completions.create(model="m", messages=HELLO, **kwargs)
        assert completion.usage is not None
        (choice,) = completion.choices
        assert tokens(choice.message.content or "") == completion.usage.completion_tokens
        return completion.usage.completion_tokens, choice.finish_reason

    async with async_client(url) as client:
        assert await ask() == (5, "stop")
        assert await ask(extra_body={"min_tokens": 12}) == (12, "stop")
        assert await ask(extra_body={"min_tokens": 3}) == (5, "stop")
        assert await ask(extra_body={"min_tokens": 12}, max_tokens=12) == (12, "length")
        assert await ask(extra_body={"ignore_eos": True}) == (5, "stop")
        assert await ask(extra_body={"ignore_eos": True}, max_tokens=20) == (20, "length")
        assert await ask(extra_body={"ignore_eos": False}, max_tokens=20) == (5, "stop")
        with pytest.raises(openai.BadRequestError) as caught:
            await ask(extra_body={"min_tokens": 12}, max_tokens=8)
    assert caught.value.param == "min_tokens"


async def test_min_tokens_repeats_echo(start_server: StartServer) -> None:
    url = await start_server(output_mode="echo")
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": " one two"}]
    async with async_client(url) as client:
        completion = await client.chat.completions.create(
            model="m", messages=messages, extra_body={"min_tokens": 5}
        )
    assert completion.choices[0].message.content == " one two one two one"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 5


async def test_min_tokens_with_nothing_to_echo(start_server: StartServer) -> None:
    """Regression: this answered 500 (RepeatedText divided by the length of no tokens)."""
    url = await start_server(output_mode="echo")
    empty: list[ChatCompletionMessageParam] = [{"role": "user", "content": ""}]
    image_only: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://example.invalid/a.png"}}
            ],
        }
    ]
    async with async_client(url) as client:
        for messages in (empty, image_only):
            completion = await client.chat.completions.create(
                model="m", messages=messages, extra_body={"min_tokens": 3}
            )
            assert completion.usage is not None
            assert completion.usage.completion_tokens == 3
            assert completion.choices[0].finish_reason == "stop"
        capped = await client.chat.completions.create(
            model="m", messages=empty, max_tokens=4, extra_body={"ignore_eos": True}
        )
    assert capped.usage is not None
    assert capped.usage.completion_tokens == 4
    assert capped.choices[0].finish_reason == "length"


# --- async client: reproducibility and content ------------------------------------------


async def test_seed_reproduces_text(start_server: StartServer) -> None:
    url = await start_server(output_tokens_mean=30, output_tokens_stddev=10)

    async def text(seed: int | None) -> str:
        completion = await client.chat.completions.create(model="m", messages=HELLO, seed=seed)
        return completion.choices[0].message.content or ""

    async with async_client(url) as client:
        first, again, other = await text(1234), await text(1234), await text(4321)
        stream = await client.chat.completions.create(
            model="m", messages=HELLO, seed=1234, stream=True
        )
        streamed = "".join(texts_by_choice(await collect(stream))[0])
        unseeded = {await text(None) for _ in range(3)}
    assert first == again == streamed
    assert other != first
    assert len(unseeded) > 1


async def test_content_parts(start_server: StartServer) -> None:
    url = await start_server(output_mode="echo")
    as_string: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Hello, parts world."}
    ]
    as_parts: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hello, "},
                {"type": "text", "text": "parts world."},
            ],
        }
    ]
    with_image: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hello, parts world."},
                {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}},
            ],
        }
    ]
    async with async_client(url) as client:
        results: list[ChatCompletion] = [
            await client.chat.completions.create(model="m", messages=m)
            for m in (as_string, as_parts, with_image)
        ]
    assert [r.choices[0].message.content for r in results] == ["Hello, parts world."] * 3
    prompts = [r.usage.prompt_tokens if r.usage else -1 for r in results]
    assert prompts[0] == prompts[1]
    assert prompts[2] == prompts[0] + 85  # a low-detail image's flat cost


async def test_corpus_text_retokenizes_to_usage(start_server: StartServer) -> None:
    """Corpus replies are whole cl100k tokens: re-tokenizing gives the reported count."""
    url = await start_server(output_tokens_mean=300, output_tokens_stddev=100)
    async with async_client(url) as client:
        for seed in (1, 2, 3):
            stream = await client.chat.completions.create(
                model="m",
                messages=HELLO,
                n=2,
                seed=seed,
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = await collect(stream)
            usage = chunks[-1].usage
            assert usage is not None
            by_choice = texts_by_choice(chunks)
            assert sum(tokens("".join(p)) for p in by_choice.values()) == usage.completion_tokens
            # Chunk boundaries are token boundaries: each delta is one token.
            assert all(tokens(p) == 1 for pieces in by_choice.values() for p in pieces)
            completion = await client.chat.completions.create(
                model="m", messages=HELLO, n=2, seed=seed
            )
            assert completion.usage is not None
            texts = [c.message.content or "" for c in completion.choices]
            assert sum(tokens(t) for t in texts) == completion.usage.completion_tokens
            assert texts == ["".join(by_choice[0]), "".join(by_choice[1])]


# --- async client: models and errors ------------------------------------------------------


async def test_models(start_server: StartServer) -> None:
    url = await start_server(any_model=False, models=("a", "b"), owned_by="sdk-owner")
    async with async_client(url) as client:
        page = await client.models.list()
        model = await client.models.retrieve("a")
    assert [m.id for m in page.data] == ["a", "b"]
    assert all(m.owned_by == "sdk-owner" and m.object == "model" for m in page.data)
    assert model.id == "a"
    assert model.created == page.data[0].created


async def test_any_model_retrieves_any_name(start_server: StartServer) -> None:
    url = await start_server()
    async with async_client(url) as client:
        model = await client.models.retrieve("org/some-model")
    assert model.id == "org/some-model"


@pytest.fixture(scope="module")
def two_models() -> Iterator[str]:
    """One server (in its own thread) knowing only models "a" and "b", for the error cases."""
    with server_in_thread(any_model=False, models=("a", "b")) as url:
        yield url


Call = Callable[[openai.AsyncOpenAI], Awaitable[object]]

BAD_REQUESTS: list[tuple[str, Call, str | None]] = [
    ("n-0", lambda c: c.chat.completions.create(model="a", messages=HELLO, n=0), "n"),
    (
        "max-tokens-0",
        lambda c: c.chat.completions.create(model="a", messages=HELLO, max_tokens=0),
        "max_tokens",
    ),
    (
        "max-completion-tokens-0",
        lambda c: c.chat.completions.create(model="a", messages=HELLO, max_completion_tokens=0),
        "max_completion_tokens",
    ),
    (
        "bad-role",
        lambda c: c.post(
            "/chat/completions",
            body={"model": "a", "messages": [{"role": "robot", "content": "hi"}]},
            cast_to=object,
        ),
        "messages[0].role",
    ),
    (
        "missing-messages",
        lambda c: c.post("/chat/completions", body={"model": "a"}, cast_to=object),
        "messages",
    ),
    (
        "bad-content",
        lambda c: c.chat.completions.create(
            model="a", messages=HELLO, extra_body={"messages": [{"role": "user", "content": 1}]}
        ),
        "messages[0].content",
    ),
    (
        "bad-json",
        lambda c: c.post(
            "/chat/completions",
            cast_to=object,
            content=b"{not json",
            options={"headers": {"content-type": "application/json"}},
        ),
        None,
    ),
]


@pytest.mark.parametrize(("call", "param"), [pytest.param(*c[1:], id=c[0]) for c in BAD_REQUESTS])
async def test_bad_request(two_models: str, call: Call, param: str | None) -> None:
    async with async_client(two_models) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            await call(client)
    assert caught.value.status_code == 400
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param == param


NOT_FOUND: list[tuple[str, Call, str]] = [
    (
        "chat",
        lambda c: c.chat.completions.create(model="c", messages=HELLO),
        "model_not_found",
    ),
    (
        "chat-stream",
        lambda c: c.chat.completions.create(model="c", messages=HELLO, stream=True),
        "model_not_found",
    ),
    ("retrieve", lambda c: c.models.retrieve("c"), "model_not_found"),
    ("unknown-path", lambda c: c.get("/no/such/path", cast_to=object), "unknown_url"),
    (
        "unknown-path-post",
        lambda c: c.post("/embeddings/nowhere", body={}, cast_to=object),
        "unknown_url",
    ),
]


@pytest.mark.parametrize(("call", "code"), [pytest.param(*c[1:], id=c[0]) for c in NOT_FOUND])
async def test_not_found(two_models: str, call: Call, code: str) -> None:
    async with async_client(two_models) as client:
        with pytest.raises(openai.NotFoundError) as caught:
            await call(client)
    assert caught.value.status_code == 404
    assert caught.value.code == code
    assert caught.value.param == ("model" if code == "model_not_found" else None)


# --- x-request-id --------------------------------------------------------------------------


async def test_request_id(start_server: StartServer) -> None:
    url = await start_server()
    async with async_client(url) as client:
        raws = [
            await client.chat.completions.with_raw_response.create(model="m", messages=HELLO)
            for _ in range(2)
        ]
        traced = await client.chat.completions.with_raw_response.create(
            model="m", messages=HELLO, extra_headers={"x-request-id": "trace-async-1"}
        )
        streamed = await client.chat.completions.with_raw_response.create(
            model="m", messages=HELLO, stream=True, extra_headers={"x-request-id": "trace-async-2"}
        )
        chunks = await collect(streamed.parse())
        completion = raws[0].parse()
    ids = [r.headers["x-request-id"] for r in raws]
    assert all(i.startswith("req_") for i in ids)
    assert ids[0] != ids[1]
    assert raws[0].request_id == ids[0]
    assert completion._request_id == ids[0]
    assert traced.headers["x-request-id"] == "trace-async-1"
    assert streamed.headers["x-request-id"] == "trace-async-2"
    assert chunks, "the raw stream still parses"


async def test_error_has_request_id(start_server: StartServer) -> None:
    url = await start_server(any_model=False)
    async with async_client(url) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="trio-mock", messages=HELLO, n=0)
        with pytest.raises(openai.NotFoundError) as missing:
            await client.chat.completions.create(
                model="nope", messages=HELLO, extra_headers={"x-request-id": "trace-error"}
            )
    assert (bad.value.request_id or "").startswith("req_")
    assert missing.value.request_id == "trace-error"


async def test_models_have_request_id(start_server: StartServer) -> None:
    url = await start_server(any_model=False)
    async with async_client(url) as client:
        listed = await client.models.with_raw_response.list()
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("nope")
        with pytest.raises(openai.NotFoundError) as unknown:
            await client.get("/no/such/path", cast_to=object)
    assert listed.request_id is not None
    assert missing.value.request_id is not None
    assert unknown.value.request_id is not None
