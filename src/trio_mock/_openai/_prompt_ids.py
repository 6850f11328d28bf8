"""A chat prompt as the engine reads it: token ids framed as a chat template, for the
prefix cache (``_sim._prefix_cache``).

The framing is ids no tokenizer gives (negative ones), as many as OpenAI's accounting
counts (``_context``), so a prompt's ids are exactly its ``prompt_tokens``: each message is
``<start> role <sep> content... <end>``, and the reply's priming is ``<start> assistant
<sep>``, which is how the next turn's assistant message begins. A conversation's next turn
therefore repeats the previous prompt's ids as its prefix. Pure: no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from ._context import REPLY_PRIMING, TOKENS_PER_IMAGE, TOKENS_PER_MESSAGE, TOKENS_PER_NAME

START, SEP, END, NAME, IMAGE = -1, -2, -3, -4, -5
# Below every marker: a role's id, from its name (roles are a short fixed list).
ROLE_BASE = -(1 << 40)
# The framing below spells out OpenAI's accounting, one id per counted token.
assert len((START, "role", SEP)) == TOKENS_PER_MESSAGE
assert len((NAME,)) == TOKENS_PER_NAME
assert REPLY_PRIMING == 3


def role_id(role: str) -> int:
    return ROLE_BASE - zlib.crc32(role.encode())


def message_ids(
    role: str, content: Sequence[int], name: Sequence[int] = (), images: int = 0
) -> list[int]:
    """One message's ids: ``TOKENS_PER_MESSAGE + len(content) + 1`` of them, plus
    ``TOKENS_PER_NAME + len(name)`` with a name and ``TOKENS_PER_IMAGE`` an image (an
    image part carries nothing the mock reads, so all images look alike)."""
    ids = [START, role_id(role), SEP, *content, END]
    if name:
        ids += [NAME, *name]
    if images:
        ids += [IMAGE] * (TOKENS_PER_IMAGE * images)
    return ids


def priming_ids() -> list[int]:
    """The reply's priming: how an assistant message opens."""
    return [START, role_id("assistant"), SEP]
