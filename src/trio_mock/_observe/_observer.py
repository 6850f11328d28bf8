"""Where a finished request goes: the journal, the metrics, and the raw log.

``_serve._endpoint`` opens one ``Record`` per generation request, notes in a few calls
what was received, planned, answered and cut, and closes it once, whatever happened;
this module is the only consumer, so adding an outlet touches nothing else.
Closing measures the record's schedule lag (``_lag``) before the metrics and the journal
take it: the journal keeps only some event times.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
import trio

from ._journal import Record, redacted, shown
from ._lag import LagMonitor

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._openai._exchange import Exchange
    from .._sim._engine import Seq
    from ._journal import Journal
    from ._metrics import Metrics

raw_log = logging.getLogger("trio_mock.raw")
CLIENT_CLOSED = 499  # nginx's "client closed request", as access logs and metrics show it


class Observer:
    """Opens and closes records; ``raw`` (``--log-raw``) logs each request and response
    with secrets redacted and bodies cut at ``body_limit`` bytes. ``lag`` measures how
    late each request's writes went out, and warns when the server falls behind."""

    def __init__(
        self, journal: Journal, metrics: Metrics | None, raw: bool = False, itl_s: float = 0.0
    ) -> None:
        self.journal = journal
        self.metrics = metrics
        self.raw = raw
        self.lag = LagMonitor(itl_s)
        self.open_records = 0
        self.quiet: trio.Event | None = None  # made only while someone waits for it

    def open(self, scope: dict[str, Any], start: float, request_id: bytes) -> Record:
        """A record for a request now being served (``close`` must follow)."""
        self.open_records += 1
        record = Record(start, scope["path"], scope["headers"], request_id.decode("latin-1"))
        record.method = scope["method"]
        if self.raw:
            record.response = []
        return record

    def received(self, record: Record, body: bytes) -> None:
        """The request's body has been read."""
        limit = self.journal.body_limit
        record.body, record.body_size = body[:limit], len(body)
        if record.response is not None:
            record.request_logged = True
            raw_log.info(
                "request %s %s %s headers=%s body=%s",
                record.request_id,
                record.method,
                record.endpoint,
                redacted(record.headers),
                shown(body, limit),
                extra={"request_id": record.request_id, "direction": "request"},
            )

    def planned(self, record: Record, exchange: Exchange[Any]) -> None:
        """What the request's stages decided (``_serve._exchange``)."""
        record.model, record.rule = exchange.model, exchange.rule
        record.recording = exchange.recording
        if exchange.fault is not None:
            record.fault = exchange.fault.spec
        reply = exchange.reply
        if reply is not None:
            record.stream = reply.stream
            record.prompt_tokens = reply.prompt_tokens
            record.cached_tokens = reply.cached_tokens
            record.completion_tokens = reply.completion_tokens
            record.finish_reason = reply.finish_reason
            record.planned_ttft_s = exchange.planned_ttft_s
            record.planned_itl_s = exchange.planned_itl_s
            record.planned_events = exchange.planned_events
            record.admitted = exchange.admitted

    @staticmethod
    def answered(record: Record, status: int, body: bytes | None = None) -> None:
        """The status line went out (with ``body``, the whole answer: an error's is kept)."""
        record.status, record.headers_sent = status, trio.current_time()
        if body is not None:
            if status >= 400:
                record.error = orjson.loads(body).get("error")
            if record.response is not None:
                record.response.append(body)

    @staticmethod
    def refused(record: Record, status: int, error: dict[str, Any]) -> None:
        """Refused with ``error``, told otherwise than in a body (a Realtime event)."""
        record.status, record.error = status, error

    @staticmethod
    def cut(record: Record, reason: str, error: dict[str, Any] | None = None) -> None:
        """The server ends the reply early (``"fault"``, ``"time_limit"``, ``"cancelled"``),
        telling the client ``error`` if anything."""
        record.cut = reason
        if error is not None:
            record.error = error

    @staticmethod
    def stepped(record: Record, sequences: Sequence[Seq]) -> None:
        """The request's sequences left the batched engine: what the journal keeps of
        their steps."""
        record.engine = [seq.summary() for seq in sequences]

    @staticmethod
    def gone(record: Record) -> None:
        """The client left before its answer was whole."""
        record.disconnected = True

    async def wait_quiet(self) -> None:
        """Wait until no request is being served: each one served so far is journaled."""
        if self.open_records:
            if self.quiet is None:
                self.quiet = trio.Event()
            await self.quiet.wait()

    def close(self, record: Record) -> None:
        self.open_records -= 1
        if self.open_records == 0 and self.quiet is not None:
            self.quiet.set()
            self.quiet = None
        record.ended = now = trio.current_time()
        if record.status is None and record.disconnected:
            record.status = CLIENT_CLOSED  # left before any status line went out
        lags = self.lag.measure(record, now)
        if self.metrics is not None:  # first: the journal keeps only some event times
            self.metrics.observe(record, lags)
        self.journal.add(record)
        if record.response is not None:
            if not record.request_logged:  # refused before its body was read (401, 405)
                self.received(record, b"")
            raw_log.info(
                "response %s %s status=%s body=%s",
                record.request_id,
                record.endpoint,
                record.status,
                shown(b"".join(record.response), self.journal.body_limit),
                extra={"request_id": record.request_id, "direction": "response"},
            )
