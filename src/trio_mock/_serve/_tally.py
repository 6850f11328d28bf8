"""Uses of scripted rules, counted once for all the workers of ``--workers N``.

A table of (rule id, uses) slots in pages every worker shares (``_shared_pages``); a use
is read and counted under their lock. Only requests that match a rule pay this; the
supervisor alone hands slots out, and a slot names its rule, so a worker that still holds
a removed rule finds it gone rather than counting another rule's uses.
"""

from __future__ import annotations

import struct

from ._shared_pages import SharedPages

SLOT = struct.Struct("=qq")  # rule id (0: free), uses
SLOTS = 4096  # rules a server of several workers holds at once (64 KiB)


class TallyFull(Exception):
    """Every slot holds a rule."""


class Tally(SharedPages):
    """Shared use counts. The supervisor claims and releases slots (its own ``free``
    list); the workers count uses."""

    def __init__(self, slots: int = SLOTS) -> None:
        super().__init__(slots * SLOT.size, "trio-mock-tally-")
        self.free = list(range(slots - 1, -1, -1))  # the supervisor's own list

    @property
    def available(self) -> int:
        return len(self.free)

    def claim(self, rule_id: int) -> int:
        """A slot for a new rule, its count at zero.

        Raises:
          TallyFull: no slot is free.
        """
        if not self.free:
            raise TallyFull
        slot = self.free.pop()
        with self.locked():
            SLOT.pack_into(self.map, slot * SLOT.size, rule_id, 0)
        return slot

    def release(self, slot: int, rule_id: int) -> None:
        """The rule is gone: a worker still holding it finds so. Only while the slot is
        the rule's: a worker that hears of a removal late must not free a new rule's."""
        offset = slot * SLOT.size
        with self.locked():
            if SLOT.unpack_from(self.map, offset)[0] != rule_id:
                return
            SLOT.pack_into(self.map, offset, 0, 0)
        self.free.append(slot)

    def use(self, slot: int, rule_id: int, times: int | None) -> int | None:
        """Count a use of the rule if it has one left; its uses so far, or None when it
        has none left (or was removed)."""
        offset = slot * SLOT.size
        with self.locked():
            held, uses = SLOT.unpack_from(self.map, offset)
            if held != rule_id or (times is not None and uses >= times):
                return None
            SLOT.pack_into(self.map, offset, rule_id, uses + 1)
        return int(uses) + 1

    def uses(self, slot: int, rule_id: int) -> int | None:
        """The rule's uses by every worker, or None if it was removed."""
        with self.locked():
            held, uses = SLOT.unpack_from(self.map, slot * SLOT.size)
        return int(uses) if held == rule_id else None
