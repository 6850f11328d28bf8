"""``POST /v1/completions`` (and ``/completions``) over loopback: the SDK's view and the wire's.

Proves, through the official ``openai`` SDK (sync against a server in a thread, async against
one in the test's nursery) and through raw httpx:

- every prompt shape (a string, strings, a token array, token arrays) gives one choice per
  prompt and ``n``, numbered ``prompt * n + j``, each index exactly once; usage counts the
  prompts' tokens (token arrays as given) and the replies' tokens (which re-tokenize exactly);
- ``max_tokens`` defaults to 16; ``echo`` puts the prompt first; ``stop`` ends the text before
  the stop string; ``seed`` reproduces the text;
- ``logprobs`` 0..5 use the legacy shape (``tokens``/``token_logprobs``/``top_logprobs``/
  ``text_offset``), consistent with the text, per chunk when streamed, with no logprob for
  the first echoed token;
- ``stream_options.include_usage`` adds one usage chunk before ``[DONE]``;
- every body and chunk matches the spec's ``CreateCompletionResponse``. The spec says streamed
  chunks share that shape, and its ``choices`` has no ``minItems``, so the usage-only chunk
  (``choices: []``) validates as it is. Three nulls the API sends are not ``nullable`` in the
  spec: a streamed choice's ``finish_reason`` before its last chunk, ``usage`` on chunks of
  an ``include_usage`` stream, and the first echoed token's ``token_logprobs``/``top_logprobs``
  entry. ``spec_view`` checks each is null exactly where expected, then fills it in, so all
  the rest is validated;
- bad requests are OpenAI-shaped 400s naming the ``param`` (404 for an unknown model), which
  the SDK raises as ``BadRequestError`` / ``NotFoundError``.
"""

from __future__ import annotations

import copy
import json
from itertools import accumulate
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from conftest import async_client, check_error, collect, server_in_thread, sync_client
from helpers import ENC, post, tokens
from openapi import validate

if TYPE_CHECKING:
    from openai.types import Completion

    from conftest import StartServer

COMPLETIONS = "/v1/completions"
PATHS = ["/v1/completions", "/completions"]
PROMPT = "Say hello."
# Knobs for replies of exactly 5 tokens.
FIVE: dict[str, Any] = {"output_tokens_mean": 5, "output_tokens_stddev": 0}
FOX = "The quick brown fox jumps over the lazy dog."
FIXED: dict[str, Any] = {"output_mode": "fixed", "fixed_text": FOX}
TIMEOUT_S = 10.0
LOGPROBS_KEYS = {"tokens", "token_logprobs", "top_logprobs", "text_offset"}

Json = dict[str, Any]

# See tests/test_sdk.py: openai's AsyncStream leaves its inner async generators open at
# [DONE]; trio's finalizer then warns about each one.

# The four prompt shapes: (prompt, its texts, its token count). The token arrays include a
# non-canonical split ("hel" + "lo" would re-encode as one token): ids count as given.
HELLO_SPLIT = ENC.encode("hel") + ENC.encode("lo")
SHAPES: dict[str, tuple[Any, list[str], int]] = {
    "string": (PROMPT, [PROMPT], len(ENC.encode(PROMPT))),
    "strings": (
        [PROMPT, "Count to three.", "Bye"],
        [PROMPT, "Count to three.", "Bye"],
        sum(len(ENC.encode(p)) for p in (PROMPT, "Count to three.", "Bye")),
    ),
    "tokens": (ENC.encode(PROMPT), [PROMPT], len(ENC.encode(PROMPT))),
    "token arrays": (
        [ENC.encode(PROMPT), HELLO_SPLIT],
        [PROMPT, "hello"],
        len(ENC.encode(PROMPT)) + 2,
    ),
}


def texts_by_index(chunks: list[Completion]) -> dict[int, str]:
    out: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            out[choice.index] = out.get(choice.index, "") + choice.text
    return out


def finishes_by_index(chunks: list[Completion]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            out.setdefault(choice.index, [])
            if choice.finish_reason is not None:
                out[choice.index].append(choice.finish_reason)
    return out


# --- the wire: raw bodies, SSE, the spec ----------------------------------------------


def spec_view(body: Json, *, streamed: bool) -> Json:
    """``body`` with the nulls the spec does not allow checked and filled in (module doc)."""
    view = copy.deepcopy(body)
    if streamed and "usage" in view and view["usage"] is None:
        assert view["choices"], "the usage chunk carries the usage"
        del view["usage"]
    for choice in view["choices"]:
        if choice["finish_reason"] is None:
            assert streamed, "a whole body always has a finish_reason"
            choice["finish_reason"] = "stop"
        logprobs = choice["logprobs"]
        if logprobs is not None and logprobs["token_logprobs"][:1] == [None]:
            assert logprobs["top_logprobs"][0] is None, "no alternatives without a logprob"
            logprobs["token_logprobs"][0] = 0.0
            logprobs["top_logprobs"][0] = {}
    return view


def sse_data(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, checking that nothing else is in it."""
    text = raw.decode("utf-8")
    assert text.endswith("\n\n"), text[-200:]
    payloads = []
    for event in text.removesuffix("\n\n").split("\n\n"):
        (line,) = event.split("\n")
        assert line.startswith("data: "), line
        payloads.append(line.removeprefix("data: "))
    return payloads


async def create(url: str, body: Json, path: str = COMPLETIONS) -> Json:
    """POST a non-streamed request; its body, checked against the spec."""
    response = await post(url, path, body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    completion: Json = response.json()
    validate("CreateCompletionResponse", spec_view(completion, streamed=False))
    return completion


async def create_stream(url: str, body: Json, path: str = COMPLETIONS) -> list[Json]:
    """POST a streamed request; its chunks, each checked against the spec."""
    response = await post(url, path, body | {"stream": True})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    *payloads, done = sse_data(response.content)
    assert done == "[DONE]"
    chunks: list[Json] = [json.loads(p) for p in payloads]
    for chunk in chunks:
        assert chunk["object"] == "text_completion"
        validate("CreateCompletionResponse", spec_view(chunk, streamed=True))
    assert len({c["id"] for c in chunks}) == 1
    return chunks


def check_logprobs(
    logprobs: Json, text: str, top: int, *, start: int = 0, echoed: bool = False
) -> None:
    """The legacy logprobs of ``text`` (which begins at ``start``): one entry per token.

    Args:
      echoed: the first token is the echoed prompt's first, which has no logprob.
    """
    assert set(logprobs) == LOGPROBS_KEYS
    pieces, values = logprobs["tokens"], logprobs["token_logprobs"]
    tops, offsets = logprobs["top_logprobs"], logprobs["text_offset"]
    assert len(pieces) == len(values) == len(tops) == len(offsets) > 0
    assert "".join(pieces) == text
    assert offsets == list(accumulate([start, *(len(p) for p in pieces[:-1])]))
    for i, (piece, value, row) in enumerate(zip(pieces, values, tops, strict=True)):
        if echoed and i == 0:
            assert (value, row) == (None, None)
            continue
        assert isinstance(value, float)
        assert value <= 0
        if top == 0:  # OpenAI: "up to logprobs + 1" entries; the chosen one at most
            assert row in ({}, {piece: value})
            continue
        assert len(row) == top, row
        assert row[piece] == value, "the chosen token is among the top ones"
        assert all(v <= 0 for v in row.values())


# --- sync SDK -----------------------------------------------------------------------------


def test_sync_create_and_stream() -> None:
    with server_in_thread(**FIVE) as url, sync_client(url) as client:
        completion = client.completions.create(model="sdk-model", prompt=PROMPT)
        stream = client.completions.create(
            model="sdk-model",
            prompt=PROMPT,
            stream=True,
            stream_options={"include_usage": True},
        )
        with stream:
            chunks = list(stream)
    assert completion.id.startswith("cmpl-")
    assert completion.object == "text_completion"
    assert completion.model == "sdk-model"
    assert completion.system_fingerprint == "fp_trio_mock"
    (choice,) = completion.choices
    assert (choice.index, choice.finish_reason, choice.logprobs) == (0, "stop", None)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == tokens(PROMPT)
    assert completion.usage.completion_tokens == 5 == tokens(choice.text)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 5

    *content, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (tokens(PROMPT), 5)
    assert all(c.usage is None for c in content)
    assert all(len(c.choices) == 1 for c in content)
    assert len(content) == 5, "one chunk per token"
    assert tokens(texts_by_index(content)[0]) == 5
    assert finishes_by_index(content) == {0: ["stop"]}
    assert content[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1


def test_sync_without_v1_prefix() -> None:
    with server_in_thread(**FIVE) as url, sync_client(url, prefix="") as client:
        completion = client.completions.create(model="m", prompt=[PROMPT, "Bye"], n=2)
        with pytest.raises(openai.BadRequestError) as caught:
            client.completions.create(model="m", prompt=PROMPT, n=0)
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
    assert caught.value.param == "n"


def test_sync_errors_raise_sdk_classes() -> None:
    with (
        server_in_thread(any_model=False, models=("a",)) as url,
        sync_client(url) as client,
    ):
        with pytest.raises(openai.BadRequestError) as bad:
            client.completions.create(model="a", prompt=PROMPT, logprobs=6)
        with pytest.raises(openai.BadRequestError) as bad_tokens:
            client.completions.create(model="a", prompt=[[1], [10**9]])
        with pytest.raises(openai.NotFoundError) as missing:
            client.completions.create(model="b", prompt=PROMPT)
    assert (bad.value.status_code, bad.value.param) == (400, "logprobs")
    assert bad.value.code == "integer_above_max_value"
    assert (bad_tokens.value.status_code, bad_tokens.value.param) == (400, "prompt[1]")
    assert (missing.value.status_code, missing.value.param) == (404, "model")
    assert missing.value.code == "model_not_found"


# --- async SDK: prompts, n, usage ---------------------------------------------------------


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_prompt_shapes_with_n(start_server: StartServer, shape: str) -> None:
    prompt, texts, prompt_tokens = SHAPES[shape]
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        completion = await client.completions.create(model="m", prompt=prompt, n=2, echo=True)
    indexes = [c.index for c in completion.choices]
    assert sorted(indexes) == list(range(2 * len(texts))), "one choice per prompt and n"
    for choice in completion.choices:
        echoed = texts[choice.index // 2]  # index = prompt * n + j
        assert choice.text.startswith(echoed)
        assert tokens(choice.text.removeprefix(echoed)) == 5
        assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == prompt_tokens
    assert completion.usage.completion_tokens == 5 * len(indexes)
    assert completion.usage.total_tokens == prompt_tokens + 5 * len(indexes)


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_prompt_shapes_with_n_streamed(start_server: StartServer, shape: str) -> None:
    prompt, texts, prompt_tokens = SHAPES[shape]
    url = await start_server(**FIVE)
    async with async_client(url) as client:
        stream = await client.completions.create(
            model="m",
            prompt=prompt,
            n=3,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = await collect(stream)
    *content, last = chunks
    count = 3 * len(texts)
    assert all(len(c.choices) == 1 for c in content)
    assert finishes_by_index(content) == {i: ["stop"] for i in range(count)}
    replies = texts_by_index(content)
    assert sorted(replies) == list(range(count))
    assert all(tokens(text) == 5 for text in replies.values())
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == prompt_tokens
    assert last.usage.completion_tokens == 5 * count


async def test_usage_counts_retokenize(start_server: StartServer) -> None:
    # Lengths vary around 40 tokens: each reply re-tokenizes to exactly its count.
    url = await start_server(output_tokens_mean=40, output_tokens_stddev=15)
    async with async_client(url) as client:
        completion = await client.completions.create(
            model="m", prompt=["one", "two", "three"], n=4, max_tokens=100
        )
    counts = [tokens(c.text) for c in completion.choices]
    assert len(set(counts)) > 1, "lengths vary"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == sum(counts)
    assert completion.usage.prompt_tokens == 3


# --- async SDK: length, echo, stop, seed ----------------------------------------------------


async def test_max_tokens_default_16(start_server: StartServer) -> None:
    url = await start_server(output_tokens_mean=100, output_tokens_stddev=0)
    async with async_client(url) as client:
        default = await client.completions.create(model="m", prompt=PROMPT)
        stream = await client.completions.create(model="m", prompt=PROMPT, stream=True)
        streamed = await collect(stream)
        capped = await client.completions.create(model="m", prompt=PROMPT, max_tokens=7)
        roomy = await client.completions.create(model="m", prompt=PROMPT, max_tokens=200)
    assert default.usage is not None
    assert (default.usage.completion_tokens, default.choices[0].finish_reason) == (16, "length")
    assert tokens(default.choices[0].text) == 16
    assert len(streamed) == 16
    assert finishes_by_index(streamed) == {0: ["length"]}
    assert capped.usage is not None
    assert (capped.usage.completion_tokens, capped.choices[0].finish_reason) == (7, "length")
    assert roomy.usage is not None
    assert (roomy.usage.completion_tokens, roomy.choices[0].finish_reason) == (100, "stop")


async def test_echo(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    tricky = 'He said "hi"\n\tthen left: naïve café ✓ \\ done'
    async with async_client(url) as client:
        plain = await client.completions.create(model="m", prompt=tricky, echo=True)
        stream = await client.completions.create(
            model="m", prompt=tricky, echo=True, n=2, stream=True
        )
        chunks = await collect(stream)
        token_prompt = await client.completions.create(
            model="m", prompt=HELLO_SPLIT, echo=True, max_tokens=3
        )
    text = plain.choices[0].text
    assert text.startswith(tricky)
    assert tokens(text.removeprefix(tricky)) == 5
    assert plain.usage is not None
    assert plain.usage.completion_tokens == 5, "the echoed prompt is not completion"
    assert plain.usage.prompt_tokens == tokens(tricky)
    firsts: dict[int, str] = {}
    for chunk in chunks:
        firsts.setdefault(chunk.choices[0].index, chunk.choices[0].text)
    assert sorted(firsts) == [0, 1]
    assert all(first.startswith(tricky) for first in firsts.values()), "first chunk echoes"
    assert all(text.startswith(tricky) for text in texts_by_index(chunks).values())
    assert token_prompt.choices[0].text.startswith("hello")
    assert token_prompt.usage is not None
    assert token_prompt.usage.prompt_tokens == 2


async def test_echo_output_mode_repeats_the_prompt(start_server: StartServer) -> None:
    url = await start_server(output_mode="echo")
    async with async_client(url) as client:
        completion = await client.completions.create(model="m", prompt=[" one two three", " four"])
    assert [c.text for c in completion.choices] == [" one two three", " four"]


async def test_stop(start_server: StartServer) -> None:
    url = await start_server(**FIXED)
    async with async_client(url) as client:

        async def reply(**kwargs: Any) -> tuple[str, str]:
            completion = await client.completions.create(model="m", prompt=PROMPT, **kwargs)
            (choice,) = completion.choices
            return choice.text, choice.finish_reason

        assert await reply() == (FOX, "stop")
        assert await reply(stop="fox") == ("The quick brown ", "stop")
        assert await reply(stop=["cat", "lazy", "jumps"]) == ("The quick brown fox ", "stop")
        assert await reply(stop="brown fox") == ("The quick ", "stop"), "across tokens"
        assert await reply(stop="own") == ("The quick br", "stop"), "inside a token"
        assert await reply(stop="cat") == (FOX, "stop")
        assert await reply(stop="lazy", max_tokens=3) == ("The quick brown", "length")
        stream = await client.completions.create(
            model="m", prompt=PROMPT, stop=["fox"], stream=True
        )
        chunks = await collect(stream)
    assert texts_by_index(chunks) == {0: "The quick brown "}
    assert finishes_by_index(chunks) == {0: ["stop"]}


async def test_seed_reproduces_text(start_server: StartServer) -> None:
    url = await start_server(output_tokens_mean=20, output_tokens_stddev=5)
    prompts = ["first", "second"]

    async def texts(seed: int | None) -> list[str]:
        completion = await client.completions.create(model="m", prompt=prompts, n=2, seed=seed)
        return [c.text for c in sorted(completion.choices, key=lambda c: c.index)]

    async with async_client(url) as client:
        first, again, other = await texts(42), await texts(42), await texts(43)
        stream = await client.completions.create(
            model="m", prompt=prompts, n=2, seed=42, stream=True
        )
        streamed = texts_by_index(await collect(stream))
        unseeded = [await texts(None) for _ in range(2)]
    assert first == again == [streamed[i] for i in range(4)]
    assert len(set(first)) == 4, "choices and prompts differ from each other"
    assert other != first
    assert unseeded[0] != unseeded[1]


# --- the wire: logprobs ---------------------------------------------------------------------


@pytest.mark.parametrize("top", [0, 1, 2, 5])
async def test_logprobs(start_server: StartServer, top: int) -> None:
    url = await start_server(**FIVE)
    body = await create(url, {"model": "m", "prompt": [PROMPT, "x"], "n": 2, "logprobs": top})
    assert len(body["choices"]) == 4
    for choice in body["choices"]:
        assert len(choice["logprobs"]["tokens"]) == 5
        check_logprobs(choice["logprobs"], choice["text"], top)


async def test_logprobs_with_stop_cut_inside_a_token(start_server: StartServer) -> None:
    url = await start_server(**FIXED)
    body = await create(url, {"model": "m", "prompt": PROMPT, "stop": "own", "logprobs": 3})
    (choice,) = body["choices"]
    assert choice["text"] == "The quick br"
    check_logprobs(choice["logprobs"], choice["text"], 3)


async def test_echo_logprobs(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    prompts = ["Hello there, friend.", "Bye"]
    body = await create(url, {"model": "m", "prompt": prompts, "n": 2, "echo": True, "logprobs": 2})
    for choice in body["choices"]:
        prompt = prompts[choice["index"] // 2]
        logprobs = choice["logprobs"]
        assert choice["text"].startswith(prompt)
        check_logprobs(logprobs, choice["text"], 2, echoed=True)
        prompt_count = tokens(prompt)
        assert logprobs["tokens"][:prompt_count] == [ENC.decode([t]) for t in ENC.encode(prompt)]
        assert len(logprobs["tokens"]) == prompt_count + 5
    assert body["usage"]["prompt_tokens"] == sum(tokens(p) for p in prompts)


async def test_echo_logprobs_keep_the_prompt_token_ids(start_server: StartServer) -> None:
    url = await start_server(**FIVE)
    body = await create(
        url, {"model": "m", "prompt": HELLO_SPLIT, "echo": True, "logprobs": 1, "max_tokens": 2}
    )
    (choice,) = body["choices"]
    assert body["usage"]["prompt_tokens"] == 2
    # One entry per prompt token, as given ("hel", "lo"), then one per reply token.
    assert choice["logprobs"]["tokens"][:2] == ["hel", "lo"]
    assert len(choice["logprobs"]["tokens"]) == 2 + 2


@pytest.mark.parametrize("echo", [False, True])
async def test_logprobs_streamed_cover_each_chunk(start_server: StartServer, echo: bool) -> None:
    url = await start_server(output_tokens_mean=12, output_tokens_stddev=0, tokens_per_event_max=3)
    chunks = await create_stream(
        url, {"model": "m", "prompt": [PROMPT, "x"], "n": 2, "echo": echo, "logprobs": 2}
    )
    seen: dict[int, str] = {}
    for chunk in chunks:
        (choice,) = chunk["choices"]
        index, text = choice["index"], choice["text"]
        before = seen.get(index)
        echoed = echo and before is None
        if echoed:
            assert text.startswith([PROMPT, "x"][index // 2])
        check_logprobs(choice["logprobs"], text, 2, start=len(before or ""), echoed=echoed)
        seen[index] = (before or "") + text
    assert sorted(seen) == [0, 1, 2, 3]
    assert any(len(c["choices"][0]["logprobs"]["tokens"]) > 1 for c in chunks), "multi-token"


# --- the wire: stream_options, paths, schema --------------------------------------------


@pytest.mark.parametrize("path", PATHS)
async def test_include_usage_chunk(start_server: StartServer, path: str) -> None:
    url = await start_server(**FIVE)
    body = {"model": "m", "prompt": ["a", "b"], "n": 2}
    with_usage = await create_stream(url, body | {"stream_options": {"include_usage": True}}, path)
    without = await create_stream(url, body, path)
    turned_off = await create_stream(url, body | {"stream_options": {"include_usage": False}}, path)
    *content, last = with_usage
    assert last["choices"] == []
    assert last["usage"]["prompt_tokens"] == 2
    assert last["usage"]["completion_tokens"] == 4 * 5
    assert last["usage"]["total_tokens"] == 22
    assert all("usage" in c and c["usage"] is None for c in content)
    assert all(c["choices"] for c in content)
    for chunks in (without, turned_off):
        assert all(c["choices"] for c in chunks), "no usage chunk"
        assert all(c.get("usage") is None for c in chunks)
        assert len(chunks) == 4 * 5


async def test_usage_chunk_matches_spec_as_sent(start_server: StartServer) -> None:
    # The spec's choices array has no minItems: the usage-only chunk needs no help.
    url = await start_server(**FIVE)
    chunks = await create_stream(
        url, {"model": "m", "prompt": "a", "stream_options": {"include_usage": True}}
    )
    validate("CreateCompletionResponse", chunks[-1])
    assert chunks[-1]["choices"] == []


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"prompt": ["a", "b"], "n": 3},
        {"logprobs": 5},
        {"echo": True},
        {"echo": True, "logprobs": 1},
        {"stop": "the", "max_tokens": 40},
    ],
)
async def test_bodies_and_chunks_match_spec(start_server: StartServer, extra: Json) -> None:
    # create() and create_stream() validate every body and chunk; here the whole matrix.
    url = await start_server(output_tokens_mean=8, output_tokens_stddev=3, tokens_per_event_max=2)
    body = {"model": "spec-model", "prompt": PROMPT} | extra
    completion = await create(url, body)
    assert completion["choices"]
    for include_usage in (False, True):
        options = {"stream_options": {"include_usage": True}} if include_usage else {}
        chunks = await create_stream(url, body | options)
        assert chunks


@pytest.mark.parametrize("path", PATHS)
async def test_stream_options_need_stream(start_server: StartServer, path: str) -> None:
    url = await start_server()
    body = {"model": "m", "prompt": "a", "stream_options": {"include_usage": True}}
    check_error(await post(url, path, body), 400, "stream_options")
    check_error(await post(url, path, body | {"stream": False}), 400, "stream_options")


# --- the wire: errors ---------------------------------------------------------------------

# (body overrides, param): each must be an OpenAI-shaped 400 naming param.
BAD: list[tuple[Json, str]] = [
    ({"prompt": None}, "prompt"),  # None drops the key: missing prompt
    ({"prompt": 5}, "prompt"),
    ({"prompt": [1, "a"]}, "prompt"),
    ({"prompt": [[1], "a"]}, "prompt"),
    ({"prompt": []}, "prompt"),
    ({"prompt": [[1], []]}, "prompt"),
    ({"prompt": [True]}, "prompt"),
    ({"prompt": [10**9]}, "prompt"),
    ({"prompt": [-1]}, "prompt"),
    ({"prompt": [[1], [10**9]]}, "prompt[1]"),
    ({"n": 0}, "n"),
    ({"n": 129}, "n"),
    ({"n": "2"}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"logprobs": 6}, "logprobs"),
    ({"logprobs": -1}, "logprobs"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": [1]}, "stop"),
    ({"echo": "yes"}, "echo"),
    ({"model": None}, "model"),
]


@pytest.mark.parametrize("path", PATHS)
async def test_bad_requests(start_server: StartServer, path: str) -> None:
    url = await start_server()
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        for overrides, param in BAD:
            merged = {"model": "m", "prompt": "a"} | overrides
            body = {k: v for k, v in merged.items() if v is not None}
            for stream in (False, True):
                response = await client.post(path, json=body | {"stream": stream})
                check_error(response, 400, param)
        bad_json = await client.post(
            path, content=b'{"model": "m",', headers={"content-type": "application/json"}
        )
        check_error(bad_json, 400, None)


async def test_unknown_model_is_404(start_server: StartServer) -> None:
    url = await start_server(any_model=False, models=("known",))
    for stream in (False, True):
        response = await post(url, COMPLETIONS, {"model": "other", "prompt": "a", "stream": stream})
        error = check_error(response, 404, "model")
        assert error["code"] == "model_not_found"
    assert (await post(url, COMPLETIONS, {"model": "known", "prompt": "a"})).status_code == 200


async def test_async_sdk_raises_bad_request(start_server: StartServer) -> None:
    url = await start_server()
    async with async_client(url) as client:
        cases: list[tuple[Json, str]] = [
            ({"n": 129}, "n"),
            ({"max_tokens": 0}, "max_tokens"),
            ({"logprobs": -1}, "logprobs"),
            ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ]
        for kwargs, param in cases:
            with pytest.raises(openai.BadRequestError) as caught:
                await client.completions.create(model="m", prompt=PROMPT, **kwargs)
            assert (caught.value.status_code, caught.value.param) == (400, param)
        with pytest.raises(openai.BadRequestError) as empty:
            await client.completions.create(model="m", prompt=[])
    assert empty.value.param == "prompt"
    assert empty.value.code == "empty_array"
