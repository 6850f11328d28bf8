"""Value checks on parsed requests, worded as OpenAI words them.

Shape is ``_convert``'s job; here go OpenAI's documented ranges, the known-model check,
content types and cross-field rules (the mock's ``x-mock-*`` headers are ``_overrides``'s,
the context window ``_context``'s). Each failure names the offending parameter in ``param``. These run per request: a
few comparisons each, and no structure is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .._config._ranges import shown
from .._config._tokenizer_models import MAX_MODEL_NAME, tokenizer_sources
from ._errors import OpenAIError, invalid

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._config._settings import ModelSettings
    from ._protocol import ChatCompletionRequest, ChatMessage

MAX_N = 128
Api = Literal["chat", "completions", "responses"]
# OpenAI's documented ranges of the sampling parameters (the mock accepts and ignores them).
SAMPLING: tuple[tuple[str, float, float], ...] = (
    ("temperature", 0, 2),
    ("top_p", 0, 1),
    ("presence_penalty", -2, 2),
    ("frequency_penalty", -2, 2),
)
MAX_LOGIT_BIAS = 100
MAX_TOP_LOGPROBS = 20
# Content part types each chat role may send; users also vLLM's ``video_url`` and
# ``audio_url``, which its benchmarks send to multimodal models.
PART_TYPES: dict[str, tuple[str, ...]] = {
    "user": ("text", "image_url", "input_audio", "file", "video_url", "audio_url"),
    "assistant": ("text", "refusal"),
    "system": ("text",),
    "developer": ("text",),
    "tool": ("text",),
    "function": ("text",),
}


def check_model(model: str, settings: ModelSettings) -> None:
    """Unknown models are a 404, unless the server accepts any name; a name no model can
    have (control characters, over ``MAX_MODEL_NAME`` characters) is a 404 either way.
    Known: the listed models and those with their own tokenizer."""
    impossible = len(model) > MAX_MODEL_NAME or not model.isprintable()
    if impossible or (not settings.any_model and not served(model, settings)):
        shown = model[:MAX_MODEL_NAME].encode("unicode_escape").decode() if impossible else model
        raise OpenAIError(
            404,
            f"The model `{shown}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )


def served(model: str, settings: ModelSettings) -> bool:
    return model in settings.models or model in tokenizer_sources(settings.tokenizer_models)


def served_models(settings: ModelSettings) -> list[str]:
    """The models ``/v1/models`` lists: the listed ones, then those with a tokenizer."""
    return list(dict.fromkeys([*settings.models, *tokenizer_sources(settings.tokenizer_models)]))


def check_chat(chat: ChatCompletionRequest, settings: ModelSettings) -> None:
    if not chat.messages:
        raise invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            "messages",
            "empty_array",
        )
    if chat.stream_options is not None and not chat.stream:
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "stream_options",
        )
    at_least("n", chat.n, 1)
    if chat.n > MAX_N:
        raise invalid(
            f"Invalid 'n': integer above maximum value. Expected a value <= {MAX_N}, but got {chat.n} instead.",
            "n",
            "integer_above_max_value",
        )
    check_parts(chat.messages)
    check_sampling(chat)
    for name in ("max_tokens", "max_completion_tokens"):
        value = getattr(chat, name)
        if value is not None:
            at_least(name, value, 1)
    at_least("min_tokens", chat.min_tokens, 0)
    limit = chat.token_limit
    if limit is not None and chat.min_tokens > limit:
        raise invalid(
            f"min_tokens ({chat.min_tokens}) must be less than or equal to max_tokens ({limit}).",
            "min_tokens",
        )
    if chat.seed is not None and not -(2**63) <= chat.seed < 2**64:
        raise invalid("Invalid 'seed': integer out of range.", "seed", "integer_out_of_range")
    check_model(chat.model, settings)


def listed(values: Sequence[str]) -> str:
    """OpenAI's way of listing values: ``'a'``, ``'a' and 'b'``, ``'a', 'b', and 'c'``."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) < 3:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def check_parts(messages: list[ChatMessage]) -> None:
    """Array contents are non-empty and hold only the part types the role may send."""
    for i, message in enumerate(messages):
        content = message.content
        if not isinstance(content, list):
            continue
        if not content:
            raise invalid(
                f"Invalid 'messages[{i}].content': empty array. Expected an array with minimum "
                "length 1, but got an empty array instead.",
                f"messages[{i}].content",
                "empty_array",
            )
        allowed = PART_TYPES[message.role]
        for j, part in enumerate(content):
            if part.type not in allowed:
                raise invalid(
                    f"Invalid value: '{part.type}'. Supported values are: {listed(allowed)}.",
                    f"messages[{i}].content[{j}].type",
                    "invalid_value",
                )


def check_sampling(request: object) -> None:
    """``temperature``, ``top_p``, the penalties and ``logit_bias`` of any generation
    request, where it has them, within OpenAI's documented ranges."""
    for name, low, high in SAMPLING:
        value = getattr(request, name, None)
        if value is not None:
            at_least(name, value, low, "decimal")
            at_most(name, value, high, "decimal")
    bias = getattr(request, "logit_bias", None)
    if bias:
        check_logit_bias(bias)


def check_logit_bias(bias: dict[str, Any]) -> None:
    """Keys are token ids, values biases from -100 to 100."""
    for token, value in bias.items():
        if not (token.isascii() and token.isdigit()):  # "²" is a digit to str
            raise invalid(
                f"Invalid key in 'logit_bias': {token!r} is not a token ID.",
                "logit_bias",
                "invalid_value",
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(
                f"Invalid type for 'logit_bias.{token}': expected a number.",
                "logit_bias",
                "invalid_type",
            )
        if not -MAX_LOGIT_BIAS <= value <= MAX_LOGIT_BIAS:
            raise invalid(
                f"Invalid value for 'logit_bias': {shown(value)} for token {token} is out of "
                f"range. Expected a value from {-MAX_LOGIT_BIAS} to {MAX_LOGIT_BIAS}.",
                "logit_bias",
                "invalid_value",
            )


def at_most(name: str, value: float, high: float, kind: str = "integer") -> None:
    """``kind``: "integer" or "decimal" (a number), or "array" for a length."""
    if value <= high:
        return
    if kind == "array":
        raise invalid(
            f"Invalid '{name}': array too long. Expected an array with maximum length {high}, "
            f"but got an array with length {value} instead.",
            name,
            "array_above_max_length",
        )
    raise invalid(
        f"Invalid '{name}': {kind} above maximum value. Expected a value <= {shown(high)}, "
        f"but got {shown(value)} instead.",
        name,
        f"{kind}_above_max_value",
    )


def at_least(name: str, value: float, low: float, kind: str = "integer") -> None:
    """``kind``: "integer" or "decimal" (a number)."""
    if value < low:
        raise invalid(
            f"Invalid '{name}': {kind} below minimum value. Expected a value >= {shown(low)}, "
            f"but got {shown(value)} instead.",
            name,
            f"{kind}_below_min_value",
        )


def stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    found = (stop,) if isinstance(stop, str) else tuple(stop)
    at_most("stop", len(found), 4, "array")
    return found
