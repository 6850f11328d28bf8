"""API keys, checked as OpenAI checks them: ``Authorization: Bearer <key>`` or Azure's
``api-key`` header, a 401 ``invalid_api_key`` otherwise.

Keys are compared in constant time (``hmac.compare_digest``, against every key) and never
logged; an error message shows only a masked form, as OpenAI's does.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from .._openai._errors import OpenAIError

if TYPE_CHECKING:
    from collections.abc import Iterable

# Routes a load balancer or a scraper must reach without a key (the dashboard page holds
# no data; it fetches it with a key). ``--metrics-auth`` closes /metrics.
OPEN_PATHS = frozenset({"/health", "/metrics", "/_mock/ui"})


def masked(key: str) -> str:
    """``sk-abc...wxyz`` with the middle starred, as OpenAI shows a wrong key."""
    if len(key) < 12:
        return "*" * len(key)
    return key[:3] + "*" * (len(key) - 7) + key[-4:]


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key a request carries: a Bearer token, else an ``api-key`` header."""
    api_key = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif lowered == b"api-key" and value.strip():
            api_key = value.decode("latin-1").strip()
    return api_key


class Auth:
    """Checks requests against the configured keys; with none, every request passes."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = [k.encode() for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def check(self, path: str, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Raises:
        OpenAIError: 401 when a key is needed and missing or wrong.
        """
        if path not in OPEN_PATHS:
            self.require(headers)

    def require(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Raises:
        OpenAIError: 401 when keys are set and none of them is presented.
        """
        if not self.keys:
            return
        key = presented_key(headers)
        if key is None:
            raise OpenAIError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code="invalid_api_key",
            )
        given = key.encode()
        matched = False
        for known in self.keys:  # every key, so the time does not tell which one is near
            matched |= hmac.compare_digest(given, known)
        if not matched:
            raise OpenAIError(
                401, f"Incorrect API key provided: {masked(key)}.", code="invalid_api_key"
            )
