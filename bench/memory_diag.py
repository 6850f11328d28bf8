"""``python -m trio_mock`` that reports where its memory is, on ``SIGUSR1``.

    MEMORY_DIAG_DIR=/tmp/diag python bench/memory_diag.py --port 8123 ...   (trio-mock's flags)

Each ``SIGUSR1`` writes ``$MEMORY_DIAG_DIR/dump-N.json`` (N = 1, 2, ...; written under a
temporary name, then renamed) with:

  rss_mb        VmRSS
  glibc         ``mallinfo2()``: ``arena`` (heap bytes from brk and thread arenas), ``used``
                (in use), ``free`` (freed, kept by glibc), ``mmapped``; MB
  pymalloc      CPython's small-object allocator (``sys._debugmallocstats``): its 1 MiB
                arenas now and at most, bytes in allocated and in free blocks. An arena
                goes back to the system only once every object in it is gone.
  gc            object count, and the most common types
  trio          the run's deadline heap: entries, stale ones (their scope exited or moved),
                and the farthest deadline, seconds from now
  trimmed       with ``MEMORY_DIAG_TRIM=1``: RSS right after ``malloc_trim(0)`` and how
                long the call took

With ``MEMORY_DIAG_TRACE=1`` tracemalloc runs from start-up (start-up becomes several
times slower) and each dump also saves ``snapshot-N.tm``, for
``tracemalloc.Snapshot.load(...).compare_to(...)``. ``bench/memory_burst.py --diag DIR``
runs this server and signals it at the end of every phase.
"""

from __future__ import annotations

import collections
import ctypes
import gc
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import FrameType
from typing import Any

OUT = Path(os.environ.get("MEMORY_DIAG_DIR", "memory-diag"))
TRACE = os.environ.get("MEMORY_DIAG_TRACE") == "1"
TRIM = os.environ.get("MEMORY_DIAG_TRIM") == "1"
MB = 2**20
PYMALLOC_LINES = {
    "# arenas allocated current": "arenas_now",
    "# arenas highwater mark": "arenas_most",
    "# bytes in allocated blocks": "allocated_mb",
    "# bytes in available blocks": "free_blocks_mb",
}


FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"


class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS.split()]


def libc() -> ctypes.CDLL | None:
    try:
        lib = ctypes.CDLL("libc.so.6")
        lib.mallinfo2.restype = Mallinfo2
    except (OSError, AttributeError):
        return None
    return lib


LIBC = libc()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def glibc() -> dict[str, float]:
    if LIBC is None:
        return {}
    info = LIBC.mallinfo2()
    return {
        "arena": round(info.arena / MB, 1),
        "used": round(info.uordblks / MB, 1),
        "free": round(info.fordblks / MB, 1),
        "mmapped": round(info.hblkhd / MB, 1),
    }


def pymalloc() -> dict[str, float]:
    """The allocator's own summary, which it prints only to the C-level stderr."""
    with tempfile.TemporaryFile("w+") as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        text = captured.read()
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, number = line.partition(" = ")
        if name.strip() in PYMALLOC_LINES and number:
            key = PYMALLOC_LINES[name.strip()]
            n = int(number.replace(",", ""))
            out[key] = round(n / MB, 1) if key.endswith("_mb") else n
    return out


def trio_deadlines() -> dict[str, Any]:
    """Trio's deadline heap (private: a diagnostic, read in the main thread)."""
    try:
        import trio

        runner = trio._core._run.GLOBAL_RUN_CONTEXT.runner
        heap = runner.deadlines._heap
        now = trio.current_time()
    except (AttributeError, RuntimeError):
        return {}
    return {
        "entries": len(heap),
        "stale": sum(1 for d, _, scope in heap if d != scope._registered_deadline),
        "farthest_s": round(max((d for d, _, _ in heap), default=now) - now, 1),
    }


def dump(count: int) -> dict[str, Any]:
    gc.collect()
    objects = gc.get_objects()
    types = collections.Counter(type(o).__name__ for o in objects)
    report: dict[str, Any] = {
        "rss_mb": rss_mb(),
        "glibc": glibc(),
        "pymalloc": pymalloc(),
        "gc": {"objects": len(objects), "types": types.most_common(15)},
        "trio": trio_deadlines(),
    }
    del objects
    if TRACE:
        tracemalloc.take_snapshot().dump(str(OUT / f"snapshot-{count}.tm"))
    if TRIM and LIBC is not None:
        started = time.perf_counter()
        LIBC.malloc_trim(0)
        report["trimmed"] = {
            "rss_mb": rss_mb(),
            "took_ms": round((time.perf_counter() - started) * 1000, 2),
        }
    return report


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    if TRACE:
        tracemalloc.start(12)
    dumps = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal dumps
        dumps += 1
        partial = OUT / f".dump-{dumps}.json"
        partial.write_text(json.dumps(dump(dumps)))
        partial.rename(OUT / f"dump-{dumps}.json")

    signal.signal(signal.SIGUSR1, on_signal)
    from trio_mock._app._cli import main as serve

    sys.argv[0] = "trio-mock"
    serve()


if __name__ == "__main__":
    main()
