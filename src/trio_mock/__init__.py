"""trio-mock: an OpenAI-compatible LLM API simulator on Trio.

Public API: ``serve`` (embed in a Trio program), ``create_app`` (the Quart-Trio app),
``Settings``, and ``app`` (built lazily from ``TRIO_MOCK_*`` for
``hypercorn -k trio trio_mock:app``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._app import create_app as create_app
from ._server import serve as serve
from ._settings import Settings as Settings, SettingsError as SettingsError
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    app: QuartTrio

__all__ = ["Settings", "SettingsError", "__version__", "app", "create_app", "serve"]

_app: QuartTrio | None = None


def __getattr__(name: str) -> Any:
    """Build ``app`` on first access only, so importing trio_mock stays cheap."""
    global _app
    if name == "app":
        if _app is None:
            from ._app import app_from_environment

            _app = app_from_environment()
        return _app
    raise AttributeError(f"module 'trio_mock' has no attribute {name!r}")
