"""Value checks on parsed requests, worded as OpenAI words them.

Shape is ``_convert``'s job; here go ranges, the known-model check and cross-field rules.
Each failure names the offending parameter in ``param``.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any, Literal

from ._errors import OpenAIError, invalid
from ._faults import parse_fault
from ._protocol import NO_OVERRIDES, Overrides

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._protocol import ChatCompletionRequest
    from ._settings import ModelSettings

MAX_N = 128
Api = Literal["chat", "completions", "responses"]


def check_model(model: str, settings: ModelSettings) -> None:
    """Unknown models are a 404, unless the server accepts any name."""
    if not settings.any_model and model not in settings.models:
        raise OpenAIError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
            code="model_not_found",
        )


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


def context_window(settings: ModelSettings, model: str) -> int:
    """The model's context length: the first ``context_lengths`` entry naming it, or the
    default."""
    for entry in settings.context_lengths:
        name, _, tokens = entry.partition("=")
        if fnmatch.fnmatchcase(model, name):
            return int(tokens)
    return settings.context_length


def check_context(
    window: int, prompt_tokens: int, max_tokens: int | None, api: Api = "chat"
) -> None:
    """The prompt, and the output asked for (at least one token), must fit the context
    window; each API words the refusal its own way."""
    wanted = prompt_tokens + (max_tokens or 1)
    if wanted <= window:
        return
    if api == "responses":
        message = (
            "Your input exceeds the context window of this model. "
            "Please adjust your input and try again."
        )
    elif api == "completions":
        message = (
            f"This model's maximum context length is {window} tokens, however you requested "
            f"{wanted} tokens ({prompt_tokens} in your prompt; {max_tokens or 1} for the "
            "completion). Please reduce your prompt; or completion length."
        )
    elif max_tokens is None:
        message = (
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
        )
    else:
        message = (
            f"This model's maximum context length is {window} tokens. However, you requested "
            f"{wanted} tokens ({prompt_tokens} in the messages, {max_tokens} in the "
            "completion). Please reduce the length of the messages or completion."
        )
    param = {"chat": "messages", "completions": "prompt", "responses": "input"}[api]
    raise invalid(message, param, "context_length_exceeded")


def at_most(name: str, value: int, high: int, kind: str = "integer") -> None:
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
        f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, "
        f"but got {value} instead.",
        name,
        "integer_above_max_value",
    )


def at_least(name: str, value: int, low: int) -> None:
    if value < low:
        raise invalid(
            f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, but got {value} instead.",
            name,
            "integer_below_min_value",
        )


# Header -> (Overrides field, parser, smallest value).
OVERRIDE_HEADERS: dict[bytes, tuple[str, type, float]] = {
    b"x-mock-ttft-ms": ("ttft_ms", float, 0),
    b"x-mock-itl-ms": ("itl_ms", float, 0),
    b"x-mock-output-tokens": ("output_tokens", int, 0),
    b"x-mock-seed": ("seed", int, 0),
}


def parse_overrides(headers: Iterable[tuple[bytes, bytes]]) -> Overrides:
    """The request's ``x-mock-*`` headers; a bad value is a 400 naming the header."""
    found: dict[str, Any] = {}
    for name, raw in headers:
        if name[:7].lower() != b"x-mock-":
            continue
        if name.lower() == b"x-mock-fault":
            try:
                found["fault"] = parse_fault(raw.decode("latin-1"))
            except ValueError as error:
                raise invalid(
                    f"Invalid value for header 'x-mock-fault': {error}.",
                    "x-mock-fault",
                    "invalid_header",
                ) from None
            continue
        spec = OVERRIDE_HEADERS.get(name.lower())
        if spec is None:
            continue
        field, kind, low = spec
        try:
            value = kind(raw.decode("latin-1").strip())
        except ValueError:
            value = None
        if value is None or value != value or value < low or value == float("inf"):
            kind_name = "an integer" if kind is int else "a number"
            raise invalid(
                f"Invalid value for header '{name.decode('latin-1')}': expected {kind_name} >= {low}, "
                f"got {raw.decode('latin-1')!r}.",
                name.decode("latin-1"),
                "invalid_header",
            )
        found[field] = value
    return Overrides(**found) if found else NO_OVERRIDES
