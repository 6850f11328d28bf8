"""Trivial chat-completions server that calibrates the load generator.

The least a Python server can do per request: raw asyncio protocols (uvloop when
importable), no ASGI, no JSON parsing beyond two regexes, and the same pre-serialized
bytes for every chunk. Each stream keeps one timer armed, due at ``start + ttft + i * itl``.
Whatever error loadgen.py reports against it is the floor of client plus event-loop
overhead on this machine, not a property of any real server.

    python bench/trivial_server.py --port 8999 --ttft-ms 50 --itl-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import re

MAX_TOKENS = re.compile(rb'"max_(?:completion_)?tokens"\s*:\s*(\d+)')
STREAM = re.compile(rb'"stream"\s*:\s*true')
CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


def chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


CHUNK = chunked(
    b'data: {"id":"chatcmpl-0","object":"chat.completion.chunk","created":0,"model":"mock",'
    b'"choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}\n\n'
)
DONE = chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n"
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
)


def json_response(max_tokens: int) -> bytes:
    text = " tok" * max_tokens
    body = (
        b'{"id":"chatcmpl-0","object":"chat.completion","created":0,"model":"mock","choices":'
        b'[{"index":0,"message":{"role":"assistant","content":"%s"},"finish_reason":"length"}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":%d,"total_tokens":%d}}'
        % (text.encode(), max_tokens, max_tokens + 1)
    )
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )


class Chat(asyncio.Protocol):
    ttft_s = itl_s = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport, self.buf = transport, bytearray()
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            length = CONTENT_LENGTH.search(self.buf, 0, end + 2)
            total = end + 4 + (int(length.group(1)) if length else 0)
            if len(self.buf) < total:
                return
            body = bytes(self.buf[end + 4 : total])
            del self.buf[:total]
            found = MAX_TOKENS.search(body)
            self.respond(int(found.group(1)) if found else 16, bool(STREAM.search(body)))

    def respond(self, n: int, stream: bool) -> None:
        write = self.transport.write
        if not stream:
            write(json_response(n))
            return
        write(SSE_HEAD)
        if not (self.ttft_s or self.itl_s):
            write(CHUNK * n + DONE)
            return
        first = self.loop.time() + self.ttft_s
        self.loop.call_at(first, self.tick, first, 0, n)

    def tick(self, first: float, i: int, n: int) -> None:
        """Write token ``i`` and arm one timer for the next, due at ``first + (i + 1) * itl``."""
        if self.transport.is_closing():
            return
        if i + 1 < n:
            self.transport.write(CHUNK)
            self.loop.call_at(first + (i + 1) * self.itl_s, self.tick, first, i + 1, n)
        else:
            self.transport.write(CHUNK + DONE)


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Chat, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--port", type=int, default=8999)
    ap.add_argument("--ttft-ms", type=float, default=0.0)
    ap.add_argument("--itl-ms", type=float, default=0.0)
    ap.add_argument("--no-uvloop", action="store_true")
    args = ap.parse_args()
    Chat.ttft_s, Chat.itl_s = args.ttft_ms / 1e3, args.itl_ms / 1e3
    if not args.no_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            pass
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
