"""The ``/api/v1`` handlers: OpenAI's, with OpenRouter's request extras taken out first and
its replies rendered in its dialect (``_openai._openrouter``).

Built once per route, so a ``/v1`` request never pays for any of this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._openai._openrouter import OpenRouterChat, OpenRouterChoices, Prices, openai_request
from ._chat import ChatHandler
from ._completions import CompletionEmitter, CompletionsHandler

if TYPE_CHECKING:
    from .._config._settings import ModelSettings
    from .._openai._frames import PlannedReply
    from .._openai._model import MockModel
    from .._openai._openrouter import Reasoning
    from .._openai._overrides import Overrides
    from .._sim._plan import ChoicePlan
    from ._exchange import Handler


class OpenRouterCompletion(OpenRouterChoices, CompletionEmitter):
    """A text completion as OpenRouter sends it."""


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


class OpenRouterCompletionsHandler(CompletionsHandler):
    """Text completions on ``/api/v1/completions``."""

    def __init__(self, model: MockModel, prices: Prices) -> None:
        super().__init__(model)
        self.prices = prices

    def render(
        self, choices: list[ChoicePlan], prompt_tokens: int, **common: Any
    ) -> OpenRouterCompletion:
        price = self.prices.of(common["model"])
        provider = self.settings.models.provider_name
        return OpenRouterCompletion(
            choices, prompt_tokens, provider=provider, price=price, **common
        )

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> CompletionEmitter:
        body = openai_request(data, self.settings.models, "drop")
        return await super().prepare(body, overrides)


class WithExtras:
    """Another API's handler behind OpenRouter's extras (embeddings, responses): they are
    checked and taken out, the model chosen; the reply is the OpenAI one."""

    def __init__(self, handler: Handler, models: ModelSettings, reasoning: Reasoning) -> None:
        self.handler = handler
        self.models = models
        self.reasoning: Reasoning = reasoning

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> PlannedReply:
        body = openai_request(data, self.models, self.reasoning)
        return await self.handler.prepare(body, overrides)
