"""A voice: one tokenizer and the reply text cut into its tokens.

A model served with its own tokenizer (``--tokenizer-models``) must stream whole tokens of
that tokenizer and report counts a client re-tokenizing the text gets back, so each
tokenizer gets its own corpus, fixed text and logprob alternatives. Built once per settings
change, never per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._config._knobs import SettingsError
from .._config._settings import describe, tokenizer_sources
from .._sim._corpus import WORDS, Corpus, shared_corpus
from .._sim._plan import COMMON_TOKENS
from .._sim._text import CorpusText, RepeatedText, TextSource
from .._sim._tokens import TokenizerError, load_tokenizer

if TYPE_CHECKING:
    from .._config._settings import ModelSettings, OutputSettings
    from .._sim._tokens import Tokenizer


class Voice:
    """What replies are made of for one tokenizer.

    Args:
      corpus: one already built for this tokenizer and these settings (a runtime change
        that leaves the corpus knobs alone reuses it); built (or shared) when None.
    """

    def __init__(
        self, out: OutputSettings, tokenizer: Tokenizer, corpus: Corpus | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.corpus: Corpus | None = None
        # The reply's text source, the same for every request; None in echo mode.
        self.text: TextSource | None = None
        # Logprob alternatives: the corpus's pieces, or common words in the other modes.
        self.alternatives: list[str] = [*COMMON_TOKENS, *(f" {w}" for w in WORDS[:256])]
        if out.output_mode == "corpus":
            if corpus is None:
                corpus = shared_corpus(tokenizer, out.corpus_articles, out.corpus_seed)
            self.corpus = corpus
            self.text = CorpusText(corpus, out)
            self.alternatives = corpus.pieces[:256]
        elif out.output_mode == "fixed":
            self.text = RepeatedText(tokenizer.pieces(out.fixed_text))


def own_voice(out: OutputSettings, name: str, tokenizer: Tokenizer) -> Voice:
    """The voice of ``name``, a model with its own tokenizer.

    Raises:
      SettingsError: its corpus cannot be cut into that tokenizer's tokens.
    """
    try:
        return Voice(out, tokenizer)
    except TokenizerError as error:
        raise SettingsError(f"{describe('tokenizer_models')}: {name}: {error}") from None


def model_tokenizers(models: ModelSettings) -> dict[str, Tokenizer]:
    """Each ``--tokenizer-models`` model's tokenizer, loaded from local files (slow: seconds
    for a large one the first time; a thread's job while serving).

    Raises:
      SettingsError: one cannot be loaded; the message names the model and where its
        tokenizer was looked for.
    """
    loaded = {}
    for name, source in tokenizer_sources(models.tokenizer_models).items():
        try:
            loaded[name] = load_tokenizer(source)
        except TokenizerError as error:
            raise SettingsError(f"{describe('tokenizer_models')}: {name}: {error}") from None
    return loaded
