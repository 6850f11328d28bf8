"""The stages a generation request passes before its answer: each refuses it or adds to
it, and together they make its ``Exchange`` (``_openai._exchange``), which the transport
(``_endpoint``) then plays.

In order: the body (bounded, ``_request``), the key (``_auth``), the method, a scripted
rule (``_scripts``) or a recording (``_replay``), the handler's plan, the rate limit, the
fault (drawn on arrival, so a seed gives the same faults in order) and admission by the
load model, which may queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import trio
from attrs import frozen

from .._openai._convert import parse_json
from .._openai._errors import (
    METHOD_NOT_ALLOWED,
    SERVER_ERROR,
    OpenAIError,
    invalid,
    status_error,
)
from .._openai._exchange import Exchange, plan_headers, planned_times
from .._openai._openrouter import openai_request
from .._openai._overrides import merged, parse_overrides
from ._ratelimit import injected
from ._request import ClientGone, Message, Receive, read_body

if TYPE_CHECKING:
    from .._config._faults import Fault, FaultInjector
    from .._config._settings import ModelSettings, Settings
    from .._observe._observer import Observer
    from .._openai._frames import PlannedReply
    from .._openai._openrouter import Reasoning
    from .._openai._overrides import Overrides
    from .._sim._engine import Engine, Engines, Seq
    from ._auth import Auth
    from ._housekeeping import Watchdog
    from ._load import Admission, Load
    from ._pacing import Pacer
    from ._ratelimit import RateLimiter
    from ._replay import Replayer
    from ._scripts import Scripts

log = logging.getLogger("trio_mock")


class Handler(Protocol):
    """One endpoint's sans-IO side: a decoded body in, a planned reply out (or an
    OpenAIError)."""

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> PlannedReply: ...


class Dialect(Protocol):
    """What another API (Anthropic's) asks of the stages beyond its handler: headers of its
    own to check, and its own names for the rate-limit headers."""

    def check(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Raises: OpenAIError: the request's headers are not acceptable."""
        ...

    def renamed(self, headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """The limiter's ``x-ratelimit-*`` headers as this API names them."""
        ...


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


@frozen
class Services:
    """What the endpoints of one configuration share. A runtime config change builds a
    new one; requests already running keep the one they started with."""

    settings: Settings
    load: Load
    auth: Auth
    limiter: RateLimiter
    faults: FaultInjector
    observer: Observer
    scripts: Scripts
    watchdog: Watchdog
    pacer: Pacer
    replayer: Replayer | None = None  # --cassette without an upstream
    engines: Engines | None = None  # --engine batched


async def wait_for_slot(load: Load, receive: Receive) -> Admission:
    """Wait in the load model's queue for a slot; a client that leaves gives up its place.

    Raises:
      ClientGone: the client disconnected while queued.
      OpenAIError: the queue refused the request.
    """
    admission: Admission | None = None
    refusal: OpenAIError | None = None
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        try:
            admission = await load.admit()
        except OpenAIError as error:  # raised here, not out of the nursery as a group
            refusal = error
        nursery.cancel_scope.cancel()
    if refusal is not None:
        raise refusal
    if admission is None:
        raise ClientGone
    return admission


class Stages:
    """An endpoint's stages, for one configuration."""

    def __init__(
        self, handler: Handler, services: Services, dialect: Dialect | None = None
    ) -> None:
        self.handler = handler
        self.services = services
        self.dialect = dialect
        self.limit_s = services.settings.server.max_request_s
        self.retry_after_s = services.settings.faults.fault_retry_after_s

    async def decide(
        self,
        scope: Message,
        receive: Receive,
        start: float,
        headers: list[tuple[bytes, bytes]],
        received: Callable[[bytes], None],
    ) -> tuple[Exchange[PlannedReply], Admission | None] | None:
        """The request's exchange, and its admission unless it is refused; None when the
        client left first.

        Args:
          start: the request's arrival.
          headers: the answer's headers so far (its request id); each stage adds its own.
          received: told the body once it is read (for the journal and the raw log).
        """
        services = self.services
        drawn = services.faults.draw()  # on arrival, so a seed gives the same faults in order
        fault: Fault | None = None
        model: str | None = None
        rule_label: str | None = None
        recording: str | None = None  # the cassette's line that answers, if one does
        try:
            # The body first, whatever the answer: one left unread would close the connection.
            body = await read_body(scope, receive, services.settings.server)
            received(body)
            services.auth.check(scope["path"], scope["headers"])
            if self.dialect is not None:
                self.dialect.check(scope["headers"])
            if scope["method"] != "POST":
                raise METHOD_NOT_ALLOWED
            overrides = parse_overrides(scope["headers"])
            data = parse_json(body)
            named = data.get("model")
            model = named if isinstance(named, str) else None
            rule = services.scripts.take(scope["path"], data, scope["headers"])
            if rule is not None:
                rule_label = rule.label
                headers.append((b"x-mock-rule", b"%d" % rule.id))
                if rule.error is not None:
                    raise injected(rule.error, self.retry_after_s, headers)
                overrides = merged(rule.overrides, overrides)
            replayer = services.replayer if rule is None else None
            found = replayer.take(scope["path"], data) if replayer is not None else None
            if found is not None:
                assert replayer is not None
                recording = found.label
                reply: PlannedReply = replayer.reply(found, headers)  # or its recorded error
            else:
                reply = await self.handler.prepare(data, overrides)
            engines = services.engines
            ends = reply.event_ends if engines is not None else []  # a property: built once
            if engines is not None and not engines.fits(longest(reply, ends)):
                raise too_big(reply, engines)
            if services.limiter.active:
                peer = scope["client"][0] if scope.get("client") else ""
                charged = services.limiter.charge(scope["headers"], str(named), reply.charge, peer)
                headers += charged if self.dialect is None else self.dialect.renamed(charged)
            fault = services.faults.decide(drawn, overrides.fault)
            if fault is not None:
                headers.append((b"x-mock-fault", fault.spec.encode()))
                if fault.kind == "status":
                    raise injected(status_error(fault.status), self.retry_after_s, headers)
            # The schedule runs from arrival: our own work so far is absorbed into the
            # TTFT. Only a modelled wait (the capacity queue, a slow-headers fault) moves it.
            anchor = start
            admission = services.load.admit_now()
            if admission is None:
                admission = await wait_for_slot(services.load, receive)  # may refuse
                anchor = trio.current_time()
        except ClientGone:
            return None
        except OpenAIError as error:
            headers += (
                error.headers if self.dialect is None else self.dialect.renamed(error.headers)
            )
            refusal: OpenAIError = error
        except Exception:  # a bug must not reach the client as a traceback
            log.exception("unexpected error while handling %s", scope["path"])
            refusal = SERVER_ERROR
        else:
            admitted = anchor + (fault.delay_s if fault is not None else 0.0)
            ttft_s, itl_s, events = planned_times(reply, start, admitted, admission.ttft_scale)
            engine: Engine | None = None
            sequences: tuple[Seq, ...] = ()
            if services.engines is not None:
                engine = services.engines[model or ""]
                sequences = joined(engine, reply, ends, admitted)
                ttft_s, itl_s = stepped_times(engine, ends, sequences, start)
            headers += plan_headers(reply, ttft_s, itl_s)
            planned = Exchange(
                headers=tuple(headers),
                start=start,
                model=model,
                rule=rule_label,
                recording=recording,
                fault=fault,
                reply=reply,
                admitted=admitted,
                ttft_scale=admission.ttft_scale,
                limit=start + self.limit_s,
                http2=scope["http_version"] == "2",
                planned_ttft_s=ttft_s,
                planned_itl_s=itl_s,
                planned_events=events,
                engine=engine,
                sequences=sequences,
            )
            return planned, admission
        refused: Exchange[PlannedReply] = Exchange(
            headers=tuple(headers), start=start, model=model, rule=rule_label, fault=fault,
            refusal=refusal, recording=recording,
        )  # fmt: skip
        return refused, None


def longest(reply: PlannedReply, event_ends: Sequence[Sequence[int]]) -> int:
    """The tokens of the reply's longest sequence, prompt and output: the KV it needs."""
    return reply.prompt_tokens + max((ends[-1] for ends in event_ends if ends), default=0)


def too_big(reply: PlannedReply, engines: Engines) -> OpenAIError:
    """The context-length error for a request no engine configured so could ever run."""
    profile = engines.profile
    output = longest(reply, reply.event_ends) - reply.prompt_tokens
    return invalid(
        f"This request ({reply.prompt_tokens} prompt and up to {output}"
        f" output tokens) needs more KV blocks of {profile.block_size} tokens than the "
        f"{profile.kv_blocks} the cache holds (--prefix-cache-blocks). Please reduce the "
        "length of the prompt or of the reply.",
        None,
        "context_length_exceeded",
    )


def joined(
    engine: Engine, reply: PlannedReply, event_ends: Sequence[Sequence[int]], admitted: float
) -> tuple[Seq, ...]:
    """The reply's choices, each a sequence of ``engine``'s, waiting from ``admitted``."""
    uncached = reply.prompt_tokens - (reply.cached_tokens or 0)
    return tuple(
        engine.join(admitted, reply.prompt_tokens, uncached, ends[-1] if ends else 0)
        for ends in event_ends
    )


def stepped_times(
    engine: Engine, event_ends: Sequence[Sequence[int]], sequences: Sequence[Seq], start: float
) -> tuple[float, float]:
    """The planned TTFT (from arrival) and ITL under the batched engine: the first
    choice's first event as the engine steps now, and the step time of its batch."""
    ends = event_ends[0] if event_ends else ()
    if not ends or not sequences:
        return 0.0, 0.0
    first = engine.token_at(sequences[0], ends[0])
    return first - start, engine.profile.step_s(0, max(engine.batch, 1))
