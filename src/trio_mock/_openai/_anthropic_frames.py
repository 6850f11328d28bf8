"""Wire bytes of an Anthropic message (sans-IO): the body, or its named SSE events.

A planned choice's parts become content blocks: reasoning a ``thinking`` block (with a
signature), the answer a ``text`` block, each tool call a ``tool_use`` block whose input
streams as ``input_json_delta``. The stream goes as Anthropic sends it: ``message_start``,
the first ``content_block_start`` and a ``ping`` with the headers; then per event one
``content_block_delta`` (a block's stop and the next one's start ride with its first and
last events); then ``message_delta`` (stop reason, final usage) and ``message_stop``.
Like chat's, each delta is a pre-serialized template with the escaped tokens joined in.
"""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Any

import orjson

from ._errors import anthropic_error_body
from ._frames import charged, new_id

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .._sim._plan import ChoicePlan, Part
    from ._errors import OpenAIError

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
# Each block kind's start, and its deltas' type and field.
DELTAS = {
    "content": (b"text_delta", b"text"),
    "reasoning": (b"thinking_delta", b"thinking"),
    "tool": (b"input_json_delta", b"partial_json"),
}
PING = b'event: ping\ndata: {"type": "ping"}\n\n'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def sse(event: bytes, data: bytes) -> bytes:
    """One named server-sent event."""
    return b"event: " + event + b"\ndata: " + data + b"\n\n"


def signature() -> str:
    """An opaque thinking signature, shaped like Anthropic's (base64)."""
    return base64.b64encode(os.urandom(96)).decode()


class MessageEmitter:
    """Renders one Anthropic message's body or events from its planned choice."""

    def __init__(
        self,
        choice: ChoicePlan,
        prompt_tokens: int,
        *,
        model: str,
        stream: bool,
        max_tokens: int,
        cached_tokens: int | None = None,
    ) -> None:
        self.choice = choice
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = cached_tokens  # None: no prefix cache
        self.model = model
        self.stream = stream
        self.max_tokens = max_tokens
        self.id = new_id("msg_", 24)
        self.signatures = [signature() for p in choice.parts if p.kind == "reasoning"]
        self.tool_ids = {p.call.index: new_id("toolu_", 24) for p in choice.parts if p.call}

    @property
    def offsets(self) -> list[Sequence[float]]:
        return [self.choice.offsets]

    @property
    def event_ends(self) -> list[Sequence[int]]:
        return [self.choice.event_ends]

    @property
    def charge(self) -> int:
        return charged(self.prompt_tokens, [self.choice], self.max_tokens)

    @property
    def completion_tokens(self) -> int:
        return self.choice.tokens

    @property
    def finish_reason(self) -> str:
        """Anthropic's ``stop_reason``."""
        if self.choice.stop_sequence is not None:
            return "stop_sequence"
        return STOP_REASONS[self.choice.finish_reason]

    @property
    def input_tokens(self) -> int:
        """Anthropic's ``input_tokens`` leave out the tokens read from the cache."""
        return self.prompt_tokens - (self.cached_tokens or 0)

    def usage(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": self.cached_tokens or 0,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def message(self, content: list[dict[str, Any]], done: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.finish_reason if done else None,
            "stop_sequence": self.choice.stop_sequence if done else None,
            "usage": self.usage(self.choice.tokens if done else min(1, self.choice.tokens)),
        }

    def block(self, part: Part, text: str | None) -> dict[str, Any]:
        """A content block: whole (``text``), or empty as its ``content_block_start``."""
        if part.kind == "reasoning":
            signed = self.signatures[0] if text is not None else ""
            return {"type": "thinking", "thinking": text or "", "signature": signed}
        if part.call is not None:
            tool_input: Any = {}
            if text is not None:
                try:
                    tool_input = orjson.loads(text)
                except orjson.JSONDecodeError:  # a scripted call's arguments, not JSON
                    tool_input = {"arguments": text}
            return {"type": "tool_use", "id": self.tool_ids[part.call.index],
                    "name": part.call.name, "input": tool_input}  # fmt: skip
        return {"type": "text", "text": text or ""}

    def body(self) -> bytes:
        c = self.choice
        content = [self.block(p, "".join(c.pieces[p.start : p.end])) for p in c.parts]
        return orjson.dumps(self.message(content, done=True))

    def block_start(self, index: int, part: Part) -> bytes:
        start = {"type": "content_block_start", "index": index,
                 "content_block": self.block(part, None)}  # fmt: skip
        return sse(b"content_block_start", orjson.dumps(start))

    def block_stop(self, index: int, part: Part) -> bytes:
        stop = b""
        if part.kind == "reasoning":
            delta = {"type": "content_block_delta", "index": index,
                     "delta": {"type": "signature_delta", "signature": self.signatures[0]}}  # fmt: skip
            stop = sse(b"content_block_delta", orjson.dumps(delta))
        end = b'{"type":"content_block_stop","index":%d}' % index
        return stop + sse(b"content_block_stop", end)

    def opening(self) -> bytes:
        start = sse(b"message_start", orjson.dumps({"type": "message_start",
                                                    "message": self.message([], done=False)}))  # fmt: skip
        parts = self.choice.parts
        return start + (self.block_start(0, parts[0]) if parts else b"") + PING

    def streams(self) -> list[tuple[Sequence[float], Iterator[bytes]]]:
        return [(self.choice.offsets, self.frames())]

    def frames(self) -> Iterator[bytes]:
        """One frame per event: the deltas of the event's tokens, after the block's start
        (except the first block's, sent with the headers), before its stop."""
        choice = self.choice
        escaped, ends = choice.escaped, choice.event_ends
        for index, p in enumerate(choice.parts):
            kind, name = DELTAS[p.kind]
            head = (
                b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                b'"delta":{"type":"%s","%s":"' % (index, kind, name)
            )
            start = ends[p.first_event - 1] if p.first_event else 0
            for k in range(p.first_event, p.end_event):
                end = ends[k]
                frame = head + b"".join(escaped[start:end]) + b'"}}\n\n' if end > start else b""
                if k == p.first_event and index:
                    frame = self.block_start(index, p) + frame
                if k == p.end_event - 1:
                    frame += self.block_stop(index, p)
                yield frame
                start = end

    def closing(self) -> bytes:
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": self.finish_reason,
                "stop_sequence": self.choice.stop_sequence,
            },
            "usage": {
                "input_tokens": self.input_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": self.cached_tokens or 0,
                "output_tokens": self.choice.tokens,
            },
        }
        return sse(b"message_delta", orjson.dumps(delta)) + MESSAGE_STOP

    def late(self, error: OpenAIError) -> bytes:
        """A stream cut by an error: Anthropic's ``error`` event."""
        return sse(b"error", orjson.dumps(anthropic_error_body(error)))
