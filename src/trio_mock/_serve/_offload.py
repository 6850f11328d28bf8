"""Tokenizer work off the event loop: inline when short, in a thread when long.

The one place tokenizing meets Trio: the pure layers call an ``Offload`` they are given
(``_model``) or this module's ``off_loop`` (the endpoints), so that a 100k-character
prompt never stalls every other stream.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import trio
from trio.lowlevel import RunVar

# Encoding many characters costs more than a thread hop (~0.1 ms); below this, stay inline.
INLINE_CHARS = 8192
TOKENIZER_THREADS = 4  # at most this many threads tokenize at once, per Trio run
# Per Trio run: a CapacityLimiter belongs to the run that made it, and two servers in one
# process (two ``MockServer`` threads) each have their own.
TOKENIZER_LIMITER: RunVar[trio.CapacityLimiter] = RunVar("TOKENIZER_LIMITER")
T = TypeVar("T")


async def off_loop(chars: int, func: Callable[..., T], *args: Any) -> T:
    """Run tokenizer work on ``chars`` characters without stalling other streams: inline
    when short (no checkpoint either: when many streams run, a scheduler pass costs more
    than the work), in a thread when long."""
    if chars < INLINE_CHARS:
        return func(*args)
    return await trio.to_thread.run_sync(partial(func, *args), limiter=tokenizer_limiter())


def tokenizer_limiter() -> trio.CapacityLimiter:
    """This Trio run's limit on tokenizer threads."""
    try:
        return TOKENIZER_LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(TOKENIZER_THREADS)
        TOKENIZER_LIMITER.set(limiter)
        return limiter
