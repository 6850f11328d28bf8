"""``POST /v1/messages``: from an Anthropic request body to a planned ``MessageEmitter``;
and what Anthropic's routes ask of the stages (``AnthropicDialect``).

The body is checked as Anthropic checks it (``_openai._anthropic``), the prompt counted
(off the event loop when it is long), and the model plans the reply as it plans chat's;
the renderer speaks Anthropic's wire format (``_openai._anthropic_frames``).
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._openai._anthropic import Tool, check_version, messages_request
from .._openai._anthropic_frames import MessageEmitter
from .._openai._context import REPLY_PRIMING, TOKENS_PER_IMAGE, TOKENS_PER_MESSAGE
from .._openai._model import Ask, FunctionTool, ToolMode, output_schema
from .._openai._prompt_ids import END, SEP
from .._openai._validate import check_model
from .._sim._plan import Limits
from ._offload import off_loop

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from .._openai._anthropic import MessagesRequest, Prompt
    from .._openai._model import MockModel
    from .._openai._overrides import Overrides

Headers = list[tuple[bytes, bytes]]
# Go's durations as the limiter writes them: 20ms, 1.5s, 6m0s.
GO_DURATION = re.compile(rb"(?:(\d+)m(?!s))?(?:([\d.]+)(ms|s))?")


def messages_ask(request: MessagesRequest) -> Ask:
    """What the request asks of the model; each tool's schema checked (a 400 names it)."""
    tools = tuple(
        FunctionTool(t.name, output_schema(t.input_schema, f"{t.path}.input_schema"))
        for t in request.tools
    )
    choice: ToolMode | FunctionTool
    if isinstance(request.tool_choice, Tool):
        choice = tools[request.tools.index(request.tool_choice)]
    else:
        choice = "required" if request.tool_choice == "any" else request.tool_choice
    return Ask(
        model=request.model,
        limits=Limits(max_tokens=request.max_tokens, stop=request.stop),
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=request.parallel_tool_calls,
        can_reason=request.thinking_budget is not None,
        thinking_budget=request.thinking_budget,
        api="messages",
        echo=request.echo,
    )


class MessagesHandler:
    """Turns a Messages body into a planned reply."""

    def __init__(self, model: MockModel) -> None:
        self.model = model
        self.settings = model.settings

    def count(self, prompt: Prompt, model: str) -> int:
        """The prompt's tokens, with ``model``'s tokenizer, framed as chat's are."""
        encode = self.model.tokenizer_for(model).encode
        total = REPLY_PRIMING + TOKENS_PER_MESSAGE * prompt.messages + prompt.tools_tokens
        total += TOKENS_PER_IMAGE * prompt.images
        return total + sum(len(encode(text)) for text in prompt.texts)

    def hash_prompt(self, prompt: Prompt, model: str) -> tuple[int, list[int]]:
        """The prompt's tokens (as ``count`` counts them) and its block hashes for the
        prefix cache: its texts in order, each opened by a marker, then as many markers as
        the rest of the framing counts (the prompt keeps no more of its structure)."""
        encode = self.model.cache_encoder(model)
        ids = [i for text in prompt.texts for i in (SEP, *encode(text))]
        total = REPLY_PRIMING + TOKENS_PER_MESSAGE * prompt.messages + prompt.tools_tokens
        total += TOKENS_PER_IMAGE * prompt.images + len(ids) - len(prompt.texts)
        ids += [END] * (total - len(ids))
        return total, self.model.prompt_hashes(ids)

    async def cached_prompt(self, request: MessagesRequest, ask: Ask) -> tuple[int, int]:
        """The prompt's tokens, and how many of them the prefix cache holds."""
        chars = sum(len(text) for text in request.prompt.texts)
        tokens, hashes = await off_loop(chars, self.hash_prompt, request.prompt, request.model)
        return tokens, self.model.cached_tokens(ask, hashes, tokens)

    def checked(self, data: dict[str, Any], *, counting: bool = False) -> MessagesRequest:
        request = messages_request(data, counting=counting)
        check_model(request.model, self.settings.models)
        return request

    async def prompt_tokens(self, request: MessagesRequest) -> int:
        """Count the prompt; a long one is tokenized in a thread so streams keep pace."""
        chars = sum(len(text) for text in request.prompt.texts)
        return await off_loop(chars, self.count, request.prompt, request.model)

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> MessageEmitter:
        request = self.checked(data)
        ask = messages_ask(request)
        cached: int | None = None
        if self.model.prefix_caches is None:
            prompt_tokens = await self.prompt_tokens(request)
        else:
            prompt_tokens, cached = await self.cached_prompt(request, ask)
        (choice,) = await self.model.plan(ask, prompt_tokens, overrides, cached_tokens=cached or 0)
        return MessageEmitter(
            choice,
            prompt_tokens,
            cached_tokens=cached,
            model=request.model,
            stream=request.stream,
            max_tokens=request.max_tokens or 0,
        )


def seconds_of(duration: bytes) -> float:
    """A Go duration (``20ms``, ``1.5s``, ``6m0s``) in seconds."""
    found = GO_DURATION.fullmatch(duration)
    if found is None:
        return 0.0
    minutes, amount, unit = found.groups()
    seconds = float(amount or 0) / (1000 if unit == b"ms" else 1)
    return 60 * int(minutes or 0) + seconds


def rfc3339(at: float) -> bytes:
    """A wall-clock moment as Anthropic's reset headers give it: ``2026-12-03T15:54:00Z``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ").encode()


class AnthropicDialect:
    """The ``anthropic-version`` check, and the rate-limit headers as Anthropic names
    them (``anthropic-ratelimit-requests-remaining``, ..., resets as RFC 3339 times)."""

    def check(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        check_version(headers)

    def renamed(self, headers: Sequence[tuple[bytes, bytes]]) -> Headers:
        found: Headers = []
        for name, value in headers:
            if not name.startswith(b"x-ratelimit-"):
                found.append((name, value))
                continue
            field, _, unit = name.removeprefix(b"x-ratelimit-").partition(b"-")
            if field == b"reset":
                value = rfc3339(time.time() + seconds_of(value))
            found.append((b"anthropic-ratelimit-%s-%s" % (unit, field), value))
        return found
