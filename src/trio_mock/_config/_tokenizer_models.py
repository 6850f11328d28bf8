"""``--tokenizer-models`` entries: ``name=source``, or a bare hub id that is both.

A leaf: the request checks (``_openai._validate``) read which models have a tokenizer, and
the settings check the entries, without a longer chain of imports.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Mapping

MAX_TOKENIZER_MODELS = 64  # each loads a tokenizer and builds a corpus
MAX_MODEL_NAME = 256  # longer than any real model id; such a name is not echoed back whole


def tokenizer_entry_problem(entry: str) -> str | None:
    name, _, source = entry.partition("=")
    name, source = name.strip(), source.strip()
    if not name or len(name) > MAX_MODEL_NAME or not name.isprintable() or "=" in source:
        return f"expected name=source or a hub id, got {entry!r}"
    return None


def tokenizer_models_problem(entries: tuple[str, ...]) -> str | None:
    if len(entries) > MAX_TOKENIZER_MODELS:
        return f"at most {MAX_TOKENIZER_MODELS} models, got {len(entries)}"
    return next(filter(None, map(tokenizer_entry_problem, entries)), None)


@functools.lru_cache(maxsize=16)  # read per request with --no-any-model; settings are few
def tokenizer_sources(entries: tuple[str, ...]) -> Mapping[str, str]:
    """``--tokenizer-models`` as model name -> tokenizer source; a bare entry (a hub id,
    as AIPerf's ``--tokenizer-models`` takes) is both. Read only: it is shared."""
    sources = {}
    for entry in entries:
        name, _, source = entry.partition("=")
        sources[name.strip()] = source.strip() or name.strip()
    return types.MappingProxyType(sources)
