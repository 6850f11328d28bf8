"""Embeddings over HTTP, and vLLM's extra routes (``/tokenize``, ``/detokenize``, ``/version``).

The pure embeddings module has its own unit tests (``tests/test_embeddings_unit.py``); this
file proves what a client sees over loopback, through the official ``openai`` SDK (sync and
async) and raw httpx:

- ``embeddings.create`` with a string, strings, a token array and token arrays: one unit
  vector per input, in order; token ids embed like the text they spell; usage counts the
  input tokens; 1536 dimensions by default and 3072 for ``text-embedding-3-large``;
  ``dimensions`` shortens a vector as OpenAI does (the normalised prefix of the full one);
  the same text gives the same vector from two server instances;
- ``encoding_format``: ``base64`` on the wire is little-endian float32, decoding to the very
  floats that ``float`` sends; the SDK asks for base64 when no format is given and decodes it;
- the float body matches the spec's ``CreateEmbeddingResponse`` (a base64 body cannot: the
  spec types ``embedding`` as an array);
- OpenAI's limits are 400s with ``param`` "input" that the SDK raises as ``BadRequestError``;
- ``embedding_ms`` delays the reply (a lower bound only; no upper-bound timing checks);
- ``/embeddings`` answers without the ``/v1`` prefix;
- ``POST /tokenize`` (``prompt`` or ``messages``) counts with cl100k, as usage does;
  ``POST /detokenize`` inverts it; bad ids and bad JSON are OpenAI-shaped 400s;
  ``GET /version`` and ``GET /`` describe the server.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import numpy.typing as npt
import openai
import pytest
import trio

import trio_mock
from conftest import async_client, check_error, server_in_thread, sync_client
from helpers import ENC, post, tokens
from openapi import validate

if TYPE_CHECKING:
    from collections.abc import Sequence

    from openai.types import CreateEmbeddingResponse

    from conftest import StartServer

SMALL = "text-embedding-3-small"
LARGE = "text-embedding-3-large"
TEXT = "The quick brown fox jumps over the lazy dog."
TEXTS = [TEXT, "Hello, world!", "naïve café ✓ 日本語"]
TIMEOUT_S = 10.0
Json = dict[str, Any]
Vectors = npt.NDArray[np.float32]


def matrix(response: CreateEmbeddingResponse) -> Vectors:
    """The response's vectors as float32 rows, checking they come in index order."""
    assert [item.index for item in response.data] == list(range(len(response.data)))
    assert all(item.object == "embedding" for item in response.data)
    return np.array([item.embedding for item in response.data], dtype=np.float32)


def decode_base64(value: object) -> Vectors:
    assert isinstance(value, str)
    return np.frombuffer(base64.b64decode(value, validate=True), dtype="<f4")


def assert_unit(vectors: Vectors) -> None:
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


# --- embeddings: sync SDK -------------------------------------------------------------------


def test_sync_embeddings_and_errors() -> None:
    too_long = " a" * 8193
    assert tokens(too_long) == 8193
    with server_in_thread() as url, sync_client(url) as client:
        floats = client.embeddings.create(model=SMALL, input=TEXT, encoding_format="float")
        default = client.embeddings.create(model=SMALL, input=TEXT)  # SDK: base64, decoded
        errors = {}
        bad_inputs: list[tuple[str, Any]] = [
            ("empty string", ""),
            ("empty list", []),
            ("empty item", [TEXT, ""]),
            ("2049 inputs", ["a"] * 2049),
            ("8193-token string", too_long),
            ("8193 token ids", [64] * 8193),
            ("one of many too long", [TEXT, too_long]),
        ]
        for name, bad in bad_inputs:
            with pytest.raises(openai.BadRequestError) as caught:
                client.embeddings.create(model=SMALL, input=bad)
            errors[name] = caught.value
    assert floats.object == "list"
    assert floats.model == SMALL
    vector = matrix(floats)
    assert vector.shape == (1, 1536)
    assert_unit(vector)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == tokens(TEXT)
    np.testing.assert_array_equal(matrix(default), vector)
    for name, error in errors.items():
        assert (error.status_code, error.param) == (400, "input"), name
    assert errors["2049 inputs"].code == "array_above_max_length"
    assert errors["8193-token string"].code == "context_length_exceeded"
    assert errors["8193 token ids"].code == "context_length_exceeded"


def test_sync_embeddings_without_v1_prefix() -> None:
    with server_in_thread() as url, sync_client(url, prefix="") as client:
        response = client.embeddings.create(model=SMALL, input=TEXTS, encoding_format="float")
        with pytest.raises(openai.BadRequestError) as caught:
            client.embeddings.create(model=SMALL, input=[])
    assert matrix(response).shape == (3, 1536)
    assert caught.value.param == "input"


# --- embeddings: async SDK ------------------------------------------------------------------


async def test_input_shapes(start_server: StartServer) -> None:
    url = await start_server()
    ids = [ENC.encode(t) for t in TEXTS]

    async def embed(value: Any) -> tuple[Vectors, int]:
        response = await client.embeddings.create(model=SMALL, input=value, encoding_format="float")
        assert response.usage.total_tokens == response.usage.prompt_tokens
        return matrix(response), response.usage.prompt_tokens

    async with async_client(url) as client:
        one, one_tokens = await embed(TEXT)
        many, many_tokens = await embed(TEXTS)
        by_id, by_id_tokens = await embed(ids[0])
        by_ids, by_ids_tokens = await embed(ids)
        alone = [(await embed(t))[0][0] for t in TEXTS]
        reversed_order, _ = await embed(TEXTS[::-1])
    assert one.shape == (1, 1536)
    assert many.shape == by_ids.shape == (3, 1536)
    assert_unit(many)
    np.testing.assert_array_equal(many, np.array(alone))
    np.testing.assert_array_equal(reversed_order, many[::-1])  # each row is its input's
    assert len({row.tobytes() for row in many}) == 3
    np.testing.assert_array_equal(by_id, one)  # ids embed like the text they spell
    np.testing.assert_array_equal(by_ids, many)
    assert one_tokens == by_id_tokens == tokens(TEXT)
    assert many_tokens == by_ids_tokens == sum(tokens(t) for t in TEXTS)


async def test_base64(start_server: StartServer) -> None:
    url = await start_server()
    async with async_client(url) as client:
        floats = await client.embeddings.create(model=SMALL, input=TEXTS, encoding_format="float")
        # An explicit format is left as sent: the SDK hands back the base64 strings.
        explicit = await client.embeddings.create(
            model=SMALL, input=TEXTS, encoding_format="base64"
        )
        decoded_by_sdk = await client.embeddings.create(model=SMALL, input=TEXTS)
    expected = matrix(floats)
    rows = np.array([decode_base64(item.embedding) for item in explicit.data])
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_array_equal(matrix(decoded_by_sdk), expected)

    wire = await post(
        url, "/v1/embeddings", {"model": SMALL, "input": TEXTS, "encoding_format": "base64"}
    )
    assert wire.status_code == 200, wire.text
    body = wire.json()
    assert [item["index"] for item in body["data"]] == [0, 1, 2]
    for item, row in zip(body["data"], expected, strict=True):
        assert isinstance(item["embedding"], str)
        assert len(base64.b64decode(item["embedding"])) == 4 * 1536
        np.testing.assert_array_equal(decode_base64(item["embedding"]), row)


async def test_dimensions(start_server: StartServer) -> None:
    url = await start_server()
    async with async_client(url) as client:

        async def embed(model: str, **kwargs: Any) -> Vectors:
            response = await client.embeddings.create(
                model=model, input=TEXT, encoding_format="float", **kwargs
            )
            row: Vectors = matrix(response)[0]
            return row

        small, ada, large = (
            await embed(SMALL),
            await embed("text-embedding-ada-002"),
            await embed(LARGE),
        )
        short = await embed(SMALL, dimensions=256)
        large_short = await embed(LARGE, dimensions=1536)
        whole = await embed(SMALL, dimensions=1536)
        with pytest.raises(openai.BadRequestError) as above:
            await embed(SMALL, dimensions=1537)
        with pytest.raises(openai.BadRequestError) as zero:
            await embed(SMALL, dimensions=0)
    assert (len(small), len(ada), len(large)) == (1536, 1536, 3072)
    assert (len(short), len(large_short)) == (256, 1536)
    assert_unit(np.array([short]))
    np.testing.assert_array_equal(whole, small)
    # Shortened as OpenAI shortens: the full vector's first 256 values, renormalised.
    prefix = small[:256].astype(np.float64)
    np.testing.assert_allclose(short, prefix / np.linalg.norm(prefix), atol=1e-6)
    assert (above.value.param, zero.value.param) == ("dimensions", "dimensions")


async def test_same_vector_from_two_servers(start_server: StartServer) -> None:
    first, second = await start_server(), await start_server()
    assert first != second
    results = []
    for url in (first, second):
        async with async_client(url) as client:
            response = await client.embeddings.create(
                model=SMALL, input=TEXTS, encoding_format="float"
            )
        results.append(matrix(response))
    np.testing.assert_array_equal(results[0], results[1])


async def test_other_model_other_vector(start_server: StartServer) -> None:
    url = await start_server()
    async with async_client(url) as client:
        a = await client.embeddings.create(model=SMALL, input=TEXT, encoding_format="float")
        b = await client.embeddings.create(
            model="text-embedding-ada-002", input=TEXT, encoding_format="float"
        )
    assert not np.allclose(matrix(a), matrix(b))


async def test_embedding_latency_is_a_lower_bound(start_server: StartServer) -> None:
    url = await start_server(embedding_ms=200)
    async with async_client(url) as client:
        started = trio.current_time()
        response = await client.embeddings.create(model=SMALL, input=TEXT)
        elapsed = trio.current_time() - started
    assert elapsed >= 0.2
    assert matrix(response).shape == (1, 1536)


async def test_async_errors(start_server: StartServer) -> None:
    url = await start_server(any_model=False, models=(SMALL,))
    async with async_client(url) as client:
        with pytest.raises(openai.BadRequestError) as empty:
            await client.embeddings.create(model=SMALL, input="")
        with pytest.raises(openai.BadRequestError) as too_many:
            await client.embeddings.create(model=SMALL, input=["x"] * 2049)
        with pytest.raises(openai.NotFoundError) as unknown:
            await client.embeddings.create(model=LARGE, input=TEXT)
    assert (empty.value.status_code, empty.value.param) == (400, "input")
    assert (too_many.value.status_code, too_many.value.param) == (400, "input")
    assert (unknown.value.status_code, unknown.value.param) == (404, "model")


# --- embeddings: the wire -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embeddings"])
async def test_float_body_matches_spec(start_server: StartServer, path: str) -> None:
    url = await start_server()
    for value in (TEXT, TEXTS, ENC.encode(TEXT), [ENC.encode(t) for t in TEXTS]):
        response = await post(url, path, {"model": SMALL, "input": value, "dimensions": 64})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        validate("CreateEmbeddingResponse", body)
        assert body["object"] == "list"
        assert all(len(item["embedding"]) == 64 for item in body["data"])


# (body overrides, param) for OpenAI-shaped 400s.
BAD_EMBEDDINGS: list[tuple[Json, str | None]] = [
    ({"input": None}, "input"),  # None drops the key
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": [[]]}, "input"),
    ({"input": 5}, "input"),
    ({"input": [1, "a"]}, "input"),
    ({"input": ["a"] * 2049}, "input"),
    ({"input": [1] * 8193}, "input"),
    ({"input": [10**9]}, "input"),
    ({"input": [[1], [10**9]]}, "input[1]"),
    ({"encoding_format": "hex"}, "encoding_format"),
    ({"dimensions": 0}, "dimensions"),
    ({"dimensions": "8"}, "dimensions"),
    ({"model": None}, "model"),
]


@pytest.mark.parametrize("path", ["/v1/embeddings", "/embeddings"])
async def test_bad_embedding_requests(start_server: StartServer, path: str) -> None:
    url = await start_server()
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        for overrides, param in BAD_EMBEDDINGS:
            merged = {"model": SMALL, "input": TEXT} | overrides
            body = {k: v for k, v in merged.items() if v is not None}
            check_error(await client.post(path, json=body), 400, param)
        bad_json = await client.post(
            path, content=b"{nope", headers={"content-type": "application/json"}
        )
        check_error(bad_json, 400, None)


# --- vLLM: /tokenize, /detokenize, /version ----------------------------------------------


async def test_tokenize_prompt(start_server: StartServer) -> None:
    url = await start_server()
    prompt = "Hello world, naïve café ✓"
    plain = await post(url, "/tokenize", {"prompt": prompt})
    with_strs = await post(
        url, "/tokenize", {"model": "m", "prompt": TEXT, "return_token_strs": True}
    )
    assert plain.status_code == with_strs.status_code == 200
    body = plain.json()
    assert body["tokens"] == ENC.encode(prompt)
    assert body["count"] == len(body["tokens"]) == tokens(prompt)
    assert isinstance(body["max_model_len"], int)
    assert body["max_model_len"] > 0
    assert body.get("token_strs") is None
    strs = with_strs.json()
    assert strs["tokens"] == ENC.encode(TEXT)
    assert strs["token_strs"] == [ENC.decode([t]) for t in strs["tokens"]]
    assert "".join(strs["token_strs"]) == TEXT


async def test_tokenize_counts_as_usage_does(start_server: StartServer) -> None:
    url = await start_server()
    counted = (await post(url, "/tokenize", {"prompt": TEXT})).json()["count"]
    async with async_client(url) as client:
        response = await client.embeddings.create(model=SMALL, input=TEXT)
        completion = await client.completions.create(model="m", prompt=TEXT, max_tokens=1)
    assert completion.usage is not None
    assert counted == response.usage.prompt_tokens == completion.usage.prompt_tokens


async def test_tokenize_messages(start_server: StartServer) -> None:
    url = await start_server()
    one = [{"role": "user", "content": "Hi"}]
    two = [{"role": "system", "content": "Be brief."}, *one]
    first = (await post(url, "/tokenize", {"messages": one})).json()
    both = (await post(url, "/tokenize", {"messages": two, "return_token_strs": True})).json()
    # Rendered as "role\ncontent\n" per message (_vllm.TokenizeRequest); no chat template.
    assert first["tokens"] == ENC.encode("user\nHi\n")
    assert first["count"] == len(first["tokens"])
    assert both["tokens"] == ENC.encode("system\nBe brief.\nuser\nHi\n")
    assert both["count"] > first["count"]
    assert "".join(both["token_strs"]) == "system\nBe brief.\nuser\nHi\n"


async def test_tokenize_needs_prompt_or_messages(start_server: StartServer) -> None:
    url = await start_server()
    messages = [{"role": "user", "content": "Hi"}]
    check_error(await post(url, "/tokenize", {}), 400, "prompt")
    check_error(await post(url, "/tokenize", {"model": "m"}), 400, "prompt")
    check_error(await post(url, "/tokenize", {"prompt": "a", "messages": messages}), 400, "prompt")
    check_error(await post(url, "/tokenize", {"prompt": 5}), 400, "prompt")
    check_error(
        await post(url, "/tokenize", {"messages": [{"content": "x"}]}), 400, "messages[0].role"
    )


@pytest.mark.parametrize(
    "text", [TEXT, "naïve café ✓ 日本語 🎉", "  spaces\n\nand\ttabs  ", "<|endoftext|>"]
)
async def test_detokenize_round_trip(start_server: StartServer, text: str) -> None:
    url = await start_server()
    ids = (await post(url, "/tokenize", {"prompt": text})).json()["tokens"]
    assert ids == ENC.encode(text, disallowed_special=())
    response = await post(url, "/detokenize", {"model": "m", "tokens": ids})
    assert response.status_code == 200, response.text
    assert response.json() == {"prompt": text}


async def test_detokenize_bad_ids(start_server: StartServer) -> None:
    url = await start_server()
    good = ENC.encode("ok")
    for tokens_, param in [
        ([*good, 10**9], f"tokens[{len(good)}]"),
        ([-1, *good], "tokens[0]"),
        ([*good, ENC.n_vocab], f"tokens[{len(good)}]"),
    ]:
        check_error(await post(url, "/detokenize", {"tokens": tokens_}), 400, param)
    check_error(await post(url, "/detokenize", {}), 400, "tokens")
    check_error(await post(url, "/detokenize", {"tokens": "12"}), 400, "tokens")
    check_error(await post(url, "/detokenize", {"tokens": [1, "2"]}), 400, "tokens[1]")


async def test_detokenize_names_an_id_in_a_vocabulary_gap(start_server: StartServer) -> None:
    # cl100k has no token 100256 (ordinary ranks end at 100255; specials start at 100257),
    # yet it is below n_vocab, so it passes the range check and fails in decode().
    gap = 100256
    with pytest.raises(KeyError):
        ENC.decode([gap])
    url = await start_server()
    response = await post(url, "/detokenize", {"tokens": [1, gap]})
    check_error(response, 400, "tokens[1]")


@pytest.mark.parametrize("path", ["/tokenize", "/detokenize"])
async def test_vllm_routes_bad_json(start_server: StartServer, path: str) -> None:
    url = await start_server()
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        for content in (b"{nope", b"", b"[1, 2]", b'"text"'):
            response = await client.post(
                path, content=content, headers={"content-type": "application/json"}
            )
            check_error(response, 400, None)


async def test_vllm_routes_check_the_model(start_server: StartServer) -> None:
    url = await start_server(any_model=False, models=("known",))
    ids = ENC.encode("hi")
    routes: list[tuple[str, Json]] = [
        ("/tokenize", {"prompt": "hi"}),
        ("/detokenize", {"tokens": ids}),
    ]
    for path, body in routes:
        assert (await post(url, path, body | {"model": "known"})).status_code == 200
        assert (await post(url, path, body)).status_code == 200, "model is optional"
        error = check_error(await post(url, path, body | {"model": "other"}), 404, "model")
        assert error["code"] == "model_not_found"


async def test_version_and_index(start_server: StartServer) -> None:
    url = await start_server()
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        version = await client.get("/version")
        index = await client.get("/")
    assert version.status_code == 200
    assert version.headers["content-type"] == "application/json"
    assert version.json() == {"version": trio_mock.__version__}
    endpoints: Sequence[str] = index.json()["endpoints"]
    for endpoint in (
        "POST /v1/completions",
        "POST /v1/responses",
        "POST /v1/embeddings",
        "POST /tokenize",
        "POST /detokenize",
        "GET /version",
    ):
        assert endpoint in endpoints
    assert index.json()["version"] == trio_mock.__version__
