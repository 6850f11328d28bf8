"""Who may call what, for every route (hot endpoint, Quart route or WebSocket alike).

API keys are checked as OpenAI checks them: ``Authorization: Bearer <key>``, Azure's
``api-key`` header or Anthropic's ``x-api-key``, a 401 ``invalid_api_key`` otherwise. With ``--admin-key`` set,
``/_mock/*`` and ``/configure`` need that key (Bearer, ``api-key`` or ``x-admin-key``);
without it they take the API keys, like every route but ``OPEN_PATHS``. ``--metrics-auth``
guards ``/metrics`` as a control route, which the API keys open when no admin key is set.

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
    """The key a request carries: a Bearer token, else an ``api-key`` header (Azure's) or an
    ``x-api-key`` one (Anthropic's)."""
    api_key = None
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif lowered in (b"api-key", b"x-api-key") and value.strip():
            api_key = value.decode("latin-1").strip()
    return api_key


def is_admin_path(path: str) -> bool:
    return (path.startswith("/_mock/") and path != "/_mock/ui") or path == "/configure"


def check_admin(admin_key: str, headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Raises: OpenAIError: 401 when the admin key is not presented."""
    listed = list(headers)
    given = presented_key(listed)
    for name, value in listed:
        if name.lower() == b"x-admin-key":
            given = value.decode("latin-1").strip()
    if given is None or not hmac.compare_digest(given.encode(), admin_key.encode()):
        raise OpenAIError(
            401,
            "This endpoint needs the server's admin key (Authorization: Bearer, api-key or "
            "x-admin-key).",
            code="invalid_admin_key",
        )


class Auth:
    """Checks requests against the configured keys; with none, every request passes."""

    def __init__(
        self, keys: Iterable[str], admin_key: str | None = None, metrics_auth: bool = False
    ) -> None:
        self.keys = [k.encode() for k in keys]
        self.admin_key = admin_key
        self.metrics_auth = metrics_auth
        self.enabled = bool(self.keys) or admin_key is not None

    def check(self, path: str, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """Raises:
        OpenAIError: 401 when a key is needed and missing or wrong.
        """
        if not self.enabled:
            return
        closed_metrics = self.metrics_auth and path == "/metrics"
        if self.admin_key is not None and (closed_metrics or is_admin_path(path)):
            check_admin(self.admin_key, headers)
        elif closed_metrics or path not in OPEN_PATHS:
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
