"""Tests of the OpenAPI test helper itself (``tests/openapi.py``), not of the mock."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from openapi import VENDORED_SPEC, spec_available, validate

# No skip here: the vendored subset is part of the repository, so these always run.


def refs(node: object) -> set[str]:
    """The ``$ref`` values anywhere in ``node``."""
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        return found.union(*map(refs, node.values()))
    if isinstance(node, list):
        return set().union(*map(refs, node))
    return set()


def test_vendored_subset_is_whole() -> None:
    """Every root and every ``$ref`` target of the vendored subset is in it."""
    assert spec_available()
    document = json.loads(VENDORED_SPEC.read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    targets = {f"#/components/schemas/{name}" for name in schemas}
    assert set(document["x-vendored"]["roots"]) <= set(schemas)
    assert set() < refs(schemas) <= targets


def chat_completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1741570283,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        "service_tier": "default",
        "system_fingerprint": "fp_44709d6fcb",
    }


def chat_chunk(**choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1741570283,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": None, **choice}],
    }


def test_chat_completion_passes() -> None:
    validate("CreateChatCompletionResponse", chat_completion())


@pytest.mark.parametrize(
    "chunk",
    [
        chat_chunk(delta={"role": "assistant", "content": ""}),
        chat_chunk(delta={"content": "Hel"}),
        chat_chunk(finish_reason="length"),
        {**chat_chunk(), "usage": None},  # include_usage: null until the last chunk
        {
            **chat_chunk(),
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        },
    ],
)
def test_chat_chunks_pass(chunk: dict[str, Any]) -> None:
    # finish_reason, logprobs and usage are ``nullable: true`` (OpenAPI 3.0) in the spec.
    validate("CreateChatCompletionStreamResponse", chunk)


def test_models_and_error_pass() -> None:
    model = {"id": "gpt-4o-mini", "object": "model", "created": 1686935002, "owned_by": "openai"}
    validate("Model", model)
    validate("ListModelsResponse", {"object": "list", "data": [model]})
    error = {"message": "bad", "type": "invalid_request_error", "param": "model", "code": None}
    validate("ErrorResponse", {"error": error})


def test_missing_choices_is_reported() -> None:
    body = chat_completion()
    del body["choices"]
    with pytest.raises(AssertionError, match=re.escape("$: 'choices' is a required property")):
        validate("CreateChatCompletionResponse", body)


def test_every_error_is_listed_with_its_path() -> None:
    body = copy.deepcopy(chat_completion())
    body["object"] = "chat.completion.chunk"
    del body["choices"][0]["message"]["refusal"]
    with pytest.raises(AssertionError) as info:
        validate("CreateChatCompletionResponse", body)
    message = str(info.value)
    assert "(2 errors)" in message
    assert "$.object: 'chat.completion.chunk' is not one of ['chat.completion']" in message
    assert "$.choices[0].message: 'refusal' is a required property" in message


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        ("CreateChatCompletionStreamResponse", chat_chunk(finish_reason="done")),
        ("CreateChatCompletionStreamResponse", chat_chunk(delta={"role": "robot"})),
        ("CreateChatCompletionStreamResponse", {**chat_chunk(), "usage": {"total_tokens": 1}}),
        ("ErrorResponse", {"error": {"message": "bad", "type": "x", "param": None, "code": 400}}),
        ("ErrorResponse", {"error": {"message": "bad", "type": "x"}}),
        ("ListModelsResponse", {"object": "list", "data": [{"id": "m", "object": "model"}]}),
    ],
)
def test_invalid_bodies_fail(schema: str, body: object) -> None:
    with pytest.raises(AssertionError, match=f"does not match OpenAPI schema '{schema}'"):
        validate(schema, body)


def test_unknown_schema_name() -> None:
    with pytest.raises(KeyError, match="NoSuchSchema"):
        validate("NoSuchSchema", {})
