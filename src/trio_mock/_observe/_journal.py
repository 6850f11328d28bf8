"""The request journal: what each request asked, what was planned, and when each byte went.

A ``Record`` follows one generation request through ``_endpoint``: it is opened on arrival and
filled as the request moves on (plan, admission, every write), then closed once into the
``Journal``: a bounded ring for ``GET /_mock/requests`` and, optionally, a JSONL file.
Times are kept as ``trio.current_time()`` values and shown as milliseconds after arrival,
so a client's own measurements can be checked against when the server really wrote.
Recording costs a few list appends per write; everything else happens when a record is
read or written out. A closed record keeps the timing of its first ``EVENTS_KEPT`` events
and its last two, so a full ring of 120k-token streams stays a few megabytes.
"""

from __future__ import annotations

import collections
import itertools
import logging
import operator
import os
import time
from array import array
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any

import orjson
from attrs import define, field

if TYPE_CHECKING:
    from ._spool import Spool

log = logging.getLogger("trio_mock")

# Headers whose values never reach a log or the journal.
SECRET_HEADERS = frozenset({b"authorization", b"api-key", b"x-api-key", b"x-admin-key", b"cookie"})
REDACTED = "[redacted]"


def redacted(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Request headers as text, secrets replaced."""
    return {
        name.decode("latin-1"): REDACTED
        if name.lower() in SECRET_HEADERS
        else value.decode("latin-1")
        for name, value in headers
    }


def shown(body: bytes, limit: int, size: int | None = None) -> str:
    """A body (of ``size`` bytes, when it was already cut) as text, cut at ``limit`` bytes
    with a note of how much was left out."""
    size = len(body) if size is None else size
    text = body[:limit].decode("utf-8", "replace")
    if size > limit:
        text += f"... [{size - limit} more bytes]"
    return text


def ms(at: float | None, start: float) -> float | None:
    return None if at is None else round((at - start) * 1000, 3)


_sequence = itertools.count(1)
EVENTS_KEPT = 512  # events whose timing a journal entry keeps from the start ...
EVENTS_TAIL = 2  # ... and from the end: the last token and a stream's closing frame


@define(slots=True, eq=False)
class Record:
    """One request, as it happened. Absolute times are ``trio.current_time()`` values."""

    start: float
    endpoint: str
    headers: Sequence[tuple[bytes, bytes]] = field(repr=False)
    request_id: str = ""
    arrived: float = field(factory=time.time)  # wall clock, for people and ``since``
    seq: int = field(factory=lambda: next(_sequence))
    method: str = "POST"
    body: bytes = field(default=b"", repr=False)  # cut at the journal's limit
    body_size: int = 0
    model: str | None = None
    stream: bool = False
    status: int | None = None
    error: dict[str, Any] | None = None
    fault: str | None = None
    rule: str | None = None
    recording: str | None = None  # the cassette's ``file:line`` that answered
    prompt_tokens: int = 0
    cached_tokens: int | None = None  # the prompt's prefix the cache held; None: no cache
    completion_tokens: int = 0
    finish_reason: str | None = None
    planned_ttft_s: float | None = None  # first token after admission, as planned
    planned_itl_s: float | None = None  # mean gap between token events, as planned
    planned_events: int = 0  # token events planned, over all choices
    admitted: float | None = None
    headers_sent: float | None = None
    ended: float | None = None
    disconnected: bool = False  # the client left early
    cut: str | None = None  # the server ended it early: "fault" or "time_limit"
    worker: int = 0  # the worker of ``--workers N`` that served it (set by ``Journal.add``)
    # Arrays of doubles, not lists of floats: a quarter of the memory, and nothing for
    # the garbage collector to walk in a full journal.
    due: array[float] = field(factory=lambda: array("d"), repr=False)  # each event's deadline
    sent: array[float] = field(factory=lambda: array("d"), repr=False)  # when each was written
    # Whether the last event written carried no token: a stream's closing, a time-limit
    # or an error frame. Only the last one can be such a frame (``_sim._schedule.Ending``).
    ends_with_frame: bool = False
    omitted: int = 0  # events whose times ``trim`` left out, between the first and the last
    # How late its events went out after their due times (``_lag``), set when it closed.
    lag_max_s: float | None = None
    lag_p99_s: float | None = None
    response: list[bytes] | None = field(default=None, repr=False)  # kept for --log-raw
    # Per choice, its time queued and steps in the batched engine (None: simple engine).
    engine: list[dict[str, object]] | None = None
    request_logged: bool = False  # --log-raw's request line went out

    def wrote(self, due: Sequence[float], at: float, closing: bool = False) -> None:
        """One write, of the frames of events due at ``due``, finished at ``at``; with
        ``closing``, the last of them carried no token (a few C-level calls, not a Python
        loop: a zero-latency stream writes many events at once)."""
        self.due.extend(due)
        self.sent.extend(repeat(at, len(due)))
        if closing:
            self.ends_with_frame = True

    def was_due(self, times: Iterable[float]) -> None:
        """A body's token events came due at ``times`` (a body's tokens are never written
        one by one: it goes whole after the last)."""
        self.due.extend(times)

    def tokens_sent(self) -> int:
        """Tokens that reached the client: all that were planned unless the reply was
        cut, else the planned count in proportion to the token events written."""
        if self.status != 200:
            return 0
        if not self.stream:  # a body goes whole, or not at all
            return 0 if self.disconnected or self.error or self.cut else self.completion_tokens
        written = len(self.sent) + self.omitted - self.ends_with_frame
        if written >= self.planned_events:
            return self.completion_tokens
        return round(self.completion_tokens * written / max(self.planned_events, 1))

    def token_times(self) -> Sequence[float]:
        """When each token event went out (streams), or was due (bodies: their tokens
        are never written one by one); all of them until ``trim``."""
        if not self.stream:
            return self.due
        return self.sent[:-1] if self.ends_with_frame else self.sent

    def trim(self, keep: int = EVENTS_KEPT) -> None:
        """Forget the times of the events between the first ``keep`` and the last
        ``EVENTS_TAIL``: the record is closed, the metrics have counted them."""
        for times in (self.due, self.sent):
            drop = len(times) - keep - EVENTS_TAIL
            if drop > 0:
                del times[keep : keep + drop]
                self.omitted = drop

    def kinds(self) -> list[str]:
        kinds = ["token"] * len(self.sent)
        if self.ends_with_frame:
            kinds[-1] = "frame"
        return kinds

    def to_data(self, body_limit: int) -> dict[str, Any]:
        due = self.due[:-1] if self.stream and self.ends_with_frame else self.due
        sent = self.token_times() if self.stream else []
        start = self.start
        return {
            "seq": self.seq,
            "id": self.request_id,
            "arrived": self.arrived,
            "method": self.method,
            "endpoint": self.endpoint,
            "model": self.model,
            "stream": self.stream,
            "status": self.status,
            "error": self.error,
            "fault": self.fault,
            "rule": self.rule,
            "recording": self.recording,
            "disconnected": self.disconnected,
            "cut": self.cut,
            "headers": redacted(self.headers),
            "body": shown(self.body, body_limit, self.body_size),
            "plan": {
                "prompt_tokens": self.prompt_tokens,
                "cached_tokens": self.cached_tokens,
                "completion_tokens": self.completion_tokens,
                "finish_reason": self.finish_reason,
                "ttft_ms": None if self.planned_ttft_s is None else self.planned_ttft_s * 1000,
                "itl_ms": None if self.planned_itl_s is None else self.planned_itl_s * 1000,
            },
            "timing": {
                "admitted_ms": ms(self.admitted, start),
                "headers_sent_ms": ms(self.headers_sent, start),
                "first_token_due_ms": ms(due[0] if due else None, start),
                "first_token_sent_ms": ms(sent[0] if sent else None, start),
                "last_token_due_ms": ms(due[-1] if due else None, start),
                "last_token_sent_ms": ms(sent[-1] if sent else None, start),
                "ended_ms": ms(self.ended, start),
                "lag_max_ms": ms(self.lag_max_s, 0.0),
                "lag_p99_ms": ms(self.lag_p99_s, 0.0),
            },
            "engine": self.engine,
            "events": [
                {"due_ms": ms(d, start), "sent_ms": ms(s, start), "kind": kind}
                for d, s, kind in zip(self.due, self.sent, self.kinds(), strict=True)
            ]
            if self.stream
            else [],
            "events_omitted": self.omitted if self.stream else 0,
            "worker": self.worker,
        }


ARRIVED = operator.attrgetter("arrived", "worker", "seq")
FLUSH_LINES = 1024  # write sooner than the app's next flush when this many wait
# A model name is whatever a body says, megabytes if it likes: kept cut, as the body is.
MAX_MODEL_CHARS = 1024


class Journal:
    """The last ``size`` records in memory, and every record in a JSONL file when one is
    named (lines are flushed at most a second late, and on close).

    Lines wait in memory and reach the file in one ``write`` of whole lines on an
    ``O_APPEND`` descriptor, so the workers of ``--workers N`` can share one file: their
    writes never interleave within a line. A worker of several also spools the records
    it keeps (``_spool``), so that they outlive it, and marks each with its ``worker``.
    """

    def __init__(self, size: int, path: str | None, body_limit: int, *, worker: int = 0) -> None:
        self.records: collections.deque[Record] = collections.deque(maxlen=size)
        self.body_limit = body_limit
        self.worker = worker
        self.fd: int | None = None
        if path:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lines: list[bytes] = []
        self.spool: Spool | None = None

    def resize(self, size: int) -> None:
        self.records = collections.deque(self.records, maxlen=size)

    def add(self, record: Record) -> None:
        """Keep ``record`` (trimmed: take what else you need from it first)."""
        if not self.records.maxlen and self.fd is None:
            return
        record.trim()
        record.worker = self.worker
        if record.model is not None and len(record.model) > MAX_MODEL_CHARS:
            record.model = record.model[:MAX_MODEL_CHARS]
        if self.records.maxlen:
            self.records.append(record)
            if self.spool is not None:
                self.spool.pending.append(record)
        if self.fd is not None:
            self.lines.append(orjson.dumps(record.to_data(self.body_limit)) + b"\n")
            if len(self.lines) >= FLUSH_LINES:
                self.write_lines()

    def flush(self) -> None:
        """Write the waiting lines to the file and the records closed since the last
        flush to the spool (the app does it four times a second)."""
        if self.spool is not None:
            self.spool.write(self.records.maxlen or 0)
        self.write_lines()

    def write_lines(self) -> None:
        if self.fd is None or not self.lines:
            return
        data, self.lines = b"".join(self.lines), []
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:  # a full disk must not fail requests
            log.exception("journal file: no longer writing it")
            self.close_file()

    def close(self) -> None:
        self.flush()
        if self.spool is not None:
            self.spool.close()
        self.close_file()

    def close_file(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def clear(self) -> int:
        count = len(self.records)
        self.records.clear()
        if self.spool is not None:
            self.spool.clear()
        return count

    def merge(self, records: Iterable[Record]) -> None:
        """Take in ``records`` (a dead worker's), keeping the newest by arrival."""
        merged = sorted([*self.records, *records], key=ARRIVED)
        self.records = collections.deque(merged, maxlen=self.records.maxlen)

    def select(
        self,
        *,
        model: str | None = None,
        endpoint: str | None = None,
        status: int | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Matching records, oldest first; ``limit`` keeps the newest. ``endpoint``
        matches with or without the ``/v1`` prefix."""

        def wanted(r: Record) -> bool:
            return (
                (model is None or r.model == model)
                and (
                    endpoint is None
                    or r.endpoint.removeprefix("/v1") == endpoint.removeprefix("/v1")
                )
                and (status is None or r.status == status)
                and (since is None or r.arrived >= since)
            )

        found = list(filter(wanted, self.records))
        if limit is not None:
            found = found[-limit:] if limit else []
        return [r.to_data(self.body_limit) for r in found]
