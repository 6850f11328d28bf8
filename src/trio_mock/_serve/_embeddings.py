"""Embeddings, sans-IO: ``POST /v1/embeddings`` from decoded JSON to response bytes.

Parses the request, enforces OpenAI's limits as 400s, counts tokens, and renders vectors that
are deterministic per (model, input text), unit length, and shortened as OpenAI shortens them
for ``dimensions``. Nothing here does I/O or waits: the job carries its ``delay_s`` for the
caller to sleep, and its ``body()`` for the caller to send.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import numpy.typing as npt
import orjson
import trio
from attrs import frozen

from .._openai._convert import converter, structure
from .._openai._errors import invalid
from .._openai._validate import at_least, check_model
from .._sim._tokens import unknown_token
from ._offload import off_loop

if TYPE_CHECKING:
    from .._config._settings import Settings
    from .._openai._errors import OpenAIError
    from .._openai._overrides import Overrides
    from .._sim._tokens import Tokenizer

EmbeddingInput = str | list[str] | list[int] | list[list[int]]
EncodingFormat = Literal["float", "base64"]
Float32Array = npt.NDArray[np.float32]

# OpenAI's limits for every embedding model.
MAX_INPUTS = 2048
MAX_INPUT_TOKENS = 8192
MAX_REQUEST_TOKENS = 300_000
# Native vector lengths: text-embedding-3-large, and everything else (3-small, ada-002).
LARGE_DIMENSIONS = 3072
DEFAULT_DIMENSIONS = 1536

EXPECTED_INPUT = "expected a string, an array of strings, or an array of token ids"
# OpenAI's words for an empty string (alone or in an array) or an empty token array.
INVALID_INPUT = (
    "'$.input' is invalid. Please check the API reference: "
    "https://platform.openai.com/docs/api-reference."
)


def _only(items: list[Any], kind: type) -> bool:
    """Whether every item is exactly ``kind`` (so ``True`` is not a token id)."""
    return set(map(type, items)) <= {kind}  # C-speed, for long token arrays


def _structure_input(value: Any, _: Any) -> EmbeddingInput:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if _only(value, str) or _only(value, int):  # [] passes; prepare() rejects it
            return value
        if _only(value, list) and all(_only(ids, int) for ids in value):
            return value
    raise TypeError(EXPECTED_INPUT)


# A predicate hook: one from register_structure_hook would lose to the union-passthrough
# factory that the preconf converter registers (later) for every union holding str.
converter.register_structure_hook_func(lambda tp: tp == EmbeddingInput, _structure_input)


@frozen(kw_only=True)
class EmbeddingRequest:
    """``POST /v1/embeddings`` under OpenAI's names; ``user`` is accepted and ignored."""

    model: str
    input: EmbeddingInput
    encoding_format: EncodingFormat = "float"
    dimensions: int | None = None  # OpenAI allows it for text-embedding-3 only; we allow it for all
    user: str | None = None

    @property
    def input_size(self) -> int:
        """Characters and token ids to tokenize: with ``off_loop``, decides whether
        ``EmbeddingModel.prepare`` runs in a thread."""
        if isinstance(self.input, str):
            return len(self.input)
        if self.input and isinstance(self.input[0], int):
            return len(self.input)
        return sum(map(len, cast("list[str] | list[list[int]]", self.input)))


def parse_embedding_request(data: dict[str, Any]) -> EmbeddingRequest:
    """Build the request from decoded JSON, or raise a 400 naming the offending field."""
    return structure(data, EmbeddingRequest)


@frozen
class EmbeddingJob:
    """A validated request: what to wait, and how to render the reply."""

    prompt_tokens: int
    delay_s: float  # from arrival; the caller sleeps, this module never does
    model: str
    texts: tuple[str, ...]  # one per input; token arrays already decoded
    dimensions: int
    encoding_format: EncodingFormat = "float"

    @property
    def values(self) -> int:
        """Floats that ``body()`` renders (about 50 ns each): a hint for going off the loop."""
        return len(self.texts) * self.dimensions

    def body(self) -> bytes:
        """The ``CreateEmbeddingResponse`` JSON, vectors included."""
        vectors = embed_texts(self.model, self.texts, self.dimensions)
        data: list[dict[str, Any]]
        if self.encoding_format == "base64":  # little-endian float32, as OpenAI sends it
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": base64.b64encode(row.tobytes()).decode("ascii"),
                }
                for i, row in enumerate(vectors.astype("<f4", copy=False))
            ]
        else:  # float32 rows straight to shortest-repr JSON: faster and 40% smaller than tolist()
            data = [
                {"object": "embedding", "index": i, "embedding": row}
                for i, row in enumerate(vectors)
            ]
        usage = {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}
        return orjson.dumps(
            {"object": "list", "data": data, "model": self.model, "usage": usage},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )


def embed_texts(model: str, texts: Sequence[str], dimensions: int) -> Float32Array:
    """Unit vectors, one row per text, the same in every process for the same (model, text).

    Each row comes from its own generator seeded with a BLAKE2b digest (never ``hash()``,
    which is salted per process). The generator fills sequentially, so a shorter row is a
    prefix of a longer one before normalising: ``dimensions`` behaves as OpenAI's does.
    """
    out = np.empty((len(texts), dimensions), dtype=np.float32)
    name = model.encode("utf-8", "surrogatepass")
    keyed = hashlib.blake2b(len(name).to_bytes(4, "little") + name, digest_size=16)
    for row, text in zip(out, texts, strict=True):
        digest = keyed.copy()
        digest.update(text.encode("utf-8", "surrogatepass"))
        rng = np.random.default_rng(int.from_bytes(digest.digest(), "little"))
        rng.standard_normal(dimensions, dtype=np.float32, out=row)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


class EmbeddingModel:
    """The simulated embedding model: validation, token counts and vector sizes."""

    def __init__(
        self,
        settings: Settings,
        tokenizer: Tokenizer,
        tokenizers: Mapping[str, Tokenizer] | None = None,
    ) -> None:
        """``tokenizers``: model name -> its own tokenizer; the others use ``tokenizer``."""
        self.models = settings.models
        self.latency = settings.latency
        self.tokenizer = tokenizer
        self.tokenizers = tokenizers or {}

    def native_dimensions(self, model: str) -> int:
        """The setting if given, else OpenAI's size for the model's name."""
        if self.models.embedding_dimensions is not None:
            return self.models.embedding_dimensions
        return LARGE_DIMENSIONS if "3-large" in model else DEFAULT_DIMENSIONS

    def prepare(self, request: EmbeddingRequest) -> EmbeddingJob:
        """Validate ``request`` and count its tokens.

        Raises:
          OpenAIError: 400 for values OpenAI rejects, 404 for an unknown model.
        """
        native = self.native_dimensions(request.model)
        dimensions = native if request.dimensions is None else request.dimensions
        at_least("dimensions", dimensions, 1)
        if dimensions > native:
            raise invalid(
                f"Invalid 'dimensions': integer above maximum value. Expected a value <= {native}, but got {dimensions} instead.",
                "dimensions",
                "integer_above_max_value",
            )
        items = request.input
        if isinstance(items, list):
            if not items:
                raise invalid(
                    "Invalid 'input': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                    "input",
                    "empty_array",
                )
            if len(items) > MAX_INPUTS and not isinstance(items[0], int):
                raise invalid(
                    f"Invalid 'input': array too long. Expected an array with maximum length {MAX_INPUTS}, but got an array with length {len(items)} instead.",
                    "input",
                    "array_above_max_length",
                )
        check_model(request.model, self.models)
        tokenizer = self.tokenizers.get(request.model, self.tokenizer)
        texts, counts = self.read_inputs(items, tokenizer)
        total = sum(counts)
        if total > MAX_REQUEST_TOKENS:
            raise invalid(
                f"Requested {total} tokens, max {MAX_REQUEST_TOKENS} tokens per request",
                "input",
                "max_tokens_per_request",
            )
        latency = self.latency
        return EmbeddingJob(
            prompt_tokens=total,
            delay_s=(latency.embedding_ms + latency.embedding_ms_per_token * total) / 1000,
            model=request.model,
            texts=tuple(texts),
            dimensions=dimensions,
            encoding_format=request.encoding_format,
        )

    def read_inputs(
        self, items: EmbeddingInput, tokenizer: Tokenizer
    ) -> tuple[list[str], list[int]]:
        """Each input's text and token count; token arrays are decoded to their text, so
        tokens and the text they spell embed alike."""
        # A lone string or token array is reported as 'input'; one of many as 'input[i]'.
        many = isinstance(items, list) and not isinstance(items[0], int)
        inputs = cast("list[str | list[int]]", items if many else [items])
        texts: list[str] = []
        counts: list[int] = []
        encode = tokenizer.encode
        for i, item in enumerate(inputs):
            if not item:  # "" or []
                raise invalid(INVALID_INPUT, "input")
            if isinstance(item, str):
                count = len(encode(item))
                check_length(count)
                texts.append(item)
            else:
                count = len(item)
                check_length(count)  # before decoding: a long array fails fast
                texts.append(decode(tokenizer, item, f"input[{i}]" if many else "input"))
            counts.append(count)
        return texts, counts


def decode(tokenizer: Tokenizer, ids: list[int], param: str) -> str:
    """The text of a token array, or a 400 naming ``param`` for an id it cannot read."""
    position = unknown_token(tokenizer, ids)
    if position is None:
        return tokenizer.decode(ids)
    bad, last = ids[position], tokenizer.vocab_size - 1
    if not 0 <= bad <= last:
        raise invalid(
            f"Invalid '{param}': token id {bad} is out of range. Expected ids from 0 to {last}.",
            param,
            "invalid_value",
        )
    raise invalid(
        f"Invalid '{param}': token id {bad} is not in the tokenizer's vocabulary.",
        param,
        "invalid_value",
    )


def check_length(tokens: int) -> None:
    """One input must fit the model's context, as OpenAI words it."""
    if tokens > MAX_INPUT_TOKENS:
        raise invalid(
            f"This model's maximum context length is {MAX_INPUT_TOKENS} tokens, however you requested {tokens} tokens ({tokens} in your prompt; 0 for the completion). Please reduce your prompt; or completion length.",
            "input",
            "context_length_exceeded",
        )


# Above this many floats, rendering the body (about 50 ns a float) moves to a thread.
INLINE_VALUES = 100_000


@frozen
class RenderedEmbeddings:
    """The reply as the ASGI layer serves it: one body after ``delay_s``, never streamed."""

    delay_s: float
    data: bytes
    prompt_tokens: int  # the input's, which a rate limit charges
    cached_tokens: int | None = None  # no prefix cache: nothing is generated
    stream: bool = False
    completion_tokens: int = 0
    finish_reason: str | None = None

    @property
    def offsets(self) -> list[Sequence[float]]:
        return [[self.delay_s]]

    @property
    def event_ends(self) -> list[Sequence[int]]:
        return [[0]]

    @property
    def charge(self) -> int:
        return self.prompt_tokens

    def body(self) -> bytes:
        return self.data

    # A non-streamed reply has no frames; these complete the PlannedReply protocol.
    def opening(self) -> bytes:
        return b""

    def streams(self) -> list[tuple[Sequence[float], Iterator[bytes]]]:
        return []

    def closing(self) -> bytes:
        return b""

    def late(self, error: OpenAIError) -> bytes:
        return error.to_json()


class EmbeddingsHandler:
    """``POST /v1/embeddings``: validate and tokenize (in a thread when large), then render
    the vectors while the request's latency runs (``x-mock-ttft-ms`` or a scripted rule's
    ``ttft_ms`` replaces the modelled latency)."""

    def __init__(
        self,
        settings: Settings,
        tokenizer: Tokenizer,
        tokenizers: Mapping[str, Tokenizer] | None = None,
    ) -> None:
        self.model = EmbeddingModel(settings, tokenizer, tokenizers)

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> RenderedEmbeddings:
        request = parse_embedding_request(data)
        job = await off_loop(request.input_size, self.model.prepare, request)
        if job.values > INLINE_VALUES:
            body = await trio.to_thread.run_sync(job.body)
        else:
            body = job.body()
        delay_s = job.delay_s if overrides.ttft_ms is None else overrides.ttft_ms / 1000
        return RenderedEmbeddings(delay_s, body, job.prompt_tokens)
