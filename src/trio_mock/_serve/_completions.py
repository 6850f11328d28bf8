"""``POST /v1/completions`` (the legacy text endpoint, still used by benchmarks).

One choice per prompt and ``n`` (index ``prompt * n + j``), each planned with its own
prompt's length; ``echo`` puts the prompt before the reply, and ``logprobs`` uses the legacy
shape (``tokens``, ``token_logprobs``, ``top_logprobs``, ``text_offset``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from .._openai._convert import structure
from .._openai._errors import invalid
from .._openai._frames import ChoicesEmitter
from .._openai._model import Ask
from .._openai._openrouter import OpenRouterChoices, openai_request
from .._openai._protocol import CompletionRequest
from .._openai._validate import MAX_N, at_least, at_most, check_model, check_sampling, stops
from .._sim._plan import Limits, token_logprobs
from .._sim._prefix_cache import cache_encoder
from .._sim._tokens import unknown_token
from ._offload import off_loop

if TYPE_CHECKING:
    from .._openai._model import MockModel, Voice
    from .._openai._openrouter import Prices
    from .._openai._overrides import Overrides
    from .._sim._plan import ChoicePlan, Logprobs
    from .._sim._tokens import Tokenizer

MAX_PROMPTS = 2048
MAX_LOGPROBS = 5
MAX_BEST_OF = 20


def prompt_list(prompt: Any) -> list[str | list[int]]:
    """The prompts of a request: strings or token arrays, never empty."""
    shape_error = invalid(
        "Invalid type for 'prompt': expected a string, an array of strings, an array of "
        "tokens, or an array of token arrays.",
        "prompt",
        "invalid_type",
    )

    def is_tokens(value: Any) -> bool:
        return isinstance(value, list) and all(
            isinstance(t, int) and not isinstance(t, bool) for t in value
        )

    if isinstance(prompt, str):
        return [prompt]
    if not isinstance(prompt, list):
        raise shape_error
    if not prompt:
        raise invalid("Invalid 'prompt': empty array.", "prompt", "empty_array")
    if is_tokens(prompt):
        return [prompt]
    if all(isinstance(p, str) for p in prompt) or all(is_tokens(p) and p for p in prompt):
        at_most("prompt", len(prompt), MAX_PROMPTS, "array")
        return list(prompt)
    raise shape_error


class CompletionsHandler:
    """Turns a completions request body into a planned reply."""

    def __init__(self, model: MockModel) -> None:
        self.model = model
        self.settings = model.settings

    def render(
        self, choices: list[ChoicePlan], prompt_tokens: int, **common: Any
    ) -> CompletionEmitter:
        """The reply's renderer, in this route's dialect."""
        return CompletionEmitter(choices, prompt_tokens, **common)

    def texts(
        self, prompts: list[str | list[int]], tokenizer: Tokenizer, hashing: bool = False
    ) -> list[tuple[str, int, list[int]]]:
        """Each prompt's text, token count and, ``hashing`` for the prefix cache, block
        hashes (else none)."""
        out = []
        encode = cache_encoder(tokenizer) if hashing else tokenizer.encode
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, str):
                ids = encode(prompt)
                text = prompt
            else:
                param = "prompt" if len(prompts) == 1 else f"prompt[{i}]"
                if unknown_token(tokenizer, prompt) is not None:
                    raise invalid(f"Invalid token id in '{param}'.", param, "invalid_value")
                ids, text = prompt, tokenizer.decode(prompt)
            out.append((text, len(ids), self.model.prompt_hashes(ids) if hashing else []))
        return out

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> CompletionEmitter:
        request = structure(data, CompletionRequest)
        prompts = prompt_list(request.prompt)
        at_least("n", request.n, 1)
        at_most("n", request.n, MAX_N)
        if request.max_tokens is not None:
            at_least("max_tokens", request.max_tokens, 1)
        at_least("min_tokens", request.min_tokens, 0)
        if request.logprobs is not None:
            at_least("logprobs", request.logprobs, 0)
            at_most("logprobs", request.logprobs, MAX_LOGPROBS)
        if request.best_of is not None:
            at_least("best_of", request.best_of, 0)
            at_most("best_of", request.best_of, MAX_BEST_OF)
        check_sampling(request)
        if request.stream_options is not None and not request.stream:
            raise invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        check_model(request.model, self.settings.models)
        chars = sum(len(p) for p in prompts)
        voice = self.model.voice_for(request.model)
        hashing = self.model.prefix_caches is not None
        texts = await off_loop(chars, self.texts, prompts, voice.tokenizer, hashing)
        limits = Limits(
            max_tokens=request.max_tokens,
            min_tokens=request.min_tokens,
            ignore_eos=request.ignore_eos,
            stop=stops(request.stop),
        )
        choices: list[ChoicePlan] = []
        cached = 0  # each prompt is a sequence of its own: the cache is asked for each
        for p, (text, tokens, hashes) in enumerate(texts):
            ask = Ask(
                model=request.model,
                n=request.n,
                limits=limits,
                seed=None if request.seed is None else request.seed + p,
                top_logprobs=request.logprobs,
                can_reason=False,
                api="completions",
                echo=text,
            )
            hit = self.model.cached_tokens(ask, hashes, tokens) if hashing else 0
            cached += hit
            choices += await self.model.plan(
                ask, tokens, overrides, first_index=p * request.n, cached_tokens=hit
            )
        echoes = [text for text, _, _ in texts] if request.echo else None
        logprobs = None
        if request.echo:
            logprobs = await off_loop(chars, self.echo_logprobs, prompts, request.logprobs, voice)
        return self.render(
            choices,
            sum(tokens for _, tokens, _ in texts),
            cached_tokens=cached if hashing else None,
            model=request.model,
            fingerprint=self.settings.models.system_fingerprint,
            stream=request.stream,
            include_usage=request.include_usage,
            max_tokens=request.max_tokens,
            echoes=echoes,
            n=request.n,
            echo_logprobs=logprobs,
        )

    def echo_logprobs(
        self, prompts: list[str | list[int]], top: int | None, voice: Voice
    ) -> list[tuple[list[str], Logprobs]] | None:
        """The echoed prompts' tokens (the ids as sent, for token prompts) and their
        logprobs (the first token of each has none), in the model's ``voice``."""
        if top is None:
            return None
        tokenizer, rng = voice.tokenizer, self.model.unseeded
        out = []
        for prompt in prompts:
            if isinstance(prompt, str):
                pieces = tokenizer.pieces(prompt)
            else:
                pieces = [tokenizer.decode([t]) for t in prompt]
            out.append((pieces, token_logprobs(pieces, top, voice.alternatives, rng)))
        return out


class CompletionEmitter(ChoicesEmitter):
    """Renders a ``text_completion`` body or its stream."""

    object_name = "text_completion"
    id_prefix = "cmpl-"

    def __init__(
        self,
        choices: Sequence[ChoicePlan],
        prompt_tokens: int,
        *,
        echoes: list[str] | None,
        n: int,
        echo_logprobs: list[tuple[list[str], Logprobs]] | None,
        **common: Any,
    ) -> None:
        super().__init__(choices, prompt_tokens, **common)
        self.echoes = echoes
        self.n = n
        self.echo_logprobs = echo_logprobs

    def echo(self, choice: ChoicePlan) -> str:
        return "" if self.echoes is None else self.echoes[choice.index // self.n]

    def logprobs(self, choice: ChoicePlan, start: int, end: int, offset: int) -> dict[str, Any]:
        """Legacy logprobs for tokens ``start..end``; ``offset`` is where their text begins.
        The first event also carries the echoed prompt's tokens (the very first has none)."""
        assert choice.logprobs is not None
        tokens = choice.pieces[start:end]
        values: list[float | None] = list(choice.logprobs.values[start:end])
        tops: list[dict[str, float] | None] = [dict(row) for row in choice.logprobs.top[start:end]]
        if start == 0 and self.echo_logprobs is not None:
            pieces, echoed = self.echo_logprobs[choice.index // self.n]
            if pieces:
                tokens = pieces + tokens
                values = [None, *echoed.values[1:], *values]
                tops = [None, *(dict(row) for row in echoed.top[1:]), *tops]
                offset = 0
        starts = np.cumsum([offset, *(len(t) for t in tokens[:-1])]).tolist() if tokens else []
        return {
            "tokens": tokens,
            "token_logprobs": values,
            "top_logprobs": tops,
            "text_offset": starts,
        }

    def body_object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [
                {
                    "text": self.echo(c) + c.text,
                    "index": c.index,
                    "logprobs": None
                    if c.logprobs is None
                    else self.logprobs(c, 0, c.tokens, len(self.echo(c))),
                    "finish_reason": c.finish_reason,
                }
                for c in self.choices
            ],
            "usage": self.usage(),
        }

    def choice_frames(self, choice: ChoicePlan) -> Iterator[bytes]:
        tail = b',"usage":null}\n\n' if self.include_usage else b"}\n\n"
        head = self.chunk_head() + b'[{"text":"'
        index = b'","index":%d,"logprobs":' % choice.index
        echo = self.echo(choice)
        prefix = orjson.dumps(echo)[1:-1]
        ends, escaped, final = choice.event_ends, choice.escaped, len(choice.event_ends) - 1
        offset = len(echo)
        for k, end in enumerate(ends):
            start = ends[k - 1] if k else 0
            text = b"".join(escaped[start:end])
            logprobs = b"null"
            if choice.logprobs is not None:
                logprobs = orjson.dumps(self.logprobs(choice, start, end, offset))
                offset += sum(len(p) for p in choice.pieces[start:end])
            finish = b'"%s"' % choice.finish_reason.encode() if k == final else b"null"
            yield (
                head
                + (prefix + text if k == 0 else text)
                + index
                + logprobs
                + b',"finish_reason":'
                + finish
                + b"}]"
                + tail
            )


class OpenRouterCompletion(OpenRouterChoices, CompletionEmitter):
    """A text completion as OpenRouter sends it."""


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
