"""Embeddings (sans-IO): request shapes, OpenAI's limits, deterministic unit vectors, the body."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from openapi import validate
from trio_mock import Settings
from trio_mock._openai._errors import OpenAIError
from trio_mock._serve._embeddings import (
    INVALID_INPUT,
    EmbeddingJob,
    EmbeddingModel,
    EmbeddingRequest,
    embed_texts,
    parse_embedding_request,
)
from trio_mock._sim._tokens import Tokenizer, load_tokenizer

CL100K = load_tokenizer("cl100k_base")
APPROX = load_tokenizer("approx")
SMALL = "text-embedding-3-small"
LARGE = "text-embedding-3-large"
Vectors = npt.NDArray[np.float32]


def prepare(body: dict[str, Any], tokenizer: Tokenizer = CL100K, **leaves: Any) -> EmbeddingJob:
    model = EmbeddingModel(Settings().replace(**leaves), tokenizer)
    return model.prepare(parse_embedding_request({"model": SMALL} | body))


def embed(body: dict[str, Any], tokenizer: Tokenizer = CL100K, **leaves: Any) -> dict[str, Any]:
    response: dict[str, Any] = orjson.loads(prepare(body, tokenizer, **leaves).body())
    return response


def vectors(response: dict[str, Any]) -> Vectors:
    """The rows of a response in either encoding, decoded as the openai SDK decodes them."""
    rows = []
    for item in response["data"]:
        value = item["embedding"]
        if isinstance(value, str):
            rows.append(np.frombuffer(base64.b64decode(value), dtype="<f4"))
        else:
            rows.append(np.array(value, dtype=np.float32))
    return np.array(rows)


def rejected(body: dict[str, Any], tokenizer: Tokenizer = CL100K, **leaves: Any) -> OpenAIError:
    with pytest.raises(OpenAIError) as info:
        prepare(body, tokenizer, **leaves)
    return info.value


def expect_400(
    error: OpenAIError, param: str, code: str | None, message: str | None = None
) -> None:
    assert (error.status, error.param, error.code) == (400, param, code), error
    assert error.to_body() == {
        "error": {
            "message": error.message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }
    if message is not None:
        assert error.message == message


# Shapes


@pytest.mark.parametrize(
    ("value", "count"),
    [
        ("hello world", 1),
        (["first", "second", "third"], 3),
        ([15339, 1917], 1),  # "hello world" in cl100k
        ([[15339], [1917, 0], [42]], 3),
    ],
)
def test_every_input_shape_gives_one_vector_per_input(value: Any, count: int) -> None:
    request = parse_embedding_request({"model": SMALL, "input": value})
    assert request.input == value
    response = embed({"input": value})
    assert response["object"] == "list"
    assert response["model"] == SMALL
    assert [item["index"] for item in response["data"]] == list(range(count))
    assert {item["object"] for item in response["data"]} == {"embedding"}
    assert vectors(response).shape == (count, 1536)


def test_user_and_unknown_fields_are_accepted_and_ignored() -> None:
    request = parse_embedding_request(
        {"model": "m", "input": "x", "user": "user-1234", "unknown": [1, 2]}
    )
    assert request == EmbeddingRequest(model="m", input="x", user="user-1234")
    assert (request.encoding_format, request.dimensions) == ("float", None)
    assert embed({"input": "x", "user": "a"}) == embed({"input": "x", "user": "b"})


@pytest.mark.parametrize(
    ("value", "got"),
    [
        (5, "an integer"),
        ([1, "a"], "an array"),
        ([[1], "a"], "an array"),
        (["a", ["b"]], "an array"),
        ([True, 2], "an array"),  # a boolean is not a token id
        ([[1.5]], "an array"),
        ({"text": "a"}, "an object"),
        (None, "null"),
    ],
)
def test_bad_input_shapes_name_input(value: Any, got: str) -> None:
    with pytest.raises(OpenAIError) as info:
        parse_embedding_request({"model": SMALL, "input": value})
    expect_400(
        info.value,
        "input",
        "invalid_type",
        "Invalid type for 'input': expected a string, an array of strings, or an array of "
        f"token ids, but got {got} instead.",
    )


@pytest.mark.parametrize("missing", ["model", "input"])
def test_model_and_input_are_required(missing: str) -> None:
    body = {"model": SMALL, "input": "x"}
    del body[missing]
    with pytest.raises(OpenAIError) as info:
        parse_embedding_request(body)
    expect_400(
        info.value,
        missing,
        "missing_required_parameter",
        f"Missing required parameter: '{missing}'.",
    )


@pytest.mark.parametrize("value", ["hex", "Float", 5, None])
def test_encoding_format_is_float_or_base64(value: Any) -> None:
    with pytest.raises(OpenAIError) as info:
        parse_embedding_request({"model": SMALL, "input": "x", "encoding_format": value})
    expect_400(
        info.value,
        "encoding_format",
        "invalid_value",
        f"Invalid value: {value!r}. Supported values are: 'float', 'base64'.",
    )


@pytest.mark.parametrize(
    ("value", "got"), [("3", "a string"), (True, "a boolean"), (2.5, "a number")]
)
def test_dimensions_must_be_an_integer(value: Any, got: str) -> None:
    with pytest.raises(OpenAIError) as info:
        parse_embedding_request({"model": SMALL, "input": "x", "dimensions": value})
    expect_400(
        info.value,
        "dimensions",
        "invalid_type",
        f"Invalid type for 'dimensions': expected an integer, but got {got} instead.",
    )


# Vectors


def test_the_same_text_gives_the_same_vector_in_every_model_instance() -> None:
    body = {"input": ["hello world", "café ☕"]}
    first = vectors(embed(body))
    assert np.array_equal(first, vectors(embed(body)))
    # The vector depends on (model, text) only, not on the tokenizer or on latency knobs.
    assert np.array_equal(first, vectors(embed(body, APPROX, embedding_ms=1)))


@pytest.mark.slow
def test_the_same_text_gives_the_same_vector_in_another_process() -> None:
    body = {"model": SMALL, "input": ["hello world", "café ☕"], "encoding_format": "base64"}
    here = hashlib.sha256(prepare(body, APPROX).body()).hexdigest()
    code = (
        "import hashlib, sys, orjson\n"
        "from trio_mock import Settings\n"
        "from trio_mock._serve._embeddings import EmbeddingModel, parse_embedding_request\n"
        "from trio_mock._sim._tokens import load_tokenizer\n"
        "model = EmbeddingModel(Settings(), load_tokenizer('approx'))\n"
        "job = model.prepare(parse_embedding_request(orjson.loads(sys.argv[1])))\n"
        "print(hashlib.sha256(job.body()).hexdigest())\n"
    )
    # Another hash seed: the vectors must not depend on Python's salted hash().
    env = os.environ | {"PYTHONHASHSEED": "12345"}
    there = subprocess.run(
        [sys.executable, "-c", code, orjson.dumps(body).decode()],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout.strip()
    assert there == here


def test_different_texts_and_models_give_different_vectors() -> None:
    texts = ["hello", "Hello", "hello ", "hello"]
    small = vectors(embed({"input": texts}))
    assert np.array_equal(small[0], small[3])  # duplicates within a request agree
    cosines = small[:3] @ small[:3].T
    assert np.all(np.abs(cosines[~np.eye(3, dtype=bool)]) < 0.2)  # near-orthogonal, not equal
    ada = vectors(embed({"model": "text-embedding-ada-002", "input": texts}))
    assert ada.shape == small.shape
    assert abs(float(ada[0] @ small[0])) < 0.2


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_vectors_have_unit_length(encoding_format: str) -> None:
    texts = ["a", "b" * 1000, "🎉", "hello world"]
    for model in (SMALL, LARGE):
        rows = vectors(embed({"model": model, "input": texts, "encoding_format": encoding_format}))
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


@hyp_settings(max_examples=30, deadline=None)
@given(text=st.text(max_size=50), dimensions=st.integers(1, 1536))
def test_any_text_at_any_length_is_a_unit_vector(text: str, dimensions: int) -> None:
    (row,) = embed_texts(SMALL, [text], dimensions)
    assert row.shape == (dimensions,)
    assert row.dtype == np.float32
    assert float(np.linalg.norm(row)) == pytest.approx(1.0, abs=1e-5)


def test_base64_is_little_endian_float32_of_the_float_vector() -> None:
    body = {"input": ["hello world", "second"], "dimensions": 100}
    floats = vectors(embed(body))
    encoded = embed(body | {"encoding_format": "base64"})
    for item, expected in zip(encoded["data"], floats, strict=True):
        raw = base64.b64decode(item["embedding"], validate=True)
        assert len(raw) == 4 * 100
        # JSON floats are float32's shortest repr, so both encodings agree exactly.
        assert np.array_equal(np.frombuffer(raw, dtype="<f4"), expected)
        assert np.array_equal(np.frombuffer(raw, dtype=">f4").byteswap(), expected)


@pytest.mark.parametrize(("model", "short"), [(SMALL, 256), (SMALL, 1), (LARGE, 1024)])
def test_dimensions_shorten_to_a_renormalised_prefix(model: str, short: int) -> None:
    texts = ["hello world", "another text"]
    full = vectors(embed({"model": model, "input": texts}))
    shortened = vectors(embed({"model": model, "input": texts, "dimensions": short}))
    assert shortened.shape == (2, short)
    prefix = full[:, :short]
    expected = prefix / np.linalg.norm(prefix, axis=1, keepdims=True)
    np.testing.assert_allclose(shortened, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("model", "size"),
    [
        (SMALL, 1536),
        ("text-embedding-ada-002", 1536),
        (LARGE, 3072),
        ("ft:text-embedding-3-large:org", 3072),
        ("my-local-model", 1536),
    ],
)
def test_default_dimensions_follow_the_model_name(model: str, size: int) -> None:
    assert prepare({"model": model, "input": "x"}).dimensions == size
    assert vectors(embed({"model": model, "input": "x"})).shape == (1, size)
    assert prepare({"model": model, "input": "x", "dimensions": size}).dimensions == size
    error = rejected({"model": model, "input": "x", "dimensions": size + 1})
    expect_400(
        error,
        "dimensions",
        "integer_above_max_value",
        f"Invalid 'dimensions': integer above maximum value. Expected a value <= {size}, "
        f"but got {size + 1} instead.",
    )


def test_the_dimensions_setting_overrides_every_model() -> None:
    for model in (SMALL, LARGE):
        job = prepare({"model": model, "input": "x"}, embedding_dimensions=256)
        assert job.dimensions == 256
        assert prepare({"model": model, "input": "x", "dimensions": 64}, embedding_dimensions=256)
    error = rejected({"input": "x", "dimensions": 257}, embedding_dimensions=256)
    expect_400(error, "dimensions", "integer_above_max_value")
    assert "Expected a value <= 256, but got 257 instead." in error.message


@pytest.mark.parametrize("value", [0, -3])
def test_dimensions_below_one_are_refused(value: int) -> None:
    expect_400(
        rejected({"input": "x", "dimensions": value}),
        "dimensions",
        "integer_below_min_value",
        f"Invalid 'dimensions': integer below minimum value. Expected a value >= 1, "
        f"but got {value} instead.",
    )


def test_token_arrays_embed_like_their_text() -> None:
    texts = ["The quick brown fox", "jumps over the lazy dog. 🎉"]
    ids = [CL100K.encode(t) for t in texts]
    from_text = embed({"input": texts})
    from_tokens = embed({"input": ids})
    assert np.array_equal(vectors(from_text), vectors(from_tokens))
    assert from_text["usage"] == from_tokens["usage"]
    assert np.array_equal(vectors(embed({"input": ids[0]})), vectors(embed({"input": texts[0]})))
    # With no vocabulary, the approx tokenizer reads ids as placeholders: still consistent.
    placeholder = APPROX.decode([1, 2, 3])
    assert np.array_equal(
        vectors(embed({"input": [1, 2, 3]}, APPROX)),
        vectors(embed({"input": placeholder}, APPROX)),
    )


# OpenAI's limits


@pytest.mark.parametrize(
    ("value", "param", "message"),
    [
        ([-1], "input", "token id -1 is out of range. Expected ids from 0 to 100276."),
        ([5, 100277], "input", "token id 100277 is out of range. Expected ids from 0 to 100276."),
        ([1, 100261], "input", "token id 100261 is not in the tokenizer's vocabulary."),
        ([[1], [2], [3], [4, 10**30]], "input[3]", "token id " + str(10**30) + " is out of range"),
        ([[1], [2, 100265]], "input[1]", "token id 100265 is not in the tokenizer's vocabulary."),
    ],
)
def test_bad_token_ids_name_the_input(value: Any, param: str, message: str) -> None:
    error = rejected({"input": value})
    expect_400(error, param, "invalid_value")
    assert error.message.startswith(f"Invalid '{param}': {message}")


def test_token_ids_are_checked_against_each_tokenizer() -> None:
    assert prepare({"input": [99_999]}, APPROX).prompt_tokens == 1
    error = rejected({"input": [100_000]}, APPROX)
    expect_400(error, "input", "invalid_value")
    assert "Expected ids from 0 to 99999." in error.message


@pytest.mark.parametrize("value", ["", [""], ["a", ""], [[]], [[1], []]])
def test_empty_inputs_are_refused(value: Any) -> None:
    expect_400(rejected({"input": value}), "input", None, INVALID_INPUT)
    assert INVALID_INPUT == (
        "'$.input' is invalid. Please check the API reference: "
        "https://platform.openai.com/docs/api-reference."
    )


def test_an_empty_array_is_refused() -> None:
    expect_400(
        rejected({"input": []}),
        "input",
        "empty_array",
        "Invalid 'input': empty array. Expected an array with minimum length 1, but got an "
        "empty array instead.",
    )


def test_at_most_2048_inputs() -> None:
    response = embed({"input": ["a"] * 2048, "dimensions": 2})
    assert [item["index"] for item in response["data"]] == list(range(2048))
    assert prepare({"input": [[1]] * 2048}).prompt_tokens == 2048
    for value in (["a"] * 2049, [[1]] * 2049):
        expect_400(
            rejected({"input": value}),
            "input",
            "array_above_max_length",
            "Invalid 'input': array too long. Expected an array with maximum length 2048, "
            "but got an array with length 2049 instead.",
        )
    # One token array is one input, however many ids it holds.
    assert prepare({"input": [1] * 2049}).prompt_tokens == 2049


def context_error(tokens: int) -> str:
    return (
        f"This model's maximum context length is 8192 tokens, however you requested {tokens} "
        f"tokens ({tokens} in your prompt; 0 for the completion). Please reduce your prompt; "
        "or completion length."
    )


def test_each_input_fits_8192_tokens() -> None:
    ids = list(range(8192))
    assert prepare({"input": ids}).prompt_tokens == 8192
    assert prepare({"input": [[1], ids]}).prompt_tokens == 8193
    for value in ([*ids, 1], [[1], [*ids, 1]]):
        expect_400(
            rejected({"input": value}), "input", "context_length_exceeded", context_error(8193)
        )
    text = "a" + " a" * 8192  # "a" then 8192 times " a": one token each in cl100k
    assert len(CL100K.encode(text)) == 8193
    expect_400(rejected({"input": text}), "input", "context_length_exceeded", context_error(8193))


def test_a_request_holds_at_most_300000_tokens() -> None:
    full = list(range(8192))
    assert prepare({"input": [full] * 36}).prompt_tokens == 36 * 8192  # 294,912
    expect_400(
        rejected({"input": [full] * 37}),
        "input",
        "max_tokens_per_request",
        "Requested 303104 tokens, max 300000 tokens per request",
    )


def test_unknown_models_are_404_when_only_listed_models_are_served() -> None:
    leaves: dict[str, Any] = {"any_model": False, "models": f"{SMALL},{LARGE}"}
    assert prepare({"model": LARGE, "input": "x"}, **leaves).dimensions == 3072
    error = rejected({"model": "text-embedding-4", "input": "x"}, **leaves)
    assert (error.status, error.param, error.code) == (404, "model", "model_not_found")


# Usage, latency, body


def test_usage_counts_the_tokens_of_every_input() -> None:
    texts = ["hello world", "café ☕", "The quick brown fox jumps over the lazy dog."]
    expected = sum(len(CL100K.encode(t)) for t in texts)
    job = prepare({"input": texts})
    assert job.prompt_tokens == expected
    assert job.values == 3 * 1536
    usage = orjson.loads(job.body())["usage"]
    assert usage == {"prompt_tokens": expected, "total_tokens": expected}
    assert prepare({"input": [[1, 2, 3], [4], [5, 6]]}).prompt_tokens == 6
    assert prepare({"input": "x" * 40}, APPROX).prompt_tokens == 10


def test_latency_is_a_base_plus_a_cost_per_token() -> None:
    job = prepare({"input": [[1] * 100, [2] * 50]}, embedding_ms=20, embedding_ms_per_token=0.5)
    assert job.delay_s == pytest.approx((20 + 0.5 * 150) / 1000)
    assert prepare({"input": "x"}, embedding_ms=0, embedding_ms_per_token=0).delay_s == 0


def test_input_size_counts_characters_and_ids() -> None:
    sizes = [
        parse_embedding_request({"model": SMALL, "input": value}).input_size
        for value in ("abcd", ["ab", "cde"], [1, 2, 3], [[1, 2], [3]])
    ]
    assert sizes == [4, 5, 3, 3]


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_body_matches_the_openai_spec(encoding_format: str) -> None:
    body = {"input": ["hello", "world"], "dimensions": 8, "encoding_format": encoding_format}
    response = embed(body)
    if encoding_format == "base64":
        # The spec types `embedding` as an array only; the API sends base64 as a string.
        assert all(isinstance(item["embedding"], str) for item in response["data"])
        for item, row in zip(response["data"], vectors(response), strict=True):
            item["embedding"] = row.tolist()
    validate("CreateEmbeddingResponse", response)
    assert list(response) == ["object", "data", "model", "usage"]  # OpenAI's key order
