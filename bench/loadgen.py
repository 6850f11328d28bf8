"""Raw-socket HTTP/1.1 load generator for OpenAI-style chat streams.

Every SSE content chunk is timestamped with ``perf_counter`` in ``data_received``, the
moment its bytes reach this process, so TTFT and ITL are measured rather than inferred.
Plain asyncio protocols (uvloop when importable), no HTTP library and no JSON parsing on
the hot path: a chunk counts as a token when it carries a non-empty ``"content"`` string.

Modes (one JSON line on stdout):
  stream  N keep-alive connections loop streaming requests for D seconds -> tokens/s.
  pace    N connections, one request each, all sent at once -> TTFT/ITL percentiles
          against a target, stream completion, and this client's own CPU use.
  closed  N clients, each on one kept-alive connection, send their next streamed request as
          soon as the last ends (AIPerf's concurrency mode) for D seconds after a warm-up ->
          the pace figures over the requests sent in those D seconds: the steady state a
          benchmark tool sees, where a burst measures only the first wave.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import ssl
import sys
import time
from collections.abc import Callable
from urllib.parse import urlsplit

TOKEN = re.compile(rb'"content"\s*:\s*"(?!")')  # non-empty content delta
# Anthropic's Messages API (``--api messages``): a non-empty text delta event.
TEXT_DELTA = re.compile(rb'"text_delta"\s*,\s*"text"\s*:\s*"(?!")')
WORDS = b"the quick brown fox jumps over the lazy dog".split()


def prompt(words: int) -> str:
    """Return ``words`` common English words: about one cl100k token each."""
    return " ".join(WORDS[i % len(WORDS)].decode() for i in range(words))


def chat_body(model: str, max_tokens: int, words: int, stream: bool, extra: dict) -> bytes:
    """Build a chat request; both token-limit names, for servers that know only one."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt(words)}],
        "max_tokens": max_tokens,
        "max_completion_tokens": max_tokens,
        "stream": stream,
    }
    return json.dumps(body | extra, separators=(",", ":")).encode()


def messages_body(model: str, max_tokens: int, words: int, stream: bool, extra: dict) -> bytes:
    """Build an Anthropic Messages request (``--api messages``)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt(words)}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    return json.dumps(body | extra, separators=(",", ":")).encode()


def chat_path(base_url: str, endpoint: str = "/chat/completions") -> str:
    """The endpoint under a base URL given with or without its ``/v1``."""
    path = urlsplit(base_url).path.rstrip("/")
    return path + (endpoint if path.endswith("/v1") else "/v1" + endpoint)


def http_request(base_url: str, body: bytes, endpoint: str = "/chat/completions") -> bytes:
    url = urlsplit(base_url)
    version = "anthropic-version: 2023-06-01\r\n" if endpoint == "/messages" else ""
    head = (
        f"POST {chat_path(base_url, endpoint)} HTTP/1.1\r\nHost: {url.netloc}\r\n{version}"
        "Content-Type: application/json\r\nAuthorization: Bearer bench\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


HEAD, CHUNKED, LENGTH, UNTIL_CLOSE = range(4)


API = {  # --api: how to build the request, and where it goes
    "chat": (chat_body, "/chat/completions"),
    "messages": (messages_body, "/messages"),
}


class Stream(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses the response, times tokens."""

    token = TOKEN  # what marks a token in the stream (``--api messages``: TEXT_DELTA)

    def __init__(self, request: bytes, on_done: Callable[[Stream], None], keep_times: bool):
        self.request, self.on_done, self.keep_times = request, on_done, keep_times
        self.transport: asyncio.Transport | None = None
        self.buf, self.sse = bytearray(), bytearray()
        self.state, self.remaining = HEAD, 0
        self.count_from, self.count_until = 0.0, float("inf")  # window for `tokens`
        self.tokens = self.completed = self.failed = 0  # in the window
        self.response_tokens = self.completed_tokens = 0
        self.sent_at, self.status, self.times = 0.0, 0, []
        self.in_flight = self.closed = self.ok = False  # ok: the last response was a 200

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self) -> None:
        self.status, self.times, self.state, self.in_flight = 0, [], HEAD, True
        self.response_tokens = 0
        self.sent_at = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.buf += data
        try:
            self._parse(now)
        except (ValueError, IndexError):  # malformed HTTP: count it, drop the connection
            self._fail()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.in_flight and self.state == UNTIL_CLOSE:
            self._finish(time.perf_counter())
        elif self.in_flight:
            self._fail()

    def _parse(self, now: float) -> None:
        buf = self.buf
        while buf:
            if self.state == HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
                del buf[: end + 4]
                self.status = int(lines[0].split()[1])
                if self.status == 100:
                    continue
                headers = dict(line.lower().partition(":")[::2] for line in lines[1:])
                self.closed |= "close" in headers.get("connection", "")  # no reuse
                if "chunked" in headers.get("transfer-encoding", ""):
                    self.state = CHUNKED
                elif "content-length" in headers:
                    self.state, self.remaining = LENGTH, int(headers["content-length"])
                    if not self.remaining:
                        self._finish(now)
                else:
                    self.state = UNTIL_CLOSE
            elif self.state == CHUNKED:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    return
                size = int(buf[:eol].partition(b";")[0], 16)
                if size == 0:  # last chunk; trailers are not used by SSE servers
                    if len(buf) < eol + 4:
                        return
                    del buf[: eol + 4]
                    self._finish(now)
                    continue
                if len(buf) < eol + size + 4:
                    return
                self._body(buf[eol + 2 : eol + 2 + size], now)
                del buf[: eol + size + 4]
            elif self.state == LENGTH:
                take = min(len(buf), self.remaining)
                self._body(buf[:take], now)
                del buf[:take]
                self.remaining -= take
                if not self.remaining:
                    self._finish(now)
            else:
                self._body(buf, now)
                buf.clear()

    def _body(self, part: bytes | bytearray, now: float) -> None:
        sse = self.sse
        if not sse and part.endswith(b"\n\n"):  # usual case: whole events, no copy
            n = len(self.token.findall(part))
        else:
            sse += part
            lf, crlf = sse.rfind(b"\n\n"), sse.rfind(b"\r\n\r\n")
            cut = max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)
            if not cut:
                return
            n = len(self.token.findall(sse, 0, cut))
            del sse[:cut]
        if n:
            self.response_tokens += n
            if self.keep_times:
                self.times.extend([now] * n)
            if self.count_from <= now <= self.count_until:
                self.tokens += n

    def _finish(self, now: float) -> None:
        self.state, self.in_flight, self.ok = HEAD, False, self.status == 200
        self.sse.clear()
        if self.status != 200:
            self.failed += 1
        elif self.count_from <= now <= self.count_until:
            self.completed += 1
            self.completed_tokens += self.response_tokens
        self.on_done(self)

    def _fail(self) -> None:
        self.failed += 1
        self.state, self.in_flight, self.closed, self.ok = HEAD, False, True, False
        self.buf.clear()
        self.transport.close()
        self.on_done(self)


async def connect(args: argparse.Namespace, n: int, on_done, keep_times: bool) -> list[Stream]:
    """Open ``n`` connections, 100 at a time so small accept backlogs do not drop SYNs."""
    url = urlsplit(args.url)
    tls = ssl._create_unverified_context() if url.scheme == "https" else None
    port = url.port or (443 if tls else 80)
    build, endpoint = API[args.api]
    body = build(args.model, args.max_tokens, args.prompt_words, True, json.loads(args.extra))
    request = http_request(args.url, body, endpoint)
    gate = asyncio.Semaphore(100)
    loop = asyncio.get_running_loop()

    async def one() -> Stream:
        async with gate:
            _, proto = await loop.create_connection(
                lambda: Stream(request, on_done, keep_times), url.hostname, port, ssl=tls
            )
            return proto

    return list(await asyncio.gather(*(one() for _ in range(n))))


def pct(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def loop_name() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1e3, 3)


async def run_stream(args: argparse.Namespace) -> dict:
    """Closed loop: each connection sends its next stream as soon as one ends."""
    idle = asyncio.Event()
    busy = args.concurrency

    def on_done(s: Stream) -> None:
        nonlocal busy
        if time.perf_counter() < s.count_until and not s.closed:
            s.send()
        else:
            busy -= 1
            if not busy:
                idle.set()

    streams = await connect(args, args.concurrency, on_done, keep_times=False)
    cpu0, start = time.process_time(), time.perf_counter()
    for s in streams:
        s.count_from, s.count_until = start + args.warmup, start + args.warmup + args.duration
        s.send()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(idle.wait(), args.warmup + args.duration + args.grace)
    cpu = time.process_time() - cpu0
    for s in streams:
        s.transport.close()
    await asyncio.sleep(0)
    tokens = sum(s.tokens for s in streams)
    done = sum(s.completed for s in streams)
    return {
        "mode": "stream",
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "tokens_per_s": round(tokens / args.duration, 1),
        "streams_per_s": round(done / args.duration, 1),
        "tokens_per_stream": (
            round(sum(s.completed_tokens for s in streams) / done, 1) if done else 0
        ),
        "failed": sum(s.failed for s in streams),
        "client_cpu": round(cpu / (time.perf_counter() - start), 2),
        "loop": loop_name(),
    }


def timing(samples: list[tuple[float, list[float]]], ttft_ms: float, itl_ms: float) -> dict:
    """TTFT, ITL and end-of-stream figures of ``(sent_at, token times)`` against a target.

    ``late_*`` is each token's arrival past its due time (sent + TTFT + i x ITL): the client's
    side of what the server's lag histogram (``lag.py``) counts per write.
    """
    ttft_s, itl_s, e2e_err_s, token_counts, late_s = [], [], [], [], []
    ttft, itl = ttft_ms / 1e3, itl_ms / 1e3
    for sent_at, t in samples:
        late_s.extend(x - sent_at - ttft - i * itl for i, x in enumerate(t))
        ttft_s.append(t[0] - sent_at)
        itl_s.extend(b - a for a, b in itertools.pairwise(t))
        e2e_err_s.append(t[-1] - sent_at - (ttft + (len(t) - 1) * itl))
        token_counts.append(len(t))
    for values in (ttft_s, itl_s, e2e_err_s, token_counts, late_s):
        values.sort()
    p = lambda v, q, target=0.0: ms(None if not v else pct(v, q) - target)  # ruff: ignore[lambda-assignment]
    return {
        "tokens_p50": pct(token_counts, 50),
        "target_ttft_ms": ttft_ms,
        "target_itl_ms": itl_ms,
        "ttft_p50_ms": p(ttft_s, 50),
        "ttft_p99_ms": p(ttft_s, 99),
        "itl_p50_ms": p(itl_s, 50),
        "itl_p99_ms": p(itl_s, 99),
        "ttft_err_p50_ms": p(ttft_s, 50, ttft),
        "ttft_err_p99_ms": p(ttft_s, 99, ttft),
        "itl_err_p50_ms": p(itl_s, 50, itl),
        "itl_err_p99_ms": p(itl_s, 99, itl),
        "end_drift_p50_ms": p(e2e_err_s, 50),
        "end_drift_p99_ms": p(e2e_err_s, 99),
        "late_p50_ms": p(late_s, 50),
        "late_p99_ms": p(late_s, 99),
        "late_mean_ms": ms(sum(late_s) / len(late_s)) if late_s else None,
    }


async def run_pace(args: argparse.Namespace) -> dict:
    """Open loop: N streams start together; compare arrival times with the target schedule."""
    pending = args.concurrency
    all_done = asyncio.Event()

    def on_done(s: Stream) -> None:
        nonlocal pending
        pending -= 1
        if not pending:
            all_done.set()

    t0 = time.perf_counter()
    streams = await connect(args, args.concurrency, on_done, keep_times=True)
    connect_s = time.perf_counter() - t0
    cpu0, start = time.process_time(), time.perf_counter()
    for s in streams:
        s.send()
    send_spread_s = time.perf_counter() - start
    with contextlib.suppress(TimeoutError):  # unfinished streams count as failed
        await asyncio.wait_for(all_done.wait(), args.timeout)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    for s in streams:
        s.transport.close()

    samples = [(s.sent_at, s.times) for s in streams if s.completed and s.times]
    return {
        "mode": "pace",
        "streams": args.concurrency,
        "completed": len(samples),
        "failed": args.concurrency - len(samples),
        **timing(samples, args.ttft_ms, args.itl_ms),
        "connect_s": round(connect_s, 3),
        "send_spread_ms": ms(send_spread_s),
        "wall_s": round(wall, 3),
        "client_cpu": round(cpu / wall, 2),
        "loop": loop_name(),
    }


async def run_closed(args: argparse.Namespace) -> dict:
    """Closed loop: N clients, each on its own kept-alive connection, send their next stream
    as soon as one ends; the figures are those of the requests sent after the warm-up.

    A client whose connection the server closes stops (``clients_lost``): a benchmark tool
    would reconnect, but a server that closes kept-alive streams is a finding, not noise.
    """
    samples: list[tuple[float, list[float]]] = []
    failed = 0
    window = [float("inf"), float("inf")]  # [from, until): when a request counts
    busy = args.concurrency
    idle = asyncio.Event()

    def on_done(s: Stream) -> None:
        nonlocal busy, failed
        if window[0] <= s.sent_at < window[1]:
            if s.ok and s.times:
                samples.append((s.sent_at, s.times))
            else:
                failed += 1
        if time.perf_counter() < window[1] and not s.closed:
            s.send()
        else:
            busy -= 1
            if not busy:
                idle.set()

    streams = await connect(args, args.concurrency, on_done, keep_times=True)
    cpu0, start = time.process_time(), time.perf_counter()
    window[:] = [start + args.warmup, start + args.warmup + args.duration]
    for s in streams:
        s.send()
    with contextlib.suppress(TimeoutError):  # unfinished requests count as failed
        await asyncio.wait_for(idle.wait(), args.warmup + args.duration + args.grace)
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu0
    unfinished = sum(s.in_flight and s.sent_at >= window[0] for s in streams)
    lost = sum(s.closed for s in streams)
    for s in streams:
        s.transport.close()
    return {
        "mode": "closed",
        "clients": args.concurrency,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "completed": len(samples),
        "failed": failed + unfinished,
        "clients_lost": lost,
        "requests_per_s": round(len(samples) / args.duration, 1),
        **timing(samples, args.ttft_ms, args.itl_ms),
        "client_cpu": round(cpu / wall, 2),
        "loop": loop_name(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("mode", choices=["stream", "pace", "closed"])
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--model", default="mock")
    ap.add_argument("-c", "--concurrency", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--prompt-words", type=int, default=300, help="echo servers need >= max-tokens")
    ap.add_argument("--extra", default="{}", help="JSON merged into the request body")
    ap.add_argument("--duration", type=float, default=10.0, help="stream, closed: measured seconds")
    ap.add_argument("--warmup", type=float, default=2.0, help="stream, closed: seconds not counted")
    ap.add_argument(
        "--grace", type=float, default=10.0, help="stream, closed: wait for open streams"
    )
    ap.add_argument("--ttft-ms", type=float, default=50.0, help="pace, closed: target TTFT")
    ap.add_argument("--itl-ms", type=float, default=10.0, help="pace, closed: target ITL")
    ap.add_argument("--timeout", type=float, default=120.0, help="pace: give up after")
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument(
        "--api", choices=sorted(API), default="chat", help="chat, or Anthropic's messages"
    )
    args = ap.parse_args()
    if args.api == "messages":
        Stream.token = TEXT_DELTA
    if not args.no_uvloop:
        try:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        except ImportError:
            print("uvloop not importable: using the stdlib loop", file=sys.stderr)
    run = {"stream": run_stream, "pace": run_pace, "closed": run_closed}[args.mode]
    result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
