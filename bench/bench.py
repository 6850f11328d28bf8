"""Benchmark trio-mock against a minimal Quart-Trio baseline: one JSON line per scenario.

    python bench/bench.py [--quick] [--out FILE]

Loopback only. Each server runs as a subprocess of this interpreter on a free port of
127.0.0.1; the driver waits for ``GET /health``, runs scenarios with the shared runner
(``../shared/bench/run.py``: wrk for ``rps``, ``loadgen.py`` for ``stream`` and ``pace``),
then stops the server (SIGTERM, then SIGKILL). Phases, each server measured fresh:

  1. baseline, zero latency:      rss, rps (64 connections), stream (64 streams)
  2. trio-mock, zero latency:     the same, each figure also as a ratio to the baseline
  3. baseline, TTFT 50 / ITL 10:  rss, pace at 100 and 1000 streams of 100 tokens, rss_after
  4. trio-mock, TTFT 50 / ITL 10: the same with ratios; without --quick, a second 1000-stream
                                  burst (pace_repeat, rss_after_repeat) to show no growth
  5. trio-mock --workers 2 (not with --quick): rss, rps, stream, ratios to one worker

``rss_after`` is read a second after the burst ends. ``stretch_p50``/``stretch_p99`` of a pace
line are the observed end of a stream over its scheduled end (1.0 = on time). The last line
is ``{"scenario": "summary", ...}``: key figures, ratios, the DESIGN.md targets and any
problems (failed requests, a server that would not start). The exit status is 1 if a phase
failed. The default run takes about 3 minutes, ``--quick`` (3 s runs, no phase 5) about one.

``--server-cmd`` (hidden) replaces the trio-mock command with a template using ``{python}``,
``{port}``, ``{ttft_ms}``, ``{itl_ms}`` and ``{workers}``; phase 5 needs ``{workers}``. E.g.
``--server-cmd "{python} ../shared/bench/trivial_server.py --port {port} --ttft-ms {ttft_ms}
--itl-ms {itl_ms}"``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Generator

Record = dict[str, Any]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED_BENCH = ROOT.parent / "shared" / "bench"
TRIO_MOCK_CMD = (
    "{python} -m trio_mock --host 127.0.0.1 --port {port} --ttft-ms {ttft_ms} --itl-ms {itl_ms}"
    " --workers {workers} --output-tokens-mean 1024"  # long replies: max_tokens sets the length
)
BASELINE_CMD = (
    "{python} " + shlex.quote(str(HERE / "baseline_app.py")) + " --host 127.0.0.1 --port {port}"
    " --ttft-ms {ttft_ms} --itl-ms {itl_ms}"
)
PACE_TTFT_MS, PACE_ITL_MS, PACE_TOKENS = 50.0, 10.0, 100
START_TIMEOUT_S = 60.0  # the server builds its corpus first
RATIO_KEYS = {  # per scenario, the figures that get a ``*_vs_baseline`` ratio
    "rss": ["rss_mib"],
    "rss_after": ["rss_mib"],
    "rps": ["rps", "p50_ms", "p99_ms"],
    "stream": ["tokens_per_s"],
    "pace": [
        "ttft_p50_ms",
        "ttft_p99_ms",
        "itl_p50_ms",
        "itl_p99_ms",
        "stretch_p50",
        "stretch_p99",
    ],
}


class BenchError(Exception):
    """A server or a client run failed; the message says which and shows its output."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: IO[bytes]) -> None:
    """Poll ``GET /health`` until it answers 200; fail if the server exits or never does."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback, no proxy
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            output = tail(log.read().decode(errors="replace"))
            raise BenchError(f"server exited with status {proc.returncode}:\n{output}")
        url = f"http://127.0.0.1:{port}/health"
        with contextlib.suppress(OSError), opener.open(url, timeout=1.0) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise BenchError(f"server not healthy after {START_TIMEOUT_S:g} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (its workers too), SIGKILL it after 5 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        print(f"bench: server {proc.pid} ignored SIGTERM, killing it", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):  # workers the supervisor left behind
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


class Server:
    """A running server: its base URL and the pid whose process tree holds its memory."""

    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid


@contextlib.contextmanager
def running(template: str, ttft_ms: float, itl_ms: float, workers: int = 1) -> Generator[Server]:
    """Start a server from ``template`` on a free port, yield it once healthy, then stop it."""
    port = free_port()
    cmd = shlex.split(
        template.format(
            python=shlex.quote(sys.executable),
            port=port,
            ttft_ms=f"{ttft_ms:g}",
            itl_ms=f"{itl_ms:g}",
            workers=workers,
        )
    )
    print(f"bench: starting {shlex.join(cmd)}", file=sys.stderr)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_healthy(proc, port, log)
            yield Server(f"http://127.0.0.1:{port}", proc.pid)
        finally:
            stop(proc)


class Bench:
    """Runs ``run.py`` against servers, annotates and prints its lines, keeps them for the summary."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_py = args.bench_dir / "run.py"
        self.records: dict[tuple[str, str], Record] = {}  # (label, key) -> line
        self.problems: list[str] = []
        self.failed_phases: list[str] = []

    def emit(self, record: Record) -> None:
        line = json.dumps(record)
        print(line, flush=True)
        if self.args.out:
            with open(self.args.out, "a") as f:
                f.write(line + "\n")

    def run(self, server: Server, label: str, scenarios: str, *extra: str) -> list[Record]:
        """Run ``run.py`` for ``scenarios`` and return its JSON lines."""
        cmd = [
            sys.executable,
            str(self.run_py),
            "--url",
            server.url,
            "--pid",
            str(server.pid),
            "--label",
            label,
            "--scenarios",
            scenarios,
            "--duration",
            f"{self.args.duration:g}",
            *extra,
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        except subprocess.TimeoutExpired as error:
            raise BenchError(f"run.py --scenarios {scenarios} timed out after 300 s") from error
        lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
        if done.returncode or not lines:
            output = tail(done.stdout + done.stderr)
            raise BenchError(
                f"run.py --scenarios {scenarios} failed ({done.returncode}):\n{output}"
            )
        return lines

    def record(self, label: str, key: str, line: Record, compare_to: str | None = None) -> None:
        """Annotate ``line`` (stretch, ratios to ``compare_to``'s same key), check it, emit it."""
        if line["scenario"].startswith("pace"):
            line |= stretch(line)
        reference = self.records.get((compare_to, key)) if compare_to else None
        if reference is not None:
            suffix = "_vs_baseline" if compare_to == "baseline" else f"_vs_{compare_to}"
            for name in RATIO_KEYS.get(line["scenario"], []):
                line[name + suffix] = ratio(line.get(name), reference.get(name))
        self.records[label, key] = line
        for name in ("failed", "non_2xx", "socket_errors"):
            if line.get(name):
                self.problems.append(f"{label} {key}: {name}={line[name]}")
        self.emit(line)

    def phase_throughput(
        self, template: str, label: str, workers: int, compare_to: str | None
    ) -> None:
        with running(template, 0.0, 0.0, workers) as server:
            for line in self.run(server, label, "rss,rps,stream"):
                self.record(label, line["scenario"], line | {"workers": workers}, compare_to)

    def phase_pace(self, template: str, label: str, compare_to: str | None, repeat: bool) -> None:
        pace = ["--ttft-ms", f"{PACE_TTFT_MS:g}", "--itl-ms", f"{PACE_ITL_MS:g}"]
        pace += ["--pace-tokens", str(PACE_TOKENS)]
        with running(template, PACE_TTFT_MS, PACE_ITL_MS) as server:
            lines = self.run(server, label, "rss,pace", *pace, "--pace-n", "100,1000")
            for line in lines:
                key = f"pace{line['streams']}" if line["scenario"] == "pace" else "rss"
                self.record(label, key, line, compare_to)
            self.record_rss_after(server, label, "rss_after", compare_to)
            if repeat:  # a second burst: memory kept after the first is not a leak, growth is
                for line in self.run(server, label, "pace", *pace, "--pace-n", "1000"):
                    self.record(label, "pace_repeat", line | {"scenario": "pace_repeat"})
                self.record_rss_after(server, label, "rss_after_repeat", None)

    def record_rss_after(
        self, server: Server, label: str, key: str, compare_to: str | None
    ) -> None:
        time.sleep(1.0)  # let the burst's connections close
        (line,) = self.run(server, label, "rss")
        self.record(label, key, line | {"scenario": key}, compare_to)

    def attempt(self, what: str, phase: Any, *args: Any) -> None:
        """Run one phase; a failure becomes an ``error`` line and a problem, not an abort."""
        try:
            phase(*args)
        except BenchError as error:
            self.failed_phases.append(what)
            self.problems.append(f"{what}: {str(error).splitlines()[0]}")
            print(f"bench: {what} failed: {error}", file=sys.stderr)
            self.emit({"scenario": "error", "label": what, "error": str(error)})

    def summary(self, wall_s: float) -> Record:
        def get(label: str, key: str, name: str) -> Any:
            return self.records.get((label, key), {}).get(name)

        mock = "trio-mock"
        s: Record = {
            "scenario": "summary",
            "quick": self.args.quick,
            "wall_s": round(wall_s, 1),
            "rps": get(mock, "rps", "rps"),
            "rps_vs_baseline": get(mock, "rps", "rps_vs_baseline"),
            "rps_p50_ms": get(mock, "rps", "p50_ms"),
            "rps_p99_ms": get(mock, "rps", "p99_ms"),
            "tokens_per_s": get(mock, "stream", "tokens_per_s"),
            "tokens_per_s_vs_baseline": get(mock, "stream", "tokens_per_s_vs_baseline"),
        }
        for n in (100, 1000):
            for name in ("ttft_err_p50_ms", "ttft_err_p99_ms", "itl_err_p50_ms", "itl_err_p99_ms"):
                s[f"pace{n}_{name}"] = get(mock, f"pace{n}", name)
            for name in ("stretch_p50", "stretch_p99", "stretch_p99_vs_baseline"):
                s[f"pace{n}_{name}"] = get(mock, f"pace{n}", name)
        s |= {
            "rss_idle_mib": get(mock, "rss", "rss_mib"),
            "rss_idle_vs_baseline": get(mock, "rss", "rss_mib_vs_baseline"),
            "rss_peak_mib": get(mock, "pace1000", "rss_peak_mib"),
            "rss_after_mib": get(mock, "rss_after", "rss_mib"),
            "rss_after_repeat_mib": get(mock, "rss_after_repeat", "rss_mib"),
            "rss_kept_mib": difference(
                get(mock, "rss_after", "rss_mib"), get(mock, "rss", "rss_mib")
            ),
            "rss_growth_mib": difference(
                get(mock, "rss_after_repeat", "rss_mib"), get(mock, "rss_after", "rss_mib")
            ),
            "workers2_rps_vs_1": get("trio-mock-w2", "rps", "rps_vs_trio-mock"),
            "workers2_tokens_per_s_vs_1": get(
                "trio-mock-w2", "stream", "tokens_per_s_vs_trio-mock"
            ),
            "baseline": {
                "rps": get("baseline", "rps", "rps"),
                "tokens_per_s": get("baseline", "stream", "tokens_per_s"),
                "pace1000_stretch_p99": get("baseline", "pace1000", "stretch_p99"),
                "rss_idle_mib": get("baseline", "rss", "rss_mib"),
            },
        }
        s["targets"] = {  # DESIGN.md; None when not measured
            "rps>=2500": at_least(s["rps"], 2500),
            "tokens_per_s>=60000": at_least(s["tokens_per_s"], 60000),
            "pace100_itl_err_p99<1ms": below(abs_or_none(s["pace100_itl_err_p99_ms"]), 1.0),
            "pace100_ttft_err_p99<2ms": below(abs_or_none(s["pace100_ttft_err_p99_ms"]), 2.0),
            "pace1000_stretch_p99<=3.7": at_least(3.7, s["pace1000_stretch_p99"]),
            "rss_idle<100mib": below(s["rss_idle_mib"], 100.0),
            "workers2_rps>=1.7x": at_least(s["workers2_rps_vs_1"], 1.7),
        }
        s["problems"] = self.problems
        return s


def stretch(line: Record) -> Record:
    """Observed end of a paced stream over its scheduled end, at p50 and p99 (1.0 = on time)."""
    tokens = line.get("tokens_p50")
    if not tokens:
        return {"stretch_p50": None, "stretch_p99": None}
    scheduled_ms = line["target_ttft_ms"] + (tokens - 1) * line["target_itl_ms"]
    return {
        f"stretch_{p}": None
        if line.get(f"end_drift_{p}_ms") is None
        else round((scheduled_ms + line[f"end_drift_{p}_ms"]) / scheduled_ms, 3)
        for p in ("p50", "p99")
    }


def ratio(value: Any, reference: Any) -> float | None:
    if (
        not isinstance(value, int | float)
        or not isinstance(reference, int | float)
        or not reference
    ):
        return None
    return round(value / reference, 3)


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


def abs_or_none(x: float | None) -> float | None:
    return None if x is None else abs(x)


def at_least(value: float | None, low: float | None) -> bool | None:
    return None if value is None or low is None else value >= low


def below(value: float | None, high: float) -> bool | None:
    return None if value is None else value < high


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="3 s runs, no --workers 2 phase")
    ap.add_argument("--out", type=Path, help="also append every JSON line to this file")
    ap.add_argument("--duration", type=float, help="seconds per rps/stream run (10; --quick 3)")
    ap.add_argument("--server-cmd", default=TRIO_MOCK_CMD, help=argparse.SUPPRESS)
    ap.add_argument("--baseline-cmd", default=BASELINE_CMD, help=argparse.SUPPRESS)
    ap.add_argument("--bench-dir", type=Path, default=SHARED_BENCH, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if not (args.bench_dir / "run.py").is_file() or not (args.bench_dir / "loadgen.py").is_file():
        raise SystemExit(
            f"bench: the shared runner is missing: expected run.py and loadgen.py in "
            f"{args.bench_dir} (the read-only ../shared/bench beside the project)"
        )
    if not shutil.which("wrk"):
        raise SystemExit("bench: wrk is not on PATH (apt-get install wrk)")

    started = time.monotonic()
    bench = Bench(args)
    mock, base = args.server_cmd, args.baseline_cmd
    bench.attempt("baseline", bench.phase_throughput, base, "baseline", 1, None)
    bench.attempt("trio-mock", bench.phase_throughput, mock, "trio-mock", 1, "baseline")
    bench.attempt("baseline pace", bench.phase_pace, base, "baseline", None, False)
    bench.attempt("trio-mock pace", bench.phase_pace, mock, "trio-mock", "baseline", not args.quick)
    if args.quick:
        pass
    elif "{workers}" not in mock:
        print("bench: --server-cmd has no {workers}: skipping --workers 2", file=sys.stderr)
    else:
        bench.attempt("trio-mock-w2", bench.phase_throughput, mock, "trio-mock-w2", 2, "trio-mock")
    bench.emit(bench.summary(time.monotonic() - started))
    if bench.failed_phases:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
