"""Idle memory of trio-mock's whole process tree (supervisor and workers), per process.

    python bench/idle_memory.py [trio-mock flags...]        e.g. --workers 2
    REQUESTS=300 python bench/idle_memory.py --workers 2     after 300 chat requests

Starts ``python -m trio_mock`` from this checkout's ``src`` on a free port, waits until it
answers and ``SETTLE`` seconds (3) more, then prints each process's VmRSS, PSS (shared
pages divided among the processes sharing them: the fair measure for forked workers) and
private pages, and the totals. RSS counts a shared page in every process that maps it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def tree(root: int) -> list[int]:
    """``root`` and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found = [root]
    i = 0
    while i < len(found):
        found += children.get(found[i], [])
        i += 1
    return found


def mib(pid: int, source: str, *fields: str) -> float:
    try:
        text = Path(f"/proc/{pid}/{source}").read_text()
    except OSError:
        return 0.0
    kib = (re.search(rf"^{f}:\s+(\d+) kB", text, re.MULTILINE) for f in fields)
    return sum(int(m.group(1)) for m in kib if m) / 1024


def main() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "trio_mock", "--port", str(port), *sys.argv[1:]],
        env=os.environ | {"PYTHONPATH": str(SRC)},
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        started = time.monotonic()
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1).read()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() - started > 60:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.1)
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}
        chat = urllib.request.Request(
            f"{url}/v1/chat/completions",
            json.dumps(body).encode(),
            {"content-type": "application/json"},
        )
        for _ in range(int(os.environ.get("REQUESTS", "0"))):
            urllib.request.urlopen(chat, timeout=10).read()
        time.sleep(float(os.environ.get("SETTLE", "3")))
        totals = [0.0, 0.0, 0.0]
        for pid in tree(server.pid):
            row = (
                mib(pid, "status", "VmRSS"),
                mib(pid, "smaps_rollup", "Pss"),
                mib(pid, "smaps_rollup", "Private_Clean", "Private_Dirty"),
            )
            totals = [t + r for t, r in zip(totals, row, strict=True)]
            print(f"  pid {pid}: RSS {row[0]:6.1f}  PSS {row[1]:6.1f}  private {row[2]:6.1f} MiB")
        print(f"{' '.join(sys.argv[1:]) or '(defaults)'}: RSS {totals[0]:.1f}, "
              f"PSS {totals[1]:.1f}, private {totals[2]:.1f} MiB in all")  # fmt: skip
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
