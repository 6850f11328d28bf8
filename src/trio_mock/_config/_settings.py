"""Settings: the one source of truth for every knob.

Every knob is a field of one of the frozen groups below, declared with ``_knobs.knob``. Its
CLI flag (``--ttft-ms``), its environment variable (``TRIO_MOCK_TTFT_MS``) and its TOML key
(``ttft_ms``, at top level or under its group's table) are all derived from the field by
the knob engine (``_knobs``), so the surfaces cannot drift.
Precedence: CLI > environment > TOML file > defaults. This module does no I/O beyond
reading the TOML file, the certificate check and, for ``--workers auto``, the CPU count;
it never starts anything.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs
from attrs import frozen

from ._cpus import usable_cpus
from ._faults import parse_fault
from ._knobs import ENV_PREFIX, SettingsError, knob, knobs_of, parse_value
from ._profiles import PROFILES
from ._ranges import (
    LATENCY_MS,
    LOAD_FACTOR,
    PER_TOKEN_MS,
    PERCENT,
    RETRY_AFTER_S,
    SECONDS,
    SEED,
    SHARE,
    SOME_SECONDS,
    SOME_TOKENS,
    TOKENS,
    Range,
)
from ._tokenizer_models import MAX_MODEL_NAME as MAX_MODEL_NAME, tokenizer_models_problem

OutputMode = Literal["corpus", "echo", "fixed"]
Distribution = Literal["constant", "normal", "lognormal", "uniform"]
EngineKind = Literal["simple", "batched"]
LengthDistribution = Literal["fixed", "normal", "lognormal", "uniform"]


def auto_workers(raw: Any) -> Any:
    """``auto``: one worker per CPU this process may use.

    Raises:
      ValueError: a word that is neither ``auto`` nor a number.
    """
    if not isinstance(raw, str):
        return raw
    if raw.strip().lower() == "auto":
        return usable_cpus()
    if not raw.strip().lstrip("+-").isdigit():
        raise ValueError(f"expected an integer or auto, got {raw!r}")
    return raw


def port_number(v: Any) -> str | None:
    return None if 0 <= v <= 65535 else f"must be a port number 0-65535, got {v!r}"


def readable_file(v: Any) -> str | None:
    try:
        with open(v, "rb"):
            return None
    except OSError as error:
        return f"cannot read {v!r}: {error.strerror or error}"


def one_of(*allowed: Any) -> Callable[[Any], str | None]:
    return lambda v: (
        None if v in allowed else f"must be one of {', '.join(map(str, allowed))}, got {v!r}"
    )


def non_empty(v: Any) -> str | None:
    return None if len(v) else "must not be empty"


def fault_problem(spec: str) -> str | None:
    try:
        parse_fault(spec)
    except ValueError as error:
        return str(error)
    return None


# An origin as a browser sends it: lower-case scheme://host[:port], no path; or "null".
ORIGIN = re.compile(r"null|[a-z][a-z0-9+.-]*://[^/?#\sA-Z]+")


def origin_problem(origin: str) -> str | None:
    """Why ``origin`` can never equal a browser's ``Origin`` header, or None if it can."""
    if origin == "*" or ORIGIN.fullmatch(origin):
        return None
    return (
        "expected * or an origin as browsers send it (scheme://host[:port], lower case, "
        f"no path), got {origin!r}"
    )


MAX_PRICE = 1_000_000.0  # USD per million tokens: far above any real model's


def price_entry_problem(entry: str) -> str | None:
    """Why ``name=prompt:completion`` (USD per million tokens) is not a price, or None."""
    name, _, prices = entry.partition("=")
    parts = prices.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if not name or len(values) != 2 or not all(0 <= v <= MAX_PRICE for v in values):
        return (
            "expected name=prompt:completion in USD per million tokens, each 0 to "
            f"{MAX_PRICE:g}, got {entry!r}"
        )
    return None


def context_entry_problem(entry: str) -> str | None:
    name, _, tokens = entry.partition("=")
    if not name or not tokens.isdigit() or int(tokens) not in SOME_TOKENS:
        return f"expected name=tokens with tokens {SOME_TOKENS.span()}, got {entry!r}"
    return None


@frozen(kw_only=True)
class ServerSettings:
    """Where and how the HTTP server listens."""

    host: str = knob("127.0.0.1", "address to bind (0.0.0.0 for all interfaces)", live=False)
    port: int = knob(8000, "TCP port (0 picks a free one)", port_number, live=False)
    workers: int = knob(
        1,
        "worker processes sharing the port; auto: one per usable CPU (the affinity mask, "
        "capped by a cgroup CPU quota)",
        Range(1, 1024),
        live=False,
        word=auto_workers,
    )
    certfile: str | None = knob(
        None, "TLS certificate (PEM); enables HTTPS and h2 via ALPN", readable_file, live=False
    )
    keyfile: str | None = knob(None, "TLS private key (PEM)", readable_file, live=False)
    graceful_timeout_s: float = knob(
        5.0, "on shutdown, seconds in-flight streams may finish", SECONDS, live=False
    )
    max_request_s: float = knob(600.0, "longest a request may take before it is cut", SOME_SECONDS)
    max_body_bytes: int = knob(
        50 * 1024 * 1024, "largest request body accepted (413 beyond)", Range(1, 2**32)
    )
    backlog: int = knob(
        4096,
        "listen backlog: bursts of new connections (the kernel caps it at net.core.somaxconn)",
        Range(1, 65535),
        live=False,
    )
    body_timeout_s: float = knob(
        30.0, "longest a request body may take to arrive (408 beyond)", SOME_SECONDS
    )
    send_timeout_s: float = knob(
        60.0,
        "longest one write may wait for a client that stops reading before the connection "
        "is closed (nginx's send_timeout)",
        SOME_SECONDS,
        live=False,
    )
    keep_alive_timeout_s: float = knob(
        5.0, "idle keep-alive connection timeout", SOME_SECONDS, live=False
    )
    keep_alive_max_requests: int = knob(
        1_000_000, "requests per connection before it is closed", Range(1, 2**31), live=False
    )
    access_log: bool = knob(False, "log every request to stderr", live=False)
    api_keys: tuple[str, ...] = knob(
        (),
        "accepted API keys (comma-separated); requests need one as Bearer or api-key. "
        "None set: no auth",
    )
    cors_origins: tuple[str, ...] = knob(
        (),
        "origins browsers may call from (comma-separated, * for any): answers CORS "
        "preflights and adds Access-Control-* headers. None set: no CORS",
        lambda v: next(filter(None, map(origin_problem, v)), None),
        live=False,
    )


@frozen(kw_only=True)
class ModelSettings:
    """Which model names exist."""

    models: tuple[str, ...] = knob(
        ("trio-mock",), "model ids listed by /v1/models (comma-separated)", non_empty
    )
    any_model: bool = knob(True, "accept any model name, not only the listed ones")
    owned_by: str = knob("trio-mock", "owned_by of the listed models")
    system_fingerprint: str = knob("fp_trio_mock", "system_fingerprint sent in completions")
    reasoning_models: tuple[str, ...] = knob(
        ("o1*", "o3*", "o4*", "gpt-5*", "*deepseek-r1*", "*deepseek-reasoner*", "*qwq*"),
        "models that reason before answering (comma-separated names or * patterns)",
    )
    embedding_dimensions: int | None = knob(
        None,
        "embedding length; by default 3072 for *-3-large models and 1536 for the rest",
        Range(1, 65536),
    )
    context_length: int = knob(
        131072,
        "tokens of prompt plus output a model takes (400 context_length_exceeded)",
        SOME_TOKENS,
    )
    context_lengths: tuple[str, ...] = knob(
        (),
        "per-model context lengths as name=tokens, names may use * (e.g. gpt-4=8192,gpt-3.5*=16385)",
        lambda v: next(filter(None, map(context_entry_problem, v)), None),
    )
    tokenizer_models: tuple[str, ...] = knob(
        (),
        "models with their own tokenizer as name=source (comma-separated; source: a "
        "tokenizer.json, a model folder, a hub id in the local Hugging Face cache, or a "
        "--tokenizer value); a bare hub id names both. Listed by /v1/models, accepted with "
        "--no-any-model; never downloaded (needs the hf extra)",
        tokenizer_models_problem,
    )
    model_prices: tuple[str, ...] = knob(
        (),
        "per-model prices for OpenRouter's usage.cost and /api/v1/models, as "
        "name=prompt:completion in USD per million tokens, names may use * (unlisted: free)",
        lambda v: next(filter(None, map(price_entry_problem, v)), None),
    )
    provider_name: str = knob("trio-mock", "provider named in replies on the /api/v1 routes")


@frozen(kw_only=True)
class LatencySettings:
    """When tokens are sent (the README's "Latency model" gives the formulas)."""

    profile: str | None = knob(
        None, "named preset: instant, fast-api, vllm-8b-h100, overloaded (knobs override it)"
    )
    ttft_distribution: Distribution = knob(
        "normal", "TTFT distribution: constant, normal, lognormal or uniform"
    )
    ttft_ms: float = knob(100.0, "mean time to first token, milliseconds", LATENCY_MS)
    ttft_jitter_ms: float = knob(0.0, "standard deviation of TTFT (normal, lognormal)", LATENCY_MS)
    ttft_min_ms: float = knob(0.0, "TTFT clamp and uniform lower bound", LATENCY_MS)
    ttft_max_ms: float | None = knob(None, "TTFT clamp and uniform upper bound", LATENCY_MS)
    prefill_ms_per_token: float = knob(
        0.0, "TTFT grows by this much per prompt token (prefill cost)", PER_TOKEN_MS
    )
    ttft_load_factor: float = knob(
        0.0, "TTFT grows by this fraction per other request in prefill", LOAD_FACTOR
    )
    prefix_cache_blocks: int = knob(
        0,
        "prefix (KV) cache: blocks each model keeps, least recently used evicted; a "
        "cached prompt prefix skips its prefill cost (0: off)",
        Range(0, 1_000_000),
        live=False,
    )
    kv_block_size: int = knob(
        16, "prefix cache: prompt tokens a block holds (vLLM's block_size)", Range(1, 1024),
        live=False,
    )  # fmt: skip
    engine: EngineKind = knob(
        "simple",
        "simple: each request on its own sampled schedule; batched: a simulated engine "
        "steps its batch, and deadlines come from the steps",
        live=False,
    )
    max_num_seqs: int = knob(
        256, "batched engine: sequences in one step (vLLM's max_num_seqs)", Range(1, 65536),
        live=False,
    )  # fmt: skip
    max_num_batched_tokens: int = knob(
        8192,
        "batched engine: tokens in one step, prefill chunks and decodes (chunked prefill)",
        Range(1, 10**7),
        live=False,
    )
    engine_seq_ms: float = knob(
        0.05, "batched engine: a step's time added per sequence up to the knee, ms",
        PER_TOKEN_MS, live=False,
    )  # fmt: skip
    engine_knee_seqs: int = knob(
        128, "batched engine: batch size where steps turn compute-bound", Range(1, 65536),
        live=False,
    )  # fmt: skip
    engine_past_knee_ms: float = knob(
        0.07, "batched engine: a step's time added per sequence past the knee, ms",
        PER_TOKEN_MS, live=False,
    )  # fmt: skip
    itl_distribution: Distribution = knob(
        "normal", "ITL distribution: constant, normal, lognormal or uniform"
    )
    itl_ms: float = knob(10.0, "mean inter-token latency, milliseconds", LATENCY_MS)
    itl_jitter_ms: float = knob(0.0, "standard deviation of ITL (normal, lognormal)", LATENCY_MS)
    itl_min_ms: float = knob(0.0, "ITL clamp and uniform lower bound", LATENCY_MS)
    itl_max_ms: float | None = knob(None, "ITL clamp and uniform upper bound", LATENCY_MS)
    itl_load_factor: float = knob(
        0.0, "ITL grows by this fraction per other stream decoding", LOAD_FACTOR
    )
    embedding_ms: float = knob(20.0, "base latency of an embeddings request, ms", LATENCY_MS)
    embedding_ms_per_token: float = knob(
        0.02, "embeddings latency added per input token, ms", PER_TOKEN_MS
    )


@frozen(kw_only=True)
class CapacitySettings:
    """How many requests run at once, and what happens to the rest."""

    max_concurrency: int | None = knob(
        None,
        "requests served at once (like vLLM's max_num_seqs); the rest queue FIFO",
        Range(1, 1_000_000),
    )
    max_queue: int | None = knob(
        None, "requests that may wait; beyond it they are refused at once", Range(0, 1_000_000)
    )
    queue_timeout_s: float | None = knob(
        None, "longest a request may wait in the queue before it is refused", SOME_SECONDS
    )
    overload_status: int = knob(
        503,
        "status for a refused request: 503 (overloaded) or 429 (rate limited)",
        one_of(429, 503),
    )


@frozen(kw_only=True)
class FaultSettings:
    """Failures injected on purpose (the README's "Faults" gives the spellings)."""

    failure_percent: float = knob(
        0.0, "share of generation requests that fail, in percent", PERCENT
    )
    failure_jitter: float = knob(
        0.0, "each request's failure rate varies by up to this many points either way", PERCENT
    )
    failure_mix: tuple[str, ...] = knob(
        ("500", "502", "503", "504", "429"),
        "faults drawn for failing requests (comma-separated; repeat one to weight it): "
        "a status, disconnect, error, stall (each optionally -after=K tokens), slow-headers=MS",
        lambda v: non_empty(v) or next(filter(None, map(fault_problem, v)), None),
    )
    fault_seed: int | None = knob(
        None,
        "seed of the fault draws: the same requests meet the same faults",
        SEED,
    )
    fault_retry_after_s: float = knob(
        2.0,
        "retry-after of injected 429 and 503 answers, in seconds; "
        "the official SDKs honour up to 60",
        RETRY_AFTER_S,
    )


@frozen(kw_only=True)
class RateLimitSettings:
    """OpenAI-style rate limits: continuously refilling per-minute buckets."""

    rate_limit_rpm: int | None = knob(
        None, "requests per minute allowed (429 beyond)", Range(1, 10**9)
    )
    rate_limit_tpm: int | None = knob(
        None,
        "tokens per minute allowed, counting prompt plus requested max output (429 beyond)",
        Range(1, 10**12),
    )
    rate_limit_scope: Literal["key", "ip", "global"] = knob(
        "key",
        "one bucket per API key, per client address (ip), or one for everybody; at most "
        "10000 kept, the idle then the oldest dropped beyond",
    )
    rate_limit_after_s: float | None = knob(
        None, "from this many seconds after start, every request gets 429", SECONDS
    )
    rate_limit_for_s: float | None = knob(
        None,
        "how long the rate_limit_after_s refusals last (none: until stopped)",
        SOME_SECONDS,
    )


@frozen(kw_only=True)
class OutputSettings:
    """What text comes back, and in how many tokens."""

    output_mode: OutputMode = knob(
        "corpus", "corpus (generated articles), echo (last user message) or fixed"
    )
    output_tokens_distribution: LengthDistribution = knob(
        "normal", "completion length: fixed, normal, lognormal or uniform (corpus mode)"
    )
    output_tokens_mean: float = knob(
        128.0, "mean completion length in tokens (corpus mode)", SOME_TOKENS
    )
    output_tokens_stddev: float = knob(32.0, "standard deviation of the completion length", TOKENS)
    output_tokens_min: int = knob(1, "completion length clamp and uniform lower bound", SOME_TOKENS)
    output_tokens_max: int | None = knob(
        None, "completion length clamp and uniform upper bound", SOME_TOKENS
    )
    fixed_text: str = knob(
        "This is a mock response from trio-mock.", "the reply in fixed mode", non_empty
    )
    corpus_articles: int = knob(
        4096, "articles pre-generated at start-up (corpus mode)", Range(1, 100_000)
    )
    corpus_seed: int = knob(0, "seed of the corpus, so every worker holds the same text", SEED)
    tokens_per_event_min: int = knob(1, "fewest tokens carried by one streamed chunk", SOME_TOKENS)
    tokens_per_event_max: int = knob(1, "most tokens carried by one streamed chunk", SOME_TOKENS)
    reasoning_tokens_mean: float = knob(
        256.0, "mean reasoning length of reasoning models at medium effort", TOKENS
    )
    reasoning_tokens_stddev: float = knob(
        64.0, "standard deviation of the reasoning length at medium effort", TOKENS
    )
    tool_call_rate: float = knob(
        0.5, "with tool_choice auto, the share of replies that call a tool", SHARE
    )
    max_parallel_tool_calls: int = knob(
        2, "most tool calls in one reply when parallel_tool_calls allows", Range(1, 128)
    )
    tokenizer: str = knob(
        "cl100k_base",
        "tiktoken encoding name, a .tiktoken file, a Hugging Face tokenizer.json, model folder "
        "or hub id in the local cache (hf extra), or 'approx' (~4 characters a token)",
        non_empty,
        live=False,
    )


@frozen(kw_only=True)
class ObservabilitySettings:
    """Metrics, logs, the request journal, scripted responses and who may steer them."""

    metrics: bool = knob(True, "serve Prometheus metrics at /metrics", live=False)
    metrics_unlisted_models: int = knob(
        0,
        "model names beyond the listed ones with their own metrics label (first come); "
        "the rest count as 'other'",
        Range(0, 1000),
    )
    metrics_auth: bool = knob(
        False, "/metrics needs the admin key when one is set, else an API key (see --api-keys)"
    )
    log_level: Literal["debug", "info", "warning", "error"] = knob(
        "info", "log level: debug, info, warning or error"
    )
    log_format: Literal["text", "json"] = knob(
        "text", "log lines as text or as JSON objects", live=False
    )
    log_raw: bool = knob(
        False, "log each generation request and response (secrets redacted, bodies cut)"
    )
    journal_size: int = knob(
        1000, "requests kept in memory for GET /_mock/requests (0: none)", Range(0, 1_000_000)
    )
    journal_file: str | None = knob(
        None, "append every request's journal entry to this JSONL file", live=False
    )
    journal_body_bytes: int = knob(
        4096, "request and response body bytes kept in the journal and raw log", Range(0, 2**24)
    )
    scripts_file: str | None = knob(
        None, "TOML or JSON file of scripted response rules", readable_file, live=False
    )
    admin_key: str | None = knob(
        None,
        "key for /_mock/* and /configure (Bearer or x-admin-key). None set: API keys apply",
        live=False,
    )


def http_url(v: Any) -> str | None:
    if re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", v):
        return None
    return f"expected an http:// or https:// base URL such as https://api.openai.com/v1, got {v!r}"


@frozen(kw_only=True)
class CassetteSettings:
    """Recording real traffic to a cassette, and replaying it (the README's "Record and
    replay" gives the file's format)."""

    cassette: str | None = knob(
        None,
        "JSONL cassette: replayed from (alone), or appended to (with --record-upstream)",
        live=False,
    )
    record_upstream: str | None = knob(
        None,
        "record mode: forward generation requests to this OpenAI-compatible base URL "
        "(e.g. https://api.openai.com/v1) and append each exchange to --cassette",
        http_url,
        live=False,
    )
    upstream_api_key: str | None = knob(
        None,
        "key sent to the upstream in record mode (never written); none: the client's passes through",
        live=False,
    )
    upstream_timeout_s: float = knob(
        60.0,
        "longest the upstream may take to connect, answer or send its next chunk (504 beyond)",
        SOME_SECONDS,
        live=False,
    )
    replay_speed: float = knob(
        1.0, "replayed chunks come this many times faster than recorded", Range(0.01, 1000)
    )
    replay_strict: bool = knob(
        False, "a request no recording matches gets a 404 instead of a generated reply"
    )
    replay_ignore: tuple[str, ...] = knob(
        ("user", "metadata", "store", "service_tier"),
        "request fields left out of the matching key (comma-separated top-level names)",
        live=False,
    )
    replay_keep_ids: bool = knob(False, "replay the recorded ids and created times, not fresh ones")


@frozen(kw_only=True)
class Settings:
    """Every knob of trio-mock, grouped; build with ``Settings.load`` or directly."""

    server: ServerSettings = ServerSettings()
    models: ModelSettings = ModelSettings()
    latency: LatencySettings = LatencySettings()
    capacity: CapacitySettings = CapacitySettings()
    output: OutputSettings = OutputSettings()
    faults: FaultSettings = FaultSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    cassettes: CassetteSettings = CassetteSettings()

    def __attrs_post_init__(self) -> None:
        for _, group in self.groups():
            for f in attrs.fields(type(group)):
                check: Callable[[Any], str | None] | None = f.metadata.get("check")
                value = getattr(group, f.name)
                problem = check(value) if check and value is not None else None
                if problem:
                    raise SettingsError(f"{describe(f.name)}: {problem}")
        out, srv = self.output, self.server
        if out.tokens_per_event_min > out.tokens_per_event_max:
            raise SettingsError(
                f"{describe('tokens_per_event_min')}: must not exceed tokens_per_event_max "
                f"({out.tokens_per_event_min} > {out.tokens_per_event_max})"
            )
        lat = self.latency
        if lat.engine == "batched" and lat.max_num_batched_tokens < lat.kv_block_size:
            raise SettingsError(
                f"{describe('max_num_batched_tokens')}: must be at least kv_block_size "
                f"({lat.max_num_batched_tokens} < {lat.kv_block_size})"
            )
        if lat.engine == "batched" and lat.max_num_batched_tokens < lat.max_num_seqs:
            raise SettingsError(
                f"{describe('max_num_batched_tokens')}: must be at least max_num_seqs, a "
                f"decode token each ({lat.max_num_batched_tokens} < {lat.max_num_seqs})"
            )
        if (srv.certfile is None) != (srv.keyfile is None):
            raise SettingsError(f"{describe('certfile')}: certfile and keyfile go together")
        for low, high, distribution in (
            ("ttft_min_ms", "ttft_max_ms", "ttft_distribution"),
            ("itl_min_ms", "itl_max_ms", "itl_distribution"),
            ("output_tokens_min", "output_tokens_max", "output_tokens_distribution"),
        ):
            low_value, high_value = self.value(low), self.value(high)
            if high_value is not None and low_value > high_value:
                raise SettingsError(
                    f"{describe(low)}: must not exceed {high} ({low_value:g} > {high_value:g})"
                )
            if self.value(distribution) == "uniform" and high_value is None:
                raise SettingsError(f"{describe(distribution)}: uniform needs {describe(high)}")

    def value(self, name: str) -> Any:
        """One knob's value by its leaf name."""
        return getattr(getattr(self, KNOBS[name].group), name)

    def groups(self) -> Iterator[tuple[str, Any]]:
        for f in attrs.fields(Settings):
            yield f.name, getattr(self, f.name)

    def replace(self, **leaves: Any) -> Settings:
        """Return a copy with the named knobs (leaf names) changed."""
        return build(self, leaves)

    def public(self) -> dict[str, dict[str, Any]]:
        """Effective settings as plain data, for ``GET /``: secrets show as a count."""
        data = self.as_data()
        data["server"]["api_keys"] = f"{len(self.server.api_keys)} set"
        data["observability"]["admin_key"] = "set" if self.observability.admin_key else None
        data["cassettes"]["upstream_api_key"] = "set" if self.cassettes.upstream_api_key else None
        return data

    def as_data(self) -> dict[str, dict[str, Any]]:
        """Every knob as plain data, secrets included."""
        return {name: attrs.asdict(group) for name, group in self.groups()}

    @classmethod
    def load(
        cls,
        cli: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        config: str | Path | None = None,
    ) -> Settings:
        """Merge defaults < TOML file < environment < CLI into one Settings.

        Args:
          cli: leaf name -> value, only the knobs given on the command line.
          env: the environment (``os.environ`` when None); ``TRIO_MOCK_*`` are read.
          config: TOML path; when None, ``TRIO_MOCK_CONFIG`` names one if set.
        """
        env = os.environ if env is None else env
        config = config if config is not None else env.get(ENV_PREFIX + "CONFIG")
        leaves: dict[str, Any] = {}
        if config:
            leaves |= read_toml(Path(config))
        leaves |= from_env(env)
        leaves |= dict(cli or {})
        return build(cls(), leaves)

    def to_json(self) -> str:
        """Every knob as JSON, for handing exact settings to worker processes."""
        return json.dumps(self.as_data())

    @classmethod
    def from_json(cls, text: str) -> Settings:
        groups = json.loads(text)
        return build(cls(), {k: v for group in groups.values() for k, v in group.items()})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        return cls.load(env=env)


KNOBS = {k.name: k for k in knobs_of(Settings)}


def describe(name: str) -> str:
    """Name a knob the way every surface knows it: ``--ttft-ms (TRIO_MOCK_TTFT_MS)``."""
    k = KNOBS[name]
    return f"{k.flag} ({k.env})"


def build(base: Settings, leaves: Mapping[str, Any]) -> Settings:
    """Apply leaf values (typed or strings) onto ``base``; raise SettingsError on bad ones.

    A ``profile`` among them brings its preset knobs, which the other leaves override.
    """
    profile = leaves.get("profile")
    if isinstance(profile, str) and profile.lower() not in {"", "none", "null"}:
        if profile not in PROFILES:
            raise SettingsError(
                f"{describe('profile')}: unknown profile {profile!r}; known: {', '.join(PROFILES)}"
            )
        leaves = PROFILES[profile] | dict(leaves)
    changes: dict[str, dict[str, Any]] = {}
    for name, raw in leaves.items():
        k = KNOBS.get(name)
        if k is None:
            raise SettingsError(f"unknown setting {name!r}")
        try:
            value = parse_value(k.type, k.word(raw) if k.word else raw)
        except (TypeError, ValueError) as error:
            raise SettingsError(f"{describe(name)}: {error}") from None
        changes.setdefault(k.group, {})[name] = value
    groups = {g: attrs.evolve(getattr(base, g), **c) for g, c in changes.items()}
    return attrs.evolve(base, **groups)


def from_env(env: Mapping[str, str]) -> dict[str, str]:
    """The knobs set in the environment, as leaf name -> string."""
    return {k.name: env[k.env] for k in KNOBS.values() if k.env in env}


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config: keys at top level or under their group's table."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SettingsError(
            f"--config ({ENV_PREFIX}CONFIG): cannot read {str(path)!r}: {error.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(
            f"--config ({ENV_PREFIX}CONFIG): {str(path)!r} is not valid TOML: {error}"
        ) from None
    return flatten(data, str(path))


def flatten(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Knobs given at top level or under their group's name, as leaf name -> value.

    Raises:
      SettingsError: an unknown name.
    """
    leaves: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and key in {f.name for f in attrs.fields(Settings)}:
            for sub, sub_value in value.items():
                if sub not in KNOBS or KNOBS[sub].group != key:
                    raise SettingsError(f"{where}: unknown setting [{key}] {sub!r}")
                leaves[sub] = sub_value
        elif key in KNOBS:
            leaves[key] = value
        else:
            raise SettingsError(f"{where}: unknown setting {key!r}")
    return leaves
