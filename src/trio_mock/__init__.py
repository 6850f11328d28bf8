"""trio-mock: an OpenAI-compatible LLM API simulator on Trio.

Public API: ``serve`` (embed in a Trio program), ``create_app`` (the Quart-Trio app),
``Settings``, and ``app`` for ``hypercorn -k trio trio_mock:app`` (built from the
``TRIO_MOCK_*`` environment on first use, so importing trio_mock stays cheap).
"""

from __future__ import annotations

from ._app import EnvironmentApp, create_app as create_app
from ._server import serve as serve
from ._settings import Settings as Settings, SettingsError as SettingsError
from ._version import __version__ as __version__

app = EnvironmentApp()

__all__ = ["Settings", "SettingsError", "__version__", "app", "create_app", "serve"]
