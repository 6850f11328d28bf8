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


class SharedPages:
    """``size`` bytes (``map``) that forks of this process share, and their lock."""

    def __init__(self, size: int, prefix: str) -> None:
        self.fd, path = tempfile.mkstemp(prefix=prefix)
        os.unlink(path)  # the descriptor, which forks inherit, keeps it
        os.ftruncate(self.fd, size)
        self.map = mmap.mmap(self.fd, size)  # MAP_SHARED: forks share it
        self.lock = PagesLock(self.fd)

    def locked(self) -> PagesLock:
        """``with pages.locked(): ...``: the pages are this process's for the block."""
        return self.lock


class PagesLock:
    """The record lock on the pages' file, as a context manager. A class, not a
    ``@contextmanager`` generator: that costs a microsecond more per use (measured), and
    a rate-limited request takes it once."""

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)  # waits only for another's few instructions

    def __exit__(self, *exc: object) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)
