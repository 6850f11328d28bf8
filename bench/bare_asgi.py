"""Baseline for ``bench/bench.py``: a bare ASGI callable on Hypercorn's trio worker.

The floor of the stack trio-mock stands on: no framework at all, so a ratio against this app
is what trio-mock's own code and the response it hands Hypercorn cost, and nothing else. The
chat logic is ``baseline_app.py``'s (the Quart-Trio reference): ``POST /v1/chat/completions``
reads ``max_tokens`` and ``stream`` with two regexes, answers a fixed JSON body with a
``content-length``, or streams ``max_tokens`` pre-serialized SSE chunks due at
``arrival + ttft + i * itl`` (``trio.sleep_until``, one anchor, no drift), one write per token
as a naive app does. ``GET /health`` answers 200. Served by plain ``hypercorn.trio.serve``
with trio-mock's transport settings (backlog 2048, no keep-alive request limit).

    python bench/bare_asgi.py --port 8002 --ttft-ms 50 --itl-ms 10
"""

from __future__ import annotations

import argparse
import re
from functools import partial
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    Message = dict[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]

# The chat logic both baselines share (``baseline_app.py`` imports it from here, so that this
# app's memory figures do not carry Quart's modules).
MAX_TOKENS = re.compile(rb'"max_(?:completion_)?tokens"\s*:\s*(\d+)')
STREAM = re.compile(rb'"stream"\s*:\s*true')
CHUNK = (
    b'data: {"id":"chatcmpl-0","object":"chat.completion.chunk","created":0,"model":"mock",'
    b'"choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}\n\n'
)
DONE = b"data: [DONE]\n\n"
BODY = (
    b'{"id":"chatcmpl-0","object":"chat.completion","created":0,"model":"mock","choices":'
    b'[{"index":0,"message":{"role":"assistant","content":"' + b" tok" * 16 + b'"},'
    b'"finish_reason":"length"}],"usage":{"prompt_tokens":1,"completion_tokens":16,'
    b'"total_tokens":17}}'
)
JSON_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
TEXT_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"2")]


async def lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge start-up and shutdown, so Hypercorn does not log a lifespan error."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


def create_app(ttft_s: float, itl_s: float) -> Callable[[Message, Receive, Send], Awaitable[None]]:
    """Build the ASGI callable; latency comes from the command line, not from the request."""

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        start = trio.current_time()  # the schedule counts from arrival
        if scope["path"] == "/health":
            await send({"type": "http.response.start", "status": 200, "headers": TEXT_HEADERS})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        if scope["path"] != "/v1/chat/completions" or scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 404, "headers": TEXT_HEADERS})
            await send({"type": "http.response.body", "body": b"no"})
            return
        body = await read_body(receive)
        found = MAX_TOKENS.search(body)
        n = int(found.group(1)) if found else 16
        if not STREAM.search(body):
            if ttft_s or itl_s:
                await trio.sleep_until(start + ttft_s + (n - 1) * itl_s)
            await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": BODY})
            return
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        for i in range(n):
            await trio.sleep_until(start + ttft_s + i * itl_s)
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": DONE})

    return app


def run(make_app: Callable[[float, float], Any], doc: str | None, port: int) -> None:
    """Parse ``--host --port --ttft-ms --itl-ms`` and serve ``make_app(ttft_s, itl_s)`` on
    Hypercorn's trio worker with trio-mock's transport settings (``baseline_app`` too)."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=port)
    ap.add_argument("--ttft-ms", type=float, default=0.0)
    ap.add_argument("--itl-ms", type=float, default=0.0)
    args = ap.parse_args()
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.backlog = 2048
    config.keep_alive_max_requests = 1_000_000
    app = make_app(args.ttft_ms / 1e3, args.itl_ms / 1e3)
    trio.run(partial(serve, app, config, mode="asgi"))


def main() -> None:
    run(create_app, __doc__, 8002)


if __name__ == "__main__":
    main()
