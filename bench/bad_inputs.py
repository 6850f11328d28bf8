"""The bad-input check of the resilience phase: abusive requests, each on a raw socket.

Framing errors, an oversized header, stalled bodies, out-of-range values and knobs, wrong
keys. Properly refused means the expected status (a 4xx unless the case says otherwise) with
an OpenAI-shaped JSON body ``{"error": {"message": ..., "type": ...}}`` within a bound, and
a server alive and answering ``GET /health`` afterwards; a server that is not is recorded,
and replaced for the next case. No HTTP library: the requests are the point, so they are
written byte by byte, and the answer is read by a small parser bounded by a deadline.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from resilience import failure, tracebacks

if TYPE_CHECKING:
    from bench import Server
    from resilience import Record, Start

CASE_TIMEOUT_S = 5.0  # a refusal is immediate; a stalled body gets the body timeout on top
API_KEY, MAX_BODY_BYTES = "bench-key", 65536  # the server's --api-keys and --max-body-bytes
MAX_HEAD_BYTES = 1 << 20


@dataclass(frozen=True)
class Case:
    """One abusive request.

    Args:
      statuses: the answers that count as a proper refusal (with an OpenAI-shaped body).
      stall: the body never completes, so the answer may take the body timeout.
      then: sent on the same connection after the answer (unless the server closed it);
        it must be answered too, or the connection closed.
    """

    name: str
    request: bytes
    statuses: tuple[int, ...] = tuple(range(400, 500))
    stall: bool = False
    then: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def describe(self) -> str:
        body = self.body[:160].decode("utf-8", "replace")
        return f"{self.status} {body!r}" if self.body else f"{self.status} (empty body)"


def http(
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    key: str | None = API_KEY,
    headers: tuple[str, ...] = (),
    length: str | None = None,
) -> bytes:
    """A raw HTTP/1.1 request; ``length`` overrides the Content-Length header's value."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if key is not None:
        lines.append(f"Authorization: Bearer {key}")
    if body is not None:
        lines.append("Content-Type: application/json")
    if length is not None or body is not None:
        lines.append(f"Content-Length: {length if length is not None else len(body or b'')}")
    head = "\r\n".join([*lines, *headers]) + "\r\n\r\n"
    return head.encode("latin-1") + (body or b"")


def chat(**fields: Any) -> bytes:
    body = {"model": "mock", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    return json.dumps(body | fields).encode()


def chat_post(body: bytes | None, **kw: Any) -> bytes:
    return http("POST", "/v1/chat/completions", body, **kw)


def cases() -> list[Case]:
    """The abusive requests, framing first; the ones that change live config last."""
    chunked = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    chunked += f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
    tokenize = json.dumps({"model": "mock", "prompt": "Hi"}).encode()
    huge_name = "gpt-" + "\x00x" * 4000  # ~28 kB as JSON: under --max-body-bytes
    return [
        Case("bad request line", b"THIS IS NOT HTTP\r\n\r\n"),
        Case("header line without a colon", b"GET /health HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"),
        Case("Content-Length not a number", chat_post(chat(), length="abc")),
        Case("negative Content-Length", chat_post(chat(), length="-5")),
        Case(
            "two different Content-Lengths",
            chat_post(chat(), headers=("Content-Length: 3",)),
        ),
        Case(
            "Content-Length and chunked",
            # A valid chunked chat: a server that lets chunked override answers 200.
            (chunked + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(chat()), chat()),
        ),
        Case(
            "chunk size not hex",
            (chunked + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n").encode(),
        ),
        Case(
            "chunk longer than its size",
            (chunked + "Transfer-Encoding: chunked\r\n\r\n3\r\nhelloworld\r\n0\r\n\r\n").encode(),
        ),
        Case(
            "unknown Transfer-Encoding",
            chat_post(chat(), headers=("Transfer-Encoding: gzip",)),
            statuses=(400, 501),
        ),
        Case(
            "one 70 kB header (limit 64 kB)",
            http("GET", "/health", headers=("X-Big: " + "a" * 70_000,)),
        ),
        Case(
            "Content-Length 1e12 (over --max-body-bytes)",
            chat_post(None, length=str(10**12), headers=("Content-Type: application/json",)),
            statuses=(413,),
        ),
        Case(
            "2 MB body on /tokenize (413), then a request on the same connection",
            http("POST", "/tokenize", b'{"prompt": "' + b"a" * 2_000_000 + b'"}'),
            statuses=(413,),
            then=http("GET", "/v1/models"),
        ),
        Case(
            "body never completes (Content-Length 100, 1 byte sent)",
            chat_post(None, length="100", headers=("Content-Type: application/json",)) + b"{",
            statuses=(408,),
            stall=True,
        ),
        Case(
            "chunked body never completes (no last chunk)",
            (chunked + "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n").encode(),
            statuses=(408,),
            stall=True,
        ),
        Case("body not JSON", chat_post(b"this is not json")),
        Case("body a JSON array", chat_post(b"[1, 2, 3]")),
        Case("empty body", chat_post(b"")),
        Case("body not UTF-8", chat_post(b'{"model": "\xff\xfe", "messages": []}')),
        Case("temperature -5", chat_post(chat(temperature=-5))),
        Case("top_p 2", chat_post(chat(top_p=2))),
        Case(
            "unknown content-part type",
            chat_post(chat(messages=[{"role": "user", "content": [{"type": "bogus", "x": 1}]}])),
        ),
        Case(
            "unknown Responses input item type",
            http(
                "POST",
                "/v1/responses",
                json.dumps({"model": "mock", "input": [{"type": "bogus"}]}).encode(),
            ),
        ),
        Case("28 kB model name with NUL bytes", chat_post(chat(model=huge_name))),
        Case("x-mock-ttft-ms: 1e308", chat_post(chat(), headers=("x-mock-ttft-ms: 1e308",))),
        Case("x-mock-itl-ms: 1e30", chat_post(chat(), headers=("x-mock-itl-ms: 1e30",))),
        Case(
            "x-mock-output-tokens: 1e12",
            chat_post(chat(max_tokens=None), headers=("x-mock-output-tokens: 1000000000000",)),
        ),
        Case("wrong API key on POST /tokenize", http("POST", "/tokenize", tokenize, key="wrong")),
        Case(
            "PATCH /_mock/config ttft_ms 1e308",
            http("PATCH", "/_mock/config", b'{"ttft_ms": 1e308}'),
        ),
        Case(
            "PATCH /_mock/config itl_ms 1e30", http("PATCH", "/_mock/config", b'{"itl_ms": 1e30}')
        ),
        Case(
            "PATCH /_mock/config output_tokens_mean 1e12",
            http("PATCH", "/_mock/config", b'{"output_tokens_mean": 1e12}'),
        ),
    ]


def send_quietly(sock: socket.socket, data: bytes) -> None:
    """Send ``data``; a server that answers early may close or reset before it has it all."""
    with contextlib.suppress(OSError):
        sock.sendall(data)


def read_response(sock: socket.socket, deadline: float) -> Response | str:
    """Read one HTTP/1.1 answer by ``deadline``; a string says what came instead."""
    buf = bytearray()

    def fill() -> bool:  # False at EOF; TimeoutError past the deadline
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        data = sock.recv(65536)
        buf.extend(data)
        return bool(data)

    try:
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_HEAD_BYTES:
                return "an answer head over 1 MB"
            if not fill():
                return f"closed mid-answer: {bytes(buf[:80])!r}" if buf else "closed, no answer"
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[: end + 4]
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
        }
        if status in (204, 304) or status < 200:
            return Response(status, headers, b"")
        if "chunked" in headers.get("transfer-encoding", ""):
            body = bytearray()
            while True:
                while (eol := buf.find(b"\r\n")) < 0:
                    if not fill():
                        return Response(status, headers, bytes(body))
                size = int(bytes(buf[:eol]).split(b";")[0], 16)
                while len(buf) < eol + 2 + size + 2:
                    if not fill():
                        return Response(status, headers, bytes(body))
                body += buf[eol + 2 : eol + 2 + size]
                del buf[: eol + 2 + size + 2]
                if not size:
                    return Response(status, headers, bytes(body))
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(buf) < length and fill():
                pass
            return Response(status, headers, bytes(buf[:length]))
        while fill():
            pass
        return Response(status, headers, bytes(buf))
    except TimeoutError:
        return "an incomplete answer" if buf else "no answer"
    except (ValueError, IndexError):
        return f"not HTTP: {bytes(buf[:80])!r}"
    except OSError as error:
        return f"{'an incomplete answer, then ' if buf else ''}{type(error).__name__}"


def openai_error(body: bytes) -> bool:
    """Is ``body`` ``{"error": {"message": str, "type": str, ...}}``?"""
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    error = doc.get("error") if isinstance(doc, dict) else None
    return (
        isinstance(error, dict)
        and isinstance(error.get("message"), str)
        and isinstance(error.get("type"), str)
    )


def try_case(server: Server, case: Case, bound_s: float) -> str | None:
    """Send ``case``; None if properly refused, else what came back."""
    parts = urlsplit(server.url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    started = time.monotonic()
    try:
        sock = socket.create_connection(address, timeout=bound_s)
    except OSError as error:
        return f"connect failed: {error}"
    with sock:
        send_quietly(sock, case.request)
        answer = read_response(sock, started + bound_s)
        took = f"after {time.monotonic() - started:.1f} s"
        if isinstance(answer, str):
            return f"{answer} within {bound_s:g} s" if "no answer" in answer else answer
        if answer.status not in case.statuses or not openai_error(answer.body):
            return f"{answer.describe()} {took}"
        if case.then and "close" not in answer.headers.get("connection", "").lower():
            send_quietly(sock, case.then)
            follow = read_response(sock, time.monotonic() + bound_s)
            if isinstance(follow, str) and not follow.startswith(("closed", "Connection")):
                return f"{answer.status}, then the next request on the connection: {follow}"
    return None


def bad_inputs(start: Start, body_timeout_s: float | None) -> Record:
    """Send each of ``cases()``; tally those properly refused, list the others."""
    improper: list[str] = []
    all_cases = cases()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(start())
        for case in all_cases:
            bound_s = CASE_TIMEOUT_S + ((body_timeout_s or 0.0) if case.stall else 0.0)
            got = try_case(server, case, bound_s)
            if (problem := failure(server)) is not None:
                got = f"{got or 'refused'}; then the server {problem}"
                stack.close()
                server = stack.enter_context(start())
            if got is not None:
                improper.append(f"{case.name}: {got}")
        logged = tracebacks(server)
    return {
        "scenario": "bad_inputs",
        "tried": len(all_cases),
        "refused_properly": len(all_cases) - len(improper),
        "body_timeout_s": body_timeout_s,
        "not_refused_properly": improper,
        "server_tracebacks": logged,
    }
