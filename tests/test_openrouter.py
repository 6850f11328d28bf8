"""OpenRouter's API under ``/api/v1``: the official ``openai`` SDK pointed at it, its request
extras, its replies' extras (``provider``, ``usage.cost``), its model listing and its error
shape; and ``/v1`` left as it was.

Shapes follow https://openrouter.ai/docs/api-reference/overview, /docs/errors, /docs/models
and /docs/use-cases/usage-accounting.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from conftest import check_error, server_in_thread, sync_client
from helpers import HTTP_TIMEOUT_S, post, tokens
from trio_mock._config._knobs import SettingsError
from trio_mock._config._settings import Settings
from trio_mock._openai._errors import OpenAIError, openrouter_error_body as error_body
from trio_mock._openai._openrouter import Price, Prices, per_token

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

    from conftest import StartServer

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
PRICES = ("cheap-*=0.5:1.5", "*=2:8")  # USD per million tokens: prompt, completion
# Replies of exactly 5 tokens, priced.
KNOBS: dict[str, Any] = {"output_tokens_mean": 5, "output_tokens_stddev": 0, "model_prices": PRICES}
PROMPT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def cost(usage: dict[str, Any], prompt_usd: float, completion_usd: float) -> float:
    """What OpenRouter charges, from per-million prices: each kind of token at its price."""
    spent: float = usage["prompt_tokens"] * prompt_usd + usage["completion_tokens"] * completion_usd
    return spent / 1e6


def openrouter_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """OpenRouter's ``{"error": {"code", "message", "metadata"}}``, ``code`` the status."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"code", "message", "metadata"}
    assert error["code"] == status
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["metadata"], dict)
    return error


# --- the official SDK, base URL <server>/api/v1 ------------------------------------------


def test_sdk_against_api_v1() -> None:
    """Chat (streamed and not), completions, embeddings and the model list, as an
    OpenRouter client sends them."""
    with server_in_thread(**KNOBS) as url, sync_client(url, "/api/v1") as client:
        extras = {"provider": {"order": ["openai"], "allow_fallbacks": True},
                  "transforms": ["middle-out"], "usage": {"include": True}}  # fmt: skip
        chat = client.chat.completions.create(model="m", messages=HELLO, extra_body=extras)
        stream = client.chat.completions.create(model="cheap-m", messages=HELLO, stream=True)
        with stream:
            chunks = list(stream)
        text = client.completions.create(model="m", prompt="Once upon a time")
        vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
        models = client.models.list()
        one = client.models.retrieve("trio-mock")

    assert chat.id.startswith("gen-")
    assert chat.model == "m"
    assert chat.model_extra is not None
    assert chat.model_extra["provider"] == "trio-mock"
    content = chat.choices[0].message.content
    assert content is not None
    assert chat.usage is not None
    assert chat.usage.completion_tokens == 5 == tokens(content)
    usage = chat.usage.model_dump()
    assert usage["cost"] == pytest.approx(cost(usage, 2, 8), rel=1e-12)
    assert usage["cost_details"] == {"upstream_inference_cost": None}

    # Usage comes without stream_options: OpenRouter always sends it, in the last chunk.
    *deltas, last = chunks
    assert "".join(c.choices[0].delta.content or "" for c in deltas if c.choices)
    assert all(c.id.startswith("gen-") and c.model_extra == {"provider": "trio-mock"}
               for c in deltas)  # fmt: skip
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 5
    streamed = last.usage.model_dump()
    assert streamed["cost"] == pytest.approx(cost(streamed, 0.5, 1.5), rel=1e-12)

    assert text.id.startswith("gen-")
    assert text.usage is not None
    text_usage = text.usage.model_dump()
    assert text_usage["cost"] == pytest.approx(cost(text_usage, 2, 8), rel=1e-12)
    assert [v.index for v in vectors.data] == [0, 1]
    assert len(vectors.data[0].embedding) == 1536

    (listed,) = models.data
    assert listed.id == "trio-mock"
    assert listed.model_extra is not None
    assert listed.model_extra["context_length"] == 131072
    assert listed.model_extra["pricing"]["prompt"] == "0.000002"  # $2 per million tokens
    assert listed.model_extra["pricing"]["completion"] == "0.000008"
    assert one.id == "trio-mock"


def test_sdk_raises_on_openrouter_errors() -> None:
    """The SDK's exception classes still follow the status; the body is OpenRouter's."""
    with (
        server_in_thread(any_model=False, models=("known",)) as url,
        sync_client(url, "/api/v1") as client,
    ):
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="unknown", messages=HELLO)
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="known", messages=HELLO, temperature=3)
    assert missing.value.body == {
        "code": 404,
        "message": "The model `unknown` does not exist or you do not have access to it.",
        "metadata": {"type": "invalid_request_error", "param": "model", "code": "model_not_found"},
    }
    assert isinstance(bad.value.body, dict)
    assert bad.value.body["code"] == 400
    assert bad.value.body["metadata"]["param"] == "temperature"


# --- request extras -----------------------------------------------------------------------

ACCEPTED: list[dict[str, Any]] = [
    {"models": ["a/b", "c/d"]},
    {"provider": {"order": ["openai", "azure"], "only": ["openai"], "ignore": ["x"],
                  "quantizations": ["fp8"], "allow_fallbacks": False, "require_parameters": True,
                  "data_collection": "deny", "zdr": True, "sort": "throughput",
                  "max_price": {"prompt": 0.000001, "completion": 0.00001}}},
    {"transforms": ["middle-out"]},
    {"transforms": []},
    {"usage": {"include": True}},
    {"reasoning": {"effort": "high", "exclude": True}},
    {"reasoning": {"max_tokens": 2000}},
    {"reasoning": {"enabled": True}},
]  # fmt: skip


@pytest.mark.parametrize("extra", ACCEPTED)
async def test_extras_accepted(start_server: StartServer, extra: dict[str, Any]) -> None:
    url = await start_server()
    response = await post(url, "/api/v1/chat/completions", PROMPT | extra)
    assert response.status_code == 200, response.text
    assert response.json()["provider"] == "trio-mock"


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"models": "a/b"}, "models"),
    ({"models": ["m"] * 17}, "models"),
    ({"models": [""]}, "models[0]"),
    ({"models": ["x" * 257]}, "models[0]"),
    ({"provider": ["openai"]}, "provider"),
    ({"provider": {"order": "openai"}}, "provider.order"),
    ({"provider": {"only": ["p"] * 65}}, "provider.only"),
    ({"provider": {"allow_fallbacks": "yes"}}, "provider.allow_fallbacks"),
    ({"provider": {"sort": "cheapest"}}, "provider.sort"),
    ({"provider": {"data_collection": "maybe"}}, "provider.data_collection"),
    ({"provider": {"max_price": {"prompt": -1}}}, "provider.max_price.prompt"),
    ({"provider": {"max_price": {"prompt": 1e300}}}, "provider.max_price.prompt"),
    ({"transforms": [1]}, "transforms"),
    ({"usage": {"include": "yes"}}, "usage.include"),
    ({"usage": True}, "usage"),
    ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"reasoning": {"effort": "low", "max_tokens": 10}}, "reasoning"),
    ({"reasoning": {"max_tokens": -1}}, "reasoning.max_tokens"),
    ({"reasoning": {"max_tokens": 10**30}}, "reasoning.max_tokens"),
    ({"reasoning": {"max_tokens": 1.5}}, "reasoning.max_tokens"),
    ({"reasoning": {"exclude": 1}}, "reasoning.exclude"),
]


@pytest.mark.parametrize(("extra", "param"), REFUSED)
async def test_extras_bounded(start_server: StartServer, extra: dict[str, Any], param: str) -> None:
    url = await start_server()
    response = await post(url, "/api/v1/chat/completions", PROMPT | extra)
    error = openrouter_error(response, 400)
    assert error["metadata"]["param"] == param, error


async def test_models_fall_back(start_server: StartServer) -> None:
    """The first of ``model`` and ``models`` the server knows answers, and is named; none
    known is the first one's 404; neither given is the server's first model."""
    url = await start_server(any_model=False, models=("first", "second"))
    route = "/api/v1/chat/completions"
    messages = PROMPT["messages"]
    fell = await post(
        url, route, {"model": "gone", "models": ["lost", "second"], "messages": messages}
    )
    assert fell.status_code == 200, fell.text
    assert fell.json()["model"] == "second"
    only_list = await post(url, route, {"models": ["second"], "messages": messages})
    assert only_list.json()["model"] == "second"
    default = await post(url, route, {"messages": messages})
    assert default.json()["model"] == "first"
    none = await post(url, route, {"model": "gone", "models": ["lost"], "messages": messages})
    assert "`gone`" in openrouter_error(none, 404)["message"]


async def test_reasoning_object(start_server: StartServer) -> None:
    """``reasoning.effort`` acts as ``reasoning_effort``; the text is ``reasoning``, as
    OpenRouter names it; ``enabled: false`` turns it off."""
    url = await start_server(reasoning_tokens_mean=20, reasoning_tokens_stddev=0)
    body = {"model": "o3-mini", "messages": PROMPT["messages"]}
    thought = (
        await post(url, "/api/v1/chat/completions", body | {"reasoning": {"effort": "high"}})
    ).json()
    message = thought["choices"][0]["message"]
    assert message["reasoning"]
    assert "reasoning_content" not in message
    assert thought["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    off = (
        await post(url, "/api/v1/chat/completions", body | {"reasoning": {"enabled": False}})
    ).json()
    assert "reasoning" not in off["choices"][0]["message"]
    assert off["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_streamed_reasoning_is_named_reasoning(start_server: StartServer) -> None:
    url = await start_server(reasoning_tokens_mean=3, reasoning_tokens_stddev=0)
    body = {"model": "o3-mini", "messages": PROMPT["messages"], "stream": True}
    response = await post(url, "/api/v1/chat/completions", body)
    assert b'"reasoning":"' in response.content
    assert b"reasoning_content" not in response.content


# --- error shape on every kind of /api/v1 route --------------------------------------------


async def test_error_shape_on_every_route(start_server: StartServer) -> None:
    url = await start_server(api_keys=("sk-right",))
    right = {"authorization": "Bearer sk-right"}
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_S) as client:
        hot = await client.post("/api/v1/chat/completions", json=PROMPT)  # a raw-ASGI endpoint
        listing = await client.get("/api/v1/models")  # a Quart route, refused by the front
        unknown = await client.get("/api/v1/nothing-here", headers=right)
        method = await client.get("/api/v1/completions", headers=right)
        injected = await client.post("/api/v1/chat/completions", json=PROMPT,
                                     headers=right | {"x-mock-fault": "429"})  # fmt: skip
        shape = await client.post("/api/v1/embeddings", json={"model": "m"}, headers=right)
        openai_route = await client.post("/v1/chat/completions", json={"model": "m"}, headers=right)
    assert openrouter_error(hot, 401)["metadata"]["code"] == "invalid_api_key"
    assert openrouter_error(listing, 401)["metadata"]["code"] == "invalid_api_key"
    assert openrouter_error(unknown, 404)["metadata"]["code"] == "unknown_url"
    openrouter_error(method, 405)
    assert openrouter_error(injected, 429)["metadata"]["code"] == "rate_limit_exceeded"
    assert openrouter_error(shape, 400)["metadata"]["param"] == "input"
    check_error(openai_route, 400, "messages")  # /v1 keeps OpenAI's shape


async def test_injected_error_mid_stream(start_server: StartServer) -> None:
    """A failure after the SSE headers is a last ``data:`` frame, in OpenRouter's shape."""
    url = await start_server(output_tokens_mean=5, output_tokens_stddev=0)
    body = PROMPT | {"stream": True}
    response = await post(url, "/api/v1/chat/completions", body, {"x-mock-fault": "error"})
    assert response.status_code == 200
    last = response.text.strip().split("\n\n")[-1]
    assert last.startswith('data: {"error":{"code":500,')


async def test_v1_unchanged(start_server: StartServer) -> None:
    """No OpenRouter field leaks onto /v1, even with prices set."""
    url = await start_server(**KNOBS)
    reply = (
        await post(url, "/v1/chat/completions", PROMPT | {"provider": {"order": ["x"]}})
    ).json()
    assert reply["id"].startswith("chatcmpl-")
    assert "provider" not in reply
    assert "cost" not in reply["usage"]
    stream = await post(url, "/v1/chat/completions", PROMPT | {"stream": True})
    assert b'"provider"' not in stream.content
    assert b'"usage":{' not in stream.content  # only with stream_options.include_usage


# --- prices and the error body, sans-IO ------------------------------------------------------


def test_prices_first_match_wins_and_unlisted_are_free() -> None:
    prices = Prices(PRICES)
    assert prices.of("cheap-1") == Price(0.5, 1.5)
    assert prices.of("other") == Price(2, 8)
    assert Prices(()).of("any") == Price(0, 0)
    assert Price(2, 8).cost(8, 5) == pytest.approx(5.6e-05, rel=1e-15)


@pytest.mark.parametrize(
    ("usd_per_million", "listed"),
    [(0, "0"), (2, "0.000002"), (0.15, "0.00000015"), (60, "0.00006")],
)
def test_listed_per_token(usd_per_million: float, listed: str) -> None:
    assert per_token(usd_per_million) == listed


@pytest.mark.parametrize("entry", ["m", "m=1", "m=1:x", "=1:2", "m=-1:2", "m=1:2e9", "m=nan:1"])
def test_price_knob_bounded(entry: str) -> None:
    with pytest.raises(SettingsError, match=r"model.prices"):
        Settings().replace(model_prices=(entry,))


def test_error_body_keeps_openai_names_in_metadata() -> None:
    error = OpenAIError(400, "Bad.", param="n", code="integer_above_max_value")
    assert error_body(error) == {
        "error": {
            "code": 400,
            "message": "Bad.",
            "metadata": {
                "type": "invalid_request_error",
                "param": "n",
                "code": "integer_above_max_value",
            },
        }
    }
