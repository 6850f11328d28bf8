"""The Quart-Trio app's class and its small routes: the hot endpoints are looked up first
and served as raw ASGI (``_serve._endpoint``); every other request meets the same front
(``_serve._request.front``: key, body, request id) and then Quart's routing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast

from quart_trio import QuartTrio

from .._openai._errors import OpenAIError
from .._openai._openrouter import Prices, model_object as openrouter_model
from .._openai._validate import check_model, served_models
from .._serve._cors import Cors
from .._serve._request import front
from .._version import __version__
from ._anthropic_routes import AnthropicModels, speaks_anthropic
from ._json_routes import json_response

if TYPE_CHECKING:
    from collections.abc import Sequence

    from quart.typing import ResponseReturnValue

    from .._serve._request import ASGIApp
    from .._sim._tokens import Tokenizer
    from ._control import Control
    from ._runtime import Live

ENDPOINTS = [
    "GET /health",
    "GET /",
    "GET /v1/models",
    "GET /v1/models/{model}",
    "POST /v1/chat/completions",
    "POST /v1/completions",
    "POST /v1/responses",
    "POST /v1/embeddings",
    "POST /v1/messages",
    "POST /v1/messages/count_tokens",
    "GET /v1/realtime (WebSocket)",
    "GET /api/v1/models",
    "GET /api/v1/models/{model}",
    "POST /api/v1/chat/completions",
    "POST /api/v1/completions",
    "POST /api/v1/responses",
    "POST /api/v1/embeddings",
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


def install_info_routes(app: QuartTrio, live: Live, tokenizer: Tokenizer) -> None:
    """``/health``, ``/`` (what this server is), the models, and a Realtime URL asked over
    plain HTTP."""
    started = int(time.time())

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
                "model_tokenizers": {
                    name: voice.tokenizer.description for name, voice in live.model.voices.items()
                },
                "load": live.load.snapshot(),
                "engine": engine_view(live),
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

    anthropic = AnthropicModels(live)

    @app.get("/v1/models")
    @app.get("/models")
    async def list_models() -> ResponseReturnValue:
        if speaks_anthropic():
            return anthropic.listing()
        models = served_models(live.settings.models)
        return json_response({"object": "list", "data": [model_object(m) for m in models]})

    @app.get("/v1/models/<path:model_id>")
    @app.get("/models/<path:model_id>")
    async def get_model(model_id: str) -> ResponseReturnValue:
        if speaks_anthropic():
            return anthropic.retrieve(model_id)
        check_model(model_id, live.settings.models)
        return json_response(model_object(model_id))

    def listed_on_openrouter(model_id: str, prices: Prices) -> dict[str, object]:
        model = live.model
        return openrouter_model(model_id, created=started, price=prices.of(model_id),
                                context_length=model.context_window(model_id),
                                reasons=model.reasons(model_id))  # fmt: skip

    @app.get("/api/v1/models")
    async def list_openrouter_models() -> ResponseReturnValue:
        models = live.settings.models
        prices = Prices(models.model_prices)
        listed = served_models(models)
        return json_response({"data": [listed_on_openrouter(m, prices) for m in listed]})

    @app.get("/api/v1/models/<path:model_id>")
    async def get_openrouter_model(model_id: str) -> ResponseReturnValue:
        """Not in OpenRouter's reference, but what ``client.models.retrieve`` asks for."""
        models = live.settings.models
        check_model(model_id, models)
        return json_response(listed_on_openrouter(model_id, Prices(models.model_prices)))


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


def engine_view(live: Live) -> dict[str, Any]:
    """The engine, live: its kind, and when batched its last batch, KV usage, preemptions
    and the prefix cache's hit rate so far."""
    view: dict[str, Any] = {"kind": live.settings.latency.engine}
    engines, metrics = live.engines, live.metrics
    if engines is not None:
        view |= {"batch": engines.batch, "kv_cache_usage": engines.usage,
                 "preemptions": engines.preemptions}  # fmt: skip
    if metrics is not None:
        metrics.flush()
    if metrics is not None and metrics.cache_queried:
        view["prefix_cache_hit_rate"] = metrics.cache_hit / metrics.cache_queried
    return view
