"""The send path our worker owns (``_worker``), through the real server over HTTP/1.1.

Whole bodies carry a ``content-length``; streamed chunks take the worker's shortcut past
Hypercorn's and h11's per-chunk events and still frame a body h11 can read, on a connection
that stays usable; an idle kept-alive connection closes after the keep-alive timeout (a
deadline now, not a task); and a request's schedule starts when the worker read its head.
"""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx
import orjson
import trio
import trio.testing

from asgi import call, token_times
from conftest import StartServer, fast_settings
from trio_mock import create_app
from trio_mock._serve._protocols import ARRIVAL_EXTENSION

CHAT = "/v1/chat/completions"


def chat(max_tokens: int, *, stream: bool) -> bytes:
    messages = [{"role": "user", "content": "Hello"}]
    return orjson.dumps({"model": "m", "messages": messages, "max_tokens": max_tokens,
                         "stream": stream})  # fmt: skip


def post(client: h11.Connection, body: bytes) -> bytes:
    """A chat request's bytes, written by h11 (a strict HTTP/1.1 client)."""
    headers = [("host", "test"), ("content-type", "application/json"),
               ("content-length", str(len(body)))]  # fmt: skip
    head = client.send(h11.Request(method="POST", target=CHAT, headers=headers))
    return head + client.send(h11.Data(data=body)) + client.send(h11.EndOfMessage())


async def exchange(
    sock: trio.SocketStream, client: h11.Connection, body: bytes
) -> tuple[h11.Response, bytes]:
    """One request on a kept-alive connection, its answer read with h11."""
    await sock.send_all(post(client, body))
    response: h11.Response | None = None
    data = b""
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await sock.receive_some(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            data += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            client.start_next_cycle()
            return response, data


async def connect(url: str) -> trio.SocketStream:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return await trio.open_tcp_stream(parts.hostname, parts.port)


async def test_bodies_and_streams_alternate_on_one_connection(start_server: StartServer) -> None:
    url = await start_server(itl_ms=1)
    client = h11.Connection(h11.CLIENT)
    with trio.fail_after(10):
        sock = await connect(url)
        for _ in range(2):
            response, data = await exchange(sock, client, chat(5, stream=False))
            headers = dict(response.headers)
            assert response.status_code == 200
            assert int(headers[b"content-length"]) == len(data)  # a whole body, as OpenAI's
            assert b"transfer-encoding" not in headers
            assert orjson.loads(data)["usage"]["completion_tokens"] == 5
            response, data = await exchange(sock, client, chat(20, stream=True))
            headers = dict(response.headers)
            assert headers[b"transfer-encoding"] == b"chunked"
            chunks = [orjson.loads(f[6:]) for f in data.split(b"\n\n") if f.startswith(b"data: {")]
            deltas = [c["choices"][0]["delta"].get("content") for c in chunks]
            assert len([d for d in deltas if d]) == 20
            assert data.endswith(b"data: [DONE]\n\n")
        await sock.aclose()


async def test_an_idle_kept_alive_connection_closes_after_the_timeout(
    start_server: StartServer,
) -> None:
    url = await start_server(itl_ms=20, keep_alive_timeout_s=0.3)
    client = h11.Connection(h11.CLIENT)
    with trio.fail_after(10):
        sock = await connect(url)
        start = trio.current_time()
        response, data = await exchange(sock, client, chat(25, stream=True))  # busy 0.5 s
        assert response.status_code == 200
        assert trio.current_time() - start > 0.3  # longer than the timeout, yet served
        assert data.endswith(b"data: [DONE]\n\n")
        idle_at = trio.current_time()
        assert await sock.receive_some(100) == b""  # then idle: the server closes it
        assert 0.2 < trio.current_time() - idle_at < 2
        await sock.aclose()


async def test_the_schedule_runs_from_the_arrival_the_server_stamped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(ttft_ms=100, itl_ms=10))
    body: dict[str, Any] = orjson.loads(chat(3, stream=True))
    async with app.test_app():
        head_read_at = trio.current_time() - 0.03  # the request waited 30 ms for its turn
        answer = await call(app, CHAT, body, extensions={ARRIVAL_EXTENSION: head_read_at})
    # TTFT 100 ms from the arrival: 70 ms after this task's turn, then every 10 ms.
    assert [round(t, 6) for t in token_times(answer.events())] == [0.07, 0.08, 0.09]
    assert answer.headers["x-mock-ttft-ms"] == "100.000"


async def test_a_request_waiting_in_the_socket_counts_from_its_arrival(
    start_server: StartServer,
) -> None:
    # The server runs in this test's Trio run: blocking it (as a busy loop would) leaves
    # the request in the socket. Its schedule must start when it arrived there, so the
    # first token, due 50 ms after, is at least 50 ms late, and the journal says so.
    url = await start_server(ttft_ms=50, itl_ms=1)
    client = h11.Connection(h11.CLIENT)
    parts = urlsplit(url)
    with trio.fail_after(10):
        # Connect and send without yielding to the loop (the kernel completes the handshake
        # and buffers the request), so the server can read nothing before the block.
        raw = socket.create_connection((parts.hostname, parts.port))
        raw.sendall(post(client, chat(2, stream=True)))
        time.sleep(0.1)  # ruff: ignore[blocking-sleep-in-async-function] (the point)
        raw.setblocking(False)
        sock = trio.SocketStream(trio.socket.from_stdlib_socket(raw))
        received = b""
        while not received.endswith(b"0\r\n\r\n"):
            received += await sock.receive_some(65536)
        await sock.aclose()
        async with httpx.AsyncClient() as http:
            (entry,) = (await http.get(url + "/_mock/requests", params={"limit": 1})).json()["data"]
    assert entry["timing"]["lag_max_ms"] >= 50


async def test_every_route_names_its_request_as_the_hot_endpoints_do(
    start_server: StartServer,
) -> None:
    url = await start_server()
    async with httpx.AsyncClient(base_url=url) as client:
        for method, path in [("GET", "/v1/models"), ("GET", "/health"), ("GET", "/nowhere"),
                             ("POST", CHAT)]:  # fmt: skip
            fresh = await client.request(method, path, json=orjson.loads(chat(1, stream=False)))
            assert fresh.headers["x-request-id"].startswith("req_"), path
            echoed = await client.request(method, path, headers={"x-request-id": "trace-42"},
                                          json=orjson.loads(chat(1, stream=False)))  # fmt: skip
            assert echoed.headers["x-request-id"] == "trace-42", path
        assert (await client.get("/nowhere")).status_code == 404  # an error answer too
