"""CORS for browser clients: one ASGI layer around the whole app, present only when
``--cors-origins`` is set (``_app.CorsApp``), so without it the hot path has no layer at all.

It follows Starlette's ``CORSMiddleware``: a request without an ``Origin`` header passes
untouched; a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here,
before auth and routing, with a 204 (a 400 for an origin or method not allowed); any other
request from an allowed origin gets ``Access-Control-Allow-Origin`` and
``Access-Control-Expose-Headers`` added to its ``http.response.start``, whichever route or
error answered it. Unlike Starlette, a disallowed origin gets no CORS header at all. This
layer never reads a body and knows nothing of routes, keys or settings beyond the origins.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from .._openai._errors import OpenAIError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._request import ASGIApp, Message, Receive, Send

Headers = list[tuple[bytes, bytes]]

# What the mock serves; a preflight asking for another method (PUT) is refused, as Starlette
# refuses one outside its allow_methods.
METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST")
# A preflight's requested headers are echoed (Starlette's allow_headers=["*"]): the SDKs
# send families (x-stainless-*, openai-*) that the header cannot spell as patterns. This
# list answers a preflight that names none, as a hint of what the mock reads.
KNOWN_REQUEST_HEADERS = (
    "authorization, content-type, api-key, x-api-key, x-admin-key, openai-beta, "
    "openai-organization, openai-project, x-request-id, x-mock-fault, x-mock-ttft-ms, "
    "x-mock-itl-ms, x-mock-output-tokens, x-mock-seed, anthropic-version"
)
# Response headers a browser script may read; ``*`` would not cover a credentialed request.
EXPOSED = (
    "x-request-id, retry-after, retry-after-ms, "
    "x-ratelimit-limit-requests, x-ratelimit-limit-tokens, "
    "x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens, "
    "x-ratelimit-reset-requests, x-ratelimit-reset-tokens, "
    "x-mock-ttft-ms, x-mock-itl-ms, x-mock-prompt-tokens, x-mock-output-tokens, "
    "x-mock-rule, x-mock-fault"
)
MAX_AGE_S = 600  # Starlette's default; browsers cap it anyway (Chrome at 2 h)


def disallowed(what: str) -> bytes:
    return OpenAIError(400, f"Disallowed CORS {what}.", code="cors_disallowed").to_json()


class Cors:
    """The CORS layer around an ASGI app, for the configured origins (``*``: any)."""

    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        origins = tuple(origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(o.encode("latin-1") for o in origins)
        self.methods = frozenset(m.encode() for m in METHODS)
        self.preflight_headers: Headers = [
            (b"access-control-allow-methods", ", ".join(METHODS).encode()),
            (b"access-control-max-age", b"%d" % MAX_AGE_S),
        ]
        self.exposed = (b"access-control-expose-headers", EXPOSED.encode())

    def allow_origin(self, origin: bytes) -> Headers | None:
        """The headers naming ``origin`` as allowed, or None when it is not."""
        if self.any_origin:
            return [(b"access-control-allow-origin", b"*")]
        if origin in self.origins:
            # The answer depends on the Origin header, so a cache must key on it.
            return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        return None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # WebSocket and lifespan: browsers do no CORS there
            await self.app(scope, receive, send)
            return
        origin = method = requested = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                method = value
            elif name == b"access-control-request-headers":
                requested = value if requested is None else requested + b", " + value
        if origin is None:  # not a cross-origin request
            await self.app(scope, receive, send)
            return
        allowed = self.allow_origin(origin)
        if scope["method"] == "OPTIONS" and method is not None:
            await self.preflight(send, allowed, method, requested)
        elif allowed is None:
            await self.app(scope, receive, send)
        else:
            allowed.append(self.exposed)
            await self.app(scope, receive, partial(add_headers, send, allowed))

    async def preflight(
        self, send: Send, allowed: Headers | None, method: bytes, requested: bytes | None
    ) -> None:
        """Answer a preflight without reaching the app (no key is asked: browsers send none)."""
        if allowed is None or method not in self.methods:
            body = disallowed("origin" if allowed is None else "method")
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
            return
        allow_headers = requested or KNOWN_REQUEST_HEADERS.encode()
        headers = [
            *allowed,
            *self.preflight_headers,
            (b"access-control-allow-headers", allow_headers),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def add_headers(send: Send, extra: Headers, message: Message) -> None:
    """``send``, with ``extra`` added to the response's headers (a new list: the app's may
    be shared)."""
    if message["type"] == "http.response.start":
        message = {**message, "headers": [*message.get("headers", ()), *extra]}
    await send(message)
