"""Wire bytes for chat completions, and what every endpoint's renderer shares (sans-IO).

Streaming is the hot path, so frames are pre-serialized templates: per request the JSON
head (id, created, model, fingerprint) is built once, and per event only the already
escaped token bytes are joined in. No object is JSON-encoded per token, except the logprob
entries a client asked for.
"""

from __future__ import annotations

import os
import string
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from .._sim._plan import ChoicePlan, Logprobs, Part
    from ._errors import OpenAIError

DONE = b"data: [DONE]\n\n"
# A random byte to one of 62 letters and digits (a byte modulo 62: slightly uneven, which no
# client can tell), so an id costs one ``os.urandom`` and a ``translate``.
ID_TABLE = bytes((string.ascii_uppercase + string.ascii_lowercase + string.digits).encode()[b % 62]
                 for b in range(256))  # fmt: skip


def new_id(prefix: str, length: int = 29) -> str:
    """An id shaped like OpenAI's: ``chatcmpl-`` and 29 letters and digits (unique, not
    secret)."""
    return prefix + os.urandom(length).translate(ID_TABLE).decode()


class Planned(Protocol):
    """What the journal and the plan's headers read of any planned reply."""

    @property
    def stream(self) -> bool: ...

    @property
    def offsets(self) -> list[Sequence[float]]:
        """Each choice's event due times, seconds after admission."""
        ...

    @property
    def prompt_tokens(self) -> int: ...

    @property
    def cached_tokens(self) -> int | None:
        """The prompt's tokens the prefix cache held; None with no prefix cache."""
        ...

    @property
    def completion_tokens(self) -> int:
        """Tokens planned for the reply (every choice's)."""
        ...

    @property
    def finish_reason(self) -> str | None:
        """The first choice's; None for embeddings."""
        ...


class PlannedReply(Planned, Protocol):
    """A planned answer, as the ASGI layer serves it: a body, or frames on a schedule."""

    @property
    def event_ends(self) -> list[Sequence[int]]:
        """Each choice's tokens sent by the end of each event (as ``offsets``)."""
        ...

    @property
    def charge(self) -> int:
        """Tokens a rate limit charges: the prompt plus the most output asked for."""
        ...

    def body(self) -> bytes: ...

    def opening(self) -> bytes:
        """Frames sent with the response headers, before any token is due."""
        ...

    def streams(self) -> list[tuple[Sequence[float], Iterator[bytes]]]:
        """Each choice's event offsets and its lazily built frames."""
        ...

    def closing(self) -> bytes:
        """What ends the stream, built once the last frame went out."""
        ...

    def late(self, error: OpenAIError) -> bytes:
        """The frame that ends a stream cut by the time limit."""
        ...


def usage(
    prompt_tokens: int, completion_tokens: int, reasoning_tokens: int = 0, cached_tokens: int = 0
) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning_tokens,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def charged(prompt_tokens: int, choices: Sequence[ChoicePlan], max_tokens: int | None) -> int:
    """The prompt, plus ``max_tokens`` per choice when the request set it, as OpenAI
    estimates; without it, the planned reply (the mock knows it in advance)."""
    if max_tokens is None:
        return prompt_tokens + sum(c.tokens for c in choices)
    return prompt_tokens + max_tokens * len(choices)


def error_frame(body: bytes) -> bytes:
    """A failure after the SSE headers went out: a final ``data: {"error": ...}`` frame."""
    return b"data: " + body + b"\n\n"


def token_entries(logprobs: Logprobs, pieces: Sequence[str], start: int, end: int) -> list[Any]:
    """Chat's logprob entries for tokens ``start..end``."""
    return [
        {
            "token": pieces[i],
            "logprob": logprobs.values[i],
            "bytes": list(pieces[i].encode()),
            "top_logprobs": [
                {"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in logprobs.top[i]
            ],
        }
        for i in range(start, end)
    ]


class ChoicesEmitter:
    """What the chat and completions renderers share: planned choices, the reply's id, and
    a stream that ends with the usage chunk (when asked for) and ``[DONE]``."""

    object_name = "chat.completion.chunk"  # of a streamed chunk
    id_prefix = "chatcmpl-"

    def __init__(
        self,
        choices: Sequence[ChoicePlan],
        prompt_tokens: int,
        *,
        model: str,
        fingerprint: str,
        stream: bool = False,
        include_usage: bool = False,
        max_tokens: int | None = None,
        cached_tokens: int | None = None,
    ) -> None:
        self.choices = choices
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = cached_tokens
        self.max_tokens = max_tokens
        self.id = new_id(self.id_prefix)
        self.created = int(time.time())
        self.model = model
        self.fingerprint = fingerprint
        self.stream = stream
        self.include_usage = include_usage

    @property
    def offsets(self) -> list[Sequence[float]]:
        return [c.offsets for c in self.choices]

    @property
    def event_ends(self) -> list[Sequence[int]]:
        return [c.event_ends for c in self.choices]

    @property
    def charge(self) -> int:
        return charged(self.prompt_tokens, self.choices, self.max_tokens)

    @property
    def completion_tokens(self) -> int:
        return sum(c.tokens for c in self.choices)

    @property
    def finish_reason(self) -> str | None:
        return self.choices[0].finish_reason if self.choices else None

    def usage(self) -> dict[str, Any]:
        return usage(
            self.prompt_tokens,
            sum(c.tokens for c in self.choices),
            sum(c.count("reasoning") for c in self.choices),
            self.cached_tokens or 0,
        )

    def chunk_head(self) -> bytes:
        """A streamed chunk up to its ``choices``."""
        return (
            b'data: {"id":"%s","object":"%s","created":%d,"model":%s,"system_fingerprint":"%s","choices":'
            % (
                self.id.encode(),
                self.object_name.encode(),
                self.created,
                orjson.dumps(self.model),
                self.fingerprint.encode(),
            )
        )

    def choice_frames(self, choice: ChoicePlan) -> Iterator[bytes]:
        raise NotImplementedError

    def opening(self) -> bytes:
        return b""

    def streams(self) -> list[tuple[Sequence[float], Iterator[bytes]]]:
        return [(c.offsets, self.choice_frames(c)) for c in self.choices]

    def usage_chunk(self) -> dict[str, Any]:
        """The stream's last chunk: no choices, the usage."""
        return {
            "id": self.id,
            "object": self.object_name,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [],
            "usage": self.usage(),
        }

    def closing(self) -> bytes:
        """The usage chunk when asked for, then ``[DONE]``."""
        if not self.include_usage:
            return DONE
        return b"data: " + orjson.dumps(self.usage_chunk()) + b"\n\n" + DONE

    def body_object(self) -> dict[str, Any]:
        """The non-streamed reply, before it is serialized."""
        raise NotImplementedError

    def body(self) -> bytes:
        return orjson.dumps(self.body_object())

    def late(self, error: OpenAIError) -> bytes:
        return error_frame(error.to_json())


class ChatEmitter(ChoicesEmitter):
    """Renders one chat completion's body or frames from its planned choices."""

    reasoning_field = "reasoning_content"  # vLLM's and DeepSeek's name for the thinking text

    def message(self, c: ChoicePlan) -> dict[str, Any]:
        calls = c.calls
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if calls and not c.count("content") else c.text,
            "refusal": None,
            "annotations": [],
        }
        if any(p.kind == "reasoning" for p in c.parts):
            message[self.reasoning_field] = c.text_of("reasoning")
        if calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": arguments},
                }
                for call, arguments in calls
            ]
        return message

    def choice_logprobs(self, c: ChoicePlan) -> dict[str, Any] | None:
        if c.logprobs is None:
            return None
        content = [
            entry
            for p in c.parts
            if p.kind == "content"
            for entry in token_entries(c.logprobs, c.pieces, p.start, p.end)
        ]
        return {"content": content, "refusal": None}

    def body_object(self) -> dict[str, Any]:
        """The non-streamed ``chat.completion`` object."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": c.index,
                    "message": self.message(c),
                    "logprobs": self.choice_logprobs(c),
                    "finish_reason": c.finish_reason,
                }
                for c in self.choices
            ],
            "usage": self.usage(),
            "service_tier": "default",
            "system_fingerprint": self.fingerprint,
        }

    def choice_frames(self, choice: ChoicePlan) -> Iterator[bytes]:
        """One frame per event. The choice's first frame opens with the ``role`` chunk, a
        tool call's first with its id and name; the last frame carries ``finish_reason``."""
        tail = b',"usage":null}\n\n' if self.include_usage else b"}\n\n"
        head = self.chunk_head() + b'[{"index":%d,"delta":' % choice.index
        open_content = b"null" if choice.parts[0].kind == "tool" else b'""'
        role = (
            head
            + b'{"role":"assistant","content":%s,"refusal":null},"logprobs":null,"finish_reason":null}]'
            % open_content
            + tail
        )
        escaped, ends, final = choice.escaped, choice.event_ends, len(choice.event_ends) - 1
        for p in choice.parts:
            opening, closing = delta_brackets(p, self.reasoning_field)
            content = head + b"{" + opening
            middle = closing + b'},"logprobs":null,"finish_reason":null}]' + tail
            prefix = role if p.first_event == 0 else b""
            if p.call is not None:
                prefix += head + tool_header(p) + b',"logprobs":null,"finish_reason":null}]' + tail
            with_logprobs = choice.logprobs is not None and p.kind == "content"
            start = ends[p.first_event - 1] if p.first_event else 0
            for k in range(p.first_event, p.end_event):
                end = ends[k]
                text = b"".join(escaped[start:end])
                if with_logprobs or k == final:
                    logprobs = b"null"
                    if with_logprobs:
                        assert choice.logprobs is not None
                        entries = token_entries(choice.logprobs, choice.pieces, start, end)
                        logprobs = orjson.dumps({"content": entries, "refusal": None})
                    finish = b'"%s"' % choice.finish_reason.encode() if k == final else b"null"
                    frame = (
                        content
                        + text
                        + closing
                        + b'},"logprobs":'
                        + logprobs
                        + b',"finish_reason":'
                        + finish
                        + b"}]"
                        + tail
                    )
                else:
                    frame = content + text + middle
                if prefix:
                    frame, prefix = prefix + frame, b""
                yield frame
                start = end


def delta_brackets(part: Part, reasoning_field: str) -> tuple[bytes, bytes]:
    """What surrounds a part's escaped text inside a chunk's ``delta`` object."""
    if part.kind == "content":
        return b'"content":"', b'"'
    if part.kind == "reasoning":
        return b'"%s":"' % reasoning_field.encode(), b'"'
    assert part.call is not None
    return b'"tool_calls":[{"index":%d,"function":{"arguments":"' % part.call.index, b'"}}]'


def tool_header(part: Part) -> bytes:
    """The delta that opens a tool call: its id and name, no arguments yet."""
    assert part.call is not None
    call = {
        "index": part.call.index,
        "id": part.call.id,
        "type": "function",
        "function": {"name": part.call.name, "arguments": ""},
    }
    return b'{"tool_calls":' + orjson.dumps([call]) + b"}"
