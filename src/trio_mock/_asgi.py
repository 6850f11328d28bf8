"""The hot endpoints as raw ASGI, inside the Quart-Trio app.

Quart's request context, routing and response objects cost more per request than all of
trio-mock's own work, so the generation endpoints (chat, completions, responses, embeddings)
are served here, straight on the ASGI ``receive``/``send`` callables; every other route stays
a Quart view. Each endpoint is a ``Handler`` that turns a body into a planned ``Reply``; this
module does the I/O they share. The behaviour is the
same as a Quart view: body limit (413), OpenAI-shaped errors, and a stream owned by this
task, whose nursery is cancelled when the client disconnects and whose cancel scope bounds
the stream's duration.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import aclosing
from itertools import repeat
from typing import TYPE_CHECKING, Any, Protocol

import trio
from attrs import frozen

from ._convert import parse_json
from ._emit import new_id
from ._errors import METHOD_NOT_ALLOWED, SERVER_ERROR, TOO_LARGE, OpenAIError
from ._pacing import Event, cut_at, paced, schedule, then
from ._validate import parse_overrides

if TYPE_CHECKING:
    from ._auth import Auth
    from ._emit import Reply
    from ._load import Admission, Load
    from ._protocol import Overrides
    from ._settings import Settings

log = logging.getLogger("trio_mock")

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# A stream's own schedule ends it at max_request_s with an error frame; the cancel scope is
# the backstop for a client too slow to take that frame.
CANCEL_MARGIN_S = 1.0


class ClientGone(Exception):
    """The client disconnected before its request was served."""


def too_long(limit_s: float) -> OpenAIError:
    return OpenAIError(
        504, f"The request exceeded the server's maximum duration of {limit_s:g} s.", code="timeout"
    )


async def read_body(scope: Message, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused with a 413 as soon as it passes ``limit`` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise TOO_LARGE
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise TOO_LARGE
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


def request_id(scope: Message) -> bytes:
    """The client's ``x-request-id`` if it sent one, else a fresh OpenAI-style one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id" and value:
            return bytes(value)
    return new_id("req_").encode()


async def send_body(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    """Wait for the client to go away, then cancel whatever serves it."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


@frozen
class Timing:
    """When a request arrived and was admitted: the schedule runs from admission, so the
    client's TTFT includes the queue; the time limit runs from arrival."""

    start: float
    admitted: float
    admission: Admission


class Handler(Protocol):
    """One endpoint's sans-IO side: a decoded body in, a planned reply out (or an
    OpenAIError)."""

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> Reply: ...


class Endpoint:
    """A generation endpoint as an ASGI callable: read, plan, admit, then answer on time."""

    def __init__(self, settings: Settings, handler: Handler, load: Load, auth: Auth) -> None:
        self.settings = settings
        self.handler = handler
        self.load = load
        self.auth = auth
        self.limit_s = settings.server.max_request_s
        self.late = too_long(self.limit_s)
        # Under the load model each ITL step is stretched by the decode count at that moment.
        self.itl_scale = load.itl_scale if settings.latency.itl_load_factor else None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        start = trio.current_time()  # the client's TTFT counts from arrival
        headers = [(b"x-request-id", request_id(scope))]
        try:
            self.auth.check(scope["path"], scope["headers"])
            if scope["method"] != "POST":
                raise METHOD_NOT_ALLOWED
            body = await read_body(scope, receive, self.settings.server.max_body_bytes)
            overrides = parse_overrides(scope["headers"])
            reply = await self.handler.prepare(parse_json(body), overrides)
            admission = await self.admit(receive)  # may queue, or refuse
        except ClientGone:
            return
        except OpenAIError as error:
            await send_body(send, error.status, error.to_json(), JSON_HEADERS + headers)
            return
        except Exception:  # a bug must not reach the client as a traceback
            log.exception("unexpected error while handling %s", scope["path"])
            await send_body(send, 500, SERVER_ERROR.to_json(), JSON_HEADERS + headers)
            return
        try:
            plan = Timing(start=start, admitted=trio.current_time(), admission=admission)
            if not reply.stream and max(o[-1] for o in reply.offsets) == 0.0:  # nothing to wait
                admission.first_token()
                last: tuple[int, bytes] | None = (200, reply.body())
            else:
                last = await self.respond(receive, send, reply, plan, headers)
            if last is None:  # the client went away
                return
            # The last send goes out after the disconnect watcher is gone: it may close the
            # connection (on shutdown), which Hypercorn reports as a disconnect, and
            # cancelling that close would leave the socket open until the grace period ends.
            if reply.stream:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                await send_body(send, *last, JSON_HEADERS + headers)
        finally:
            admission.finish()

    async def admit(self, receive: Receive) -> Admission:
        """A slot from the load model; a client that leaves the queue gives up its place.

        Raises:
          ClientGone: the client disconnected while queued.
          OpenAIError: the queue refused the request.
        """
        if self.load.slots is None or self.load.slots.value > 0:
            return await self.load.admit()  # no wait: no need to watch
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
        reply: Reply,
        plan: Timing,
        headers: list[tuple[bytes, bytes]],
    ) -> tuple[int, bytes] | None:
        """Serve the request on schedule while watching for a disconnect.

        Returns:
          The status and body still to send (the caller sends it), or None when the client
          disconnected.
        """
        last: tuple[int, bytes] | None = None  # stays None when the client disconnects
        limit = plan.start + self.limit_s
        admission = plan.admission
        timing = (plan.admitted, admission.ttft_scale, self.itl_scale, admission.first_token)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_on_disconnect, receive, nursery.cancel_scope)
            if reply.stream:
                events = schedule(reply.streams(), *timing)
                events = cut_at(then(events, reply.closing), limit, lambda: reply.late(self.late))
                await self.stream(send, reply.opening(), events, plan, headers)
                last = (200, b"")
            else:  # the same schedule, without building frames nobody will read
                silent = [(offsets, repeat(b"", len(offsets))) for offsets in reply.offsets]
                due = (deadline for deadline, _ in schedule(silent, *timing))
                last = await self.wait_for_reply(due, limit, reply)
            nursery.cancel_scope.cancel()
        return last

    async def wait_for_reply(
        self, due: Iterator[float], limit: float, reply: Reply
    ) -> tuple[int, bytes]:
        """Sleep until the reply's last token is due, as the stream would have sent it."""
        for i, deadline in enumerate(due):
            if deadline > limit:
                await trio.sleep_until(limit)
                return self.late.status, self.late.to_json()
            if i == 0 or self.itl_scale is not None:  # under load, each step needs its moment
                await trio.sleep_until(deadline)
            final = deadline
        await trio.sleep_until(final)
        return 200, reply.body()

    async def stream(
        self,
        send: Send,
        opening: bytes,
        events: Iterator[Event],
        plan: Timing,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        """Send the SSE frames on schedule; the caller ends the body."""
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + headers})
        if opening:
            await send({"type": "http.response.body", "body": opening, "more_body": True})
        with trio.move_on_at(plan.start + self.limit_s + CANCEL_MARGIN_S):
            async with aclosing(paced(events)) as batches:
                async for data in batches:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
