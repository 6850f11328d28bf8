"""``POST /v1/chat/completions``: from the request body to a planned ``ChatEmitter``.

Counts the prompt as OpenAI does (off the event loop when it is long), checks the values,
and translates the request into the model's ``Ask``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .._openai._context import REPLY_PRIMING, TOKENS_PER_IMAGE, TOKENS_PER_MESSAGE, TOKENS_PER_NAME
from .._openai._convert import structure
from .._openai._errors import invalid
from .._openai._frames import ChatEmitter
from .._openai._model import (
    EMPTY_PARAMETERS,
    Ask,
    FunctionTool,
    check_effort,
    output_schema,
    pick_tool,
)
from .._openai._openrouter import OpenRouterChat, openai_request
from .._openai._prompt_ids import message_ids, priming_ids
from .._openai._protocol import ChatCompletionRequest
from .._openai._validate import MAX_TOP_LOGPROBS, at_least, at_most, check_chat, stops
from .._sim._plan import Limits
from ._offload import off_loop

if TYPE_CHECKING:
    from .._openai._model import MockModel
    from .._openai._openrouter import Prices
    from .._openai._overrides import Overrides
    from .._openai._protocol import ChatMessage
    from .._sim._plan import ChoicePlan


def message_text(message: ChatMessage) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.text or "" for part in content if part.type == "text")


def chat_tools(chat: ChatCompletionRequest) -> tuple[FunctionTool, ...]:
    tools = []
    for i, tool in enumerate(chat.tools or ()):
        if tool.type != "function":
            raise invalid(
                f"Invalid value: '{tool.type}'. Supported values are: 'function'.",
                f"tools[{i}].type",
                "invalid_value",
            )
        if tool.function is None:
            raise invalid(
                f"Missing required parameter: 'tools[{i}].function'.",
                f"tools[{i}].function",
                "missing_required_parameter",
            )
        parameters = tool.function.parameters
        if parameters is not None:
            output_schema(parameters, f"tools[{i}].function.parameters")
        tools.append(FunctionTool(tool.function.name, parameters or EMPTY_PARAMETERS))
    return tuple(tools)


def chat_ask(chat: ChatCompletionRequest) -> Ask:
    """Check the parts of the request the model acts on, and translate them."""
    tools = chat_tools(chat)
    json_mode: Literal["object", "schema"] | None = None
    schema = None
    if (fmt := chat.response_format) is not None and fmt.type != "text":
        json_mode = "object"
        if fmt.type == "json_schema":
            if fmt.json_schema is None:
                raise invalid(
                    "Missing required parameter: 'response_format.json_schema'.",
                    "response_format.json_schema",
                    "missing_required_parameter",
                )
            if fmt.json_schema.schema is not None:
                json_mode = "schema"
                schema = output_schema(fmt.json_schema.schema, "response_format.json_schema.schema")
    check_effort(chat.reasoning_effort, "reasoning_effort")
    top = None
    if chat.top_logprobs is not None:
        if not chat.logprobs:
            raise invalid(
                "Invalid value for 'top_logprobs': 'logprobs' must be true to use it.",
                "top_logprobs",
            )
        at_least("top_logprobs", chat.top_logprobs, 0)
        at_most("top_logprobs", chat.top_logprobs, MAX_TOP_LOGPROBS)
    if chat.logprobs:
        top = chat.top_logprobs or 0
    users = [m for m in chat.messages if m.role == "user"] or chat.messages
    allowed, choice = pick_tool(tools, chat.tool_choice, "tool_choice")
    return Ask(
        model=chat.model,
        n=chat.n,
        limits=Limits(
            max_tokens=chat.token_limit,
            min_tokens=chat.min_tokens,
            ignore_eos=chat.ignore_eos,
            stop=stops(chat.stop),
        ),
        seed=chat.seed,
        tools=allowed,
        tool_choice=choice,
        parallel_tool_calls=chat.parallel_tool_calls is not False,
        json=json_mode,
        schema=schema,
        reasoning_effort=chat.reasoning_effort,
        top_logprobs=top,
        echo=message_text(users[-1]),
    )


class ChatHandler:
    """Turns a chat request body into a planned reply."""

    def __init__(self, model: MockModel) -> None:
        self.model = model
        self.settings = model.settings

    def render(self, choices: list[ChoicePlan], prompt_tokens: int, **common: Any) -> ChatEmitter:
        """The reply's renderer, in this route's dialect."""
        return ChatEmitter(choices, prompt_tokens, **common)

    def hash_messages(self, messages: list[ChatMessage], model: str) -> tuple[int, list[int]]:
        """The prompt's tokens (as ``count_messages`` counts them) and its block hashes
        for the prefix cache."""
        encode = self.model.cache_encoder(model)
        ids: list[int] = []
        for m in messages:
            name = encode(m.name) if m.name else ()
            images = 0
            if isinstance(m.content, list):
                images = sum(p.type == "image_url" for p in m.content)
            ids += message_ids(m.role, encode(message_text(m)), name, images)
        ids += priming_ids()
        return len(ids), self.model.prompt_hashes(ids)

    async def cached_prompt(self, chat: ChatCompletionRequest, ask: Ask) -> tuple[int, int]:
        """The prompt's tokens, and how many of them the prefix cache holds."""
        chars = sum(len(message_text(m)) for m in chat.messages)
        tokens, hashes = await off_loop(chars, self.hash_messages, chat.messages, chat.model)
        return tokens, self.model.cached_tokens(ask, hashes, tokens)

    def count_messages(self, messages: list[ChatMessage], model: str) -> int:
        """The prompt's tokens, with ``model``'s tokenizer."""
        total = REPLY_PRIMING
        encode = self.model.tokenizer_for(model).encode
        for m in messages:
            total += TOKENS_PER_MESSAGE + len(encode(message_text(m))) + 1  # + the role
            if m.name:
                total += TOKENS_PER_NAME + len(encode(m.name))
            if isinstance(m.content, list):
                total += TOKENS_PER_IMAGE * sum(p.type == "image_url" for p in m.content)
        return total

    async def prompt_tokens(self, chat: ChatCompletionRequest) -> int:
        """Count the prompt; a long one is tokenized in a thread so streams keep pace."""
        chars = sum(len(message_text(m)) for m in chat.messages)
        return await off_loop(chars, self.count_messages, chat.messages, chat.model)

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> ChatEmitter:
        chat = structure(data, ChatCompletionRequest)
        check_chat(chat, self.settings.models)
        ask = chat_ask(chat)
        cached: int | None = None
        if self.model.prefix_caches is None:
            prompt_tokens = await self.prompt_tokens(chat)
        else:
            prompt_tokens, cached = await self.cached_prompt(chat, ask)
        choices = await self.model.plan(ask, prompt_tokens, overrides, cached_tokens=cached or 0)
        return self.render(
            choices,
            prompt_tokens,
            cached_tokens=cached,
            model=chat.model,
            fingerprint=self.settings.models.system_fingerprint,
            stream=chat.stream,
            include_usage=chat.include_usage,
            max_tokens=chat.token_limit,
        )


class OpenRouterChatHandler(ChatHandler):
    """Chat on ``/api/v1/chat/completions``."""

    def __init__(self, model: MockModel, prices: Prices) -> None:
        super().__init__(model)
        self.prices = prices

    def render(
        self, choices: list[ChoicePlan], prompt_tokens: int, **common: Any
    ) -> OpenRouterChat:
        price = self.prices.of(common["model"])
        provider = self.settings.models.provider_name
        return OpenRouterChat(choices, prompt_tokens, provider=provider, price=price, **common)

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> OpenRouterChat:
        body = openai_request(data, self.settings.models, "reasoning_effort")
        reply = await super().prepare(body, overrides)
        assert isinstance(reply, OpenRouterChat)
        return reply
