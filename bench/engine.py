"""The bench's ``engine`` phase: trio-mock's batched engine (``--engine batched``) under load.

Three parts, a JSON line each:

* ``engine_c{N}``: a closed loop of N clients (1, 8, 32, 128, 512) of 100-token streams
  against ``--engine batched --profile vllm-8b-h100``: TTFT and ITL p50/p99 and output
  tokens/s, beside ``model_*``, what the pure engine predicts for the same closed loop
  stepped here without a server (so the gap is the server's own lateness). One SVG
  (latency and throughput against concurrency, drawn here by hand) goes next to the
  lines: ``--out``'s name with ``.svg``, else ``bench-engine.svg``. At 512 clients,
  ``clients_lost`` counts connections the server closed once idle for its keep-alive
  timeout after the window ended (the loop sends nothing then), not failures.
* ``engine_cpu``: the scheduler's own CPU per step, in this process (no server), for
  batches of 8, 64 and 256 decoding sequences.
* ``engine_overhead``: requests/s of non-streamed chat (wrk, 64 connections) with the
  batched engine against the default one in the same run, rounds alternated, both with a
  TTFT and ITL of 1 us (at zero, a body is answered at once and its timeline never
  built), and the server's CPU per request in each run. The target (>= 0.9) is on
  ``rps_per_cpu_vs_simple``, the requests/s a core sustains, batched over default: other
  work on a shared box swings requests/s by tens of percent, CPU per request far less.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import run
from loadgen import chat_body, chat_path

from trio_mock import Settings
from trio_mock._sim._engine import Engine, engines_for

if TYPE_CHECKING:
    from bench import Bench

CONCURRENCY = (1, 8, 32, 128, 512)
TOKENS = 100
PROMPT_WORDS = 300  # loadgen's default prompt
GRACE_S = 40.0  # loadgen's wait for requests still running when the window ends
PROFILE = "vllm-8b-h100"
BATCHED = ["--engine", "batched", "--profile", PROFILE]
# The overhead's servers: a step of 1 us (the ITL), so both engines take the same path
# (zero latency answers a body at once, without its timeline) and the CPU sets req/s.
TINY_MS = 0.001
TINY_STEPS = ["--engine", "batched", "--engine-seq-ms", "0", "--engine-past-knee-ms", "0"]
CPU_BATCHES = (8, 64, 256)
OVERHEAD_ROUNDS, QUICK_OVERHEAD_ROUNDS = 3, 1  # alternated: the box is shared, runs swing
OVERHEAD_LIMIT = 0.9  # the batched engine keeps at least this share of the default's req/s


class EngineBenchError(Exception):
    """A run of this phase failed (``bench.Bench.attempt`` reports it as its own)."""


def phase(bench: Bench, template: str, label: str) -> None:
    """The sweep, the CPU per step and the overhead, as described above."""
    quick = bench.args.quick
    latency = Settings.load(cli={"profile": PROFILE}, env={}).latency
    for line in cpu_per_step():
        bench.record(label, f"engine_cpu{line['batch']}", line)
    lines = sweep(bench, template, label, latency, quick)
    out = bench.args.out
    svg = Path(out).with_suffix(".svg") if out else Path("bench-engine.svg")
    svg.write_text(plot(lines), encoding="utf-8")
    print(f"bench: engine plot written to {svg}", flush=True)
    overhead(bench, template, label, quick)


def sweep(bench: Bench, template: str, label: str, latency: Any, quick: bool) -> list[dict]:
    lines = []
    with bench.running(template, latency.ttft_ms, latency.itl_ms, extra=BATCHED) as server:
        prompt = prompt_tokens(server.url)
        for n in CONCURRENCY:
            warmup, duration = window_s(n, quick)
            line = closed_loop(bench, server.url, n, warmup, duration)
            line |= {"scenario": f"engine_c{n}", "phase": "engine", "label": label,
                     "concurrency": n, "prompt_tokens": prompt,
                     "loadavg_1m": os.getloadavg()[0]}  # fmt: skip
            line["output_tokens_per_s"] = round(line["requests_per_s"] * TOKENS, 1)
            model = modelled(latency, n, prompt, warmup, duration)
            line |= {f"model_{key}": value for key, value in model.items()}
            bench.record(label, line["scenario"], line)
            lines.append(line)
        bench.note(label, server)
    return lines


def window_s(clients: int, quick: bool) -> tuple[float, float]:
    """The closed loop's warm-up and measured seconds: past the first wave, all prefilled
    at once (512 prompts of ~300 tokens take 8 s at 20k tokens/s), and then long enough
    for several requests per client (at 512, half of them queue: ~13 s a request)."""
    if clients <= 32:
        return 3.0, 4.0 if quick else 8.0
    if clients <= 128:
        return 6.0, 4.0 if quick else 8.0
    return 15.0, 10.0 if quick else 20.0


def closed_loop(bench: Bench, url: str, clients: int, warmup: float, duration: float) -> dict:
    """loadgen's closed loop (its own process), with the grace a slow request needs: one
    still running when the window ends counts as failed once the grace is over."""
    cmd = [sys.executable, str(bench.args.bench_dir / "loadgen.py"), "closed", "--url", url,
           "-c", str(clients), "--max-tokens", str(TOKENS), "--warmup", f"{warmup:g}",
           "--duration", f"{duration:g}", "--grace", f"{GRACE_S:g}", "--ttft-ms", "0",
           "--itl-ms", "0"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=warmup + duration + 120)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode or not lines:
        raise EngineBenchError(f"loadgen closed -c {clients} failed:\n{done.stdout}{done.stderr}")
    return dict(json.loads(lines[-1]))


def prompt_tokens(url: str) -> int:
    """The prompt length the server counts for loadgen's request."""
    body = chat_body("mock", 1, PROMPT_WORDS, False, {})
    path = url.rstrip("/") + chat_path(url)
    request = urllib.request.Request(path, body, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return int(json.load(answer)["usage"]["prompt_tokens"])


def modelled(latency: Any, clients: int, prompt: int, warmup: float, duration: float) -> dict:
    """What the engine alone predicts for the closed loop (the pure ``_engine``, stepped
    here with no server): each client sends its next request when its last token is out;
    the figures of the requests sent in ``[warmup, warmup + duration)``, as loadgen's."""
    engines = engines_for(attrs.evolve(latency, engine="batched"))
    assert engines is not None
    engine = Engine(engines.profile)
    end = warmup + duration
    # Clients start spread over one unloaded request's time: in lockstep (all at 0) every
    # wave would prefill at once, which a real loop's jitter soon breaks up.
    spread = engines.profile.step_s(prompt, 1) + (TOKENS - 1) * engines.profile.itl_s
    live = [engine.join(i * spread / clients, prompt, prompt, TOKENS) for i in range(clients)]
    done = []
    while live and engine.step():  # until the last request sent before ``end`` is out
        for seq in [s for s in live if len(s.token_times) == TOKENS]:
            done.append(seq)
            live.remove(seq)
            if engine.clock < end:
                live.append(engine.join(engine.clock, prompt, prompt, TOKENS))
    counted = [s for s in done if warmup <= s.arrival < end]
    ttft = sorted(s.token_times[0] - s.arrival for s in counted)
    itl = sorted(b - a for s in counted for a, b in itertools.pairwise(s.token_times))
    return {
        "tokens_per_s": round(len(counted) * TOKENS / duration, 1),
        "ttft_p50_ms": percentile_ms(ttft, 50),
        "ttft_p99_ms": percentile_ms(ttft, 99),
        "itl_p50_ms": percentile_ms(itl, 50),
        "itl_p99_ms": percentile_ms(itl, 99),
    }


def percentile_ms(values: list[float], p: float) -> float | None:
    if not values:
        return None
    return round(values[min(len(values) - 1, int(len(values) * p / 100))] * 1000, 3)


def cpu_per_step(steps: int = 2000) -> list[dict]:
    """The engine's own CPU per step and per token, for batches of decoding sequences."""
    latency = Settings.load(cli={"profile": PROFILE, "engine": "batched"}, env={}).latency
    engines = engines_for(latency)
    assert engines is not None
    lines = []
    for batch in CPU_BATCHES:
        engine = Engine(engines.profile)
        seqs = [engine.join(0.0, 300, 300, 10**9) for _ in range(batch)]
        engine.token_at(seqs[0], 50)  # prefilled, decoding
        best = math.inf
        for _ in range(5):
            started = time.process_time()
            for _ in range(steps):
                engine.step()
            best = min(best, (time.process_time() - started) / steps)
        lines.append({"scenario": "engine_cpu", "phase": "engine", "batch": batch,
                      "us_per_step": round(best * 1e6, 2),
                      "us_per_token": round(best * 1e6 / batch, 3)})  # fmt: skip
    return lines


def overhead(bench: Bench, template: str, label: str, quick: bool) -> None:
    """Requests/s at 64 connections, default engine against batched, rounds alternated;
    and the server's CPU per request in each run, which other work on a shared box
    disturbs far less than it does requests/s."""
    rounds = QUICK_OVERHEAD_ROUNDS if quick else OVERHEAD_ROUNDS
    rps: dict[str, list[float]] = {"simple": [], "batched": []}
    cpu_us: dict[str, list[float]] = {"simple": [], "batched": []}
    in_process: dict[str, list[float]] = {"simple": [], "batched": []}
    for _ in range(rounds):
        for kind, extra in (("simple", []), ("batched", TINY_STEPS)):
            with bench.running(template, TINY_MS, TINY_MS, extra=extra) as server:
                wrk = argparse.Namespace(url=server.url, model="mock", extra="{}", threads=1,
                                         concurrency=64, pid=server.pid,
                                         duration=bench.args.duration)  # fmt: skip
                line = run.scenario_rps(wrk)  # a warm-up, then wrk with the server's CPU
                rps[kind].append(line["rps"])
                cpu_us[kind].append(line["server_cpu_us_per_request"])
                bench.note(label, server)
        for kind in rps:
            in_process[kind].append(round(in_process_us(kind == "batched"), 1))
    simple, batched = max(rps["simple"]), max(rps["batched"])  # the best of each: least noise
    by_cpu = min(cpu_us["simple"]) / min(cpu_us["batched"])  # req/s a core sustains, batched/simple
    line = {"scenario": "engine_overhead", "phase": "engine", "label": label,
            "rps_simple": rps["simple"], "rps_batched": rps["batched"],
            "rps_vs_simple": round(batched / simple, 3),
            "server_cpu_us_per_request_simple": cpu_us["simple"],
            "server_cpu_us_per_request_batched": cpu_us["batched"],
            "rps_per_cpu_vs_simple": round(by_cpu, 3),
            "in_process_us_per_request_simple": in_process["simple"],
            "in_process_us_per_request_batched": in_process["batched"],
            "in_process_rps_vs_simple": round(
                min(in_process["simple"]) / min(in_process["batched"]), 3
            ),
            "target": OVERHEAD_LIMIT, "met": by_cpu >= OVERHEAD_LIMIT,
            "loadavg_1m": os.getloadavg()[0]}  # fmt: skip
    bench.record(label, "engine_overhead", line)


def in_process_us(batched: bool, requests: int = 3200) -> float:
    """CPU per request of the app called in process by 64 concurrent tasks (no sockets,
    no client): the engines' own difference, with the least noise."""
    env = os.environ | {"TRIO_MOCK_TTFT_MS": f"{TINY_MS:g}", "TRIO_MOCK_ITL_MS": f"{TINY_MS:g}"}
    if batched:
        env |= {"TRIO_MOCK_ENGINE": "batched", "TRIO_MOCK_ENGINE_SEQ_MS": "0",
                "TRIO_MOCK_ENGINE_PAST_KNEE_MS": "0"}  # fmt: skip
    cmd = [sys.executable, __file__, "in-process", str(requests)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if done.returncode:
        raise EngineBenchError(f"in-process run failed:\n{done.stderr}")
    return float(done.stdout.split()[-1])


async def concurrent_requests(total: int) -> float:
    """``total`` non-streamed 16-token chats through the app, 64 at a time: CPU us each."""
    import gc

    import trio
    from cpu import chat_caller

    from trio_mock import create_app

    app = create_app(Settings.from_env())
    one = chat_caller(app, chat_body("mock", 16, 24, False, {}), checkpoint=True)

    async def client(count: int) -> None:
        for _ in range(count):
            await one()

    async with app.test_app():
        for count in (5, total // 64):  # a warm-up, then the measure
            gc.collect()
            started = time.process_time()
            async with trio.open_nursery() as nursery:
                for _ in range(64):
                    nursery.start_soon(client, count)
    return (time.process_time() - started) / (total // 64 * 64) * 1e6


# --- the plot ----------------------------------------------------------------------------

WIDTH, HEIGHT, PANEL = 900, 360, 390  # the image, and each panel's width
LEFT, TOP, BOTTOM = 70, 40, 300  # a panel's plot area: x from LEFT, y from TOP to BOTTOM
SERIES = (  # latency panel: key, colour, dashed
    ("ttft_p50_ms", "#1f77b4", False),
    ("ttft_p99_ms", "#1f77b4", True),
    ("itl_p50_ms", "#d62728", False),
    ("itl_p99_ms", "#d62728", True),
)


def plot(lines: list[dict]) -> str:
    """Latency (log scale) and throughput against concurrency (log scale), side by side."""
    xs = [line["concurrency"] for line in lines]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'font-family="sans-serif" font-size="11">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
             f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13">trio-mock '
             f"--engine batched --profile {PROFILE}: closed loop, {TOKENS}-token streams</text>"]  # fmt: skip
    values = [line.get(key) for line in lines for key, _, _ in SERIES]
    positive = [v for v in values if v] or [1.0]
    low, high = (
        10 ** math.floor(math.log10(min(positive))),
        10 ** math.ceil(math.log10(max(positive))),
    )
    left = Axes(0, xs, low, high, log_y=True)
    parts += left.frame("latency (ms)")
    for key, colour, dashed in SERIES:
        points = [(line["concurrency"], line.get(key)) for line in lines]
        parts.append(left.line(points, colour, dashed))
    parts += legend(left, [(k.removesuffix("_ms"), c, d) for k, c, d in SERIES])
    model = [(line["concurrency"], line.get("model_tokens_per_s")) for line in lines]
    measured = [(line["concurrency"], line.get("output_tokens_per_s")) for line in lines]
    top = max([v for _, v in model + measured if v] + [1.0])
    right = Axes(PANEL + 60, xs, 0.0, top * 1.1, log_y=False)
    parts += right.frame("output tokens/s")
    parts.append(right.line(measured, "#2ca02c", False))
    parts.append(right.line(model, "#7f7f7f", True))
    parts += legend(right, [("measured", "#2ca02c", False), ("model", "#7f7f7f", True)])
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


class Axes:
    """One panel: concurrency on a log x axis, and a linear or log y axis."""

    def __init__(self, x0: float, xs: list[int], low: float, high: float, *, log_y: bool):
        self.x0, self.xs, self.low, self.high, self.log_y = x0, xs, low, high, log_y

    def x(self, value: float) -> float:
        span = math.log(max(self.xs)) - math.log(min(self.xs)) or 1.0
        return (
            self.x0 + LEFT + (math.log(value) - math.log(min(self.xs))) / span * (PANEL - LEFT - 20)
        )

    def y(self, value: float) -> float:
        if self.log_y:
            share = (math.log10(value) - math.log10(self.low)) / (
                math.log10(self.high) - math.log10(self.low) or 1.0
            )
        else:
            share = (value - self.low) / ((self.high - self.low) or 1.0)
        return BOTTOM - share * (BOTTOM - TOP)

    def frame(self, title: str) -> list[str]:
        x_left, x_right = self.x0 + LEFT, self.x0 + PANEL - 20
        out = [f'<line x1="{x_left}" y1="{BOTTOM}" x2="{x_right}" y2="{BOTTOM}" stroke="black"/>',
               f'<line x1="{x_left}" y1="{TOP}" x2="{x_left}" y2="{BOTTOM}" stroke="black"/>',
               f'<text x="{(x_left + x_right) / 2}" y="{BOTTOM + 32}" text-anchor="middle">'
               "concurrency (clients)</text>",
               f'<text x="{x_left}" y="{TOP - 8}">{title}</text>']  # fmt: skip
        for value in self.xs:
            out.append(f'<text x="{self.x(value):.1f}" y="{BOTTOM + 15}" '
                       f'text-anchor="middle">{value}</text>')  # fmt: skip
        for value in self.ticks():
            y = self.y(value)
            out += [f'<line x1="{x_left}" y1="{y:.1f}" x2="{x_right}" y2="{y:.1f}" '
                    'stroke="#ddd"/>',
                    f'<text x="{x_left - 5}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>']  # fmt: skip
        return out

    def ticks(self) -> list[float]:
        if self.log_y:
            first, last = round(math.log10(self.low)), round(math.log10(self.high))
            return [10.0**k for k in range(first, last + 1)]
        step = 10 ** math.floor(math.log10(self.high / 2 or 1.0))
        return [k * step for k in range(int(self.high // step) + 1)]

    def line(self, points: list[tuple[int, Any]], colour: str, dashed: bool) -> str:
        shown = [(x, v) for x, v in points if v and (v > 0 or not self.log_y)]
        coords = " ".join(f"{self.x(x):.1f},{self.y(v):.1f}" for x, v in shown)
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        return (f'<polyline points="{coords}" fill="none" stroke="{colour}" '
                f'stroke-width="2"{dash}/>')  # fmt: skip


def legend(axes: Axes, entries: list[tuple[str, str, bool]]) -> list[str]:
    out = []
    for i, (name, colour, dashed) in enumerate(entries):
        x, y = axes.x0 + LEFT + 10 + 95 * i, HEIGHT - 12
        dash = ' stroke-dasharray="5,4"' if dashed else ""
        out += [f'<line x1="{x}" y1="{y - 4}" x2="{x + 20}" y2="{y - 4}" stroke="{colour}" '
                f'stroke-width="2"{dash}/>',
                f'<text x="{x + 24}" y="{y}">{name}</text>']  # fmt: skip
    return out


if __name__ == "__main__" and sys.argv[1:2] == ["in-process"]:  # in_process_us's child
    import trio

    print(f"{trio.run(concurrent_requests, int(sys.argv[2])):.1f}")
