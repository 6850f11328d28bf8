"""The hot endpoints as raw ASGI, inside the Quart-Trio app.

Quart's request context, routing and response objects cost more per request than all of
trio-mock's own work, so the generation endpoints (chat, completions, responses, embeddings)
are served here, straight on the ASGI ``receive``/``send`` callables; every other route stays
a Quart view. Each endpoint is a ``Handler`` that turns a body into a planned ``Reply``; this
module does the I/O they share: auth, body limit (413), OpenAI-shaped errors, scripted
rules (``_scripts``), rate limits, injected faults (``_faults``), and a stream owned by this
task, whose nursery is cancelled when the client disconnects and whose cancel scope bounds
the stream's duration. Each request's ``Record`` notes what happened and when each write
went out, for the journal and the metrics (``_observe``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import aclosing
from functools import partial
from itertools import chain, repeat
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import trio
from attrs import frozen

from .._config._faults import CUTS
from .._openai._convert import parse_json
from .._openai._errors import (
    INJECTED_ERROR,
    METHOD_NOT_ALLOWED,
    SERVER_ERROR,
    OpenAIError,
    status_error,
)
from .._openai._overrides import parse_overrides
from ._pacing import Built, Event, cut_after, cut_at, paced, schedule, then
from ._request import (
    JSON_HEADERS,
    ClientGone,
    Message,
    Receive,
    Send,
    read_body,
    request_id,
    send_body,
)
from ._scripts import merged
from ._worker import ARRIVAL_EXTENSION, BODY_EXTENSION

if TYPE_CHECKING:
    from .._config._faults import Fault, FaultInjector
    from .._config._settings import Settings
    from .._observe._journal import Record
    from .._observe._observer import Observer
    from .._openai._frames import Reply
    from .._openai._overrides import Overrides
    from ._auth import Auth
    from ._housekeeping import Watchdog
    from ._load import Admission, Load
    from ._pacing import Pacer
    from ._ratelimit import RateLimiter
    from ._scripts import Scripts

log = logging.getLogger("trio_mock")

ItlScale = Callable[[], float] | None
Write = Callable[[bytes], Awaitable[None]]

SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# A stream's own schedule ends it at max_request_s with an error frame; the cancel scope is
# the backstop for a client too slow to take that frame (kept by the app's ``Watchdog``).
CANCEL_MARGIN_S = 1.0


def too_long(limit_s: float) -> OpenAIError:
    return OpenAIError(
        504, f"The request exceeded the server's maximum duration of {limit_s:g} s.", code="timeout"
    )


def body_writer(scope: Message, send: Send) -> Write:
    """How to send a piece of a streamed body: our worker's shortcut (``_worker``), or
    ``send``."""
    shortcut: Write | None = scope.get("extensions", {}).get(BODY_EXTENSION)
    if shortcut is not None:
        return shortcut

    async def write(data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})

    return write


def tokens_per_event(ends: Sequence[int]) -> Iterator[int]:
    """How many tokens each event carries, from the running ends."""
    previous = 0
    for end in ends:
        yield end - previous
        previous = end


def unfinished(timing: Timing) -> list[tuple[bytes, bytes]]:
    """Headers for a response that will be cut: on HTTP/2 a length it never reaches, since
    ASGI cannot reset a stream (on HTTP/1.1 the connection closes mid-body)."""
    return [(b"content-length", b"2147483647")] if timing.http2 else []


async def hang_up(send: Send, timing: Timing) -> None:
    """Cut the response short. On HTTP/1.1 the caller returns without ending the body and
    Hypercorn closes the connection; on HTTP/2 the stream ends short of its length, which
    the client takes as a protocol error and drops the connection, streams and all."""
    if timing.http2:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def cancel_on_disconnect(
    receive: Receive, scope: trio.CancelScope, record: Record | None = None
) -> None:
    """Wait for the client to go away, then cancel whatever serves it."""
    while (await receive())["type"] != "http.disconnect":
        pass
    if record is not None:
        record.disconnected = True
    scope.cancel()


@frozen
class Timing:
    """When a request arrived and when its schedule starts: at arrival, or once the
    capacity queue admitted it (the client's TTFT includes the queue); the time limit runs
    from arrival. And the fault it is to meet, if any."""

    start: float
    admitted: float  # the schedule's start, later by a slow-headers fault's delay
    admission: Admission
    fault: Fault | None = None
    http2: bool = False


class Handler(Protocol):
    """One endpoint's sans-IO side: a decoded body in, a planned reply out (or an
    OpenAIError)."""

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> Reply: ...


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


def planned_headers(reply: Reply, timing: Timing, record: Record) -> list[tuple[bytes, bytes]]:
    """The plan, told to the client (``x-mock-ttft-ms`` counts from arrival, the queue
    included) and noted in the journal."""
    offsets = reply.offsets[0] if reply.offsets else []
    ttft_s = timing.admitted - timing.start
    itl_s = 0.0
    if offsets:
        ttft_s += offsets[0] * timing.admission.ttft_scale
        itl_s = (offsets[-1] - offsets[0]) / (len(offsets) - 1) if len(offsets) > 1 else 0.0
    record.planned_ttft_s, record.planned_itl_s = ttft_s, itl_s
    record.admitted = timing.admitted
    return [
        (b"x-mock-ttft-ms", b"%.3f" % (ttft_s * 1000)),
        (b"x-mock-itl-ms", b"%.3f" % (itl_s * 1000)),
        (b"x-mock-prompt-tokens", b"%d" % reply.prompt_tokens),
        (b"x-mock-output-tokens", b"%d" % reply.completion_tokens),
    ]


class Endpoint:
    """A generation endpoint as an ASGI callable: read, timing, admit, then answer on time."""

    def __init__(self, handler: Handler, services: Services) -> None:
        settings = services.settings
        self.settings = settings
        self.handler = handler
        self.load = services.load
        self.auth = services.auth
        self.limiter = services.limiter
        self.faults = services.faults
        self.observer = services.observer
        self.scripts = services.scripts
        self.watchdog = services.watchdog
        self.pacer = services.pacer
        self.limit_s = settings.server.max_request_s
        self.late = too_long(self.limit_s)
        # Under the load model each ITL step is stretched by the decode count at that moment.
        factor = settings.latency.itl_load_factor
        self.itl_scale = partial(self.load.itl_scale, factor) if factor else None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        # The client's TTFT counts from arrival: when the request reached our worker's
        # socket (``_worker``), in a burst well before this task's first turn.
        start = scope.get("extensions", {}).get(ARRIVAL_EXTENSION) or trio.current_time()
        rid = request_id(scope)
        record = self.observer.open(scope, start, rid)
        try:
            await self.serve(scope, receive, send, record, [(b"x-request-id", rid)])
        finally:
            self.observer.close(record)

    async def serve(
        self,
        scope: Message,
        receive: Receive,
        send: Send,
        record: Record,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        fault = self.faults.draw()  # on arrival, so a seed gives the same faults in order
        try:
            # The body first, whatever the answer: one left unread would close the connection.
            body = await read_body(scope, receive, self.settings.server)
            self.observer.received(record, body)
            self.auth.check(scope["path"], scope["headers"])
            if scope["method"] != "POST":
                raise METHOD_NOT_ALLOWED
            overrides = parse_overrides(scope["headers"])
            data = parse_json(body)
            model = data.get("model")
            record.model = model if isinstance(model, str) else None
            rule = self.scripts.take(scope["path"], data, scope["headers"])
            if rule is not None:
                record.rule = rule.label
                headers.append((b"x-mock-rule", b"%d" % rule.id))
                if rule.error is not None:
                    raise rule.error
                overrides = merged(rule.overrides, overrides)
            reply = await self.handler.prepare(data, overrides)
            record.stream = reply.stream
            record.prompt_tokens = reply.prompt_tokens
            record.completion_tokens = reply.completion_tokens
            record.finish_reason = reply.finish_reason
            if self.limiter.active:
                headers += self.limiter.charge(scope["headers"], str(model), reply.charge)
            fault = self.faults.decide(fault, overrides.fault)
            if fault is not None:
                record.fault = fault.spec
                headers.append((b"x-mock-fault", fault.spec.encode()))
                if fault.kind == "status":
                    raise status_error(fault.status)
            # The schedule runs from arrival: our own work so far is absorbed into the
            # TTFT. Only a modelled wait (the capacity queue, a slow-headers fault) moves it.
            anchor = record.start
            admission = self.load.admit_now()
            if admission is None:
                admission = await self.queue(receive)  # may refuse
                anchor = trio.current_time()
        except ClientGone:
            record.disconnected = True
            return
        except OpenAIError as error:
            headers += error.headers
            await self.send_whole(send, record, error.status, error.to_json(), headers)
            return
        except Exception:  # a bug must not reach the client as a traceback
            log.exception("unexpected error while handling %s", scope["path"])
            await self.send_whole(send, record, 500, SERVER_ERROR.to_json(), headers)
            return
        try:
            admitted = anchor + (fault.delay_s if fault is not None else 0.0)
            http2 = scope["http_version"] == "2"
            timing = Timing(start=record.start, admitted=admitted, admission=admission,
                          fault=fault, http2=http2)  # fmt: skip
            headers += planned_headers(reply, timing, record)
            record.planned_events = sum(map(len, reply.offsets))
            if fault is None and not reply.stream and max(o[-1] for o in reply.offsets) == 0.0:
                admission.first_token()  # nothing to wait for
                record.due.extend(repeat(admitted, record.planned_events))
                last: tuple[int, bytes] | None = (200, reply.body())
            else:
                write = body_writer(scope, send)
                last = await self.respond(receive, send, write, reply, timing, headers, record)
            if last is None:  # the client went away, or a fault cuts the connection
                return
            # The last send goes out after the disconnect watcher is gone: it may close the
            # connection (on shutdown), which Hypercorn reports as a disconnect, and
            # cancelling that close would leave the socket open until the grace period ends.
            if reply.stream:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await self.send_whole(send, record, *last, headers)
        finally:
            admission.finish()

    async def send_whole(
        self,
        send: Send,
        record: Record,
        status: int,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """A JSON answer in one piece, noted in the record."""
        record.status = status
        if status >= 400:
            record.error = orjson.loads(body).get("error")
        await send_body(send, status, body, JSON_HEADERS + headers)
        record.headers_sent = trio.current_time()
        if record.response is not None:
            record.response.append(body)

    async def queue(self, receive: Receive) -> Admission:
        """Wait in the load model's queue for a slot; a client that leaves gives up its
        place.

        Raises:
          ClientGone: the client disconnected while queued.
          OpenAIError: the queue refused the request.
        """
        admission: Admission | None = None
        refusal: OpenAIError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_on_disconnect, receive, nursery.cancel_scope)
            try:
                admission = await self.load.admit()
            except OpenAIError as error:  # raised here, not out of the nursery as a group
                refusal = error
            nursery.cancel_scope.cancel()
        if refusal is not None:
            raise refusal
        if admission is None:
            raise ClientGone
        return admission

    async def respond(
        self,
        receive: Receive,
        send: Send,
        write: Write,
        reply: Reply,
        timing: Timing,
        headers: list[tuple[bytes, bytes]],
        record: Record,
    ) -> tuple[int, bytes] | None:
        """Serve the request on schedule while watching for a disconnect.

        Returns:
          The status and body still to send (the caller sends it), or None when the client
          disconnected or a fault cuts the connection.
        """
        last: tuple[int, bytes] | None = None  # stays None when the client disconnects
        limit = timing.start + self.limit_s
        args = self.schedule_args(timing)
        fault = timing.fault if timing.fault is not None and timing.fault.kind in CUTS else None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_on_disconnect, receive, nursery.cancel_scope, record)
            if reply.stream:
                if fault is None:
                    events = then(schedule(reply.streams(), *args), reply.closing)
                else:
                    events = self.faulty_stream(reply, timing, fault, record)
                events = cut_at(events, limit, lambda: self.too_late(reply, record))
                if fault is not None and fault.kind == "disconnect":
                    record.cut = "fault"
                    await self.stream(
                        send, write, reply.opening(), events, timing, headers + unfinished(timing),
                        record,
                    )  # fmt: skip
                    await hang_up(send, timing)
                else:
                    await self.stream(send, write, reply.opening(), events, timing, headers, record)
                    last = (200, b"")
            elif fault is not None:
                last = await self.faulty_body(send, reply, timing, fault, limit, headers, record)
            else:  # the same schedule, without building frames nobody will read
                silent = [(offsets, repeat(b"")) for offsets in reply.offsets]
                due = (deadline for deadline, _ in schedule(silent, *args))
                last = await self.wait_for_reply(due, limit, reply, record)
            nursery.cancel_scope.cancel()
        return last

    def too_late(self, reply: Reply, record: Record) -> bytes:
        """The frame that ends a stream at the time limit, noted in the record."""
        record.cut = "time_limit"
        record.error = self.late.to_body()["error"]  # type: ignore[assignment]
        return reply.late(self.late)

    def schedule_args(self, timing: Timing) -> tuple[float, float, ItlScale, Callable[[], None]]:
        """``schedule``'s arguments after the frames: start, TTFT and ITL scales, and the
        first token's callback."""
        admission = timing.admission
        return timing.admitted, admission.ttft_scale, self.itl_scale, admission.first_token

    def faulty_stream(
        self, reply: Reply, timing: Timing, fault: Fault, record: Record
    ) -> Iterator[Event]:
        """The stream's events up to the fault's token, then the fault: nothing (the caller
        closes the connection), an error event, or silence until the time limit."""

        def injected_error() -> bytes:
            record.cut = "fault"
            record.error = INJECTED_ERROR.to_body()["error"]  # type: ignore[assignment]
            return reply.late(INJECTED_ERROR)

        last = injected_error if fault.kind == "error" else bytes
        kept = self.until_fault(reply.streams(), reply, timing, fault, last)
        if fault.kind == "stall":  # the tokens only, then silence until cut_at's limit
            tokens = (event for event in kept if type(event[1]) is not Built)
            return chain(tokens, [(math.inf, repeat(b""))])
        return kept

    def until_fault(
        self,
        choices: Sequence[tuple[Sequence[float], Iterator[bytes]]],
        reply: Reply,
        timing: Timing,
        fault: Fault,
        last: Callable[[], bytes],
    ) -> Iterator[Event]:
        """``choices`` on schedule up to the fault's token, then ``last()`` when the next
        token was due."""
        counted = [
            (offsets, zip(tokens_per_event(ends), repeat(frames)))
            for (offsets, frames), ends in zip(choices, reply.event_ends, strict=True)
        ]
        tokens = fault.tokens_before(sum(ends[-1] for ends in reply.event_ends))
        return cut_after(schedule(counted, *self.schedule_args(timing)), tokens, last)

    async def faulty_body(
        self,
        send: Send,
        reply: Reply,
        timing: Timing,
        fault: Fault,
        limit: float,
        headers: list[tuple[bytes, bytes]],
        record: Record,
    ) -> tuple[int, bytes] | None:
        """A body's fault, at the moment its token would have been generated: a 500, a
        connection closed after the status line, or silence until the time limit."""
        silent = [(offsets, repeat(b"")) for offsets in reply.offsets]
        *_, (when, _) = self.until_fault(silent, reply, timing, fault, bytes)  # its moment
        if fault.kind == "stall" or when > limit:
            await trio.sleep_until(limit)
            return self.late.status, self.late.to_json()
        await trio.sleep_until(when)
        if fault.kind == "error":
            return INJECTED_ERROR.status, INJECTED_ERROR.to_json()
        start = JSON_HEADERS + headers + unfinished(timing)
        await send({"type": "http.response.start", "status": 200, "headers": start})
        record.status, record.cut, record.headers_sent = 200, "fault", trio.current_time()
        await hang_up(send, timing)
        return None  # the body never comes

    async def wait_for_reply(
        self, due: Iterator[float], limit: float, reply: Reply, record: Record
    ) -> tuple[int, bytes]:
        """Sleep until the reply's last token is due, as the stream would have sent it."""
        for i, deadline in enumerate(due):
            if deadline > limit:
                await trio.sleep_until(limit)
                record.cut = "time_limit"
                return self.late.status, self.late.to_json()
            if i == 0 or self.itl_scale is not None:  # under load, each step needs its moment
                await trio.sleep_until(deadline)
            record.due.append(deadline)
            final = deadline
        await trio.sleep_until(final)
        return 200, reply.body()

    async def stream(
        self,
        send: Send,
        write: Write,
        opening: bytes,
        events: Iterator[Event],
        timing: Timing,
        headers: list[tuple[bytes, bytes]],
        record: Record,
    ) -> None:
        """Send the SSE frames on schedule, noting when each went out; the caller ends the
        body."""
        if timing.fault is not None:
            await trio.sleep_until(timing.admitted)  # a slow-headers fault holds the status line
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})
        record.status, record.headers_sent = 200, trio.current_time()
        raw = record.response
        if opening:
            await write(opening)
            if raw is not None:
                raw.append(opening)
        with self.watchdog.move_on_at(timing.start + self.limit_s + CANCEL_MARGIN_S):
            async with aclosing(paced(events, self.pacer.sleep_until)) as batches:
                async for due, closing, data in batches:
                    if not data:  # a cut's empty ending: nothing goes out
                        continue
                    await write(data)
                    record.wrote(due, trio.current_time(), closing)
                    if raw is not None:
                        raw.append(data)
