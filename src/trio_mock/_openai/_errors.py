"""Errors as OpenAI sends them: ``{"error": {"message", "type", "param", "code"}}``.

Pure: every layer raises ``OpenAIError``; the raw-ASGI endpoints send its JSON, and
``_json_routes`` renders it (and Quart's own errors) for the Quart routes.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

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

    @property
    def kind(self) -> str:
        """OpenAI's ``type``: the one given, else the status's."""
        return self.type or ERROR_TYPES.get(self.status, "invalid_request_error")

    def to_body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
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


# What OpenAI (and the Cloudflare edge in front of it) answers for each status it sends.
STATUS_ERRORS = {
    429: OpenAIError(
        429,
        "Rate limit reached for requests. Please try again later.",
        type="requests",
        code="rate_limit_exceeded",
    ),
    500: OpenAIError(
        500,
        "The server had an error while processing your request. Sorry about that!",
        type="server_error",
    ),
    502: OpenAIError(502, "Bad gateway.", type="cf_bad_gateway"),
    503: OpenAIError(
        503,
        "The server is overloaded or not ready yet.",
        type="server_error",
        code="service_unavailable",
    ),
    504: OpenAIError(504, "Gateway timeout.", type="cf_gateway_timeout"),
}
# The error an ``error`` fault sends: in the stream's own error format, or as a 500 body.
INJECTED_ERROR = STATUS_ERRORS[500]


def status_error(status: int) -> OpenAIError:
    """The error body for an injected status: OpenAI's own, or its shape with the reason."""
    known = STATUS_ERRORS.get(status)
    if known is not None:
        return known
    kind = ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:  # 499, 520-524 (Cloudflare's), ...: no registered phrase
        reason = f"Error {status}"
    return OpenAIError(status, f"{reason}.", type=kind)


def openrouter_error_body(error: OpenAIError) -> dict[str, object]:
    """OpenRouter's error shape (https://openrouter.ai/docs/errors): ``code`` is the HTTP
    status; OpenAI's ``type``, ``param`` and ``code`` ride in ``metadata``, so a client of
    either API finds them."""
    metadata: dict[str, object] = {"type": error.kind}
    if error.param is not None:
        metadata["param"] = error.param
    if error.code is not None:
        metadata["code"] = error.code
    return {"error": {"code": error.status, "message": error.message, "metadata": metadata}}


OPENROUTER_PREFIX = "/api/v1"  # OpenRouter's base URL is https://openrouter.ai/api/v1

# Anthropic's ``error.type`` for each status it sends
# (https://docs.anthropic.com/en/api/errors); other statuses by class.
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
# What Anthropic says for the statuses a fault injects, where OpenAI's words would show.
ANTHROPIC_MESSAGES = {
    429: "Number of requests has exceeded your per-minute rate limit.",
    500: "Internal server error",
    529: "Overloaded",
}
ANTHROPIC_PATHS = ("/v1/messages",)  # the routes that answer in Anthropic's error shape


def anthropic_error_body(error: OpenAIError) -> dict[str, object]:
    """Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``; an
    injected status speaks as Anthropic does (``529`` is ``Overloaded``)."""
    status = error.status
    kind = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    message = error.message
    if status in ANTHROPIC_MESSAGES and error.message == status_error(status).message:
        message = ANTHROPIC_MESSAGES[status]
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_body_for(path: str) -> Callable[[OpenAIError], dict[str, object]]:
    """The error shape of a route that is not a hot endpoint (those are built with theirs)."""
    if path.startswith(ANTHROPIC_PATHS):
        return anthropic_error_body
    return openrouter_error_body if path.startswith(OPENROUTER_PREFIX) else OpenAIError.to_body
