"""The prefix (KV) cache: which leading blocks of a prompt an engine already holds.

Pure and sans-IO, no trio: the handlers hash a prompt's token ids (off the event loop when
long), and the model asks the cache, on the event loop, how many of them it holds. As in
vLLM, a prompt is cut into blocks of ``block_size`` token ids and each full block's hash
chains its parent's, so a block hits only when everything before it is the same; a
partial last block is never cached. Each model holds at most ``blocks`` of them, the least
recently used evicted first. Only prompt blocks are cached: the mock's replies have no
token ids, so a conversation's next turn hits up to where the previous prompt ended.

A hit is counted in tokens (``hit blocks * block_size``) and never covers the whole
prompt: vLLM recomputes at least the last token, for its logits.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # by name only: importing _tokens would lengthen the import chain
    from ._tokens import Tokenizer

# The parent of a prompt's first block (vLLM's NONE_HASH). Caches are per model, so the
# model needs no place in the hash.
ROOT = 0
# Client-chosen model names each get a cache, so their number is bounded: past this many,
# the least recently used model's cache is dropped.
MAX_MODELS = 8


def cache_encoder(tokenizer: Tokenizer) -> Callable[[str], list[int]]:
    """How the cache reads a text's ids: the tokenizer's, except approx's, whose ids count
    0, 1, 2... whatever the text says (every prompt of one length would hit)."""
    return approx_ids if tokenizer.name == "approx" else tokenizer.encode


def approx_ids(text: str) -> list[int]:
    """One id per approx token (four characters), from its text; never negative, as the
    chat framing's ids are (``_openai._prompt_ids``)."""
    return [hash(text[i : i + 4]) & 0x7FFF_FFFF_FFFF_FFFF for i in range(0, len(text), 4)]


def block_hashes(ids: Sequence[int], block_size: int) -> list[int]:
    """The chained hash of each full block of ``ids``: ``h_i = hash((h_{i-1}, block_i))``.

    Python's hash of a tuple of ints: about 0.2 us a block (a 100k-token prompt: 1 ms,
    against 40 ms to tokenize it; sha256, as vLLM offers, took 6 ms), and ``zip`` over one
    iterator cuts the blocks without slicing.
    """
    hashes = []
    parent = ROOT
    for block in zip(*[iter(ids)] * block_size, strict=False):
        parent = hash((parent, block))
        hashes.append(parent)
    return hashes


class PrefixCache:
    """One model's cached blocks, by hash, least recently used first."""

    def __init__(self, blocks: int, block_size: int) -> None:
        self.capacity = blocks
        self.block_size = block_size
        self.blocks: collections.OrderedDict[int, None] = collections.OrderedDict()

    def lookup(self, hashes: Sequence[int], prompt_tokens: int) -> int:
        """How many of the prompt's tokens are cached; then the prompt's blocks are cached
        too, as the most recently used (its hits refreshed, then its new blocks).

        Args:
          hashes: ``block_hashes`` of the prompt's ids.
          prompt_tokens: the prompt's length; the hit stops short of its last token.
        """
        most = max(prompt_tokens - 1, 0) // self.block_size
        blocks = self.blocks
        hit = 0
        for h in hashes[:most]:
            if h not in blocks:
                break
            hit += 1
        for h in hashes:
            if h in blocks:
                blocks.move_to_end(h)
            else:
                blocks[h] = None
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)
        return hit * self.block_size

    @property
    def usage(self) -> float:
        """The share of the cache's blocks that hold a prefix, 0 to 1."""
        return len(self.blocks) / self.capacity


class PrefixCaches:
    """A ``PrefixCache`` per model (as each model is its own engine), at most
    ``MAX_MODELS`` of them."""

    def __init__(self, blocks: int, block_size: int) -> None:
        self.blocks = blocks
        self.block_size = block_size
        self.caches: collections.OrderedDict[str, PrefixCache] = collections.OrderedDict()

    def lookup(self, model: str, hashes: Sequence[int], prompt_tokens: int) -> int:
        """``PrefixCache.lookup`` in ``model``'s cache."""
        cache = self.caches.get(model)
        if cache is None:
            cache = self.caches[model] = PrefixCache(self.blocks, self.block_size)
            if len(self.caches) > MAX_MODELS:
                self.caches.popitem(last=False)
        else:
            self.caches.move_to_end(model)
        return cache.lookup(hashes, prompt_tokens)

    def fits(self, prompt_tokens: int) -> bool:
        """Whether a prompt this long fits the cache with a token to spare (vLLM needs
        blocks for the prompt and the first output token)."""
        return prompt_tokens // self.block_size + 1 <= self.blocks

    @property
    def usage(self) -> float:
        """The fullest model cache's share of blocks in use (vLLM's ``kv_cache_usage_perc``
        is one engine's; with several models, the busiest one's)."""
        return max((c.usage for c in self.caches.values()), default=0.0)
