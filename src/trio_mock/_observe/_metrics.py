"""Prometheus metrics, under trio-mock's own names and under vLLM's.

vLLM's names (``vllm:num_requests_running``, ``vllm:time_to_first_token_seconds``, ...)
let vLLM dashboards, routers and autoscalers read the mock as they read vLLM. Each
finished request is observed once, from its journal record: times are those of the real
writes (streams) or of the schedule (bodies). With ``--workers N`` the values live in
prometheus-client's multiprocess files (``PROMETHEUS_MULTIPROC_DIR``, which the CLI
sets), so any worker's ``/metrics`` reports all of them.

Clients choose model names, so the ``model`` labels are bounded whatever they send: the
names the server knows keep theirs, ``--metrics-unlisted-models`` others get their own
(cleaned), and every other name counts as ``other``. Every other label takes values the
server chooses (endpoints are the routes, statuses and fault kinds are parsed).
"""

from __future__ import annotations

import collections
import os
from array import array
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from .._config._tokenizer_models import tokenizer_sources
from ._lag import LAG_BUCKETS

if TYPE_CHECKING:
    from .._config._settings import ModelSettings, Settings
    from ._journal import Record
    from ._lag import FloatArray

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Ours are finer than vLLM's: a mock's inter-token gaps are milliseconds.
TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
                0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)  # fmt: skip
ITL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
               0.1, 0.25, 0.5, 1.0, 2.5)  # fmt: skip
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
               300.0, 600.0)  # fmt: skip
# vLLM's own buckets (vllm/v1/metrics/loggers.py).
VLLM_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                     2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
VLLM_ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
                    5.0, 7.5, 10.0, 20.0, 40.0, 80.0)  # fmt: skip
VLLM_E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                    50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
ENGINE = "0"  # vLLM labels every series with its engine index
# Durations are differences of clock readings: 0.1 comes out as 0.10000000000000003 and
# would fall in the bucket above le="0.1". Nanoseconds are plenty.
ROUND_TO = 9
BATCH_SIZE = 256  # finished requests summed before they reach the metrics
OTHER = "other"  # the model label of every name not given its own
MAX_LABEL_CHARS = 128
# C0 and C1 control characters and DEL: a NUL or a newline has no place in a label.
CONTROL = str.maketrans(dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)], "\ufffd"))
WILDCARDS = frozenset("*?[")
# ... or fewer, when their token times pass this many: a batch is never more than 512 KiB
# of doubles, however long the streams.
BATCH_TOKENS = 1 << 16


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_DIR))


def observe_many(histogram: Any, values: Sequence[float] | np.ndarray[Any, Any]) -> None:
    """``histogram.observe(v)`` for every value, counted per bucket first: a stream's
    gaps cost one increment per bucket they fall in, not one per token. Uses the
    histogram child's ``_upper_bounds``/``_buckets``/``_sum`` (prometheus-client 0.2x);
    a test checks the result against one ``observe`` per value."""
    values = np.asarray(values, dtype=float)
    if not len(values):
        return
    bounds = histogram._upper_bounds  # ends with +Inf, so every value has a bucket
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for i in np.flatnonzero(counts).tolist():
        histogram._buckets[i].inc(int(counts[i]))
    histogram._sum.inc(float(values.sum()))


def label_text(name: str) -> str:
    """``name`` fit for a label value: cut at ``MAX_LABEL_CHARS``, control characters
    replaced by U+FFFD (as a bad byte is when decoded), and encodable as UTF-8."""
    text = name[:MAX_LABEL_CHARS].translate(CONTROL)
    return text.encode("utf-8", "replace").decode()


def known_models(settings: ModelSettings) -> list[str]:
    """The names the server knows as its models: those listed, those with their own
    tokenizer, and the exact (not ``*``) names of ``context_lengths`` and
    ``reasoning_models``."""
    named = [*tokenizer_sources(settings.tokenizer_models)]
    named += [entry.partition("=")[0] for entry in settings.context_lengths]
    named += settings.reasoning_models
    return [*settings.models, *(n for n in named if n and not WILDCARDS & set(n))]


def fault_kind(spec: str) -> str:
    """The ``kind`` label of a fault spelling: ``503`` (however written), ``disconnect``,
    ``slow-headers``..."""
    kind = spec.partition("-after")[0].partition("=")[0]
    return str(int(kind)) if kind.isdigit() else kind  # "0503" and "503" are one status


class LoadView(Protocol):
    """What the gauges read of the server's load (``_load.Load``)."""

    def own_snapshot(self) -> dict[str, int]:
        """This process's figures: with several workers the gauges sum them."""
        ...


class CacheView(Protocol):
    """What the gauges read of the prefix caches (``_sim._prefix_cache.PrefixCaches``)."""

    @property
    def usage(self) -> float: ...


class EngineView(Protocol):
    """What the gauges read of the batched engines (``_sim._engine.Engines``)."""

    @property
    def usage(self) -> float: ...

    @property
    def batch(self) -> int: ...

    @property
    def preemptions(self) -> int: ...


class ModelLabels:
    """The ``model`` label each model name is counted under.

    ``known`` names keep theirs (cleaned by ``label_text``); the first ``unlisted`` other
    names get their own too, and every later one is ``OTHER``. The labels, and this map,
    stay bounded however many names clients send. A name seen before costs a dict lookup.
    """

    def __init__(self, known: Iterable[str], unlisted: int, seen: Iterable[str] = ()) -> None:
        """Args:
        seen: unlisted names labelled before a runtime change; they keep their label while
          there is room, and count against ``unlisted``.
        """
        self.labels = {name: label_text(name) for name in known}
        self.room = unlisted
        self.unlisted: list[str] = []
        for name in seen:
            self(name)

    def __call__(self, model: str) -> str:
        label = self.labels.get(model)
        if label is None:
            if self.room <= 0:
                return OTHER
            self.room -= 1
            self.unlisted.append(model)
            label = self.labels[model] = label_text(model)
        return label


class Batch:
    """Finished requests' figures, summed per label set before they reach the metrics."""

    def __init__(self) -> None:
        self.requests: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.faults: collections.Counter[str] = collections.Counter()
        self.disconnects: collections.Counter[str] = collections.Counter()
        self.success: collections.Counter[tuple[str, str]] = collections.Counter()
        self.prompt: collections.Counter[tuple[str, str]] = collections.Counter()
        self.generation: collections.Counter[tuple[str, str]] = collections.Counter()
        # Prefix cache lookups and hits, in tokens, by model (vLLM counts tokens).
        self.cache_queries: collections.Counter[str] = collections.Counter()
        self.cache_hits: collections.Counter[str] = collections.Counter()
        self.ttft: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        self.e2e: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
        self.succeeded_e2e: dict[str, list[float]] = collections.defaultdict(list)
        # Token write times of every request, and where each request's run starts: doubles
        # in an array, not a float object per token.
        self.times: dict[tuple[str, str], array[float]] = collections.defaultdict(
            lambda: array("d")
        )
        self.starts: dict[tuple[str, str], list[int]] = collections.defaultdict(list)
        self.tokens = 0  # token times (and stream lags) held
        # Schedule lags by endpoint: a stream's as an array, a body's single one as a float.
        self.lags: dict[str, list[FloatArray]] = collections.defaultdict(list)
        self.body_lags: dict[str, list[float]] = collections.defaultdict(list)

    def add(self, record: Record, model: str, lags: FloatArray | float | None = None) -> None:
        """Count ``record`` under the model label ``model``, with its events' ``lags``."""
        endpoint = record.endpoint.removeprefix("/v1")  # one of the routes: bounded
        if isinstance(lags, float):
            self.body_lags[endpoint].append(lags)
        elif lags is not None:
            self.lags[endpoint].append(lags)
            self.tokens += len(lags)
        self.requests[endpoint, model, str(record.status)] += 1
        if record.fault is not None:
            self.faults[fault_kind(record.fault)] += 1
        if record.disconnected:
            self.disconnects[endpoint] += 1
        if record.planned_ttft_s is None:  # refused before it was planned
            return
        key = (endpoint, model)
        self.prompt[key] += record.prompt_tokens
        self.generation[key] += record.tokens_sent()
        if record.cached_tokens is not None:
            self.cache_queries[model] += record.prompt_tokens
            self.cache_hits[model] += record.cached_tokens
        times = record.token_times()
        if times:
            self.ttft[key].append(round(times[0] - record.start, ROUND_TO))
            if len(times) > 1:
                self.starts[key].append(len(self.times[key]))
                self.times[key].extend(times)
                self.tokens += len(times)
        if record.ended is not None:
            e2e = round(record.ended - record.start, ROUND_TO)
            self.e2e[key].append(e2e)
            if record.status == 200:
                self.succeeded_e2e[model].append(e2e)
        if record.finish_reason is not None and (record.status == 200 or record.disconnected):
            aborted = record.disconnected or record.error or record.cut
            self.success["abort" if aborted else record.finish_reason, model] += 1

    def lags_of(self, endpoint: str) -> np.ndarray[Any, Any]:
        """Every event lag held under ``endpoint``."""
        return np.concatenate([*self.lags.get(endpoint, ()), self.body_lags.get(endpoint, [])])

    def gaps(self, key: tuple[str, str]) -> np.ndarray[Any, Any]:
        """Inter-token gaps of every request under ``key``, none across two requests."""
        times = np.frombuffer(self.times[key], dtype=np.float64)
        gaps = np.round(np.diff(times), ROUND_TO)
        return np.delete(gaps, np.asarray(self.starts[key][1:], dtype=np.intp) - 1)


class Metrics:
    """The app's metrics; ``observe`` takes each finished request's record."""

    def __init__(self, settings: Settings, load: LoadView) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.load = load
        self.cache: CacheView | None = None  # the prefix caches, when there are
        self.engines: EngineView | None = None  # the batched engines, when they run
        self.preempted = 0  # preemptions counted so far
        self.cache_queried = self.cache_hit = 0  # prompt tokens looked up and found
        self.model_name = ""
        self.model_labels = ModelLabels((), 0)
        self.configure(settings)
        r = self.registry
        by_request = ["endpoint", "model"]
        self.requests = Counter(
            "trio_mock_requests", "Requests answered, by endpoint, model and status.",
            [*by_request, "status"], registry=r,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "trio_mock_prompt_tokens", "Prompt tokens of planned requests.", by_request, registry=r
        )
        self.generation_tokens = Counter(
            "trio_mock_generation_tokens", "Tokens generated (sent, when a stream was cut).",
            by_request, registry=r,
        )  # fmt: skip
        self.faults = Counter("trio_mock_faults", "Injected faults, by kind.", ["kind"], registry=r)
        self.disconnects = Counter(
            "trio_mock_client_disconnects", "Clients that left before their answer ended.",
            ["endpoint"], registry=r,
        )  # fmt: skip
        self.running = Gauge(
            "trio_mock_requests_running", "Requests admitted and not finished.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.waiting = Gauge(
            "trio_mock_requests_waiting", "Requests queued for a slot.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.ttft = Histogram(
            "trio_mock_time_to_first_token_seconds", "From arrival to the first token's write.",
            by_request, buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.itl = Histogram(
            "trio_mock_inter_token_latency_seconds", "Between consecutive token writes.",
            by_request, buckets=ITL_BUCKETS, registry=r,
        )  # fmt: skip
        self.e2e = Histogram(
            "trio_mock_e2e_request_latency_seconds", "From arrival to the last byte.",
            by_request, buckets=E2E_BUCKETS, registry=r,
        )  # fmt: skip
        self.lag = Histogram(
            "trio_mock_schedule_lag_seconds",
            "How late each event went out after its due time (0: on time); a stream's "
            "writes, a body's single one. Lag is the mock's own, or a client reading slowly.",
            ["endpoint"], buckets=LAG_BUCKETS, registry=r,
        )  # fmt: skip
        vllm = ["model_name", "engine"]
        self.vllm_running = Gauge(
            "vllm:num_requests_running", "Number of requests in model execution batches.",
            vllm, registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.vllm_waiting = Gauge(
            "vllm:num_requests_waiting", "Number of requests waiting to be processed.",
            vllm, registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.vllm_prompt = Counter(
            "vllm:prompt_tokens", "Number of prefill tokens processed.", vllm, registry=r
        )
        self.vllm_generation = Counter(
            "vllm:generation_tokens", "Number of generation tokens processed.", vllm, registry=r
        )
        self.vllm_success = Counter(
            "vllm:request_success", "Count of successfully processed requests.",
            ["finished_reason", *vllm], registry=r,
        )  # fmt: skip
        self.vllm_ttft = Histogram(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            vllm, buckets=VLLM_TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.vllm_itl = Histogram(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            vllm, buckets=VLLM_ITL_BUCKETS, registry=r,
        )  # fmt: skip
        self.vllm_e2e = Histogram(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
            vllm, buckets=VLLM_E2E_BUCKETS, registry=r,
        )  # fmt: skip
        self.vllm_cache_queries = [
            Counter(name, "Prefix cache queries, in terms of number of queried tokens.",
                    vllm, registry=r)
            for name in ("vllm:prefix_cache_queries", "vllm:gpu_prefix_cache_queries")
        ]  # fmt: skip
        self.vllm_cache_hits = [
            Counter(name, "Prefix cache hits, in terms of number of cached tokens.",
                    vllm, registry=r)
            for name in ("vllm:prefix_cache_hits", "vllm:gpu_prefix_cache_hits")
        ]  # fmt: skip
        # With several workers, each holds its own caches: the fullest one's share shows.
        self.vllm_cache_usage = [
            Gauge(name, "KV-cache usage. 1 means 100 percent usage.", vllm, registry=r,
                  multiprocess_mode="livemax")
            for name in ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
        ]  # fmt: skip
        self.vllm_preemptions = Counter(
            "vllm:num_preemptions", "Cumulative number of preemption from the engine.",
            vllm, registry=r,
        )  # fmt: skip
        self.batch_size = Gauge(
            "trio_mock_engine_batch_size", "Sequences in the batched engine's last step.",
            registry=r, multiprocess_mode="livesum",
        )  # fmt: skip
        self.kv_usage = Gauge(
            "trio_mock_kv_cache_usage", "Share of the KV cache's blocks in use, 0 to 1.",
            registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.hit_rate = Gauge(
            "trio_mock_prefix_cache_hit_rate", "Prompt tokens the prefix cache held, of those "
            "looked up, so far.", registry=r, multiprocess_mode="livemax",
        )  # fmt: skip
        self.batch = Batch()
        self.pending = 0
        self.refresh()

    def attach(self, cache: CacheView | None, engines: EngineView | None) -> None:
        """Read the gauges of these prefix caches and batched engines; preemptions count
        from now on."""
        self.cache, self.engines = cache, engines
        self.preempted = 0 if engines is None else engines.preemptions

    def configure(self, settings: Settings) -> None:
        """Take the model names of ``settings`` (at start and on a runtime change)."""
        models = settings.models
        self.model_name = label_text(models.models[0])  # vLLM's gauges name it
        unlisted = settings.observability.metrics_unlisted_models
        before = self.model_labels.unlisted
        self.model_labels = ModelLabels(known_models(models), unlisted, before)

    def observe(self, record: Record, lags: FloatArray | float | None = None) -> None:
        """Count one finished request, and the schedule ``lags`` of its events (``_lag``):
        kept in a batch, summed into the metrics every ``BATCH_SIZE`` requests (or
        ``BATCH_TOKENS`` token times), before every read and by the app's housekeeping, so
        each label set is touched once per batch rather than a dozen times per request."""
        model = "" if record.model is None else self.model_labels(record.model)
        self.batch.add(record, model, lags)
        self.pending += 1
        if self.pending >= BATCH_SIZE or self.batch.tokens >= BATCH_TOKENS:
            self.flush()

    def flush(self) -> None:
        """Move the batch into the metrics."""
        if not self.pending:
            return
        batch, self.batch, self.pending = self.batch, Batch(), 0
        for (endpoint, model, status), n in batch.requests.items():
            self.requests.labels(endpoint, model, status).inc(n)
        for kind, n in batch.faults.items():
            self.faults.labels(kind).inc(n)
        for endpoint, n in batch.disconnects.items():
            self.disconnects.labels(endpoint).inc(n)
        for (reason, model), n in batch.success.items():
            self.vllm_success.labels(reason, model, ENGINE).inc(n)
        for counts, own, vllm in (
            (batch.prompt, self.prompt_tokens, self.vllm_prompt),
            (batch.generation, self.generation_tokens, self.vllm_generation),
        ):
            for (endpoint, model), n in counts.items():
                own.labels(endpoint, model).inc(n)
                vllm.labels(model, ENGINE).inc(n)
        for tokens, family in (
            (batch.cache_queries, self.vllm_cache_queries),
            (batch.cache_hits, self.vllm_cache_hits),
        ):
            for model, n in tokens.items():
                for counter in family:
                    counter.labels(model, ENGINE).inc(n)
        self.cache_queried += sum(batch.cache_queries.values())
        self.cache_hit += sum(batch.cache_hits.values())
        for key, values in batch.ttft.items():
            observe_many(self.ttft.labels(*key), np.asarray(values))
            observe_many(self.vllm_ttft.labels(key[1], ENGINE), np.asarray(values))
        for key, values in batch.e2e.items():
            observe_many(self.e2e.labels(*key), np.asarray(values))
        for model, values in batch.succeeded_e2e.items():
            observe_many(self.vllm_e2e.labels(model, ENGINE), np.asarray(values))
        for endpoint in batch.lags.keys() | batch.body_lags.keys():
            observe_many(self.lag.labels(endpoint), batch.lags_of(endpoint))
        for key in batch.times:
            gaps = batch.gaps(key)
            observe_many(self.itl.labels(*key), gaps)
            observe_many(self.vllm_itl.labels(key[1], ENGINE), gaps)

    def refresh(self) -> None:
        """Set the gauges from the load model (on every scrape, and each second with
        several workers, whose gauges are summed, along with a flush of the batch)."""
        snapshot = self.load.own_snapshot()
        self.running.set(snapshot["running"])
        self.waiting.set(snapshot["queued"])
        self.vllm_running.labels(self.model_name, ENGINE).set(snapshot["running"])
        self.vllm_waiting.labels(self.model_name, ENGINE).set(snapshot["queued"])
        usage = 0.0 if self.cache is None else self.cache.usage
        engines = self.engines
        if engines is not None:  # the running sequences' blocks, as vLLM's gauge counts
            usage = engines.usage
            self.batch_size.set(engines.batch)
            preempted = engines.preemptions
            if preempted > self.preempted:
                self.vllm_preemptions.labels(self.model_name, ENGINE).inc(
                    preempted - self.preempted
                )
                self.preempted = preempted
        self.kv_usage.set(usage)
        self.hit_rate.set(self.cache_hit / self.cache_queried if self.cache_queried else 0.0)
        for gauge in self.vllm_cache_usage:
            gauge.labels(self.model_name, ENGINE).set(usage)

    def collected(self) -> CollectorRegistry:
        """The registry to read: this process's, or every worker's files."""
        self.flush()
        self.refresh()
        if not multiprocess():
            return self.registry
        merged = CollectorRegistry()
        MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return merged

    def exposition(self) -> bytes:
        """The text format for ``GET /metrics``."""
        return generate_latest(self.collected())

    def stats(self) -> dict[str, Any]:
        """The dashboard's figures: running totals, gauges and histograms (cumulative
        bucket counts), summed over labels and workers."""
        totals: dict[str, float] = {}
        buckets: dict[str, dict[str, float]] = {}
        statuses: dict[str, float] = {}
        for family in self.collected().collect():
            for sample in family.samples:
                name = sample.name
                if name == "trio_mock_requests_total":
                    status = sample.labels["status"]
                    statuses[status] = statuses.get(status, 0) + sample.value
                if name.endswith("_bucket") and name.startswith("trio_mock_"):
                    le = sample.labels["le"]
                    per = buckets.setdefault(name.removesuffix("_bucket"), {})
                    per[le] = per.get(le, 0) + sample.value
                elif name.startswith("trio_mock_") and not name.endswith("_created"):
                    totals[name] = totals.get(name, 0) + sample.value
        return {"totals": totals, "statuses": statuses, "histograms": buckets}
