"""Request models for the OpenAI wire format, under OpenAI's names.

Shapes only: ``_convert`` builds them from JSON (unknown fields are ignored, as vLLM does),
``_validate`` checks their values. Responses are written as bytes by ``_frames``, not modelled
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
class FunctionDefinition:
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


@frozen(kw_only=True)
class ChatTool:
    """A chat ``tools`` entry: ``{"type": "function", "function": {...}}``."""

    type: str
    function: FunctionDefinition | None = None  # absent in other tool types


@frozen(kw_only=True)
class JsonSchemaFormat:
    name: str
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


@frozen(kw_only=True)
class ResponseFormat:
    """Chat's ``response_format``: text, any JSON object, or JSON valid against a schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


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
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None  # token id -> bias; checked in _validate
    stop: str | list[str] | None = None
    user: str | None = None
    tools: list[ChatTool] | None = None
    tool_choice: Any = None  # "none" | "auto" | "required" | {"type": "function", ...}
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

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
class CompletionRequest:
    """``POST /v1/completions`` (legacy); ``max_tokens`` defaults to 16, as OpenAI's does."""

    model: str
    prompt: Any  # str | list[str] | list[int] | list[list[int]], checked in _completions
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = 1
    max_tokens: int | None = 16
    min_tokens: int = 0
    ignore_eos: bool = False
    echo: bool = False
    logprobs: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    suffix: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, Any] | None = None
    best_of: int | None = None
    user: str | None = None

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


@frozen(kw_only=True)
class ResponsesTool:
    """A responses ``tools`` entry: ``{"type": "function", "name": ..., "parameters": ...}``."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


@frozen(kw_only=True)
class TextFormat:
    """The responses API's ``text.format``."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


@frozen(kw_only=True)
class TextOptions:
    format: TextFormat | None = None


@frozen(kw_only=True)
class ReasoningOptions:
    effort: str | None = None
    summary: str | None = None


@frozen(kw_only=True)
class ResponsesRequest:
    """``POST /v1/responses``: ``input`` is walked in ``_responses`` (many item kinds)."""

    model: str
    input: Any = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    stream: bool = False
    tools: list[ResponsesTool] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    reasoning: ReasoningOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    previous_response_id: str | None = None
    user: str | None = None
    top_logprobs: int | None = None
