"""What every HTTP request meets first, hot endpoint or Quart route alike: its id, its key
(``_auth``), its body (bounded in size and in time), and how a refusal goes out.

The hot endpoints (``_endpoint``) call these on the raw ASGI messages; every other route
passes through ``front`` before Quart sees it, so both answer a missing key, an oversized
or stalled body and a bad request id the same way, in OpenAI's shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import trio

from .._openai._errors import BODY_TIMEOUT, TOO_LARGE, OpenAIError, error_body_for
from .._openai._frames import new_id

if TYPE_CHECKING:
    from .._config._settings import ServerSettings
    from ._auth import Auth

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON_HEADERS = [(b"content-type", b"application/json")]


class ClientGone(Exception):
    """The client disconnected before its request was served."""


def request_id(scope: Message) -> bytes:
    """The client's ``x-request-id`` if it sent one, else a fresh OpenAI-style one."""
    for name, value in scope["headers"]:
        if name == b"x-request-id" and value:
            return bytes(value)
    return new_id("req_").encode()


async def read_body(scope: Message, receive: Receive, server: ServerSettings) -> bytes:
    """The whole request body: refused with a 413 as soon as it passes ``max_body_bytes``,
    with a 408 when it takes longer than ``body_timeout_s``.

    Raises:
      OpenAIError: too large, or too slow.
      ClientGone: the client left before its body was whole.
    """
    limit = server.max_body_bytes
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise TOO_LARGE
    chunks: list[bytes] = []
    size = 0
    with trio.move_on_after(server.body_timeout_s):
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
    raise BODY_TIMEOUT


async def send_body(send: Send, status: int, body: bytes, headers: Headers) -> None:
    """A whole body with its length, as OpenAI sends it (and in one write, see ``_worker``)."""
    length = (b"content-length", b"%d" % len(body))
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def send_error(send: Send, error: OpenAIError, headers: Headers, path: str = "") -> None:
    """An error in the shape of the API ``path`` belongs to (OpenAI's, or OpenRouter's
    under ``/api/v1``), with the error's own headers (``retry-after``...)."""
    body = orjson.dumps(error_body_for(path)(error))
    await send_body(send, error.status, body, [*JSON_HEADERS, *headers, *error.headers])


def replaying(body: bytes, receive: Receive) -> Receive:
    """``receive`` for an app that reads a body already read: the body, then the client's
    own messages (its disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def front(
    app: ASGIApp, auth: Auth, server: ServerSettings, scope: Message, receive: Receive, send: Send
) -> None:
    """Serve ``scope`` with ``app`` once it passed the key check and its body is read;
    every answer names its request (``x-request-id``), as the hot endpoints' do."""
    named = [(b"x-request-id", request_id(scope))]
    try:
        body = await read_body(scope, receive, server)  # first: a refusal keeps the connection
        auth.check(scope["path"], scope["headers"])
    except ClientGone:
        return
    except OpenAIError as error:
        await send_error(send, error, named, scope["path"])
        return

    async def send_named(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *named]
        await send(message)

    await app(scope, replaying(body, receive), send_named)
