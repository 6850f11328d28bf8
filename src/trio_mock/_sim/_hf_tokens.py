"""Hugging Face tokenizers, found on this machine: never downloaded.

A benchmark that counts tokens with a Llama or Qwen tokenizer must see the server count the
same way, so a model may be served with its own ``tokenizer.json``, read by the ``tokenizers``
library (Rust, no torch; the ``hf`` extra). It comes from a file, a model folder, or a hub id
already in the local Hugging Face cache (``models--org--name/snapshots/*/``). Nothing here
touches the network: a missing tokenizer is a start-up error naming where it was looked for.
"""

from __future__ import annotations

import os
import re
import types
from pathlib import Path
from typing import TYPE_CHECKING

from ._tokens import TokenizerError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import tokenizers

TOKENIZER_FILE = "tokenizer.json"
# A hub id: "gpt2" or "org/name", letters, digits, "-", "_" and "." (the hub's own rule).
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
INSTALL_HINT = "install the hf extra: pip install 'trio-mock[hf]'"


class HFTokenizer:
    """A ``tokenizers.Tokenizer``; ``encode`` leaves out the model's special tokens (BOS...),
    as tiktoken's ``encode_ordinary`` does, and ``encode_with_specials`` adds them."""

    def __init__(self, tokenizer: tokenizers.Tokenizer, name: str, description: str) -> None:
        self.tokenizer = tokenizer
        self.name = name
        self.description = description
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ids

    def encode_with_specials(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=True).ids
        return ids

    def decode(self, tokens: list[int]) -> str:
        text: str = self.tokenizer.decode(tokens, skip_special_tokens=False)
        return text

    def pieces(self, text: str) -> list[str]:
        """One string per token, cut at each token's end offset, so they join back to
        ``text``. A character split across tokens (byte-level BPE) lands on its first token,
        the others carry "", so every piece is valid text and the count stays exact."""
        offsets = self.tokenizer.encode(text, add_special_tokens=False).offsets
        out: list[str] = []
        done = 0
        for _, end in offsets:
            end = max(done, end)
            out.append(text[done:end])
            done = end
        if out:
            out[-1] += text[done:]  # what no token covers (trailing spaces some models drop)
        return out


def load_hf_file(path: Path, name: str | None = None) -> HFTokenizer:
    """A ``tokenizer.json`` file, or a model folder holding one.

    Raises:
      TokenizerError: no such file, not a tokenizer, or the ``tokenizers`` library is missing.
    """
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        where = f"no {TOKENIZER_FILE} in folder {str(path)!r}" if path.is_dir() else "no such file"
        raise TokenizerError(f"{where} (looked for {str(file)!r})")
    library = import_tokenizers()
    try:
        tokenizer = library.Tokenizer.from_file(str(file))
    except Exception as error:  # the library raises a bare Exception for a bad file
        raise TokenizerError(f"cannot read tokenizer file {str(file)!r}: {error}") from None
    shown = name or (path.name if path.is_dir() else file.parent.name or file.stem)
    return HFTokenizer(tokenizer, shown, f"{shown} (tokenizers, {file})")


def load_hub_tokenizer(hub_id: str, env: Mapping[str, str] | None = None) -> HFTokenizer:
    """The tokenizer of ``hub_id`` from the local Hugging Face cache, never downloaded.

    Raises:
      TokenizerError: not in the cache; the message names the folder looked in.
    """
    cache = hub_cache(os.environ if env is None else env)
    repo = cache / ("models--" + hub_id.replace("/", "--"))
    found = cached_file(repo)
    if found is None:
        raise TokenizerError(
            f"hub id {hub_id!r} is not in the Hugging Face cache (looked for "
            f"{str(repo / 'snapshots' / '*' / TOKENIZER_FILE)!r}); trio-mock never downloads: "
            f"fetch it first (hf download {hub_id} {TOKENIZER_FILE}), or give a "
            f"{TOKENIZER_FILE} path or a model folder"
        )
    tokenizer = load_hf_file(found, hub_id)
    tokenizer.description = f"{hub_id} (tokenizers, from the Hugging Face cache)"
    return tokenizer


def hub_cache(env: Mapping[str, str]) -> Path:
    """Where the hub keeps models, as ``huggingface_hub`` decides it."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(variable):
            return Path(env[variable]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(xdg) / "huggingface" / "hub"


def cached_file(repo: Path) -> Path | None:
    """The snapshot's ``tokenizer.json`` that ``refs/main`` names, else the newest one."""
    snapshots = repo / "snapshots"
    main = repo / "refs" / "main"
    if main.is_file():
        pinned = snapshots / main.read_text(encoding="utf-8").strip() / TOKENIZER_FILE
        if pinned.is_file():
            return pinned
    found = [p for p in snapshots.glob(f"*/{TOKENIZER_FILE}") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def import_tokenizers() -> types.ModuleType:
    """The ``tokenizers`` module, imported when first needed (an optional extra)."""
    try:
        import tokenizers
    except ImportError:
        raise TokenizerError(
            f"Hugging Face tokenizers need the tokenizers library: {INSTALL_HINT}"
        ) from None
    return tokenizers
