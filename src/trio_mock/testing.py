"""trio-mock for test suites that are not Trio: a server in a thread of its own.

``MockServer`` runs ``trio_mock.running`` in a background thread with its own Trio run,
so synchronous code, asyncio and anyio tests (and Trio tests too) can use it::

    from trio_mock.testing import MockServer

    with MockServer(ttft_ms=0, itl_ms=0) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused")
        ...
        assert server.requests()[0]["model"] == "gpt-4o-mini"

Its methods hand the work to the server's thread and wait for the answer, so they are
safe from any thread and never race the requests the server is answering.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Self, TypeVar

import trio

from ._app._running import RunningServer, running
from ._config._settings import Settings

if TYPE_CHECKING:
    from types import TracebackType

Result = TypeVar("Result")
START_TIMEOUT_S = 60.0  # the tokenizer and corpus load first
CALL_TIMEOUT_S = 30.0


class MockServer:
    """A trio-mock server in a background thread; a context manager.

    Args:
      settings: the full settings; None starts from the defaults on a free loopback port.
      knobs: leaf settings applied on top (``ttft_ms=20``, ...).
    """

    def __init__(self, settings: Settings | None = None, **knobs: Any) -> None:
        base = settings if settings is not None else Settings().replace(port=0)
        self.settings = base.replace(**knobs) if knobs else base
        self._server: RunningServer | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._thread: threading.Thread | None = None

    # --- life ----------------------------------------------------------------------------

    def start(self) -> Self:
        """Start serving; return once the port is bound.

        Raises:
          SettingsError, OSError: what start-up raised in the server's thread.
        """
        if self._thread is not None:
            raise RuntimeError("this MockServer is already started")
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=trio.run, args=(self._main, started), name="trio-mock", daemon=True
        )
        self._thread.start()
        try:
            started.result(timeout=START_TIMEOUT_S)
        except BaseException:
            self._thread.join(timeout=START_TIMEOUT_S)
            self._thread = None
            raise
        return self

    async def _main(self, started: concurrent.futures.Future[None]) -> None:
        try:
            async with running(self.settings) as server, trio.open_nursery() as calls:
                self._server, self._nursery = server, calls
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                started.set_result(None)
                await self._stop.wait()
                calls.cancel_scope.cancel()
        except BaseException as error:
            if not started.done():
                started.set_exception(error)
                return
            raise

    def stop(self) -> None:
        """Shut down gracefully (in-flight streams get the drain period) and join."""
        if self._thread is None:
            return
        stop = self._stop
        if stop is not None and self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):  # it ended on its own
                self._token.run_sync_soon(stop.set)
        self._thread.join(timeout=self.settings.server.graceful_timeout_s + START_TIMEOUT_S)
        self._thread = self._server = self._token = self._nursery = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- where it listens ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: for HTTP clients and the control routes."""
        return self._running().base_url

    @property
    def url(self) -> str:
        """The OpenAI base URL (``.../v1``): what ``openai.OpenAI(base_url=...)`` takes."""
        return self._running().url

    # --- the live state, through the server's thread ---------------------------------------

    def requests(self, **filters: Any) -> list[dict[str, Any]]:
        """Journal entries in arrival order, each with its ``worker`` (filters: model,
        endpoint, status, since, limit)."""
        return self._call(lambda: self._running().requests(**filters))

    def clear_requests(self) -> int:
        return self._call_sync(lambda: self._running().clear_requests())

    def configure(self, changes: Mapping[str, Any] | None = None, **knobs: Any) -> list[str]:
        """Change settings live; return the knobs that changed.

        Raises:
          SettingsError: an unknown knob, a bad value, or one read only at start-up.
        """
        return self._call(lambda: self._running().configure(changes, **knobs))

    @property
    def current_settings(self) -> Settings:
        """The settings now in force (runtime changes included)."""
        return self._running().settings

    def script(self, *rules: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Append scripted rules; return them as listed, with their ids.

        Raises:
          OpenAIError: a bad rule (none is added).
        """
        return self._call_sync(lambda: self._running().script(*rules))

    def scripts(self) -> list[dict[str, Any]]:
        return self._call_sync(lambda: self._running().scripts())

    def clear_scripts(self) -> int:
        return self._call_sync(lambda: self._running().clear_scripts())

    def reset(self, settings: Settings | None = None) -> None:
        """Back to ``settings`` (the ones it started with when None): empty journal, no
        scripts, zeroed metrics, fresh rate-limit buckets."""
        target = settings if settings is not None else self.settings
        self._call(lambda: self._running().reset(target))

    # --- plumbing ------------------------------------------------------------------------

    def _running(self) -> RunningServer:
        if self._server is None:
            raise RuntimeError("this MockServer is not running: use it as a context manager")
        return self._server

    def _call(self, work: Callable[[], Awaitable[Result]]) -> Result:
        """Run ``work()`` as a task of the server's run and wait for its result.

        ``trio.from_thread`` refuses any Trio thread, and a Trio test's is one; the token's
        ``run_sync_soon`` and a future work from every thread.
        """
        if self._token is None or self._nursery is None:
            raise RuntimeError("this MockServer is not running: use it as a context manager")
        nursery = self._nursery
        future: concurrent.futures.Future[Result] = concurrent.futures.Future()

        async def task() -> None:
            try:
                future.set_result(await work())
            except Exception as error:
                future.set_exception(error)

        def spawn() -> None:  # an exception here would crash the server's run
            try:
                nursery.start_soon(task)
            except RuntimeError:  # stopping: the nursery is closed
                future.set_exception(RuntimeError("this MockServer is stopping"))

        self._token.run_sync_soon(spawn)
        return future.result(timeout=CALL_TIMEOUT_S)

    def _call_sync(self, work: Callable[[], Result]) -> Result:
        async def awaitable() -> Result:
            return work()

        return self._call(awaitable)
