"""Abusive clients on loopback: the server survives them, never hangs, and answers in
OpenAI's shape (issue 15).

Each test is bounded in count and time and stops by itself; crashes are driven in a loop
and followed by a normal request to the same server.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import os
import re
import select
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import trio

from conftest import fast_settings
from trio_mock import serve
from trio_mock._app._server import listen
from trio_mock._serve._protocols import OpenAIH11

if TYPE_CHECKING:
    from conftest import StartServer

pytestmark = (
    pytest.mark.slow
)  # abusive clients on loopback, on the real clock, and supervised workers

CHAT = json.dumps({
    "model": "m", "stream": True, "max_tokens": 400,
    "messages": [{"role": "user", "content": "hi"}],
}).encode()  # fmt: skip
ROUNDS = 20


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def health(url: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"{url}/health")).status_code


async def read_until_quiet(stream: trio.SocketStream, quiet_s: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or goes quiet for ``quiet_s``."""
    received = b""
    while True:
        with trio.move_on_after(quiet_s):
            try:
                chunk = await stream.receive_some(65536)
            except trio.BrokenResourceError:  # reset: closed
                return received, True
            if not chunk:
                return received, True
            received += chunk
            continue
        return received, False


async def read_response(stream: trio.SocketStream) -> bytes:
    """One whole HTTP/1.1 response with a content-length or chunked body."""
    received = b""
    while True:
        head, _, body = received.partition(b"\r\n\r\n")
        if _:
            length = re.search(rb"content-length: (\d+)", head.lower())
            if length and len(body) >= int(length.group(1)):
                return received
            if not length and body.endswith(b"0\r\n\r\n"):
                return received
        chunk = await stream.receive_some(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk


def status_and_error(response: bytes) -> tuple[int, dict[str, Any]]:
    """The status and the OpenAI error object of a raw HTTP/1.1 response with a JSON body."""
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return status, json.loads(body)["error"]


async def raw(url: str, data: bytes, quiet_s: float = 3.0) -> tuple[bytes, bool]:
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(url))
    async with stream:
        await stream.send_all(data)
        return await read_until_quiet(stream, quiet_s)


# --- crashes --------------------------------------------------------------------------


async def h2_streams(
    url: str, streams: int
) -> tuple[trio.SocketStream, h2.connection.H2Connection]:
    """An h2c connection (prior knowledge) with ``streams`` streaming chats sent."""
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(url))
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    for _ in range(streams):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "POST"), (":path", "/v1/chat/completions"),
                                (":scheme", "http"), (":authority", "localhost"),
                                ("content-type", "application/json")])  # fmt: skip
        conn.send_data(sid, CHAT, end_stream=True)
    await stream.send_all(conn.data_to_send())
    return stream, conn


async def read_h2(stream: trio.SocketStream, conn: h2.connection.H2Connection, for_s: float) -> int:
    """Read (and acknowledge) for ``for_s``; returns the DATA frames received."""
    frames = 0
    with trio.move_on_after(for_s):
        while data := await stream.receive_some(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.DataReceived):
                    frames += 1
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            await stream.send_all(conn.data_to_send())
    return frames


async def test_h2c_goaway_with_streams_in_flight_never_kills_the_server(
    start_server: StartServer,
) -> None:
    """Hypercorn's half-close raced the h2 send task (BusyResourceError) and ended the
    whole server within a few rounds."""
    url = await start_server(itl_ms=10)
    with trio.fail_after(60):
        for _ in range(ROUNDS):
            stream, conn = await h2_streams(url, 50)
            while not await read_h2(stream, conn, 0.2):  # streams in flight: a slow box waits
                pass
            conn.close_connection()  # GOAWAY, then close at once
            await stream.send_all(conn.data_to_send())
            await stream.aclose()
        assert await health(url) == 200


async def test_h2c_reset_storm_leaves_the_server_serving(start_server: StartServer) -> None:
    url = await start_server(itl_ms=10)
    with trio.fail_after(60):
        for _ in range(ROUNDS):
            stream, conn = await h2_streams(url, 50)
            await read_h2(stream, conn, 0.05)
            for sid in list(conn.streams):
                conn.reset_stream(sid)
            await stream.send_all(conn.data_to_send())
            await read_h2(stream, conn, 0.05)
            await stream.aclose()
        assert await health(url) == 200


async def test_an_error_in_one_connection_ends_only_that_connection(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Any exception while a connection is handled (ours or the stack's) is logged once
    and closes that connection; the server keeps serving."""
    real = OpenAIH11.handle

    async def broken(self: OpenAIH11, event: Any) -> None:
        if b"boom" in getattr(event, "data", b""):
            raise RuntimeError("a bug in the stack")
        await real(self, event)

    monkeypatch.setattr(OpenAIH11, "handle", broken)
    url = await start_server()
    with trio.fail_after(30), caplog.at_level(logging.ERROR, "trio_mock"):
        for _ in range(ROUNDS):
            received, closed = await raw(url, b"GET /boom HTTP/1.1\r\nhost: x\r\n\r\n")
            assert closed
            assert received == b""
        assert await health(url) == 200
    failures = [r for r in caplog.records if "connection closed by an error" in r.message]
    assert len(failures) == ROUNDS
    assert all(isinstance(r.exc_info and r.exc_info[1], RuntimeError) for r in failures)


class Supervised:
    """``trio-mock --workers N`` in a subprocess, with its log lines read as they come."""

    def __init__(self, *args: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trio_mock", "--port", "0", "--corpus-articles", "64",
             "--graceful-timeout-s", "1", *args],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def wait_for(self, pattern: str, count: int = 1, within_s: float = 60) -> list[re.Match[str]]:
        deadline = time.monotonic() + within_s
        assert self.process.stderr is not None
        while True:
            found = [m for line in self.lines if (m := re.search(pattern, line))]
            if len(found) >= count:
                return found
            assert time.monotonic() < deadline, f"no {pattern!r} in {self.lines}"
            line = self.process.stderr.readline()
            assert line, f"the supervisor ended: {self.lines}"
            self.lines.append(line)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=30)
        finally:
            self.process.kill()
        assert self.process.stderr is not None
        self.lines += self.process.stderr.readlines()
        self.process.stderr.close()
        return status


def test_a_killed_worker_is_replaced_and_the_others_keep_serving() -> None:
    supervised = Supervised("--workers", "2")
    try:
        (bound,) = supervised.wait_for(r"serving on (http://\S+) with 2 workers")
        url = bound.group(1)
        serving = supervised.wait_for(r"worker (\d+) serving", 2)
        killed = []
        for round_ in range(3):
            pid = int(serving[-1].group(1))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            supervised.wait_for(rf"worker {pid} \(number \d\) was killed by SIGKILL; .*starting")
            with httpx.Client(timeout=5) as client:  # the other worker serves meanwhile
                assert client.get(f"{url}/health").status_code == 200
            serving = supervised.wait_for(r"worker (\d+) serving", 3 + round_)
        assert supervised.process.poll() is None
        live = {int(m.group(1)) for m in serving} - set(killed)
        assert len(live) == 2
        for pid in live:
            os.kill(pid, 0)  # still there
        with httpx.Client(timeout=5) as client:
            assert all(client.get(f"{url}/health").status_code == 200 for _ in range(10))
    finally:
        assert supervised.stop() == 0
    assert any("received SIGTERM" in line for line in supervised.lines)


def test_workers_that_cannot_start_stop_the_supervisor_with_a_failure(tmp_path: Any) -> None:
    supervised = Supervised("--workers", "2", "--journal-file", str(tmp_path / "no" / "dir.jsonl"))
    try:
        supervised.wait_for(r"before serving, 3 times in a row: stopping")
        assert supervised.process.wait(timeout=30) == 1
    finally:
        supervised.stop()


def running(pid: int) -> bool:
    """``pid`` exists and is not a zombie (an orphan's new parent may not reap it soon)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_ended(pids: list[int], limit_s: float) -> bool:
    """Wait (at most ``limit_s``) until every process of ``pids`` has ended; whether they
    all did. A pidfd becomes readable when its process ends, so this blocks, not polls."""
    deadline = time.monotonic() + limit_s
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # gone already
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)
        if not ready:
            return False
    return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_stop_when_the_supervisor_is_killed() -> None:
    """SIGKILL leaves the supervisor no chance to stop them: the workers notice its end
    of their stop pipe closing, rather than serving on as orphans."""
    supervised = Supervised("--workers", "2")
    workers: list[int] = []
    try:
        workers += [int(m.group(1)) for m in supervised.wait_for(r"worker (\d+) serving", 2)]
        supervised.process.kill()
        supervised.process.wait(timeout=30)
        assert wait_ended(workers, 30), supervised.lines
    finally:
        for pid in filter(running, workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        supervised.stop()


# --- hangs: every wait is bounded --------------------------------------------------------

STALLED = [
    pytest.param(b"content-length: 100\r\n\r\n{", id="short-content-length"),
    pytest.param(b"transfer-encoding: chunked\r\n\r\n1\r\n{\r\n", id="chunked-without-end"),
]


@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/tokenize"])
@pytest.mark.parametrize("stalled", STALLED)
async def test_a_body_that_never_arrives_is_answered_408(
    start_server: StartServer, path: bytes, stalled: bytes
) -> None:
    url = await start_server(body_timeout_s=0.5)
    with trio.fail_after(10):
        head = b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n" % path
        received, closed = await raw(url, head + stalled)
    status, error = status_and_error(received)
    assert status == 408
    assert error["code"] == "request_timeout"
    assert closed  # the rest of that body can never be told from a next request


@pytest.mark.parametrize("path", ["/tokenize", "/_mock/config", "/configure", "/_mock/scripts",
                                  "/v1/chat/completions"])  # fmt: skip
async def test_a_refused_body_closes_its_connection(start_server: StartServer, path: str) -> None:
    """A 413 answered before the body has arrived: Hypercorn kept the connection open and
    never answered the next request on it."""
    url = await start_server(max_body_bytes=1000)
    method = b"PATCH" if path == "/_mock/config" else b"POST"
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(url))
    async with stream:
        with trio.fail_after(10):
            await stream.send_all(b"%s %s HTTP/1.1\r\nhost: x\r\ncontent-length: 2000\r\n\r\n"
                                  % (method, path.encode()) + b"x" * 500)  # fmt: skip
            first, _ = await read_until_quiet(stream, 0.5)
            await stream.send_all(b"x" * 1500 + b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            rest, closed = await read_until_quiet(stream, 5)
    status, error = status_and_error(first)
    assert (status, error["code"]) == (413, "request_too_large")
    assert b"connection: close" in first.lower()
    assert closed
    assert rest == b""  # the next request was not taken for the body's continuation


@pytest.mark.parametrize("path", [b"/tokenize", b"/v1/chat/completions"])
async def test_a_wrong_key_is_answered_once_the_body_is_read_and_the_connection_goes_on(
    start_server: StartServer, path: bytes
) -> None:
    """Every route reads the body first (bounded in size and time, as a proxy in front of
    the real API does), so a refusal leaves the connection ready for the next request."""
    url = await start_server(api_keys=("sk-right",))
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(url))
    async with stream:
        with trio.fail_after(10):
            await stream.send_all(
                b"POST %s HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-wrong\r\n"
                b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{" % path
            )
            early, closed = await read_until_quiet(stream, 0.3)
            assert (early, closed) == (b"", False)  # nothing before the body is whole
            await stream.send_all(b" " * 98 + b"}GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            first = await read_response(stream)
            second = await read_response(stream)
    status, error = status_and_error(first)
    assert (status, error["code"]) == (401, "invalid_api_key")
    assert b"connection: close" not in first.lower()
    assert second.startswith(b"HTTP/1.1 200")


async def test_wrong_keys_on_one_connection_are_each_answered_at_once(
    start_server: StartServer,
) -> None:
    url = await start_server(api_keys=("sk-right",))
    body = b'{"model": "m", "prompt": "hello"}'
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(url))
    async with stream:
        for path, key in itertools.product(
            [b"/tokenize", b"/v1/completions"], [b"sk-wrong", b"sk-other", b"sk-right"]
        ):
            with trio.fail_after(3):
                await stream.send_all(
                    b"POST %s HTTP/1.1\r\nhost: x\r\nauthorization: Bearer %s\r\n"
                    b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (path, key, len(body), body)
                )
                received = await read_response(stream)
            assert received.startswith(b"HTTP/1.1 401" if key != b"sk-right" else b"HTTP/1.1 200")


NEVER_READ = {"context_length": 2_000_000}  # room for a stream no client could take in time


async def never_read(url: str, max_tokens: int = 1_000_000) -> trio.SocketStream:
    """A streaming chat of ``max_tokens`` at full speed (needs ``NEVER_READ``), from a client
    that reads its status line and nothing more."""
    body = json.dumps({"model": "m", "stream": True, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()  # fmt: skip
    stream = await trio.open_tcp_stream("127.0.0.1", port_of(url))
    stream.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
    await stream.send_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"x-mock-itl-ms: 0\r\nx-mock-output-tokens: %d\r\ncontent-length: %d\r\n\r\n%s"
        % (max_tokens, len(body), body)
    )
    assert (await stream.receive_some(12)).startswith(b"HTTP/1.1 200")
    return stream


async def test_shutdown_ends_within_the_grace_period_whatever_clients_do() -> None:
    """Writes to a client that never reads ran shielded with no deadline: shutdown waited
    for them forever."""
    shutdown = trio.Event()
    settings = fast_settings(graceful_timeout_s=1.0, **NEVER_READ)
    with trio.fail_after(1.0 + 5):
        async with trio.open_nursery() as nursery:
            (url,) = await nursery.start(partial(serve, settings, shutdown_trigger=shutdown.wait))
            stalled = [await never_read(url) for _ in range(3)]
            await trio.sleep(0.5)  # their socket buffers fill up
            shutdown.set()
    for stream in stalled:
        await stream.aclose()


@pytest.mark.parametrize("knob", ["max_request_s", "send_timeout_s"])
async def test_a_client_that_stops_reading_is_cut_off_in_time(
    start_server: StartServer, knob: str
) -> None:
    url = await start_server(**{knob: 1.0}, **NEVER_READ)
    stream = await never_read(url)
    async with stream:
        await trio.sleep(3.0)  # 1 s, plus the stream's 1 s margin, plus slack
        with trio.fail_after(10):  # what the buffers hold, then the end
            _, closed = await read_until_quiet(stream, 2)
        assert closed


# --- bad input: a clear OpenAI-shaped answer ------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "status"),
    [
        pytest.param(b"GARBAGE\r\n\r\n", 400, id="bad-request-line"),
        pytest.param(b"GET / HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n", 400, id="bad-header"),
        pytest.param(
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: x\r\n\r\n", 400, id="bad-content-length"
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n",
            501,
            id="unknown-transfer-encoding",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
            b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            id="content-length-and-chunked",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n",
            431,
            id="one-header-over-64k",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nhost: x\r\n"
            + b"x-a: "
            + b"a" * 40_000
            + b"\r\nx-b: "
            + b"b" * 40_000
            + b"\r\n\r\n",
            431,
            id="headers-over-64k-together",
        ),
    ],
)
async def test_framing_errors_get_openai_shaped_json(
    start_server: StartServer, request_: bytes, status: int
) -> None:
    url = await start_server()
    with trio.fail_after(10):
        received, closed = await raw(url, request_)
        assert await health(url) == 200
    got, error = status_and_error(received)
    assert got == status
    assert error["type"] == "invalid_request_error" if status < 500 else "server_error"
    assert error["message"]
    assert closed


async def test_headers_under_the_limit_pass(start_server: StartServer) -> None:
    url = await start_server()
    with trio.fail_after(10):
        received, _ = await raw(
            url, b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 60_000 + b"\r\n\r\n", 1
        )
    assert received.startswith(b"HTTP/1.1 200")


# --- growth: connection bursts ---------------------------------------------------------------

BURST = 2000


async def test_a_burst_of_new_connections_is_served(start_server: StartServer) -> None:
    url = await start_server()
    outcomes: collections.Counter[str] = collections.Counter()

    async def one() -> None:
        try:
            # Each answer ends with the connection (EOF), so the quiet period is only a bound;
            # a generous one, since under coverage's tracer the burst takes twice as long.
            received, _ = await raw(
                url, b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", 30
            )
        except OSError as error:
            outcomes[type(error).__name__] += 1
        else:
            outcomes[received[:12].decode() or "closed"] += 1

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(BURST):
                nursery.start_soon(one)
    assert outcomes == {"HTTP/1.1 200": BURST}


def test_a_backlog_above_the_kernel_cap_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    from trio_mock._app._server import somaxconn

    cap = somaxconn()
    if cap is None:
        pytest.skip("no /proc/sys/net/core/somaxconn here")
    with caplog.at_level(logging.WARNING, "trio_mock"), listen("127.0.0.1", 0, cap + 1):
        pass
    assert f"capped at {cap}" in caplog.text
    assert "net.core.somaxconn" in caplog.text


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    """A burst of 10,000 connections needs more than the usual soft limit of 1024."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("the hard limit leaves nothing to raise")
    script = (
        "import resource; from trio_mock._app._server import raise_open_files_limit; "
        "raise_open_files_limit(); print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    low = partial(resource.setrlimit, resource.RLIMIT_NOFILE, (256, hard))
    out = subprocess.run(
        [sys.executable, "-c", script], preexec_fn=low, capture_output=True, text=True, check=True
    )
    expected = hard if hard != resource.RLIM_INFINITY else 65536
    assert int(out.stdout) == expected


@pytest.mark.parametrize(
    "model", ["gpt-\x00x", "gpt\nx", "m" * 300], ids=["nul", "newline", "300-characters"]
)
async def test_a_model_name_no_model_can_have_is_a_404(
    start_server: StartServer, model: str
) -> None:
    """Even with any model name accepted, as the default is."""
    url = await start_server()
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(f"{url}/v1/chat/completions", json=body)
        assert response.status_code == 404
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("model_not_found", "model")
        assert "\x00" not in error["message"]
        assert len(error["message"]) < 400
        fine = await client.post(f"{url}/v1/chat/completions", json=body | {"model": "m" * 256})
        assert fine.status_code == 200
