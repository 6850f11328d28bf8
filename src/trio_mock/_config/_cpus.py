"""``--workers auto``: how many CPUs this process may really use.

``os.cpu_count()`` counts the machine's CPUs, but a container or ``taskset`` often gives a
process fewer: the affinity mask limits which CPUs it may run on, and a cgroup CPU quota
(``docker --cpus``, Kubernetes CPU limits) how much time it gets on them. A worker per CPU
beyond either only adds memory and contention. This module reads, never starts anything.
"""

from __future__ import annotations

import math
import os
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota
    (rounded up, so 1.5 CPUs make 2 workers); at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux (macOS has no affinity masks)
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, membership: str | None = None) -> float | None:
    """CPUs' worth of time the process's cgroups allow (quota / period), the tightest
    limit along the path to the root; None when no cgroup sets one.

    Args:
      root: where the cgroup file systems are mounted.
      membership: the text of ``/proc/self/cgroup`` (read when None). Both cgroup v2
        (``0::/path``, ``cpu.max``) and v1 (``N:cpu,cpuacct:/path``, ``cpu.cfs_*``).
    """
    if membership is None:
        try:
            membership = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    limits: list[float] = []
    for line in membership.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and not controllers:
            limits += (q for d in ancestors(root, path) if (q := v2_quota(d)) is not None)
        elif "cpu" in controllers.split(","):
            base = root / controllers
            limits += (q for d in ancestors(base, path) if (q := v1_quota(d)) is not None)
    return min(limits, default=None)


def ancestors(base: Path, path: str) -> list[Path]:
    """The cgroup's directory and each parent's up to ``base``. In a container the path
    is often the host's, which does not exist there; its root is then the container's."""
    relative = PurePosixPath(path.strip() or "/").relative_to("/")
    return [base / part for part in (relative, *relative.parents)]


def v2_quota(directory: Path) -> float | None:
    """``cpu.max`` holds ``$MAX $PERIOD``; ``max`` means no limit."""
    try:
        quota, period = (directory / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None
    return int(quota) / int(period)


def v1_quota(directory: Path) -> float | None:
    """``cpu.cfs_quota_us`` is -1 when unlimited."""
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
