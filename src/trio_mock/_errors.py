"""Errors as OpenAI sends them: ``{"error": {"message", "type", "param", "code"}}``.

Pure: every layer raises ``OpenAIError``; the raw-ASGI endpoints send its JSON, and
``_json_routes`` renders it (and Quart's own errors) for the Quart routes.
"""

from __future__ import annotations

import orjson
from attrs import frozen

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


SERVER_ERROR = OpenAIError(500, "The server had an error while processing your request.")
METHOD_NOT_ALLOWED = OpenAIError(405, "Method not allowed for this URL.", code="method_not_allowed")
BODY_TIMEOUT = OpenAIError(408, "The request body did not arrive in time.", code="request_timeout")
TOO_LARGE = OpenAIError(
    413, "Request body is larger than the server accepts.", code="request_too_large"
)


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    """A 400 ``invalid_request_error``."""
    return OpenAIError(400, message, param=param, code=code)
