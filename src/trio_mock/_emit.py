"""Wire bytes for chat completions: the JSON body and the SSE frames (sans-IO).

Streaming is the hot path, so frames are pre-serialized templates: per request the JSON
head (id, created, model, fingerprint) is built once, and per event only the already
escaped token bytes are joined in. No object is JSON-encoded per token.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from ._plan import ChoicePlan

DONE = b"data: [DONE]\n\n"
_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_id(prefix: str) -> str:
    """An id shaped like OpenAI's: ``chatcmpl-`` and 29 letters and digits (unique, not secret)."""
    return prefix + "".join(random.choices(_ID_ALPHABET, k=29))


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, object]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class ChatEmitter:
    """Renders one chat completion's body or frames from its planned choices."""

    def __init__(
        self,
        choices: Sequence[ChoicePlan],
        prompt_tokens: int,
        *,
        model: str,
        fingerprint: str,
        include_usage: bool = False,
    ) -> None:
        self.choices = choices
        self.prompt_tokens = prompt_tokens
        self.id = new_id("chatcmpl-")
        self.created = int(time.time())
        self.model = model
        self.fingerprint = fingerprint
        self.include_usage = include_usage

    @property
    def done_at(self) -> float:
        """Seconds after arrival when the last token of any choice is due."""
        return max(c.offsets[-1] for c in self.choices)

    def body(self) -> bytes:
        """The non-streamed ``chat.completion`` object."""
        choices, prompt_tokens = self.choices, self.prompt_tokens
        return orjson.dumps(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {
                        "index": c.index,
                        "message": {
                            "role": "assistant",
                            "content": c.text,
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": c.finish_reason,
                    }
                    for c in choices
                ],
                "usage": usage(prompt_tokens, sum(c.tokens for c in choices)),
                "service_tier": "default",
                "system_fingerprint": self.fingerprint,
            }
        )

    def _head(self) -> bytes:
        return (
            b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,"system_fingerprint":"%s","choices":'
            % (
                self.id.encode(),
                self.created,
                orjson.dumps(self.model),
                self.fingerprint.encode(),
            )
        )

    def choice_frames(self, choice: ChoicePlan) -> Iterator[bytes]:
        """One frame per event; the first also opens with the ``role`` chunk, the last
        carries ``finish_reason``."""
        tail = b',"usage":null}\n\n' if self.include_usage else b"}\n\n"
        head = self._head() + b'[{"index":%d,"delta":' % choice.index
        content = head + b'{"content":"'
        middle = b'"},"logprobs":null,"finish_reason":null}]' + tail
        last = b'"},"logprobs":null,"finish_reason":"%s"}]' % choice.finish_reason.encode() + tail
        role = (
            head
            + b'{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]'
            + tail
        )
        escaped, final = choice.escaped, len(choice.event_ends) - 1
        start = 0
        for k, end in enumerate(choice.event_ends):
            frame = content + b"".join(escaped[start:end]) + (middle if k < final else last)
            yield role + frame if k == 0 else frame
            start = end

    def usage_frame(self) -> bytes:
        body = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [],
            "usage": usage(self.prompt_tokens, sum(c.tokens for c in self.choices)),
        }
        return b"data: " + orjson.dumps(body) + b"\n\n"

    def streams(self) -> list[tuple[list[float], Iterator[bytes]]]:
        """Each choice's event offsets and its lazily built frames."""
        return [(c.offsets, self.choice_frames(c)) for c in self.choices]

    def closing(self) -> bytes:
        """What ends the stream: the usage chunk when asked for, then ``[DONE]``."""
        return (self.usage_frame() if self.include_usage else b"") + DONE


def error_frame(body: bytes) -> bytes:
    """A failure after the SSE headers went out: a final ``data: {"error": ...}`` frame."""
    return b"data: " + body + b"\n\n"
