"""Values a real server refuses are refused here too (issue 15, item 12).

What this file proves:

- Requests: the sampling parameters OpenAI documents with a range (``temperature`` 0..2,
  ``top_p`` 0..1, ``presence_penalty`` and ``frequency_penalty`` -2..2, ``logit_bias``
  values -100..100 on token-id keys, ``top_logprobs`` 0..20, completions' ``best_of``
  0..20) are a 400 ``invalid_request_error`` whose ``param`` names the field,
  on chat, completions and responses alike; the edges of each range are served.
- Content types: a chat content part whose type the role may not send, and a responses
  ``input`` item of an unknown type, role or content part type, are a 400 naming the path.
- Knobs: every number knob has an upper bound as well as a lower one. Out of range, NaN
  and infinite values are refused at start-up (``SettingsError`` naming the flag, exit
  status 2 from the command line, environment and TOML) and at run time (400 naming the
  knob from ``PATCH /_mock/config`` and ``POST /configure``); the ``x-mock-*`` headers,
  the ``slow-headers`` fault and scripted rules share the knobs' ranges, so the absurd
  latencies of the issue (``1e308`` ms, ``itl_ms`` ``1e30``, ``output_tokens_mean``
  ``1e12``) are refused on every surface while the largest allowed value (an hour) works.

Requests go straight into the app's ASGI entry point (tests/asgi.py) on MockClock, so a
value wrongly accepted fails its test at once instead of waiting out ``--max-request-s``;
a handful of start-up cases run the real command line, in parallel and bounded in time.
"""

from __future__ import annotations

import subprocess
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asgi import Answer, call
from conftest import check_error, fast_settings
from helpers import clean_env
from trio_mock import create_app
from trio_mock._app._cli import load_settings
from trio_mock._config._knobs import SettingsError
from trio_mock._config._ranges import MAX_MS, MAX_SEED, MAX_TOKENS, Range, shown
from trio_mock._config._settings import KNOBS, Settings, describe

if typing.TYPE_CHECKING:
    import trio.testing

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
CONFIG = "/_mock/config"
Json = dict[str, Any]
BODIES: dict[str, Json] = {
    CHAT: {"model": "m", "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 2},
    COMPLETIONS: {"model": "m", "prompt": "Hi.", "max_tokens": 2},
    RESPONSES: {"model": "m", "input": "Hi.", "max_output_tokens": 2},
}
START_TIMEOUT_S = 30  # a start-up that is wrongly accepted would serve: it is killed then


async def post(
    path: str, body: Any, headers: dict[str, str] | None = None, **leaves: Any
) -> Answer:
    app = create_app(fast_settings(corpus_articles=8, **leaves))
    return await call(app, path, body, headers=headers or {})


def refused(answer: Answer, param: str | None, code: str | None) -> str:
    """A 400 ``invalid_request_error`` naming ``param`` with ``code``; its message."""
    error = check_error(answer.response(), 400, param)
    assert error["code"] == code, error
    message: str = error["message"]
    return message


# --- request values: OpenAI's documented ranges ---------------------------------------------

SAMPLING_PATHS = [CHAT, COMPLETIONS, RESPONSES]
PENALTY_PATHS = [CHAT, COMPLETIONS]  # the responses API has no penalties
OUT_OF_RANGE: list[tuple[str, float, str, str]] = [
    # (field, value, code, words the message must hold)
    ("temperature", -5, "decimal_below_min_value", ">= 0, but got -5"),
    ("temperature", 2.5, "decimal_above_max_value", "<= 2, but got 2.5"),
    ("temperature", 1e308, "decimal_above_max_value", "<= 2"),
    ("top_p", -0.1, "decimal_below_min_value", ">= 0, but got -0.1"),
    ("top_p", 1.5, "decimal_above_max_value", "<= 1, but got 1.5"),
]
PENALTIES: list[tuple[str, float, str, str]] = [
    ("presence_penalty", -2.5, "decimal_below_min_value", ">= -2, but got -2.5"),
    ("presence_penalty", 3, "decimal_above_max_value", "<= 2, but got 3"),
    ("frequency_penalty", -100, "decimal_below_min_value", ">= -2, but got -100"),
    ("frequency_penalty", 2.01, "decimal_above_max_value", "<= 2, but got 2.01"),
]


@pytest.mark.parametrize("path", SAMPLING_PATHS)
@pytest.mark.parametrize(("field", "value", "code", "words"), OUT_OF_RANGE)
async def test_sampling_out_of_range_is_refused(
    path: str,
    field: str,
    value: float,
    code: str,
    words: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    message = refused(await post(path, BODIES[path] | {field: value}), field, code)
    assert message.startswith(f"Invalid '{field}': decimal ")
    assert words in message


@pytest.mark.parametrize("path", PENALTY_PATHS)
@pytest.mark.parametrize(("field", "value", "code", "words"), PENALTIES)
async def test_penalties_out_of_range_are_refused(
    path: str,
    field: str,
    value: float,
    code: str,
    words: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert words in refused(await post(path, BODIES[path] | {field: value}), field, code)


@pytest.mark.parametrize("path", SAMPLING_PATHS)
async def test_sampling_at_its_edges_is_served(
    path: str, autojump_clock: trio.testing.MockClock
) -> None:
    edges: list[Json] = [{"temperature": 0, "top_p": 0}, {"temperature": 2, "top_p": 1}]
    if path in PENALTY_PATHS:
        edges += [
            {"presence_penalty": -2, "frequency_penalty": 2, "logit_bias": {"50256": -100}},
            {"presence_penalty": 2, "frequency_penalty": -2, "logit_bias": {"1": 100, "2": 0.5}},
        ]
    for fields in edges:
        answer = await post(path, BODIES[path] | fields)
        assert answer.status == 200, (fields, answer.body)


@pytest.mark.parametrize("path", PENALTY_PATHS)
@pytest.mark.parametrize(
    ("bias", "code", "words"),
    [
        ({"50256": 101}, "invalid_value", "101 for token 50256"),
        ({"50256": -1000}, "invalid_value", "-100 to 100"),
        ({"50256": 1e308}, "invalid_value", "-100 to 100"),
        ({"hello": 5}, "invalid_value", "'hello' is not a token ID"),
        ({"50256": "5"}, "invalid_type", "expected a number"),
        ({"50256": True}, "invalid_type", "expected a number"),
    ],
)
async def test_logit_bias_out_of_range_is_refused(
    path: str, bias: Json, code: str, words: str, autojump_clock: trio.testing.MockClock
) -> None:
    answer = await post(path, BODIES[path] | {"logit_bias": bias})
    assert words in refused(answer, "logit_bias", code)


@pytest.mark.parametrize(
    ("path", "fields", "param", "code"),
    [
        (RESPONSES, {"top_logprobs": 21}, "top_logprobs", "integer_above_max_value"),
        (RESPONSES, {"top_logprobs": -1}, "top_logprobs", "integer_below_min_value"),
        (CHAT, {"logprobs": True, "top_logprobs": -1}, "top_logprobs", "integer_below_min_value"),
        (CHAT, {"logprobs": True, "top_logprobs": 21}, "top_logprobs", "integer_above_max_value"),
        (COMPLETIONS, {"best_of": 21}, "best_of", "integer_above_max_value"),
        (COMPLETIONS, {"best_of": -1}, "best_of", "integer_below_min_value"),
        (CHAT, {"n": 129}, "n", "integer_above_max_value"),
        (COMPLETIONS, {"logprobs": 6}, "logprobs", "integer_above_max_value"),
        (RESPONSES, {"max_output_tokens": 0}, "max_output_tokens", "integer_below_min_value"),
    ],
)
async def test_integer_fields_out_of_range_are_refused(
    path: str, fields: Json, param: str, code: str, autojump_clock: trio.testing.MockClock
) -> None:
    refused(await post(path, BODIES[path] | fields), param, code)


async def test_in_range_integer_fields_are_served(autojump_clock: trio.testing.MockClock) -> None:
    for path, fields in [
        (RESPONSES, {"top_logprobs": 20}),
        (RESPONSES, {"top_logprobs": 0}),
        (COMPLETIONS, {"best_of": 20, "seed": 2**64 - 1}),
        (COMPLETIONS, {"seed": -(2**63)}),
    ]:
        answer = await post(path, BODIES[path] | fields)
        assert answer.status == 200, (path, fields, answer.body)


# --- content part and input item types ------------------------------------------------------


def chat_message(role: str, *types: str) -> Json:
    parts = [{"type": kind, "text": "x"} for kind in types]
    return {"model": "m", "max_tokens": 2, "messages": [{"role": role, "content": parts}]}


@pytest.mark.parametrize(
    ("role", "kind", "words"),
    [
        ("user", "image", "'text', 'image_url', 'input_audio', 'file'"),
        ("user", "input_text", "Invalid value: 'input_text'"),  # the responses API's name
        ("user", "refusal", "Invalid value: 'refusal'"),
        ("system", "image_url", "Supported values are: 'text'."),
        ("developer", "file", "Supported values are: 'text'."),
        ("tool", "input_audio", "Supported values are: 'text'."),
        ("assistant", "image_url", "Supported values are: 'text' and 'refusal'."),
    ],
)
async def test_chat_part_type_the_role_may_not_send_is_refused(
    role: str, kind: str, words: str, autojump_clock: trio.testing.MockClock
) -> None:
    body = chat_message(role, "text", kind)
    if role == "tool":
        body["messages"][0]["tool_call_id"] = "call_1"
    message = refused(await post(CHAT, body), "messages[0].content[1].type", "invalid_value")
    assert words in message


async def test_chat_part_types_each_role_may_send_are_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for body in [
        chat_message("user", "text", "image_url", "input_audio", "file"),
        chat_message("user", "video_url", "audio_url"),  # vLLM's multimodal parts
        chat_message("assistant", "refusal"),
        chat_message("system", "text"),
    ]:
        if body["messages"][0]["role"] == "assistant":
            body["messages"].append({"role": "user", "content": "Go on."})
        answer = await post(CHAT, body)
        assert answer.status == 200, (body, answer.body)


async def test_empty_chat_content_array_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": []}]}
    refused(await post(CHAT, body), "messages[0].content", "empty_array")


def responses_input(*items: Json) -> Json:
    return {"model": "m", "max_output_tokens": 2, "input": list(items)}


USER_TEXT: Json = {"role": "user", "content": [{"type": "input_text", "text": "Hi."}]}


@pytest.mark.parametrize(
    ("item", "param", "code", "words"),
    [
        ({"type": "bogus", "content": "x"}, "input[1].type", "invalid_value", "'bogus'"),
        ({"type": "image", "image_url": "x"}, "input[1].type", "invalid_value", "'message'"),
        ({"role": "bot", "content": "x"}, "input[1].role", "invalid_value", "'user'"),
        ({"type": "message", "content": "x"}, "input[1].role", "missing_required_parameter", ""),
        (
            {"role": "user", "content": [{"type": "output_text", "text": "x"}]},
            "input[1].content[0].type",
            "invalid_value",
            "'input_text', 'input_image', and 'input_file'",
        ),
        (
            {"role": "user", "content": [{"type": "text", "text": "x"}]},  # chat's name
            "input[1].content[0].type",
            "invalid_value",
            "Invalid value: 'text'",
        ),
        (
            {"role": "assistant", "content": [{"type": "input_text", "text": "x"}]},
            "input[1].content[0].type",
            "invalid_value",
            "'output_text' and 'refusal'",
        ),
        (
            {"role": "user", "content": [{"text": "no type"}]},
            "input[1].content[0].type",
            "invalid_value",
            "without 'type'",
        ),
    ],
)
async def test_unknown_input_item_is_refused(
    item: Json, param: str, code: str, words: str, autojump_clock: trio.testing.MockClock
) -> None:
    message = refused(await post(RESPONSES, responses_input(USER_TEXT, item)), param, code)
    assert words in message


async def test_known_input_items_are_served(autojump_clock: trio.testing.MockClock) -> None:
    items: list[Json] = [
        USER_TEXT,
        {"type": "message", "role": "developer", "content": "Be brief."},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Hello."}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "done"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"id": "msg_1"},  # an item reference needs no type
        {"type": "item_reference", "id": "msg_2"},
        {
            "role": "user",
            "content": [
                {"type": "input_image", "image_url": "https://example.com/a.png"},
                {"type": "input_file", "file_id": "file-1"},
            ],
        },
    ]
    answer = await post(RESPONSES, responses_input(*items))
    assert answer.status == 200, answer.body


# --- knobs: every number has a range, on every surface --------------------------------------


def number_knobs() -> list[str]:
    """Every knob whose type is int or float (or either, optional)."""
    out = []
    for knob in KNOBS.values():
        kinds = set(typing.get_args(knob.type)) or {knob.type}
        if kinds & {int, float} and bool not in kinds:
            out.append(knob.name)
    return out


def kind_of(name: str) -> type:
    kinds = set(typing.get_args(KNOBS[name].type)) or {KNOBS[name].type}
    return float if float in kinds else int


NUMBER_KNOBS = number_knobs()
LIVE_NUMBER_KNOBS = [name for name in NUMBER_KNOBS if KNOBS[name].live]


def test_number_knobs_are_found() -> None:
    assert {"ttft_ms", "itl_ms", "output_tokens_mean", "port", "max_request_s"} <= set(NUMBER_KNOBS)


@pytest.mark.parametrize("name", NUMBER_KNOBS)
def test_every_number_knob_refuses_absurd_values_at_start_up(name: str) -> None:
    huge: list[Any] = ["1e308", "inf", "-inf", "nan", 1e308] if kind_of(name) is float else []
    huge += [2**70, -(2**70), str(2**70)]
    for value in huge:
        with pytest.raises(SettingsError) as caught:
            Settings().replace(**{name: value})
        message = str(caught.value)
        assert message.startswith(describe(name) + ": "), (value, message)
        assert "\n" not in message


@pytest.mark.parametrize("name", LIVE_NUMBER_KNOBS)
async def test_every_live_number_knob_refuses_absurd_values_at_run_time(
    name: str, autojump_clock: trio.testing.MockClock
) -> None:
    app = create_app(fast_settings(corpus_articles=8))
    huge: Any = 1e308 if kind_of(name) is float else 2**63 - 1
    if name in {"corpus_seed", "fault_seed"}:
        huge = -1  # 2**63 - 1 is a fine seed; JSON carries no larger integer
    before = (await call(app, CONFIG, method="GET")).json()["settings"]
    for body in ({name: huge}, {KNOBS[name].group: {name: huge}}):
        answer = await call(app, CONFIG, body, method="PATCH")
        assert refused(answer, name, "invalid_setting").startswith(describe(name))
    assert (await call(app, CONFIG, method="GET")).json()["settings"] == before


@pytest.mark.parametrize(
    ("leaves", "name", "words"),
    [
        ({"ttft_ms": 1e308}, "ttft_ms", f"must be <= {MAX_MS}, got 1e+308"),
        ({"ttft_ms": MAX_MS + 1}, "ttft_ms", f"<= {MAX_MS}"),
        ({"itl_ms": 1e30}, "itl_ms", "<= 3600000"),
        ({"itl_max_ms": 1e30}, "itl_max_ms", "<= 3600000"),
        ({"output_tokens_mean": 1e12}, "output_tokens_mean", f"<= {MAX_TOKENS}"),
        ({"output_tokens_max": MAX_TOKENS + 1}, "output_tokens_max", f"<= {MAX_TOKENS}"),
        ({"context_length": 10**9}, "context_length", f"<= {MAX_TOKENS}"),
        ({"context_lengths": "big=1000000000"}, "context_lengths", "tokens from 1 to"),
        ({"failure_percent": 101}, "failure_percent", "<= 100"),
        ({"failure_jitter": 1000}, "failure_jitter", "<= 100"),
        ({"max_request_s": 1e9}, "max_request_s", "<= 86400"),
        ({"max_request_s": 0}, "max_request_s", "> 0"),
        ({"queue_timeout_s": 1e9}, "queue_timeout_s", "<= 86400"),
        ({"prefill_ms_per_token": 1e6}, "prefill_ms_per_token", "<= 1000"),
        ({"ttft_load_factor": 1e6}, "ttft_load_factor", "<= 10"),
        ({"corpus_articles": 10**8}, "corpus_articles", "<= 100000"),
        ({"journal_size": 10**9}, "journal_size", "<= 1000000"),
        ({"corpus_seed": MAX_SEED + 1}, "corpus_seed", "<= 18446744073709551615"),
        ({"rate_limit_rpm": 10**10}, "rate_limit_rpm", "<= 1000000000"),
        ({"tool_call_rate": 1.5}, "tool_call_rate", "<= 1"),
    ],
)
def test_knob_bounds_are_worded_with_the_knob(leaves: Json, name: str, words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings().replace(**leaves)
    assert str(caught.value).startswith(describe(name) + ": ")
    assert words in str(caught.value)


def test_largest_values_are_accepted() -> None:
    settings = Settings().replace(
        ttft_ms=MAX_MS,
        itl_ms=MAX_MS,
        itl_max_ms=MAX_MS,
        output_tokens_mean=MAX_TOKENS,
        context_length=MAX_TOKENS,
        failure_percent=100,
        max_request_s=86_400,
        corpus_seed=MAX_SEED,
        fault_seed=MAX_SEED,
    )
    assert settings.latency.ttft_ms == MAX_MS
    assert settings.models.context_length == MAX_TOKENS


def test_range_refuses_nan_and_infinities() -> None:
    hour = Range(0, MAX_MS)
    assert 0 in hour
    assert MAX_MS in hour
    for value in (float("nan"), float("inf"), -float("inf"), -1e-9, MAX_MS + 1e-6):
        assert value not in hour
        assert hour(value) is not None
    assert Range(0, 1, open_low=True)(0) == "must be > 0, got 0"
    assert shown(3600000.0) == "3600000"
    assert shown(2.5) == "2.5"


# --- the issue's absurd latencies, on each surface at run time ------------------------------


async def test_patch_config_refuses_the_issues_values(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(corpus_articles=8))
    for body, name in [
        ({"ttft_ms": 1e308}, "ttft_ms"),
        ({"itl_ms": 1e30}, "itl_ms"),
        ({"output_tokens_mean": 1e12}, "output_tokens_mean"),
        ({"latency": {"ttft_jitter_ms": 1e300}}, "ttft_jitter_ms"),
    ]:
        answer = await call(app, CONFIG, body, method="PATCH")
        assert refused(answer, name, "invalid_setting").startswith(describe(name))
    settings = (await call(app, CONFIG, method="GET")).json()["settings"]
    assert settings["latency"]["ttft_ms"] == 0
    assert settings["output"]["output_tokens_mean"] == Settings().output.output_tokens_mean


async def test_configure_refuses_absurd_aliases(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(corpus_articles=8))
    for body, name in [({"ttft": 1e308}, "ttft_ms"), ({"itl": 1e30}, "itl_ms")]:
        refused(await call(app, "/configure", body), name, "invalid_setting")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("x-mock-ttft-ms", "1e308"),
        ("x-mock-ttft-ms", str(MAX_MS + 1)),
        ("x-mock-ttft-ms", "Infinity"),
        ("x-mock-itl-ms", "1e30"),
        ("x-mock-itl-ms", "-0.5"),
        ("x-mock-output-tokens", str(MAX_TOKENS + 1)),
        ("x-mock-output-tokens", "1000000000000"),
        ("x-mock-seed", str(MAX_SEED + 1)),
    ],
)
async def test_header_out_of_the_knobs_range_is_refused(
    header: str, value: str, autojump_clock: trio.testing.MockClock
) -> None:
    message = refused(await post(CHAT, BODIES[CHAT], {header: value}), header, "invalid_header")
    assert "from 0 to" in message


@pytest.mark.parametrize("spec", ["slow-headers=1e308", f"slow-headers={MAX_MS + 1}"])
async def test_slow_headers_fault_beyond_an_hour_is_refused(
    spec: str, autojump_clock: trio.testing.MockClock
) -> None:
    answer = await post(CHAT, BODIES[CHAT], {"x-mock-fault": spec})
    assert "from 0 to 3600000 milliseconds" in refused(answer, "x-mock-fault", "invalid_header")


@pytest.mark.parametrize(
    ("reply", "param"),
    [
        ({"ttft_ms": 1e308}, "reply.ttft_ms"),
        ({"itl_ms": 1e30}, "reply.itl_ms"),
        ({"output_tokens": MAX_TOKENS + 1}, "reply.output_tokens"),
        ({"fault": "slow-headers=1e308"}, "reply.fault"),
    ],
)
async def test_scripted_rule_out_of_the_knobs_range_is_refused(
    reply: Json, param: str, autojump_clock: trio.testing.MockClock
) -> None:
    app = create_app(fast_settings(corpus_articles=8))
    answer = await call(app, "/_mock/scripts", {"reply": reply})
    assert refused(answer, param, None).startswith("rules[0].reply.")
    listing = await call(app, "/_mock/scripts", method="GET")
    assert listing.json()["data"] == []


async def test_an_hour_is_still_served(autojump_clock: trio.testing.MockClock) -> None:
    """The largest latency allowed works on each surface (on MockClock: at once)."""
    app = create_app(fast_settings(corpus_articles=8, max_request_s=7200))
    hour = str(MAX_MS)
    answer = await call(app, CHAT, BODIES[CHAT], headers={"x-mock-ttft-ms": hour})
    assert answer.status == 200, answer.body
    assert answer.started_at == pytest.approx(MAX_MS / 1000)
    rule = {"reply": {"itl_ms": MAX_MS, "output_tokens": 2}}
    assert (await call(app, "/_mock/scripts", rule)).status == 200
    streamed = await call(app, CHAT, BODIES[CHAT] | {"stream": True})
    assert streamed.status == 200
    assert streamed.pieces[-1][0] == pytest.approx(MAX_MS / 1000)  # one gap of an hour
    assert (await call(app, CONFIG, {"ttft_ms": MAX_MS}, method="PATCH")).status == 200


# --- start-up: the command line, the environment and TOML -----------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "flag"),
    [
        (["--ttft-ms", "1e308"], {}, "--ttft-ms"),
        (["--itl-ms", "nan"], {}, "--itl-ms"),
        (["--max-request-s", "inf"], {}, "--max-request-s"),
        ([], {"TRIO_MOCK_ITL_MS": "1e30"}, "TRIO_MOCK_ITL_MS"),
        ([], {"TRIO_MOCK_OUTPUT_TOKENS_MEAN": "1e12"}, "--output-tokens-mean"),
        (["--workers", "100000"], {}, "--workers"),
    ],
)
def test_start_up_refuses_absurd_values(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], flag: str
) -> None:
    for name in list(KNOBS):
        monkeypatch.delenv(KNOBS[name].env, raising=False)
    monkeypatch.delenv("TRIO_MOCK_CONFIG", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError, match=flag):
        load_settings(argv)


def test_toml_refuses_absurd_values(tmp_path: Path) -> None:
    config = tmp_path / "mock.toml"
    config.write_text("[output]\noutput_tokens_mean = 1e12\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="--output-tokens-mean"):
        Settings.load(config=config, env={})
    config.write_text("ttft_ms = inf\n", encoding="utf-8")
    with pytest.raises(SettingsError, match="--ttft-ms"):
        Settings.load(config=config, env={})


EXIT_CASES: dict[str, tuple[list[str], dict[str, str], str]] = {
    # id: (arguments, environment, what the one line must name)
    "flag": (["--ttft-ms", "1e308"], {}, "--ttft-ms"),
    "env": ([], {"TRIO_MOCK_ITL_MS": "1e30"}, "TRIO_MOCK_ITL_MS"),
    "toml": (["--config", "TOML"], {}, "--output-tokens-mean"),
}


@pytest.fixture(scope="module")
def exit_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[int, str]]]:
    """Run every EXIT_CASES start-up at once; id -> (exit status, stderr)."""
    toml = tmp_path_factory.mktemp("ranges") / "absurd.toml"
    toml.write_text("output_tokens_mean = 1e12\n", encoding="utf-8")
    processes: dict[str, subprocess.Popen[str]] = {}
    try:
        for case, (args, env, _) in EXIT_CASES.items():
            argv = [str(toml) if a == "TOML" else a for a in args]
            processes[case] = subprocess.Popen(
                [sys.executable, "-m", "trio_mock", *argv, "--port", "0"],
                env=clean_env(**env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        results = {}
        for case, process in processes.items():
            try:
                _, stderr = process.communicate(timeout=START_TIMEOUT_S)
            except subprocess.TimeoutExpired:  # accepted: it is serving
                process.kill()
                _, stderr = process.communicate()
            results[case] = (process.returncode, stderr)
        yield results
    finally:
        for process in processes.values():
            process.kill()
            process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(EXIT_CASES))
def test_start_up_exits_2_naming_the_knob(
    exit_results: dict[str, tuple[int, str]], case: str
) -> None:
    status, stderr = exit_results[case]
    assert status == 2, stderr
    (line,) = stderr.splitlines()
    assert line.startswith("trio-mock: error: ")
    assert EXIT_CASES[case][2] in line
