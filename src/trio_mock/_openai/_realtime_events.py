"""The Realtime API's vocabulary, pure: event names (beta and GA), the session and what
``session.update`` may set, conversation items, errors told as ``error`` events, and the
text deltas' frames. The WebSocket transport that speaks it is ``_serve._realtime``.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import orjson
from attrs import define, field, frozen

from ._convert import content_text
from ._frames import ID_TABLE, new_id

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from .._sim._plan import ChoicePlan
    from ._errors import OpenAIError

GA_NAMES = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
}
SESSION_TTL_S = 30 * 60  # the real API's sessions expire after 30 minutes
MAX_OUTPUT_TOKENS = 4096  # the largest cap a session or response may set
KEY_SUBPROTOCOL = "openai-insecure-api-key."  # browsers pass the key as a subprotocol
AUDIO_EVENTS = frozenset(
    {"input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
     "output_audio_buffer.clear"}
)  # fmt: skip


class RealtimeError(Exception):
    """A client event refused with an ``error`` event; the session goes on."""

    def __init__(
        self,
        message: str,
        code: str,
        param: str | None = None,
        kind: str = "invalid_request_error",
        status: int = 400,  # as the journal and metrics count it
    ) -> None:
        super().__init__(message)
        self.message, self.code, self.param, self.kind = message, code, param, kind
        self.status = status

    def body(self) -> dict[str, Any]:
        """The error as the journal keeps it."""
        return {"type": self.kind, "code": self.code, "message": self.message}


def event_error(error: OpenAIError) -> RealtimeError:
    """An HTTP endpoint's error (a refusal by the load model, a scripted one) as an event."""
    body = error.to_body()["error"]
    assert isinstance(body, dict)
    return RealtimeError(error.message, error.code or body["type"], error.param, body["type"],
                         error.status)  # fmt: skip


SERVER_ERROR = RealtimeError(
    "The server had an error while processing your request.", "server_error",
    kind="server_error", status=500,
)  # fmt: skip


def max_tokens(value: Any, param: str) -> int | None:
    """A ``max_response_output_tokens``: an integer 1..4096 or ``"inf"`` (None)."""
    if value == "inf":
        return None
    if type(value) is not int or not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise RealtimeError(
            f"Invalid '{param}': expected an integer between 1 and {MAX_OUTPUT_TOKENS} "
            f"or 'inf', got {value!r}.",
            "invalid_value",
            param,
        )
    return value


def item_text(item: dict[str, Any]) -> str:
    """What a conversation item says, for the prompt's token count and scripted rules."""
    if item.get("type") == "function_call_output":
        return str(item.get("output", ""))
    return content_text(item.get("content"))


def checked_item(raw: Any) -> dict[str, Any]:
    """A client's ``conversation.item.create`` item, completed as the server lists it."""
    if not isinstance(raw, dict):
        raise RealtimeError("Missing required parameter: 'item'.", "missing_required_parameter",
                            "item")  # fmt: skip
    kind = raw.get("type", "message")
    if kind not in ("message", "function_call", "function_call_output"):
        raise RealtimeError(
            f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call', "
            "and 'function_call_output'.",
            "invalid_value",
            "item.type",
        )
    if kind == "message" and raw.get("role") not in ("user", "system", "assistant"):
        raise RealtimeError(
            "Invalid value for 'item.role': expected 'user', 'system' or 'assistant'.",
            "invalid_value",
            "item.role",
        )
    if kind == "message" and not isinstance(raw.get("content"), list):
        raise RealtimeError("Missing required parameter: 'item.content'.",
                            "missing_required_parameter", "item.content")  # fmt: skip
    item = {"id": raw.get("id") or new_id("item_"), "object": "realtime.item", "type": kind,
            "status": "completed"}  # fmt: skip
    return item | {name: value for name, value in raw.items() if name != "id"}


@define
class Session:
    """What ``session.update`` sets: the defaults every response starts from."""

    model: str
    id: str = field(factory=lambda: new_id("sess_"))
    instructions: str = ""
    temperature: float = 0.8
    max_output_tokens: int | None = None
    tools: list[Any] = field(factory=list)
    tool_choice: Any = "auto"
    voice: str = "alloy"
    ga: bool = False  # the client speaks the GA protocol
    expires_at: int = field(factory=lambda: int(time.time()) + SESSION_TTL_S)

    def view(self) -> dict[str, Any]:
        cap = "inf" if self.max_output_tokens is None else self.max_output_tokens
        common = {"id": self.id, "object": "realtime.session", "model": self.model,
                  "instructions": self.instructions, "tools": self.tools,
                  "tool_choice": self.tool_choice, "expires_at": self.expires_at}  # fmt: skip
        if self.ga:
            return {"type": "realtime", **common, "output_modalities": ["text"],
                    "max_output_tokens": cap, "tracing": None, "prompt": None}  # fmt: skip
        return {**common, "modalities": ["text"], "voice": self.voice,
                "input_audio_format": "pcm16", "output_audio_format": "pcm16",
                "input_audio_transcription": None, "turn_detection": None,
                "temperature": self.temperature, "max_response_output_tokens": cap}  # fmt: skip

    def update(self, changes: Any) -> None:
        """Apply ``session.update``'s fields, all or none.

        Raises:
          RealtimeError: a bad or unknown field.
        """
        if not isinstance(changes, dict):
            raise RealtimeError("Missing required parameter: 'session'.",
                                "missing_required_parameter", "session")  # fmt: skip
        staged: dict[str, Any] = {}
        for name, value in changes.items():
            param = f"session.{name}"
            if name in ("instructions", "voice", "model"):
                if not isinstance(value, str):
                    raise RealtimeError(f"Invalid type for '{param}': expected a string.",
                                        "invalid_type", param)  # fmt: skip
                staged[name] = value
            elif name == "temperature":
                if type(value) not in (int, float):
                    raise RealtimeError(f"Invalid type for '{param}': expected a number.",
                                        "invalid_type", param)  # fmt: skip
                staged[name] = float(value)
            elif name in ("max_response_output_tokens", "max_output_tokens"):
                staged["max_output_tokens"] = max_tokens(value, param)
            elif name == "tools":
                if not isinstance(value, list):
                    raise RealtimeError(f"Invalid type for '{param}': expected an array.",
                                        "invalid_type", param)  # fmt: skip
                staged[name] = value
            elif name == "tool_choice":
                staged[name] = value
            elif name not in IGNORED_SESSION_FIELDS:
                raise RealtimeError(f"Unknown parameter: '{param}'.", "unknown_parameter", param)
        for name, value in staged.items():
            setattr(self, name, value)


# Accepted and kept as the server's own (audio and transcription do not apply to text).
IGNORED_SESSION_FIELDS = frozenset(
    {"type", "modalities", "output_modalities", "input_audio_format", "output_audio_format",
     "input_audio_transcription", "turn_detection", "audio", "include", "tracing", "prompt",
     "truncation", "input_audio_noise_reduction", "speed", "client_secret"}
)  # fmt: skip


def random_ids(length: int = 29, block: int = 256) -> Iterator[bytes]:
    """The random part of ids shaped as ``new_id``'s, ``block`` of them from each
    ``os.urandom`` call: a stream's per-delta ``event_id``s cost a slice each, not a
    system call and a join of characters."""
    while True:
        drawn = os.urandom(length * block).translate(ID_TABLE)
        yield from (drawn[i : i + length] for i in range(0, len(drawn), length))


def delta_frames(plan: ChoicePlan, ids: dict[str, Any], ga: bool) -> Iterator[bytes]:
    """Each event's ``response.text.delta``, built as it goes out from a template made
    once per response: per delta only its ``event_id`` (drawn in blocks) and its
    already escaped token bytes are joined in, in the key order ``orjson`` would give."""
    kind = GA_NAMES["response.text.delta"] if ga else "response.text.delta"
    middle = b'","type":"%s",%s,"content_index":0,"delta":"' % (
        kind.encode(),
        orjson.dumps(ids)[1:-1],
    )
    event_ids = random_ids()
    escaped, previous = plan.escaped, 0
    for end in plan.event_ends:
        text = escaped[previous] if end - previous == 1 else b"".join(escaped[previous:end])
        previous = end
        yield b'{"event_id":"event_%s%s%s"}' % (next(event_ids), middle, text)


@frozen
class RealtimeReply:
    """A response's plan, as its exchange carries it to the journal (``_frames.Planned``)."""

    plan: ChoicePlan
    prompt_tokens: int
    cached_tokens: int | None = None  # the prefix cache serves the HTTP APIs only
    stream: bool = True

    @property
    def offsets(self) -> list[Sequence[float]]:
        return [self.plan.offsets] if self.plan.tokens else []

    @property
    def completion_tokens(self) -> int:
        return self.plan.tokens

    @property
    def finish_reason(self) -> str | None:
        return self.plan.finish_reason
