"""Capacity and the fault stream that are the server's, not each worker's (issue 18, phase 3).

What this file proves:

- ``SharedSlots`` (in this process, no fork): a slot at once while one is free and
  nobody queues; then tickets, granted oldest first as slots are released by any worker;
  a given-up ticket is skipped, or passes on the slot it was granted meanwhile; the queue
  bound counts every worker's tickets; a dead worker's slots and tickets are freed;
  raising the limit admits the queue. Each worker publishes its own prefill and decode
  counts and readers sum them.
- ``SharedLoad`` (two workers on one table in one Trio run, on a mock clock): a request
  queued in one worker is admitted first-come-first-served when the other releases, within
  one poll (``POLL_S``), and at once when its own worker releases; a queue timeout gives up
  the ticket; a limit raised in one worker admits the other's queue; the load factors see
  both workers' counts.
- Fault draws depend on the seed and the arrival number only: the same arrivals meet the
  same faults, whoever counts them.
- Through the real CLI with ``--workers 3`` (loopback, bounded): with
  ``--max-concurrency 2`` never more than 2 of 8 requests run at once and the queued ones
  are admitted in arrival order; with ``--max-queue 3`` exactly 5 of 10 at once are 503s;
  a PATCH that raises ``max_concurrency`` admits every worker's queue;
  killed workers that held slots do not shrink capacity; with ``--failure-percent 50
  --fault-seed 7`` 40 sequential requests on fresh connections meet the faults one
  process meets.
"""

from __future__ import annotations

import operator
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from conftest import fast_settings
from helpers import clean_env, served_url
from test_entrypoints import launched
from test_shared_state import BIN, CHAT, LIMIT_S, WORKERS, chat, cluster, journal
from trio_mock._config._faults import FaultInjector
from trio_mock._openai._errors import OpenAIError
from trio_mock._serve._load import POLL_S, SharedLoad
from trio_mock._serve._slots import ADMITTED, FULL, SharedSlots

# --- the shared table, in this process -------------------------------------------------------


def test_slots_are_taken_then_granted_to_tickets_oldest_first() -> None:
    slots = SharedSlots(workers=3)
    slots.set_limit(2)
    assert slots.take(0)
    assert slots.claim(1, None) == ADMITTED
    assert not slots.take(2)  # full
    first, second, third = slots.claim(2, None), slots.claim(0, None), slots.claim(1, None)
    assert (first, second, third) == (0, 1, 2)
    assert slots.waiting() == 3
    assert slots.granted() == 0
    slots.release(1)  # any worker's release hands the slot to the oldest ticket
    assert slots.granted() == 1
    assert slots.running() == 2
    assert slots.waiting() == 2
    assert not slots.take(1)  # a free slot goes to the queue first, not to a newcomer
    slots.give_up(0, second)  # its client left before its turn: skipped
    slots.release(0)
    assert slots.granted() == 3  # past the given-up ticket, to the third
    assert (slots.running(), slots.waiting()) == (2, 0)
    assert [slots.get(slots.held_at + 8 * w) for w in range(3)] == [0, 1, 1]


def test_a_ticket_granted_while_given_up_passes_its_slot_on() -> None:
    slots = SharedSlots(workers=2)
    slots.set_limit(1)
    assert slots.take(0)
    mine, next_one = slots.claim(1, None), slots.claim(0, None)
    slots.release(0)
    assert slots.granted() > mine  # granted, but its wait timed out just then
    slots.give_up(1, mine)
    assert slots.granted() > next_one
    assert slots.running() == 1
    assert [slots.get(slots.held_at + 8 * w) for w in range(2)] == [1, 0]


def test_the_queue_bound_counts_every_workers_tickets() -> None:
    slots = SharedSlots(workers=3, tickets=4)
    slots.set_limit(1)
    assert slots.claim(0, 2) == ADMITTED
    assert slots.claim(1, 2) >= 0
    assert slots.claim(2, 2) >= 0
    assert slots.claim(0, 2) == FULL  # two queued already, in other workers
    assert [slots.claim(0, None) for _ in range(3)][-1] == FULL  # the ring's own bound
    assert slots.waiting() == 4


def test_a_dead_workers_slots_and_tickets_are_freed() -> None:
    slots = SharedSlots(workers=3)
    slots.set_limit(2)
    assert slots.take(1)
    assert slots.take(1)
    dead_ticket, live_ticket = slots.claim(1, None), slots.claim(2, None)
    slots.publish(1, prefilling=1, decoding=1)
    slots.forget(1)
    assert slots.granted() > live_ticket > dead_ticket
    assert (slots.running(), slots.waiting()) == (1, 0)  # only the live ticket's slot
    assert slots.prefilling() == slots.decoding() == 0
    assert slots.take(0)  # the second slot is free again
    assert [slots.get(slots.held_at + 8 * w) for w in range(3)] == [1, 0, 1]


def test_raising_the_limit_admits_the_queue_and_counts_are_summed() -> None:
    slots = SharedSlots(workers=2)
    slots.set_limit(1)
    assert slots.take(0)
    tickets = [slots.claim(w, None) for w in (0, 1, 1)]
    slots.set_limit(3)
    assert slots.granted() == tickets[1] + 1
    assert slots.running() == 3
    slots.set_limit(None)  # no limit: everyone in
    assert slots.granted() == tickets[2] + 1
    assert slots.waiting() == 0
    slots.publish(0, prefilling=2, decoding=5)
    slots.publish(1, prefilling=1, decoding=4)
    assert (slots.prefilling(), slots.decoding()) == (3, 9)


# --- two workers' loads on one table, in one Trio run -----------------------------------------


def two_workers(**leaves: Any) -> tuple[SharedLoad, SharedLoad]:
    settings = fast_settings(**leaves)
    table = SharedSlots(workers=2)
    return (
        SharedLoad(settings.capacity, settings.latency, table, 0),
        SharedLoad(settings.capacity, settings.latency, table, 1),
    )


async def test_queued_requests_are_admitted_in_order_across_workers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, second = two_workers(max_concurrency=1)
    holder = first.admit_now()
    assert holder is not None
    assert second.admit_now() is None
    admitted: list[tuple[str, float]] = []

    async def queue(load: SharedLoad, name: str) -> None:
        admission = await load.admit()
        admitted.append((name, trio.current_time()))
        await trio.sleep(1)
        admission.finish()

    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        for name, load in [("a", second), ("b", first), ("c", second)]:
            nursery.start_soon(queue, load, name)
            await trio.sleep(0.01)  # in this order
        assert second.snapshot()["queued"] == 3
        await trio.sleep(1)
        holder.finish()  # worker 0 releases: "a" (worker 1) hears it by polling
    times = dict(admitted)
    assert [name for name, _ in admitted] == ["a", "b", "c"]
    assert times["a"] - start == pytest.approx(1.03, abs=POLL_S)
    assert times["b"] == pytest.approx(times["a"] + 1, abs=POLL_S)  # worker 1 released it
    assert times["c"] == pytest.approx(times["b"] + 1, abs=POLL_S)
    assert first.table.running() == 0


async def test_a_release_in_the_same_worker_admits_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    load, _ = two_workers(max_concurrency=1)
    holder = load.admit_now()
    assert holder is not None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(load.admit)
        await trio.sleep(1)
        released = trio.current_time()
        holder.finish()
    assert trio.current_time() == released  # woken by the release, not by a poll


async def test_a_queue_timeout_gives_up_the_ticket(autojump_clock: trio.testing.MockClock) -> None:
    first, second = two_workers(max_concurrency=1, queue_timeout_s=0.5, max_queue=1)
    assert first.admit_now() is not None
    with pytest.raises(OpenAIError, match=r"no slot within 0\.5 s") as refused:
        await second.admit()
    assert refused.value.status == 503
    assert (second.table.waiting(), second.queued) == (0, 0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(second.admit)
        await trio.sleep(0.1)
        with pytest.raises(OpenAIError, match="queue is full"):
            await first.admit()  # one queued, in the other worker
        nursery.cancel_scope.cancel()  # its client leaves: it gives up its ticket
    assert (second.table.waiting(), second.table.running()) == (0, 1)


async def test_a_raised_limit_admits_another_workers_queue(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first, second = two_workers(max_concurrency=1)
    assert first.admit_now() is not None
    admitted: list[float] = []

    async def queue() -> None:
        await second.admit()
        admitted.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for _ in range(2):
            nursery.start_soon(queue)
        await trio.sleep(1)
        raised = trio.current_time()
        wider = fast_settings(max_concurrency=3)
        first.configure(wider.capacity, wider.latency)  # a PATCH reaches worker 0 first
    assert admitted == [pytest.approx(raised, abs=POLL_S)] * 2
    assert (first.table.running(), first.table.waiting()) == (3, 0)


async def test_the_load_factors_count_every_workers_requests() -> None:
    first, second = two_workers(ttft_load_factor=0.5, itl_load_factor=0.25)
    one = first.admit_now()
    two = second.admit_now()
    assert one is not None
    assert two is not None
    assert (one.ttft_scale, two.ttft_scale) == (1.0, 1.5)
    one.first_token()
    two.first_token()
    assert first.itl_scale() == second.itl_scale() == 1.25
    assert first.snapshot() == {"queued": 0, "running": 2, "prefilling": 0, "decoding": 2}
    assert first.own_snapshot()["running"] == 1
    one.finish()
    assert second.itl_scale() == 1.0


# --- fault draws: the seed and the arrival number ---------------------------------------------


def test_fault_draws_depend_on_the_arrival_number_only() -> None:
    faults = fast_settings(failure_percent=50, fault_seed=7).faults
    alone = FaultInjector(faults)
    expected = [alone.draw() for _ in range(200)]
    counter = iter(range(200))
    workers = [FaultInjector(faults, counter.__next__) for _ in range(3)]
    assert [workers[i % 3].draw() for i in range(200)] == expected
    assert 60 < sum(f is not None for f in expected) < 140
    other = FaultInjector(fast_settings(failure_percent=50, fault_seed=8).faults)
    assert [other.draw() for _ in range(200)] != expected


# --- the real CLI with three workers ----------------------------------------------------------


def spans(entries: list[dict[str, Any]]) -> list[tuple[str, int, float, float]]:
    """(id, worker, admitted, ended) in seconds of the wall clock, by arrival."""
    out = []
    for e in sorted(entries, key=operator.itemgetter("arrived")):
        timing = e["timing"]
        admitted = e["arrived"] + timing["admitted_ms"] / 1000
        out.append((e["id"], e["worker"], admitted, e["arrived"] + timing["ended_ms"] / 1000))
    return out


async def send_spaced(url: str, count: int, gap_s: float) -> dict[str, int]:
    """``count`` chats, each on its own connection, started ``gap_s`` apart; their statuses."""
    statuses: dict[str, int] = {}

    async def one(request_id: str) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            answer = await client.post(CHAT, json=chat(), headers={"x-request-id": request_id})
            statuses[request_id] = answer.status_code

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, f"r{i}")
            await trio.sleep(gap_s)
    return statuses


@pytest.mark.slow
async def test_at_most_two_run_and_the_rest_queue_in_arrival_order(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT_S):
        async with cluster(tmp_path, "--max-concurrency", "2", "--ttft-ms", "400") as server:
            statuses = await send_spaced(server.url, 8, gap_s=0.06)
            entries = await journal(server, 8)
    assert set(statuses.values()) == {200}
    ran = spans(entries)
    for name, _, admitted, _ in ran:  # a slot is freed a moment before its journal entry ends
        others = [a < admitted < e - 0.02 for n, _, a, e in ran if n != name]
        assert sum(others) <= 1, (name, ran)
    by_arrival = sorted(entries, key=operator.itemgetter("arrived"))
    assert all(e["timing"]["admitted_ms"] > 100 for e in by_arrival[2:]), ran  # they queued
    # First come, first served: a later arrival never got a slot a round (400 ms) earlier.
    # Two slots freed together are noticed a few ms apart in their two workers, and a
    # request joins the queue a moment after it arrives: closer pairs are not judged.
    queued = [(e["arrived"], e["arrived"] + e["timing"]["admitted_ms"] / 1000) for e in by_arrival]
    assert all(
        first < second + 0.05
        for i, (came, first) in enumerate(queued[2:], 2)
        for later, second in queued[i + 1 :]
        if later - came > 0.02
    ), ran
    assert len({worker for _, worker, *_ in ran}) >= 2, ran  # the kernel spread them


@pytest.mark.slow
async def test_the_queue_bound_is_the_servers(tmp_path: Path) -> None:
    flags = ("--max-concurrency", "2", "--max-queue", "3", "--ttft-ms", "2000")
    with trio.fail_after(LIMIT_S):
        async with cluster(tmp_path, *flags) as server:
            statuses = await send_spaced(server.url, 10, gap_s=0.0)
            entries = await journal(server, 10)
    assert Counter(statuses.values()) == {200: 5, 503: 5}
    refused = [e for e in entries if e["status"] == 503]
    assert len({e["worker"] for e in entries}) >= 2
    assert all(e["timing"]["admitted_ms"] is None for e in refused)


@pytest.mark.slow
async def test_killed_workers_holding_slots_do_not_shrink_capacity(tmp_path: Path) -> None:
    flags = ("--max-concurrency", "2", "--queue-timeout-s", "10", "--ttft-ms", "300")
    with trio.fail_after(LIMIT_S):
        async with cluster(tmp_path, *flags) as server:
            held: list[BaseException | int] = []

            async def hold(request_id: str) -> None:
                headers = {"x-request-id": request_id, "x-mock-ttft-ms": "600000"}
                try:
                    async with server.client() as client:
                        held.append(
                            (await client.post(CHAT, json=chat(), headers=headers)).status_code
                        )
                except httpx.TransportError as error:  # its worker was killed
                    held.append(error)

            async with trio.open_nursery() as nursery:
                for i in range(2):
                    nursery.start_soon(hold, f"held-{i}")
                async with server.client() as client:
                    while True:  # both hold a slot
                        if (await client.get("/")).json()["load"]["running"] == 2:
                            break
                        await trio.sleep(0.05)
                for kills, number in enumerate(range(WORKERS), 1):  # until both holders died
                    os.kill((await server.workers())[number], signal.SIGKILL)
                    await server.workers(WORKERS + kills)  # its replacement serves
                    with trio.move_on_after(2):  # for their clients to hear of it
                        while True:
                            if len(held) == 2:
                                break
                            await trio.sleep(0.05)
                    if len(held) == 2:
                        break
            statuses = await send_spaced(server.url, 4, gap_s=0.03)
            entries = [e for e in await journal(server, 4) if e["id"].startswith("r")]
    assert all(isinstance(h, httpx.TransportError) for h in held), held
    assert set(statuses.values()) == {200}  # not 503s after the queue timeout
    at_once = sorted(e["timing"]["admitted_ms"] for e in entries)
    assert at_once[:2] == [0.0, 0.0]
    assert min(at_once[2:]) > 100


@pytest.mark.slow
async def test_a_raised_max_concurrency_admits_the_queue_of_every_worker(tmp_path: Path) -> None:
    flags = ("--max-concurrency", "1", "--ttft-ms", "3000")
    with trio.fail_after(LIMIT_S):
        async with cluster(tmp_path, *flags) as server:
            statuses: dict[str, int] = {}

            async def send() -> None:
                statuses.update(await send_spaced(server.url, 4, gap_s=0.05))

            async with trio.open_nursery() as nursery, server.client() as client:
                nursery.start_soon(send)
                while True:  # one runs, three queue
                    if (await client.get("/")).json()["load"]["queued"] == 3:
                        break
                    await trio.sleep(0.05)
                raised = await client.patch("/_mock/config", json={"max_concurrency": 4})
                assert raised.json()["workers"] == {"applied": [0, 1, 2], "failed": []}
            entries = await journal(server, 4)
    assert set(statuses.values()) == {200}
    waits = sorted(e["timing"]["admitted_ms"] for e in entries)
    assert waits[0] == 0.0
    assert max(waits) < 2500  # admitted by the change, not by the first one's end at 3 s


async def fault_sequence(url: str, count: int) -> list[tuple[int, str | None]]:
    """(status, x-mock-fault) of ``count`` chats, one after another, each on a new
    connection."""
    out = []
    for i in range(count):
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            answer = await client.post(CHAT, json=chat(), headers={"x-request-id": f"f{i}"})
            out.append((answer.status_code, answer.headers.get("x-mock-fault")))
    return out


@pytest.mark.slow
async def test_a_seed_gives_the_servers_faults_whatever_worker_serves(tmp_path: Path) -> None:
    flags = ["--failure-percent", "50", "--fault-seed", "7", "--corpus-articles", "64"]
    count = 40
    with trio.fail_after(LIMIT_S):
        log = tmp_path / "alone.log"
        args = [str(BIN / "trio-mock"), "--port", "0", "--ttft-ms", "0", "--itl-ms", "0", *flags]
        async with launched(args, log, clean_env()) as process:
            alone = await fault_sequence(await served_url(process, log), count)
        async with cluster(tmp_path, *flags) as server:
            together = await fault_sequence(server.url, count)
            entries = await journal(server, count)
    assert together == alone
    assert 8 < sum(fault is not None for _, fault in alone) < 32
    assert len({e["worker"] for e in entries}) >= 2  # served by several workers
