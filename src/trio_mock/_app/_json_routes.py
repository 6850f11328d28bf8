"""How the Quart routes answer: JSON bodies, and errors in OpenAI's shape (never HTML or a
traceback).

``OpenAIError`` (``_errors``) is rendered as is; Quart's own HTTP errors (404, 405,
bad JSON) are mapped to OpenAI's wording, and a bug to a 500. The hot endpoints, raw ASGI,
send the same bytes themselves (``_endpoint``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from quart import Response, request
from werkzeug.exceptions import HTTPException

from .._openai._errors import (
    METHOD_NOT_ALLOWED,
    SERVER_ERROR,
    OpenAIError,
    error_body_for,
)

if TYPE_CHECKING:
    from quart_trio import QuartTrio

log = logging.getLogger("trio_mock")


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status=status, content_type="application/json",
                    headers=headers)  # fmt: skip


def error_response(error: OpenAIError) -> Response:
    """The error in the shape of the API the request's path belongs to (OpenRouter's under
    ``/api/v1``)."""
    return Response(
        orjson.dumps(error_body_for(request.path)(error)),
        status=error.status,
        content_type="application/json",
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in error.headers},
    )


def from_http_exception(error: HTTPException) -> OpenAIError:
    """Map Quart/Werkzeug's HTTP errors (404, 405, bad JSON) to OpenAI's wording. (A body
    too large or too slow never reaches Quart: ``_serve._request.front`` refuses it.)"""
    status = error.code or 500
    if status == 404:
        return OpenAIError(
            404, "Unknown request URL. Please check the URL and method.", code="unknown_url"
        )
    if status == 405:
        return METHOD_NOT_ALLOWED
    return OpenAIError(status, error.description or error.name)


def install_error_handlers(app: QuartTrio) -> None:
    """Render OpenAIError, HTTP errors and unexpected exceptions as OpenAI-shaped JSON."""

    @app.errorhandler(OpenAIError)
    async def openai_error(error: OpenAIError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return error_response(from_http_exception(error))

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unexpected error while handling a request")
        return error_response(SERVER_ERROR)
