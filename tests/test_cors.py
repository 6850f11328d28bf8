"""CORS (``--cors-origins``): preflights answered before auth with a 204, every answer of
every route (raw ASGI endpoints, Quart routes, errors, streams) carrying the allow and expose
headers for an allowed origin, none for another origin or a request without ``Origin``, and
nothing at all changed when the knob is off. Driven through the app's ASGI entry point in
memory (``asgi.call``), and once through a real loopback server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest

from asgi import Answer, call
from conftest import fast_settings
from trio_mock import Settings, SettingsError, create_app
from trio_mock._app._quart_app import CorsApp, TrioMockApp
from trio_mock._app._runtime import app_from_environment
from trio_mock._serve._cors import Cors

if TYPE_CHECKING:
    from conftest import StartServer
    from trio_mock._serve._request import Message

SITE = "https://app.example"
OTHER = "https://evil.example"
KEY = "sk-cors-test-0001"
BEARER = {"authorization": f"Bearer {KEY}"}
CHAT = "/v1/chat/completions"
BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
PREFLIGHT = {
    "origin": SITE,
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization,content-type,x-stainless-os,x-mock-fault",
}


def cors_headers(answer: Answer | httpx.Response) -> dict[str, str]:
    headers = answer.headers.items()
    return {k.lower(): v for k, v in headers if k.lower().startswith("access-control-")}


def check_allowed(answer: Answer | httpx.Response, origin: str = SITE) -> None:
    """An actual (non-preflight) answer for an allowed ``origin``."""
    assert answer.headers["access-control-allow-origin"] == origin
    if origin != "*":
        assert answer.headers["vary"] == "Origin"
    exposed = answer.headers["access-control-expose-headers"].split(", ")
    assert {"x-request-id", "retry-after", "x-mock-ttft-ms"} <= set(exposed)


# --- preflights ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [CHAT, "/v1/embeddings", "/_mock/config", "/tokenize", "/nope"])
async def test_preflight_needs_no_key(path: str) -> None:
    """A browser's preflight carries no key: it gets a 204 on every path, before auth."""
    app = create_app(fast_settings(cors_origins=SITE, api_keys=KEY))
    answer = await call(app, path, method="OPTIONS", headers=PREFLIGHT)
    assert answer.status == 204
    assert answer.body == b""
    assert cors_headers(answer) == {
        "access-control-allow-origin": SITE,
        "access-control-allow-methods": "DELETE, GET, HEAD, OPTIONS, PATCH, POST",
        "access-control-allow-headers": PREFLIGHT["access-control-request-headers"],
        "access-control-max-age": "600",
    }
    assert answer.headers["vary"] == "Origin"


async def test_preflight_for_any_origin_and_without_requested_headers() -> None:
    app = create_app(fast_settings(cors_origins="*", api_keys=KEY))
    answer = await call(
        app,
        CHAT,
        method="OPTIONS",
        headers={"origin": OTHER, "access-control-request-method": "GET"},
    )
    assert answer.status == 204
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "vary" not in answer.headers  # the answer is the same for every origin
    listed = answer.headers["access-control-allow-headers"].split(", ")
    assert {"authorization", "content-type", "api-key", "x-mock-fault"} <= set(listed)


@pytest.mark.parametrize(
    ("origin", "method", "what"),
    [(OTHER, "POST", "origin"), (SITE, "PUT", "method")],
    ids=["origin", "method"],
)
async def test_disallowed_preflight_is_400(origin: str, method: str, what: str) -> None:
    app = create_app(fast_settings(cors_origins=f"{SITE},http://localhost:3000"))
    headers = PREFLIGHT | {"origin": origin, "access-control-request-method": method}
    answer = await call(app, CHAT, method="OPTIONS", headers=headers)
    assert answer.status == 400
    assert cors_headers(answer) == {}
    error = answer.json()["error"]
    assert error["code"] == "cors_disallowed"
    assert error["message"] == f"Disallowed CORS {what}."


# --- actual requests ---------------------------------------------------------------------------


async def test_generation_answers_carry_the_headers() -> None:
    """The raw-ASGI endpoints: a reply, a stream (headers on its status line), rate-limit
    and mock headers all exposed."""
    app = create_app(
        fast_settings(cors_origins=SITE, api_keys=KEY, rate_limit_rpm=100, rate_limit_tpm=10**6)
    )
    headers = BEARER | {"origin": SITE}
    whole = await call(app, CHAT, BODY, headers=headers)
    assert whole.status == 200
    assert whole.json()["choices"][0]["message"]["content"]
    check_allowed(whole)
    exposed = whole.headers["access-control-expose-headers"].split(", ")
    ours = [n for n in whole.headers if n.startswith(("x-ratelimit-", "x-mock-", "x-request"))]
    assert len(ours) >= 11
    assert set(ours) <= set(exposed)  # a browser script can read every header we add

    stream = await call(app, CHAT, BODY | {"stream": True}, headers=headers)
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.events()[-1][2] == "[DONE]"
    assert stream.ended
    check_allowed(stream)

    embedding = {"model": "text-embedding-3-small", "input": "x"}
    check_allowed(await call(app, "/v1/embeddings", embedding, headers=headers))


@pytest.mark.parametrize(
    ("method", "path", "headers", "body", "status"),
    [
        ("POST", CHAT, {}, BODY, 401),  # raw endpoint, no key
        ("GET", "/v1/models", {}, None, 401),  # Quart route, no key
        ("GET", "/v1/nowhere", BEARER, None, 404),
        ("POST", "/v1/models", BEARER, {}, 405),  # Quart's 405
        ("GET", CHAT, BEARER, None, 405),  # the raw endpoint's 405
        ("POST", CHAT, BEARER, BODY | {"user": "x" * 4096}, 413),
        ("POST", "/tokenize", BEARER, {"prompt": "x" * 4096}, 413),  # Quart's 413
        ("POST", CHAT, BEARER | {"x-mock-fault": "503"}, BODY, 503),
        ("GET", "/health", {}, None, 200),
        ("GET", "/_mock/config", BEARER, None, 200),
        ("GET", "/v1/models", BEARER, None, 200),
    ],
)
async def test_every_route_and_error_carries_the_headers(
    method: str, path: str, headers: dict[str, str], body: Any, status: int
) -> None:
    app = create_app(fast_settings(cors_origins=SITE, api_keys=KEY, max_body_bytes=2048))
    async with app.test_app():
        answer = await call(app, path, body, method=method, headers=headers | {"origin": SITE})
    assert answer.status == status, answer.body
    check_allowed(answer)


async def test_other_origins_and_same_origin_requests_are_untouched() -> None:
    app = create_app(fast_settings(cors_origins=SITE))
    for headers in ({"origin": OTHER}, {"origin": SITE + "/"}, {}):
        answer = await call(app, CHAT, BODY, headers=headers)
        assert answer.status == 200
        assert cors_headers(answer) == {}
        assert "vary" not in answer.headers
    # An OPTIONS that is no preflight goes to the app, as before (a 405 here).
    plain = await call(app, CHAT, method="OPTIONS", headers={"origin": SITE})
    assert plain.status == 405
    check_allowed(plain)


async def test_star_answers_any_origin_with_star() -> None:
    app = create_app(fast_settings(cors_origins="*"))
    answer = await call(app, CHAT, BODY, headers={"origin": OTHER})
    check_allowed(answer, "*")
    assert "vary" not in answer.headers


# --- the knob off -----------------------------------------------------------------------------


async def test_off_by_default_and_nothing_changes() -> None:
    """No layer at all: the app is the plain class, OPTIONS answers as it always did."""
    assert Settings().server.cors_origins == ()
    app = create_app(fast_settings(api_keys=KEY))
    assert type(app) is TrioMockApp
    preflight = await call(app, CHAT, method="OPTIONS", headers=PREFLIGHT)
    assert preflight.status == 401  # auth first, as for any request
    assert cors_headers(preflight) == {}
    keyed = PREFLIGHT | BEARER
    assert (await call(app, CHAT, method="OPTIONS", headers=keyed)).status == 405
    async with app.test_app():
        quart = await call(app, "/v1/models", method="OPTIONS", headers=keyed)
    assert quart.status == 200  # Quart's automatic OPTIONS
    assert "allow" in quart.headers
    assert cors_headers(quart) == {}
    answer = await call(app, CHAT, BODY, headers=BEARER | {"origin": SITE})
    assert answer.status == 200
    assert cors_headers(answer) == {}


# --- the knob and the entry points -------------------------------------------------------------


def test_knob_parses_checks_and_reaches_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env({"TRIO_MOCK_CORS_ORIGINS": f"{SITE}, http://localhost:3000"})
    assert settings.server.cors_origins == (SITE, "http://localhost:3000")
    assert Settings.from_json(settings.to_json()) == settings  # the CLI's workers get it
    for bad in (SITE + "/", "https://App.example", "app.example", "http://a.example/path"):
        with pytest.raises(SettingsError, match=r"--cors-origins \(TRIO_MOCK_CORS_ORIGINS\)"):
            Settings().replace(cors_origins=bad)
    assert Settings().replace(cors_origins="null,*").server.cors_origins == ("null", "*")
    # hypercorn -k trio trio_mock:app builds its app from the environment.
    monkeypatch.setenv("TRIO_MOCK_CORS_ORIGINS", "*")
    monkeypatch.setenv("TRIO_MOCK_CORPUS_ARTICLES", "64")
    assert isinstance(app_from_environment(), CorsApp)


async def test_websocket_scope_passes_through() -> None:
    seen: list[Message] = []

    async def app(scope: Message, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "websocket.accept"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Message = {"type": "websocket", "path": "/v1/realtime", "headers": [(b"origin", b"x")]}
    await Cors(app, ["*"])(scope, None, send)  # type: ignore[arg-type]
    assert seen == [scope]
    assert sent == [{"type": "websocket.accept"}]  # untouched


async def test_loopback_browser_flow(start_server: StartServer) -> None:
    """A browser's sequence on a real socket: preflight without a key, then the keyed
    streamed request, its headers readable."""
    url = await start_server(cors_origins=SITE, api_keys=KEY)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        preflight = await client.options(CHAT, headers=PREFLIGHT)
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == SITE
        assert "authorization" in preflight.headers["access-control-allow-headers"]
        headers = BEARER | {"origin": SITE}
        async with client.stream(
            "POST", CHAT, json=BODY | {"stream": True}, headers=headers
        ) as stream:
            lines = [line async for line in stream.aiter_lines() if line]
        assert stream.status_code == 200
        assert lines[-1] == "data: [DONE]"
        check_allowed(stream)
        denied = await client.post(CHAT, json=BODY, headers={"origin": SITE})
        assert denied.status_code == 401
        check_allowed(denied)
        health = await client.get("/health", headers={"origin": OTHER})
        assert health.status_code == 200
        assert cors_headers(health) == {}
