"""Text sources: where a reply's tokens come from (sans-IO).

Each source yields a *natural* length (what the "model" would say before stopping) and then
exactly ``n`` pieces, one per token, with their JSON-escaped bytes. The planner decides
``n`` from the natural length and the request's limits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import orjson

from ._latency import draw_one

if TYPE_CHECKING:
    import numpy as np

    from .._config._settings import OutputSettings
    from ._corpus import Corpus


class TextSource(Protocol):
    def natural_length(self, rng: np.random.Generator) -> int: ...

    def pieces(self, n: int, rng: np.random.Generator) -> tuple[list[str], list[bytes]]:
        """``n`` token strings and their JSON-escaped bytes (no quotes)."""
        ...


class CorpusText:
    """Slices of the generated articles; their length follows ``output_tokens_*``."""

    def __init__(self, corpus: Corpus, output: OutputSettings) -> None:
        self.corpus, self.output = corpus, output

    def natural_length(self, rng: np.random.Generator) -> int:
        out = self.output
        low, high = out.output_tokens_min, out.output_tokens_max
        length = draw_one(
            out.output_tokens_distribution,
            out.output_tokens_mean,
            out.output_tokens_stddev,
            low,
            high,
            rng,
        )
        return max(low, round(length))

    def pieces(self, n: int, rng: np.random.Generator) -> tuple[list[str], list[bytes]]:
        ids = self.corpus.slice(n, rng).tolist()
        text, escaped = self.corpus.pieces, self.corpus.escaped
        return [text[i] for i in ids], [escaped[i] for i in ids]


class RepeatedText:
    """A fixed token sequence (the configured text, or an echoed message), repeated if
    more tokens are required than it has (``min_tokens``, ``ignore_eos``)."""

    def __init__(self, pieces: list[str]) -> None:
        self.text = pieces
        self.escaped = [orjson.dumps(p)[1:-1] for p in pieces]

    def natural_length(self, rng: np.random.Generator) -> int:
        return len(self.text)

    def pieces(self, n: int, rng: np.random.Generator) -> tuple[list[str], list[bytes]]:
        if n <= len(self.text):
            return self.text[:n], self.escaped[:n]
        if not self.text:  # nothing to repeat (an empty message echoed): " x" is one token
            return [" x"] * n, [b" x"] * n
        reps = -(-n // len(self.text))
        return (self.text * reps)[:n], (self.escaped * reps)[:n]


class PaddedText:
    """A fixed token sequence that must stay whole (JSON): when more tokens are required
    it is followed by newlines, which JSON allows, instead of repeating."""

    def __init__(self, pieces: list[str]) -> None:
        self.text = pieces
        self.escaped = [orjson.dumps(p)[1:-1] for p in pieces]

    def natural_length(self, rng: np.random.Generator) -> int:
        return len(self.text)

    def pieces(self, n: int, rng: np.random.Generator) -> tuple[list[str], list[bytes]]:
        pad = max(0, n - len(self.text))
        return self.text[:n] + ["\n"] * pad, self.escaped[:n] + [b"\\n"] * pad
