"""trio-mock inside a Trio program: ``await trio_mock.serve(settings)``, or
``async with trio_mock.running() as server``.

The server runs in a task of the caller's Trio run; the ``RunningServer`` handed out gives
its URLs and the live state the HTTP control routes show (journal, config, scripts), as
plain calls, so a test needs no HTTP round trip to steer or inspect it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

from .._config._settings import Settings
from ._runtime import create_app
from ._server import serve_app

if TYPE_CHECKING:
    from ._quart_app import TrioMockApp
    from ._runtime import Live
    from ._watch import Sources

SETTLE_S = 1.0


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    watch: Sources | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve trio-mock in the current Trio run until ``shutdown_trigger`` returns.

    Args:
      shutdown_trigger: awaited; when it returns, shut down gracefully. None: run until
        cancelled.
      task_status: for ``nursery.start``: receives the bound root URLs, e.g.
        ``["http://127.0.0.1:41234"]`` (``RunningServer.base_url``; the OpenAI SDK wants
        them with ``/v1``, as ``RunningServer.url`` gives them).
      watch: where ``settings`` came from: changes to the config and scripts files are
        applied while serving (``_watch``).
    """
    await serve_app(
        create_app(settings, watch=watch),
        settings,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )


class RunningServer:
    """A served trio-mock: where it listens, and its live journal, config and scripts.

    Two URLs, named as ``MockServer`` names them: ``base_url`` is the root (what ``serve``
    reports; ``/health``, ``/metrics``, ``/_mock/*``), ``url`` the OpenAI base URL below it.
    """

    def __init__(self, base_url: str, app: TrioMockApp) -> None:
        self.base_url = base_url  # the root, e.g. "http://127.0.0.1:41234": no /v1
        self.app = app

    @property
    def url(self) -> str:
        """The OpenAI base URL: what ``openai.OpenAI(base_url=...)`` takes."""
        return self.base_url + "/v1"

    @property
    def live(self) -> Live:
        return self.app.live

    @property
    def settings(self) -> Settings:
        """The settings now in force (runtime changes included)."""
        return self.live.settings

    async def requests(self, **filters: Any) -> list[dict[str, Any]]:
        """Journal entries in arrival order, each with its ``worker``, as
        ``GET /_mock/requests`` gives them.

        A client may read its answer's last byte a moment before the server journals
        the request, so this first waits until no request is being served (for at most
        ``SETTLE_S``: another client's long stream may be).

        Args:
          filters: ``model``, ``endpoint``, ``status``, ``since``, ``limit``.
        """
        with trio.move_on_after(SETTLE_S):
            await self.live.observer.wait_quiet()
        found, _ = await self.app.control.requests(**filters)
        return found

    def clear_requests(self) -> int:
        """Empty the journal; return how many entries it held."""
        return self.live.journal.clear()

    async def configure(self, changes: Mapping[str, Any] | None = None, **knobs: Any) -> list[str]:
        """Change settings live, as ``PATCH /_mock/config`` does; return the knobs that
        changed. Requests already running keep the settings they started with.

        Raises:
          SettingsError: an unknown knob, a bad value, or one read only at start-up.
        """
        return await self.live.update({**(changes or {}), **knobs})

    def script(self, *rules: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Append scripted rules (the shape ``POST /_mock/scripts`` takes); return them as
        listed, with their ids.

        Raises:
          OpenAIError: a bad rule (none is added).
        """
        return [rule.to_data() for rule in self.live.scripts.add(list(rules))]

    def scripts(self) -> list[dict[str, Any]]:
        return self.live.scripts.listing()

    def clear_scripts(self) -> int:
        return self.live.scripts.clear()

    async def reset(self, settings: Settings) -> None:
        """Back to ``settings`` with an empty journal, no scripts, zeroed metrics and
        fresh rate-limit buckets, as a new server would be.

        Raises:
          SettingsError: ``settings`` differs in a knob read only at start-up.
        """
        await self.live.reset(settings)


@asynccontextmanager
async def running(settings: Settings | None = None, **knobs: Any) -> AsyncGenerator[RunningServer]:
    """Serve trio-mock for the body of the ``async with``, then shut it down gracefully.

    Args:
      settings: the full settings; None starts from the defaults on a free loopback port.
      knobs: leaf settings applied on top (``ttft_ms=20``, ``port=8100``, ...).

    Raises:
      SettingsError: a bad knob; OSError: the port is taken. What the body raises comes
      out as itself, not wrapped in the ExceptionGroup of the server's nursery.
    """
    base = settings if settings is not None else Settings().replace(port=0)
    settings = base.replace(**knobs) if knobs else base
    # Building the corpus takes a moment: in a thread, so the caller's tasks keep running.
    app = await trio.to_thread.run_sync(create_app, settings)
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(
                partial(serve_app, app, settings, shutdown_trigger=stop.wait)
            )
            try:
                yield RunningServer(binds[0], app)
            finally:
                stop.set()
    except BaseExceptionGroup as group:
        raise sole(group) from None


def sole(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception in ``group`` (however nested), else the group itself."""
    found: BaseException = group
    while isinstance(found, BaseExceptionGroup) and len(found.exceptions) == 1:
        found = found.exceptions[0]
    return found
