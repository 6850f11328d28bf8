"""The Quart-Trio app: thin routes over parse -> validate -> plan -> emit -> pace.

I/O happens only here and in ``_server``; everything a route calls in between is a sync
or sans-IO stage. Streams are owned by quart-trio's per-request task: its nursery is
cancelled when the client disconnects, and ``response.timeout`` is the cancel scope that
bounds the whole stream.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import orjson
import trio
from quart import Response, request
from quart_trio import QuartTrio

from ._chat import ChatModel
from ._convert import parse_json, structure
from ._emit import ChatEmitter, error_frame, new_id
from ._errors import OpenAIError, install_error_handlers
from ._pacing import cut_at, paced
from ._protocol import ChatCompletionRequest
from ._settings import Settings
from ._tokens import load_tokenizer
from ._validate import check_chat, check_model
from ._version import __version__

if TYPE_CHECKING:
    from quart.typing import ResponseReturnValue

log = logging.getLogger("trio_mock")

ENDPOINTS = [
    "GET /health",
    "GET /",
    "GET /v1/models",
    "GET /v1/models/{model}",
    "POST /v1/chat/completions",
    "POST /chat/completions",
]
JSON = "application/json"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
# The stream's own schedule ends it at max_request_s with an error frame; the cancel scope
# is the backstop for a client too slow to take it.
CANCEL_MARGIN_S = 1.0


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status=status, content_type=JSON, headers=headers)


def create_app(settings: Settings | None = None) -> QuartTrio:
    """Build the app for ``settings`` (from the environment when None).

    Raises:
      SettingsError, TokenizerError: bad settings; the CLI reports them in one line.
    """
    settings = Settings.from_env() if settings is None else settings
    tokenizer = load_tokenizer(settings.output.tokenizer)
    model = ChatModel(settings, tokenizer)
    started = int(time.time())

    app = QuartTrio("trio_mock")
    app.config["MAX_CONTENT_LENGTH"] = settings.server.max_body_bytes
    app.config["RESPONSE_TIMEOUT"] = None
    app.config["BODY_TIMEOUT"] = settings.server.max_request_s
    app.extensions["trio_mock"] = {"settings": settings, "tokenizer": tokenizer}
    install_error_handlers(app)
    limit_s = settings.server.max_request_s

    def model_object(model_id: str) -> dict[str, object]:
        return {
            "id": model_id,
            "object": "model",
            "created": started,
            "owned_by": settings.models.owned_by,
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

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions() -> ResponseReturnValue:
        start = trio.current_time()  # TTFT counts from arrival
        headers = {"x-request-id": request.headers.get("x-request-id") or new_id("req_")}
        chat = structure(
            parse_json(await request.get_data(cache=False, as_text=False, parse_form_data=False)),
            ChatCompletionRequest,
        )
        check_chat(chat, settings.models)
        prompt_tokens = await model.prompt_tokens(chat)
        choices = await model.plan(chat)
        emitter = ChatEmitter(
            model=chat.model,
            fingerprint=settings.models.system_fingerprint,
            include_usage=chat.include_usage,
        )
        if not chat.stream:
            done_at = max(c.offsets[-1] for c in choices)
            if done_at > limit_s:
                await trio.sleep_until(start + limit_s)
                raise too_long(limit_s)
            await trio.sleep_until(start + done_at)
            return Response(
                emitter.body(choices, prompt_tokens), content_type=JSON, headers=headers
            )
        offsets, frames = emitter.stream(choices, prompt_tokens)
        offsets, frames = cut_at(offsets, frames, limit_s, error_frame(too_long(limit_s).to_json()))
        response = Response(
            paced(frames, offsets, start),
            content_type="text/event-stream; charset=utf-8",
            headers=headers | SSE_HEADERS,
        )
        response.timeout = limit_s + CANCEL_MARGIN_S
        return response

    return app


def too_long(limit_s: float) -> OpenAIError:
    return OpenAIError(
        504, f"The request exceeded the server's maximum duration of {limit_s:g} s.", code="timeout"
    )


def app_from_environment() -> QuartTrio:
    """The module-level ``trio_mock.app`` for ``hypercorn -k trio trio_mock:app``.

    The CLI's worker processes receive the parent's exact settings in one variable; other
    launchers use the ``TRIO_MOCK_*`` variables.
    """
    exact = os.environ.get(SETTINGS_JSON)
    settings = Settings.from_json(exact) if exact else Settings.from_env()
    return create_app(settings)


SETTINGS_JSON = "TRIO_MOCK_SETTINGS_JSON"
