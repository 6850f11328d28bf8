"""Files watched while serving: ``--config`` and ``--scripts-file`` (a Kubernetes ConfigMap).

Once a second the watch compares each file's inode, size and modification time with what
it last applied (a ConfigMap update swaps a symlink: a new inode). A changed config file
is loaded again with the same flags and environment, so their precedence holds, and only
the knobs its change changed are applied, as ``PATCH /_mock/config`` would apply them: a
knob read only at start-up is logged and left alone. A changed scripts file replaces the
rules. A file that cannot be read or holds a bad value is logged and the running state
kept. With ``--workers N`` only worker 0 watches, and its changes go through the
supervisor like any other, so every worker gets each one once.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import trio
from attrs import field, frozen

from .._config._knobs import SettingsError
from .._config._settings import KNOBS, Settings
from .._openai._errors import OpenAIError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ._control import Control

log = logging.getLogger("trio_mock")
WATCH_S = 1.0  # how often the files are looked at

Stamp = tuple[int, int, int] | None  # inode, size, mtime (ns); None: no such file now


@frozen
class Sources:
    """Where the start-up settings came from: what reloading the config file needs."""

    config: str | None = None  # the --config file (or TRIO_MOCK_CONFIG's)
    cli: Mapping[str, Any] = field(factory=dict)  # the knobs given as flags, which outrank the file

    def load(self) -> Settings:
        """The settings the start-up sources give now.

        Raises:
          SettingsError: the file cannot be read or holds a bad value.
        """
        return Settings.load(cli=self.cli, config=self.config)


def stamp(path: str) -> Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class Watch:
    """The watched files, and what was last applied from each."""

    def __init__(
        self,
        control: Control,
        sources: Sources,
        scripts: str | None,
        read_rules: Callable[[str], Any],
    ) -> None:
        """Args:
        read_rules: the rules in a scripts file, checked (``_serve._scripts.read_rules``:
          passed in, which keeps the CLI's import chain short); raises ValueError.
        """
        self.control = control
        self.read_rules = read_rules
        self.sources = sources
        self.scripts = scripts
        self.config_stamp = stamp(sources.config) if sources.config else None
        self.scripts_stamp = stamp(scripts) if scripts else None
        self.baseline: Settings | None = None  # what the config file gave when last applied
        if sources.config:
            try:
                self.baseline = sources.load()
            except SettingsError as error:  # changed since start-up: the next look says so
                log.warning("--config: %s", error)

    async def run(self) -> None:
        """Look at the files every ``WATCH_S``, until cancelled."""
        log.info(
            "watching %s for changes",
            " and ".join(p for p in (self.sources.config, self.scripts) if p),
        )
        while True:
            await trio.sleep(WATCH_S)
            await self.check()

    async def check(self) -> None:
        """Apply whichever file changed since it was last looked at."""
        config, scripts = self.sources.config, self.scripts
        if config and (now := stamp(config)) != self.config_stamp:
            self.config_stamp = now
            await self.apply_config(config)
        if scripts and (now := stamp(scripts)) != self.scripts_stamp:
            self.scripts_stamp = now
            await self.apply_scripts(scripts)

    async def apply_config(self, path: str) -> None:
        try:
            new = await trio.to_thread.run_sync(self.sources.load)
        except SettingsError as error:
            log.warning("config file %s not applied (the running settings stay): %s", path, error)
            return
        old = self.baseline if self.baseline is not None else self.control.live.settings
        changed = [k.name for k in KNOBS.values() if new.value(k.name) != old.value(k.name)]
        fixed = [name for name in changed if not KNOBS[name].live]
        if fixed:
            log.warning(
                "config file %s: %s read at start-up only; restart to change it (ignored)",
                path,
                ", ".join(fixed),
            )
        leaves = {name: new.value(name) for name in changed if KNOBS[name].live}
        if leaves:
            try:
                done, report = await self.control.configure(leaves)
            except (SettingsError, OpenAIError) as error:
                log.warning(
                    "config file %s not applied (the running settings stay): %s", path, error
                )
                return
            log.info("config file %s applied: %s%s", path, ", ".join(done.changed), failed(report))
        self.baseline = new

    async def apply_scripts(self, path: str) -> None:
        try:
            data = await trio.to_thread.run_sync(self.read_rules, path)
        except ValueError as error:
            log.warning("scripts file %s not applied (the running rules stay): %s", path, error)
            return
        try:
            added, report = await self.control.replace_scripts(data)
        except OpenAIError as error:
            log.warning("scripts file %s not applied: %s", path, error.message)
            return
        log.info("scripts file %s applied: %d rules%s", path, len(added), failed(report))


def failed(report: Any) -> str:
    """The workers that did not apply a change, for the log line ("" when all did)."""
    if report is None or not report.failed:
        return ""
    return "; not applied by " + ", ".join(f"worker {w} ({why})" for w, why in report.failed)
