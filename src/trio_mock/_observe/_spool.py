"""A worker's journal spool: its closed records, on disk, for when it dies.

With ``--workers N`` a worker killed by SIGKILL or the OOM killer takes its ``Journal``
ring with it. So each worker appends the records it closed to its own spool in a
directory the supervisor owns, in one batch per housekeeping tick (a quarter second), off
the request's path; the supervisor reads the spool of a worker that died into its
"departed" journal (``_app._hub``). What a kill loses: the records closed since the last
tick, and the requests in flight.

A batch is one pickle of a list of tuples of the records' fields (secret headers
redacted, never on disk; event times as bytes): 2 to 4 us for a short request's record
(``bench/spool_cost.py``), a fraction of pickling the records themselves or their JSON.
It goes in one ``write`` on an ``O_APPEND`` descriptor, so a kill in the middle of one
leaves a cut last batch, which ``read_spool`` skips. The spool is two files in turn: when
the one being written would pass the ring's size, the other is emptied and written next,
so both together hold at most two rings and at least the newest ring's worth, and no
record is pickled twice. Only the supervisor's own workers write the directory (made
``0700``), so unpickling its files trusts no one else.
"""

from __future__ import annotations

import logging
import operator
import os
import pickle
from array import array
from typing import Any, BinaryIO

import attrs

from ._journal import ARRIVED, REDACTED, SECRET_HEADERS, Record

log = logging.getLogger("trio_mock")

# Every field but --log-raw's, which a dead worker's journal entry never shows; then the
# headers, their secrets left out (never on disk), and the event times as bytes (arrays
# of doubles pickle several times slower).
LAST = ("headers", "due", "sent")
FIELDS = tuple(
    f.name for f in attrs.fields(Record) if f.name not in {"response", "request_logged", *LAST}
)
fields_of = operator.attrgetter(*FIELDS)
SECRET = REDACTED.encode()
SEGMENTS = (".0", ".1")  # the spool's two files, written in turn


def spool_path(directory: str, worker: int) -> str:
    """Where worker ``worker`` spools (its two files add ``SEGMENTS``)."""
    return os.path.join(directory, f"worker-{worker}.spool")


class Spool:
    """The records a worker closed since the last tick, and the files they go to."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fds: list[int] | None = [open_spool(path + end) for end in SEGMENTS]
        self.current = 0  # the file being written
        self.count = 0  # records in it
        self.pending: list[Record] = []

    def write(self, size: int) -> None:
        """Append the pending records (the tick), the newest ``size`` of them (the
        journal's ring size); first empty the other file and turn to it if the current
        one would hold more than ``size``."""
        pending, self.pending = self.pending[-size:] if size else [], []
        if self.fds is None or not pending:
            return
        try:
            if self.count and self.count + len(pending) > size:
                self.current ^= 1
                os.ftruncate(self.fds[self.current], 0)  # O_APPEND: it starts again
                self.count = 0
            write_all(self.fds[self.current], pickled(pending))
            self.count += len(pending)
        except Exception:  # a full disk (or a bug) must not fail requests or housekeeping
            log.exception("journal spool %s: no longer writing it", self.path)
            self.close()

    def clear(self) -> None:
        """The journal was cleared: so is the spool, or a death would bring them back."""
        self.pending.clear()
        if self.fds is not None:
            for fd in self.fds:
                os.ftruncate(fd, 0)
            self.count = 0

    def close(self) -> None:
        if self.fds is not None:
            for fd in self.fds:
                os.close(fd)
            self.fds = None


def open_spool(path: str) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)


def flat(record: Record) -> tuple[Any, ...]:
    headers = record.headers
    if any(name.lower() in SECRET_HEADERS for name, _ in headers):
        headers = [(n, SECRET) if n.lower() in SECRET_HEADERS else (n, v) for n, v in headers]
    return fields_of(record), headers, record.due.tobytes(), record.sent.tobytes()


def pickled(records: list[Record]) -> bytes:
    return pickle.dumps(list(map(flat, records)), pickle.HIGHEST_PROTOCOL)


def record_of(values: tuple[Any, ...]) -> Record:
    kept, headers, due, sent = values
    record = Record(headers=headers, **dict(zip(FIELDS, kept, strict=True)))
    record.due, record.sent = array("d", due), array("d", sent)
    return record


def write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def read_spool(path: str) -> list[Record]:
    """The records of a dead worker's spool, oldest first: every whole batch of both its
    files (none where they are missing)."""
    records: list[Record] = []
    for end in SEGMENTS:
        try:
            with open(path + end, "rb") as file:
                while (batch := next_batch(file, path + end)) is not None:
                    records += map(record_of, batch)
        except FileNotFoundError:
            pass
    records.sort(key=ARRIVED)
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
