"""OpenRouter's dialect of the wire format, for the ``/api/v1`` routes (pure).

OpenRouter speaks OpenAI's APIs with differences this module owns
(https://openrouter.ai/docs/api-reference/overview): request extras (``models`` fallbacks,
``provider`` preferences, ``transforms``, ``usage``, ``reasoning``), checked and taken out
of the body before the OpenAI request models see it; replies that name their ``provider``,
always carry ``usage`` with its ``cost``, and put reasoning in ``reasoning``; the model
listing's own fields; and errors as ``{"error": {"code": <status>, "message", "metadata"}}``.
Nothing here runs for a ``/v1`` request: the routes are built once with their dialect.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any, Literal

import orjson
from attrs import frozen

from ._errors import OpenAIError, invalid, openrouter_error_body
from ._frames import ChatEmitter, ChoicesEmitter, error_frame
from ._validate import at_least, at_most, check_model

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._config._settings import ModelSettings
    from .._sim._plan import ChoicePlan

# Bounds on what a client chooses; OpenRouter documents none, these are ours.
MAX_FALLBACKS = 16  # entries of ``models``
MAX_NAMES = 64  # entries of each ``provider`` list and of ``transforms``
MAX_NAME = 256  # characters of one of those entries
MAX_REASONING_TOKENS = 1 << 24
MAX_PRICE_PER_TOKEN = 1.0  # USD, for ``provider.max_price``'s per-token prices
MAX_CACHED = 10_000  # model names whose price is remembered

Reasoning = Literal["reasoning_effort", "keep", "drop"]
EXTRAS = ("models", "provider", "transforms", "usage", "reasoning")
# https://openrouter.ai/docs/features/provider-routing
PROVIDER_LISTS = ("order", "only", "ignore", "quantizations")
PROVIDER_FLAGS = ("allow_fallbacks", "require_parameters", "zdr", "enforce_distillable_text")
PROVIDER_CHOICES = {
    "data_collection": ("allow", "deny"),
    "sort": ("price", "throughput", "latency"),
}
MAX_PRICE_KEYS = ("prompt", "completion", "image", "audio", "request")
# https://openrouter.ai/docs/use-cases/reasoning-tokens
EFFORTS = ("xhigh", "high", "medium", "low", "minimal", "none")


def names(param: str, value: Any) -> list[str]:
    """A list of short strings (model ids, provider slugs, transforms), or a 400."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid(f"Invalid type for '{param}': expected an array of strings.", param,
                      "invalid_type")  # fmt: skip
    at_most(param, len(value), MAX_NAMES if param != "models" else MAX_FALLBACKS, "array")
    for i, name in enumerate(value):
        if not name or len(name) > MAX_NAME:
            raise invalid(
                f"Invalid '{param}[{i}]': expected 1 to {MAX_NAME} characters.",
                f"{param}[{i}]",
                "invalid_value",
            )
    return value


def an_object(param: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"Invalid type for '{param}': expected an object.", param, "invalid_type")
    return value


def a_bool(param: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise invalid(f"Invalid type for '{param}': expected a boolean.", param, "invalid_type")


def one_of(param: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise invalid(
            f"Invalid value for '{param}': expected one of {', '.join(allowed)}.",
            param,
            "invalid_value",
        )


def a_number(param: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"Invalid type for '{param}': expected a number.", param, "invalid_type")
    at_least(param, value, low, "decimal")
    at_most(param, value, high, "decimal")


def check_provider(value: Any) -> None:
    """Provider preferences: accepted and ignored (the mock is the only provider), but
    checked as OpenRouter documents them."""
    provider = an_object("provider", value)
    for key in PROVIDER_LISTS:
        if key in provider:
            names(f"provider.{key}", provider[key])
    for key in PROVIDER_FLAGS:
        if key in provider:
            a_bool(f"provider.{key}", provider[key])
    for key, allowed in PROVIDER_CHOICES.items():
        if key in provider:
            one_of(f"provider.{key}", provider[key], allowed)
    if "max_price" in provider:
        prices = an_object("provider.max_price", provider["max_price"])
        for key in MAX_PRICE_KEYS:
            if key in prices:
                a_number(f"provider.max_price.{key}", prices[key], 0, MAX_PRICE_PER_TOKEN)


def reasoning_effort(value: Any) -> str | None:
    """The ``reasoning`` object checked; the OpenAI ``reasoning_effort`` it amounts to."""
    reasoning = an_object("reasoning", value)
    for key in ("exclude", "enabled"):
        if key in reasoning:
            a_bool(f"reasoning.{key}", reasoning[key])
    effort = reasoning.get("effort")
    if effort is not None:
        one_of("reasoning.effort", effort, EFFORTS)
    budget = reasoning.get("max_tokens")
    if budget is not None:
        if effort is not None:
            raise invalid(
                "Only one of 'reasoning.effort' and 'reasoning.max_tokens' may be given.",
                "reasoning",
            )
        if isinstance(budget, bool) or not isinstance(budget, int):
            raise invalid("Invalid type for 'reasoning.max_tokens': expected an integer.",
                          "reasoning.max_tokens", "invalid_type")  # fmt: skip
        at_least("reasoning.max_tokens", budget, 0)
        at_most("reasoning.max_tokens", budget, MAX_REASONING_TOKENS)
    if reasoning.get("enabled") is False and effort is None:
        return "none"
    return effort


def chosen_model(model: Any, fallbacks: list[str], settings: ModelSettings) -> Any:
    """The model that answers: ``model``, else the first of ``models`` the server knows
    (https://openrouter.ai/docs/guides/routing/model-fallbacks); without either, the
    server's first model (OpenRouter's "user's default").

    Raises:
      OpenAIError: no candidate exists (the first one's 404).
    """
    if model is not None and not isinstance(model, str):
        return model  # the request model reports the type error
    candidates = ([model] if model is not None else []) + fallbacks
    if not candidates:
        return settings.models[0]
    first: OpenAIError | None = None
    for candidate in candidates:
        try:
            check_model(candidate, settings)
        except OpenAIError as error:
            first = first or error
            continue
        return candidate
    assert first is not None
    raise first


def openai_request(
    data: dict[str, Any], settings: ModelSettings, reasoning: Reasoning
) -> dict[str, Any]:
    """The body as the OpenAI handlers read it: OpenRouter's extras checked and taken out,
    the model chosen among ``model`` and its fallbacks.

    Args:
      reasoning: what becomes of ``reasoning``: its effort as chat's ``reasoning_effort``;
        kept, for the Responses API, whose own field it is; or checked and dropped.
    """
    taken = EXTRAS if reasoning != "keep" else EXTRAS[:-1]
    body = {k: v for k, v in data.items() if k not in taken}
    if "provider" in data:
        check_provider(data["provider"])
    if "transforms" in data:
        names("transforms", data["transforms"])
    if "usage" in data:  # deprecated by OpenRouter, and without effect: usage always comes
        usage = an_object("usage", data["usage"])
        if "include" in usage:
            a_bool("usage.include", usage["include"])
    if reasoning != "keep" and "reasoning" in data:
        effort = reasoning_effort(data["reasoning"])
        if reasoning == "reasoning_effort" and effort is not None and reasoning not in body:
            body[reasoning] = effort
    fallbacks = names("models", data["models"]) if "models" in data else []
    body["model"] = chosen_model(data.get("model"), fallbacks, settings)
    return body


@frozen
class Price:
    """USD per million tokens, as the ``model_prices`` knob gives it."""

    prompt: float = 0.0
    completion: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD, divided once (so 8 tokens at 2 and 5 at 8 cost 5.6e-05, not ...9999e-05)."""
        return (prompt_tokens * self.prompt + completion_tokens * self.completion) / 1e6


FREE = Price()


def per_token(usd_per_million: float) -> str:
    """A price as OpenRouter lists it: USD per token, a decimal string, ``"0"`` if free."""
    return f"{usd_per_million / 1e6:.15f}".rstrip("0").rstrip(".") or "0"


class Prices:
    """Each model's price, from ``model_prices`` (USD per million tokens)."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.patterns: list[tuple[str, Price]] = []
        for entry in entries:
            name, _, pair = entry.partition("=")
            prompt, completion = (float(p) for p in pair.split(":"))
            self.patterns.append((name, Price(prompt, completion)))
        self.known: dict[str, Price] = {}

    def of(self, model: str) -> Price:
        """The first entry naming ``model``; free when none does."""
        known = self.known.get(model)
        if known is None:
            patterns = (price for name, price in self.patterns if fnmatch.fnmatchcase(model, name))
            known = next(patterns, FREE)
            if len(self.known) < MAX_CACHED and len(model) <= MAX_NAME:
                self.known[model] = known
        return known


def model_object(
    model_id: str, *, created: int, context_length: int, price: Price, reasons: bool
) -> dict[str, object]:
    """A model as OpenRouter lists it (https://openrouter.ai/docs/models)."""
    parameters = [
        "max_tokens", "temperature", "top_p", "stop", "frequency_penalty", "presence_penalty",
        "seed", "logit_bias", "logprobs", "top_logprobs", "response_format",
        "structured_outputs", "tools", "tool_choice",
    ]  # fmt: skip
    if reasons:
        parameters += ["reasoning", "include_reasoning"]
    return {
        "id": model_id,
        "canonical_slug": model_id,
        "name": model_id,
        "created": created,
        "description": "A model simulated by trio-mock: its replies are generated text.",
        "context_length": context_length,
        "architecture": {
            "input_modalities": ["text", "image"],
            "output_modalities": ["text"],
            "tokenizer": "GPT",
            "instruct_type": None,
        },
        "pricing": {
            "prompt": per_token(price.prompt),
            "completion": per_token(price.completion),
            "request": "0",
            "image": "0",
            "web_search": "0",
            "internal_reasoning": "0",  # counted in completion_tokens, at that price
            "input_cache_read": "0",
            "input_cache_write": "0",
        },
        "top_provider": {
            "context_length": context_length,
            "max_completion_tokens": None,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": parameters,
    }


class OpenRouterChoices(ChoicesEmitter):
    """What OpenRouter adds to a chat or completions reply: its ``gen-`` id, the
    ``provider``, and ``usage`` always, with its ``cost``; errors in its shape. Mixed in
    before the OpenAI emitter."""

    id_prefix = "gen-"

    def __init__(
        self,
        choices: Sequence[ChoicePlan],
        prompt_tokens: int,
        *,
        provider: str,
        price: Price,
        **common: Any,
    ) -> None:
        # "Full usage details are now always included automatically in every response"
        # (https://openrouter.ai/docs/use-cases/usage-accounting).
        super().__init__(choices, prompt_tokens, **(common | {"include_usage": True}))
        self.provider = provider
        self.price = price

    def usage(self) -> dict[str, Any]:
        usage = super().usage()
        usage["cost"] = self.price.cost(usage["prompt_tokens"], usage["completion_tokens"])
        usage["cost_details"] = {"upstream_inference_cost": None}  # set for BYOK only
        return usage

    def chunk_head(self) -> bytes:
        head = super().chunk_head()  # b'data: {"id":...'
        return b'data: {"provider":%s,%s' % (orjson.dumps(self.provider), head[7:])

    def usage_chunk(self) -> dict[str, Any]:
        return {"provider": self.provider} | super().usage_chunk()

    def body_object(self) -> dict[str, Any]:
        return {"provider": self.provider} | super().body_object()

    def late(self, error: OpenAIError) -> bytes:
        return error_frame(orjson.dumps(openrouter_error_body(error)))


class OpenRouterChat(OpenRouterChoices, ChatEmitter):
    """A chat completion as OpenRouter sends it; reasoning text is ``reasoning``."""

    reasoning_field = "reasoning"
