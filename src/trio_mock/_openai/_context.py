"""The context window: how long each model's is, how a prompt's tokens are counted, and
the refusal, in each API's words, when a prompt and the output asked for do not fit."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Literal

from ._errors import invalid

if TYPE_CHECKING:
    from .._config._settings import ModelSettings

Api = Literal["chat", "completions", "responses", "messages"]

# OpenAI's accounting: each message costs 3 tokens of framing (4 with a name), and the
# reply is primed with 3 more. An image part costs the low-detail 85 tokens.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOKENS_PER_IMAGE = 85


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
    if api == "messages":  # Anthropic's words
        message = (
            f"prompt is too long: {prompt_tokens} tokens > {window} maximum"
            if prompt_tokens >= window
            else f"input length and `max_tokens` exceed context limit: {prompt_tokens} + "
            f"{max_tokens} > {window}, decrease input length or `max_tokens` and try again"
        )
    elif api == "responses":
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
    param = {
        "chat": "messages",
        "completions": "prompt",
        "responses": "input",
        "messages": "messages",
    }[api]
    raise invalid(message, param, "context_length_exceeded")
