"""Anthropic's routes that are not hot endpoints: ``POST /v1/messages/count_tokens``, and
the model listing in Anthropic's shape for a request that carries ``anthropic-version``
(``GET /v1/models`` stays OpenAI's for every other client).

``POST /v1/messages`` itself is a hot endpoint (``_runtime``); errors here take Anthropic's
shape by path (``_errors.error_body_for``) or are answered in it directly.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from quart import request

from .._openai._anthropic import anthropic_model, check_version
from .._openai._convert import parse_json
from .._openai._errors import OpenAIError, anthropic_error_body
from .._openai._validate import check_model, served_models
from ._json_routes import json_response

if TYPE_CHECKING:
    from quart.typing import ResponseReturnValue
    from quart_trio import QuartTrio

    from ._runtime import Live


def speaks_anthropic() -> bool:
    """Whether the current request is an Anthropic client's (it names a version)."""
    return any(name.lower() == b"anthropic-version" for name, _ in request.scope["headers"])


def anthropic_refusal(error: OpenAIError) -> ResponseReturnValue:
    return json_response(anthropic_error_body(error), error.status)


def install_anthropic_routes(app: QuartTrio, live: Live) -> None:
    """``count_tokens``; ``anthropic_models`` serves the listing."""

    @app.post("/v1/messages/count_tokens")
    async def count_tokens() -> ResponseReturnValue:
        """The prompt's tokens, counted as ``/v1/messages`` counts them."""
        check_version(request.scope["headers"])
        handler = live.messages
        data = await request.get_data()
        body = parse_json(data if isinstance(data, bytes) else data.encode())
        checked = handler.checked(body, counting=True)
        return json_response({"input_tokens": await handler.prompt_tokens(checked)})


class AnthropicModels:
    """The served models as Anthropic's ``GET /v1/models`` lists them."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.created_at = datetime.fromtimestamp(time.time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def one(self, model_id: str) -> dict[str, object]:
        window = self.live.model.context_window(model_id)
        return anthropic_model(model_id, created_at=self.created_at, context_length=window)

    def listing(self) -> ResponseReturnValue:
        listed = [self.one(m) for m in served_models(self.live.settings.models)]
        first, last = (listed[0]["id"], listed[-1]["id"]) if listed else (None, None)
        body = {"data": listed, "has_more": False, "first_id": first, "last_id": last}
        return json_response(body)

    def retrieve(self, model_id: str) -> ResponseReturnValue:
        try:
            check_model(model_id, self.live.settings.models)
        except OpenAIError as error:
            return anthropic_refusal(error)
        return json_response(self.one(model_id))
