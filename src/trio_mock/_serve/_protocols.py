"""Hypercorn's HTTP/1.1 and HTTP/2 protocols, as our worker (``_worker``) runs them.

Swapped in by ``Protocols`` (pinned: tested with hypercorn 0.18.0): ``OpenAIH11`` answers
framing errors with OpenAI-shaped JSON, holds the header limit to the configured one,
closes a connection whose request body is still coming after its answer (with a lingering
read), writes a whole body in one write, and offers each request the two scope extensions
below; ``TolerantH2`` drops events for streams that are already gone.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import partial
from typing import TYPE_CHECKING, Any

import h11
import orjson
import trio
from hypercorn.events import Closed, RawData
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.events import EndBody, Response
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H2CProtocolRequiredError, H2ProtocolAssumedError, H11Protocol
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream

if TYPE_CHECKING:
    from hypercorn.events import Event

# A request scope's extension: ``await scope["extensions"][BODY_EXTENSION](data)`` sends a
# piece of a streamed response body, more cheaply than ``send`` (see ``OpenAIH11``).
BODY_EXTENSION = "trio_mock.body_chunk"
# And ``scope["extensions"][ARRIVAL_EXTENSION]``: when the request reached the socket (the
# kernel's stamp, else when it was read), in ``trio.current_time()``'s terms: in a burst,
# well before its app task's first turn.
ARRIVAL_EXTENSION = "trio_mock.arrival"
# When the data the reading task handles now reached the socket (see ``receive``).
RECEIVED_AT: ContextVar[float | None] = ContextVar("RECEIVED_AT", default=None)
LINGER_S = 2.0  # after answering a request whose body is still coming: read, discard, close
SMUGGLING = {b"content-length", b"transfer-encoding"}  # h11 gives header names lower-cased
REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Payload Too Large",
           431: "Request Header Fields Too Large", 501: "Not Implemented"}  # fmt: skip


def has_length(headers: Any) -> bool:
    """Whether h11's (lower-cased) response headers carry a content-length."""
    return any(name == b"content-length" for name, _ in headers)


def error_body(status: int, message: str) -> bytes:
    """An OpenAI-shaped error for a request too broken to reach the app."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None,
                                   "code": None}})  # fmt: skip


class OpenAIH11(H11Protocol):
    """Hypercorn's HTTP/1.1 protocol, with three corrections and a shortcut.

    - Framing errors get an OpenAI-shaped JSON body (Hypercorn's are empty).
    - The request head is held to ``h11_max_incomplete_size`` exactly (h11 checks only
      what is still buffered after each 64 KiB read, so twice as much got through).
    - A response sent before the request body has all arrived (413, 401, 408) closes the
      connection, as nginx does: Hypercorn kept it open and waited for the app, and Quart
      never ended, so the next request on it was never answered. The rest of the body is
      read and dropped for ``LINGER_S`` first (nginx's lingering close), so that closing
      with unread bytes does not reset the answer away before the client reads it.

    The shortcut: each request's scope offers ``BODY_EXTENSION``, a callable that writes
    a chunk of a chunked response body straight to the connection. Through the ASGI
    ``send``, each chunk of a stream is an event of Hypercorn's and one of h11's (whose
    chunked writer keeps no state per chunk), about a third of a paced token's cost.
    """

    lingering = False
    held = b""  # a response head waiting for its body, to go out in the same write
    chunked = False  # the current response's body goes out in chunks

    async def _send_h11_event(self, event: Any) -> None:
        """Hypercorn's, but a head with a content-length waits for its body: a whole
        response is one write, not three (head, body, and h11's empty end of body)."""
        try:
            data = self.connection.send(event)
        except h11.LocalProtocolError:
            if self.connection.their_state != h11.ERROR:
                raise
            return
        if type(event) is h11.Response:
            if has_length(event.headers):
                self.chunked, self.held = False, data
                return
            self.chunked = b"transfer-encoding: chunked" in data.lower()
        if self.held:
            data, self.held = self.held + data, b""
        await self.send(RawData(data=data))

    async def handle(self, event: Event) -> None:
        if self.lingering and isinstance(event, RawData) and event.data:
            return  # the rest of a refused body
        await super().handle(event)

    async def stream_send(self, event: Any) -> None:
        # (a WebSocket's connection has no request state: their_state is None)
        early = self.connection.their_state not in {h11.DONE, None}
        if early and isinstance(event, Response) and event.status_code >= 200:
            event = Response(event.stream_id, [*event.headers, (b"connection", b"close")],
                             event.status_code)  # fmt: skip
        await super().stream_send(event)
        if early and isinstance(event, EndBody) and not self.lingering:
            self.lingering = True
            await self._close_stream()  # the app sees the client gone and ends
            self.task_group.spawn(self._close_after_linger)

    async def _close_after_linger(self) -> None:
        await trio.sleep(LINGER_S)
        await self.send(Closed())

    async def _maybe_recycle(self) -> None:
        if self.held:  # an app that ended without its body: the head still goes out
            data, self.held = self.held, b""
            await self.send(RawData(data=data))
        if not self.lingering:
            await super()._maybe_recycle()

    async def _send_error_response(self, status_code: int) -> None:
        reason = REASONS.get(status_code, "Bad Request")
        body = error_body(status_code, f"{reason}: the request could not be parsed as HTTP/1.1.")
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", b"%d" % len(body)), (b"connection", b"close")]  # fmt: skip
        await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    async def _create_stream(self, request: h11.Request) -> None:
        size = len(request.method) + len(request.target) + 12
        size += sum(len(name) + len(value) + 4 for name, value in request.headers)
        framing = {name for name, _ in request.headers if name in SMUGGLING}
        if size > self.config.h11_max_incomplete_size or len(framing) > 1:
            # Content-Length beside Transfer-Encoding: refused as nginx does (RFC 9112 6.1
            # lets a server refuse it; h11 would let chunked win), since two readings of
            # one request are how requests are smuggled past a proxy.
            await self._send_error_response(431 if len(framing) < 2 else 400)
            await self.send(Closed())
            return
        self.chunked = False
        arrived = RECEIVED_AT.get() or trio.current_time()
        await super()._create_stream(request)
        stream = self.stream
        if isinstance(stream, HTTPStream):  # its app task has not started yet
            extensions: dict[str, Any] = stream.scope["extensions"]
            extensions[BODY_EXTENSION] = partial(self.send_chunk, stream)
            extensions[ARRIVAL_EXTENSION] = arrived

    async def send_chunk(self, stream: HTTPStream, data: bytes) -> None:
        """``send({"type": "http.response.body", "body": data, "more_body": True})``,
        written as h11 would write it when ``stream`` is still the one answering, in a
        chunked body; anything else goes the usual way."""
        if not data:
            return  # (an empty chunk would end the body)
        if self.chunked and stream is self.stream and stream.state is ASGIHTTPState.RESPONSE:
            await self.send(RawData(data=b"%x\r\n%b\r\n" % (len(data), data)))
        else:
            await stream.app_send({"type": "http.response.body", "body": data, "more_body": True})


class Gone:
    """What a closed HTTP/2 stream's later frames are handed to: nothing happens."""

    async def handle(self, event: object) -> None:
        pass


class OpenStreams(dict[int, Any]):  # ruff: ignore[subclass-builtin] (__missing__ is dict's own hook)
    """``H2Protocol.streams``, where a stream already closed (answered or reset) is
    ``Gone``: Hypercorn looked DATA frames up with no check (it has one for END_STREAM),
    so data arriving after the answer raised KeyError and ended the connection with every
    stream on it. ``in``, ``get`` and ``pop`` are unchanged."""

    def __missing__(self, stream_id: int) -> Gone:
        return GONE


GONE = Gone()


class TolerantH2(H2Protocol):
    """Hypercorn's HTTP/2 protocol with ``OpenStreams`` (the flow-control window of data
    for a closed stream is still given back, as Hypercorn does after handling it), and
    requests stamped with their arrival, as on HTTP/1.1."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.streams = OpenStreams()

    async def _create_stream(self, request: Any) -> None:
        arrived = RECEIVED_AT.get() or trio.current_time()
        await super()._create_stream(request)
        stream = self.streams.get(request.stream_id)
        if isinstance(stream, HTTPStream) and hasattr(stream, "scope"):  # app not started
            extensions: dict[str, Any] = stream.scope["extensions"]
            extensions[ARRIVAL_EXTENSION] = arrived


class Protocols(ProtocolWrapper):
    """Hypercorn's protocol switch (0.18.0), with ``OpenAIH11`` and ``TolerantH2``."""

    def __init__(self, *args: Any) -> None:  # Hypercorn's, without building its protocol
        (self.app, self.config, self.context, self.task_group, self.state, self.ssl,
         self.client, self.server, self.send, alpn_protocol) = args  # fmt: skip
        self.protocol = self.make(TolerantH2 if alpn_protocol == "h2" else OpenAIH11)

    def make(self, kind: type[Any]) -> Any:
        return kind(self.app, self.config, self.context, self.task_group, self.state,
                    self.ssl, self.client, self.server, self.send)  # fmt: skip

    async def handle(self, event: Event) -> None:
        try:
            await self.protocol.handle(event)
        except H2ProtocolAssumedError as error:  # h2c with prior knowledge
            self.protocol = self.make(TolerantH2)
            await self.protocol.initiate()
            if error.data != b"":
                await self.protocol.handle(RawData(data=error.data))
        except H2CProtocolRequiredError as error:  # h2c by upgrade
            self.protocol = h2c = self.make(TolerantH2)
            await h2c.initiate(error.headers, error.settings)
            if error.data != b"":
                await self.protocol.handle(RawData(data=error.data))
