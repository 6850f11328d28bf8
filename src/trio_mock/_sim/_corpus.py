"""The corpus: natural-looking articles generated once at start-up, sliced into replies.

Sans-IO and built for the hot path. Text is drawn from a table of *pieces*, each exactly
one token of the configured tokenizer (" word", " Word", "Word", ",", ".", ".\\n\\n"), so
that a reply is a slice of piece ids: its token count is its length, every chunk holds
whole tokens, and a client that re-tokenizes the joined text gets the same count back.
Each piece's JSON-escaped bytes are kept too, so streaming never JSON-encodes text.
"""

from __future__ import annotations

import contextlib
import ctypes
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import orjson

if TYPE_CHECKING:
    from ._tokens import Tokenizer

IntArray = npt.NDArray[np.int32]

# Common English words, most frequent first; sampled with Zipf-like weights.
WORDS = """
the of and to in is that for it as was with be by on not he this are or his from at which
but have an they you were her she there one all we their has been would more when will who
if no out so said what up its about than into them can only other time new some could these
two may first then do any like my now over such our man me even most made after also did
many before must through back years where much your way well down should because each just
those people how too little state good very make world still own see men work long get here
between both life being under never day same another know while last might us great old year
off come since against go came right used take three states himself few house use during
without again place around however home small found thought went say part once general high
upon school every does got united left number course war until always away something fact
though water less public put think almost hand enough far took head yet government system
better set told nothing night end why called find going look asked later knew point next
program city business give group toward young days let room president side social given
present several order national possible rather second face per among form important often
things looked early white case large become big need four within felt along children saw best
church ever least power development light thing seemed family interest want members mind
country area others done turned although open problem door sure kind began law whole
question order economic field real land result line service human local plan policy market
data study model value network energy history science music story process language
""".split()

ZIPF_SHIFT = 2.7  # flattens the head so "the" is common but not every other word


class CorpusError(ValueError):
    """The corpus cannot be cut into this tokenizer's tokens."""


class Corpus:
    """A pool of generated articles as one long array of piece ids.

    Args:
      tokenizer: pieces are kept only when each is exactly one of its tokens.
      articles: how many articles to generate.
      seed: the same seed gives the same corpus in every worker.
    """

    def __init__(self, tokenizer: Tokenizer, articles: int, seed: int) -> None:
        """Raises:
        CorpusError: no word is one token of ``tokenizer`` in each of its forms.
        """
        words = list(dict.fromkeys(w for w in WORDS if one_token_each(tokenizer, w)))
        if not words:
            raise CorpusError(
                f"{tokenizer.name}: no corpus word is one token (as ' word', ' Word' and "
                "'Word'), so corpus replies cannot be cut into its tokens; use "
                "--output-mode echo or fixed"
            )
        v = len(words)
        self.pieces: list[str] = (
            [f" {w}" for w in words]
            + [f" {w.capitalize()}" for w in words]
            + [w.capitalize() for w in words]
        )
        comma, period, paragraph = len(self.pieces), len(self.pieces) + 1, len(self.pieces) + 2
        self.pieces += [",", ".", ".\n\n"]
        if not one_token(tokenizer, ".\n\n"):  # no paragraphs, so counts stay exact
            paragraph = period
        self.escaped: list[bytes] = [orjson.dumps(p)[1:-1] for p in self.pieces]
        rng = np.random.default_rng(seed)
        weights = 1.0 / (np.arange(v) + ZIPF_SHIFT)
        weights /= weights.sum()

        # Sentences of 6-18 words, 3-6 sentences a paragraph, 3-6 paragraphs an article.
        paragraphs = rng.integers(3, 7, size=articles)
        sentences = rng.integers(3, 7, size=int(paragraphs.sum()))
        lengths = rng.integers(6, 19, size=int(sentences.sum()))
        ids = rng.choice(v, size=int(lengths.sum()), p=weights).astype(np.int32)
        starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        ids[starts] += v  # " Word" after a period
        paragraph_first = np.concatenate(([0], np.cumsum(sentences)[:-1]))
        if paragraph != period:
            ids[starts[paragraph_first]] += v  # "Word" after a paragraph break

        ends = np.full(len(lengths), period, dtype=np.int32)
        ends[np.cumsum(sentences) - 1] = paragraph
        # Commas after ~8% of words that do not end a sentence.
        inner = np.ones(len(ids), dtype=bool)
        inner[np.cumsum(lengths) - 1] = False
        comma_after = np.flatnonzero(inner & (rng.random(len(ids)) < 0.08)) + 1
        positions = np.concatenate((np.cumsum(lengths), comma_after))
        values = np.concatenate((ends, np.full(len(comma_after), comma, dtype=np.int32)))
        order = np.argsort(positions, kind="stable")
        self.ids: IntArray = np.insert(ids, positions[order], values[order]).astype(np.int32)
        # Replies start where a sentence does: after a period, or at the very start.
        self.sentence_starts: IntArray = np.concatenate(
            ([0], np.flatnonzero((self.ids == period) | (self.ids == paragraph))[:-1] + 1)
        ).astype(np.int32)

    def slice(self, n: int, rng: np.random.Generator) -> IntArray:
        """``n`` piece ids from a random sentence start, wrapping at the end."""
        start = int(self.sentence_starts[rng.integers(len(self.sentence_starts))])
        if start + n <= len(self.ids):
            return self.ids[start : start + n]
        take = np.arange(start, start + n) % len(self.ids)
        return self.ids[take]


SHARED: list[tuple[Tokenizer, int, int, Corpus]] = []  # (tokenizer, articles, seed, corpus)
MAX_SHARED = 65  # the default tokenizer's and one per --tokenizer-models entry


def shared_corpus(tokenizer: Tokenizer, articles: int, seed: int) -> Corpus:
    """The corpus for these knobs and this tokenizer, built once per process and never
    written: the ``--workers`` supervisor builds it before it forks, so the workers share
    its pages rather than each building a copy. One per tokenizer; a change of the corpus
    knobs frees the old ones."""
    for known, known_articles, known_seed, corpus in SHARED:
        if known is tokenizer and (known_articles, known_seed) == (articles, seed):
            return corpus
    corpus = Corpus(tokenizer, articles, seed)
    kept = [entry for entry in SHARED if entry[1:3] == (articles, seed)]
    SHARED[:] = [*kept[-(MAX_SHARED - 1) :], (tokenizer, articles, seed, corpus)]
    return corpus


def release_free_memory() -> None:
    """Hand start-up's temporary objects (the corpus build's arrays) back to the OS: glibc
    keeps freed memory otherwise. Call it once they are out of scope."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def one_token(tokenizer: Tokenizer, text: str) -> bool:
    return len(tokenizer.encode(text)) == 1 or tokenizer.name == "approx"


def one_token_each(tokenizer: Tokenizer, word: str) -> bool:
    """True when " word", " Word" and "Word" are each one token, so slices re-tokenize exactly."""
    forms = (f" {word}", f" {word.capitalize()}", word.capitalize())
    return all(len(tokenizer.encode(form)) == 1 for form in forms) or tokenizer.name == "approx"
