"""A recording as a planned reply: its chunks at their recorded offsets (``_cassette``).

A replayed reply is a ``PlannedReply`` like a generated one, so the transport plays it on
the same drift-free path: each chunk is one event, due ``offset / speed`` after admission.
Ids and ``created`` are fresh unless asked to keep them, so a client that stores replies by
id sees new ones, as from the real API. A recorded error comes back as an ``OpenAIError``
with its status, body and headers. Pure.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from ._errors import OpenAIError
from ._frames import error_frame, new_id

if TYPE_CHECKING:
    from ._cassette import Recording

# Headers of the recorded answer the client gets again; the transport sets the rest.
REPLAYED_HEADERS = re.compile(r"x-ratelimit-.*|retry-after(-ms)?|openai-.*")
CREATED = re.compile(rb'"(created|created_at)":(\d+)')


def replayed_headers(recording: Recording) -> list[tuple[bytes, bytes]]:
    return [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in recording.headers
        if REPLAYED_HEADERS.fullmatch(name)
    ]


def recorded_error(recording: Recording) -> OpenAIError:
    """A recorded refusal as the error it was: its status, OpenAI's fields, its headers."""
    try:
        error = orjson.loads(recording.body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        error = None
    if not isinstance(error, dict):
        error = {"message": recording.body.decode("utf-8", "replace") or "Upstream error."}
    fields = {k: v if v is None or isinstance(v, str) else str(v) for k, v in error.items()}
    return OpenAIError(
        recording.status,
        fields.get("message") or "Upstream error.",
        param=fields.get("param"),
        code=fields.get("code"),
        type=fields.get("type"),
        headers=tuple(replayed_headers(recording)),
    )


def first_id(data: bytes) -> str | None:
    """The reply's own id: a chunk's or body's ``id``, or a Responses event's ``response.id``."""
    payload = (
        data.removeprefix(b"data: ").split(b"\n", 1)[0] if data.startswith(b"data: ") else data
    )
    if data.startswith(b"event: "):
        payload = data.split(b"data: ", 1)[-1].split(b"\n", 1)[0]
    try:
        decoded = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(decoded, dict):
        return None
    found = decoded.get("id")
    if not isinstance(found, str) and isinstance(decoded.get("response"), dict):
        found = decoded["response"].get("id")
    return found if isinstance(found, str) else None


def refreshed(pieces: Sequence[bytes]) -> list[bytes]:
    """``pieces`` with the reply's id replaced by a new one of the same prefix throughout,
    and every ``created``/``created_at`` time by now."""
    old = next((found for piece in pieces if (found := first_id(piece))), None)
    now = b"%d" % int(time.time())
    out = [CREATED.sub(lambda m: b'"' + m[1] + b'":' + now, piece) for piece in pieces]
    if old:
        prefix = re.match(r"(.*[-_])", old)
        new = new_id(
            prefix[1] if prefix else "", max(len(old) - (prefix.end() if prefix else 0), 8)
        )
        out = [piece.replace(old.encode(), new.encode()) for piece in out]
    return out


def usage_of(recording: Recording) -> dict[str, Any]:
    """The recorded usage (the body's, or a stream's last chunk that has one), or {}."""
    pieces = [recording.body] if recording.chunks is None else [c for _, c in recording.chunks]
    for piece in reversed(pieces):
        if b'"usage":{' not in piece:
            continue
        for line in piece.split(b"\n"):
            text = line.removeprefix(b"data: ")
            try:
                decoded = orjson.loads(text)
            except orjson.JSONDecodeError:
                continue
            if isinstance(decoded, dict):
                found = decoded.get("usage") or (decoded.get("response") or {}).get("usage")
                if isinstance(found, dict):
                    return found
    return {}


class ReplayedReply:
    """A recording, planned: its chunks (or its body) at their recorded offsets."""

    def __init__(self, recording: Recording, speed: float = 1.0, keep_ids: bool = False) -> None:
        self.recording = recording
        self.stream = recording.chunks is not None
        chunks = recording.chunks or ()
        times = [at / speed for at, _ in chunks] if self.stream else [recording.body_at / speed]
        pieces = [data for _, data in chunks] if self.stream else [recording.body]
        self.frames = pieces if keep_ids else refreshed(pieces)
        if not times:  # a stream cut before its first chunk: one empty event, at once
            times, self.frames = [0.0], [b""]
        self.times = times
        usage = usage_of(recording)
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if prompt is None:  # the Responses API's names
            prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
        self.prompt_tokens = prompt if isinstance(prompt, int) else 0
        self.cached_tokens: int | None = None  # a recording's, not the mock's cache
        self.completion_tokens = completion if isinstance(completion, int) else len(chunks)
        self.finish_reason: str | None = None

    @property
    def offsets(self) -> list[Sequence[float]]:
        return [self.times]

    @property
    def event_ends(self) -> list[Sequence[int]]:
        return [range(1, len(self.times) + 1)]

    @property
    def charge(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def body(self) -> bytes:
        return self.frames[0]

    def opening(self) -> bytes:
        return b""

    def streams(self) -> list[tuple[Sequence[float], Iterator[bytes]]]:
        return [(self.times, iter(self.frames))]

    def closing(self) -> bytes:
        return b""  # the recorded stream's own last chunk closed it (``[DONE]``), if any

    def late(self, error: OpenAIError) -> bytes:
        return error_frame(error.to_json())
