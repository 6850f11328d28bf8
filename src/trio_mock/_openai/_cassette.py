"""The cassette: recorded exchanges, one JSON object a line, and how requests find them.

A line holds what a client sent (the endpoint, the body, the harmless headers) and what the
upstream answered (status, the headers that matter, the body or each SSE chunk with its
offset in seconds from the request's arrival). People edit these files, and other versions
write them, so a line may carry fields this version does not know: they are kept, never an
error. A line that is not a recording stops loading with its file and line number. Pure: the
caller reads and appends the file (``_serve._replay``, ``_serve._proxy``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from attrs import frozen

VERSION = 1
MAX_OFFSET_S = 86_400.0  # a day: no recorded chunk comes later
# Request headers never written: keys, whatever the casing (the proxy also keeps only
# harmless ones; this is the second lock).
SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "cookie", "x-admin-key"})


class CassetteError(ValueError):
    """A line that is not a recording; the message starts with ``file:line:``."""


@frozen(kw_only=True)
class Recording:
    """One recorded exchange, as loaded. ``chunks`` is None for a whole body."""

    line: int
    source: str  # the file's name, for the journal
    endpoint: str  # /chat/completions, ... (no /v1)
    request: dict[str, Any]  # the request's body
    status: int
    headers: tuple[tuple[str, str], ...]
    chunks: tuple[tuple[float, bytes], ...] | None  # (offset after arrival, SSE bytes)
    body: bytes  # the whole body (a stream's chunks joined)
    body_at: float  # when the body was whole, seconds after arrival
    cut: str | None  # why the upstream's answer ended early, if it did
    data: dict[str, Any]  # the line as decoded, unknown fields included

    @property
    def label(self) -> str:
        """How the journal names it: ``file:line``."""
        return f"{self.source}:{self.line}"


def endpoint_of(path: str) -> str:
    """``/v1/chat/completions`` and ``/api/v1/chat/completions`` -> ``/chat/completions``."""
    return path.removeprefix("/api").removeprefix("/v1")


def matching_key(endpoint: str, body: Mapping[str, Any], ignore: Iterable[str]) -> bytes:
    """What two requests share when one may be answered with the other's recording: the
    endpoint and every body field but the ignored ones, key order aside."""
    left_out = set(ignore)
    kept = {k: v for k, v in body.items() if k not in left_out}
    return orjson.dumps([endpoint_of(endpoint), kept], option=orjson.OPT_SORT_KEYS)


def parse_cassette(text: str, source: str) -> list[Recording]:
    """Every recording in a cassette's text; blank lines are skipped.

    Raises:
      CassetteError: a line that is not JSON (a truncated last line, say) or not a
        recording, naming ``source`` and the line number.
    """
    recordings = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError as error:
            raise CassetteError(f"{source}:{number}: not JSON (truncated?): {error}") from None
        try:
            recordings.append(recording_of(data, number, source))
        except (KeyError, TypeError, ValueError) as error:
            problem = f"missing field {error}" if isinstance(error, KeyError) else str(error)
            raise CassetteError(f"{source}:{number}: not a recording: {problem}") from None
    return recordings


def recording_of(data: Any, line: int, source: str) -> Recording:
    """Check one decoded line and build its recording.

    Raises:
      KeyError, TypeError, ValueError: what is missing or wrong.
    """
    if not isinstance(data, dict):
        raise TypeError("expected a JSON object")
    request, response = data["request"], data["response"]
    endpoint, body = data["endpoint"], request["body"]
    if not isinstance(endpoint, str) or not isinstance(body, dict):
        raise TypeError("endpoint must be a string and request.body an object")
    status = response["status"]
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"response.status must be an HTTP status, got {status!r}")
    headers = response.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise TypeError("response.headers must be an object of strings")
    cut = response.get("cut")
    chunks = None
    if response.get("chunks") is not None:
        chunks = tuple(checked_chunks(response["chunks"]))
        whole = b"".join(data for _, data in chunks)
        body_at = chunks[-1][0] if chunks else 0.0
    else:
        whole = body_bytes(response.get("body"))
        body_at = offset(response.get("at", 0.0), "response.at")
    return Recording(
        line=line,
        source=source,
        endpoint=endpoint_of(endpoint),
        request=body,
        status=status,
        headers=tuple((k.lower(), v) for k, v in headers.items()),
        chunks=chunks,
        body=whole,
        body_at=body_at,
        cut=cut if isinstance(cut, str) else None,
        data=data,
    )


def checked_chunks(raw: Any) -> Iterable[tuple[float, bytes]]:
    if not isinstance(raw, list):
        raise TypeError("response.chunks must be a list of [offset, text] pairs")
    previous = 0.0
    for i, pair in enumerate(raw):
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
            raise TypeError(f"response.chunks[{i}] must be [offset in seconds, text]")
        at = offset(pair[0], f"response.chunks[{i}]")
        if at < previous:
            raise ValueError(f"response.chunks[{i}]: offsets must not go back ({at} < {previous})")
        previous = at
        yield at, pair[1].encode()


def offset(value: Any, where: str) -> float:
    if type(value) not in (int, float) or not 0 <= value <= MAX_OFFSET_S or math.isnan(value):
        raise ValueError(f"{where}: an offset is seconds from 0 to {MAX_OFFSET_S:g}, got {value!r}")
    return float(value)


def body_bytes(body: Any) -> bytes:
    """A recorded whole body: a JSON value as JSON, a string (not JSON) as it is."""
    if body is None:
        return b""
    return body.encode() if isinstance(body, str) else orjson.dumps(body)


def recording_line(
    *,
    endpoint: str,
    request: Mapping[str, Any],
    request_headers: Mapping[str, str],
    status: int,
    headers: Mapping[str, str],
    chunks: Sequence[tuple[float, bytes]] | None = None,
    body: bytes = b"",
    body_at: float = 0.0,
    cut: str | None = None,
) -> bytes:
    """One exchange as a cassette line, newline included, with no secret header in it."""
    response: dict[str, Any] = {"status": status, "headers": dict(headers)}
    if chunks is not None:
        response["chunks"] = [
            [round(at, 6), data.decode("utf-8", "replace")] for at, data in chunks
        ]
    else:
        try:
            response["body"] = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            response["body"] = body.decode("utf-8", "replace")
        response["at"] = round(body_at, 6)
    if cut is not None:
        response["cut"] = cut
    line = {
        "version": VERSION,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "endpoint": endpoint_of(endpoint),
        "request": {
            "headers": {
                k: v for k, v in request_headers.items() if k.lower() not in SECRET_HEADERS
            },
            "body": dict(request),
        },
        "response": response,
    }
    return orjson.dumps(line) + b"\n"


class Cassette:
    """Recordings by matching key; several of one key are replayed in turn, round and round."""

    def __init__(self, recordings: Sequence[Recording], ignore: Iterable[str] = ()) -> None:
        self.ignore = tuple(ignore)
        self.recordings = list(recordings)
        self.by_key: dict[bytes, list[Recording]] = {}
        for recording in recordings:
            key = matching_key(recording.endpoint, recording.request, self.ignore)
            self.by_key.setdefault(key, []).append(recording)
        self.turns: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self.recordings)

    def take(self, path: str, body: Mapping[str, Any]) -> Recording | None:
        """The next recording for this request, or None (no await: concurrent requests
        of one key each get their own turn)."""
        key = matching_key(path, body, self.ignore)
        found = self.by_key.get(key)
        if not found:
            return None
        turn = self.turns.get(key, 0)
        self.turns[key] = turn + 1
        return found[turn % len(found)]
