"""OpenAI-style rate limits: continuously refilling per-minute buckets, per key or global.

What this module proves:
- ``go_duration`` writes durations as OpenAI's reset headers do (``20ms``, ``1.5s``, ``6m0s``).
- A ``Bucket`` refills continuously at limit/60 per second and never above its capacity.
- ``RateLimiter.charge`` under trio's MockClock: a burst up to the capacity passes, then a 429
  whose ``retry-after-ms`` is the exact wait rounded up, after which the request fits; the
  remaining/reset headers are exact; buckets are per key (Bearer or ``api-key``; no key is one
  shared anonymous bucket) or global; a refused request consumes nothing; a request over the
  whole TPM capacity is "Request too large" with no retry-after; the ``rate_limit_after_s``
  window refuses everything inside it (retry-after = time left, only with ``rate_limit_for_s``).
- Settings reject a zero limit and an unknown scope.
- Through the app (in memory, MockClock): the charge is prompt + max_tokens x choices when the
  request caps its output (chat ``max_tokens``/``max_completion_tokens``, completions' default
  16, responses ``max_output_tokens``), else prompt + the reply's tokens; embeddings charge their
  input only. Every generation endpoint, streamed or not and with or without ``/v1``, carries the
  ``x-ratelimit-*`` headers of the configured limits only, and none without limits.
- The 429 has OpenAI's shape (spec-valid body, type ``requests``/``tokens``, code
  ``rate_limit_exceeded``, OpenAI's wording, ``retry-after`` and ``retry-after-ms``), comes after
  request validation and before an injected fault.
- Over loopback, the official SDK raises ``RateLimitError`` without retries and succeeds with
  them, after honouring ``retry-after-ms``; ``rate_limit_after_s`` counts from server start.
"""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
import trio
import trio.testing

from conftest import SDK_TIMEOUT_S, fast_settings
from openapi import validate
from trio_mock import create_app
from trio_mock._config._knobs import SettingsError
from trio_mock._openai._errors import OpenAIError
from trio_mock._serve._ratelimit import Bucket, RateLimiter, go_duration

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from openai.types.chat import ChatCompletionMessageParam
    from quart.typing import TestClientProtocol
    from quart.wrappers import Response

    from conftest import StartServer

Json = dict[str, Any]
Pairs = list[tuple[bytes, bytes]]

HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
CHAT: Json = {"model": "m", "messages": HI}
EMBED: Json = {"model": "text-embedding-3-small", "input": "hi there"}
LEARN_MORE = "Visit https://platform.openai.com/account/rate-limits to learn more."
ORG = "org-trio-mock"
KINDS = ("requests", "tokens")
# A short fixed reply, so a cap (max_tokens, completions' default 16) differs from the reply.
FIXED: Json = {"output_mode": "fixed", "fixed_text": "Fine."}


def limiter(**leaves: Any) -> RateLimiter:
    return RateLimiter(fast_settings(**leaves).rate_limits)


def bearer(key: str) -> Pairs:
    return [(b"authorization", f"Bearer {key}".encode())]


def as_dict(pairs: Pairs | tuple[tuple[bytes, bytes], ...]) -> dict[str, str]:
    found = {name.decode(): value.decode() for name, value in pairs}
    assert len(found) == len(pairs), pairs  # no header twice
    return found


def refusal(limits: RateLimiter, headers: Pairs, tokens: int, model: str = "m") -> OpenAIError:
    """The 429 that ``charge`` must raise now."""
    with pytest.raises(OpenAIError) as refused:
        limits.charge(headers, model, tokens)
    error = refused.value
    assert error.status == 429
    assert error.code == "rate_limit_exceeded"
    assert error.param is None
    return error


def ratelimit_headers(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-ratelimit-")}


def expected_names(kinds: tuple[str, ...]) -> set[str]:
    return {
        f"x-ratelimit-{part}-{kind}" for kind in kinds for part in ("limit", "remaining", "reset")
    }


# --- go_duration and Bucket ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.02, "20ms"),
        (0.0201, "21ms"),  # milliseconds round up
        (0.0001, "1ms"),
        (0.5, "500ms"),
        (0.999, "999ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (1.08, "1.08s"),
        (8.5714285, "8.571s"),  # at most 3 decimals
        (59.967, "59.967s"),
        (2.0001, "2s"),  # trailing zeros (and the point) stripped
        (60.0, "1m0s"),
        (90.5, "1m30.5s"),
        (360.0, "6m0s"),
        (3599.25, "59m59.25s"),
    ],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_go_duration_zero() -> None:
    assert go_duration(0.0) == "0s"


def test_bucket_refills_continuously_up_to_capacity() -> None:
    bucket = Bucket(120, now=10.0)
    assert bucket.level == 120
    assert bucket.per_s == 2.0  # limit/60 per second
    bucket.level = 0.0
    bucket.refill(10.25)
    assert bucket.level == pytest.approx(0.5)  # continuous, not a step per minute
    bucket.refill(11.0)
    assert bucket.level == pytest.approx(2.0)
    assert bucket.wait_s(10) == pytest.approx(4.0)
    assert bucket.wait_s(1) == 0.0
    bucket.refill(1000.0)
    assert bucket.level == 120  # capped at a minute's allowance
    assert bucket.wait_s(120) == 0.0


# --- RateLimiter.charge under MockClock --------------------------------------------------------


async def test_burst_then_retry_after_is_the_exact_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = limiter(rate_limit_rpm=7)  # refills 7/60 per second: one request per 8.571... s
    for left in range(6, -1, -1):
        got = as_dict(limits.charge(bearer("k"), "m", 10))
        assert got["x-ratelimit-remaining-requests"] == str(left)
    error = refusal(limits, bearer("k"), 10)
    assert error.type == "requests"
    headers = as_dict(error.headers)
    assert headers["retry-after-ms"] == "8572"  # ceil(60 / 7 * 1000)
    assert headers["retry-after"] == "9"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "Please try again in 8.571s." in error.message
    autojump_clock.jump(8.571)  # a millisecond short: still refused, for under 1 ms
    assert as_dict(refusal(limits, bearer("k"), 10).headers)["retry-after-ms"] == "1"
    autojump_clock.jump(0.001)
    got = as_dict(limits.charge(bearer("k"), "m", 10))
    assert got["x-ratelimit-remaining-requests"] == "0"
    refusal(limits, bearer("k"), 10)  # and only that one


async def test_remaining_and_reset_headers_are_exact(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = limiter(rate_limit_rpm=60, rate_limit_tpm=1000)
    assert as_dict(limits.charge([], "m", 18)) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",  # one request back at 1/s
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "982",
        "x-ratelimit-reset-tokens": "1.08s",  # 18 tokens at 1000/60 per second
    }
    autojump_clock.jump(0.75)
    got = as_dict(limits.charge([], "m", 2))
    # 59 + 0.75 - 1 = 58.75 requests left, 982 + 12.5 - 2 = 992.5 tokens: floors
    assert got["x-ratelimit-remaining-requests"] == "58"
    assert got["x-ratelimit-reset-requests"] == "1.25s"
    assert got["x-ratelimit-remaining-tokens"] == "992"
    assert got["x-ratelimit-reset-tokens"] == "450ms"  # 7.5 tokens short at 16.67/s
    one = limiter(rate_limit_rpm=1)
    assert as_dict(one.charge([], "m", 1))["x-ratelimit-reset-requests"] == "1m0s"
    only_tokens = limiter(rate_limit_tpm=6000)
    assert as_dict(only_tokens.charge([], "m", 2)) == {
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-tokens": "5998",
        "x-ratelimit-reset-tokens": "20ms",
    }


async def test_per_key_buckets(autojump_clock: trio.testing.MockClock) -> None:
    limits = limiter(rate_limit_rpm=1)  # scope "key" is the default
    limits.charge(bearer("alpha"), "m", 1)
    refusal(limits, bearer("alpha"), 1)
    limits.charge(bearer("bravo"), "m", 1)  # another key, its own bucket
    refusal(limits, bearer("bravo"), 1)
    refusal(limits, [(b"api-key", b"alpha")], 1)  # Azure's header names the same key
    limits.charge([(b"api-key", b"charlie")], "m", 1)
    refusal(limits, bearer("charlie"), 1)
    limits.charge([], "m", 1)  # no key: the anonymous bucket, full so far
    refusal(limits, [], 1)  # ... and shared by everyone without a key
    refusal(limits, [(b"authorization", b"Basic xyz")], 1)  # not a key either


async def test_global_scope_shares_one_bucket(autojump_clock: trio.testing.MockClock) -> None:
    limits = limiter(rate_limit_rpm=2, rate_limit_scope="global")
    limits.charge(bearer("alpha"), "m", 1)
    limits.charge([(b"api-key", b"bravo")], "m", 1)
    refusal(limits, bearer("charlie"), 1)
    refusal(limits, [], 1)


async def test_refused_request_consumes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    limits = limiter(rate_limit_rpm=10, rate_limit_tpm=100)
    limits.charge([], "m", 60)
    error = refusal(limits, [], 60)  # refused on tokens: no request taken either
    assert error.type == "tokens"
    assert as_dict(error.headers)["x-ratelimit-remaining-requests"] == "9"
    assert "Limit 100, Used 60, Requested 60." in error.message
    got = as_dict(limits.charge([], "m", 40))
    assert got["x-ratelimit-remaining-requests"] == "8"
    assert got["x-ratelimit-remaining-tokens"] == "0"

    limits = limiter(rate_limit_rpm=1, rate_limit_tpm=100)
    limits.charge([], "m", 10)
    error = refusal(limits, [], 10)  # refused on requests: no tokens taken
    assert error.type == "requests"
    assert as_dict(error.headers)["x-ratelimit-remaining-tokens"] == "90"
    assert "Limit 1, Used 1, Requested 1." in error.message


async def test_request_over_capacity_is_too_large(autojump_clock: trio.testing.MockClock) -> None:
    limits = limiter(rate_limit_rpm=5, rate_limit_tpm=100)
    error = refusal(limits, [], 101, model="gpt-4o")
    assert error.type == "tokens"
    assert error.message == (
        f"Request too large for gpt-4o in organization {ORG} on tokens per min (TPM): "
        "Limit 100, Requested 101. The input or output tokens must be reduced in order to run "
        f"successfully. {LEARN_MORE}"
    )
    headers = as_dict(error.headers)
    assert "retry-after" not in headers  # waiting never helps
    assert "retry-after-ms" not in headers
    assert headers["x-ratelimit-remaining-tokens"] == "100"
    got = as_dict(limits.charge([], "m", 100))  # nothing was taken
    assert got["x-ratelimit-remaining-tokens"] == "0"
    assert got["x-ratelimit-remaining-requests"] == "4"


async def test_window_refuses_then_reopens(autojump_clock: trio.testing.MockClock) -> None:
    limits = limiter(rate_limit_after_s=10, rate_limit_for_s=5)
    assert limits.active
    limits.start()
    autojump_clock.jump(9.75)
    assert limits.charge(bearer("k"), "m", 1) == []  # no limit configured: no headers
    for jump, ms, seconds in [(0.25, 5000, 5), (2.5, 2500, 3), (2.25, 250, 1)]:
        autojump_clock.jump(jump)  # to 10, 12.5 and 14.75 s after the start
        error = refusal(limits, bearer("k"), 1, model="gpt-4o")
        assert error.type == "tokens"
        assert error.message.startswith(
            f"Rate limit reached for gpt-4o in organization {ORG} on tokens per min (TPM): "
        )
        assert "from 10 s after its start, for 5 s." in error.message
        assert as_dict(error.headers) == {"retry-after": str(seconds), "retry-after-ms": str(ms)}
    autojump_clock.jump(0.25)
    assert limits.charge(bearer("k"), "m", 1) == []  # the window is over


async def test_window_without_end_has_no_retry_after(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = limiter(rate_limit_rpm=100, rate_limit_after_s=10)
    limits.start()
    autojump_clock.jump(9.5)
    limits.charge([], "m", 1)
    for jump in (0.5, 1000.0):
        autojump_clock.jump(jump)
        error = refusal(limits, [], 1)
        assert error.type == "tokens"
        assert error.headers == ()
        assert "from 10 s after its start." in error.message


async def test_window_counts_from_first_request_without_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limits = limiter(rate_limit_after_s=10, rate_limit_for_s=5)
    autojump_clock.jump(100.0)  # long before anything happens: not counted
    limits.charge([], "m", 1)
    autojump_clock.jump(9.5)
    limits.charge([], "m", 1)
    autojump_clock.jump(0.5)
    refusal(limits, [], 1)


@pytest.mark.parametrize(
    ("leaf", "value"),
    [
        ("rate_limit_rpm", 0),
        ("rate_limit_rpm", -5),
        ("rate_limit_tpm", 0),
        ("rate_limit_scope", "org"),
        ("rate_limit_after_s", -1),
        ("rate_limit_for_s", 0),
    ],
)
def test_bad_settings_are_rejected(leaf: str, value: object) -> None:
    flag = "--" + leaf.replace("_", "-")
    with pytest.raises(SettingsError, match=flag):
        fast_settings(**{leaf: value})


def test_good_settings() -> None:
    settings = fast_settings(
        rate_limit_rpm="30", rate_limit_tpm=1, rate_limit_scope="global", rate_limit_after_s=0
    ).rate_limits
    assert settings.rate_limit_rpm == 30
    assert settings.rate_limit_tpm == 1
    assert settings.rate_limit_scope == "global"
    assert settings.rate_limit_after_s == 0
    assert settings.rate_limit_for_s is None
    assert fast_settings().rate_limits.rate_limit_scope == "key"
    assert not RateLimiter(fast_settings().rate_limits).active


# --- through the app, in memory under MockClock -----------------------------------------------


@asynccontextmanager
async def in_memory(**leaves: Any) -> AsyncGenerator[TestClientProtocol]:
    """A test client of a fresh app (started, so ``before_serving`` ran)."""
    app = create_app(fast_settings(**leaves))
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def charged(client: TestClientProtocol, path: str, body: Json) -> tuple[int, Json]:
    """POST ``body`` to a fresh app's client; the tokens charged (from the remaining header,
    nothing refills since the clock stands still) and the reply."""
    before = trio.current_time()
    response = await client.post(path, json=body)
    assert response.status_code == 200, await response.get_data()
    assert trio.current_time() == before  # zero latency: no refill to blur the drop
    remaining = int(response.headers["x-ratelimit-remaining-tokens"])
    return TPM - remaining, await response.get_json()


TPM = 1_000_000


async def test_chat_charges_max_tokens_per_choice(autojump_clock: trio.testing.MockClock) -> None:
    async with in_memory(rate_limit_tpm=TPM, **FIXED) as client:
        tokens, reply = await charged(
            client, "/v1/chat/completions", CHAT | {"max_tokens": 7, "n": 2}
        )
    prompt = reply["usage"]["prompt_tokens"]
    assert prompt > 0
    assert reply["usage"]["completion_tokens"] < 14  # the short reply is not what counts
    assert tokens == prompt + 2 * 7

    body = CHAT | {"max_completion_tokens": 5, "max_tokens": 9, "n": 3}
    async with in_memory(rate_limit_tpm=TPM, **FIXED) as client:
        tokens, reply = await charged(client, "/v1/chat/completions", body)
    assert tokens == reply["usage"]["prompt_tokens"] + 3 * 5  # max_completion_tokens wins


async def test_chat_without_cap_charges_the_reply(autojump_clock: trio.testing.MockClock) -> None:
    async with in_memory(rate_limit_tpm=TPM) as client:  # corpus replies, ~128 tokens each
        tokens, reply = await charged(client, "/v1/chat/completions", CHAT | {"n": 2})
    usage = reply["usage"]
    assert usage["completion_tokens"] > 16
    assert tokens == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_completions_charge_default_16(autojump_clock: trio.testing.MockClock) -> None:
    async with in_memory(rate_limit_tpm=TPM, **FIXED) as client:
        tokens, reply = await charged(client, "/v1/completions", {"model": "m", "prompt": "hi"})
    assert reply["usage"]["completion_tokens"] < 16
    assert tokens == reply["usage"]["prompt_tokens"] + 16

    body = {"model": "m", "prompt": ["hi", "hello there"], "n": 2, "max_tokens": 3}
    async with in_memory(rate_limit_tpm=TPM, **FIXED) as client:
        tokens, reply = await charged(client, "/v1/completions", body)
    assert tokens == reply["usage"]["prompt_tokens"] + 4 * 3  # 2 prompts x n=2 choices


async def test_responses_charge_max_output_tokens(autojump_clock: trio.testing.MockClock) -> None:
    body = {"model": "m", "input": "hi", "max_output_tokens": 50}
    async with in_memory(rate_limit_tpm=TPM, **FIXED) as client:
        tokens, reply = await charged(client, "/v1/responses", body)
    usage = reply["usage"]
    assert usage["output_tokens"] < 50
    assert tokens == usage["input_tokens"] + 50

    async with in_memory(rate_limit_tpm=TPM, **FIXED) as client:
        tokens, reply = await charged(client, "/v1/responses", {"model": "m", "input": "hi"})
    assert tokens == reply["usage"]["input_tokens"] + reply["usage"]["output_tokens"]


async def test_embeddings_charge_input_only(autojump_clock: trio.testing.MockClock) -> None:
    body = EMBED | {"input": ["the quick brown fox", "jumps over the lazy dog"]}
    async with in_memory(rate_limit_tpm=TPM) as client:
        tokens, reply = await charged(client, "/v1/embeddings", body)
    assert reply["usage"]["prompt_tokens"] > 2
    assert tokens == reply["usage"]["prompt_tokens"]


GENERATION = [
    ("/v1/chat/completions", CHAT),
    ("/v1/chat/completions", CHAT | {"stream": True}),
    ("/chat/completions", CHAT | {"stream": True}),
    ("/v1/completions", {"model": "m", "prompt": "hi"}),
    ("/completions", {"model": "m", "prompt": "hi", "stream": True}),
    ("/v1/responses", {"model": "m", "input": "hi"}),
    ("/v1/responses", {"model": "m", "input": "hi", "stream": True}),
    ("/v1/embeddings", EMBED),
    ("/embeddings", EMBED),
]
LIMITS = [
    ({"rate_limit_rpm": 100}, ("requests",)),
    ({"rate_limit_tpm": 100_000}, ("tokens",)),
    ({"rate_limit_rpm": 100, "rate_limit_tpm": 100_000}, KINDS),
    ({}, ()),
    ({"rate_limit_after_s": 3600}, ()),  # a window only: limits nothing yet, no headers
]


@pytest.mark.parametrize(("path", "body"), GENERATION)
async def test_every_endpoint_has_the_configured_headers(
    autojump_clock: trio.testing.MockClock, path: str, body: Json
) -> None:
    for leaves, kinds in LIMITS:
        async with in_memory(**leaves, **FIXED) as client:
            response = await client.post(path, json=body)
            assert response.status_code == 200, await response.get_data()
            got = ratelimit_headers(response.headers)
            assert set(got) == expected_names(kinds), leaves
            if "requests" in kinds:
                assert got["x-ratelimit-limit-requests"] == "100"
                assert got["x-ratelimit-remaining-requests"] == "99"
                assert got["x-ratelimit-reset-requests"] == "600ms"
            if "tokens" in kinds:
                assert got["x-ratelimit-limit-tokens"] == "100000"
                assert 0 < 100_000 - int(got["x-ratelimit-remaining-tokens"]) < 200


async def check_429(response: Response, kind: str) -> Json:
    """An OpenAI rate-limit refusal; its error object."""
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/json"
    body: Json = await response.get_json()
    validate("ErrorResponse", body)
    assert set(body) == {"error"}
    error: Json = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == kind
    assert error["code"] == "rate_limit_exceeded"
    assert error["param"] is None
    return error


def check_retry_after(headers: Any) -> tuple[int, int]:
    """``retry-after`` (whole seconds) and ``retry-after-ms``, both integers >= 1."""
    seconds, ms = headers["retry-after"], headers["retry-after-ms"]
    assert seconds.isdigit()
    assert ms.isdigit()
    assert int(seconds) >= 1
    assert int(ms) >= 1
    assert int(seconds) == math.ceil(int(ms) / 1000)
    return int(seconds), int(ms)


async def test_429_on_requests(autojump_clock: trio.testing.MockClock) -> None:
    async with in_memory(rate_limit_rpm=2, rate_limit_tpm=100_000) as client:
        for _ in range(2):
            assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        body = CHAT | {"model": "gpt-4o-mini", "stream": True}  # refused as JSON, not SSE
        response = await client.post("/v1/chat/completions", json=body)
    error = await check_429(response, "requests")
    assert error["message"] == (
        f"Rate limit reached for gpt-4o-mini in organization {ORG} on requests per min (RPM): "
        f"Limit 2, Used 2, Requested 1. Please try again in 30s. {LEARN_MORE}"
    )
    assert check_retry_after(response.headers) == (30, 30_000)
    got = ratelimit_headers(response.headers)
    assert set(got) == expected_names(KINDS)
    assert got["x-ratelimit-remaining-requests"] == "0"
    assert got["x-ratelimit-reset-requests"] == "1m0s"


async def test_429_on_tokens(autojump_clock: trio.testing.MockClock) -> None:
    # 60 TPM refills one token a second, so every wait is whole seconds
    async with in_memory(rate_limit_tpm=60, **FIXED) as client:
        body = {"model": "m", "input": "hi", "max_output_tokens": 32}
        first = await client.post("/v1/responses", json=body)
        assert first.status_code == 200
        charge = (await first.get_json())["usage"]["input_tokens"] + 32
        assert 30 < charge <= 60
        response = await client.post("/v1/responses", json=body)
    error = await check_429(response, "tokens")
    wait = 2 * charge - 60  # short of `charge`, with 60 - charge left
    assert error["message"] == (
        f"Rate limit reached for m in organization {ORG} on tokens per min (TPM): "
        f"Limit 60, Used {charge}, Requested {charge}. Please try again in {wait}s. {LEARN_MORE}"
    )
    assert check_retry_after(response.headers) == (wait, wait * 1000)
    got = ratelimit_headers(response.headers)
    assert set(got) == expected_names(("tokens",))
    assert got["x-ratelimit-remaining-tokens"] == str(60 - charge)


async def test_429_too_large_and_window(autojump_clock: trio.testing.MockClock) -> None:
    async with in_memory(rate_limit_tpm=20) as client:
        response = await client.post("/v1/chat/completions", json=CHAT | {"max_tokens": 100})
    error = await check_429(response, "tokens")
    assert error["message"].startswith(f"Request too large for m in organization {ORG} on ")
    assert "retry-after" not in response.headers
    assert "retry-after-ms" not in response.headers
    assert set(ratelimit_headers(response.headers)) == expected_names(("tokens",))

    async with in_memory(rate_limit_after_s=0, rate_limit_for_s=90) as client:
        response = await client.post("/v1/embeddings", json=EMBED)
    await check_429(response, "tokens")
    assert check_retry_after(response.headers) == (90, 90_000)


async def test_window_counts_from_app_start(autojump_clock: trio.testing.MockClock) -> None:
    async with in_memory(rate_limit_after_s=0.3, rate_limit_for_s=1) as client:
        await trio.sleep(0.25)
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    async with in_memory(rate_limit_after_s=0.3, rate_limit_for_s=1) as client:
        await trio.sleep(0.5)  # the first request, but 0.5 s after the start
        response = await client.post("/v1/chat/completions", json=CHAT)
        await check_429(response, "tokens")
        assert response.headers["retry-after-ms"] == "800"
        await trio.sleep(0.8)
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_order_of_checks_and_one_bucket_per_app(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with in_memory(rate_limit_rpm=2) as client:
        bad = await client.post("/v1/chat/completions", json=CHAT | {"n": 0})
        assert bad.status_code == 400  # validation comes first and costs nothing
        assert not ratelimit_headers(bad.headers)
        first = await client.post("/v1/chat/completions", json=CHAT)
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        second = await client.post("/embeddings", json=EMBED)  # another endpoint, same bucket
        assert second.headers["x-ratelimit-remaining-requests"] == "0"
        faulted = await client.post(
            "/v1/completions", json={"model": "m", "prompt": "hi"}, headers={"x-mock-fault": "503"}
        )
        await check_429(faulted, "requests")  # the rate limit answers before a fault
    async with in_memory(rate_limit_rpm=1, api_keys="sk-one") as client:
        anonymous = await client.post("/v1/chat/completions", json=CHAT)
        assert anonymous.status_code == 401  # auth first: a stranger spends nothing
        keyed = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-one"}
        )
        assert keyed.status_code == 200
        assert keyed.headers["x-ratelimit-remaining-requests"] == "0"


# --- the official SDK over loopback (real clock) ----------------------------------------------


def sdk(url: str, retries: int) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{url}/v1", api_key="sk-test", max_retries=retries, timeout=SDK_TIMEOUT_S
    )


@pytest.mark.slow
async def test_sdk_rate_limit_error_and_retry(start_server: StartServer) -> None:
    url = await start_server(rate_limit_tpm=6000)  # 100 tokens/s
    headers = {"authorization": "Bearer sk-test"}  # the SDK's bucket
    async with httpx.AsyncClient(base_url=url, timeout=SDK_TIMEOUT_S, headers=headers) as http:
        big = await http.post("/v1/chat/completions", json=CHAT | {"max_tokens": 5900})
        assert big.status_code == 200, big.text
        left = int(big.headers["x-ratelimit-remaining-tokens"])
        assert 0 < left < 100
        refused = await http.post("/v1/chat/completions", json=CHAT | {"max_tokens": 180})
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["type"] == "tokens"
    _, ms = check_retry_after(refused.headers)
    assert 0 < ms <= 1200  # about (188 - ~92) tokens at 100/s

    with pytest.raises(openai.RateLimitError) as no_retry:
        async with sdk(url, 0) as client:
            await client.chat.completions.create(model="m", messages=HI, max_tokens=180)
    assert no_retry.value.status_code == 429
    assert no_retry.value.code == "rate_limit_exceeded"
    assert no_retry.value.type == "tokens"
    assert int(no_retry.value.response.headers["retry-after-ms"]) >= 1

    start = trio.current_time()
    async with sdk(url, 3) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="m", messages=HI, max_tokens=180
        )
    assert raw.retries_taken >= 1  # it was refused, waited retry-after-ms, then got through
    assert raw.parse().choices[0].message.content
    assert int(raw.headers["x-ratelimit-remaining-tokens"]) < 100
    assert trio.current_time() - start < 5  # loose: it honoured ~1 s, not a long backoff


@pytest.mark.slow
async def test_sdk_retries_through_a_window(start_server: StartServer) -> None:
    url = await start_server(rate_limit_after_s=0.2, rate_limit_for_s=0.6)
    await trio.sleep(0.25)
    async with httpx.AsyncClient(base_url=url, timeout=SDK_TIMEOUT_S) as http:
        refused = await http.post("/v1/chat/completions", json=CHAT)
    assert refused.status_code == 429, refused.text
    _, ms = check_retry_after(refused.headers)
    assert ms <= 600
    with pytest.raises(openai.RateLimitError) as no_retry:
        async with sdk(url, 0) as client:
            await client.chat.completions.create(model="m", messages=HI)
    assert no_retry.value.code == "rate_limit_exceeded"
    async with sdk(url, 3) as client:
        raw = await client.chat.completions.with_raw_response.create(model="m", messages=HI)
    assert raw.retries_taken >= 1
    assert raw.parse().choices[0].message.content


async def test_window_counts_from_server_start_over_loopback(start_server: StartServer) -> None:
    url = await start_server(rate_limit_after_s=0.3)
    await trio.sleep(0.5)  # nothing sent yet: the window opened anyway
    async with httpx.AsyncClient(base_url=url, timeout=SDK_TIMEOUT_S) as http:
        response = await http.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 429, response.text
    error = response.json()["error"]
    assert error["type"] == "tokens"
    assert error["code"] == "rate_limit_exceeded"
    assert "retry-after" not in response.headers
