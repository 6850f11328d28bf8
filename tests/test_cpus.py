"""``--workers auto``: the CPU count (affinity capped by a cgroup quota) and the knob.

The cgroup readings run on fake ``/sys/fs/cgroup`` trees, v2 and v1, since the machine
running the tests may have any limit or none. Starting a server with ``auto`` is in
test_entrypoints.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from trio_mock._app._cli import load_settings
from trio_mock._config import _cpus, _settings
from trio_mock._config._cpus import cgroup_cpu_quota, usable_cpus
from trio_mock._config._knobs import SettingsError
from trio_mock._config._settings import Settings


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_v2_takes_the_tightest_quota_on_the_path_to_the_root(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "max 100000\n")
    write(tmp_path / "a" / "cpu.max", "400000 100000\n")
    write(tmp_path / "a" / "b" / "cpu.max", "150000 100000\n")
    (tmp_path / "a" / "b" / "c").mkdir()  # no limit of its own
    assert cgroup_cpu_quota(tmp_path, "0::/a/b/c\n") == 1.5


def test_v2_in_a_container_reads_the_root_when_the_host_path_is_absent(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "200000 100000\n")
    assert cgroup_cpu_quota(tmp_path, "0::/kubepods/pod1/abc\n") == 2.0


def test_v1_reads_the_cpu_controller(tmp_path: Path) -> None:
    cpu = tmp_path / "cpu,cpuacct"
    write(cpu / "cpu.cfs_quota_us", "-1\n")
    write(cpu / "cpu.cfs_period_us", "100000\n")
    write(cpu / "docker" / "x" / "cpu.cfs_quota_us", "50000\n")
    write(cpu / "docker" / "x" / "cpu.cfs_period_us", "100000\n")
    membership = "5:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n0::/\n"
    assert cgroup_cpu_quota(tmp_path, membership) == 0.5


@pytest.mark.parametrize(
    ("files", "membership"),
    [
        ({"cpu.max": "max 100000\n"}, "0::/\n"),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n"),
        ({"cpu.max": "garbage\n"}, "0::/\n"),
        ({}, "0::/\n"),
        ({"cpu.max": "100000 100000\n"}, "not a cgroup line\n"),
    ],
    ids=["v2-max", "v1-unlimited", "unreadable", "no-files", "no-membership"],
)
def test_no_quota(tmp_path: Path, files: dict[str, str], membership: str) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    assert cgroup_cpu_quota(tmp_path, membership) is None


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [(4, None, 4), (4, 1.5, 2), (4, 0.2, 1), (2, 8.0, 2), (1, None, 1)],
)
def test_usable_cpus_is_the_affinity_capped_by_the_quota_rounded_up(
    monkeypatch: pytest.MonkeyPatch, affinity: int, quota: float | None, expected: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(affinity)), raising=False)
    monkeypatch.setattr(_cpus, "cgroup_cpu_quota", lambda: quota)
    assert usable_cpus() == expected


def test_this_machine_has_at_least_one() -> None:
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


def test_auto_on_every_surface(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_settings, "usable_cpus", lambda: 3)
    config = tmp_path / "mock.toml"
    config.write_text('[server]\nworkers = "auto"\n')
    assert load_settings(["--workers", "auto"]).server.workers == 3
    assert Settings.load(env={"TRIO_MOCK_WORKERS": "Auto"}).server.workers == 3
    assert Settings.load(env={}, config=config).server.workers == 3
    assert Settings.load(cli={"workers": "5"}, env={}).server.workers == 5  # numbers still


@pytest.mark.parametrize("word", ["many", "", "2.5"])
def test_other_words_name_auto_in_the_error(word: str) -> None:
    with pytest.raises(SettingsError, match=r"--workers .*expected an integer or auto"):
        Settings.load(cli={"workers": word}, env={})
