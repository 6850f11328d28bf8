"""trio-mock's own CPU per request, in process: no sockets, no load client, no other server.

    python bench/cpu.py body      # non-streamed chat, 16 tokens
    python bench/cpu.py stream    # streamed chat, up to 256 tokens

Calls the app's ASGI callable directly, one request after another at zero latency, and
prints the CPU time per request (``time.process_time``), the least and the median of seven
rounds. Loopback benchmarks on a shared 2-core machine swing by 20 % or more; this one
counts only the server's own work, so two commits can be compared in one sitting:

    PYTHONPATH=/path/to/other/checkout/src python bench/cpu.py body
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import orjson
import trio

from trio_mock import Settings, create_app

ROUNDS = 7


async def main(stream: bool, requests: int) -> None:
    app = create_app(Settings.from_env().replace(ttft_ms=0.0, itl_ms=0.0))
    body = orjson.dumps({"model": "m", "stream": stream, "max_tokens": 256 if stream else 16,
                         "messages": [{"role": "user", "content": "hello there"}]})  # fmt: skip
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "http_version": "1.1", "query_string": b"", "extensions": {},
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", b"%d" % len(body))]}  # fmt: skip

    async def one() -> None:
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop()
            await trio.sleep_forever()
            raise AssertionError  # never reached

        async def send(message: dict[str, Any]) -> None:
            pass

        await app(dict(scope), receive, send)

    for _ in range(50):  # warm-up: caches, first allocations
        await one()
    per_request = []
    for _ in range(ROUNDS):
        gc.collect()
        started = time.process_time()
        for _ in range(requests):
            await one()
        per_request.append((time.process_time() - started) / requests * 1e6)
    per_request.sort()
    kind = "stream" if stream else "body"
    print(f"{kind}: {per_request[0]:.1f} us/request least, {per_request[ROUNDS // 2]:.1f} median")


if __name__ == "__main__":
    streamed = sys.argv[1:] == ["stream"]
    trio.run(main, streamed, 100 if streamed else 750)
