"""Rate-limit bucket levels shared by the workers of ``--workers N``, so that
``--rate-limit-rpm``/``--rate-limit-tpm`` are the server's, not each worker's.

As the ``Tally`` does: a table of slots in pages every worker shares (``_shared_pages``),
read and written under their lock. Only a request charged by an active limiter pays this
(about 4 us more than buckets kept in one process, measured). A slot holds one caller's
levels (its key's hash, requests and tokens left, when last charged), found by a short
linear probe; when the probe finds neither the caller nor a free slot it takes the least
recently charged one, whose caller starts full again, as a forgotten key does in one
process. The clock is ``time.monotonic`` (one for every process: Trio's clock has an
offset of its own in each run). No Trio, no arithmetic of buckets: ``_ratelimit`` does it.
"""

from __future__ import annotations

import math
import struct
import time
from typing import TYPE_CHECKING

from attrs import define

from ._shared_pages import SharedPages

if TYPE_CHECKING:
    from collections.abc import Callable

SLOT = struct.Struct("=qqddd")  # in use, key hash, requests left, tokens left, charged at
SLOTS = 16_384  # callers a server keeps at once (640 KiB of address space, touched lazily)
PROBES = 8  # slots looked at for one caller: a bound on the work under the lock
FULL = math.inf  # a level a new caller starts with: the limiter clamps it to its capacity


@define
class Levels:
    """One caller's levels, read under the lock; what the limiter leaves here is stored."""

    key: int  # the caller's hash
    requests: float
    tokens: float
    updated: float


class SharedBuckets(SharedPages):
    """The levels of every caller's buckets, in memory the workers share."""

    def __init__(self, slots: int = SLOTS, clock: Callable[[], float] = time.monotonic) -> None:
        """Args:
        clock: seconds, the same in every process (tests inject their own).
        """
        self.slots = slots
        self.clock = clock
        self.created = clock()  # the server's start, for ``rate_limit_after_s``
        super().__init__(slots * SLOT.size, "trio-mock-buckets-")

    def find(self, key: str) -> tuple[int, Levels]:
        """The caller's slot (or a free one, or the least recently charged) and its levels;
        under ``locked()``, with ``store`` before it ends."""
        wanted = hash(key)  # forks share the hash seed: every worker finds the same slot
        first = wanted % self.slots
        victim, oldest = -1, math.inf
        for probe in range(PROBES):
            offset = (first + probe) % self.slots * SLOT.size
            used, held, requests, tokens, updated = SLOT.unpack_from(self.map, offset)
            if used and held == wanted:
                return offset, Levels(wanted, requests, tokens, updated)
            if not used:
                return offset, Levels(wanted, FULL, FULL, self.clock())
            if updated < oldest:
                victim, oldest = offset, updated
        return victim, Levels(wanted, FULL, FULL, self.clock())

    def store(self, offset: int, levels: Levels) -> None:
        """Keep the caller's levels in the slot ``find`` gave."""
        SLOT.pack_into(
            self.map, offset, 1, levels.key, levels.requests, levels.tokens, levels.updated
        )

    def clear(self) -> None:
        """Every caller full again: new limits, or a reset."""
        with self.locked():
            self.map[:] = bytes(len(self.map))
