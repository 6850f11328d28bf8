"""Benchmark trio-mock against the stack's floor, measured in the same run: one JSON line each.

    python bench/bench.py [--quick] [--out FILE] [--only PHASE,...] [--settle-s S]

Loopback only. Each server runs as a subprocess of this interpreter on a free port of
127.0.0.1; the driver waits for ``GET /health``, runs scenarios with the runner beside this
file (``run.py``: wrk for ``rps``, ``loadgen.py`` for ``stream``, ``pace`` and ``closed``),
then stops the server (SIGTERM, then SIGKILL). The load client lives in this directory, so a
fresh clone needs nothing beside it but ``wrk`` (Debian package ``wrk``) for throughput,
endpoints, workers2 and shared, and ``h2load`` (``nghttp2-client``) for resilience: a phase whose
tool is missing is skipped with a note (and named in the summary's ``skipped``), not an abort.

Two references run before trio-mock, each on Hypercorn's trio worker with trio-mock's
transport settings and the same minimal chat logic: ``bench/bare_asgi.py``, a bare ASGI
callable (the floor: trio-mock's lines carry ``*_vs_baseline`` ratios over it), and
``bench/baseline_app.py``, a minimal Quart-Trio app (``*_vs_quart``). Phases (``--only`` picks
some), each on a fresh server:

  throughput, zero latency:  rss, rps (64 connections), stream (64 streams of 256 tokens)
  pace, TTFT 50 / ITL 10 ms: rss, pace at 100 and at 1000 streams of 100 tokens started
                             together, rss_after (a second after the 1000), then closed100: a
                             closed loop of 100 clients on kept-alive connections, each sending
                             its next stream as soon as the last ends (AIPerf's concurrency
                             mode; ``--duration`` s after a 1 s warm-up). Around each run the
                             server's ``trio_mock_schedule_lag_seconds`` histogram is scraped
                             from ``/metrics`` (``lag.py``): ``server_lag_p50_ms``, ``_p99_ms``,
                             ``_mean_ms`` of that run's writes (None if the server lacks the
                             metric) beside the client's per-token lateness (``late_*``) and
                             TTFT/ITL errors. trio-mock without --quick also a second
                             1000-stream burst (pace_repeat, rss_after_repeat), since memory
                             kept after one burst is not a leak but growth is
  capacity, the bare ASGI app, trio-mock, trio-mock --workers 2 (``capacity.py``): the most
                             paced streams (TTFT 50, ITL 10 ms, 100 tokens) kept within ITL
                             p99 <= 15 ms and TTFT p99 <= 100 ms, for a burst of N and for a
                             closed loop of N clients; doubling from 25, then bisection to 25,
                             within a budget per search (30 s burst, 60 s closed; --quick 20
                             and 35): lines capacity_burst and capacity_closed with ``held_n``,
                             the probes, and ``held_n_vs_baseline`` (1 worker) or
                             ``held_n_vs_1worker`` (2 workers)
  endpoints, trio-mock only, zero latency: rps (wrk, 64 connections) of each generation
                             endpoint with a 16-token non-streamed reply (``ENDPOINT_BODIES``),
                             and streamed tokens/s of chat and of Anthropic's messages
                             (``endpoint_stream_*``, ``tokens_per_s_vs_chat``),
                             with ``rps_vs_chat`` against the chat line of the same phase
  load, trio-mock only, pace's settings plus --itl-load-factor 0.001: 1000 streams of 100
                             tokens; while all decode, the model's ITL is 10 x (1 + 0.001 x 999)
                             = 19.99 ms (``modelled_itl_ms``, also the line's target ITL, so
                             ``itl_err_*`` and ``stretch_*`` are off the model), with the
                             observed ITL over it (``observed_itl_*_vs_modelled``) and over the
                             pace phase's 1000 streams at factor 0 (``itl_*_ms_vs_unloaded``);
                             also ``decode_itl_ms``, a median stream's mean gap, since a late
                             server's tokens come several to a read and the ITL p50 can be 0
  replay, trio-mock only: 100 paced streams (pace's settings) recorded from an upstream
                             trio-mock through one in record mode, then replayed from the
                             cassette at zero latency (``replay_recorded``, ``replay`` with
                             ``*_vs_recorded``: 1.0 = the recorded timing, kept)
  workers2, trio-mock --workers 2 (not with --quick): the throughput phase again
  shared, trio-mock --workers 2, zero latency: rps (wrk, 64 connections) with no shared-state
                             knob, then with shared rate limits and shared capacity set so
                             they never refuse (``SHARED_KNOBS``, ``rps_vs_plain``, and the
                             server's CPU per request, steadier on a busy machine,
                             ``server_cpu_us_per_request_vs_plain``); with ``--against
                             REF``, the plain server of that git commit too, run
                             alternately with this one (``*_vs_previous``); each server
                             twice, the better run kept
  resilience, trio-mock only, what abusive clients do (``resilience.py``), a line each:
                             h2load_goaway (``h2load -D 1`` runs survived, of 10; a dead server
                             is reported and restarted), disconnect_storm (RSS idle, peak and
                             ``--settle-s`` after 1000 streams that leave early; 60 s, --quick
                             10), connection_burst (10,000 connections at once: served vs
                             not, somaxconn, listen overflows) and bad_inputs
                             (``bad_inputs.py``: 30 abusive requests tried vs refused with an
                             OpenAI-shaped 4xx; the server gets ``--api-keys``,
                             ``--max-body-bytes`` and ``--body-timeout-s 2``, and runs without
                             the last if it refuses the flag)
  engine, trio-mock only (``engine.py``): ``--engine batched --profile vllm-8b-h100``
                             under closed loops of 1, 8, 32, 128 and 512 clients of
                             100-token streams (TTFT, ITL p50/p99, output tokens/s beside
                             the model's, lines engine_c*, and an SVG plot next to
                             ``--out``), the scheduler's CPU per step (engine_cpu*), and
                             engine_overhead: requests/s at 64 connections, batched over
                             the default engine at zero latency (``rps_vs_simple`` >= 0.9)

Without --quick, the throughput phase runs again for trio-mock ``--workers 2`` with
``*_vs_1worker`` ratios. Every line has a ``phase``; pace, closed and load lines add
``stretch_p50``/``stretch_p99``, a stream's observed end over its scheduled end (1.0 = on
time). The last line, ``{"scenario": "summary", ...}``, holds the key figures (trio-mock's,
with ``baseline`` and ``quart`` for the references, ``capacity`` and ``lag``), the DESIGN.md
targets and issue 16's (``issue16_targets``) met or not, the phases skipped, and any problems
(failed requests, tracebacks in a server's output, a server that died). The exit status is 1
if a phase could not run. A default run takes about 5 minutes plus about 5 for capacity and
3 for resilience, ``--quick`` (3 s runs, no repeat, no second worker in throughput) about 3
plus 3 plus 2.

Hidden options: ``--duration S`` per rps/stream/closed run; ``--budget S`` for the whole run
(480, --quick 200, plus 330 or 210 with capacity and 300 or 180 with resilience: then runs
are cut and phases skipped); ``--bench-dir`` for another copy of the runner (``run.py``,
``loadgen.py``, ``chat.lua``); ``--ports LOW-HIGH`` to pick the servers' ports from a range
(default: any free port); ``--server-cmd`` / ``--baseline-cmd`` (the bare ASGI reference) /
``--quart-cmd`` replace a server's command with a template using ``{python}``, ``{port}``,
``{ttft_ms}``, ``{itl_ms}``, ``{workers}`` and ``{itl_load_factor}`` (without ``{workers}``
the two-worker runs are skipped, without ``{itl_load_factor}`` the load phase; the default
command gets ``--itl-load-factor`` in the load phase only), e.g. the calibration server:

    python bench/bench.py --quick --server-cmd \\
        "{python} bench/trivial_server.py --port {port} --ttft-ms {ttft_ms} --itl-ms {itl_ms}"
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bad_inputs
import capacity
import engine
import lag
import resilience

if TYPE_CHECKING:
    from collections.abc import Callable, Generator

Record = dict[str, Any]
Compare = Sequence[tuple[str, str]]  # (reference label, suffix of the ratios against it)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TRIO_MOCK_CMD = (
    "{python} -m trio_mock --host 127.0.0.1 --port {port} --ttft-ms {ttft_ms} --itl-ms {itl_ms}"
    " --workers {workers} --output-tokens-mean 1024"  # long replies: max_tokens sets the length
)
BASELINE_CMD = (  # the bare ASGI callable: the floor of the stack, what *_vs_baseline is over
    "{python} " + shlex.quote(str(HERE / "bare_asgi.py")) + " --host 127.0.0.1 --port {port}"
    " --ttft-ms {ttft_ms} --itl-ms {itl_ms}"
)
QUART_CMD = (  # the least a Quart-Trio app does: the second reference, *_vs_quart
    "{python} " + shlex.quote(str(HERE / "baseline_app.py")) + " --host 127.0.0.1 --port {port}"
    " --ttft-ms {ttft_ms} --itl-ms {itl_ms}"
)
LOAD_ARGS = " --itl-load-factor {itl_load_factor}"  # added to the default command's load phase
MOCK, BASELINE, QUART, MOCK_W2 = "trio-mock", "bare-asgi", "quart", "trio-mock-w2"
PACE_TTFT_MS, PACE_ITL_MS, PACE_TOKENS = 50.0, 10.0, 100
CLOSED_CLIENTS = 100  # the pace phase's closed loop, as AIPerf's concurrency mode runs it
LOAD_STREAMS, LOAD_ITL_FACTOR = 1000, 0.001  # the load phase: pace with the ITL load model
START_TIMEOUT_S = 60.0  # trio-mock builds its corpus before it listens
BUDGET_S, QUICK_BUDGET_S = 480.0, 200.0  # past this, calls are cut and phases skipped
RESILIENCE_BUDGET_S, QUICK_RESILIENCE_BUDGET_S = 300.0, 180.0  # added when it runs
# The capacity phase: a search per server (1 and 2 workers), burst then closed loop.
CAPACITY_BURST_S, CAPACITY_CLOSED_S = 30.0, 60.0  # each search's budget
QUICK_CAPACITY_BURST_S, QUICK_CAPACITY_CLOSED_S = 20.0, 35.0
CAPACITY_PROBE_S, QUICK_CAPACITY_PROBE_S = 3.0, 2.0  # a closed-loop probe's measured seconds
CAPACITY_BUDGET_S, QUICK_CAPACITY_BUDGET_S = 3 * (90.0 + 20.0), 3 * (55.0 + 15.0)  # added
PHASES = (
    "throughput",
    "pace",
    "capacity",
    "endpoints",
    "load",
    "replay",
    "workers2",
    "shared",
    "resilience",
    "engine",
)
# The shared phase: --workers 2 at zero latency, alone and with each knob whose state the
# workers share (issue 18), each set so that it never refuses: what sharing costs.
SHARED_KNOBS: dict[str, list[str]] = {
    "plain": [],
    "rpm": ["--rate-limit-rpm", "1000000000", "--rate-limit-tpm", "1000000000000"],
    "capacity": ["--max-concurrency", "100000"],
}
PREVIOUS = "previous"  # the label of --against's checkout
ENGINE_BUDGET_S, QUICK_ENGINE_BUDGET_S = 300.0, 180.0  # added when the engine phase runs
TOOLS = {  # what a phase needs on PATH, and the Debian package that has it
    "throughput": [("wrk", "wrk")],
    "endpoints": [("wrk", "wrk")],
    "workers2": [("wrk", "wrk")],
    "shared": [("wrk", "wrk")],
    "engine": [("wrk", "wrk")],
    "resilience": [("h2load", "nghttp2-client")],
}
SETTLE_S, QUICK_SETTLE_S = 60.0, 10.0  # the disconnect storm's wait before RSS "after"
RESILIENCE_TTFT_MS = RESILIENCE_ITL_MS = 10.0
BODY_TIMEOUT_S = 2.0  # the bad-input server's --body-timeout-s
RATIO_KEYS = {  # per scenario, the figures compared with the reference server
    "rss": ["rss_mib"],
    "rss_after": ["rss_mib"],
    "rps": ["rps", "p50_ms", "p99_ms"],
    "stream": ["tokens_per_s"],
    "closed": ["requests_per_s", "ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms"],
    "pace": [
        "ttft_p50_ms",
        "ttft_p99_ms",
        "itl_p50_ms",
        "itl_p99_ms",
        "stretch_p50",
        "stretch_p99",
        "rss_peak_mib",
    ],
}
PROBLEM_KEYS = ("failed", "non_2xx", "socket_errors")
# The endpoints phase: one fixed, non-streamed request per generation endpoint.
ENDPOINT_BODIES: dict[str, tuple[str, Record]] = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]}),
    "completions": ("/v1/completions", {"prompt": "Hi"}),
    "responses": ("/v1/responses", {"input": "Hi", "max_output_tokens": 16}),
    "chat_tools": (
        "/v1/chat/completions",
        {
            "messages": [{"role": "user", "content": "Weather?"}],
            "tool_choice": "required",
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "city": {"type": "string"},
                                "unit": {"enum": ["celsius", "fahrenheit"]},
                            },
                            "required": ["city", "unit"],
                        },
                    },
                }
            ],
        },
    ),
    "embeddings": ("/v1/embeddings", {"input": "Hi", "model": "text-embedding-3-small"}),
    # Anthropic's Messages API (chat.lua sends its anthropic-version header to every path)
    "messages": ("/v1/messages", {"messages": [{"role": "user", "content": "Hi"}]}),
}


class BenchError(Exception):
    """A server or a run of the runner failed; the message shows its output."""


def free_port(ports: Sequence[int] = ()) -> int:
    """A port of 127.0.0.1 nobody listens on: the first free one of ``ports``, or any."""
    for candidate in ports or [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            port: int = s.getsockname()[1]
            return port
    raise BenchError(f"no free port in {ports[0]}-{ports[-1]}")


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


class Server:
    """A running server: base URL, process (its tree holds the memory) and output log."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_bytes().decode(errors="replace")  # own offset, not the server's

    def problem(self) -> str | None:
        """Say if the server died or logged a traceback, else None."""
        if self.proc.poll() is not None:
            return f"server exited with status {self.proc.returncode}: {tail(self.output(), 3)}"
        tracebacks = self.output().count("Traceback (most recent call last)")
        if tracebacks:
            return (
                f"server logged {tracebacks} tracebacks, the last ending: {tail(self.output(), 3)}"
            )
        return None

    def wait_healthy(self) -> None:
        """Poll ``GET /health`` until it answers 200; fail if the server exits or never does."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # no proxy
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"server exited with status {self.proc.returncode}:\n{tail(self.output())}"
                )
            with contextlib.suppress(OSError), opener.open(f"{self.url}/health", timeout=1.0) as r:
                if r.status == 200:
                    return
            time.sleep(0.1)
        raise BenchError(f"server not healthy after {START_TIMEOUT_S:g} s:\n{tail(self.output())}")

    def stop(self) -> None:
        """SIGTERM the server's process group (workers too), SIGKILL what is left after 5 s."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            print(f"bench: server {self.pid} ignored SIGTERM, killing it", file=sys.stderr)
        with contextlib.suppress(ProcessLookupError):  # workers a supervisor left behind
            os.killpg(self.pid, signal.SIGKILL)
        self.proc.wait()


@contextlib.contextmanager
def running(
    template: str,
    ttft_ms: float,
    itl_ms: float,
    workers: int = 1,
    itl_load_factor: float = 0.0,
    *,
    extra: Sequence[str] = (),
    ports: Sequence[int] = (),
) -> Generator[Server]:
    """Start a server from ``template`` on a free port, yield it once healthy, then stop it.

    Args:
      extra: arguments added to the command.
      ports: where to look for a free port (default: any).
    """
    port = free_port(ports)
    fields = {"port": port, "ttft_ms": f"{ttft_ms:g}", "itl_ms": f"{itl_ms:g}", "workers": workers}
    fields["itl_load_factor"] = f"{itl_load_factor:g}"
    cmd = shlex.split(template.format(python=shlex.quote(sys.executable), **fields))
    cmd += extra
    print(f"bench: starting {shlex.join(cmd)}", file=sys.stderr)
    with tempfile.NamedTemporaryFile(prefix="bench-server-", suffix=".log") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=log, start_new_session=True)
        server = Server(f"http://127.0.0.1:{port}", proc, Path(log.name))
        try:
            server.wait_healthy()
            yield server
        finally:
            server.stop()


class Bench:
    """Runs the runner (``run.py``) against servers; annotates, prints and keeps its lines."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.deadline = time.monotonic() + args.budget
        self.records: dict[tuple[str, str], Record] = {}  # (label, key) -> line
        self.problems: list[str] = []
        self.failed_phases: list[str] = []
        self.skipped: list[str] = []  # phases left out, and why

    def running(self, *args: Any, **kwargs: Any) -> contextlib.AbstractContextManager[Server]:
        """``running(...)`` on a port of ``--ports``."""
        return running(*args, ports=self.args.ports, **kwargs)

    def emit(self, record: Record) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        if self.args.out:
            with open(self.args.out, "a") as f:
                f.write(line + "\n")

    def run(self, server: Server, label: str, scenarios: str, *extra: str) -> list[Record]:
        """Run ``run.py`` for ``scenarios`` against ``server``; return its JSON lines."""
        cmd = [sys.executable, str(self.args.bench_dir / "run.py"), "--url", server.url]
        cmd += ["--pid", str(server.pid), "--label", label, "--scenarios", scenarios]
        cmd += ["--duration", f"{self.args.duration:g}", *extra]
        # Its own session, so that a timeout also ends the wrk or loadgen.py it started.
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            out, err = proc.communicate(timeout=max(5.0, self.deadline - time.monotonic()))
        except BaseException as error:  # the budget, or Ctrl+C: which the child did not get
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            if isinstance(error, subprocess.TimeoutExpired):
                raise BenchError(f"run.py --scenarios {scenarios}: time budget spent") from error
            raise
        lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        if proc.returncode or not lines:
            output = tail(out + err)
            raise BenchError(
                f"run.py --scenarios {scenarios} failed ({proc.returncode}):\n{output}"
            )
        return lines

    def record(self, label: str, key: str, line: Record, compare: Compare = ()) -> None:
        """Add stretch and ratios to each reference's line of the same key; check; emit."""
        if line["scenario"].startswith(("pace", "load", "closed")):
            line |= stretch(line)
        for reference_label, suffix in compare:
            if reference := self.records.get((reference_label, key)):
                for name in RATIO_KEYS.get(line["scenario"], []):
                    line[name + suffix] = ratio(line.get(name), reference.get(name))
        self.records[label, key] = line
        self.problems += [f"{label} {key}: {k}={line[k]}" for k in PROBLEM_KEYS if line.get(k)]
        self.emit(line)

    def note(self, label: str, server: Server) -> None:
        if problem := server.problem():
            self.problems.append(f"{label}: {problem}")

    def throughput(self, template: str, label: str, workers: int, compare: Compare) -> None:
        with self.running(template, 0.0, 0.0, workers) as server:
            for line in self.run(server, label, "rss,rps,stream"):
                extra = {"phase": "throughput", "workers": workers}
                self.record(label, line["scenario"], line | extra, compare)
            self.note(label, server)

    def pace(self, template: str, label: str, compare: Compare, repeat: bool) -> None:
        """Bursts of 100 and 1000 paced streams, then a closed loop of 100 clients.

        Around each run, the server's own lag histogram is scraped from ``/metrics``; its
        reading for that run's writes (``lag.py``, None without the metric) goes in the line
        beside the client's ``late_*``, ``ttft_err_*`` and ``itl_err_*``.
        """
        pace = ["--ttft-ms", f"{PACE_TTFT_MS:g}", "--itl-ms", f"{PACE_ITL_MS:g}"]
        pace += ["--pace-tokens", str(PACE_TOKENS)]
        phase = {"phase": "pace"}
        with self.running(template, PACE_TTFT_MS, PACE_ITL_MS) as server:
            (line,) = self.run(server, label, "rss")
            self.record(label, "rss_idle", line | phase, compare)
            runs = [
                ("pace100", "pace", "--pace-n", "100"),
                ("pace1000", "pace", "--pace-n", "1000"),
            ]
            runs.append((f"closed{CLOSED_CLIENTS}", "closed", "--closed-n", str(CLOSED_CLIENTS)))
            for key, scenario, *which in runs:
                before = lag.scrape(server.url)
                (line,) = self.run(server, label, scenario, *pace, *which)
                time.sleep(lag.FLUSH_S)  # the server's metrics reach /metrics in batches
                line |= lag.reading(before, lag.scrape(server.url))
                self.record(label, key, line | phase, compare)
                if key == f"pace{LOAD_STREAMS}":
                    self.rss_after(server, label, "rss_after", compare)
            if repeat:
                for line in self.run(server, label, "pace", *pace, "--pace-n", "1000"):
                    self.record(label, "pace_repeat", line | phase | {"scenario": "pace_repeat"})
                self.rss_after(server, label, "rss_after_repeat", ())
            self.note(label, server)

    def capacity(self, template: str, label: str, workers: int, compare: Compare) -> None:
        """The largest N of paced streams held, as a burst and as a closed loop (``capacity.py``).

        Each search gets its own budget, cut to what is left of the run's.
        """
        quick = self.args.quick
        budgets = {
            "pace": QUICK_CAPACITY_BURST_S if quick else CAPACITY_BURST_S,
            "closed": QUICK_CAPACITY_CLOSED_S if quick else CAPACITY_CLOSED_S,
        }
        probe_s = QUICK_CAPACITY_PROBE_S if quick else CAPACITY_PROBE_S
        with self.running(template, capacity.TTFT_MS, capacity.ITL_MS, workers) as server:
            for mode, budget in budgets.items():
                budget = min(budget, self.deadline - time.monotonic() - 10.0)
                if budget <= 0:
                    raise BenchError("capacity: the time budget is spent")
                found = capacity.search(self.args.bench_dir, server.url, mode, budget, probe_s)
                key = f"capacity_{found['mode']}"
                line = {"scenario": key, "phase": "capacity", "label": label, "workers": workers}
                line |= found | {"loadavg_1m": os.getloadavg()[0]}
                for reference_label, suffix in compare:
                    reference = self.get(reference_label, key, "held_n")
                    line["held_n" + suffix] = ratio(found["held_n"], reference)
                self.record(label, key, line)
            self.note(label, server)

    def load(self, template: str, label: str) -> None:
        """Pace ``LOAD_STREAMS`` streams against a server whose ITL grows with the decoders."""
        modelled = modelled_itl_ms(PACE_ITL_MS, LOAD_ITL_FACTOR, LOAD_STREAMS)
        # The model is the target: itl_err_* and stretch_* are then off the model, not off 10 ms.
        pace = ["--ttft-ms", f"{PACE_TTFT_MS:g}", "--itl-ms", f"{modelled:g}"]
        pace += ["--pace-tokens", str(PACE_TOKENS), "--pace-n", str(LOAD_STREAMS)]
        key = f"load{LOAD_STREAMS}"
        model = {"itl_ms": PACE_ITL_MS, "itl_load_factor": LOAD_ITL_FACTOR}
        model["modelled_itl_ms"] = modelled
        unloaded = self.records.get((label, f"pace{LOAD_STREAMS}"), {})  # factor 0, pace phase
        with self.running(
            template, PACE_TTFT_MS, PACE_ITL_MS, itl_load_factor=LOAD_ITL_FACTOR
        ) as server:
            (line,) = self.run(server, label, "pace", *pace)
            line |= {"scenario": "load", "phase": "load"} | model
            for p in ("p50", "p99"):
                observed = line.get(f"itl_{p}_ms")
                line[f"observed_itl_{p}_vs_modelled"] = ratio(observed, modelled)
                line[f"itl_{p}_ms_vs_unloaded"] = ratio(observed, unloaded.get(f"itl_{p}_ms"))
            # Tokens a late server sends in a burst arrive in one read: gaps of 0 can make the
            # ITL p50 0.0 at 1000 streams. The mean gap of a median stream does not depend on that.
            decode = decode_itl_ms(line)
            line["decode_itl_ms"] = decode
            line["decode_itl_vs_modelled"] = ratio(decode, modelled)
            line["decode_itl_vs_unloaded"] = ratio(decode, decode_itl_ms(unloaded))
            self.record(label, key, line)
            self.note(label, server)

    def endpoints(self, template: str, label: str) -> None:
        """Requests/s of each generation endpoint, on one server, against chat's."""
        wrk = shutil.which("wrk")
        assert wrk is not None
        with self.running(template, 0.0, 0.0) as server:
            for name, (path, body) in ENDPOINT_BODIES.items():
                request = {"model": "mock", "max_tokens": 16} | body
                env = os.environ | {"BENCH_PATH": path, "BENCH_BODY": json.dumps(request)}
                line: Record = {"scenario": f"endpoint_{name}", "phase": "endpoints", "path": path}
                for seconds in (1, self.args.duration):  # a warm-up, then the measured run
                    line |= wrk_summary(wrk, server.url, seconds, env, self.args.bench_dir)
                if name != "chat":
                    line["rps_vs_chat"] = ratio(
                        line["rps"], self.get(label, "endpoint_chat", "rps")
                    )
                self.record(label, line["scenario"], line)
            for api in ("chat", "messages"):  # streamed: tokens/s, messages against chat
                (line,) = self.run(server, label, "stream", "--api", api)
                line |= {"scenario": f"endpoint_stream_{api}", "phase": "endpoints"}
                if api != "chat":
                    chat_tokens = self.get(label, "endpoint_stream_chat", "tokens_per_s")
                    line["tokens_per_s_vs_chat"] = ratio(line["tokens_per_s"], chat_tokens)
                self.record(label, line["scenario"], line)
            self.note(label, server)

    def replay(self, template: str, label: str) -> None:
        """100 paced streams of an upstream trio-mock (TTFT 50, ITL 10 ms), recorded through
        a second one in record mode, then replayed from the cassette by a third at zero
        latency: the replayed TTFT and ITL against the recorded ones (``*_vs_recorded``)."""
        pace = ["--ttft-ms", f"{PACE_TTFT_MS:g}", "--itl-ms", f"{PACE_ITL_MS:g}"]
        pace += ["--pace-tokens", str(PACE_TOKENS), "--pace-n", "100"]
        phase = {"phase": "replay"}
        with tempfile.TemporaryDirectory(prefix="bench-cassette-") as folder:
            cassette = str(Path(folder) / "recorded.jsonl")
            with self.running(template, PACE_TTFT_MS, PACE_ITL_MS) as upstream:
                record = ["--record-upstream", upstream.url, "--cassette", cassette]
                with self.running(template, 0.0, 0.0, extra=record) as proxy:
                    (recorded,) = self.run(proxy, label, "pace", *pace)
                    self.record(
                        label, "replay_recorded", recorded | phase | {"scenario": "replay_recorded"}
                    )
            with self.running(template, 0.0, 0.0, extra=["--cassette", cassette]) as replayer:
                (replayed,) = self.run(replayer, label, "pace", *pace)
                for key in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms"):
                    replayed[f"{key}_vs_recorded"] = ratio(replayed.get(key), recorded.get(key))
                self.record(label, "replay", replayed | phase | {"scenario": "replay"})
                self.note(label, server=replayer)

    def shared(self, template: str, label: str, previous: str | None) -> None:
        """Requests/s of ``--workers 2`` with each shared-state knob of ``SHARED_KNOBS`` against
        none (``rps_vs_plain``), and with none against ``--against``'s checkout
        (``rps_vs_previous``), the two servers run alternately, twice each."""
        phase = {"phase": "shared", "workers": 2}
        runs = [(label, template, "plain")] * 2
        if previous is not None:
            runs = [(PREVIOUS, previous, "plain"), (label, template, "plain")] * 2
        runs += [(label, template, name) for name in SHARED_KNOBS if name != "plain"]
        best: dict[tuple[str, str], Record] = {}
        for who, command, name in runs:
            with self.running(command, 0.0, 0.0, 2, extra=SHARED_KNOBS[name]) as server:
                (line,) = self.run(server, who, "rps")
                self.note(who, server)
            kept = best.get((who, name))
            if kept is None or line["rps"] > kept["rps"]:  # the quieter run of two
                best[who, name] = line
        cpu = "server_cpu_us_per_request"
        for (who, name), line in best.items():
            line |= phase | {"scenario": f"shared_{name}", "knobs": " ".join(SHARED_KNOBS[name])}
            against = None
            if name != "plain":
                against, suffix = best[label, "plain"], "_vs_plain"
            elif who == label and (PREVIOUS, "plain") in best:
                against, suffix = best[PREVIOUS, "plain"], "_vs_previous"
            if against is not None:
                line["rps" + suffix] = ratio(line["rps"], against["rps"])
                line[cpu + suffix] = ratio(line.get(cpu), against.get(cpu))
            self.record(who, line["scenario"], line)

    def resilient(self, label: str, line: Record) -> None:
        """Record a resilience line (other work on the box skews every figure: say how much)."""
        extra = {"phase": "resilience", "label": label, "loadavg_1m": os.getloadavg()[0]}
        self.record(label, line["scenario"], line | extra)

    def resilience_h2load(self, template: str, label: str) -> None:
        """``h2load -D 1`` runs survived, of 10; a dead or hung server is replaced."""
        start = partial(self.running, template, RESILIENCE_TTFT_MS, RESILIENCE_ITL_MS)
        line = resilience.h2load_goaway(start)
        self.resilient(label, line)

    def resilience_storm(self, template: str, label: str) -> None:
        """RSS around 1000 streams that each read a few events, then disconnect."""
        with self.running(template, RESILIENCE_TTFT_MS, RESILIENCE_ITL_MS) as server:
            line = resilience.disconnect_storm(server, self.args.settle_s)
        self.resilient(label, line)

    def resilience_burst(self, template: str, label: str) -> None:
        """10,000 connections at once, one ``GET /health`` each."""
        # The server inherits the raised open-file limit, as it would from a tuned shell.
        resilience.raise_nofile(resilience.BURST_CONNECTIONS + 256)
        with self.running(template, 0.0, 0.0) as server:
            line = resilience.connection_burst(server)
        self.resilient(label, line)

    def resilience_inputs(self, template: str, label: str) -> None:
        """Abusive requests on raw sockets, against a server with keys and a body timeout."""
        flags = ["--api-keys", bad_inputs.API_KEY]
        flags += ["--max-body-bytes", str(bad_inputs.MAX_BODY_BYTES)]
        timeout = ["--body-timeout-s", f"{BODY_TIMEOUT_S:g}"]
        note: Record = {}
        try:  # the server may not know --body-timeout-s yet: say so, and go on without it
            with self.running(template, 0.0, 0.0, extra=flags + timeout):
                body_timeout_s: float | None = BODY_TIMEOUT_S
        except BenchError as error:
            if "--body-timeout-s" not in str(error):
                raise
            body_timeout_s = None
            note["body_timeout_flag"] = "refused by the server: " + tail(str(error), 1)
            self.problems.append(f"{label} bad_inputs: the server refuses --body-timeout-s")
        else:
            flags += timeout
        start = partial(self.running, template, 0.0, 0.0, extra=flags)
        line = bad_inputs.bad_inputs(start, body_timeout_s)
        self.resilient(label, line | note)

    def rss_after(self, server: Server, label: str, key: str, compare: Compare) -> None:
        time.sleep(1.0)  # let the burst's connections close and its tasks end
        (line,) = self.run(server, label, "rss")
        self.record(label, key, line | {"scenario": key, "phase": "pace"}, compare)

    def attempt(self, what: str, phase: Callable[..., None], *args: Any) -> None:
        """Run one phase; a failure becomes an ``error`` line and a problem, not an abort."""
        try:
            if time.monotonic() > self.deadline:
                raise BenchError(f"skipped: the time budget ({self.args.budget:g} s) is spent")
            phase(*args)
        except (BenchError, engine.EngineBenchError) as error:
            self.failed_phases.append(what)
            lines = str(error).strip().splitlines()  # the first line says what, the last why
            self.problems.append(f"{what}: {lines[0]}" + (f" ... {lines[-1]}" if lines[1:] else ""))
            print(f"bench: {what} failed: {error}", file=sys.stderr)
            self.emit({"scenario": "error", "label": what, "error": str(error)})

    def get(self, label: str, key: str, name: str) -> Any:
        return self.records.get((label, key), {}).get(name)

    def summary(self, wall_s: float) -> Record:
        get = self.get
        s: Record = {"scenario": "summary", "quick": self.args.quick, "wall_s": round(wall_s, 1)}
        if self.args.server_cmd != TRIO_MOCK_CMD:
            s["server_cmd"] = self.args.server_cmd
        s |= {
            "rps": get(MOCK, "rps", "rps"),
            "rps_vs_baseline": get(MOCK, "rps", "rps_vs_baseline"),
            "rps_p50_ms": get(MOCK, "rps", "p50_ms"),
            "rps_p99_ms": get(MOCK, "rps", "p99_ms"),
            "tokens_per_s": get(MOCK, "stream", "tokens_per_s"),
            "tokens_per_s_vs_baseline": get(MOCK, "stream", "tokens_per_s_vs_baseline"),
            "rps_vs_quart": get(MOCK, "rps", "rps_vs_quart"),
            "tokens_per_s_vs_quart": get(MOCK, "stream", "tokens_per_s_vs_quart"),
        }
        errors = ("ttft_err_p50_ms", "ttft_err_p99_ms", "itl_err_p50_ms", "itl_err_p99_ms")
        for n in (100, 1000):
            for name in (*errors, "itl_p99_ms"):
                s[f"pace{n}_{name}"] = get(MOCK, f"pace{n}", name)
            for name in ("stretch_p50", "stretch_p99", "stretch_p99_vs_baseline"):
                s[f"pace{n}_{name}"] = get(MOCK, f"pace{n}", name)
        closed = f"closed{CLOSED_CLIENTS}"
        for name in ("requests_per_s", *errors, "itl_p99_ms", "failed"):
            s[f"{closed}_{name}"] = get(MOCK, closed, name)
        s["capacity"] = capacity_summary(get)
        s["lag"] = {  # the server's reading of its lateness beside the client's
            key: {name: get(MOCK, key, name) for name in LAG_KEYS}
            for key in ("pace100", "pace1000", closed)
        }
        load = f"load{LOAD_STREAMS}"
        s |= {
            f"{load}_itl_p50_ms": get(MOCK, load, "itl_p50_ms"),
            f"{load}_itl_p99_ms": get(MOCK, load, "itl_p99_ms"),
            f"{load}_modelled_itl_ms": get(MOCK, load, "modelled_itl_ms"),
            f"{load}_itl_vs_modelled": get(MOCK, load, "observed_itl_p50_vs_modelled"),
            f"{load}_itl_p99_vs_modelled": get(MOCK, load, "observed_itl_p99_vs_modelled"),
            f"{load}_itl_p50_vs_unloaded": get(MOCK, load, "itl_p50_ms_vs_unloaded"),
            f"{load}_decode_itl_ms": get(MOCK, load, "decode_itl_ms"),
            f"{load}_decode_itl_vs_modelled": get(MOCK, load, "decode_itl_vs_modelled"),
            f"{load}_decode_itl_vs_unloaded": get(MOCK, load, "decode_itl_vs_unloaded"),
        }
        idle, after = get(MOCK, "rss_idle", "rss_mib"), get(MOCK, "rss_after", "rss_mib")
        after_repeat = get(MOCK, "rss_after_repeat", "rss_mib")
        s |= {
            "rss_idle_mib": idle,
            "rss_idle_vs_baseline": get(MOCK, "rss_idle", "rss_mib_vs_baseline"),
            "rss_peak_mib": get(MOCK, "pace1000", "rss_peak_mib"),
            "rss_after_mib": after,
            "rss_after_repeat_mib": after_repeat,
            "rss_kept_after_burst_mib": difference(after, idle),
            "rss_growth_second_burst_mib": difference(after_repeat, after),
            "endpoints_rps": {
                name: get(MOCK, f"endpoint_{name}", "rps") for name in ENDPOINT_BODIES
            },
            "workers2_rps_vs_1worker": get(MOCK_W2, "rps", "rps_vs_1worker"),
            "workers2_tokens_per_s_vs_1worker": get(MOCK_W2, "stream", "tokens_per_s_vs_1worker"),
            "shared": {
                "rps_plain_vs_previous": get(MOCK, "shared_plain", "rps_vs_previous"),
                "cpu_plain_vs_previous": get(
                    MOCK, "shared_plain", "server_cpu_us_per_request_vs_previous"
                ),
                **{
                    f"{figure}_{name}_vs_plain": get(MOCK, f"shared_{name}", f"{key}_vs_plain")
                    for name in SHARED_KNOBS
                    if name != "plain"
                    for figure, key in (("rps", "rps"), ("cpu", "server_cpu_us_per_request"))
                },
            },
            "baseline": reference_summary(get, BASELINE),  # the bare ASGI callable
            "quart": reference_summary(get, QUART),
        }
        h2, storm = "h2load_goaway", "disconnect_storm"
        burst, inputs = "connection_burst", "bad_inputs"
        s["resilience"] = {
            "h2load_goaway_survived": get(MOCK, h2, "survived_of"),
            "storm_rss_idle_mib": get(MOCK, storm, "rss_idle_mib"),
            "storm_rss_peak_mib": get(MOCK, storm, "rss_peak_mib"),
            "storm_rss_after_mib": get(MOCK, storm, "rss_after_mib"),
            "storm_settle_s": get(MOCK, storm, "settle_s"),
            "burst_served": get(MOCK, burst, "served"),
            "burst_connections": get(MOCK, burst, "connections"),
            "burst_listen_overflows": get(MOCK, burst, "listen_overflows"),
            "bad_inputs_tried": get(MOCK, inputs, "tried"),
            "bad_inputs_refused_properly": get(MOCK, inputs, "refused_properly"),
        }
        s["targets"] = {  # DESIGN.md, one worker; None when not measured
            "rps>=2500": at_least(s["rps"], 2500),
            "tokens_per_s>=60000": at_least(s["tokens_per_s"], 60000),
            "pace100_itl_err_p99<1ms": below(s["pace100_itl_err_p99_ms"], 1.0),
            "pace100_ttft_err_p99<2ms": below(s["pace100_ttft_err_p99_ms"], 2.0),
            "pace1000_stretch_p99<=3.7": at_least(3.7, s["pace1000_stretch_p99"]),
            "rss_idle<100mib": below(idle, 100.0),
            "workers2_rps>=1.7x": at_least(s["workers2_rps_vs_1worker"], 1.7),
            # issue 15: survive every h2load -D run; RSS back within 20 MB of idle after a storm
            "h2load_goaway_survived_all": equal(get(MOCK, h2, "survived"), get(MOCK, h2, "runs")),
            "storm_rss_after<=idle+20mib": get(MOCK, storm, "rss_kept_within_20mib"),
            "bad_inputs_all_refused": equal(
                s["resilience"]["bad_inputs_refused_properly"], s["resilience"]["bad_inputs_tried"]
            ),
        }
        cap = s["capacity"]
        s["issue16_targets"] = {  # one worker unless named; None when not measured
            "rps>=0.9x_bare_asgi": at_least(s["rps_vs_baseline"], 0.9),
            "pace100_ttft_err_p99<=80ms": at_most(s["pace100_ttft_err_p99_ms"], 80.0),
            "pace100_itl_p99<=12ms": at_most(s["pace100_itl_p99_ms"], 12.0),
            f"{closed}_ttft_err_p50<=10ms": at_most(s[f"{closed}_ttft_err_p50_ms"], 10.0),
            f"{closed}_ttft_err_p99<=50ms": at_most(s[f"{closed}_ttft_err_p99_ms"], 50.0),
            "capacity_burst>=100": at_least(cap["burst_1worker"], 100),
            "capacity_closed>=150": at_least(cap["closed_1worker"], 150),
            "capacity_burst_2workers>=1.8x": at_least(cap["burst_2workers_vs_1"], 1.8),
            "capacity_closed_2workers>=1.8x": at_least(cap["closed_2workers_vs_1"], 1.8),
        }
        s["skipped"] = self.skipped
        s["problems"] = self.problems
        return s


LAG_KEYS = (
    "server_lag_p50_ms",
    "server_lag_p99_ms",
    "server_lag_mean_ms",
    "server_lag_writes",
    "late_p50_ms",
    "late_p99_ms",
    "late_mean_ms",
    "ttft_err_p50_ms",
    "ttft_err_p99_ms",
    "itl_err_p50_ms",
    "itl_err_p99_ms",
)


def reference_summary(get: Callable[[str, str, str], Any], label: str) -> Record:
    """A reference server's key figures, for the summary."""
    closed = f"closed{CLOSED_CLIENTS}"
    return {
        "rps": get(label, "rps", "rps"),
        "tokens_per_s": get(label, "stream", "tokens_per_s"),
        "pace100_ttft_err_p99_ms": get(label, "pace100", "ttft_err_p99_ms"),
        "pace100_itl_p99_ms": get(label, "pace100", "itl_p99_ms"),
        "pace1000_stretch_p99": get(label, "pace1000", "stretch_p99"),
        f"{closed}_ttft_err_p50_ms": get(label, closed, "ttft_err_p50_ms"),
        f"{closed}_ttft_err_p99_ms": get(label, closed, "ttft_err_p99_ms"),
        "rss_idle_mib": get(label, "rss_idle", "rss_mib"),
    }


def capacity_summary(get: Callable[[str, str, str], Any]) -> Record:
    """Streams held per mode and worker count, and two workers over one."""
    s: Record = {}
    for mode in ("burst", "closed"):
        key = f"capacity_{mode}"
        one, two = get(MOCK, key, "held_n"), get(MOCK_W2, key, "held_n")
        s |= {f"{mode}_1worker": one, f"{mode}_2workers": two}
        s[f"{mode}_2workers_vs_1"] = ratio(two, one)
        s[f"{mode}_bare_asgi"] = get(BASELINE, key, "held_n")
        s[f"{mode}_1worker_vs_baseline"] = get(MOCK, key, "held_n_vs_baseline")
        s[f"{mode}_resolved"] = all(
            get(label, key, "resolved") is not False for label in (BASELINE, MOCK, MOCK_W2)
        )
    return s


def wrk_summary(wrk: str, url: str, seconds: float, env: dict[str, str], bench_dir: Path) -> Record:
    """One wrk run with ``chat.lua`` (path and body from the environment)."""
    cmd = [wrk, "-t1", "-c64", f"-d{int(seconds)}s", "--latency", "-s"]
    cmd += [str(bench_dir / "chat.lua"), url]
    try:
        out = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False
        ).stdout
    except subprocess.TimeoutExpired as error:
        raise BenchError(f"wrk {url}: timed out") from error
    line = next((x for x in out.splitlines() if x.startswith("JSON ")), None)
    if line is None:
        raise BenchError(f"wrk printed no summary:\n{tail(out)}")
    summary: Record = json.loads(line[5:])
    return summary


def modelled_itl_ms(itl_ms: float, factor: float, streams: int) -> float:
    """The ITL while ``streams`` streams decode at once: ``itl_ms * (1 + factor * (D - 1))``."""
    return round(itl_ms * (1 + factor * (streams - 1)), 3)


def decode_itl_ms(line: Record) -> float | None:
    """The mean ITL of a median stream: (median end - median TTFT) / (tokens - 1).

    A median stream's end is the schedule's end plus the median drift. The two medians may be of
    different streams, so this is an estimate, but it holds where the ITL percentiles do not.
    """
    tokens, ttft, drift = (line.get(k) for k in ("tokens_p50", "ttft_p50_ms", "end_drift_p50_ms"))
    if not tokens or tokens < 2 or ttft is None or drift is None:
        return None
    end_ms = line["target_ttft_ms"] + (tokens - 1) * line["target_itl_ms"] + drift
    itl_ms: float = round((end_ms - ttft) / (tokens - 1), 3)
    return itl_ms


def stretch(line: Record) -> Record:
    """A paced stream's observed end over its scheduled end, at p50 and p99 (1.0 = on time)."""
    tokens = line.get("tokens_p50")
    drifts = {p: line.get(f"end_drift_{p}_ms") for p in ("p50", "p99")}
    if not tokens:
        return {f"stretch_{p}": None for p in drifts}
    scheduled_ms = line["target_ttft_ms"] + (tokens - 1) * line["target_itl_ms"]
    return {
        f"stretch_{p}": None if d is None else round((scheduled_ms + d) / scheduled_ms, 3)
        for p, d in drifts.items()
    }


def ratio(value: Any, reference: Any) -> float | None:
    numbers = isinstance(value, int | float) and isinstance(reference, int | float)
    return round(value / reference, 3) if numbers and reference else None


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


def at_least(value: float | None, low: float | None) -> bool | None:
    return None if value is None or low is None else value >= low


def equal(a: Any, b: Any) -> bool | None:
    return None if a is None or b is None else a == b


def at_most(value: float | None, high: float) -> bool | None:
    return None if value is None else value <= high


def below(value: float | None, high: float) -> bool | None:
    """``|value| < high``: an error is off the schedule by its size, early or late."""
    return None if value is None else abs(value) < high


def phase_list(text: str) -> tuple[str, ...]:
    """``--only``'s value: known phase names, comma-separated."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if unknown := [name for name in names if name not in PHASES]:
        raise argparse.ArgumentTypeError(f"unknown phase {', '.join(unknown)} (of {PHASES})")
    return names


@contextlib.contextmanager
def checkout(ref: str | None) -> Generator[str | None]:
    """The server command for commit ``ref``'s ``src/``, unpacked in a temporary folder
    (None without a ref): what ``--against`` compares the working tree with."""
    if ref is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-against-") as folder:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"],
            capture_output=True,
            check=False,
        )
        if archive.returncode:
            raise SystemExit(f"bench: --against {ref}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        source = shlex.quote(str(Path(folder) / "src"))
        yield f"env PYTHONPATH={source} " + TRIO_MOCK_CMD


def port_range(text: str) -> range:
    """``--ports``'s value: ``LOW-HIGH``, both included."""
    low, _, high = text.partition("-")
    try:
        return range(int(low), int(high or low) + 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LOW-HIGH, got {text!r}") from None


def missing_tools(phases: Sequence[str]) -> dict[str, str]:
    """The phases whose system tools are not on PATH, each with a note of what to install.

    wrk and h2load are not Python packages, so a fresh clone's ``nox -s bench`` may lack them:
    the phases that need them are skipped (and named in the summary), the rest still run.
    """
    skipped = {}
    for phase in phases:
        if absent := [(t, k) for t, k in TOOLS.get(phase, []) if not shutil.which(t)]:
            tools = " and ".join(t for t, _ in absent)
            packages = " ".join(k for _, k in absent)
            skipped[phase] = f"{tools} not on PATH (Debian: apt-get install {packages})"
    return skipped


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="3 s runs, no repeat, no --workers 2")
    ap.add_argument("--out", type=Path, help="also append every JSON line to this file")
    ap.add_argument(
        "--only",
        type=phase_list,
        default=PHASES,
        metavar="PHASE,...",
        help=f"run only these phases, of {','.join(PHASES)} (default: all)",
    )
    ap.add_argument(
        "--settle-s",
        type=float,
        help=f"resilience: wait after the disconnect storm (default {SETTLE_S:g}, --quick "
        f"{QUICK_SETTLE_S:g})",
    )
    ap.add_argument(
        "--against",
        metavar="REF",
        help="shared: also run this git commit's trio-mock (its src/, checked out in a"
        " temporary folder) against the current one",
    )
    ap.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--bench-dir", type=Path, default=HERE, help=argparse.SUPPRESS)
    ap.add_argument("--server-cmd", default=TRIO_MOCK_CMD, help=argparse.SUPPRESS)
    ap.add_argument("--baseline-cmd", default=BASELINE_CMD, help=argparse.SUPPRESS)
    ap.add_argument("--quart-cmd", default=QUART_CMD, help=argparse.SUPPRESS)
    ap.add_argument("--ports", type=port_range, default=(), help=argparse.SUPPRESS)
    args = ap.parse_args()
    phases: tuple[str, ...] = args.only
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.settle_s is None:
        args.settle_s = QUICK_SETTLE_S if args.quick else SETTLE_S
    skipped = missing_tools(phases)
    phases = tuple(phase for phase in phases if phase not in skipped)
    for phase, why in skipped.items():
        print(f"bench: skipping the {phase} phase: {why}", file=sys.stderr)
    if args.budget is None:
        args.budget = 0.0
        if set(phases) - {"resilience", "capacity", "engine"}:
            args.budget += QUICK_BUDGET_S if args.quick else BUDGET_S
        if "capacity" in phases:
            args.budget += QUICK_CAPACITY_BUDGET_S if args.quick else CAPACITY_BUDGET_S
        if "resilience" in phases:
            args.budget += QUICK_RESILIENCE_BUDGET_S if args.quick else RESILIENCE_BUDGET_S
        if "engine" in phases:
            args.budget += QUICK_ENGINE_BUDGET_S if args.quick else ENGINE_BUDGET_S
    runner = ("run.py", "loadgen.py", "chat.lua")
    if set(phases) - {"resilience"} and not all((args.bench_dir / n).is_file() for n in runner):
        raise SystemExit(f"bench: {', '.join(runner)} not found in {args.bench_dir}")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # children inherit it
    if soft != resource.RLIM_INFINITY and soft < 4096:  # 1000 streams: a socket each side
        high = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (high, hard))

    started = time.monotonic()
    bench = Bench(args)
    bench.skipped = [f"{phase}: {why}" for phase, why in skipped.items()]
    mock, base, quart = args.server_cmd, args.baseline_cmd, args.quart_cmd
    vs_base = [(BASELINE, "_vs_baseline")]
    vs_both = [*vs_base, (QUART, "_vs_quart")]
    if "throughput" in phases:
        bench.attempt("bare-asgi throughput", bench.throughput, base, BASELINE, 1, ())
        bench.attempt("quart throughput", bench.throughput, quart, QUART, 1, vs_base)
        bench.attempt("trio-mock throughput", bench.throughput, mock, MOCK, 1, vs_both)
    if "pace" in phases:
        bench.attempt("bare-asgi pace", bench.pace, base, BASELINE, (), False)
        bench.attempt("quart pace", bench.pace, quart, QUART, vs_base, False)
        bench.attempt("trio-mock pace", bench.pace, mock, MOCK, vs_both, not args.quick)
    if "capacity" in phases:
        bench.attempt("bare-asgi capacity", bench.capacity, base, BASELINE, 1, ())
        bench.attempt("trio-mock capacity", bench.capacity, mock, MOCK, 1, vs_base)
    if "capacity" in phases and "{workers}" in mock:
        vs_one = [(MOCK, "_vs_1worker")]
        bench.attempt("trio-mock-w2 capacity", bench.capacity, mock, MOCK_W2, 2, vs_one)
    elif "capacity" in phases:
        bench.skipped.append("capacity with 2 workers: --server-cmd has no {workers}")
    if "endpoints" in phases:
        bench.attempt("trio-mock endpoints", bench.endpoints, mock, MOCK)
    load_cmd = mock + LOAD_ARGS if mock == TRIO_MOCK_CMD else mock
    if "load" in phases and "{itl_load_factor}" in load_cmd:
        bench.attempt("trio-mock load", bench.load, load_cmd, MOCK)
    elif "load" in phases:
        print(
            "bench: --server-cmd has no {itl_load_factor}: skipping the load phase", file=sys.stderr
        )
    if "replay" in phases and mock == TRIO_MOCK_CMD:
        bench.attempt("trio-mock replay", bench.replay, mock, MOCK)
    elif "replay" in phases:
        bench.skipped.append("replay: --server-cmd is not trio-mock's own command")
    if "workers2" in phases and not args.quick and "{workers}" in mock:
        vs_1worker = [(MOCK, "_vs_1worker")]
        bench.attempt("trio-mock-w2 throughput", bench.throughput, mock, MOCK_W2, 2, vs_1worker)
    elif "workers2" in phases and not args.quick:
        print("bench: --server-cmd has no {workers}: skipping --workers 2", file=sys.stderr)
    if "shared" in phases and mock == TRIO_MOCK_CMD:
        with checkout(args.against) as previous:
            bench.attempt("trio-mock shared", bench.shared, mock, MOCK, previous)
    elif "shared" in phases:
        bench.skipped.append("shared: --server-cmd is not trio-mock's own command")
    if "engine" in phases and mock == TRIO_MOCK_CMD:
        bench.attempt("trio-mock engine", engine.phase, bench, mock, MOCK)
    elif "engine" in phases:
        bench.skipped.append("engine: --server-cmd is not trio-mock's own command")
    if "resilience" in phases:  # last: abused servers are fresh ones, but the box may not be
        bench.attempt("trio-mock resilience h2load", bench.resilience_h2load, mock, MOCK)
        bench.attempt("trio-mock resilience storm", bench.resilience_storm, mock, MOCK)
        bench.attempt("trio-mock resilience burst", bench.resilience_burst, mock, MOCK)
        bench.attempt("trio-mock resilience inputs", bench.resilience_inputs, mock, MOCK)
    bench.emit(bench.summary(time.monotonic() - started))
    if bench.failed_phases:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
