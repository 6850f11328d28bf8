"""The knob engine: one declaration per knob gives its CLI flag, environment variable, TOML
key, help, value check and parsing, so the surfaces cannot drift.

Generic: it knows attrs fields made with ``knob`` and the types they declare, not which
knobs exist (``_settings`` declares them).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any, Literal

import attrs
from attrs import field

ENV_PREFIX = "TRIO_MOCK_"


class SettingsError(ValueError):
    """A knob has a bad value; the message names the knob and the problem."""


def knob(
    default: Any,
    doc: str,
    check: Callable[[Any], str | None] | None = None,
    *,
    live: bool = True,
    word: Callable[[Any], Any] | None = None,
) -> Any:
    """Declare a knob: its default, its one-line help, and an optional value check.

    ``check`` returns a problem description, or None when the value is fine; it is not
    called for None (unset), which the knob's type allows or not. A number's check is a
    ``Range`` from ``_ranges``, with an upper bound too, shared with the per-request
    surfaces that set the same thing. ``live`` False: the knob is read at start-up only,
    so ``/_mock/config`` refuses to change it. ``word`` turns a raw value (a word such as
    ``auto``) into one of the knob's type before it is parsed; others pass through.
    """
    metadata = {"help": doc, "check": check, "live": live, "word": word}
    return field(default=default, metadata=metadata)


class Knob(typing.NamedTuple):
    """A leaf setting as the CLI, environment and docs see it."""

    group: str
    name: str
    type: Any
    default: Any
    help: str
    live: bool = True  # may change while serving
    word: Callable[[Any], Any] | None = None  # a word such as ``auto`` -> a value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


def knobs_of(settings: type) -> list[Knob]:
    """Every leaf knob of ``settings`` (an attrs class of attrs groups of ``knob`` fields),
    in declaration order."""
    hints = {
        name: typing.get_type_hints(group_cls)
        for name, group_cls in typing.get_type_hints(settings).items()
    }
    return [
        Knob(
            group,
            f.name,
            hints[group][f.name],
            f.default,
            f.metadata["help"],
            f.metadata["live"],
            f.metadata["word"],
        )
        for group, group_cls in typing.get_type_hints(settings).items()
        for f in attrs.fields(group_cls)
    ]


def parse_value(tp: Any, raw: Any) -> Any:
    """Convert ``raw`` (a string from the CLI or environment, or a TOML value) to ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.lower() in {"", "none", "null"}):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return parse_value(inner, raw)
    if origin is Literal:
        if raw not in args:
            raise ValueError(f"must be one of {', '.join(map(str, args))}, got {raw!r}")
        return raw
    if origin is tuple:
        items = [s.strip() for s in raw.split(",")] if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise TypeError(f"expected a list, got {raw!r}")
        return tuple(parse_value(args[0], item) for item in items if item != "")
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if isinstance(raw, str) and raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if tp is int:
        if isinstance(raw, bool) or not isinstance(raw, int | str):
            raise TypeError(f"expected an integer, got {raw!r}")
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expected an integer, got {raw!r}") from None
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise TypeError(f"expected a number, got {raw!r}")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
        if value != value:  # NaN
            raise ValueError("expected a number, got NaN")
        return value
    if tp is str:
        if not isinstance(raw, str):
            raise TypeError(f"expected a string, got {raw!r}")
        return raw
    raise TypeError(f"unsupported setting type {tp!r}")
