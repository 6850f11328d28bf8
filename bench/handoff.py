"""What a slot handed from one worker to another adds to a queued request's TTFT.

    python bench/handoff.py [TRIALS]

Two forked processes share one ``SharedSlots`` table with ``--max-concurrency 1``, as two
workers of ``--workers 2`` do: the first holds the slot while the second queues for it,
then releases it at a noted moment (at varied phases of the waiter's poll); the second
notes when it is admitted. Prints the delay's median, p90 and maximum. No sockets.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from typing import TYPE_CHECKING

import trio

from trio_mock import Settings
from trio_mock._serve._load import SharedLoad
from trio_mock._serve._slots import SharedSlots

if TYPE_CHECKING:
    from collections.abc import MutableSequence
    from multiprocessing.synchronize import Event

SETTINGS = Settings().replace(max_concurrency=1)


async def wait_set(event: Event) -> None:
    """Until the other process sets ``event`` (polled: it is not a Trio event)."""
    while True:
        if event.is_set():
            return
        await trio.sleep(0.0005)


def holder(
    table: SharedSlots, trials: int, released: MutableSequence[float], steps: list[Event]
) -> None:
    async def main() -> None:
        load = SharedLoad(SETTINGS.capacity, SETTINGS.latency, table, 0)
        for i in range(trials):
            admission = await load.admit()
            steps[2 * i].set()  # the waiter may queue
            await wait_set(steps[2 * i + 1])
            await trio.sleep(0.003 + (i % 7) * 0.0003)
            released[i] = time.monotonic()
            admission.finish()

    trio.run(main)


def waiter(
    table: SharedSlots, trials: int, admitted: MutableSequence[float], steps: list[Event]
) -> None:
    async def main() -> None:
        load = SharedLoad(SETTINGS.capacity, SETTINGS.latency, table, 1)
        for i in range(trials):
            await wait_set(steps[2 * i])

            async def wait(i: int = i) -> None:
                admission = await load.admit()
                admitted[i] = time.monotonic()
                admission.finish()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                await trio.sleep(0.0005)  # queued by now
                steps[2 * i + 1].set()

    trio.run(main)


def main(trials: int) -> None:
    fork = multiprocessing.get_context("fork")
    table = SharedSlots(2)
    released = fork.Array("d", trials, lock=False)
    admitted = fork.Array("d", trials, lock=False)
    steps = [fork.Event() for _ in range(2 * trials)]
    processes = [
        fork.Process(target=holder, args=(table, trials, released, steps)),
        fork.Process(target=waiter, args=(table, trials, admitted, steps)),
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
    delays = sorted((a - r) * 1000 for a, r in zip(admitted, released, strict=True))
    print(f"cross-worker handoff, {trials} trials: median {statistics.median(delays):.2f} ms, "
          f"p90 {delays[int(0.9 * trials)]:.2f} ms, max {delays[-1]:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if sys.argv[1:] else 200)
