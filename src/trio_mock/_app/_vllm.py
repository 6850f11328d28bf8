"""vLLM's extra routes: ``POST /tokenize``, ``POST /detokenize`` and ``GET /version``.

Served with the tokenizer of the model named (its own, or the default one), so clients
that count tokens through the server (benchmarks sizing their prompts, routers) get the
same numbers as the usage fields. A long prompt is tokenized off the event loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attrs import frozen
from quart import Response, request

from .._openai._context import context_window
from .._openai._convert import parse_json, structure
from .._openai._errors import invalid
from .._openai._validate import check_model
from .._serve._offload import off_loop
from .._sim._tokens import unknown_token
from .._version import __version__
from ._json_routes import json_response

if TYPE_CHECKING:
    from collections.abc import Callable

    from quart_trio import QuartTrio

    from .._config._settings import Settings
    from .._sim._tokens import Tokenizer


@frozen(kw_only=True)
class TokenizeMessage:
    role: str
    content: str | None = None


@frozen(kw_only=True)
class TokenizeRequest:
    """Either a ``prompt`` or chat ``messages`` (rendered ``role\\ncontent`` per message)."""

    model: str | None = None
    prompt: str | None = None
    messages: list[TokenizeMessage] | None = None
    add_special_tokens: bool = True
    return_token_strs: bool = False


@frozen(kw_only=True)
class DetokenizeRequest:
    tokens: list[int]
    model: str | None = None


def token_strs(tokenizer: Tokenizer, tokens: list[int]) -> list[str]:
    return [tokenizer.decode([t]) for t in tokens]


async def json_body() -> dict[str, Any]:
    data = await request.get_data()
    return parse_json(data if isinstance(data, bytes) else data.encode())


def install_vllm_routes(
    app: QuartTrio,
    current: Callable[[], Settings],
    tokenizer_for: Callable[[str], Tokenizer],
) -> None:
    """``current()`` gives the settings as of now (they may change while serving);
    ``tokenizer_for(model)`` the tokenizer a model is served with, as of now."""

    @app.post("/tokenize")
    async def tokenize() -> Response:
        ask = structure(await json_body(), TokenizeRequest)
        settings = current()
        first_model = settings.models.models[0]  # what vLLM serves when no model is named
        if ask.model is not None:
            check_model(ask.model, settings.models)
        tokenizer = tokenizer_for(ask.model or first_model)
        if (ask.prompt is None) == (ask.messages is None):
            raise invalid("Give either 'prompt' or 'messages'.", "prompt")
        text = ask.prompt
        if ask.messages is not None:
            text = "".join(f"{m.role}\n{m.content or ''}\n" for m in ask.messages)
        assert text is not None
        encode = tokenizer.encode_with_specials if ask.add_special_tokens else tokenizer.encode
        tokens = await off_loop(len(text), encode, text)
        strs = None
        if ask.return_token_strs:
            strs = await off_loop(len(text), token_strs, tokenizer, tokens)
        return json_response(
            {
                "count": len(tokens),
                "max_model_len": context_window(settings.models, ask.model or first_model),
                "tokens": tokens,
                "token_strs": strs,
            }
        )

    @app.post("/detokenize")
    async def detokenize() -> Response:
        ask = structure(await json_body(), DetokenizeRequest)
        models = current().models
        if ask.model is not None:
            check_model(ask.model, models)
        tokenizer = tokenizer_for(ask.model or models.models[0])
        if (i := unknown_token(tokenizer, ask.tokens)) is not None:
            raise invalid(f"Invalid token id {ask.tokens[i]}.", f"tokens[{i}]", "invalid_value")
        prompt = await off_loop(4 * len(ask.tokens), tokenizer.decode, ask.tokens)
        return json_response({"prompt": prompt})

    @app.get("/version")
    async def version() -> Response:
        return json_response({"version": __version__})
