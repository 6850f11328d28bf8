"""What a worker's journal spool costs per request, in process (``_observe._spool``).

    python bench/spool_cost.py body      # non-streamed chat, 16 tokens
    python bench/spool_cost.py stream    # streamed chat, 256 tokens

Serves requests through the app's ASGI callable as ``bench/cpu.py`` does, so the journal
holds real records, and prints CPU time per record (``time.process_time``, the least and
the median of seven rounds): ``Journal.add`` without a spool, and with one and its ticks
(pickling the batch and one ``write``, every ``TICK_RECORDS`` records: a quarter second
at 1000 requests/s); and the supervisor's read of a full spool, per record read.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import trio
from cpu import ROUNDS

from trio_mock import Settings, create_app
from trio_mock._observe._journal import Journal, Record
from trio_mock._observe._spool import SEGMENTS, Spool, read_spool

TICK_RECORDS = 250
SIZE = 1000


async def records(stream: bool, count: int) -> list[Record]:
    """``count`` closed records of real requests."""
    app = create_app(Settings.from_env().replace(ttft_ms=0.0, itl_ms=0.0))
    app.live.journal.resize(count)
    body = (
        b'{"model": "m", "stream": %s, "max_tokens": %d, "messages": [{"role": "user",'
        b' "content": "hello there"}]}' % (b"true" if stream else b"false", 256 if stream else 16)
    )
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "http_version": "1.1", "query_string": b"", "extensions": {},
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", b"%d" % len(body))]}  # fmt: skip
    for _ in range(count):
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive(pending: list[dict[str, object]] = pending) -> dict[str, object]:
            if pending:
                return pending.pop()
            await trio.sleep_forever()
            raise AssertionError

        async def send(message: dict[str, object]) -> None:
            pass

        await app(dict(scope), receive, send)
    return list(app.live.journal.records)


def per_record(work: list[Record], spool: Spool | None) -> float:
    """CPU microseconds per record to add them all (and tick, with a spool)."""
    journal = Journal(SIZE, None, 4096, worker=1)
    journal.spool = spool
    started = time.process_time()
    for start in range(0, len(work), TICK_RECORDS):
        for record in work[start : start + TICK_RECORDS]:
            journal.add(record)
        journal.flush()
    return (time.process_time() - started) / len(work) * 1e6


def main(stream: bool) -> None:
    work = trio.run(records, stream, 4 * SIZE)
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "worker-1.spool")
        plain, spooled, reads = [], [], []
        for _ in range(ROUNDS):
            plain.append(per_record(work, None))
            spooled.append(per_record(work, Spool(path)))
            started = time.process_time()
            back = read_spool(path)
            reads.append((time.process_time() - started) / len(back) * 1e6)
        size_kb = sum(Path(path + end).stat().st_size for end in SEGMENTS) / 1024
    kind = "stream" if stream else "body"
    for name, figures in [("add", plain), ("add+spool", spooled), ("read back", reads)]:
        figures.sort()
        print(f"{kind} {name}: {figures[0]:.2f} us/record least, {figures[ROUNDS // 2]:.2f} median")
    print(f"{kind}: spool file {size_kb:.0f} KiB for a ring of {SIZE} ({len(back)} records in it)")


if __name__ == "__main__":
    main(sys.argv[1:] == ["stream"])
