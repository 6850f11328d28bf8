"""Memory the workers of ``--workers N`` share, with one lock on it: what the ``Tally``
(rule uses) and the ``SharedBuckets`` (rate limits) are built on.

A file mapping of an unlinked temporary file, made by the supervisor before its first fork,
so every worker (replacements too) maps the same pages; a POSIX record lock on that file
guards them: two syscalls, no round trip to another process, and the kernel drops the lock
of a worker that dies holding it. Plain syscalls, no Trio: the supervisor uses it too.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Generator


class SharedPages:
    """``size`` bytes (``map``) that forks of this process share, and their lock."""

    def __init__(self, size: int, prefix: str) -> None:
        self.fd, path = tempfile.mkstemp(prefix=prefix)
        os.unlink(path)  # the descriptor, which forks inherit, keeps it
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)  # MAP_SHARED: forks share it

    @contextmanager
    def locked(self) -> Generator[None, None, None]:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)  # waits only for another's few instructions
        try:
            yield
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
