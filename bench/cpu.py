"""trio-mock's own CPU per request, in process: no sockets, no load client, no other server.

    python bench/cpu.py body      # non-streamed chat, 16 tokens
    python bench/cpu.py stream    # streamed chat, up to 256 tokens
    python bench/cpu.py body worker   # the app as a worker of --workers N

Calls the app's ASGI callable directly, one request after another at zero latency, and
prints the CPU time per request (``time.process_time``), the least and the median of seven
rounds. Loopback benchmarks on a shared 2-core machine swing by 20 % or more; this one
counts only the server's own work, so two commits can be compared in one sitting:

    PYTHONPATH=/path/to/other/checkout/src python bench/cpu.py body

With ``worker``, the app is what a worker of ``--workers N`` runs: it joins through a
``Membership`` holding every piece of state that the checkout's workers share (read off its
fields, so older checkouts work too), and its journal is flushed every
``FLUSH_EVERY`` requests, as the housekeeping tick does (its spool written then).
"""

from __future__ import annotations

import gc
import inspect
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from multiprocessing import Pipe
from typing import Any

import orjson
import trio

from trio_mock import Settings, create_app

ROUNDS = 7
FLUSH_EVERY = 250  # requests between two flushes of a worker's journal


def worker_app(settings: Settings) -> Any:
    """The app of worker 0 of two, with what this checkout's workers share."""
    from trio_mock._app._messages import Membership
    from trio_mock._app._runtime import create_app as create_worker_app
    from trio_mock._serve._buckets import SharedBuckets
    from trio_mock._serve._scripts import Scripts
    from trio_mock._serve._tally import Tally

    fields = inspect.signature(Membership).parameters
    shared: dict[str, Any] = {"buckets": SharedBuckets()}
    if "slots" in fields:
        from trio_mock._serve._arrivals import SharedArrivals
        from trio_mock._serve._slots import SharedSlots

        shared |= {"slots": SharedSlots(2), "arrivals": SharedArrivals()}
    if "spools" in fields:
        shared["spools"] = tempfile.mkdtemp(prefix="bench-cpu-spools-")
    _, theirs = Pipe()
    return create_worker_app(settings, Membership(0, theirs, Scripts(Tally()), 0, **shared))


def chat_caller(
    app: Any, body: bytes, *, checkpoint: bool = False
) -> Callable[[], Awaitable[None]]:
    """One chat request with ``body`` through ``app``'s ASGI callable, no socket: the
    response is dropped (with ``checkpoint``, each write yields, as a socket's would to
    other tasks)."""
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "http_version": "1.1", "query_string": b"", "extensions": {},
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", b"%d" % len(body))]}  # fmt: skip

    async def one() -> None:
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if not pending:
                await trio.sleep_forever()
            return pending.pop()

        async def send(message: dict[str, Any]) -> None:
            if checkpoint:
                await trio.lowlevel.checkpoint()

        await app(dict(scope), receive, send)

    return one


async def main(stream: bool, requests: int, worker: bool) -> None:
    settings = Settings.from_env().replace(ttft_ms=0.0, itl_ms=0.0)
    app = worker_app(settings) if worker else create_app(settings)
    body = orjson.dumps({"model": "m", "stream": stream, "max_tokens": 256 if stream else 16,
                         "messages": [{"role": "user", "content": "hello there"}]})  # fmt: skip
    one = chat_caller(app, body)

    for _ in range(50):  # warm-up: caches, first allocations
        await one()
    per_request = []
    for _ in range(ROUNDS):
        gc.collect()
        started = time.process_time()
        for done in range(1, requests + 1):
            await one()
            if worker and done % FLUSH_EVERY == 0:
                app.live.journal.flush()
        per_request.append((time.process_time() - started) / requests * 1e6)
    per_request.sort()
    kind = ("stream" if stream else "body") + (" (worker)" if worker else "")
    print(f"{kind}: {per_request[0]:.1f} us/request least, {per_request[ROUNDS // 2]:.1f} median")


if __name__ == "__main__":
    streamed = sys.argv[1:2] == ["stream"]
    trio.run(main, streamed, 100 if streamed else 750, "worker" in sys.argv[2:])
