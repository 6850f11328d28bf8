"""Measure trio-mock's resident memory around a burst of abandoned streams and long streams.

    python bench/memory_burst.py [--settle-s 60] [--streams 1000] [--long 2]
                                 [--long-tokens 120000] [--port 8123] [-- server args...]

Loopback only. Starts ``python -m trio_mock`` from this tree as a subprocess on
``--port``, reads its ``VmRSS`` from ``/proc/PID/status`` and prints one JSON object:

  idle         after start-up and 20 short warm-up streams (every code path imported)
  burst        ``--streams`` streaming chats opened at once (TTFT 100 ms, ITL 10 ms,
               1000 tokens), each read for three SSE frames, then closed; with ``--hold``
               (4000 tokens) the clients stop reading after three frames and hang up
               together once all of them are streaming (or after 30 s)
  long         ``--long`` streams of ``--long-tokens`` tokens at ``x-mock-itl-ms: 0``,
               one after the other, each read to its end
  settled      ``--settle-s`` seconds later (the journal cleared first with
               ``--clear-journal``); ``over_idle_mb`` is settled minus idle

Each phase reports its RSS when it ended and the highest RSS sampled during it (every
50 ms). Extra arguments after ``--`` go to the server. With ``--diag DIR`` the server is
``bench/memory_diag.py``, which writes where its memory is to ``DIR/dump-N.json`` at the
end of each phase (glibc's and CPython's allocators, gc counts, trio's deadline heap).

Issue 15 (item 9), one run each on 2 shared cores, settled 60 s after the long streams:
before, 105 -> 148 MB (43 over idle; the two long streams alone took it to 245 MB) and,
with ``--hold``, 108 -> 516 MB (408 over; another run 937); after, 104 -> 118 MB (14 over;
6 with ``--clear-journal``) and, with ``--hold``, 106 -> 156 MB (51 over, nearly all of it
CPython small-object arenas that a few surviving objects keep).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
SAMPLE_S = 0.05
FRAMES_BEFORE_LEAVING = 3
BARRIER_S = 30.0  # a stream lasts 40 s (4000 tokens at 10 ms)
DIAG_WAIT_S = 120.0  # a dump walks every object; with tracemalloc, slowly


def rss(pid: int) -> int:
    """The process's resident set, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def mb(n: int) -> float:
    return round(n / MB, 1)


def request(port: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(data)}\r\n"
    )
    for name, value in (headers or {}).items():
        head += f"{name}: {value}\r\n"
    return head.encode() + b"\r\n" + data


def chat(max_tokens: int, **extra: Any) -> dict[str, Any]:
    return {
        "model": "trio-mock",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "stream": True,
        "max_tokens": max_tokens,
        "ignore_eos": True,
        **extra,
    }


class Barrier:
    """Every stream of the burst is open and streaming before any leaves."""

    def __init__(self, parties: int) -> None:
        self.waiting = parties
        self.all_here = trio.Event()

    async def wait(self) -> None:
        self.waiting -= 1
        if not self.waiting:
            self.all_here.set()
        with trio.move_on_after(BARRIER_S):
            await self.all_here.wait()


async def leave_early(port: int, payload: bytes, barrier: Barrier | None) -> None:
    """Open a stream, read a few frames, wait for the others (``--hold``), hang up."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(payload)
        seen = b""
        while seen.count(b"data:") < FRAMES_BEFORE_LEAVING:
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            seen += chunk
        if barrier is not None:
            await barrier.wait()


async def read_all(port: int, payload: bytes) -> int:
    """Read a whole stream (the server closes the connection after ``Connection: close``)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    size = 0
    tail = b""
    async with stream:
        await stream.send_all(payload)
        while True:
            chunk = await stream.receive_some(1 << 20)
            if not chunk:
                break
            size += len(chunk)
            tail = (tail + chunk)[-64:]
            if b"[DONE]" in tail or b"0\r\n\r\n" in tail:
                break
    return size


class Sampler:
    """The highest RSS seen while a phase runs; with ``diag``, the server's dump at the end
    of each phase."""

    def __init__(self, pid: int, diag: Path | None = None) -> None:
        self.pid = pid
        self.diag = diag
        self.dumps = 0
        self.peak = 0

    async def run(self) -> None:
        while True:
            self.peak = max(self.peak, rss(self.pid))
            await trio.sleep(SAMPLE_S)

    async def phase(self) -> dict[str, Any]:
        now = rss(self.pid)
        result: dict[str, Any] = {"rss_mb": mb(now), "peak_mb": mb(max(self.peak, now))}
        self.peak = now
        if self.diag is not None:
            self.dumps += 1
            os.kill(self.pid, signal.SIGUSR1)
            dump = self.diag / f"dump-{self.dumps}.json"
            with trio.fail_after(DIAG_WAIT_S):
                while not dump.exists():  # ruff: ignore[async-busy-wait] (another process)
                    await trio.sleep(0.1)
            result["diag"] = json.loads(dump.read_text())
            self.peak = rss(self.pid)  # the dump's own work is no phase's
        return result


async def drive(args: argparse.Namespace, pid: int) -> dict[str, Any]:
    port = args.port
    report: dict[str, Any] = {}
    sampler = Sampler(pid, args.diag)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sampler.run)
        for _ in range(20):
            await read_all(port, request(port, chat(50), {"connection": "close"}))
        await trio.sleep(1.0)
        report["idle"] = idle = await sampler.phase()

        started = time.monotonic()
        payload = request(port, chat(4000 if args.hold else 1000))
        barrier = Barrier(args.streams) if args.hold else None
        async with trio.open_nursery() as burst:
            for _ in range(args.streams):
                burst.start_soon(leave_early, port, payload, barrier)
        await trio.sleep(1.0)  # the server notices the last disconnects
        report["burst"] = {**await sampler.phase(), "took_s": round(time.monotonic() - started, 2)}

        if args.long:
            started = time.monotonic()
            long_payload = request(
                port, chat(args.long_tokens), {"x-mock-itl-ms": "0", "connection": "close"}
            )
            sizes = [await read_all(port, long_payload) for _ in range(args.long)]
            report["long"] = {
                **await sampler.phase(),
                "took_s": round(time.monotonic() - started, 2),
                "mb_read": [mb(s) for s in sizes],
            }

        if args.clear_journal:
            await trio.to_thread.run_sync(clear_journal, port)
        timeline = []
        deadline = trio.current_time() + args.settle_s
        while trio.current_time() < deadline:
            await trio.sleep(min(5.0, deadline - trio.current_time()))
            timeline.append(mb(rss(pid)))
        settled = await sampler.phase()
        report["settled"] = {
            **settled,
            "after_s": args.settle_s,
            "every_5s_mb": timeline,
            "over_idle_mb": round(settled["rss_mb"] - idle["rss_mb"], 1),
        }
        nursery.cancel_scope.cancel()
    return report


def clear_journal(port: int) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/_mock/requests", method="DELETE")
    with urllib.request.urlopen(request) as response:
        response.read()


def wait_healthy(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120  # MEMORY_DIAG_TRACE slows start-up down a lot
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"server exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit("server did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--settle-s", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--long", type=int, default=2)
    parser.add_argument("--long-tokens", type=int, default=120_000)
    parser.add_argument("--clear-journal", action="store_true")
    parser.add_argument("--hold", action="store_true", help="streams leave together")
    parser.add_argument("--diag", type=Path, help="run bench/memory_diag.py, dumps in DIAG")
    parser.add_argument("server_args", nargs="*", help="after --: passed to the server")
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    program = ["-m", "trio_mock"]
    if args.diag is not None:
        program = [str(ROOT / "bench" / "memory_diag.py")]
        env["MEMORY_DIAG_DIR"] = str(args.diag)
        for stale in args.diag.glob("dump-*.json"):
            stale.unlink()
    command = [sys.executable, *program, "--host", "127.0.0.1", "--port", str(args.port)]
    command += ["--ttft-ms", "100", "--itl-ms", "10", *args.server_args]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_healthy(args.port, server)
        report = trio.run(drive, args, server.pid)
        report["server_args"] = args.server_args
        report["vm_hwm_mb"] = peak_ever(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
    print(json.dumps(report))


def peak_ever(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return mb(int(line.split()[1]) * 1024)
    return 0.0


if __name__ == "__main__":
    main()
