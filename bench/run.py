"""Benchmark any OpenAI-compatible server by URL: one JSON line per scenario.

Scenarios (``--scenarios``, comma-separated, run in the order given):
  rss     idle memory of ``--pid`` and its children (RSS and PSS), before any load
  rps     non-streaming chat, max_tokens=16, small body: wrk, 64 connections, 10 s
  h2      the same request over HTTP/2 with h2load (h2c for http://, ALPN for https://),
          a fixed request count (``--h2-requests``)
  stream  streaming chat, max_tokens=256, 64 connections, 10 s: content chunks per second
  pace    N streams of 100 tokens started together (N from ``--pace-n``): TTFT and ITL
          percentiles and their error against ``--ttft-ms`` / ``--itl-ms``; with ``--pid``
          also the peak RSS while they run
  closed  a closed loop of ``--closed-n`` clients on kept-alive connections (AIPerf's
          concurrency mode): each sends its next stream of 100 tokens as soon as the last
          ends, for ``--duration`` s after ``--closed-warmup`` s; the pace figures over the
          requests sent in that window

The server's latency settings are the caller's business: run ``rps,stream`` against a
server with zero latency and ``pace`` against one set to the targets given here.

    python bench/run.py --url http://127.0.0.1:8000 --pid 1234 --scenarios rss,rps,stream
    python bench/run.py --url http://127.0.0.1:8000 --pid 1234 --scenarios pace \\
        --ttft-ms 50 --itl-ms 10
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlsplit

from loadgen import chat_body, chat_path

HERE = Path(__file__).resolve().parent


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (workers of a multi-process server)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):  # the task or process just ended
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def memory_mib(pid: int, field: str) -> float:
    """Sum a memory field over the process tree: ``VmRSS`` is cheap, ``Pss`` is fair."""
    total = 0
    for p in descendants(pid):
        name = "smaps_rollup" if field == "Pss" else "status"
        try:
            text = Path(f"/proc/{p}/{name}").read_text()
        except OSError:
            continue
        found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
        total += int(found.group(1)) if found else 0
    return round(total / 1024, 1)


def cpu_s(pid: int) -> float:
    """CPU seconds (user and system) the process tree has used so far."""
    total = 0
    for p in descendants(pid):
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime: the 14th and 15th
    return total / os.sysconf("SC_CLK_TCK")


def run_wrk(args: argparse.Namespace, seconds: float) -> dict:
    env = os.environ | {
        "BENCH_PATH": chat_path(args.url),
        "BENCH_BODY": chat_body(args.model, 16, 24, False, json.loads(args.extra)).decode(),
    }
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.concurrency}",
        f"-d{int(seconds)}s",
        "--latency",
        "-s",
        str(HERE / "chat.lua"),
        args.url,
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next((x for x in out.splitlines() if x.startswith("JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no summary:\n{out}")
    return json.loads(line[5:])


def scenario_rps(args: argparse.Namespace) -> dict:
    """wrk's figures, and with ``--pid`` the server's CPU per request: steadier than
    requests/s on a busy machine, where the load client and the server share the cores."""
    run_wrk(args, 2)  # warm-up, not reported
    before = cpu_s(args.pid) if args.pid else 0.0
    result = run_wrk(args, args.duration)
    if args.pid and result.get("requests"):
        used = cpu_s(args.pid) - before
        result["server_cpu_us_per_request"] = round(used / result["requests"] * 1e6, 1)
    return result


def run_h2load(args: argparse.Namespace, body_file: str, url: str, requests: int) -> str:
    # A request count, not -D: cutting in-flight streams at a deadline crashes hypercorn's
    # trio h2c worker. Keep requests per connection under the server's keep-alive limit
    # (hypercorn: 1000, then GOAWAY, which h2load does not follow by reconnecting).
    cmd = [
        "h2load",
        f"-n{requests}",
        f"-c{args.concurrency}",
        f"-m{args.h2_streams}",
        "-d",
        body_file,
        "-H",
        "content-type: application/json",
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout


def scenario_h2(args: argparse.Namespace) -> dict:
    base = urlsplit(args.url)
    url = f"{base.scheme}://{base.netloc}{chat_path(args.url)}"
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(chat_body(args.model, 16, 24, False, json.loads(args.extra)))
        f.flush()
        run_h2load(args, f.name, url, args.h2_requests // 10)  # warm-up, not reported
        out = run_h2load(args, f.name, url, args.h2_requests)
    rps = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    reqs = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", out)
    lat = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if not (rps and reqs and lat):
        raise SystemExit(f"h2load output not understood:\n{out}")
    return {
        "rps": float(rps.group(1)),
        "streams_per_conn": args.h2_streams,
        "succeeded": int(reqs.group(1)),
        "failed": int(reqs.group(2)) + int(reqs.group(3)),
        "mean_ms": h2load_ms(lat.group(3)),
        "max_ms": h2load_ms(lat.group(2)),
    }


def h2load_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return round(float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], 3)


def loadgen(args: argparse.Namespace, mode: str, *extra: str, pid: int | None = None) -> dict:
    cmd = [
        sys.executable,
        str(HERE / "loadgen.py"),
        mode,
        "--url",
        args.url,
        "--model",
        args.model,
        "--extra",
        args.extra,
        *extra,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = [0.0]
    if pid:  # sample the server's memory while the load runs

        def sample() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], memory_mib(pid, "VmRSS"))
                threading.Event().wait(0.05)

        threading.Thread(target=sample, daemon=True).start()
    out, _ = proc.communicate(timeout=300)
    result = json.loads(out.strip().splitlines()[-1])
    if pid:
        result["rss_peak_mib"] = peak[0]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--url", required=True, help="server base URL, with or without /v1")
    ap.add_argument("--pid", type=int, help="server process, for the memory figures")
    ap.add_argument("--label", default="", help="copied into every line")
    ap.add_argument("--scenarios", default="rss,rps,stream")
    ap.add_argument("--model", default="mock")
    ap.add_argument("--extra", default="{}", help="JSON merged into every request body")
    ap.add_argument("--api", default="chat", help="stream: chat, or Anthropic's messages")
    ap.add_argument("--concurrency", type=int, default=64, help="rps, h2 and stream")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument(
        "--threads", type=int, default=1, help="wrk threads (the server needs cores too)"
    )
    ap.add_argument("--h2-streams", type=int, default=1, help="h2load streams per connection")
    ap.add_argument(
        "--h2-requests",
        type=int,
        default=20000,
        help="h2load request count; hypercorn closes a connection after 1000",
    )
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--pace-n", default="100,1000")
    ap.add_argument("--pace-tokens", type=int, default=100)
    ap.add_argument("--closed-n", type=int, default=100, help="closed: clients")
    ap.add_argument("--closed-warmup", type=float, default=1.0, help="closed: seconds not counted")
    args = ap.parse_args()

    def emit(scenario: str, result: dict) -> None:
        load = {"loadavg_1m": os.getloadavg()[0]}  # other work on the box skews every figure
        print(json.dumps({"scenario": scenario, "label": args.label} | result | load), flush=True)

    for scenario in args.scenarios.split(","):
        if scenario == "rss":
            if args.pid:
                emit(
                    "rss",
                    {
                        "rss_mib": memory_mib(args.pid, "VmRSS"),
                        "pss_mib": memory_mib(args.pid, "Pss"),
                        "processes": len(descendants(args.pid)),
                    },
                )
        elif scenario == "rps":
            if not shutil.which("wrk"):
                raise SystemExit("rps needs wrk on PATH")
            emit("rps", scenario_rps(args))
        elif scenario == "h2":
            emit("h2", scenario_h2(args))
        elif scenario == "stream":
            emit(
                "stream",
                loadgen(
                    args,
                    "stream",
                    "-c",
                    str(args.concurrency),
                    "--max-tokens",
                    "256",
                    "--duration",
                    str(args.duration),
                    "--api",
                    args.api,
                ),
            )
        elif scenario == "pace":
            loadgen(args, "pace", "-c", "10", "--max-tokens", "10")  # warm-up, not reported
            for n in args.pace_n.split(","):
                emit(
                    "pace",
                    loadgen(
                        args,
                        "pace",
                        "-c",
                        n,
                        "--max-tokens",
                        str(args.pace_tokens),
                        "--ttft-ms",
                        str(args.ttft_ms),
                        "--itl-ms",
                        str(args.itl_ms),
                        pid=args.pid,
                    ),
                )
        elif scenario == "closed":
            emit(
                "closed",
                loadgen(
                    args,
                    "closed",
                    "-c",
                    str(args.closed_n),
                    "--max-tokens",
                    str(args.pace_tokens),
                    "--ttft-ms",
                    str(args.ttft_ms),
                    "--itl-ms",
                    str(args.itl_ms),
                    "--duration",
                    str(args.duration),
                    "--warmup",
                    str(args.closed_warmup),
                    pid=args.pid,
                ),
            )
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")


if __name__ == "__main__":
    main()
