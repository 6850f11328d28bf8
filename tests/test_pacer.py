"""The ``Pacer``: one timer task wakes every paced stream at its deadline (MockClock)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

import trio
import trio.testing

from trio_mock._serve._pacing import COMPACT_AT, Pacer


@asynccontextmanager
async def timed() -> AsyncGenerator[Pacer]:
    """A Pacer whose timer task runs until the block ends."""
    pacer = Pacer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pacer.run)
        await trio.testing.wait_all_tasks_blocked()
        try:
            yield pacer
        finally:
            nursery.cancel_scope.cancel()


async def test_each_sleeper_wakes_exactly_at_its_deadline_in_any_order_of_arrival(
    autojump_clock: trio.testing.MockClock,
) -> None:
    woke = []
    async with timed() as pacer:
        start = trio.current_time()

        async def sleeper(offset: float) -> None:
            await pacer.sleep_until(start + offset)
            woke.append((offset, trio.current_time() - start))

        async with trio.open_nursery() as sleepers:
            for offset in (0.5, 0.2, 0.2, 0.05, 1.0):  # an earlier deadline comes later
                sleepers.start_soon(sleeper, offset)
                await trio.sleep(0.01)
    assert [(offset, round(at, 9)) for offset, at in woke] == [
        (0.05, 0.05), (0.2, 0.2), (0.2, 0.2), (0.5, 0.5), (1.0, 1.0)
    ]  # fmt: skip
    assert not pacer.running


async def test_a_past_deadline_is_a_checkpoint_and_a_cancelled_sleeper_leaves_its_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with timed() as pacer:
        with trio.testing.assert_checkpoints():
            await pacer.sleep_until(trio.current_time() - 1)
        with trio.move_on_after(0.1) as scope:  # cancelled while parked
            await pacer.sleep_until(trio.current_time() + 10)
        assert scope.cancelled_caught
        assert pacer.abandoned == 1
        await trio.sleep(10)  # its deadline passes: the timer drops the abandoned wait
        assert pacer.abandoned == 0
        assert pacer.heap == []


async def test_abandoned_waits_are_dropped_once_they_outnumber_the_live_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with timed() as pacer:
        far = trio.current_time() + 3600
        async with trio.open_nursery() as disconnects:
            for _ in range(COMPACT_AT + 10):
                disconnects.start_soon(pacer.sleep_until, far)
            await trio.testing.wait_all_tasks_blocked()
            disconnects.cancel_scope.cancel()  # every client leaves
        await pacer.sleep_until(trio.current_time() + 0.01)  # the timer's next pass compacts
        assert len(pacer.heap) == 0
        assert pacer.abandoned == 0


async def test_without_its_timer_the_pacer_sleeps_as_trio_does(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pacer = Pacer()
    start = trio.current_time()
    await pacer.sleep_until(start + 0.25)
    assert trio.current_time() - start == 0.25
    assert pacer.heap == []
