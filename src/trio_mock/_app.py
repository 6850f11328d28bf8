"""The Quart-Trio app: thin Quart routes, plus the hot chat endpoint as raw ASGI.

I/O happens only here, in ``_asgi`` and in ``_server``; everything a route calls in
between is a sync or sans-IO stage (parse -> validate -> plan -> emit -> pace).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import orjson
from quart import Response, request
from quart_trio import QuartTrio

from ._asgi import ASGIApp, Endpoint, Handler
from ._auth import Auth
from ._chat import ChatHandler
from ._completions import CompletionsHandler
from ._corpus import release_free_memory
from ._embeddings import EmbeddingsHandler
from ._emit import new_id
from ._errors import install_error_handlers
from ._faults import FaultInjector
from ._load import Load
from ._model import MockModel
from ._ratelimit import RateLimiter
from ._responses import ResponsesHandler
from ._settings import Settings
from ._tokens import load_tokenizer
from ._validate import check_model
from ._version import __version__
from ._vllm import install_vllm_routes

if TYPE_CHECKING:
    from quart.typing import ResponseReturnValue

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
    "POST /tokenize",
    "POST /detokenize",
    "GET /version",
]
JSON = "application/json"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def create_app(settings: Settings | None = None) -> QuartTrio:
    """Build the app for ``settings`` (from the environment when None).

    Raises:
      SettingsError, TokenizerError: bad settings; the CLI reports them in one line.
    """
    settings = Settings.from_env() if settings is None else settings
    tokenizer = load_tokenizer(settings.output.tokenizer)
    model = MockModel(settings, tokenizer)
    started = int(time.time())

    app = TrioMockApp("trio_mock")
    load = Load(settings.capacity, settings.latency)
    handlers: dict[str, Handler] = {
        "/chat/completions": ChatHandler(model),
        "/completions": CompletionsHandler(model),
        "/responses": ResponsesHandler(model),
        "/embeddings": EmbeddingsHandler(settings, tokenizer),
    }
    auth = Auth(settings.server.api_keys)
    limiter = RateLimiter(settings.rate_limits)
    faults = FaultInjector(settings.faults)
    app.fast_routes = {}
    for path, handler in handlers.items():  # each also without the /v1 prefix, as vLLM serves
        endpoint = Endpoint(settings, handler, load, auth, limiter, faults)
        app.fast_routes |= {"/v1" + path: endpoint, path: endpoint}
    install_vllm_routes(app, settings, tokenizer)
    release_free_memory()  # the corpus build's temporaries are gone by now
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    app.config["BODY_TIMEOUT"] = settings.server.max_request_s
    install_error_handlers(app)

    def model_object(model_id: str) -> dict[str, object]:
        return {
            "id": model_id,
            "object": "model",
            "created": started,
            "owned_by": settings.models.owned_by,
        }

    @app.before_serving
    async def mark_start() -> None:
        limiter.start()  # rate_limit_after_s counts from here

    @app.before_request
    async def check_key() -> None:
        if auth.enabled:
            headers = [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()
            ]
            auth.check(request.path, headers)

    @app.after_request
    async def add_request_id(response: Response) -> Response:
        response.headers["x-request-id"] = request.headers.get("x-request-id") or new_id("req_")
        return response

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
                "load": load.snapshot(),
                "endpoints": ENDPOINTS,
                "settings": settings.public(),
            }
        )

    @app.get("/v1/models")
    @app.get("/models")
    async def list_models() -> ResponseReturnValue:
        return json_response(
            {"object": "list", "data": [model_object(m) for m in settings.models.models]}
        )

    @app.get("/v1/models/<path:model_id>")
    @app.get("/models/<path:model_id>")
    async def get_model(model_id: str) -> ResponseReturnValue:
        check_model(model_id, settings.models)
        return json_response(model_object(model_id))

    return app


class TrioMockApp(QuartTrio):
    """QuartTrio, with the hot endpoints served as raw ASGI (see ``_asgi``)."""

    fast_routes: dict[str, ASGIApp]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and (route := self.fast_routes.get(scope["path"])):
            await route(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


SETTINGS_JSON = "TRIO_MOCK_SETTINGS_JSON"


def app_from_environment() -> QuartTrio:
    """Build the app for ``hypercorn -k trio trio_mock:app`` and the CLI's workers.

    The CLI's worker processes receive the parent's exact settings in one variable; other
    launchers use the ``TRIO_MOCK_*`` variables.
    """
    exact = os.environ.get(SETTINGS_JSON)
    settings = Settings.from_json(exact) if exact else Settings.from_env()
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
