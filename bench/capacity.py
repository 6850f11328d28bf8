"""Capacity: the largest number of paced streams a server keeps on schedule.

A mock that falls behind distorts the benchmark it serves, so the figure a user needs is how
many streams one worker holds, not how fast it runs flat out. Streams of ``TOKENS`` tokens at
TTFT ``TTFT_MS`` / ITL ``ITL_MS`` are held when ITL p99 <= ``ITL_P99_MS`` and TTFT p99 <=
``TTFT_P99_MS`` with no failed request, in two shapes:

  burst   N streams start together (``loadgen.py pace``): the first wave of a benchmark;
  closed  N clients on kept-alive connections, each sending its next stream as soon as the
          last ends (``loadgen.py closed``, AIPerf's concurrency mode): the steady state.

The search doubles N from ``STEP`` until a probe fails (or ``CAP``), then bisects to ``STEP``
(if even ``STEP`` fails, it halves N down to ``FLOOR``), within a hard time budget: when it
runs out, the largest N that held is reported with ``resolved: false``. A small warm-up burst comes first (a cold server's first streams are
late for reasons a benchmark never sees twice), and a failed probe is tried once more before
it counts: on a shared machine one noisy second should not halve the figure. Every probe is
listed in the line for the reader to judge.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

Record = dict[str, Any]

TTFT_MS, ITL_MS, TOKENS = 50.0, 10.0, 100
TTFT_P99_MS, ITL_P99_MS = 100.0, 15.0  # the bounds a held stream stays within
STEP, CAP = 25, 1600  # N's resolution and ceiling (each stream is a socket on both sides)
FLOOR = 3  # below STEP, N halves down to this: "held 12" says more than "held 0"
BURST_TIMEOUT_S = 6.0  # a burst that held ends in ~1.1 s; one this late has long failed
CLOSED_WARMUP_S, CLOSED_GRACE_S = 1.0, 3.0
SETTLE_S = 0.3  # between probes: let the last probe's connections close


def held(line: Record) -> bool:
    """Every request completed, within both bounds."""
    ttft, itl = line.get("ttft_p99_ms"), line.get("itl_p99_ms")
    return (
        bool(line.get("completed"))
        and not line.get("failed")
        and not line.get("clients_lost")
        and ttft is not None
        and ttft <= TTFT_P99_MS
        and itl is not None
        and itl <= ITL_P99_MS
    )


def probe(bench_dir: Path, url: str, mode: str, n: int, closed_s: float) -> Record:
    """One run of ``loadgen.py`` at N streams (``burst``) or N clients (``closed``)."""
    cmd = [sys.executable, str(bench_dir / "loadgen.py"), mode, "--url", url, "-c", str(n)]
    cmd += ["--max-tokens", str(TOKENS), "--ttft-ms", f"{TTFT_MS:g}", "--itl-ms", f"{ITL_MS:g}"]
    if mode == "pace":
        cmd += ["--timeout", f"{BURST_TIMEOUT_S:g}"]
        limit = BURST_TIMEOUT_S + 30.0  # connecting N sockets, starting the interpreter
    else:
        cmd += ["--duration", f"{closed_s:g}", "--warmup", f"{CLOSED_WARMUP_S:g}"]
        cmd += ["--grace", f"{CLOSED_GRACE_S:g}"]
        limit = CLOSED_WARMUP_S + closed_s + CLOSED_GRACE_S + 30.0
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        return {"failed": n, "error": "loadgen.py timed out"}
    lines = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if not lines:
        return {"failed": n, "error": out.stderr.strip()[-300:]}
    result: Record = json.loads(lines[-1])
    return result


def figures(line: Record) -> Record:
    """What a probe's line shows in the capacity line."""
    keys = ("ttft_p99_ms", "itl_p99_ms", "failed", "clients_lost", "error")
    return {k: line[k] for k in keys if k in line}


def search(bench_dir: Path, url: str, mode: str, budget_s: float, closed_s: float = 3.0) -> Record:
    """The largest N that held, by doubling then bisection, within ``budget_s`` seconds.

    Args:
      mode: ``pace`` (a burst) or ``closed`` (steady state).
      closed_s: a closed-loop probe's measured seconds (after its warm-up).
    """
    deadline = time.monotonic() + budget_s
    warm = [sys.executable, str(bench_dir / "loadgen.py"), "pace", "--url", url, "-c", "10"]
    subprocess.run([*warm, "--max-tokens", "10"], capture_output=True, timeout=60, check=False)
    good, bad, n = 0, None, STEP
    probes: list[Record] = []
    spent = False
    while True:
        if time.monotonic() > deadline:
            spent = True
            break
        line = probe(bench_dir, url, mode, n, closed_s)
        ok = held(line)
        if not ok and time.monotonic() < deadline:  # confirm a failure once
            probes.append({"n": n, "held": False, "retried": True} | figures(line))
            time.sleep(SETTLE_S)
            line = probe(bench_dir, url, mode, n, closed_s)
            ok = held(line)
        probes.append(
            {"n": n, "held": ok}
            | {
                k: line.get(k)
                for k in ("ttft_p99_ms", "itl_p99_ms", "failed", "error")
                if k in line
            }
        )
        if ok:
            good = n
        else:
            bad = n
        if bad is None and n >= CAP:
            break
        if good == 0 and bad is not None:  # not even STEP: halve
            if bad // 2 < FLOOR:
                break
            n = bad // 2
        elif bad is not None and bad - good <= STEP:
            break
        elif bad is None:
            n = min(CAP, n * 2)
        else:
            n = max(good + STEP, (good + bad) // 2 // STEP * STEP)
        time.sleep(SETTLE_S)
    return {
        "mode": "burst" if mode == "pace" else "closed",
        "held_n": good,
        "failed_n": bad,  # the smallest N seen to fail (None: none failed up to the cap)
        "resolved": not spent,
        "at_cap": good >= CAP,
        "bounds": {"ttft_p99_ms": TTFT_P99_MS, "itl_p99_ms": ITL_P99_MS},
        "schedule": {"ttft_ms": TTFT_MS, "itl_ms": ITL_MS, "tokens": TOKENS},
        "search_s": round(budget_s - (deadline - time.monotonic()), 1),
        "probes": probes,
    }
