"""Chat behaviour through the app (in memory): text modes, token accounting, limits, index."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import fast_settings
from helpers import ENC
from trio_mock import __version__, create_app


async def chat(body: dict[str, Any], **leaves: Any) -> dict[str, Any]:
    app = create_app(fast_settings(**leaves))
    async with app.test_app() as test_app:
        response = await test_app.test_client().post(
            "/v1/chat/completions", json={"model": "m"} | body
        )
        data: dict[str, Any] = await response.get_json()
        assert response.status_code == 200, data
        return data


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


async def test_prompt_tokens_follow_openai_accounting() -> None:
    # OpenAI counts {"role": "user", "content": "Hello"} as 8 prompt tokens for cl100k models.
    data = await chat({"messages": user("Hello"), "max_tokens": 1})
    assert data["usage"]["prompt_tokens"] == 8
    messages = [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [{"type": "text", "text": "Describe"}, {"type": "text", "text": " this."}],
        },
    ]
    data = await chat({"messages": messages, "max_tokens": 1})
    expected = 3 + sum(3 + 1 + len(ENC.encode(t)) for t in ["You are terse.", "Describe this."])
    assert data["usage"]["prompt_tokens"] == expected


async def test_echo_mode_repeats_the_last_user_message() -> None:
    messages = [*user("first"), {"role": "assistant", "content": "ok"}, *user("Echo me, café ☕!")]
    data = await chat({"messages": messages}, output_mode="echo")
    assert data["choices"][0]["message"]["content"] == "Echo me, café ☕!"
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["completion_tokens"] == len(ENC.encode("Echo me, café ☕!"))


async def test_echo_mode_is_capped_and_padded() -> None:
    capped = await chat(
        {"messages": user("one two three four five"), "max_tokens": 2}, output_mode="echo"
    )
    assert capped["choices"][0]["message"]["content"] == "one two"
    assert capped["choices"][0]["finish_reason"] == "length"
    padded = await chat({"messages": user("la"), "min_tokens": 3}, output_mode="echo")
    assert padded["choices"][0]["message"]["content"] == "lalala"


async def test_fixed_mode_answers_the_configured_text() -> None:
    data = await chat({"messages": user("?")}, output_mode="fixed", fixed_text="Forty-two.")
    assert data["choices"][0]["message"]["content"] == "Forty-two."
    assert data["usage"]["completion_tokens"] == len(ENC.encode("Forty-two."))


async def test_corpus_length_follows_the_configured_distribution() -> None:
    data = await chat(
        {"messages": user("x"), "n": 64}, output_tokens_mean=20, output_tokens_stddev=0
    )
    assert {c["finish_reason"] for c in data["choices"]} == {"stop"}
    assert data["usage"]["completion_tokens"] == 64 * 20
    varied = await chat(
        {"messages": user("x"), "n": 128, "seed": 1}, output_tokens_mean=50, output_tokens_stddev=10
    )
    lengths = [len(ENC.encode(c["message"]["content"])) for c in varied["choices"]]
    assert sum(lengths) / len(lengths) == pytest.approx(50, abs=3)
    assert len(set(lengths)) > 5


@pytest.mark.parametrize(
    ("body", "tokens", "finish"),
    [
        ({"max_tokens": 5}, 5, "length"),
        ({"max_completion_tokens": 6, "max_tokens": 50}, 6, "length"),  # the newer name wins
        ({"min_tokens": 30}, 30, "stop"),
        ({"ignore_eos": True, "max_tokens": 40}, 40, "length"),
    ],
)
async def test_length_controls(body: dict[str, Any], tokens: int, finish: str) -> None:
    data = await chat({"messages": user("x")} | body, output_tokens_mean=10, output_tokens_stddev=0)
    assert data["usage"]["completion_tokens"] == tokens
    assert data["choices"][0]["finish_reason"] == finish


async def test_seed_reproduces_text_and_n_gives_distinct_indexes() -> None:
    a = await chat({"messages": user("x"), "seed": 5, "n": 3})
    b = await chat({"messages": user("x"), "seed": 5, "n": 3})
    assert [c["message"]["content"] for c in a["choices"]] == [
        c["message"]["content"] for c in b["choices"]
    ]
    assert [c["index"] for c in a["choices"]] == [0, 1, 2]
    assert a["id"] != b["id"]


async def test_index_reports_version_tokenizer_and_settings() -> None:
    app = create_app(fast_settings(models=("alpha",)))
    async with app.test_app() as test_app:
        data = await (await test_app.test_client().get("/")).get_json()
    assert data["version"] == __version__
    assert "cl100k_base" in data["tokenizer"]
    assert "POST /v1/chat/completions" in data["endpoints"]
    assert data["settings"]["models"]["models"] == ["alpha"]
    assert data["settings"]["latency"]["ttft_ms"] == 0


async def test_a_bug_is_an_openai_shaped_500_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trio_mock._openai._model import MockModel

    async def broken(self: MockModel, *args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(MockModel, "plan", broken)
    app = create_app(fast_settings())
    async with app.test_app() as test_app:
        response = await test_app.test_client().post(
            "/v1/chat/completions", json={"model": "m", "messages": user("x")}
        )
        body = await response.get_data(as_text=True)
    assert response.status_code == 500
    assert "boom" not in body
    assert "Traceback" not in body
    assert '"type":"server_error"' in body
