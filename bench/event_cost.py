"""What building one streamed event costs, per API: chat, Responses and Realtime deltas.

    PYTHONPATH=src python bench/event_cost.py [--tokens 200] [--rounds 7] [--wire 2000]

Plans one reply of ``--tokens`` tokens (one token per event, a fixed seed) through each
API's own planner, then times drawing every delta frame from its renderer, as the pacer
draws them; prints the median over ``--rounds`` rounds, microseconds per event. Only the
frame building is timed: no socket, no scheduler. Run it on two commits in one sitting to
compare them: on a shared machine absolute figures drift, ratios within a run do not.

``--wire N`` also serves one Realtime response of N tokens with no latency (every delta due
at once) over loopback to a trio-websocket client in the same process, and prints the
median wall time from ``response.create`` to ``response.done``: the send path's cost
per delta, scheduler and socket included.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import orjson
import trio
from trio_websocket import open_websocket_url

from trio_mock import serve
from trio_mock._config._settings import Settings
from trio_mock._openai._model import Ask, MockModel
from trio_mock._openai._overrides import Overrides
from trio_mock._serve._chat import ChatHandler
from trio_mock._serve._realtime import Connection, Session
from trio_mock._serve._responses import ResponsesHandler
from trio_mock._sim._plan import ChoicePlan, Limits
from trio_mock._sim._tokens import load_tokenizer

Builder = Callable[[], Iterator[bytes | str]]


async def unused_send(message: dict[str, Any]) -> None:
    raise AssertionError("delta_frames only builds frames")


async def builders(tokens: int) -> dict[str, tuple[Builder, int]]:
    """Per API, a callable that yields one reply's delta frames, and how many it yields."""
    settings = Settings()
    model = MockModel(settings, load_tokenizer(settings.output.tokenizer))
    name = settings.models.models[0]
    overrides = Overrides(output_tokens=tokens, seed=1)
    chat = await ChatHandler(model).prepare(
        {"model": name, "messages": [{"role": "user", "content": "hi"}], "stream": True},
        overrides,
    )
    responses = await ResponsesHandler(model).prepare(
        {"model": name, "input": "hi", "stream": True}, overrides
    )
    ask = Ask(model=name, limits=Limits(max_tokens=None), can_reason=False)
    (plan,) = await model.plan(ask, 10, overrides)
    endpoint: Any = SimpleNamespace(latest=None)
    connection = Connection(endpoint, {}, unused_send, Session(model=name), overrides, False)
    ids = {"response_id": "resp_x", "item_id": "item_x", "output_index": 0}
    return {
        "chat": (lambda: chat.streams()[0][1], len(chat.offsets[0])),
        "responses": (responses.frames, len(responses.offsets[0])),
        "realtime": (lambda: realtime_texts(connection, plan, ids), len(plan.offsets)),
    }


def realtime_texts(
    connection: Connection, plan: ChoicePlan, ids: dict[str, Any]
) -> Iterator[bytes | str]:
    """Realtime's deltas as the ASGI message carries them: text, not bytes."""
    return (frame.decode() for frame in connection.delta_frames(plan, ids))


def per_event_us(build: Builder, events: int, rounds: int) -> float:
    """Median microseconds per event over ``rounds`` rounds of 20 replies each."""
    samples = []
    for _ in range(rounds):
        begin = time.perf_counter()
        for _ in range(20):
            for _frame in build():
                pass
        samples.append((time.perf_counter() - begin) / (20 * events) * 1e6)
    return statistics.median(samples)


async def wire_ms(tokens: int, rounds: int) -> float:
    """Median ms from ``response.create`` to ``response.done`` for a ``tokens`` reply."""
    settings = Settings().replace(port=0, ttft_ms=0, itl_ms=0, corpus_articles=64)
    samples = []
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, settings)
        url = binds[0].replace("http://", "ws://") + "/v1/realtime"
        headers = [(b"x-mock-output-tokens", str(tokens).encode())]
        async with open_websocket_url(url, extra_headers=headers) as ws:
            await ws.get_message()  # session.created
            for _ in range(rounds):
                begin = time.perf_counter()
                await ws.send_message(orjson.dumps({"type": "response.create"}).decode())
                while orjson.loads(await ws.get_message())["type"] != "response.done":
                    pass
                samples.append((time.perf_counter() - begin) * 1e3)
        nursery.cancel_scope.cancel()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--wire", type=int, default=0, help="realtime tokens over loopback")
    args = parser.parse_args()
    built = trio.run(builders, args.tokens)
    chat_us = per_event_us(*built["chat"], args.rounds)
    for api, (build, events) in built.items():
        us = chat_us if api == "chat" else per_event_us(build, events, args.rounds)
        print(f"{api:10} {us:6.2f} us/event  ({us / chat_us:4.1f}x chat, {events} events)")
    if args.wire:
        ms = trio.run(wire_ms, args.wire, args.rounds)
        print(
            f"realtime over loopback, {args.wire} deltas due at once: {ms:.1f} ms "
            f"({ms * 1e3 / args.wire:.1f} us/delta)"
        )


if __name__ == "__main__":
    main()
