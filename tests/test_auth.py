"""API keys: the official SDK's AuthenticationError for a missing or wrong key, success with
a right one (Bearer or Azure's ``api-key``), open health checks, keys never shown."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from conftest import server_in_thread
from trio_mock import Settings
from trio_mock._serve._auth import Auth, masked, presented_key

KEYS = ("sk-test-alpha-0001", "sk-test-bravo-0002")
CHAT: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=10)


def test_sdk_sees_authentication_error_and_success() -> None:
    with server_in_thread(api_keys=",".join(KEYS)) as url:
        with (
            client(url, "sk-not-a-known-key-123") as unknown,
            pytest.raises(openai.AuthenticationError) as wrong,
        ):
            unknown.chat.completions.create(**CHAT)
        assert wrong.value.status_code == 401
        assert wrong.value.code == "invalid_api_key"
        assert "sk-not-a-known-key-123" not in str(wrong.value)  # masked, as OpenAI does
        for key in KEYS:
            with client(url, key) as known:
                reply = known.chat.completions.create(**CHAT)
            assert reply.choices[0].message.content
        with client(url, "wrong") as wrong_key:
            with pytest.raises(openai.AuthenticationError):
                wrong_key.embeddings.create(model="text-embedding-3-small", input="x")
            with pytest.raises(openai.AuthenticationError):
                wrong_key.models.list()


def test_raw_headers_and_open_routes() -> None:
    with (
        server_in_thread(api_keys=KEYS[0]) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        missing = http.post("/v1/chat/completions", json=CHAT)
        assert missing.status_code == 401
        error = missing.json()["error"]
        assert error["code"] == "invalid_api_key"
        assert error["type"] == "invalid_request_error"
        assert "Authorization" in error["message"]
        assert missing.headers["x-request-id"]
        azure = http.post("/chat/completions", json=CHAT, headers={"api-key": KEYS[0]})
        assert azure.status_code == 200, azure.text
        bearer = {"authorization": f"Bearer {KEYS[0]}"}
        assert (
            http.post(
                "/v1/completions", json={"model": "m", "prompt": "x"}, headers=bearer
            ).status_code
            == 200
        )
        assert http.get("/health").status_code == 200  # open to load balancers
        assert http.get("/").status_code == 401
        index = http.get("/", headers=bearer).json()
        assert index["settings"]["server"]["api_keys"] == "1 set"  # never the key itself
        assert KEYS[0] not in http.get("/", headers=bearer).text
        assert http.post("/tokenize", json={"prompt": "x"}).status_code == 401


def test_no_keys_means_no_auth() -> None:
    with server_in_thread() as url:
        reply = httpx.post(f"{url}/v1/chat/completions", json=CHAT, timeout=10)
        assert reply.status_code == 200


def test_presented_key_and_mask() -> None:
    assert presented_key([(b"Authorization", b"Bearer  sk-1 ")]) == "sk-1"
    assert presented_key([(b"api-key", b"az-1")]) == "az-1"
    assert presented_key([(b"authorization", b"Basic abc")]) is None
    assert presented_key([]) is None
    assert masked("sk-0123456789abcdef") == "sk-************cdef"
    assert masked("short") == "*****"
    auth = Auth(["k1"])
    auth.check("/health", [])  # open
    auth.check("/v1/chat/completions", [(b"authorization", b"Bearer k1")])
    with pytest.raises(Exception, match="Incorrect API key"):
        auth.check("/v1/chat/completions", [(b"authorization", b"Bearer k2")])


def test_workers_get_the_keys_but_get_root_does_not() -> None:
    settings = Settings().replace(api_keys="a-key-1,a-key-2")
    assert Settings.from_json(settings.to_json()).server.api_keys == ("a-key-1", "a-key-2")
    assert "a-key-1" not in str(settings.public())
