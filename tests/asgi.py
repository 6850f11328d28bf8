"""Call the app's ASGI entry point in memory: no sockets, no Quart test client.

``call`` sends one request straight into the app and collects what it sends back, with times
relative to the call's start (``trio.current_time()``), so under MockClock they are exact.
``Answer`` holds the reply: status, headers, when the status line and each body piece went
out, and whether the body was finished. ``token_times`` and ``chat_content`` read a stream's
events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import httpx
import orjson
import trio

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from trio_mock._serve._request import ASGIApp, Message

# Request headers: (name, value) byte pairs as ASGI has them, or a dict of strings.
Headers = Sequence[tuple[bytes, bytes]] | Mapping[str, str]
Events = list[tuple[float, str, Any]]


class Answer(NamedTuple):
    """One request's answer as the app sent it, with times relative to its arrival."""

    status: int
    headers: dict[str, str]
    started_at: float  # when the status line went out
    pieces: list[tuple[float, bytes]]  # each non-empty body piece and when it went out
    ended: bool  # False: the body was never finished (the connection is to be cut)

    @property
    def body(self) -> bytes:
        return b"".join(piece for _, piece in self.pieces)

    def json(self) -> Any:
        return orjson.loads(self.body)

    def events(self) -> Events:
        """Each SSE event as (time, event name, decoded data); ``[DONE]`` stays a string."""
        out: Events = []
        for at, piece in self.pieces:
            for block in piece.split(b"\n\n"):
                name, data = "message", None
                for line in block.split(b"\n"):
                    if line.startswith(b"event: "):
                        name = line[7:].decode()
                    elif line.startswith(b"data: "):
                        data = line[6:]
                if data is not None:
                    out.append((at, name, "[DONE]" if data == b"[DONE]" else orjson.loads(data)))
        return out

    def response(self) -> httpx.Response:
        """As an httpx response, for conftest's ``check_error``."""
        return httpx.Response(self.status, headers=self.headers, content=self.body)


async def call(
    app: QuartTrio,
    path: str,
    body: Any = None,
    *,
    method: str = "POST",
    query: str = "",
    headers: Headers = (),
    content_type: bytes = b"application/json",
    write_s: float = 0.0,
    extensions: Mapping[str, Any] | None = None,
) -> Answer:
    """One request straight into the app's ASGI entry point.

    ``body``: None for none, bytes as they are, anything else as JSON. ``headers`` follow the
    content type. ``write_s``: how long each body piece takes to send (a slow client).
    ``extensions``: the scope's, as a server offers them.
    """
    start = trio.current_time()
    sent: list[tuple[float, Message]] = []
    raw = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
    pending: list[Message] = [{"type": "http.request", "body": raw, "more_body": False}]

    async def receive() -> Message:
        if not pending:
            await trio.sleep_forever()  # the client stays connected
        return pending.pop()

    async def send(message: Message) -> None:
        if write_s and message.get("body"):
            await trio.sleep(write_s)
        sent.append((trio.current_time() - start, message))

    pairs = (
        [(k.encode(), v.encode()) for k, v in headers.items()]
        if isinstance(headers, Mapping)
        else list(headers)
    )
    scope: Message = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"content-type", content_type), *pairs],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "extensions": dict(extensions or {}),
    }
    await cast("ASGIApp", app)(scope, receive, send)
    (started_at, start_message), *rest = sent
    assert start_message["type"] == "http.response.start"
    response_headers = {k.decode(): v.decode() for k, v in start_message["headers"]}
    pieces = [(at, m["body"]) for at, m in rest if m.get("body")]
    ended = bool(rest) and not rest[-1][1].get("more_body", False)
    return Answer(start_message["status"], response_headers, started_at, pieces, ended)


def token_times(events: Events) -> list[float]:
    """When each streamed text token arrived (chat and completions chunks, responses deltas)."""
    out: list[float] = []
    for at, name, data in events:
        if name == "response.output_text.delta":
            out.append(at)
        elif isinstance(data, dict) and "choices" in data:
            for choice in data["choices"]:
                if (choice.get("delta") or {}).get("content") or choice.get("text"):
                    out.append(at)
    return out


def chat_content(events: Events) -> str:
    """A chat stream's text, its chunks' content joined."""
    return "".join(
        (choice.get("delta") or {}).get("content") or ""
        for _, _, data in events
        if isinstance(data, dict)
        for choice in data.get("choices", [])
    )
