"""Record mode: the generation endpoints forward to a real upstream and write a cassette.

Each request goes to the upstream as it came (its key, or ``--upstream-api-key``), and the
answer comes back to the client as it arrives, chunk by chunk; once it is over, the
exchange is appended to the cassette as one line (``_openai._cassette``), in one
``os.write`` on a file opened with ``O_APPEND``, so several workers never interleave. An
upstream that cannot be reached or is too slow gives the client an OpenAI-shaped 502 or
504, recorded as such; one that cuts its stream is cut here too, and recorded as cut.
Every wait is bounded: ``--upstream-timeout-s`` per connect or read, ``--max-request-s``
in all.
"""

from __future__ import annotations

import os
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import trio

from .._openai._cassette import endpoint_of, recording_line
from .._openai._convert import parse_json
from .._openai._errors import OpenAIError
from ._request import (
    JSON_HEADERS,
    ClientGone,
    Message,
    Receive,
    Send,
    read_body,
    request_id,
    send_body as send_whole,
)

if TYPE_CHECKING:
    from .._observe._journal import Record
    from ._exchange import Services

FORWARDED = frozenset({"content-type", "accept", "openai-beta", "openai-organization",
                       "openai-project", "user-agent"})  # fmt: skip
RECORDED = frozenset({"content-type", "accept", "openai-beta"})  # the request's, in the cassette
KEY_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})
DRAIN_S = 1.0  # after the client left, how long the upstream has to finish its stream


def kept_response_header(name: str) -> bool:
    """The upstream's headers that matter to a client, passed on and recorded."""
    return name in {"content-type", "retry-after", "retry-after-ms", "openai-processing-ms",
                    "openai-version"} or name.startswith("x-ratelimit-")  # fmt: skip


def upstream_error(status: int, upstream: str, problem: str) -> OpenAIError:
    code = "upstream_timeout" if status == 504 else "upstream_unreachable"
    return OpenAIError(status, f"The upstream {upstream} failed: {problem}", code=code)


def append_line(path: str, line: bytes) -> None:
    """One whole line at the end of the file, in one write (safe with several writers)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
    finally:
        os.close(fd)
    if written != len(line):
        raise OSError(f"short write to {path}: {written} of {len(line)} bytes")


class SseSplitter:
    """Cuts the bytes of an SSE stream into whole events, each with when it was whole."""

    def __init__(self) -> None:
        self.pending = b""
        self.chunks: list[tuple[float, bytes]] = []

    def feed(self, data: bytes, at: float) -> None:
        self.pending += data
        while (end := self.pending.find(b"\n\n")) != -1:
            self.chunks.append((at, self.pending[: end + 2]))
            self.pending = self.pending[end + 2 :]

    def finish(self, at: float) -> list[tuple[float, bytes]]:
        if self.pending:  # a stream cut mid-event, or one without the blank line
            self.chunks.append((at, self.pending))
            self.pending = b""
        return self.chunks


async def drain_on_disconnect(receive: Receive, scope: trio.CancelScope, record: Record) -> None:
    """Wait for the client to go away, then give the upstream ``DRAIN_S`` more to finish.

    The openai SDK closes its connection as soon as it reads ``data: [DONE]``, often
    before the upstream's stream has formally ended: stopping then would lose a whole
    recording. A stream the client leaves in the middle is still cut within ``DRAIN_S``
    and not recorded; what the upstream sends meanwhile reaches no one (Hypercorn drops
    writes to a closed connection)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    record.disconnected = True
    scope.deadline = min(scope.deadline, trio.current_time() + DRAIN_S)


class Proxy:
    """A generation endpoint in record mode, as an ASGI callable."""

    def __init__(self, client: httpx.AsyncClient, services: Services) -> None:
        settings = services.settings
        cassettes = settings.cassettes
        assert cassettes.record_upstream is not None
        assert cassettes.cassette is not None
        self.client = client
        self.services = services
        self.upstream = cassettes.record_upstream.rstrip("/")
        self.key = cassettes.upstream_api_key
        self.cassette = cassettes.cassette
        self.limit_s = settings.server.max_request_s
        self.max_bytes = settings.server.max_body_bytes  # the upstream's answer, too

    def forwarded(self, scope: Message) -> dict[str, str]:
        """The request's harmless headers, and the key: ours for the upstream, or theirs."""
        headers: dict[str, str] = {"accept-encoding": "identity"}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            if name in FORWARDED or (self.key is None and name in KEY_HEADERS):
                headers[name] = value
        if self.key is not None:
            headers["authorization"] = f"Bearer {self.key}"
        return headers

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        start = trio.current_time()
        observer = self.services.observer
        record = observer.open(scope, start, request_id(scope))
        try:
            try:
                body = await read_body(scope, receive, self.services.settings.server)
                observer.received(record, body)
                self.services.auth.check(scope["path"], scope["headers"])
                data = parse_json(body)
            except OpenAIError as error:  # ours, not the upstream's: never recorded
                payload = error.to_json()
                await send_whole(send, error.status, payload, [*JSON_HEADERS, *error.headers])
                observer.answered(record, error.status, payload)
                return
            named = data.get("model")
            record.model = named if isinstance(named, str) else None
            record.stream = data.get("stream") is True
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain_on_disconnect, receive, nursery.cancel_scope, record)
                nursery.cancel_scope.deadline = start + self.limit_s
                await self.forward(scope, send, body, data, start, record)
                nursery.cancel_scope.cancel()
            if record.status is None and not record.disconnected:
                problem = f"no answer within --max-request-s ({self.limit_s:g} s)"
                await self.refuse(send, record, scope["path"], data, 504, problem, start)
        except ClientGone:
            observer.gone(record)
        finally:
            observer.close(record)

    async def keep(self, line: bytes) -> None:
        """Append an exchange's line to the cassette. Called before the answer's last byte
        goes out, so a client that has its whole answer can replay it at once (and a
        server stopped right after has it on disk); a thread's write is not cancelled."""
        await trio.to_thread.run_sync(append_line, self.cassette, line)

    async def forward(
        self, scope: Message, send: Send, body: bytes, data: dict[str, Any], start: float,
        record: Record,
    ) -> None:  # fmt: skip
        """Send the request upstream and its answer back, keeping the exchange in the
        cassette (nothing when the client left first)."""
        endpoint = endpoint_of(scope["path"])
        headers = self.forwarded(scope)
        recorded_request = {k: v for k, v in headers.items() if k in RECORDED}
        line = partial(recording_line, endpoint=endpoint, request=data,
                       request_headers=recorded_request)  # fmt: skip
        started = False
        splitter = SseSplitter()
        try:
            async with self.client.stream(
                "POST", self.upstream + endpoint, content=body, headers=headers
            ) as response:
                kept = {k.lower(): v for k, v in response.headers.items()
                        if kept_response_header(k.lower())}  # fmt: skip
                out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept.items()]
                if not kept.get("content-type", "").startswith("text/event-stream"):
                    whole = b""
                    async for piece in response.aiter_bytes():
                        whole += piece
                        if len(whole) > self.max_bytes:
                            raise httpx.DecodingError("the answer is larger than --max-body-bytes")
                    await self.keep(line(status=response.status_code, headers=kept, body=whole,
                                         body_at=trio.current_time() - start))  # fmt: skip
                    await send_whole(send, response.status_code, whole, out)
                    self.services.observer.answered(record, response.status_code)
                    return
                message = {"type": "http.response.start", "status": response.status_code}
                await send({**message, "headers": out})
                self.services.observer.answered(record, response.status_code)
                started = True
                size = 0
                try:
                    async for piece in response.aiter_bytes():
                        at = trio.current_time() - start
                        size += len(piece)
                        if size > self.max_bytes:
                            raise httpx.DecodingError("the stream is larger than --max-body-bytes")
                        await send({"type": "http.response.body", "body": piece, "more_body": True})
                        splitter.feed(piece, at)
                except httpx.HTTPError as error:  # cut: the client's connection is cut too
                    chunks = splitter.finish(trio.current_time() - start)
                    self.services.observer.cut(record, "upstream")
                    cut = f"{type(error).__name__}: {error}"
                    await self.keep(
                        line(status=response.status_code, headers=kept, chunks=chunks, cut=cut)
                    )
                    return
                chunks = splitter.finish(trio.current_time() - start)
                await self.keep(line(status=response.status_code, headers=kept, chunks=chunks))
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except httpx.HTTPError as error:
            if started:  # raised while closing a stream already answered
                return
            status = 504 if isinstance(error, httpx.TimeoutException) else 502
            problem = f"{type(error).__name__}: {error}"
            await self.refuse(send, record, scope["path"], data, status, problem, start)

    async def refuse(
        self, send: Send, record: Record, path: str, data: dict[str, Any], status: int,
        problem: str, start: float,
    ) -> None:  # fmt: skip
        """Tell the client the upstream failed (502, or 504 when too slow), and record it."""
        payload = upstream_error(status, self.upstream, problem).to_json()
        recorded = recording_line(endpoint=path, request=data, request_headers={},
                                  status=status, headers={"content-type": "application/json"},
                                  body=payload, body_at=trio.current_time() - start)  # fmt: skip
        await self.keep(recorded)
        await send_whole(send, status, payload, JSON_HEADERS)
        self.services.observer.answered(record, status, payload)
