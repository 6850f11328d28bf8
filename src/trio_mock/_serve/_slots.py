"""The server's capacity with ``--workers N``: ``--max-concurrency`` slots, the FIFO queue
for them, and each worker's prefill and decode counts, in pages every worker shares
(``_shared_pages``), so the limits and the load factors are the server's, not each worker's.

A request that finds a free slot and nobody queued takes it in one lock round. One that
must queue takes a ticket; a release (in any worker) hands the next slots to the oldest
tickets (``granted`` moves on), counting each slot to the ticket's worker. A ticket's
owner learns so by reading ``granted`` (``_load.SharedLoad`` does, without the lock). A
ticket given up (its wait timed out, its client left) is skipped, or, granted meanwhile,
passes its slot on. The supervisor ``forget``s a dead worker: its slots go back and its
tickets are given up. Plain syscalls, no Trio: the supervisor uses it too.
"""

from __future__ import annotations

import struct

from ._shared_pages import SharedPages

HEADER = struct.Struct("=qqqqq")  # limit (0: none), running, next ticket, granted, waiting
LIMIT, RUNNING, NEXT, GRANTED, WAITING = (i * 8 for i in range(5))
COUNT = struct.Struct("=q")
TICKETS = 65_536  # queued at once, at most (512 KiB of address space, touched lazily)
GIVEN_UP = -1  # a ticket's state; a waiting one holds its worker's number + 1
ADMITTED = -1  # ``claim``: a slot at once
FULL = -2  # ``claim``: the queue is full


class SharedSlots(SharedPages):
    """Slots, tickets and load counts of ``workers`` workers, in memory they share."""

    def __init__(self, workers: int, tickets: int = TICKETS) -> None:
        self.workers = workers
        self.tickets = tickets
        self.held_at = HEADER.size  # slots held, by worker
        self.prefilling_at = self.held_at + 8 * workers  # written by its worker alone
        self.decoding_at = self.prefilling_at + 8 * workers  # likewise
        self.ring_at = self.decoding_at + 8 * workers  # each queued ticket's state
        self.counts = struct.Struct(f"={workers}q")
        super().__init__(self.ring_at + 8 * tickets, "trio-mock-slots-")

    def get(self, offset: int) -> int:
        value: int = COUNT.unpack_from(self.map, offset)[0]
        return value

    def put(self, offset: int, value: int) -> None:
        COUNT.pack_into(self.map, offset, value)

    # --- a worker's requests ----------------------------------------------------------------

    def take(self, worker: int) -> bool:
        """A slot at once if one is free and nobody is queued for it."""
        with self.locked():
            limit, running, _, _, waiting = HEADER.unpack_from(self.map)
            if waiting or (limit and running >= limit):
                return False
            self.hold(worker, running)
        return True

    def claim(self, worker: int, max_queue: int | None) -> int:
        """A slot (``ADMITTED``), a ticket to wait with (its number), or ``FULL`` when
        ``max_queue`` requests are queued already."""
        with self.locked():
            limit, running, ticket, granted, waiting = HEADER.unpack_from(self.map)
            if not waiting and not (limit and running >= limit):
                self.hold(worker, running)
                return ADMITTED
            if (max_queue is not None and waiting >= max_queue) or (
                ticket - granted >= self.tickets
            ):
                return FULL
            self.put(self.ring_at + ticket % self.tickets * 8, worker + 1)
            self.put(NEXT, ticket + 1)
            self.put(WAITING, waiting + 1)
        return int(ticket)

    def granted(self) -> int:
        """Tickets below this one hold a slot or were given up (read without the lock:
        one aligned word, which only grows)."""
        return self.get(GRANTED)

    def release(self, worker: int) -> None:
        """``worker`` gives a slot back; the oldest waiting ticket gets it."""
        with self.locked():
            self.put(RUNNING, self.get(RUNNING) - 1)
            self.put(self.held_at + 8 * worker, self.get(self.held_at + 8 * worker) - 1)
            self.grant()

    def give_up(self, worker: int, ticket: int) -> None:
        """The ticket's request leaves the queue; if it was granted meanwhile, its slot
        goes to the next."""
        with self.locked():
            if ticket < self.get(GRANTED):
                self.put(RUNNING, self.get(RUNNING) - 1)
                self.put(self.held_at + 8 * worker, self.get(self.held_at + 8 * worker) - 1)
                self.grant()
                return
            self.put(self.ring_at + ticket % self.tickets * 8, GIVEN_UP)
            self.put(WAITING, self.get(WAITING) - 1)

    def set_limit(self, limit: int | None) -> None:
        """A new ``--max-concurrency`` (None: no limit); raising it admits the queue."""
        with self.locked():
            self.put(LIMIT, limit or 0)
            self.grant()

    def publish(self, worker: int, prefilling: int, decoding: int) -> None:
        """``worker``'s own load counts (its slots, which no other process writes); three
        times a request, so ``pack_into`` itself rather than ``put``."""
        COUNT.pack_into(self.map, self.prefilling_at + 8 * worker, prefilling)
        COUNT.pack_into(self.map, self.decoding_at + 8 * worker, decoding)

    def prefilling(self) -> int:
        """Requests in prefill in every worker (read without the lock)."""
        return sum(self.counts.unpack_from(self.map, self.prefilling_at))

    def decoding(self) -> int:
        """Streams decoding in every worker (read without the lock)."""
        return sum(self.counts.unpack_from(self.map, self.decoding_at))

    def waiting(self) -> int:
        """Requests queued in every worker (read without the lock)."""
        return self.get(WAITING)

    def running(self) -> int:
        """Slots held in every worker (read without the lock)."""
        return self.get(RUNNING)

    # --- under the lock -----------------------------------------------------------------------

    def hold(self, worker: int, running: int) -> None:
        self.put(RUNNING, running + 1)
        self.put(self.held_at + 8 * worker, self.get(self.held_at + 8 * worker) + 1)

    def grant(self) -> None:
        """Free slots to the oldest waiting tickets, skipping those given up."""
        limit, running, ticket, granted, waiting = HEADER.unpack_from(self.map)
        while granted < ticket and (not limit or running < limit):
            state = self.get(self.ring_at + granted % self.tickets * 8)
            granted += 1
            if state > 0:  # waiting: the slot is its worker's now
                owner = self.held_at + 8 * (state - 1)
                self.put(owner, self.get(owner) + 1)
                running, waiting = running + 1, waiting - 1
        HEADER.pack_into(self.map, 0, limit, running, ticket, granted, waiting)

    # --- the supervisor ---------------------------------------------------------------------

    def forget(self, worker: int) -> None:
        """``worker`` died: its slots go back, its tickets are given up, its load is gone."""
        with self.locked():
            held = self.held_at + 8 * worker
            self.put(RUNNING, self.get(RUNNING) - self.get(held))
            self.put(held, 0)
            self.publish(worker, 0, 0)
            granted, ticket = self.get(GRANTED), self.get(NEXT)
            for number in range(granted, ticket):
                at = self.ring_at + number % self.tickets * 8
                if self.get(at) == worker + 1:
                    self.put(at, GIVEN_UP)
                    self.put(WAITING, self.get(WAITING) - 1)
            self.grant()
