"""The Quart-Trio app: thin Quart routes, plus the hot chat endpoint as raw ASGI.

I/O happens only here, in ``_endpoint`` and in ``_server``; everything a route calls in
between is a sync or sans-IO stage (parse -> validate -> plan -> emit -> pace).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, cast

import trio
from quart_trio import QuartTrio

from .._config._settings import Settings
from .._observe._logs import configure_logging
from .._observe._metrics import multiprocess
from .._openai._errors import OpenAIError
from .._openai._validate import check_model
from .._serve._cors import Cors
from .._serve._housekeeping import Trimmer
from .._serve._request import front
from .._sim._corpus import release_free_memory
from .._sim._tokens import load_tokenizer
from .._version import __version__
from ._admin_routes import install_control_routes
from ._control import Control, SharedControl
from ._json_routes import install_error_handlers, json_response
from ._live import Live
from ._vllm import install_vllm_routes

if TYPE_CHECKING:
    from collections.abc import Sequence

    from quart.typing import ResponseReturnValue

    from .._serve._request import ASGIApp
    from ._hub import Membership

log = logging.getLogger("trio_mock")

ENDPOINTS = [
    "GET /health",
    "GET /",
    "GET /v1/models",
    "GET /v1/models/{model}",
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/responses",
    "POST /v1/embeddings",
    "GET /v1/realtime (WebSocket)",
    "POST /tokenize",
    "POST /detokenize",
    "GET /version",
    "GET /metrics",
    "GET /_mock/config",
    "PATCH /_mock/config",
    "POST /configure",
    "GET /_mock/requests",
    "DELETE /_mock/requests",
    "GET /_mock/scripts",
    "POST /_mock/scripts",
    "DELETE /_mock/scripts",
    "DELETE /_mock/scripts/{id}",
    "GET /_mock/stats",
    "GET /_mock/ui",
]
HOUSEKEEPING_S = 0.25


def create_app(
    settings: Settings | None = None, membership: Membership | None = None
) -> TrioMockApp:
    """Build the app for ``settings`` (from the environment when None).

    Args:
      membership: a worker of ``--workers N``: its place in the state they share.

    Raises:
      SettingsError, TokenizerError: bad settings; the CLI reports them in one line.
    """
    settings = Settings.from_env() if settings is None else settings
    obs = settings.observability
    if obs.metrics_auth and obs.admin_key is None and not settings.server.api_keys:
        log.warning("--metrics-auth: no --admin-key or --api-keys set, so /metrics stays open")
    tokenizer = load_tokenizer(settings.output.tokenizer)
    started = int(time.time())

    origins = settings.server.cors_origins
    app = CorsApp("trio_mock", origins) if origins else TrioMockApp("trio_mock")
    if membership is None:
        live = app.live = Live(settings, tokenizer)
        app.control = Control(live)
    else:
        live = app.live = Live(settings, tokenizer, membership.scripts)
        live.version = membership.version
        app.control = SharedControl(live, membership)
    install_vllm_routes(app, lambda: live.settings, tokenizer)
    install_control_routes(app, app.control)
    release_free_memory()  # the corpus build's temporaries are gone by now
    install_error_handlers(app)
    app.config["MAX_CONTENT_LENGTH"] = None  # ``front`` has read the body, within our limit

    def model_object(model_id: str) -> dict[str, object]:
        """OpenAI's model object, with vLLM's ``root``, ``parent`` and ``max_model_len``
        (``vllm bench serve`` reads ``root`` when it is not given ``--model``)."""
        return {
            "id": model_id,
            "object": "model",
            "created": started,
            "owned_by": live.settings.models.owned_by,
            "root": model_id,
            "parent": None,
            "max_model_len": live.model.context_window(model_id),
        }

    chores, pacing, sharing = trio.CancelScope(), trio.CancelScope(), trio.CancelScope()

    async def pace() -> None:
        with pacing:
            await live.pacer.run()

    async def share(control: SharedControl) -> None:
        with sharing:
            await control.run()

    @app.before_serving
    async def mark_start() -> None:
        live.limiter.start()  # rate_limit_after_s counts from here
        app.nursery.start_soon(housekeeping, live, chores)
        app.nursery.start_soon(pace)
        if isinstance(app.control, SharedControl):
            app.nursery.start_soon(share, app.control)

    @app.after_serving
    async def close_journal() -> None:
        chores.cancel()  # else Quart-Trio waits BACKGROUND_TASK_SHUTDOWN_TIMEOUT for them
        pacing.cancel()
        sharing.cancel()
        live.journal.close()

    @app.get("/health")
    async def health() -> ResponseReturnValue:
        return json_response({"status": "ok"})

    @app.get("/")
    async def index() -> ResponseReturnValue:
        return json_response(
            {
                "name": "trio-mock",
                "version": __version__,
                "tokenizer": tokenizer.description,
                "load": live.load.snapshot(),
                "endpoints": ENDPOINTS,
                "settings": live.settings.public(),
            }
        )

    @app.get("/v1/realtime")
    @app.get("/realtime")
    async def realtime_over_http() -> ResponseReturnValue:
        raise OpenAIError(
            426,
            "The Realtime API speaks WebSocket: connect with a WebSocket client "
            "(ws://host:port/v1/realtime).",
            code="upgrade_required",
            headers=((b"upgrade", b"websocket"),),
        )

    @app.get("/v1/models")
    @app.get("/models")
    async def list_models() -> ResponseReturnValue:
        models = live.settings.models.models
        return json_response({"object": "list", "data": [model_object(m) for m in models]})

    @app.get("/v1/models/<path:model_id>")
    @app.get("/models/<path:model_id>")
    async def get_model(model_id: str) -> ResponseReturnValue:
        check_model(model_id, live.settings.models)
        return json_response(model_object(model_id))

    return app


async def housekeeping(live: Live, scope: trio.CancelScope) -> None:
    """Four times a second: streams past their time limit are cut (``Watchdog``); the
    journal file's lines reach the disk; batched metrics reach the registry, so a burst's
    figures do not wait for the next request or scrape (with several workers, each one's
    gauges too reach its files: any worker's /metrics sums them, so each must keep its own
    current even when another one is scraped); and once a burst is over, the memory it
    freed goes back to the system (``Trimmer``)."""
    watchdog, trimmer = live.watchdog, Trimmer(live.load)
    watchdog.running = True
    try:
        with scope:
            while True:
                now = trio.current_time()
                watchdog.expire(now)
                live.journal.flush()
                if live.metrics is not None:
                    live.metrics.flush()
                    if multiprocess():
                        live.metrics.refresh()
                if trimmer.due(now):
                    await trimmer.trim(now)
                await trio.sleep(HOUSEKEEPING_S)
    finally:
        watchdog.running = False


class TrioMockApp(QuartTrio):
    """QuartTrio, with the hot endpoints served as raw ASGI (see ``_endpoint``), looked up in
    the live routes so that a runtime config change takes effect at the next request. The
    other routes meet the same front (``_request.front``: key, body, request id) before
    Quart routes them."""

    live: Live
    control: Control

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            live = self.live
            if route := live.routes.get(scope["path"]):
                await route(scope, receive, send)
            else:
                quart = cast("ASGIApp", super().__call__)
                await front(quart, live.auth, live.settings.server, scope, receive, send)
        elif scope["type"] == "websocket" and (socket := self.live.sockets.get(scope["path"])):
            await socket(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


class CorsApp(TrioMockApp):
    """TrioMockApp behind the CORS layer (``--cors-origins``): a class of its own, so that
    without CORS no request pays for it. Every entry point (``serve``, the CLI's workers,
    ``hypercorn trio_mock:app``, the test client) calls the app, so each one gets it."""

    def __init__(self, import_name: str, origins: Sequence[str]) -> None:
        super().__init__(import_name)
        self.cors = Cors(super().__call__, origins)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.cors(scope, receive, send)


SETTINGS_JSON = "TRIO_MOCK_SETTINGS_JSON"


def app_from_environment() -> QuartTrio:
    """Build the app for ``hypercorn -k trio trio_mock:app``.

    Exact settings may come as JSON in one variable (``TRIO_MOCK_SETTINGS_JSON``), else
    from the ``TRIO_MOCK_*`` variables. (The CLI's workers are forked with their settings.)
    """
    exact = os.environ.get(SETTINGS_JSON)
    settings = Settings.from_json(exact) if exact else Settings.from_env()
    if not logging.getLogger().handlers:  # a spawned worker, or a bare hypercorn
        configure_logging(settings)
    return create_app(settings)


class EnvironmentApp:
    """``trio_mock.app``: an ASGI app built from the environment on first use.

    Hypercorn finds ``app`` in the module's namespace, so it must exist at import; building
    the real app (tokenizer, corpus) only when served keeps ``import trio_mock`` cheap.
    """

    def __init__(self) -> None:
        self._app: QuartTrio | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = app_from_environment()
        await self._app(scope, receive, send)
