"""Label flooding and who may read what (issue 15, items 8 and 13).

A client chooses its model names; the metrics must not grow with them, nor show what a
name smuggles in. What this file proves:

- 600 distinct unlisted model names (one with a NUL, others with a newline, an escape
  sequence, DEL, a C1 control, or 10,000 characters) leave ``/metrics`` within twice the
  size it had after two listed models: every unlisted name counts under ``model="other"``
  (and vLLM's ``model_name="other"``), the listed ones keep their names, and no control
  character reaches the exposition, nor the dashboard's ``/_mock/stats``.
- ``--metrics-unlisted-models N`` gives the first N unlisted names their own label,
  cleaned (control characters as U+FFFD, cut at 128 characters); the rest still share
  ``other``. A runtime change keeps those labels and the cap, and a newly listed model
  gets its own label.
- The other labels take the server's values: endpoints are the routes (unknown paths add
  none), and a fault status counts as one kind however it is written (``0503``).
- Realtime sessions' models (``?model=`` and ``session.update``) follow the same rule.
- The journal keeps each request's model as sent, cut at 1024 characters.
- ``--metrics-auth`` closes ``/metrics``: an API key opens it, or only the admin key when
  one is set; it can be switched at run time; without it ``/metrics`` stays open.
- Other long-lived maps keyed by client strings stay bounded: the per-model caches skip
  huge names, the schema cache skips huge schemas, and the per-key rate-limit buckets
  are trimmed however many keys clients invent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
import trio
from trio_websocket import open_websocket_url

from asgi import Headers, call
from conftest import check_error, fast_settings
from exposition import Samples, by_label, parse, value
from trio_mock import create_app
from trio_mock._observe._journal import MAX_MODEL_CHARS
from trio_mock._observe._metrics import MAX_LABEL_CHARS, OTHER
from trio_mock._openai._model import MAX_CACHED_SCHEMA, known_schema_problem, output_schema
from trio_mock._serve import _ratelimit
from trio_mock._serve._ratelimit import RateLimiter

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from conftest import StartServer

CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"
LISTED = ("listed-a", "listed-b")
ROUTES = {"/chat/completions", "/completions", "/responses", "/embeddings", "/realtime"}
FLOOD = 600
# Names a hostile client might send: each must either be "other" or a clean label.
HOSTILE = [
    "nul\x00byte",
    "new\nline",
    "esc\x1b[31mred",
    "tab\tcr\r",
    "del\x7f",
    "c1\x85next",
    'quote"back\\slash',
    "x" * 10_000,
    "",
    "other",
]
CLEANED = {
    "nul\ufffdbyte",
    "new\ufffdline",
    "esc\ufffd[31mred",
    "tab\ufffdcr\ufffd",
    "del\ufffd",
    "c1\ufffdnext",
    'quote"back\\slash',
    "x" * MAX_LABEL_CHARS,
    "",
    "other",
}
OWN_LABELLED = ("trio_mock_requests_total", "trio_mock_prompt_tokens_total")
VLLM_LABELLED = ("vllm:prompt_tokens_total", "vllm:request_success_total")
WAIT_S = 10.0


def names(count: int) -> list[str]:
    """``count`` distinct model names, the hostile ones first."""
    return [*HOSTILE, *(f"flood-{i}" for i in range(count - len(HOSTILE)))]


def app_for(**leaves: Any) -> QuartTrio:
    return create_app(fast_settings(models=LISTED, **leaves))


async def ask(app: QuartTrio, model: str, headers: Headers = ()) -> int:
    """One short chat as ``model``, in memory; its status."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi."}], "max_tokens": 3}
    return (await call(app, CHAT, body, headers=headers)).status


async def exposition(app: QuartTrio, headers: Headers = ()) -> str:
    answer = await call(app, "/metrics", method="GET", headers=headers)
    assert answer.status == 200, answer.body
    return answer.body.decode()


def models_in(samples: Samples) -> set[str]:
    """Every value of a ``model`` or ``model_name`` label."""
    return {v for (_, labels) in samples for k, v in labels if k in ("model", "model_name")}


def control_characters(text: str) -> set[str]:
    return {c for c in text if (c < " " and c != "\n") or "\x7f" <= c <= "\x9f"}


# --- item 8: model labels ----------------------------------------------------------------------


async def test_unlisted_names_share_one_label_and_the_size_stays_bounded() -> None:
    app = app_for()
    for model in LISTED:
        assert await ask(app, model) == 200
    before = await exposition(app)

    flood = names(FLOOD)
    statuses = [await ask(app, model) for model in flood]
    text = await exposition(app)

    samples = parse(text)
    assert models_in(samples) == {*LISTED, OTHER}
    assert len(text) < 2 * len(before)  # was over 400 times as large
    assert not control_characters(text)
    assert "\x00" not in text
    requests = by_label(samples, "trio_mock_requests_total", "model")
    assert requests == {("listed-a",): 1, ("listed-b",): 1, (OTHER,): FLOOD}
    served = statuses.count(200)
    assert value(samples, "vllm:request_success_total", model_name=OTHER) == served
    for name in OWN_LABELLED:
        assert {labels[0] for labels in by_label(samples, name, "model")} <= {*LISTED, OTHER}
    for name in VLLM_LABELLED:
        found = {labels[0] for labels in by_label(samples, name, "model_name")}
        assert found <= {*LISTED, OTHER}

    stats = await call(app, "/_mock/stats", method="GET")
    assert stats.status == 200
    assert stats.json()["totals"]["trio_mock_requests_total"] == FLOOD + 2
    assert len(stats.body) < 10_000


async def test_the_journal_still_names_each_request_as_sent() -> None:
    """The journal is a bounded ring, so it may keep the client's own name."""
    app = app_for(journal_size=5)
    for model in names(20):
        await ask(app, model)
    answer = await call(app, "/_mock/requests", method="GET")
    entries = answer.json()["data"]
    assert [e["model"] for e in entries] == [f"flood-{i}" for i in range(5, 10)]


async def test_the_journal_cuts_a_huge_model_name() -> None:
    """Bodies are kept cut; so is the model name a body carries (1 MB here)."""
    app = app_for()
    await ask(app, "w" * 1_000_000)
    (entry,) = (await call(app, "/_mock/requests", method="GET")).json()["data"]
    assert entry["model"] == "w" * MAX_MODEL_CHARS


async def test_opt_out_labels_unlisted_names_cleaned_and_capped() -> None:
    cap = 50
    app = app_for(metrics_unlisted_models=cap)
    for model in names(FLOOD):
        await ask(app, model)
    for model in LISTED:
        await ask(app, model)
    text = await exposition(app)

    samples = parse(text)
    own = {f"flood-{i}" for i in range(cap - len(HOSTILE))}
    assert models_in(samples) == {*LISTED, OTHER, *CLEANED, *own}
    assert not control_characters(text)
    requests = by_label(samples, "trio_mock_requests_total", "model")
    # "other" as a client's own name is one of the first 50: it counts with the rest.
    assert requests[OTHER,] == FLOOD - cap + 1
    assert requests["x" * MAX_LABEL_CHARS,] == 1
    assert requests["nul\ufffdbyte",] == 1
    assert requests["listed-a",] == requests["listed-b",] == 1


async def test_labels_keep_their_cap_across_a_runtime_change() -> None:
    app = app_for(metrics_unlisted_models=2)
    for model in ["u1", "u2", "u3"]:
        await ask(app, model)
    changed = await call(app, "/_mock/config", {"ttft_ms": 1}, method="PATCH")
    assert changed.status == 200, changed.body
    for model in ["u4", "u1"]:
        await ask(app, model)
    changed = await call(app, "/_mock/config", {"models": [*LISTED, "u5"]}, method="PATCH")
    assert changed.status == 200, changed.body
    for model in ["u5", "u6", "u2"]:
        await ask(app, model)

    requests = by_label(parse(await exposition(app)), "trio_mock_requests_total", "model")
    assert requests == {("u1",): 2, ("u2",): 2, ("u5",): 1, (OTHER,): 3}


async def test_cap_is_a_knob_with_a_range() -> None:
    app = app_for()
    for bad in (-1, 1_000_000):
        answer = await call(app, "/_mock/config", {"metrics_unlisted_models": bad}, method="PATCH")
        check_error(answer.response(), 400, "metrics_unlisted_models")


async def test_endpoints_are_the_routes_and_fault_kinds_are_parsed() -> None:
    app = app_for()
    for i in range(50):
        answer = await call(app, f"/v1/no-such-route-{i}", {"model": "listed-a"})
        assert answer.status == 404
    for spelling in ["503", "0503", "000503", "503", "error-after=1", "slow-headers=1"]:
        await ask(app, "listed-a", headers={"x-mock-fault": spelling})
    body = {"model": "listed-a", "prompt": "Hi.", "max_tokens": 2}
    assert (await call(app, COMPLETIONS, body)).status == 200

    samples = parse(await exposition(app))
    endpoints = {labels[0] for labels in by_label(samples, "trio_mock_requests_total", "endpoint")}
    assert endpoints == {"/chat/completions", "/completions"}
    assert endpoints <= ROUTES
    kinds = by_label(samples, "trio_mock_faults_total", "kind")
    assert kinds == {("503",): 4, ("error",): 1, ("slow-headers",): 1}


async def test_realtime_models_follow_the_same_rule(start_server: StartServer) -> None:
    url = await start_server(models=LISTED)
    ws = url.replace("http://", "ws://", 1)
    sessions = [("?model=rt-a", None), ("?model=rt%00b", None), ("", "rt\x00c"), ("", "listed-b")]
    for query, update in sessions:
        async with open_websocket_url(f"{ws}/v1/realtime{query}") as socket:
            with trio.fail_after(WAIT_S):
                if update is not None:
                    change = {"type": "session.update", "session": {"model": update}}
                    await socket.send_message(orjson.dumps(change).decode())
                await socket.send_message(orjson.dumps({"type": "response.create"}).decode())
                while orjson.loads(await socket.get_message())["type"] != "response.done":
                    pass
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http:
        with trio.fail_after(WAIT_S):
            while True:  # a response is counted just after its response.done goes out
                text = (await http.get("/metrics")).text
                requests = by_label(parse(text), "trio_mock_requests_total", "endpoint", "model")
                if sum(requests.values()) >= len(sessions):
                    break
                await trio.sleep(0.02)
    assert requests == {("/realtime", OTHER): 3, ("/realtime", "listed-b"): 1}
    assert "\x00" not in text


# --- item 13: who may read /metrics ---------------------------------------------------------


async def test_metrics_auth_needs_an_api_key() -> None:
    app = app_for(api_keys=("sk-scrape-key-1",), metrics_auth=True)
    answer = await call(app, "/metrics", method="GET")
    error = check_error(answer.response(), 401, None)
    assert error["code"] == "invalid_api_key"
    answer = await call(app, "/metrics", method="GET", headers={"authorization": "Bearer sk-wrong"})
    assert answer.status == 401
    await exposition(app, {"authorization": "Bearer sk-scrape-key-1"})
    await exposition(app, {"api-key": "sk-scrape-key-1"})
    for path in ["/health", "/_mock/ui"]:  # still open
        assert (await call(app, path, method="GET")).status == 200


async def test_metrics_auth_needs_the_admin_key_when_one_is_set() -> None:
    app = app_for(api_keys=("sk-scrape-key-1",), admin_key="admin-key-1", metrics_auth=True)
    answer = await call(app, "/metrics", method="GET", headers={"api-key": "sk-scrape-key-1"})
    assert answer.status == 401
    assert answer.json()["error"]["code"] == "invalid_admin_key"
    await exposition(app, {"x-admin-key": "admin-key-1"})
    await exposition(app, {"authorization": "Bearer admin-key-1"})


async def test_metrics_stay_open_by_default_and_auth_switches_at_run_time() -> None:
    key = {"authorization": "Bearer sk-scrape-key-1"}
    app = app_for(api_keys=("sk-scrape-key-1",))
    await exposition(app)  # Prometheus scrapes without a key
    changed = await call(app, "/_mock/config", {"metrics_auth": True}, method="PATCH", headers=key)
    assert changed.status == 200, changed.body
    assert (await call(app, "/metrics", method="GET")).status == 401
    await exposition(app, key)


async def test_metrics_auth_over_loopback(start_server: StartServer) -> None:
    url = await start_server(api_keys=("sk-scrape-key-1",), metrics_auth=True)
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http:
        assert (await http.get("/metrics")).status_code == 401
        key = {"authorization": "Bearer sk-scrape-key-1"}
        assert (await http.get("/metrics", headers=key)).status_code == 200


# --- other maps keyed by what clients send ------------------------------------------------------


async def test_model_caches_skip_huge_names() -> None:
    model = app_for().live.model  # type: ignore[attr-defined]
    for name in ["small", "y" * 100_000]:
        model.reasons(name)
        model.context_window(name)
    assert list(model.reasoning) == list(model.windows) == ["small"]


def test_schema_cache_skips_huge_schemas() -> None:
    known_schema_problem.cache_clear()
    small = {"type": "object", "properties": {"a": {"type": "string"}}}
    huge = {"type": "object", "description": "z" * MAX_CACHED_SCHEMA}
    assert output_schema(small, "p") == small
    assert output_schema(huge, "p") == huge
    assert known_schema_problem.cache_info().currsize == 1


async def test_rate_limit_buckets_stay_bounded_under_invented_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_ratelimit, "MAX_KEYS", 100)
    limiter = RateLimiter(fast_settings(rate_limit_rpm=60, rate_limit_scope="key").rate_limits)
    for i in range(1_000):
        limiter.charge([(b"authorization", b"Bearer k%d" % i)], "m", 1)
        assert len(limiter.buckets) <= 100
    limiter.charge([(b"authorization", b"Bearer k999")], "m", 1)  # the newest is kept
    assert limiter.buckets["k999"][0] is not None
    assert limiter.buckets["k999"][0].level == pytest.approx(58)
