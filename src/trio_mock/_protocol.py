"""Request models for the OpenAI wire format, under OpenAI's names.

Shapes only: ``_convert`` builds them from JSON (unknown fields are ignored, as vLLM does),
``_validate`` checks their values. Responses are written as bytes by ``_emit``, not modelled
here, because the hot path must not build objects per token.
"""

from __future__ import annotations

from typing import Any, Literal

from attrs import frozen

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


@frozen(kw_only=True)
class ContentPart:
    """One element of an array ``content``: text counts as tokens, other kinds as a fixed cost."""

    type: str
    text: str | None = None


@frozen(kw_only=True)
class ChatMessage:
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


@frozen(kw_only=True)
class StreamOptions:
    include_usage: bool = False


@frozen(kw_only=True)
class ChatCompletionRequest:
    """``POST /v1/chat/completions``; vLLM's ``min_tokens`` and ``ignore_eos`` included."""

    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    seed: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def token_limit(self) -> int | None:
        """OpenAI's newer name wins when both are sent."""
        return (
            self.max_completion_tokens
            if self.max_completion_tokens is not None
            else self.max_tokens
        )
