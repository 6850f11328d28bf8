"""The hot endpoints as raw ASGI, inside the Quart-Trio app: the transport that plays a
request's ``Exchange``.

Quart's request context, routing and response objects cost more per request than all of
trio-mock's own work, so the generation endpoints (chat, completions, responses, embeddings)
are served here, straight on the ASGI ``receive``/``send`` callables; every other route stays
a Quart view. The request's stages (``_exchange``) decide its exchange; this module sends
it: a refusal at once, or the reply's timeline (``_sim._timeline``: its events on schedule,
cut by its fault or its time limit) as a body or an SSE stream owned by this task, whose
nursery is cancelled when the client disconnects and whose cancel scope bounds the
stream's duration. The journal's ``Record`` is told what happened in a few calls
(``_observe._observer``), and each write's time as it goes out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing
from functools import partial
from itertools import repeat
from typing import TYPE_CHECKING, Any

import orjson
import trio

from .._openai._errors import INJECTED_ERROR, OpenAIError
from .._sim._schedule import Ending
from .._sim._timeline import Clock, timeline
from ._pacing import joined, paced
from ._protocols import ARRIVAL_EXTENSION, BODY_EXTENSION
from ._request import JSON_HEADERS, Message, Receive, Send, request_id, send_body

if TYPE_CHECKING:
    from .._observe._journal import Record
    from .._openai._exchange import Exchange
    from .._openai._frames import PlannedReply
    from .._sim._schedule import Event
    from ._exchange import Services, Stages
    from ._load import Admission

Headers = list[tuple[bytes, bytes]]
Write = Callable[[bytes], Awaitable[None]]
ErrorBody = Callable[[OpenAIError], dict[str, object]]  # an API's error shape

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


def unfinished(exchange: Exchange[PlannedReply]) -> Headers:
    """Headers for a response that will be cut: on HTTP/2 a length it never reaches, since
    ASGI cannot reset a stream (on HTTP/1.1 the connection closes mid-body)."""
    return [(b"content-length", b"2147483647")] if exchange.http2 else []


async def hang_up(send: Send, exchange: Exchange[PlannedReply]) -> None:
    """Cut the response short. On HTTP/1.1 the caller returns without ending the body and
    Hypercorn closes the connection; on HTTP/2 the stream ends short of its length, which
    the client takes as a protocol error and drops the connection, streams and all."""
    if exchange.http2:
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def cancel_on_disconnect(
    receive: Receive, scope: trio.CancelScope, gone: Callable[[], None]
) -> None:
    """Wait for the client to go away, then cancel whatever serves it."""
    while (await receive())["type"] != "http.disconnect":
        pass
    gone()
    scope.cancel()


def error_object(error: OpenAIError, shape: ErrorBody = OpenAIError.to_body) -> dict[str, Any]:
    """The ``error`` object of an error's body, as the journal keeps it."""
    body: dict[str, Any] = shape(error)["error"]  # type: ignore[assignment]
    return body


class Endpoint:
    """A generation endpoint as an ASGI callable: decide the exchange, then play it.

    Args:
      error_body: the route's error shape (OpenAI's, or OpenRouter's on ``/api/v1``).
    """

    def __init__(
        self, stages: Stages, services: Services, error_body: ErrorBody = OpenAIError.to_body
    ) -> None:
        self.error_body = error_body
        self.injected = error_object(INJECTED_ERROR, error_body)
        self.stages = stages
        self.observer = services.observer
        self.watchdog = services.watchdog
        self.pacer = services.pacer
        self.late = too_long(services.settings.server.max_request_s)
        self.late_error = error_object(self.late, error_body)
        # Under the load model each ITL step is stretched by the decode count at that moment.
        factor = services.settings.latency.itl_load_factor
        self.itl_scale = partial(services.load.itl_scale, factor) if factor else None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        # The client's TTFT counts from arrival: when the request reached our worker's
        # socket (``_worker``), in a burst well before this task's first turn.
        start = scope.get("extensions", {}).get(ARRIVAL_EXTENSION) or trio.current_time()
        rid = request_id(scope)
        observer = self.observer
        record = observer.open(scope, start, rid)
        try:
            received = partial(observer.received, record)
            decided = await self.stages.decide(scope, receive, start, [(b"x-request-id", rid)],
                                               received)  # fmt: skip
            if decided is None:
                observer.gone(record)
                return
            exchange, admission = decided
            observer.planned(record, exchange)
            if admission is None:
                assert exchange.refusal is not None
                error = exchange.refusal
                body = orjson.dumps(self.error_body(error))
                await self.send_whole(send, record, error.status, body, exchange)
                return
            try:
                await self.play(exchange, admission, scope, receive, send, record)
            finally:
                admission.finish()
                if exchange.engine is not None:
                    exchange.engine.release(exchange.sequences)
                    observer.stepped(record, exchange.sequences)
        finally:
            observer.close(record)

    async def send_whole(
        self, send: Send, record: Record, status: int, body: bytes, exchange: Exchange[PlannedReply]
    ) -> None:
        """A JSON answer in one piece, noted in the record."""
        await send_body(send, status, body, [*JSON_HEADERS, *exchange.headers])
        self.observer.answered(record, status, body)

    def timeline(self, exchange: Exchange[PlannedReply], admission: Admission) -> Iterator[Event]:
        """The reply's events on schedule, cut by its fault or its time limit; a body's
        events carry no frames (only its last moment matters)."""
        reply = exchange.reply
        assert reply is not None
        engine, stepped = exchange.engine, None
        if engine is not None:
            first = admission.first_token
            pairs = zip(exchange.sequences, reply.event_ends, strict=True)
            stepped = [engine.deadlines(seq, ends, first) for seq, ends in pairs]
        clock = Clock(exchange.admitted, exchange.limit, exchange.ttft_scale, self.itl_scale,
                      admission.first_token, stepped)  # fmt: skip
        if reply.stream:
            choices = reply.streams()
        else:
            choices = [(offsets, repeat(b"")) for offsets in reply.offsets]
        late = Ending(partial(reply.late, self.late), "time_limit", self.late_error)
        injected = Ending(partial(reply.late, INJECTED_ERROR), "fault", self.injected)
        return timeline(choices, reply.event_ends, clock, Ending(reply.closing), late,
                        exchange.cutting_fault, injected)  # fmt: skip

    async def play(
        self,
        exchange: Exchange[PlannedReply],
        admission: Admission,
        scope: Message,
        receive: Receive,
        send: Send,
        record: Record,
    ) -> None:
        """Answer on schedule while watching for a disconnect."""
        reply = exchange.reply
        assert reply is not None
        instant = exchange.engine is None and max(o[-1] for o in reply.offsets) == 0
        if exchange.fault is None and not reply.stream and instant:
            admission.first_token()  # nothing to wait for
            record.was_due(repeat(exchange.admitted, record.planned_events))
            await self.send_whole(send, record, 200, reply.body(), exchange)
            return
        events = self.timeline(exchange, admission)
        last: tuple[int, bytes] | None = None  # stays None when the client disconnects
        async with trio.open_nursery() as nursery:
            gone = partial(self.observer.gone, record)
            nursery.start_soon(cancel_on_disconnect, receive, nursery.cancel_scope, gone)
            if reply.stream:
                last = await self.stream(scope, send, exchange, events, record)
            else:
                last = await self.body(send, exchange, events, record)
            nursery.cancel_scope.cancel()
        if last is None:  # the client went away, or a fault cut the connection
            return
        # The last send goes out after the disconnect watcher is gone: it may close the
        # connection (on shutdown), which Hypercorn reports as a disconnect, and
        # cancelling that close would leave the socket open until the grace period ends.
        if reply.stream:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        else:
            await self.send_whole(send, record, *last, exchange)

    async def body(
        self, send: Send, exchange: Exchange[PlannedReply], events: Iterator[Event], record: Record
    ) -> tuple[int, bytes] | None:
        """Wait until the reply's last token is due, as the stream would have sent it; then
        its answer: the body, or the fault's or the time limit's error, or (a
        ``disconnect`` fault) the status line alone.

        Returns:
          The status and body still to send, or None when the connection is cut.
        """
        assert exchange.reply is not None
        deadline, source = next(events)
        await trio.sleep_until(deadline)  # the first token's moment
        stepwise = self.itl_scale is not None or exchange.engine is not None
        now = trio.current_time()
        while type(source) is not Ending:
            record.was_due((deadline,))
            deadline, source = next(events)
            # Under load, each step needs its moment: the next one is computed then.
            if stepwise and deadline > now and deadline > (now := trio.current_time()):
                await trio.sleep_until(deadline)
        await trio.sleep_until(deadline)
        if source.cut is None:
            return 200, exchange.reply.body()
        self.observer.cut(record, source.cut, source.error)
        if source.cut == "time_limit":
            return self.late.status, orjson.dumps(self.error_body(self.late))
        if source.error is not None:
            return INJECTED_ERROR.status, orjson.dumps(self.error_body(INJECTED_ERROR))
        head = [*JSON_HEADERS, *exchange.headers, *unfinished(exchange)]
        await send({"type": "http.response.start", "status": 200, "headers": head})
        self.observer.answered(record, 200)
        await hang_up(send, exchange)
        return None  # the body never comes

    async def stream(
        self, scope: Message, send: Send, exchange: Exchange[PlannedReply], events: Iterator[Event],
        record: Record,
    ) -> tuple[int, bytes] | None:  # fmt: skip
        """Send the SSE frames on schedule, noting when each went out; the caller ends the
        body (unless a ``disconnect`` fault cuts the connection: then None)."""
        assert exchange.reply is not None
        fault = exchange.cutting_fault
        hangs_up = fault is not None and fault.kind == "disconnect"
        headers = [*SSE_HEADERS, *exchange.headers, *(unfinished(exchange) if hangs_up else ())]
        if exchange.fault is not None:
            await trio.sleep_until(exchange.admitted)  # a slow-headers fault holds the status line
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        self.observer.answered(record, 200)
        write = body_writer(scope, send)
        raw = record.response
        opening = exchange.reply.opening()
        if opening:
            await write(opening)
            if raw is not None:
                raw.append(opening)
        with self.watchdog.move_on_at(exchange.limit + CANCEL_MARGIN_S):
            async with aclosing(paced(events, self.pacer.sleep_until, joined)) as batches:
                async for due, ending, data in batches:
                    if ending is not None and ending.cut is not None:
                        self.observer.cut(record, ending.cut, ending.error)
                    if not data:  # a cut's empty ending: nothing goes out
                        continue
                    await write(data)
                    record.wrote(due, trio.current_time(), ending is not None)
                    if raw is not None:
                        raw.append(data)
        if hangs_up:
            await hang_up(send, exchange)
            return None
        return 200, b""
