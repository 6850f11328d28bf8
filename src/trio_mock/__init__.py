"""trio-mock: an OpenAI-compatible LLM API simulator on Trio.

Public API: ``running`` (``async with trio_mock.running() as server``, in a Trio program),
``serve`` (the same, as a task for ``nursery.start``), ``create_app`` (the Quart-Trio app),
``Settings``, and ``app`` for ``hypercorn -k trio trio_mock:app`` (built from the
``TRIO_MOCK_*`` environment on first use, so importing trio_mock stays cheap).
``trio_mock.testing.MockServer`` runs a server in a thread for sync and asyncio code, and
the pytest plugin (``trio_mock.pytest_plugin``) gives tests a ``trio_mock_server``.
"""

from __future__ import annotations

from ._app._running import RunningServer as RunningServer, running as running, serve as serve
from ._app._runtime import EnvironmentApp, create_app as create_app
from ._config._knobs import SettingsError as SettingsError
from ._config._settings import Settings as Settings
from ._version import __version__ as __version__

app = EnvironmentApp()

__all__ = [
    "RunningServer",
    "Settings",
    "SettingsError",
    "__version__",
    "app",
    "create_app",
    "running",
    "serve",
]
