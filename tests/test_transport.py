"""Transport over real loopback sockets: h2c, TLS + ALPN, shutdown, disconnects, limits.

These run on the real clock (MockClock must stay away from real sockets, STYLE.md section
6), so every schedule here is short and every wait is bounded with ``fail_after``.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import trio
import trustme

from conftest import fast_settings
from trio_mock import Settings, serve

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import StartServer

CHAT = "/v1/chat/completions"
# Leaving ``aiter_lines()`` early (or on an error) leaves httpx's inner async generators to
# the garbage collector, and trio warns about each (STYLE.md section 6).
pytestmark = pytest.mark.filterwarnings("ignore:Async generator 'httpx?(core)?\\.:ResourceWarning")


def chat_body(max_tokens: int, *, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "trio-mock",
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": max_tokens,
        "stream": stream,
    }


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def check_completion(response: httpx.Response, max_tokens: int) -> None:
    """A 200 ``chat.completion`` that ran to ``max_tokens``."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == max_tokens


async def stream_events(
    client: httpx.AsyncClient, url: str, max_tokens: int
) -> tuple[httpx.Response, list[str]]:
    """POST a streamed chat and return the response and every ``data:`` payload."""
    payloads: list[str] = []
    async with client.stream(
        "POST", url + CHAT, json=chat_body(max_tokens, stream=True)
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                payloads.append(line.removeprefix("data: "))
    return response, payloads


def check_stream(payloads: list[str], max_tokens: int) -> None:
    """A complete stream: chunks carrying ``max_tokens`` tokens of text, then ``[DONE]``."""
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text
    # One token per chunk by default (tokens_per_event_min = max = 1).
    assert sum(1 for c in chunks if c["choices"][0]["delta"].get("content")) == max_tokens


# --- HTTP/2 cleartext (prior knowledge) ---------------------------------------------------


async def test_h2c_prior_knowledge(start_server: StartServer) -> None:
    url = await start_server()
    async with httpx.AsyncClient(http1=False, http2=True) as client:
        with trio.fail_after(5):
            response = await client.post(url + CHAT, json=chat_body(5))
            check_completion(response, 5)
            assert response.http_version == "HTTP/2"

            streamed, payloads = await stream_events(client, url, 4)
            assert streamed.http_version == "HTTP/2"
            check_stream(payloads, 4)


# --- TLS: ALPN picks h2 or http/1.1 -------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca: trustme.CA, tmp_path: Path) -> dict[str, str]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_pem.write_to_path(str(keyfile))
    for i, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(certfile), append=i > 0)
    return {"certfile": str(certfile), "keyfile": str(keyfile)}


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A fresh context per client: httpcore sets its ALPN list on the context it is given."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.mark.parametrize(
    ("http2", "alpn", "version"),
    [(True, "h2", "HTTP/2"), (False, "http/1.1", "HTTP/1.1")],
    ids=["h2", "http1.1"],
)
async def test_tls_alpn(
    start_server: StartServer,
    ca: trustme.CA,
    tls_files: dict[str, str],
    http2: bool,
    alpn: str,
    version: str,
) -> None:
    url = await start_server(**tls_files)
    assert url.startswith("https://")
    host, port = host_port(url)

    # What the server's ALPN answers to a client offering exactly what httpx offers.
    context = client_context(ca)
    context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
    with trio.fail_after(5):
        tls = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=context)
        try:
            await tls.do_handshake()
            assert tls.selected_alpn_protocol() == alpn
        finally:
            await tls.aclose()

    async with httpx.AsyncClient(verify=client_context(ca), http2=http2) as client:
        with trio.fail_after(5):
            response = await client.post(url + CHAT, json=chat_body(5))
            check_completion(response, 5)
            assert response.http_version == version

            streamed, payloads = await stream_events(client, url, 4)
            assert streamed.http_version == version
            check_stream(payloads, 4)


# --- Graceful shutdown ----------------------------------------------------------------------


@asynccontextmanager
async def serving(settings: Settings) -> AsyncGenerator[tuple[str, trio.Event, trio.Event], None]:
    """Run ``serve`` with an event as its shutdown trigger.

    Yields:
      (url, shutdown, stopped): set ``shutdown`` to stop; ``stopped`` is set when ``serve``
      has returned.
    """
    shutdown, stopped = trio.Event(), trio.Event()

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        await serve(settings, shutdown_trigger=shutdown.wait, task_status=task_status)
        stopped.set()

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(run)
        try:
            yield binds[0], shutdown, stopped
        finally:
            shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + 5  # a backstop, never hit


async def is_refused(host: str, port: int) -> bool:
    """Whether a new TCP connection to ``host:port`` is refused: nothing listens there.

    A reset counts as not refused yet: it is a connection the closing listener had queued.
    """
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as error:
        causes = error.__cause__
        if isinstance(causes, ExceptionGroup):
            if all(isinstance(cause, ConnectionRefusedError) for cause in causes.exceptions):
                return True
            if all(isinstance(cause, ConnectionResetError) for cause in causes.exceptions):
                return False
        raise
    await stream.aclose()
    return False


async def wait_refused(host: str, port: int) -> None:
    """Return once a new TCP connection to ``host:port`` is refused."""
    # Polls the kernel's answer: no event of ours tells when the listener closes.
    while not await is_refused(host, port):  # ruff: ignore[async-busy-wait]
        await trio.sleep(0.01)


async def stream_until_shutdown(
    client: httpx.AsyncClient, url: str, max_tokens: int, shutdown: trio.Event
) -> list[str]:
    """Stream a chat, set ``shutdown`` after the second frame, return every payload.

    After the trigger it checks that new connections are refused while the stream goes on.
    """
    host, port = host_port(url)
    payloads: list[str] = []
    async with client.stream(
        "POST", url + CHAT, json=chat_body(max_tokens, stream=True)
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            payloads.append(line.removeprefix("data: "))
            if len(payloads) == 2:
                shutdown.set()
                await wait_refused(host, port)  # the listener closes at once
    return payloads


async def test_graceful_shutdown_lets_stream_finish() -> None:
    max_tokens = 20  # at 20 ms: about 0.4 s, well inside the grace period
    settings = fast_settings(itl_ms=20, graceful_timeout_s=5)
    async with serving(settings) as (url, shutdown, stopped):
        host, port = host_port(url)
        with trio.fail_after(5):
            async with httpx.AsyncClient() as client:
                payloads = await stream_until_shutdown(client, url, max_tokens, shutdown)
                assert not stopped.is_set()
        check_stream(payloads, max_tokens)
        with trio.fail_after(2):  # nothing is in flight: no need to wait out the 5 s
            await stopped.wait()
        assert await is_refused(host, port)


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2c"])
async def test_graceful_shutdown_closes_idle_keep_alive(http2: bool) -> None:
    max_tokens = 10
    settings = fast_settings(itl_ms=20, graceful_timeout_s=2)
    async with (
        serving(settings) as (url, shutdown, stopped),
        httpx.AsyncClient(http1=not http2, http2=http2) as client,
    ):
        with trio.fail_after(5):
            payloads = await stream_until_shutdown(client, url, max_tokens, shutdown)
        check_stream(payloads, max_tokens)
        # The client keeps its pooled connection, as every HTTP client does.
        with trio.move_on_after(0.5):
            await stopped.wait()
        assert stopped.is_set(), "serve() still running 0.5 s after its last stream ended"


async def test_graceful_timeout_cuts_long_stream() -> None:
    grace_s = 0.1
    settings = fast_settings(itl_ms=20, graceful_timeout_s=grace_s)  # 500 tokens: 10 s
    async with serving(settings) as (url, shutdown, stopped), httpx.AsyncClient() as client:
        payloads: list[str] = []
        triggered_at: float | None = None
        with trio.fail_after(5):
            # The body may end without its last chunk: httpx calls that a protocol error.
            with suppress(httpx.RemoteProtocolError):
                async with client.stream(
                    "POST", url + CHAT, json=chat_body(500, stream=True)
                ) as response:
                    async for line in response.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        payloads.append(line.removeprefix("data: "))
                        if len(payloads) == 2:
                            shutdown.set()
                            triggered_at = trio.current_time()
            await stopped.wait()
        assert triggered_at is not None
        stopped_after_s = trio.current_time() - triggered_at
        assert "[DONE]" not in payloads
        assert 2 <= len(payloads) < 100
        assert stopped_after_s < grace_s + 1.0


# --- Client disconnects ---------------------------------------------------------------------


def all_tasks() -> set[trio.lowlevel.Task]:
    """Every task in this Trio run, found by walking down from the root task."""
    found: set[trio.lowlevel.Task] = set()

    def walk(task: trio.lowlevel.Task) -> None:
        found.add(task)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return found


async def wait_tasks_gone(tasks: set[trio.lowlevel.Task]) -> None:
    """Return once none of ``tasks`` is alive (the caller bounds the wait)."""
    # No event tells when a task ends: poll the task tree.
    while tasks & all_tasks():  # ruff: ignore[async-busy-wait]
        await trio.sleep(0.01)


@pytest.mark.parametrize("http2", [False, True], ids=["http1.1", "h2c"])
async def test_disconnect_mid_stream_cancels_handler(
    start_server: StartServer, http2: bool
) -> None:
    # A short keep-alive: Hypercorn may re-arm a finished connection's idle timer just after
    # the client closed it (a race in its h11 recycling), leaving a task for that long.
    url = await start_server(itl_ms=10, keep_alive_timeout_s=0.5)
    # Once a request has been served, the listener tasks run; then the server is idle.
    async with httpx.AsyncClient(http1=not http2, http2=http2) as client:
        check_completion(await client.post(url + CHAT, json=chat_body(2)), 2)
    # That connection's tasks may still be winding down: wait until none is left, so that
    # they are not mistaken for the stream's below.
    with trio.move_on_after(2):
        while any("tcp_server" in t.name for t in all_tasks()):  # ruff: ignore[async-busy-wait]
            await trio.sleep(0.01)
    before = all_tasks()

    async with httpx.AsyncClient(http1=not http2, http2=http2) as client:
        with trio.fail_after(5):
            # 1000 tokens at 10 ms: 10 s, unless the disconnect cancels the handler.
            async with client.stream(
                "POST", url + CHAT, json=chat_body(1000, stream=True)
            ) as response:
                received = 0
                async for line in response.aiter_lines():
                    received += line.startswith("data: ")
                    if received == 3:
                        break
                # The server's connection and request tasks, as the stream runs.
                serving_tasks = all_tasks() - before
    closed_at = trio.current_time()
    assert serving_tasks, "no server task seen while streaming: the check would be vacuous"
    with trio.move_on_after(2):
        await wait_tasks_gone(serving_tasks)
    settled_s = trio.current_time() - closed_at
    leaked = serving_tasks & all_tasks()
    assert not leaked, f"left after the client went away: {sorted(t.name for t in leaked)}"
    assert settled_s < 1.0

    async with httpx.AsyncClient(http1=not http2, http2=http2) as client:
        with trio.fail_after(5):
            _, payloads = await stream_events(client, url, 3)
    check_stream(payloads, 3)


# --- Known trap: h2c clients dropping connections with streams in flight -------------------


async def h2_drop_connection(host: str, port: int, streams: int, *, reset: bool) -> int:
    """Open an h2c connection, start ``streams`` chat streams, then drop it abruptly.

    Returns how many streams had sent data before the drop. Reading stops a moment before
    the drop, so flow control leaves the server blocked in the middle of sending.
    """
    tcp = await trio.open_tcp_stream(host, port)
    try:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        body = json.dumps(chat_body(2000, stream=True)).encode()
        for _ in range(streams):
            stream_id = conn.get_next_available_stream_id()
            headers = [
                (":method", "POST"),
                (":path", CHAT),
                (":scheme", "http"),
                (":authority", f"{host}:{port}"),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
            ]
            conn.send_headers(stream_id, headers)
            conn.send_data(stream_id, body, end_stream=True)
        await tcp.send_all(conn.data_to_send())
        started: set[int] = set()
        with trio.move_on_after(1.0):
            while len(started) < streams:
                data = await tcp.receive_some(65536)
                if not data:
                    break
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
                        started.add(event.stream_id)
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                await tcp.send_all(conn.data_to_send())
        # Stop reading: the windows fill and the server's sends pile up on the connection.
        await trio.sleep(0.05)
        return len(started)
    finally:
        if reset:  # RST instead of FIN
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await tcp.aclose()


async def test_h2c_dropped_connections_do_not_kill_server(
    start_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Fast tokens, so every stream is mid-send when its connection goes.
    url = await start_server(itl_ms=1)
    host, port = host_port(url)
    with trio.fail_after(10):
        for round_ in range(6):
            started = await h2_drop_connection(host, port, 20, reset=round_ % 2 == 1)
            assert started == 20
        await trio.sleep(0.1)  # let the server notice the last drop
        # A crashed server would have raised into the test's nursery by now; it still answers.
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            check_completion(await client.post(url + CHAT, json=chat_body(3)), 3)
            _, payloads = await stream_events(client, url, 3)
            check_stream(payloads, 3)
    # Hypercorn logs what escapes the app ("Error in ASGI Framework"); nothing may. (Falling
    # behind the schedule on a busy machine is not this test's business.)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in warnings if r.name != "trio_mock.lag"] == []


# --- max_request_s ----------------------------------------------------------------------------


async def test_stream_over_max_request_ends_with_error_frame(start_server: StartServer) -> None:
    limit_s = 0.3
    url = await start_server(itl_ms=20, max_request_s=limit_s)  # 100 tokens: 2 s
    async with httpx.AsyncClient() as client:
        with trio.fail_after(5):
            start = trio.current_time()
            _, payloads = await stream_events(client, url, 100)
            elapsed_s = trio.current_time() - start
    assert "[DONE]" not in payloads
    last = json.loads(payloads[-1])
    assert set(last) == {"error"}
    assert last["error"]["code"] == "timeout"
    assert last["error"]["type"] == "timeout"
    assert last["error"]["message"]
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert 1 <= len(chunks) < 100
    assert limit_s - 0.05 <= elapsed_s < limit_s + 1.0


async def test_non_stream_over_max_request_gets_504(start_server: StartServer) -> None:
    limit_s = 0.3
    url = await start_server(itl_ms=20, max_request_s=limit_s)  # 100 tokens: 2 s
    async with httpx.AsyncClient() as client:
        with trio.fail_after(5):
            start = trio.current_time()
            response = await client.post(url + CHAT, json=chat_body(100))
            elapsed_s = trio.current_time() - start
    assert response.status_code == 504
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "timeout"
    assert error["type"] == "timeout"
    assert error["message"]
    assert limit_s - 0.05 <= elapsed_s < limit_s + 1.0
