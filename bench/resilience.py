"""The resilience phase of ``bench.py``: what abusive clients do to a server, as figures.

Four checks, each bounded in time, on loopback only, one JSON record each:

  h2load_goaway     ``h2load -n 100 -c 1 -m 50 -D 1`` (a duration-bound h2c run: it ends
                    with GOAWAY while streams are in flight) ten times against streaming chat;
                    after each run, is the server alive and answering ``GET /health``? A dead
                    or hung server is recorded with its cause and replaced for the next run.
  disconnect_storm  RSS (``VmRSS``) idle, at its peak (sampled every 100 ms) and after a
                    settle time, around 1000 streaming chats that each read a few events and
                    then disconnect.
  connection_burst  10,000 TCP connections opened at once, each sending one ``GET /health``:
                    served (a 200) against refused, reset, closed (by the server, with no
                    answer) or timed out (no answer within 15 s: a dropped SYN is retried
                    after 1, 3 and 7 s); with the kernel's ``net.core.somaxconn``, the listen
                    backlog in use (``ss``), how long the server took to answer ``/health``
                    again, and the ``TcpExt ListenOverflows`` delta (a counter of the whole
                    network namespace: other work on the box adds to it).
  bad_inputs        abusive requests on raw sockets (``bad_inputs.py``).

This module only drives clients and reads ``/proc``; starting and stopping servers is the
caller's (``start`` gives a context manager of a healthy server, and stops it on exit).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import json
import re
import resource
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from bench import Server

    Start = Callable[[], AbstractContextManager[Server]]

Record = dict[str, Any]

H2LOAD_RUNS = 10
H2LOAD_TIMEOUT_S = 20.0  # a 1 s run; past this h2load itself is stuck and is killed
AFTER_RUN_S = 1.0  # the crash comes as the connection closes, just after h2load ends
HEALTH_TIMEOUT_S = 2.0
STREAM_TOKENS = 1000  # at ITL 10 ms a stream lasts 10 s: in flight when the client leaves
STORM_STREAMS, STORM_EVENTS, STORM_TIMEOUT_S = 1000, 3, 60.0
RSS_EVERY_S = 0.1
BURST_CONNECTIONS, BURST_TIMEOUT_S = 10_000, 15.0
RECOVERY_S = 30.0  # after the burst, how long the server may take to answer /health again


def chat_body(max_tokens: int, *, stream: bool) -> bytes:
    body = {"model": "mock", "messages": [{"role": "user", "content": "Hi"}], "stream": stream}
    return json.dumps(body | {"max_tokens": max_tokens}).encode()


def rss_mib(pid: int) -> float | None:
    """``VmRSS`` of one process, or None once it has gone."""
    try:
        found = re.search(
            r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE
        )
    except OSError:
        return None
    return round(int(found.group(1)) / 1024, 1) if found else None


def healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy
    try:
        with opener.open(f"{url}/health", timeout=HEALTH_TIMEOUT_S) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def failure(server: Server) -> str | None:
    """Say why ``server`` is no longer usable (dead, or alive but not answering), else None."""
    if server.proc.poll() is None and healthy(server.url):
        return None
    if server.proc.poll() is None:
        return f"alive but GET /health unanswered within {HEALTH_TIMEOUT_S:g} s"
    return f"died, exit status {server.proc.returncode}: {cause(server.output())}"


def health_back_s(server: Server, within_s: float) -> float | None:
    """Seconds until ``server`` answers ``GET /health`` again; None if not ``within_s``."""
    started = time.monotonic()
    while time.monotonic() - started < within_s and server.proc.poll() is None:
        if healthy(server.url):
            return round(time.monotonic() - started, 1)
        time.sleep(0.5)
    return None


def cause(output: str) -> str:
    """The last exception line of a server's log (tracebacks in groups are indented by |)."""
    lines = [line.strip(" |+-") for line in output.splitlines()]
    for line in reversed(lines):
        if re.match(r"[\w.]+(Error|Exception|Group|Exit|Interrupt)\b", line):
            return line[:300]
    return next((line[:300] for line in reversed(lines) if line), "(no output)")


def tracebacks(server: Server) -> int:
    return server.output().count("Traceback (most recent call last)")


# -- h2load_goaway -------------------------------------------------------------------------


def h2load_goaway(start: Start, runs: int = H2LOAD_RUNS) -> Record:
    """Run h2load ``-D 1`` ``runs`` times; count the runs after which the server still serves."""
    outcomes: list[str] = []
    with tempfile.NamedTemporaryFile(suffix=".json") as body, contextlib.ExitStack() as stack:
        body.write(chat_body(STREAM_TOKENS, stream=True))
        body.flush()
        server = stack.enter_context(start())
        for _ in range(runs):
            parts = urlsplit(server.url)
            cmd = ["h2load", "-n", "100", "-c", "1", "-m", "50", "-D", "1", "-d", body.name]
            cmd += ["-H", "content-type: application/json"]
            cmd += [f"http://{parts.netloc}/v1/chat/completions"]
            try:
                subprocess.run(cmd, capture_output=True, timeout=H2LOAD_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired:
                outcomes.append(f"h2load stuck past {H2LOAD_TIMEOUT_S:g} s")
                continue  # run() killed it; the server is checked by the next run
            time.sleep(AFTER_RUN_S)
            if (problem := failure(server)) is None:
                outcomes.append("survived")
                continue
            outcomes.append(problem)
            stack.close()  # stops what is left of it
            server = stack.enter_context(start())
    survived = outcomes.count("survived")
    return {
        "scenario": "h2load_goaway",
        "command": "h2load -n 100 -c 1 -m 50 -D 1 (h2c, streaming chat, ITL 10 ms)",
        "runs": runs,
        "survived": survived,
        "survived_of": f"{survived}/{runs}",
        "failures": [f"run {i + 1}: {o}" for i, o in enumerate(outcomes) if o != "survived"],
    }


# -- disconnect_storm ----------------------------------------------------------------------


class RssSampler:
    """Sample a process's RSS every ``RSS_EVERY_S`` in a thread; keep the peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(RSS_EVERY_S):
            self.peak = max(self.peak, rss_mib(self.pid) or 0.0)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def storm(host: str, port: int, streams: int, events: int) -> collections.Counter[str]:
    """Open ``streams`` connections, start a stream on each at once, leave after ``events``."""
    body = chat_body(STREAM_TOKENS, stream=True)
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    gate = asyncio.Semaphore(100)  # connect 100 at a time, as loadgen.py does
    go, ready = asyncio.Event(), [0]

    def arrived() -> None:  # once every connection is up (or failed), all streams start
        ready[0] += 1
        if ready[0] == streams:
            go.set()

    async def one() -> str:
        try:
            async with gate:
                reader, writer = await asyncio.open_connection(host, port)
        except OSError as error:
            return "connect: " + errno.errorcode.get(error.errno or 0, type(error).__name__)
        finally:
            arrived()
        try:
            await go.wait()
            writer.write(request)
            seen = 0
            while seen < events:
                data = await reader.read(65536)
                if not data:
                    return "closed by the server early"
                seen += data.count(b"data: ")
        except OSError as error:
            return errno.errorcode.get(error.errno or 0, type(error).__name__)
        finally:
            writer.close()  # the disconnect
        return "read then left"

    tasks = [asyncio.create_task(one()) for _ in range(streams)]
    done, pending = await asyncio.wait(tasks, timeout=STORM_TIMEOUT_S)
    for task in pending:
        task.cancel()
    outcome = collections.Counter(t.result() for t in done)
    if pending:
        outcome["timed out"] += len(pending)
        await asyncio.wait(pending)
    return outcome


def disconnect_storm(server: Server, settle_s: float, streams: int = STORM_STREAMS) -> Record:
    """RSS idle, at the peak and ``settle_s`` after a burst of streams that disconnect early."""
    parts = urlsplit(server.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    asyncio.run(storm(host, port, 20, STORM_EVENTS))  # warm-up: first-request work is not a leak
    time.sleep(1.0)
    idle = rss_mib(server.pid)
    with RssSampler(server.pid) as sampler:
        started = time.monotonic()
        outcome = asyncio.run(storm(host, port, streams, STORM_EVENTS))
        burst_s = time.monotonic() - started
        time.sleep(1.0)
        after_1s = rss_mib(server.pid)
        time.sleep(max(0.0, settle_s - 1.0))
        after = rss_mib(server.pid)
    kept = None if idle is None or after is None else round(after - idle, 1)
    return {
        "scenario": "disconnect_storm",
        "streams": streams,
        "events_read": STORM_EVENTS,
        "outcomes": dict(outcome),
        "burst_s": round(burst_s, 2),
        "rss_idle_mib": idle,
        "rss_peak_mib": max(sampler.peak, after_1s or 0.0),
        "rss_after_1s_mib": after_1s,
        "rss_after_mib": after,
        "settle_s": settle_s,
        "rss_kept_mib": kept,
        "rss_kept_within_20mib": None if kept is None else kept <= 20.0,
        "server": failure(server) or "alive",
    }


# -- connection_burst ----------------------------------------------------------------------


async def burst(host: str, port: int, connections: int) -> collections.Counter[str]:
    """Open ``connections`` connections at once, one ``GET /health`` each; tally what came."""
    request = f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()

    async def one() -> str:
        try:
            async with asyncio.timeout(BURST_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    writer.write(request)
                    line = await reader.readline()
                finally:
                    writer.close()
        except TimeoutError:
            return "timed_out"
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            return "reset"
        except OSError as error:
            return errno.errorcode.get(error.errno or 0, type(error).__name__)
        if not line:
            return "closed"
        status = line.split()[1:2]
        return "served" if status == [b"200"] else f"status_{status[0].decode()}"

    return collections.Counter(await asyncio.gather(*(one() for _ in range(connections))))


def raise_nofile(wanted: int) -> int:
    """Raise this process's open-file limit towards ``wanted`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def tcp_ext(*names: str) -> dict[str, int] | None:
    """Counters of ``/proc/net/netstat``'s ``TcpExt`` lines, or None if unreadable."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            found = dict(zip(head.split()[1:], values.split()[1:], strict=False))
            return {name: int(found[name]) for name in names if name in found}
    return None


def read_int(path: str) -> int | None:
    try:
        return int(Path(path).read_text())
    except (OSError, ValueError):
        return None


def listen_backlog(port: int) -> int | None:
    """The backlog of the socket listening on ``port``: ``ss`` shows it as its Send-Q."""
    try:
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = out.split()
    return int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else None


def nofile_limit(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/limits").read_text()
    except OSError:
        return None
    found = re.search(r"^Max open files\s+(\d+)", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def connection_burst(server: Server, connections: int = BURST_CONNECTIONS) -> Record:
    """Open ``connections`` connections at once; count those served, refused and lost."""
    parts = urlsplit(server.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    client_nofile = raise_nofile(connections + 256)
    counters = ("ListenOverflows", "ListenDrops")
    before = tcp_ext(*counters)
    started = time.monotonic()
    outcome = asyncio.run(burst(host, port, connections))
    wall_s = time.monotonic() - started
    after = tcp_ext(*counters)
    back_s = health_back_s(server, RECOVERY_S)
    delta = None
    if before is not None and after is not None:
        delta = {name: after[name] - before[name] for name in before if name in after}
    return {
        "scenario": "connection_burst",
        "connections": connections,
        "served": outcome.get("served", 0),
        "not_served": connections - outcome.get("served", 0),
        "outcomes": dict(outcome),
        "timeout_s": BURST_TIMEOUT_S,
        "wall_s": round(wall_s, 2),
        "somaxconn": read_int("/proc/sys/net/core/somaxconn"),
        "tcp_max_syn_backlog": read_int("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
        "listen_backlog": listen_backlog(port),
        "listen_overflows": None if delta is None else delta.get("ListenOverflows"),
        "listen_drops": None if delta is None else delta.get("ListenDrops"),
        "client_nofile": client_nofile,
        "server_nofile": nofile_limit(server.pid),
        "health_back_after_s": back_s,  # once the client has gone: is the server still busy?
        "server": failure(server) or "alive",
    }
