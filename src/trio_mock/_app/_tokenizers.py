"""Each ``--tokenizer-models`` model's tokenizer, loaded from local files before serving
(and in a thread when ``/configure`` or ``/_mock/config`` changes them while serving).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._config._knobs import SettingsError
from .._config._settings import describe
from .._config._tokenizer_models import tokenizer_sources
from .._sim._tokens import TokenizerError, load_tokenizer

if TYPE_CHECKING:
    from .._config._settings import ModelSettings
    from .._sim._tokens import Tokenizer


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
