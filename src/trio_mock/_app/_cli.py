"""``trio-mock``: flags generated from Settings, then serve until SIGINT or SIGTERM
(``trio-mock fit CASSETTE``: a profile fitted to a recording, ``_fit_cli``; ``trio-mock
ctl``: a change applied to every replica, ``_ctl``). The config and scripts files are
watched while serving (``_watch``).

Every knob gets a flag whose help names its default and environment variable. Bad
settings end start-up with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import typing
from collections.abc import Sequence
from functools import partial
from typing import Any

import trio

from .._config._knobs import ENV_PREFIX, SettingsError
from .._config._settings import KNOBS, Settings
from .._observe._logs import configure_logging
from .._openai._model import MockModel
from .._sim._tokens import TokenizerError, load_tokenizer
from .._version import __version__
from ._cassettes import replayed_cassette
from ._ctl import ctl_main
from ._fit_cli import fit_main
from ._running import serve
from ._server import raise_open_files_limit, wait_for_signal
from ._supervisor import supervise
from ._tokenizers import model_tokenizers
from ._watch import Sources

log = logging.getLogger("trio_mock")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trio-mock",
        description="An OpenAI-compatible LLM API simulator. Precedence: flags > "
        f"{ENV_PREFIX}* environment variables > --config file > defaults. The --config and "
        "--scripts-file files are watched while serving. Subcommands: `trio-mock fit "
        "CASSETTE`, `trio-mock ctl` (steer every replica; see its --help).",
        formatter_class=argparse.HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"trio-mock {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help=f"TOML file of settings (keys as below, with _ for -) [env: {ENV_PREFIX}CONFIG]",
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for k in KNOBS.values():
        group = groups.get(k.group) or groups.setdefault(
            k.group, parser.add_argument_group(f"{k.group} settings")
        )
        default = ",".join(k.default) if isinstance(k.default, tuple) else k.default
        help_text = f"{k.help} [default: {default}; env: {k.env}]".replace("%", "%%")
        if k.type is bool:
            group.add_argument(
                k.flag,
                dest=k.name,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            choices = (
                typing.get_args(k.type) if typing.get_origin(k.type) is typing.Literal else None
            )
            group.add_argument(
                k.flag,
                dest=k.name,
                metavar=metavar(k.type),
                choices=choices,
                default=argparse.SUPPRESS,
                help=help_text,
            )
    return parser


def settings_reference() -> str:
    """The README's settings table, generated from Settings so the docs cannot drift."""
    rows = ["| flag | environment | default | meaning |", "| --- | --- | --- | --- |"]
    for k in KNOBS.values():
        meaning = k.help if k.live else f"{k.help} (start-up only)"
        rows.append(f"| `{k.flag}` | `{k.env}` | {shown_default(k.default)} | {meaning} |")
    return "\n".join(rows) + "\n"


def shown_default(default: Any) -> str:
    if default is None:
        return "(none)"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, tuple):
        return f"`{','.join(default)}`"
    return f"`{default}`"


def metavar(tp: Any) -> str:
    if tp is int:
        return "N"
    if tp is float:
        return "X"
    if typing.get_origin(tp) is tuple:
        return "A,B,..."
    if typing.get_origin(tp) is typing.Literal:
        return "{" + ",".join(typing.get_args(tp)) + "}"
    return "TEXT"


def load_settings(argv: Sequence[str] | None = None) -> Settings:
    """Parse the command line and merge it with the environment and config file.

    Raises:
      SettingsError: a bad value; the message names the knob.
    """
    return load_sources(argv).load()


def load_sources(argv: Sequence[str] | None = None) -> Sources:
    """The command line's knobs and config file (``TRIO_MOCK_CONFIG``'s when no flag)."""
    args = vars(build_parser().parse_args(argv))
    config = args.pop("config", None) or os.environ.get(ENV_PREFIX + "CONFIG") or None
    return Sources(config, args)


def main(argv: Sequence[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["fit"]:  # a subcommand, so `trio-mock fit --help` is its own
        raise SystemExit(fit_main(args[1:]))
    if args[:1] == ["ctl"]:
        raise SystemExit(ctl_main(args[1:]))
    try:
        sources = load_sources(args)
        settings = sources.load()
        tokenizer = load_tokenizer(settings.output.tokenizer)
        # Each model's own tokenizer and its corpus, built now (shared with the app and any
        # forked worker), so a missing one is a one-line error before serving.
        model = MockModel(settings, tokenizer, tokenizers=model_tokenizers(settings.models))
        replayed_cassette(settings)  # a bad line stops start-up here, in one line
    except (SettingsError, TokenizerError) as error:
        detail = (
            str(error)
            if isinstance(error, SettingsError)
            else f"--tokenizer ({ENV_PREFIX}TOKENIZER): {error}"
        )
        print(f"trio-mock: error: {detail}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings)
    raise_open_files_limit()  # workers inherit it
    log.info(
        "trio-mock %s: tokenizer %s%s; output %s; ttft %g ms, itl %g ms; models %s%s",
        __version__,
        tokenizer.description,
        "".join(f"; {name}: {v.tokenizer.description}" for name, v in model.voices.items()),
        settings.output.output_mode,
        settings.latency.ttft_ms,
        settings.latency.itl_ms,
        ",".join(settings.models.models),
        " (any name accepted)" if settings.models.any_model else "",
    )
    if settings.server.workers > 1:
        try:
            status = supervise(settings, sources)
        except SettingsError as error:  # the scripts file, read once for all workers
            print(f"trio-mock: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        raise SystemExit(status)
    trio.run(partial(run_until_signal, settings, sources))


async def run_until_signal(settings: Settings, sources: Sources | None = None) -> None:
    async with trio.open_nursery() as nursery:
        run = partial(serve, settings, shutdown_trigger=wait_for_signal, watch=sources)
        binds = await nursery.start(run)
        # What start-up built (the corpus, the tokenizer, the app) lives as long as the
        # server: out of later collections, a full one of which would stall every stream.
        gc.collect()
        gc.freeze()
        log.info("serving on %s in one process (Ctrl+C to stop)", ", ".join(binds))
