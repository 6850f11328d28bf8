"""Chat completions from parsed request to plan: prompt tokens, text source, choices.

Holds what lives as long as the app (tokenizer, corpus) and turns a validated request into
one ``ChoicePlan`` per choice. Tokenizing happens here, off the event loop when it is long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ._corpus import Corpus
from ._generate import CorpusText, RepeatedText, TextSource
from ._plan import ChoicePlan, Limits, plan_choice
from ._tokens import Tokenizer, off_loop

if TYPE_CHECKING:
    from ._protocol import ChatCompletionRequest, ChatMessage, Overrides
    from ._settings import Settings

# OpenAI's accounting: each message costs 3 tokens of framing (4 with a name), and the
# reply is primed with 3 more. An image part costs the low-detail 85 tokens.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
TOKENS_PER_IMAGE = 85


def message_text(message: ChatMessage) -> str:
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part.text or "" for part in content if part.type == "text")


class ChatModel:
    """The simulated model behind the chat endpoint."""

    def __init__(self, settings: Settings, tokenizer: Tokenizer) -> None:
        self.settings = settings
        self.tokenizer = tokenizer
        out = settings.output
        # The reply's text source, the same for every request; None in echo mode.
        self.text: TextSource | None = None
        if out.output_mode == "corpus":
            self.text = CorpusText(Corpus(tokenizer, out.corpus_articles, out.corpus_seed), out)
        elif out.output_mode == "fixed":
            self.text = RepeatedText(tokenizer.pieces(out.fixed_text))
        self.unseeded = np.random.default_rng()  # shared: building a generator costs ~10 us

    def count_messages(self, messages: list[ChatMessage]) -> int:
        total = REPLY_PRIMING
        encode = self.tokenizer.encode
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
        return await off_loop(chars, self.count_messages, chat.messages)

    async def source_for(self, chat: ChatCompletionRequest) -> TextSource:
        if self.text is not None:
            return self.text
        users = [m for m in chat.messages if m.role == "user"] or chat.messages
        text = message_text(users[-1])  # echo mode
        return RepeatedText(await off_loop(len(text), self.tokenizer.pieces, text))

    async def plan(
        self, chat: ChatCompletionRequest, prompt_tokens: int, overrides: Overrides
    ) -> list[ChoicePlan]:
        """One plan per choice; a ``seed`` makes text and schedule reproducible.

        Args:
          overrides: the request's ``x-mock-*`` headers, which win over the settings.
        """
        seed = overrides.seed if overrides.seed is not None else chat.seed
        rng = self.unseeded if seed is None else np.random.default_rng(seed & (2**64 - 1))
        source = await self.source_for(chat)
        limits = Limits(
            max_tokens=chat.token_limit, min_tokens=chat.min_tokens, ignore_eos=chat.ignore_eos
        )
        out = self.settings.output
        per_event = (out.tokens_per_event_min, out.tokens_per_event_max)
        latency = overrides.apply(self.settings.latency)
        return [
            plan_choice(
                i,
                source,
                limits,
                latency,
                per_event,
                rng,
                prompt_tokens=prompt_tokens,
                natural=overrides.output_tokens,
            )
            for i in range(chat.n)
        ]
