"""Request models for the OpenAI wire format, under OpenAI's names.

Shapes only: ``_convert`` builds them from JSON (unknown fields are ignored, as vLLM does),
``_validate`` checks their values. Responses are written as bytes by ``_emit``, not modelled
here, because the hot path must not build objects per token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import attrs
from attrs import frozen

if TYPE_CHECKING:
    from ._settings import LatencySettings

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


@frozen(kw_only=True)
class Overrides:
    """Per-request control through ``x-mock-*`` headers, for tests that need one slow or one
    long reply: exact TTFT and ITL (no jitter), a fixed reply length, a seed."""

    ttft_ms: float | None = None
    itl_ms: float | None = None
    output_tokens: int | None = None
    seed: int | None = None

    def apply(self, latency: LatencySettings) -> LatencySettings:
        if self.ttft_ms is None and self.itl_ms is None:
            return latency
        changes: dict[str, Any] = {}
        if self.ttft_ms is not None:
            changes |= {
                "ttft_distribution": "constant",
                "ttft_ms": self.ttft_ms,
                "ttft_min_ms": 0.0,
                "ttft_max_ms": None,
                "prefill_ms_per_token": 0.0,
            }
        if self.itl_ms is not None:
            changes |= {
                "itl_distribution": "constant",
                "itl_ms": self.itl_ms,
                "itl_min_ms": 0.0,
                "itl_max_ms": None,
            }
        return attrs.evolve(latency, **changes)


NO_OVERRIDES = Overrides()
