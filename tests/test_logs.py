"""Logs: ``configure_logging`` (text or JSON lines, levels), the raw request log
(``--log-raw``, logger ``trio_mock.raw``) and the CLI's stderr end to end.

What this file proves:

- ``--log-format json`` writes one JSON object per line with ``time`` (ISO 8601, UTC),
  ``level``, ``logger``, ``message`` and every ``extra`` field (an exception too), a
  message with newlines staying on its line; ``text`` writes ``time LEVEL logger: message``.
  ``--log-level`` is applied to the ``trio_mock`` logger (and Hypercorn's error log), other
  libraries stay at warnings; one handler replaces whatever the root logger had.
- Over a real server, ``--log-raw`` logs each generation request (method, path, headers,
  body) and its response (status, body; a stream's exact SSE bytes, ``[DONE]`` included),
  both tagged with the ``x-request-id``; ``authorization``, ``api-key``, ``x-admin-key``
  and ``cookie`` show as ``[redacted]`` and the secret is nowhere in the log; bodies are cut
  at ``--journal-body-bytes`` with a note of the bytes left out. A request refused before
  its body was read (401) still gets its request line; ``--log-level warning`` does not
  silence ``--log-raw``.
- ``PATCH /_mock/config`` switches ``log_raw`` on and off and changes the level at runtime;
  a change of another knob leaves an embedding program's logger levels alone.
- ``python -m trio_mock --log-format json --access-log --log-raw --api-keys ...``: every
  stderr line is a JSON object, Hypercorn's access line and the raw lines are there, and
  the key never is.

Records from the server thread reach ``caplog`` before the request is counted in ``GET /_mock/stats`` (``Observer.close`` counts and logs in one synchronous step),
so tests wait on that count, not on time.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import signal
import subprocess
import sys
from collections.abc import Generator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from conftest import fast_settings
from helpers import clean_env, served_url
from trio_mock import Settings
from trio_mock._observe._logs import configure_logging
from trio_mock.testing import MockServer

CHAT_PATH = "/v1/chat/completions"
SECRET = "sk-raw-secret-0001"
SECRET_HEADERS = {
    "authorization": f"Bearer {SECRET}",
    "api-key": SECRET,
    "x-admin-key": SECRET,
    "cookie": f"session={SECRET}",
}
NAMED_LOGGERS = ("trio_mock", "trio_mock.raw", "hypercorn.error", "hypercorn.access")
STOP_TIMEOUT_S = 10


def chat(*, stream: bool = False, content: str = "Hi.", max_tokens: int = 4) -> dict[str, Any]:
    return {
        "model": "trio-mock",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


@pytest.fixture
def restore_logging() -> Generator[None]:
    """Undo ``configure_logging``: root's handlers and level, and the named loggers' levels.

    pytest keeps the same capture handlers on root for every phase of a test, so
    putting back the list saved at set-up hands them back to pytest intact.
    """
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in NAMED_LOGGERS}
    try:
        yield
    finally:
        root.handlers = handlers
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)


def configured(**observability: Any) -> Settings:
    return Settings().replace(**observability)


# --- configure_logging ------------------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
def test_json_lines_carry_time_level_logger_message_and_extras(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(configured(log_format="json"))
    root = logging.getLogger()
    assert len(root.handlers) == 1  # pytest's capture handlers were replaced
    log = logging.getLogger("trio_mock.test")
    before = datetime.now().astimezone()
    log.info("hello %s", "world", extra={"request_id": "req_1", "direction": "request"})
    log.warning("two\nlines", extra={"path": Path("/x"), "n": 3})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    after = datetime.now().astimezone()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    first, second, third = map(json.loads, lines)
    assert first == {
        "time": first["time"],
        "level": "info",
        "logger": "trio_mock.test",
        "message": "hello world",
        "request_id": "req_1",
        "direction": "request",
    }
    at = datetime.fromisoformat(first["time"])
    assert at.utcoffset() == timedelta(0)
    assert before - timedelta(milliseconds=1) <= at <= after + timedelta(milliseconds=1)
    assert second["level"] == "warning"
    assert second["message"] == "two\nlines"  # escaped: still one line
    assert second["path"] == "/x"  # not JSON-able: shown as str()
    assert second["n"] == 3
    assert third["level"] == "error"
    assert third["message"] == "failed"
    assert "Traceback" in third["exception"]
    assert "ValueError: boom" in third["exception"]


@pytest.mark.usefixtures("restore_logging")
def test_text_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(configured(log_format="text"))
    logging.getLogger("trio_mock.test").info("hello %s", "world", extra={"request_id": "r"})
    logging.getLogger("hypercorn.error").warning("careful")
    lines = capsys.readouterr().err.splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert len(lines) == 2, lines
    assert re.fullmatch(rf"{stamp} INFO trio_mock\.test: hello world", lines[0]), lines[0]
    assert re.fullmatch(rf"{stamp} WARNING hypercorn\.error: careful", lines[1]), lines[1]


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_log_level_applies_to_trio_mock_and_others_stay_at_warning(
    capsys: pytest.CaptureFixture[str], level: str
) -> None:
    configure_logging(configured(log_format="json", log_level=level))
    assert logging.getLogger("trio_mock").level == logging.getLevelName(level.upper())
    assert logging.getLogger("hypercorn.error").level == logging.getLevelName(level.upper())
    ours, other = logging.getLogger("trio_mock.sub"), logging.getLogger("some.library")
    ranks = ["debug", "info", "warning", "error"]
    for name in ranks:
        ours.log(logging.getLevelName(name.upper()), f"ours {name}")
        other.log(logging.getLevelName(name.upper()), f"other {name}")
    messages = [json.loads(line)["message"] for line in capsys.readouterr().err.splitlines()]
    shown = ranks[ranks.index(level) :]
    expected = []  # in the order logged; other libraries: warnings and worse only
    for name in ranks:
        expected += [f"ours {name}"] if name in shown else []
        expected += [f"other {name}"] if name in ("warning", "error") else []
    assert messages == expected


# --- the raw log over a real server -----------------------------------------------------


def settle(server: MockServer, http: httpx.Client, answered: int, **headers: str) -> None:
    """Return once the server has closed ``answered`` generation requests: their raw lines
    are logged by then (``Observer.close`` counts a request in the metrics and logs it in
    one step, without yielding). ``MockServer.requests`` first waits, in the server's own
    run, until every task there is blocked, so nothing is left half done."""
    server.requests()
    stats = http.get("/_mock/stats", headers=headers)
    assert stats.status_code == 200, stats.text
    assert stats.json()["totals"].get("trio_mock_requests_total", 0) >= answered, stats.text


def raw_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> dict[str, logging.LogRecord]:
    """The raw log's records for ``request_id``, by direction (at most one each)."""
    found: dict[str, logging.LogRecord] = {}
    for record in caplog.records:
        if record.name == "trio_mock.raw" and getattr(record, "request_id", None) == request_id:
            direction: str = record.direction  # type: ignore[attr-defined]
            assert direction not in found, f"two {direction} lines for {request_id}"
            found[direction] = record
    return found


REQUEST_LINE = re.compile(r"request (\S+) (\S+) (\S+) headers=(\{.*?\}) body=(.*)", re.DOTALL)
RESPONSE_LINE = re.compile(r"response (\S+) (\S+) status=(\d+) body=(.*)", re.DOTALL)


def parsed_request(record: logging.LogRecord) -> tuple[str, str, str, dict[str, str], str]:
    match = REQUEST_LINE.fullmatch(record.getMessage())
    assert match is not None, record.getMessage()
    rid, method, path, headers, body = match.groups()
    return rid, method, path, ast.literal_eval(headers), body


def parsed_response(record: logging.LogRecord) -> tuple[str, str, int, str]:
    match = RESPONSE_LINE.fullmatch(record.getMessage())
    assert match is not None, record.getMessage()
    rid, path, status, body = match.groups()
    return rid, path, int(status), body


def assert_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(vars(record))


@pytest.mark.parametrize("stream", [False, True], ids=["body", "stream"])
def test_raw_log_has_request_and_response_with_secrets_redacted(
    caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    caplog.set_level(logging.INFO, logger="trio_mock.raw")
    payload = json.dumps(chat(stream=stream)).encode()
    with (
        MockServer(fast_settings(log_raw=True, api_keys=SECRET)) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        headers = SECRET_HEADERS | {"content-type": "application/json", "x-trace": "t-1"}
        response = http.post(CHAT_PATH, content=payload, headers=headers)
        assert response.status_code == 200, response.text
        rid = response.headers["x-request-id"]
        settle(server, http, 1, authorization=f"Bearer {SECRET}")
    lines = raw_lines(caplog, rid)
    assert set(lines) == {"request", "response"}
    assert all(r.levelno == logging.INFO for r in lines.values())
    got_rid, method, path, logged_headers, body = parsed_request(lines["request"])
    assert (got_rid, method, path) == (rid, "POST", CHAT_PATH)
    assert body == payload.decode()
    assert logged_headers["x-trace"] == "t-1"
    assert logged_headers["content-length"] == str(len(payload))
    for name in SECRET_HEADERS:
        assert logged_headers[name] == "[redacted]", name
    got_rid, path, status, body = parsed_response(lines["response"])
    assert (got_rid, path, status) == (rid, CHAT_PATH, 200)
    assert body == response.text  # the exact bytes sent: the JSON, or every SSE frame
    if stream:
        assert body.startswith("data: {")
        assert body.endswith("data: [DONE]\n\n")
    else:
        assert json.loads(body)["object"] == "chat.completion"
    assert_no_secret(caplog)


def test_raw_log_cuts_bodies_at_journal_body_bytes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_mock.raw")
    limit = 64
    payload = json.dumps(chat(content="many words " * 40)).encode()
    with (
        MockServer(fast_settings(log_raw=True, journal_body_bytes=limit)) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        plain = http.post(CHAT_PATH, content=payload)
        streamed = http.post(CHAT_PATH, json=chat(stream=True))
        for response in (plain, streamed):
            assert response.status_code == 200, response.text
        settle(server, http, 2)
    lines = raw_lines(caplog, plain.headers["x-request-id"])
    *_, body = parsed_request(lines["request"])
    assert body == f"{payload[:limit].decode()}... [{len(payload) - limit} more bytes]"
    *_, body = parsed_response(lines["response"])
    sent = plain.content
    assert body == f"{sent[:limit].decode()}... [{len(sent) - limit} more bytes]"
    *_, body = parsed_response(raw_lines(caplog, streamed.headers["x-request-id"])["response"])
    sent = streamed.content
    assert body.startswith("data: ")
    assert body == f"{sent[:limit].decode()}... [{len(sent) - limit} more bytes]"


@pytest.mark.usefixtures("restore_logging")  # a runtime change sets the trio_mock level
def test_raw_log_switches_on_and_off_at_runtime(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_mock.raw")
    with (
        MockServer(fast_settings()) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        sent = 0

        def one() -> str:
            nonlocal sent
            response = http.post(CHAT_PATH, json=chat())
            assert response.status_code == 200, response.text
            sent += 1
            settle(server, http, sent)
            rid: str = response.headers["x-request-id"]
            return rid

        def set_raw(body: dict[str, Any], expected: bool) -> None:
            changed = http.patch("/_mock/config", json=body)
            assert changed.status_code == 200, changed.text
            assert changed.json()["changed"] == ["log_raw"]
            shown = http.get("/_mock/config").json()["settings"]["observability"]
            assert shown["log_raw"] is expected

        before = one()
        set_raw({"log_raw": True}, expected=True)
        during = one()
        set_raw({"observability": {"log_raw": False}}, expected=False)
        after = one()
    assert raw_lines(caplog, before) == {}
    assert set(raw_lines(caplog, during)) == {"request", "response"}
    assert raw_lines(caplog, after) == {}


@pytest.mark.usefixtures("restore_logging")
def test_log_level_changes_at_runtime() -> None:
    with (
        MockServer(fast_settings()) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        for level in ("debug", "error", "info"):
            changed = http.patch("/_mock/config", json={"log_level": level})
            assert changed.status_code == 200, changed.text
            assert changed.json()["changed"] == ["log_level"]
            assert logging.getLogger("trio_mock").level == logging.getLevelName(level.upper())
        refused = http.patch("/_mock/config", json={"log_level": "loud"})
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "log_level"
        assert logging.getLogger("trio_mock").level == logging.INFO


@pytest.mark.usefixtures("restore_logging")
def test_unrelated_runtime_change_keeps_an_embedders_log_level() -> None:
    """serve() configures no logging; a change that is not log_level must not either."""
    logging.getLogger("trio_mock").setLevel(logging.ERROR)
    with (
        MockServer(fast_settings()) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        changed = http.patch("/_mock/config", json={"ttft_ms": 5})
        assert changed.json()["changed"] == ["ttft_ms"]
    assert logging.getLogger("trio_mock").level == logging.ERROR


def test_raw_log_has_the_request_line_of_a_refused_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A refused request (wrong key) still gets its request line, headers redacted, with
    its body, before its response line."""
    caplog.set_level(logging.INFO, logger="trio_mock.raw")
    with (
        MockServer(fast_settings(log_raw=True, api_keys=SECRET)) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as http,
    ):
        refused = http.post(CHAT_PATH, json=chat(), headers={"authorization": f"Bearer {SECRET}x"})
        assert refused.status_code == 401
        rid = refused.headers["x-request-id"]
        settle(server, http, 1, authorization=f"Bearer {SECRET}")
    lines = raw_lines(caplog, rid)
    assert set(lines) == {"request", "response"}
    assert caplog.records.index(lines["request"]) < caplog.records.index(lines["response"])
    got_rid, method, path, logged_headers, body = parsed_request(lines["request"])
    assert (got_rid, method, path) == (rid, "POST", CHAT_PATH)
    assert json.loads(body) == chat()
    assert logged_headers["authorization"] == "[redacted]"
    got_rid, path, status, body = parsed_response(lines["response"])
    assert (got_rid, path, status) == (rid, CHAT_PATH, 401)
    assert json.loads(body)["error"]["code"] == "invalid_api_key"
    assert_no_secret(caplog)


@pytest.mark.usefixtures("restore_logging")
def test_log_raw_is_not_silenced_by_a_quiet_log_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fast_settings(log_raw=True, log_format="json", log_level="warning")
    configure_logging(settings)
    with MockServer(settings) as server, httpx.Client(base_url=server.base_url, timeout=10) as http:
        assert http.post(CHAT_PATH, json=chat()).status_code == 200
        settle(server, http, 1)
    loggers = [json.loads(line)["logger"] for line in capsys.readouterr().err.splitlines()]
    assert loggers.count("trio_mock.raw") == 2, loggers


# --- the CLI ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_cli_json_logs_with_access_and_raw_lines_and_no_key(tmp_path: Path) -> None:
    secret = "sk-secret-123456"
    args = [sys.executable, "-m", "trio_mock", "--port", "0", "--log-format", "json",
            "--access-log", "--log-raw", "--api-keys", secret,
            "--ttft-ms", "0", "--itl-ms", "0", "--corpus-articles", "64"]  # fmt: skip
    log = tmp_path / "stderr.log"
    with log.open("wb") as err:
        process = await trio.lowlevel.open_process(
            args, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
        )
    try:
        url = await served_url(process, log)
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            plain = await http.post(CHAT_PATH, json=chat(), headers={"api-key": secret})
            streamed = await http.post(
                CHAT_PATH, json=chat(stream=True), headers={"authorization": f"Bearer {secret}"}
            )
        # The client is closed first: an idle keep-alive connection would hold shutdown.
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(STOP_TIMEOUT_S):
            returncode = await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.move_on_after(STOP_TIMEOUT_S, shield=True):
                await process.wait()
    output = log.read_text()
    assert plain.status_code == 200, plain.text
    assert streamed.status_code == 200, streamed.text
    assert returncode == 0, output
    assert secret not in output
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    for line in lines:
        assert isinstance(line, dict)
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    access = [line["message"] for line in lines if line["logger"] == "hypercorn.access"]
    assert any(f'"POST {CHAT_PATH} ' in m and '" 200 ' in m for m in access), access
    for response in (plain, streamed):
        rid = response.headers["x-request-id"]
        raw = {
            line["direction"]: line["message"]
            for line in lines
            if line["logger"] == "trio_mock.raw" and line.get("request_id") == rid
        }
        assert set(raw) == {"request", "response"}, lines
        assert raw["request"].startswith(f"request {rid} POST {CHAT_PATH} headers=")
        assert "'[redacted]'" in raw["request"]
        assert raw["response"] == f"response {rid} {CHAT_PATH} status=200 body={response.text}"
    assert any(line["message"] == "received SIGTERM, shutting down" for line in lines)
