"""The mock's own per-request controls, not OpenAI's API: the ``x-mock-*`` headers (exact
TTFT and ITL, a reply length, a seed, a fault) and what a scripted rule answers.

Header values are held to the ranges of the knobs they stand in for; a bad one is a 400
naming the header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from attrs import frozen

from .._config._faults import parse_fault
from .._config._ranges import LATENCY_MS, SEED, TOKENS, Range
from ._errors import invalid

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._config._faults import Fault
    from .._config._settings import LatencySettings


@frozen
class ScriptedCall:
    """A tool call a scripted rule answers with: the function and its arguments (JSON)."""

    name: str
    arguments: str


@frozen(kw_only=True)
class Overrides:
    """Per-request control through ``x-mock-*`` headers, for tests that need one slow or one
    long reply: exact TTFT and ITL (no jitter), a fixed reply length, a seed; and what a
    scripted rule answers (``_scripts``): exact content or a tool call."""

    ttft_ms: float | None = None
    itl_ms: float | None = None
    output_tokens: int | None = None
    seed: int | None = None
    fault: Fault | None = None  # x-mock-fault; kind "none" turns injection off
    content: str | None = None
    tool_call: ScriptedCall | None = None

    def apply(self, latency: LatencySettings) -> LatencySettings:
        if self.ttft_ms is None and self.itl_ms is None:
            return latency
        changes: dict[str, Any] = {}
        if self.ttft_ms is not None:
            changes |= {
                "ttft_distribution": "constant",
                "ttft_ms": self.ttft_ms,
                "ttft_min_ms": 0.0,
                "ttft_max_ms": None,
                "prefill_ms_per_token": 0.0,
            }
        if self.itl_ms is not None:
            changes |= {
                "itl_distribution": "constant",
                "itl_ms": self.itl_ms,
                "itl_min_ms": 0.0,
                "itl_max_ms": None,
            }
        return attrs.evolve(latency, **changes)


NO_OVERRIDES = Overrides()


# Header -> (Overrides field, parser, range): the ranges of the knobs they stand in for.
OVERRIDE_HEADERS: dict[bytes, tuple[str, type, Range]] = {
    b"x-mock-ttft-ms": ("ttft_ms", float, LATENCY_MS),
    b"x-mock-itl-ms": ("itl_ms", float, LATENCY_MS),
    b"x-mock-output-tokens": ("output_tokens", int, TOKENS),
    b"x-mock-seed": ("seed", int, SEED),
}
# The same ranges by Overrides field, for scripted rules' replies.
OVERRIDE_RANGES = {field: allowed for field, _, allowed in OVERRIDE_HEADERS.values()}


def parse_overrides(headers: Iterable[tuple[bytes, bytes]]) -> Overrides:
    """The request's ``x-mock-*`` headers; a bad value is a 400 naming the header."""
    found: dict[str, Any] = {}
    for name, raw in headers:
        if name[:7].lower() != b"x-mock-":
            continue
        if name.lower() == b"x-mock-fault":
            try:
                found["fault"] = parse_fault(raw.decode("latin-1"))
            except ValueError as error:
                raise invalid(
                    f"Invalid value for header 'x-mock-fault': {error}.",
                    "x-mock-fault",
                    "invalid_header",
                ) from None
            continue
        spec = OVERRIDE_HEADERS.get(name.lower())
        if spec is None:
            continue
        field, kind, allowed = spec
        try:
            value = kind(raw.decode("latin-1").strip())
        except ValueError:
            value = None
        if value is None or value not in allowed:  # NaN and inf are never in a range
            kind_name = "an integer" if kind is int else "a number"
            raise invalid(
                f"Invalid value for header '{name.decode('latin-1')}': expected {kind_name} "
                f"{allowed.span()}, got {raw.decode('latin-1')!r}.",
                name.decode("latin-1"),
                "invalid_header",
            )
        found[field] = value
    return Overrides(**found) if found else NO_OVERRIDES


def merged(scripted: Overrides, asked: Overrides) -> Overrides:
    """A scripted answer under the request's own ``x-mock-*`` headers, which win."""
    given = {k: v for k, v in attrs.asdict(asked, recurse=False).items() if v is not None}
    return attrs.evolve(scripted, **given) if given else scripted
