"""The arrival count the workers of ``--workers N`` share, so that with a ``--fault-seed``
the n-th request to arrive at the server meets the n-th draw, whichever worker serves it
(``_config._faults`` derives each draw from the seed and this number). Counted under the
lock of pages every worker shares (``_shared_pages``), only while faults are drawn.
"""

from __future__ import annotations

import struct

from ._shared_pages import SharedPages

COUNT = struct.Struct("=q")


class SharedArrivals(SharedPages):
    """Requests that have drawn a fault so far, the server's."""

    def __init__(self) -> None:
        super().__init__(COUNT.size, "trio-mock-arrivals-")

    def next(self) -> int:
        """This arrival's number, from 0."""
        with self.locked():
            (number,) = COUNT.unpack_from(self.map)
            COUNT.pack_into(self.map, 0, number + 1)
        return int(number)

    def clear(self) -> None:
        """Back to 0: new fault settings draw from their seed's start, as one process does."""
        with self.locked():
            COUNT.pack_into(self.map, 0, 0)
