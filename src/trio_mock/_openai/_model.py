"""The simulated model behind every generation endpoint: from an ``Ask`` to planned choices.

Chat, completions and responses each translate their request into one ``Ask`` (what is
wanted: how many choices, limits, tools, an output schema, reasoning effort, logprobs); the
model decides what each reply is made of (reasoning, then text, JSON or tool calls) and plans
it. Holds what lives as long as the app: the tokenizers and the text they cut (``Voice``),
one for most models and one for each model served with its own tokenizer.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import attrs
import numpy as np
import orjson
from attrs import field, frozen

from .._config._knobs import ENV_PREFIX, SettingsError
from .._sim._corpus import WORDS, Corpus, CorpusError, shared_corpus
from .._sim._latency import draw_one
from .._sim._plan import COMMON_TOKENS, ChoicePlan, Limits, Segment, ToolCall, plan_reply
from .._sim._prefix_cache import PrefixCaches, block_hashes, cache_encoder
from .._sim._schema_check import check_schema
from .._sim._schema_rules import SchemaError
from .._sim._schema_values import sample_json, sample_json_object
from .._sim._text import CorpusText, PaddedText, RepeatedText, TextSource
from ._context import check_context, context_window
from ._errors import invalid
from ._frames import new_id

if TYPE_CHECKING:
    from .._config._settings import OutputSettings, Settings
    from .._sim._tokens import Tokenizer
    from ._context import Api
    from ._overrides import Overrides

# describe("tokenizer_models"), spelled out: _settings sits too deep in the import chain.
OWN_TOKENIZERS_KNOB = f"--tokenizer-models ({ENV_PREFIX}TOKENIZER_MODELS)"
PREFIX_CACHE_KNOB = f"--prefix-cache-blocks ({ENV_PREFIX}PREFIX_CACHE_BLOCKS)"
# Where each API holds its prompt: the ``param`` of a prompt the cache cannot hold.
PROMPT_PARAMS = {"chat": "messages", "completions": "prompt", "responses": "input"}
# Per-model answers are cached for names a client sends again; the name is the key, so
# both the count and each name's length are bounded (a name is whatever a client sends).
MAX_CACHED = 10_000
MAX_CACHED_NAME = 256
# A schema is checked once per distinct text; only texts up to this size are remembered.
MAX_CACHED_SCHEMA = 64 * 1024

# How much longer or shorter reasoning gets with each reasoning_effort, against medium.
EFFORT_SCALE = {
    "none": 0.0,
    "minimal": 0.125,
    "low": 0.5,
    "medium": 1.0,
    "high": 2.0,
    "xhigh": 4.0,
    "max": 8.0,
}


ToolMode = Literal["none", "auto", "required"]
# The responses API's built-in tools a tool_choice may name (spec: ToolChoiceTypes).
HOSTED_TOOLS = frozenset(
    {
        "file_search",
        "web_search",
        "web_search_preview",
        "web_search_preview_2025_03_11",
        "computer",
        "computer_use_preview",
        "computer_use",
        "code_interpreter",
        "image_generation",
        "mcp",
        "custom",
        "apply_patch",
        "shell",
    }
)


EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}  # a tool without any


@frozen
class FunctionTool:
    name: str
    parameters: dict[str, Any]


@frozen(kw_only=True)
class Ask:
    """What a generation request asks of the model, whatever endpoint it came through."""

    model: str
    n: int = 1
    limits: Limits = Limits()
    seed: int | None = None
    tools: tuple[FunctionTool, ...] = ()
    tool_choice: ToolMode | FunctionTool = "auto"
    parallel_tool_calls: bool = True
    json: Literal["object", "schema"] | None = None
    schema: dict[str, Any] | None = None
    reasoning_effort: str | None = None
    top_logprobs: int | None = None  # None: no logprobs
    can_reason: bool = True  # False for raw completions
    # Anthropic's extended thinking: the reply thinks first (whatever the model), at most
    # this many tokens.
    thinking_budget: int | None = None
    api: Api = "chat"  # which API asked: the context-length error is worded for it
    echo: str = field(default="", repr=False)  # what echo mode repeats


def check_effort(effort: str | None, param: str) -> None:
    if effort is not None and effort not in EFFORT_SCALE:
        raise invalid(
            f"Invalid value: '{effort}'. Supported values are: "
            + ", ".join(f"'{e}'" for e in EFFORT_SCALE)
            + ".",
            param,
            "invalid_value",
        )


def output_schema(schema: Any, param: str) -> dict[str, Any]:
    """A usable JSON schema, or a 400 naming where it is broken."""
    text = orjson.dumps(schema)
    # Clients send the same schemas again; a huge one is checked each time, not kept.
    problem = known_schema_problem(text) if len(text) <= MAX_CACHED_SCHEMA else schema_problem(text)
    if problem is not None:
        raise invalid(f"Invalid schema for '{param}': {problem}", param, "invalid_json_schema")
    result: dict[str, Any] = schema
    return result


def schema_problem(schema: bytes) -> str | None:
    try:
        check_schema(orjson.loads(schema))
    except SchemaError as error:
        return str(error)
    return None


known_schema_problem = functools.lru_cache(maxsize=1024)(schema_problem)


def pick_tool(
    tools: tuple[FunctionTool, ...], choice: Any, param: str
) -> tuple[tuple[FunctionTool, ...], ToolMode | FunctionTool]:
    """Resolve ``tool_choice`` against ``tools``: the tools it allows, and a mode or the one
    function it names. Takes chat's and the responses API's forms of each choice."""
    if choice is None:
        return tools, "auto"
    if choice in ("none", "auto", "required"):
        if choice == "required" and not tools:
            raise invalid("Tool choice 'required' needs at least one tool in 'tools'.", param)
        mode: ToolMode = choice
        return tools, mode
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools", choice)  # chat nests it, responses does not
        listed = allowed.get("tools") if isinstance(allowed, dict) else None
        wanted = allowed.get("mode") if isinstance(allowed, dict) else None
        if not isinstance(listed, list) or wanted not in ("auto", "required"):
            raise invalid(
                "Invalid 'tool_choice': allowed_tools needs a 'mode' of 'auto' or 'required' "
                "and a list of 'tools'.",
                param,
                "invalid_value",
            )
        names = [function_name(t) for t in listed]
        mode = "auto" if wanted == "auto" else "required"
        return tuple(find_tool(tools, n, param) for n in names if n is not None), mode
    if isinstance(choice, dict) and choice.get("type") in HOSTED_TOOLS:
        return tools, "none"  # a hosted tool (web search, ...): never simulated, so a message
    name = function_name(choice) if isinstance(choice, dict) else None
    if name is None:
        raise invalid(
            "Invalid 'tool_choice': expected 'none', 'auto', 'required', "
            '{"type": "function", ...} naming a function, or {"type": "allowed_tools", ...}.',
            param,
            "invalid_value",
        )
    return tools, find_tool(tools, name, param)


def function_name(choice: Any) -> str | None:
    """The function a choice names: ``{"type": "function", "function": {"name"}}`` (chat) or
    ``{"type": "function", "name"}`` (responses)."""
    if not isinstance(choice, dict) or choice.get("type") != "function":
        return None
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else choice.get("name")
    return name if isinstance(name, str) else None


def find_tool(tools: tuple[FunctionTool, ...], name: str, param: str) -> FunctionTool:
    for tool in tools:
        if tool.name == name:
            return tool
    raise invalid(
        f"Invalid 'tool_choice': function '{name}' is not among the tools.", param, "invalid_value"
    )


T = TypeVar("T")
Offload = Callable[..., Awaitable[Any]]  # ``_offload.off_loop``'s shape: (chars, func, *args)


async def inline(chars: int, func: Callable[..., T], *args: Any) -> T:
    """Tokenizer work where it is asked for (``MockModel``'s default ``offload``)."""
    return func(*args)


class Voice:
    """What replies are made of for one tokenizer.

    Args:
      corpus: one already built for this tokenizer and these settings (a runtime change
        that leaves the corpus knobs alone reuses it); built (or shared) when None.
    """

    def __init__(
        self, out: OutputSettings, tokenizer: Tokenizer, corpus: Corpus | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.corpus: Corpus | None = None
        # The reply's text source, the same for every request; None in echo mode.
        self.text: TextSource | None = None
        # Logprob alternatives: the corpus's pieces, or common words in the other modes.
        self.alternatives: list[str] = [*COMMON_TOKENS, *(f" {w}" for w in WORDS[:256])]
        if out.output_mode == "corpus":
            if corpus is None:
                corpus = shared_corpus(tokenizer, out.corpus_articles, out.corpus_seed)
            self.corpus = corpus
            self.text = CorpusText(corpus, out)
            self.alternatives = corpus.pieces[:256]
        elif out.output_mode == "fixed":
            self.text = RepeatedText(tokenizer.pieces(out.fixed_text))


def own_voice(out: OutputSettings, name: str, tokenizer: Tokenizer) -> Voice:
    """The voice of ``name``, a model with its own tokenizer.

    Raises:
      SettingsError: its corpus cannot be cut into that tokenizer's tokens.
    """
    try:
        return Voice(out, tokenizer)
    except CorpusError as error:
        raise SettingsError(f"{OWN_TOKENIZERS_KNOB}: {name}: {error}") from None


class MockModel:
    """Decides what each reply holds and plans it; shared by all generation endpoints."""

    def __init__(
        self,
        settings: Settings,
        tokenizer: Tokenizer,
        corpus: Corpus | None = None,
        offload: Offload | None = None,
        tokenizers: Mapping[str, Tokenizer] | None = None,
        *,
        prefix_caches: PrefixCaches | None = None,
    ) -> None:
        """``corpus``: one already built for these settings and ``tokenizer`` (a runtime
        config change that leaves the corpus knobs alone reuses it). ``offload``: how to
        run tokenizer work off the event loop (``_offload.off_loop``); inline when None.
        ``tokenizers``: model name -> that model's own tokenizer; the others use
        ``tokenizer``. ``prefix_caches``: the caches of the model this one replaces (a
        runtime change keeps what the engine holds); new ones when the settings ask for
        a prefix cache, None when they do not."""
        self.settings = settings
        self.offload = offload or inline
        self.voice = Voice(settings.output, tokenizer, corpus)
        self.tokenizer, self.corpus = tokenizer, self.voice.corpus
        self.text, self.alternatives = self.voice.text, self.voice.alternatives
        voices = {id(self.tokenizer): self.voice}  # models sharing a tokenizer share its voice
        self.voices: dict[str, Voice] = {}
        for name, own in (tokenizers or {}).items():
            if id(own) not in voices:
                voices[id(own)] = own_voice(settings.output, name, own)
            self.voices[name] = voices[id(own)]
        self.unseeded = np.random.default_rng()  # shared: building a generator costs ~10 us
        self.reasoning: dict[str, bool] = {}  # model name -> whether it reasons
        self.windows: dict[str, int] = {}  # model name -> context length
        latency = settings.latency
        if prefix_caches is None and latency.prefix_cache_blocks:
            prefix_caches = PrefixCaches(latency.prefix_cache_blocks, latency.kv_block_size)
        self.prefix_caches = prefix_caches

    def voice_for(self, model: str) -> Voice:
        """The voice of ``model``: its own tokenizer's, else the default one."""
        return self.voices.get(model, self.voice) if self.voices else self.voice

    def tokenizer_for(self, model: str) -> Tokenizer:
        return self.voice_for(model).tokenizer

    def reasons(self, model: str) -> bool:
        known = self.reasoning.get(model)
        if known is None:  # matching patterns costs more than the rest of planning
            patterns = self.settings.models.reasoning_models
            known = any(fnmatch.fnmatchcase(model, p) for p in patterns)
            if len(self.reasoning) < MAX_CACHED and len(model) <= MAX_CACHED_NAME:
                self.reasoning[model] = known
        return known

    def context_window(self, model: str) -> int:
        known = self.windows.get(model)
        if known is None:
            known = context_window(self.settings.models, model)
            if len(self.windows) < MAX_CACHED and len(model) <= MAX_CACHED_NAME:
                self.windows[model] = known
        return known

    def cache_encoder(self, model: str) -> Callable[[str], list[int]]:
        """How the prefix cache reads ``model``'s texts as ids (``cache_encoder``)."""
        return cache_encoder(self.tokenizer_for(model))

    def prompt_hashes(self, ids: list[int]) -> list[int]:
        """The prompt's block hashes for the prefix cache (pure: may run in a thread)."""
        return block_hashes(ids, self.settings.latency.kv_block_size)

    def cached_tokens(self, ask: Ask, hashes: list[int], prompt_tokens: int) -> int:
        """How many of the prompt's tokens the model's prefix cache holds; the prompt's
        blocks are cached from now on. On the event loop: the cache is shared.

        Raises:
          OpenAIError: the prompt needs more blocks than the whole cache holds, so no
            engine configured so could ever run it.
        """
        caches = self.prefix_caches
        assert caches is not None
        # First the context window, as ``plan`` checks it: a refused prompt is not cached.
        check_context(self.context_window(ask.model), prompt_tokens, ask.limits.max_tokens, ask.api)
        if not caches.fits(prompt_tokens):
            raise invalid(
                f"The prompt ({prompt_tokens} tokens) needs more KV blocks of "
                f"{caches.block_size} tokens than the {caches.blocks} the cache holds "
                f"({PREFIX_CACHE_KNOB}). Please reduce the length of the prompt.",
                PROMPT_PARAMS.get(ask.api, "messages"),
                "context_length_exceeded",
            )
        return caches.lookup(ask.model, hashes, prompt_tokens)

    async def source_for(self, echo: str, voice: Voice) -> TextSource:
        if voice.text is not None:
            return voice.text
        return RepeatedText(await self.offload(len(echo), voice.tokenizer.pieces, echo))

    def rng(self, ask: Ask, overrides: Overrides) -> np.random.Generator:
        seed = overrides.seed if overrides.seed is not None else ask.seed
        return self.unseeded if seed is None else np.random.default_rng(seed & (2**64 - 1))

    async def plan(
        self,
        ask: Ask,
        prompt_tokens: int,
        overrides: Overrides,
        first_index: int = 0,
        cached_tokens: int = 0,
    ) -> list[ChoicePlan]:
        """One plan per choice; a seed makes text, structure and schedule reproducible.

        Args:
          overrides: the request's ``x-mock-*`` headers, which win over the settings.
          first_index: the first choice's ``index`` (completions number choices per prompt).
          cached_tokens: the prompt's prefix the cache holds: only the rest is prefilled.
        """
        window = self.context_window(ask.model)
        check_context(window, prompt_tokens, ask.limits.max_tokens, ask.api)
        limits = attrs.evolve(ask.limits, room=window - prompt_tokens)
        rng = self.rng(ask, overrides)
        voice = self.voice_for(ask.model)
        source = await self.source_for(ask.echo, voice)
        out = self.settings.output
        per_event = (out.tokens_per_event_min, out.tokens_per_event_max)
        latency = overrides.apply(self.settings.latency)
        plans = []
        for i in range(ask.n):
            segments = self.thinking(ask, source, rng)
            segments += self.answer(ask, source, rng, overrides, voice.tokenizer)
            plans.append(
                plan_reply(
                    first_index + i,
                    segments,
                    limits,
                    latency,
                    per_event,
                    rng,
                    prompt_tokens=prompt_tokens - cached_tokens,  # the prefill TTFT pays for
                    top_logprobs=ask.top_logprobs,
                    alternatives=voice.alternatives,
                )
            )
        return plans

    def thinking(self, ask: Ask, source: TextSource, rng: np.random.Generator) -> list[Segment]:
        """Reasoning models think first, at a length scaled by the effort asked for."""
        budget = ask.thinking_budget
        if not ask.can_reason or (budget is None and not self.reasons(ask.model)):
            return []
        out = self.settings.output
        scale = EFFORT_SCALE[ask.reasoning_effort or "medium"]
        mean, stddev = out.reasoning_tokens_mean * scale, out.reasoning_tokens_stddev * scale
        length = round(draw_one("normal", mean, stddev, 0, budget, rng))
        if budget is not None:  # asked for, so never empty
            length = max(length, 1)
        if length == 0:
            return []
        return [Segment(kind="reasoning", source=source, natural=length)]

    def answer(
        self,
        ask: Ask,
        source: TextSource,
        rng: np.random.Generator,
        overrides: Overrides,
        tokenizer: Tokenizer,
    ) -> list[Segment]:
        """Tool calls, JSON or text, as the request's tools and format ask, unless a
        scripted rule says what to answer; cut into ``tokenizer``'s tokens."""
        if (scripted := self.scripted(ask, overrides, tokenizer)) is not None:
            return scripted
        if calls := self.tool_calls(ask, rng, tokenizer):
            return calls
        if ask.json is not None:
            value = sample_json(ask.schema or {}, rng) if ask.json == "schema" else None
            text = orjson.dumps(value if ask.json == "schema" else sample_json_object(rng))
            pieces = tokenizer.pieces(text.decode())
            return [Segment(kind="content", source=PaddedText(pieces), natural=len(pieces))]
        natural = overrides.output_tokens
        length = source.natural_length(rng) if natural is None else natural
        return [Segment(kind="content", source=source, natural=length)]

    def scripted(
        self, ask: Ask, overrides: Overrides, tokenizer: Tokenizer
    ) -> list[Segment] | None:
        """A scripted rule's exact content, or its tool call (as text where the API has
        no tool calls)."""
        call = overrides.tool_call
        if call is not None and ask.api != "completions":
            pieces = tokenizer.pieces(call.arguments)
            tool = ToolCall(new_id("call_", 24), call.name, 0)
            return [Segment(kind="tool", source=PaddedText(pieces), natural=len(pieces), call=tool)]
        text = call.arguments if call is not None else overrides.content
        if text is None:
            return None
        pieces = tokenizer.pieces(text)
        return [Segment(kind="content", source=PaddedText(pieces), natural=len(pieces))]

    def tool_calls(self, ask: Ask, rng: np.random.Generator, tokenizer: Tokenizer) -> list[Segment]:
        """Which functions the reply calls, if any, with arguments valid for their schemas."""
        if not ask.tools or ask.tool_choice == "none":
            return []
        if isinstance(ask.tool_choice, FunctionTool):
            chosen = [ask.tool_choice]
        else:
            if ask.tool_choice == "auto" and rng.random() >= self.settings.output.tool_call_rate:
                return []
            most = self.settings.output.max_parallel_tool_calls if ask.parallel_tool_calls else 1
            count = int(rng.integers(1, min(most, len(ask.tools)) + 1))
            chosen = [ask.tools[int(i)] for i in rng.choice(len(ask.tools), count, replace=False)]
        segments = []
        for k, tool in enumerate(chosen):
            arguments = orjson.dumps(sample_json(tool.parameters, rng)).decode()
            pieces = tokenizer.pieces(arguments)
            call = ToolCall(new_id("call_", 24), tool.name, k)
            segments.append(
                Segment(kind="tool", source=PaddedText(pieces), natural=len(pieces), call=call)
            )
        return segments
