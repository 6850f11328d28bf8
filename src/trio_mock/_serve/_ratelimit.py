"""Rate limits as OpenAI applies them: requests and tokens per minute, per key, per client
address or global.

Each limit is a bucket that holds a minute's allowance and refills continuously (limit/60
per second), so a client that paces itself is never refused and a burst is. A request is
charged one request and its prompt tokens plus the output it may ask for (``max_tokens``,
or the planned reply when it sets none), as OpenAI estimates it before generating. Every
answer carries the ``x-ratelimit-*`` headers; a refusal is a 429 with ``retry-after`` and
``retry-after-ms`` saying when the request would fit, which the official SDKs honour.
Injected 429s and 503s (faults, scripted errors) get the same headers (``injected``).

Time is ``trio.current_time()``, so tests drive the buckets with a MockClock. The workers
of ``--workers N`` keep their levels in ``SharedBuckets`` (``_buckets``) instead, on its
clock: the limits, and the ``rate_limit_after_s`` window, are then the server's, whichever
worker serves a request.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import attrs
import trio

from .._openai._errors import OpenAIError
from ._auth import presented_key

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .._config._settings import RateLimitSettings
    from ._buckets import Levels, SharedBuckets

Headers = list[tuple[bytes, bytes]]
ORGANIZATION = "org-trio-mock"
LEARN_MORE = "Visit https://platform.openai.com/account/rate-limits to learn more."
# Above this many bucket pairs (one per key, or per client address), the full (idle) ones
# are dropped, then the oldest until half are left: without API keys a client picks its
# key, and clients come from many addresses, so the table must not grow without end.
MAX_KEYS = 10_000


def go_duration(seconds: float) -> str:
    """A duration as OpenAI's reset headers write it (Go's format): ``20ms``, ``1.5s``,
    ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


class Bucket:
    """A per-minute allowance that refills continuously."""

    __slots__ = ("capacity", "level", "per_s", "updated")

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.per_s = capacity / 60
        self.level = float(capacity)
        self.updated = now

    @classmethod
    def restored(cls, capacity: int, level: float, updated: float) -> Bucket:
        """A bucket from shared levels (an unknown caller's are infinite: full)."""
        bucket = cls(capacity, updated)
        bucket.level = min(float(capacity), level)  # a lowered limit caps what is left
        return bucket

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.per_s)
        self.updated = now

    def wait_s(self, amount: int) -> float:
        """How long until ``amount`` fits (after a refill)."""
        return max(0.0, (amount - self.level) / self.per_s)

    def headers(self, name: bytes) -> Headers:
        return [
            (b"x-ratelimit-limit-" + name, b"%d" % self.capacity),
            (b"x-ratelimit-remaining-" + name, b"%d" % math.floor(self.level)),
            (b"x-ratelimit-reset-" + name, go_duration(self.wait_s(self.capacity)).encode()),
        ]


class RateLimiter:
    """The buckets of one app, and the ``rate_limit_after_s`` window."""

    def __init__(self, settings: RateLimitSettings, shared: SharedBuckets | None = None) -> None:
        """Args:
        shared: the levels of a server's workers; None keeps them here.
        """
        self.shared = shared
        self.settings = settings
        self.rpm = settings.rate_limit_rpm
        self.tpm = settings.rate_limit_tpm
        self.active = bool(self.rpm or self.tpm or settings.rate_limit_after_s is not None)
        self.buckets: dict[str, tuple[Bucket | None, Bucket | None]] = {}
        self.started: float | None = None
        self.clock: Callable[[], float] = trio.current_time if shared is None else shared.clock

    def start(self, at: float | None = None) -> None:
        """Mark the server's start (now, or ``at``), from which ``rate_limit_after_s``
        counts. With shared levels the server started when they were made, before the
        first fork, so a worker that replaces another does not open the window again."""
        if at is None:
            at = self.clock() if self.shared is None else self.shared.created
        self.started = at

    def charge(
        self, headers: Iterable[tuple[bytes, bytes]], model: str, tokens: int, peer: str = ""
    ) -> Headers:
        """Take one request and ``tokens`` from the caller's buckets.

        Args:
          peer: the client's address, whose buckets ``rate_limit_scope = "ip"`` charges.

        Returns:
          The ``x-ratelimit-*`` headers for the answer.

        Raises:
          OpenAIError: 429, with the headers, when the request does not fit now.
        """
        now = self.clock()
        if self.started is None:
            self.started = now
        self.check_window(now, model)
        key = self.caller(headers, peer)
        if self.shared is not None:
            return self.charge_shared(self.shared, key, model, tokens)
        requests, budget = self.buckets_for(key, now)
        return self.take(requests, budget, model, tokens, now)

    def charge_shared(self, shared: SharedBuckets, key: str, model: str, tokens: int) -> Headers:
        """``take`` on the caller's shared levels, under the lock that every worker takes.
        The time is read under the lock too: read before it, it could precede another
        worker's charge, and a refill over a negative time would take from the bucket."""
        with shared.locked():
            offset, levels = shared.find(key)
            requests, budget = self.restored(levels)
            answer = self.take(requests, budget, model, tokens, shared.clock())  # or raises:
            if requests is not None:  # a refused request takes nothing, and is not stored
                levels.requests, levels.updated = requests.level, requests.updated
            if budget is not None:
                levels.tokens, levels.updated = budget.level, budget.updated
            shared.store(offset, levels)
            return answer

    def restored(self, levels: Levels) -> tuple[Bucket | None, Bucket | None]:
        return (
            Bucket.restored(self.rpm, levels.requests, levels.updated) if self.rpm else None,
            Bucket.restored(self.tpm, levels.tokens, levels.updated) if self.tpm else None,
        )

    def take(
        self, requests: Bucket | None, budget: Bucket | None, model: str, tokens: int, now: float
    ) -> Headers:
        """Raises: OpenAIError: 429 when the request does not fit now."""
        for bucket in (requests, budget):
            if bucket is not None:
                bucket.refill(now)
        if budget is not None and tokens > budget.capacity:
            raise self.too_large(model, tokens, requests, budget)
        for bucket, amount, unit in ((requests, 1, "requests"), (budget, tokens, "tokens")):
            if bucket is not None and bucket.level < amount:
                raise self.refused(model, unit, amount, bucket, requests, budget)
        if requests is not None:
            requests.level -= 1
        if budget is not None:
            budget.level -= tokens
        return limit_headers(requests, budget)

    def caller(self, headers: Iterable[tuple[bytes, bytes]], peer: str) -> str:
        """Whose buckets a request takes from: its key's (no key: the anonymous ones), its
        address's (the connection's peer: a forwarded-for header would let a client pick
        its own), or everybody's."""
        scope = self.settings.rate_limit_scope
        if scope == "key":
            return presented_key(headers) or ""
        return peer if scope == "ip" else ""

    def buckets_for(self, key: str, now: float) -> tuple[Bucket | None, Bucket | None]:
        found = self.buckets.get(key)
        if found is None:
            if len(self.buckets) >= MAX_KEYS:
                self.drop_idle(now)
                self.drop_oldest(MAX_KEYS // 2)
            found = (
                Bucket(self.rpm, now) if self.rpm else None,
                Bucket(self.tpm, now) if self.tpm else None,
            )
            self.buckets[key] = found
        return found

    def drop_idle(self, now: float) -> None:
        """Forget the keys whose buckets have refilled: a new pair starts full anyway."""
        for key, pair in list(self.buckets.items()):
            for bucket in pair:
                if bucket is not None:
                    bucket.refill(now)
            if all(b is None or b.level >= b.capacity for b in pair):
                del self.buckets[key]

    def drop_oldest(self, keep: int) -> None:
        """Forget the keys seen first until ``keep`` are left (each sweep then frees half
        the table, so sweeps stay rare however fast new keys come). A forgotten key
        starts full again, as a new key would."""
        for key in list(itertools.islice(self.buckets, max(0, len(self.buckets) - keep))):
            del self.buckets[key]

    def check_window(self, now: float, model: str) -> None:
        """Raises: OpenAIError: 429 inside the ``rate_limit_after_s`` window."""
        after_s, for_s = self.settings.rate_limit_after_s, self.settings.rate_limit_for_s
        assert self.started is not None
        elapsed = now - self.started
        if after_s is None or elapsed < after_s:
            return
        if for_s is not None and elapsed >= after_s + for_s:
            return
        retry = [] if for_s is None else retry_headers(after_s + for_s - elapsed)
        raise OpenAIError(
            429,
            f"Rate limit reached for {model} in organization {ORGANIZATION} on tokens per min "
            f"(TPM): this server refuses every request from {after_s:g} s after its start"
            + ("." if for_s is None else f", for {for_s:g} s.")
            + f" {LEARN_MORE}",
            type="tokens",
            code="rate_limit_exceeded",
            headers=tuple(retry),
        )

    def refused(
        self,
        model: str,
        unit: str,
        amount: int,
        bucket: Bucket,
        requests: Bucket | None,
        budget: Bucket | None,
    ) -> OpenAIError:
        wait = bucket.wait_s(amount)
        label = "requests per min (RPM)" if unit == "requests" else "tokens per min (TPM)"
        used = math.ceil(bucket.capacity - bucket.level)
        return OpenAIError(
            429,
            f"Rate limit reached for {model} in organization {ORGANIZATION} on {label}: "
            f"Limit {bucket.capacity}, Used {used}, Requested {amount}. "
            f"Please try again in {go_duration(wait)}. {LEARN_MORE}",
            type=unit,
            code="rate_limit_exceeded",
            headers=tuple(limit_headers(requests, budget) + retry_headers(wait)),
        )

    def too_large(
        self, model: str, tokens: int, requests: Bucket | None, budget: Bucket
    ) -> OpenAIError:
        """A request over the whole minute's tokens never fits: no retry-after."""
        return OpenAIError(
            429,
            f"Request too large for {model} in organization {ORGANIZATION} on tokens per min "
            f"(TPM): Limit {budget.capacity}, Requested {tokens}. The input or output tokens "
            f"must be reduced in order to run successfully. {LEARN_MORE}",
            type="tokens",
            code="rate_limit_exceeded",
            headers=tuple(limit_headers(requests, budget)),
        )


def limit_headers(requests: Bucket | None, budget: Bucket | None) -> Headers:
    found: Headers = []
    if requests is not None:
        found += requests.headers(b"requests")
    if budget is not None:
        found += budget.headers(b"tokens")
    return found


def retry_headers(wait_s: float) -> Headers:
    """``retry-after`` in whole seconds (rounded up) and ``retry-after-ms``, both > 0."""
    ms = max(1, math.ceil(wait_s * 1000))
    return [(b"retry-after", b"%d" % math.ceil(ms / 1000)), (b"retry-after-ms", b"%d" % ms)]


RETRIED = (429, 503, 529)  # the statuses a real server sends with a retry time (529: Anthropic)


def injected(error: OpenAIError, retry_after_s: float, answer: Headers) -> OpenAIError:
    """An injected 429 or 503 as a real one comes: with ``retry-after`` and
    ``retry-after-ms``, and for a 429 the ``x-ratelimit-*`` headers of an empty requests
    bucket, unless the limiter already put its own in ``answer``. So a client's retry
    logic can be tested with injected faults alone.

    Args:
      retry_after_s: ``--fault-retry-after-s``.
      answer: the headers the answer carries so far.
    """
    if error.status not in RETRIED:
        return error
    added = retry_headers(retry_after_s)
    if error.status == 429 and not any(name.startswith(b"x-ratelimit-") for name, _ in answer):
        added = empty_bucket_headers(retry_after_s) + added
    return attrs.evolve(error, headers=(*error.headers, *added))


def empty_bucket_headers(refill_s: float) -> Headers:
    """The headers of an empty requests bucket that refills one request in ``refill_s``
    (a limit of 60 / ``refill_s`` a minute), so they agree with ``retry-after``."""
    bucket = Bucket(max(1, math.floor(60 / refill_s)), now=0.0)
    bucket.level = 0.0
    return bucket.headers(b"requests")
