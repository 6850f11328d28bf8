"""A worker's journal spool: its closed records, on disk, for when it dies.

With ``--workers N`` a worker killed by SIGKILL or the OOM killer takes its ``Journal``
ring with it. So each worker appends the records it closed to its own file in a directory
the supervisor owns, in one batch per housekeeping tick (a quarter second), off the
request's path; the supervisor reads the file of a worker that died into its "departed"
journal (``_app._hub``). What a kill loses: the records closed since the last tick, and
the requests in flight.

A batch is one pickle of a list of tuples of the record's fields (about 3 us a record,
a quarter of pickling the records themselves or of their JSON), written with one
``write`` on an ``O_APPEND`` descriptor; a kill in the middle of one leaves a cut last
batch, which ``read_spool`` skips. When the file would hold more than ``REWRITE_AT`` times
the ring's size, it is rewritten from the ring (a new file renamed over the old one, so a
kill meanwhile leaves one whole file or the other): its size stays within a few rings and
the rewrites cost at most one more pickling per record. Only the supervisor's own workers
write the directory (made ``0700``), so unpickling its files trusts no one else.
"""

from __future__ import annotations

import logging
import operator
import os
import pickle
from typing import TYPE_CHECKING, Any, BinaryIO

import attrs

from ._journal import Record

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger("trio_mock")

# Every field but --log-raw's, which a dead worker's journal entry never shows.
FIELDS = tuple(f.name for f in attrs.fields(Record) if f.name not in {"response", "request_logged"})
fields_of = operator.attrgetter(*FIELDS)
REWRITE_AT = 2  # rings' worth of records in the file before it is rewritten from the ring


def spool_path(directory: str, worker: int) -> str:
    return os.path.join(directory, f"worker-{worker}.spool")


class Spool:
    """The records a worker closed since the last tick, and the file they go to."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd: int | None = open_spool(path)
        self.pending: list[Record] = []
        self.count = 0  # records in the file

    def write(self, ring: Iterable[Record], size: int) -> None:
        """Append the pending records (the tick), or rewrite the file from ``ring`` (the
        journal's, ``size`` long) if it would grow past ``REWRITE_AT`` rings."""
        pending, self.pending = self.pending, []
        if self.fd is None or not pending:
            return
        try:
            if self.count + len(pending) > REWRITE_AT * size:
                self.rewrite(list(ring))
            else:
                write_all(self.fd, pickled(pending))
                self.count += len(pending)
        except OSError:  # a full disk must not fail requests
            log.exception("journal spool %s: no longer writing it", self.path)
            self.close()

    def rewrite(self, records: list[Record]) -> None:
        fresh = self.path + ".new"
        fd = open_spool(fresh)
        try:
            write_all(fd, pickled(records))
            os.replace(fresh, self.path)
        except OSError:
            os.close(fd)
            raise
        if self.fd is not None:
            os.close(self.fd)
        self.fd, self.count = fd, len(records)

    def clear(self) -> None:
        """The journal was cleared: so is the file, or a death would bring them back."""
        self.pending.clear()
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # O_APPEND: the next batch starts the file again
            self.count = 0

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def open_spool(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)


def pickled(records: list[Record]) -> bytes:
    return pickle.dumps(list(map(fields_of, records)), pickle.HIGHEST_PROTOCOL)


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def read_spool(path: str) -> list[Record]:
    """The records of a dead worker's spool, oldest first: every whole batch (none if
    the file is missing)."""
    records: list[Record] = []
    try:
        with open(path, "rb") as file:
            while (batch := next_batch(file, path)) is not None:
                records += (Record(**dict(zip(FIELDS, values, strict=True))) for values in batch)
    except FileNotFoundError:
        pass
    return records


def next_batch(file: BinaryIO, path: str) -> list[tuple[Any, ...]] | None:
    """The file's next batch; None at its end or at a batch cut by the kill."""
    try:
        batch: list[tuple[Any, ...]] = pickle.load(file)
    except EOFError:
        return None
    except Exception:  # cut by the kill: the batches before it stand
        log.warning("journal spool %s: its last batch is cut; skipped", path)
        return None
    return batch
