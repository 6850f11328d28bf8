"""Baseline for ``bench/bench.py``: the least a Quart-Trio app on Hypercorn's trio worker does.

One process, no validation, no tokenizer: ``POST /v1/chat/completions`` reads ``max_tokens``
and ``stream`` from the body with two regexes, answers a fixed JSON body, or streams
``max_tokens`` pre-serialized SSE chunks due at ``start + ttft + i * itl`` (``trio.sleep_until``,
one anchor, no drift). ``GET /health`` answers 200. Hypercorn gets the same transport settings
as trio-mock (backlog 2048, no keep-alive request limit), so a ratio against this app measures
the server's own code, not its configuration.

    python bench/baseline_app.py --port 8001 --ttft-ms 50 --itl-ms 10
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from bare_asgi import BODY, CHUNK, DONE, MAX_TOKENS, STREAM, run
from quart import Response, request
from quart_trio import QuartTrio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def create_app(ttft_s: float, itl_s: float) -> QuartTrio:
    """Build the app; latency comes from the command line, not from the request."""
    app = QuartTrio(__name__)

    @app.get("/health")
    async def health() -> Response:
        await trio.lowlevel.checkpoint()  # an async view: Quart would run a sync one in a thread
        return Response(b"ok", content_type="text/plain")

    @app.post("/v1/chat/completions")
    async def chat() -> Response:
        start = trio.current_time()  # the schedule counts from arrival
        body = await request.get_data(cache=False, as_text=False, parse_form_data=False)
        found = MAX_TOKENS.search(body)
        n = int(found.group(1)) if found else 16
        if not STREAM.search(body):
            if ttft_s or itl_s:
                await trio.sleep_until(start + ttft_s + (n - 1) * itl_s)
            return Response(BODY, content_type="application/json")

        async def frames() -> AsyncIterator[bytes]:
            for i in range(n):
                await trio.sleep_until(start + ttft_s + i * itl_s)
                yield CHUNK
            yield DONE

        response = Response(frames(), content_type="text/event-stream")
        response.timeout = None  # Quart would cut the stream at RESPONSE_TIMEOUT (60 s)
        return response

    return app


def main() -> None:
    run(create_app, __doc__, 8001)


if __name__ == "__main__":
    main()
