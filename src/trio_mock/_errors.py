"""Errors as OpenAI sends them: ``{"error": {"message", "type", "param", "code"}}``.

Routes raise ``OpenAIError``; one handler renders it. Every other failure (Quart's HTTP
errors, a bug) is mapped here too, so a client never sees HTML or a traceback.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import orjson
from attrs import frozen
from quart import Response
from werkzeug.exceptions import HTTPException

if TYPE_CHECKING:
    from quart_trio import QuartTrio

log = logging.getLogger("trio_mock")

# OpenAI's `type` for each status it uses.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "timeout",
    413: "invalid_request_error",
    429: "requests",
    500: "server_error",
    503: "server_error",
    504: "timeout",
}


@frozen
class OpenAIError(Exception):
    """An error answered to the client in OpenAI's shape."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    type: str | None = None  # derived from status when None
    headers: tuple[tuple[bytes, bytes], ...] = ()  # sent with it (retry-after, rate limits)

    def to_body(self) -> dict[str, object]:
        kind = self.type or ERROR_TYPES.get(self.status, "invalid_request_error")
        return {
            "error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_body())

    def to_response(self) -> Response:
        return Response(
            self.to_json(),
            status=self.status,
            content_type="application/json",
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers},
        )


SERVER_ERROR = OpenAIError(500, "The server had an error while processing your request.")
METHOD_NOT_ALLOWED = OpenAIError(405, "Method not allowed for this URL.", code="method_not_allowed")
BODY_TIMEOUT = OpenAIError(408, "The request body did not arrive in time.", code="request_timeout")
TOO_LARGE = OpenAIError(
    413, "Request body is larger than the server accepts.", code="request_too_large"
)


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    """A 400 ``invalid_request_error``."""
    return OpenAIError(400, message, param=param, code=code)


def from_http_exception(error: HTTPException) -> OpenAIError:
    """Map Quart/Werkzeug's HTTP errors (404, 405, 413, bad JSON) to OpenAI's wording."""
    status = error.code or 500
    if status == 404:
        return OpenAIError(
            404, "Unknown request URL. Please check the URL and method.", code="unknown_url"
        )
    if status == 405:
        return METHOD_NOT_ALLOWED
    if status == 413:
        return TOO_LARGE
    if status == 408:
        return BODY_TIMEOUT
    return OpenAIError(status, error.description or error.name)


def install_error_handlers(app: QuartTrio) -> None:
    """Render OpenAIError, HTTP errors and unexpected exceptions as OpenAI-shaped JSON."""

    @app.errorhandler(OpenAIError)
    async def openai_error(error: OpenAIError) -> Response:
        return error.to_response()

    @app.errorhandler(HTTPException)
    async def http_error(error: HTTPException) -> Response:
        return from_http_exception(error).to_response()

    @app.errorhandler(Exception)
    async def unexpected(error: Exception) -> Response:
        log.exception("unexpected error while handling a request")
        return SERVER_ERROR.to_response()
