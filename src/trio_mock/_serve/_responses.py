"""``POST /v1/responses``: the Responses API, its output items and its event stream.

One reply (no ``n``) whose parts become output items in order: a ``reasoning`` item, then a
``message`` or one ``function_call`` item per tool call. Streamed, each item opens with
``response.output_item.added`` (and ``content_part.added``), its tokens go out as paced
deltas, and it closes with the ``*.done`` events, all numbered by ``sequence_number`` in
the order they are built, which is the order they are sent. As chat's chunks (``_frames``), a
delta is spliced from a template made once per item and the tokens' escaped bytes: nothing
is JSON-encoded per token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

import orjson

from .._openai._context import REPLY_PRIMING, TOKENS_PER_MESSAGE
from .._openai._convert import structure
from .._openai._errors import invalid
from .._openai._frames import charged, new_id
from .._openai._model import (
    EMPTY_PARAMETERS,
    Ask,
    FunctionTool,
    check_effort,
    output_schema,
    pick_tool,
)
from .._openai._prompt_ids import message_ids, priming_ids
from .._openai._protocol import ResponsesRequest
from .._openai._validate import (
    MAX_TOP_LOGPROBS,
    at_least,
    at_most,
    check_model,
    check_sampling,
    listed,
)
from .._sim._plan import Limits
from ._offload import off_loop

if TYPE_CHECKING:
    from .._openai._errors import OpenAIError
    from .._openai._model import MockModel
    from .._openai._overrides import Overrides
    from .._sim._plan import ChoicePlan, Part


# The ``input`` item types of the spec's ``InputItem``; an item without ``type`` is a
# message (it has a ``role``) or an ``item_reference`` (it has only an ``id``).
ITEM_TYPES = (
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "item_reference",
    "file_search_call",
    "computer_call",
    "computer_call_output",
    "web_search_call",
    "tool_search_call",
    "tool_search_output",
    "additional_tools",
    "compaction",
    "compaction_trigger",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "custom_tool_call",
    "custom_tool_call_output",
    "program",
    "program_output",
)
ROLES = ("assistant", "system", "developer", "user")
# Content part types of a message item: what the model said earlier, or what it is given.
OUTPUT_PARTS = ("output_text", "refusal")
INPUT_PARTS = ("input_text", "input_image", "input_file")


def check_message(item: dict[str, Any], i: int) -> None:
    """A message item's role, and its content parts' types for that role."""
    role = item.get("role")
    if role not in ROLES:
        if role is None:
            raise invalid(
                f"Missing required parameter: 'input[{i}].role'.",
                f"input[{i}].role",
                "missing_required_parameter",
            )
        raise invalid(
            f"Invalid value: {role!r}. Supported values are: {listed(ROLES)}.",
            f"input[{i}].role",
            "invalid_value",
        )
    content = item.get("content")
    if not isinstance(content, list):
        return
    allowed = OUTPUT_PARTS if role == "assistant" else INPUT_PARTS
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            shown = "an object without 'type'" if kind is None else repr(kind)
            raise invalid(
                f"Invalid value: {shown}. Supported values are: {listed(allowed)}.",
                f"input[{i}].content[{j}].type",
                "invalid_value",
            )


def input_texts(value: Any) -> list[tuple[str, str]]:
    """``(role, text)`` for each input item; other item kinds (tool outputs, calls) count
    by their text too. Unknown item types, roles and content part types are refused."""
    if isinstance(value, str):
        return [("user", value)]
    if not isinstance(value, list):
        raise invalid(
            "Invalid type for 'input': expected a string or an array of input items.",
            "input",
            "invalid_type",
        )
    texts = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid(
                f"Invalid type for 'input[{i}]': expected an object.", f"input[{i}]", "invalid_type"
            )
        kind = item.get("type")
        if kind is None and "role" not in item and "id" in item:
            kind = "item_reference"
        if kind is None or kind == "message":
            check_message(item, i)
        elif kind not in ITEM_TYPES:
            raise invalid(
                f"Invalid value: {kind!r}. Supported values are: {listed(ITEM_TYPES)}.",
                f"input[{i}].type",
                "invalid_value",
            )
        content = item.get("content", item.get("output", item.get("arguments", "")))
        if isinstance(content, list):
            content = "".join(
                p.get("text") or ""
                for p in content
                if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
        if not isinstance(content, str):
            raise invalid(
                f"Invalid type for 'input[{i}].content': expected a string or an array of content parts.",
                f"input[{i}].content",
                "invalid_type",
            )
        role = item.get("role", item.get("type", "user"))
        texts.append((role if isinstance(role, str) else "user", content))
    return texts


def responses_ask(request: ResponsesRequest, texts: list[tuple[str, str]]) -> Ask:
    tools = []
    for i, tool in enumerate(request.tools or ()):
        if tool.type != "function":
            continue  # built-in tools (web search, ...) are accepted and never called
        if tool.name is None:
            raise invalid(
                f"Missing required parameter: 'tools[{i}].name'.",
                f"tools[{i}].name",
                "missing_required_parameter",
            )
        if tool.parameters is not None:
            output_schema(tool.parameters, f"tools[{i}].parameters")
        tools.append(FunctionTool(tool.name, tool.parameters or EMPTY_PARAMETERS))
    json_mode: Literal["object", "schema"] | None = None
    schema = None
    fmt = request.text.format if request.text is not None else None
    if fmt is not None and fmt.type != "text":
        json_mode = "object"
        if fmt.type == "json_schema":
            if fmt.schema is None:
                raise invalid(
                    "Missing required parameter: 'text.format.schema'.",
                    "text.format.schema",
                    "missing_required_parameter",
                )
            json_mode, schema = "schema", output_schema(fmt.schema, "text.format.schema")
    effort = request.reasoning.effort if request.reasoning is not None else None
    check_effort(effort, "reasoning.effort")
    users = [text for role, text in texts if role == "user"] or [t for _, t in texts] or [""]
    allowed, choice = pick_tool(tuple(tools), request.tool_choice, "tool_choice")
    return Ask(
        model=request.model,
        api="responses",
        limits=Limits(max_tokens=request.max_output_tokens),
        tools=allowed,
        tool_choice=choice,
        parallel_tool_calls=request.parallel_tool_calls is not False,
        json=json_mode,
        schema=schema,
        reasoning_effort=effort,
        echo=users[-1],
    )


class ResponsesHandler:
    """Turns a responses request body into a planned reply."""

    def __init__(self, model: MockModel) -> None:
        self.model = model
        self.settings = model.settings

    def count(self, texts: list[tuple[str, str]], model: str) -> int:
        """Chat's accounting: each item is a message; with ``model``'s tokenizer."""
        encode = self.model.tokenizer_for(model).encode
        return REPLY_PRIMING + sum(TOKENS_PER_MESSAGE + 1 + len(encode(t)) for _, t in texts)

    def hash_texts(self, texts: list[tuple[str, str]], model: str) -> tuple[int, list[int]]:
        """The prompt's tokens (as ``count`` counts them) and its block hashes for the
        prefix cache."""
        encode = self.model.cache_encoder(model)
        ids = [i for role, text in texts for i in message_ids(role, encode(text))]
        ids += priming_ids()
        return len(ids), self.model.prompt_hashes(ids)

    async def prepare(self, data: dict[str, Any], overrides: Overrides) -> ResponsesEmitter:
        request = structure(data, ResponsesRequest)
        if request.input is None:
            raise invalid(
                "Missing required parameter: 'input'.", "input", "missing_required_parameter"
            )
        texts = input_texts(request.input)
        if request.instructions:
            texts = [("system", request.instructions), *texts]
        if request.max_output_tokens is not None:
            at_least("max_output_tokens", request.max_output_tokens, 1)
        if request.top_logprobs is not None:
            at_least("top_logprobs", request.top_logprobs, 0)
            at_most("top_logprobs", request.top_logprobs, MAX_TOP_LOGPROBS)
        check_sampling(request)
        check_model(request.model, self.settings.models)
        ask = responses_ask(request, texts)
        chars = sum(len(t) for _, t in texts)
        cached: int | None = None
        if self.model.prefix_caches is None:
            prompt_tokens = await off_loop(chars, self.count, texts, request.model)
        else:
            prompt_tokens, hashes = await off_loop(chars, self.hash_texts, texts, request.model)
            cached = self.model.cached_tokens(ask, hashes, prompt_tokens)
        (choice,) = await self.model.plan(ask, prompt_tokens, overrides, cached_tokens=cached or 0)
        return ResponsesEmitter(choice, prompt_tokens, request, data, cached)


def sse(kind: str, body: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(body) + b"\n\n"


class ResponsesEmitter:
    """Renders a ``response`` object, or its event stream with ``sequence_number``s."""

    def __init__(
        self,
        choice: ChoicePlan,
        prompt_tokens: int,
        request: ResponsesRequest,
        data: dict[str, Any],
        cached_tokens: int | None = None,
    ) -> None:
        self.choice = choice
        self.prompt_tokens = prompt_tokens
        self.cached_tokens = cached_tokens  # None: no prefix cache
        self.request = request
        self.data = data  # the request as sent, for echoing its tools and format back
        self.stream = request.stream
        self.id = new_id("resp_", 48)
        self.created = int(time.time())
        self.item_ids = [
            new_id({"reasoning": "rs_", "content": "msg_", "tool": "fc_"}[p.kind], 48)
            for p in choice.parts
        ]
        self.sequence = 0

    @property
    def offsets(self) -> list[Sequence[float]]:
        return [self.choice.offsets]

    @property
    def incomplete(self) -> bool:
        return self.choice.finish_reason == "length"

    def text(self, part: Part) -> str:
        return "".join(self.choice.pieces[part.start : part.end])

    def item(self, k: int, done: bool) -> dict[str, Any]:
        """Output item ``k``, as it is when it opens or when it is done."""
        part, item_id = self.choice.parts[k], self.item_ids[k]
        status = ("incomplete" if self.incomplete else "completed") if done else "in_progress"
        text = self.text(part) if done else ""
        if part.kind == "reasoning":
            content = [{"type": "reasoning_text", "text": text}] if done else []
            return {
                "id": item_id,
                "type": "reasoning",
                "summary": [],
                "content": content,
                "status": status,
            }
        if part.kind == "content":
            return {
                "id": item_id,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [output_text(text)] if done else [],
            }
        assert part.call is not None
        return {
            "id": item_id,
            "type": "function_call",
            "status": status,
            "call_id": part.call.id,
            "name": part.call.name,
            "arguments": text,
        }

    def response(self, status: str) -> dict[str, Any]:
        """The ``response`` object; output and usage only once it is finished. Fields the
        request left out and the spec does not let be null (``user``) are omitted."""
        finished = status in {"completed", "incomplete"}
        request, choice = self.request, self.choice
        effort = request.reasoning.effort if request.reasoning else None
        response: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if finished else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
            "instructions": request.instructions,
            "max_output_tokens": request.max_output_tokens,
            "max_tool_calls": None,
            "model": request.model,
            "output": [self.item(k, True) for k in range(len(choice.parts))] if finished else [],
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": request.previous_response_id,
            "reasoning": {"effort": effort, "summary": None},
            "service_tier": "default",
            "store": request.store is not False,
            "temperature": 1.0 if request.temperature is None else request.temperature,
            "text": self.data.get("text") or {"format": {"type": "text"}},
            "tool_choice": self.data.get("tool_choice") or "auto",
            "tools": echoed_tools(self.data.get("tools")),
            "top_p": 1.0 if request.top_p is None else request.top_p,
            "truncation": "disabled",
            "metadata": request.metadata or {},
        }
        if finished:
            response["usage"] = {
                "input_tokens": self.prompt_tokens,
                "input_tokens_details": {
                    "cached_tokens": self.cached_tokens or 0,
                    "cache_write_tokens": 0,
                },
                "output_tokens": choice.tokens,
                "output_tokens_details": {"reasoning_tokens": choice.count("reasoning")},
                "total_tokens": self.prompt_tokens + choice.tokens,
            }
        if request.user is not None:
            response["user"] = request.user
        return response

    @property
    def status(self) -> str:
        return "incomplete" if self.incomplete else "completed"

    def body(self) -> bytes:
        return orjson.dumps(self.response(self.status))

    def event(self, kind: str, **fields: Any) -> bytes:
        """One SSE event, numbered in build order."""
        frame = sse(kind, {"type": kind, **fields, "sequence_number": self.sequence})
        self.sequence += 1
        return frame

    def opening(self) -> bytes:
        return self.event("response.created", response=self.response("in_progress")) + self.event(
            "response.in_progress", response=self.response("in_progress")
        )

    def frames(self) -> Iterator[bytes]:
        """One frame per event: a part's first also opens its item, its last closes it.

        A delta event is its part's pre-encoded head, the event's already escaped token
        bytes and its ``sequence_number``: the bytes ``orjson`` would give for the event's
        dict, with nothing JSON-encoded per token."""
        choice = self.choice
        ends, escaped = choice.event_ends, choice.escaped
        for k, part in enumerate(choice.parts):
            where = {"item_id": self.item_ids[k], "output_index": k}
            head, tail = self.delta_template(k, part)
            start = ends[part.first_event - 1] if part.first_event else 0
            for e in range(part.first_event, part.end_event):
                end = ends[e]
                # Built in sequence order: the item's opening events come first.
                opening = self.open_item(k, part, where) if e == part.first_event else b""
                frame = b"%s%s%s%s%d}\n\n" % (
                    opening,
                    head,
                    escaped[start] if end - start == 1 else b"".join(escaped[start:end]),
                    tail,
                    self.sequence,
                )
                self.sequence += 1
                if e == part.end_event - 1:
                    frame += self.close_item(k, part, where)
                yield frame
                start = end

    def delta_template(self, k: int, part: Part) -> tuple[bytes, bytes]:
        """What surrounds a delta of output item ``k`` up to its sequence number, in the
        key order of the event's dict (``type``, ``item_id``, ``output_index``, ...)."""
        kind, fields, after = {
            "tool": ("response.function_call_arguments.delta", b"", b""),
            "reasoning": ("response.reasoning_text.delta", b'"content_index":0,', b""),
            "content": ("response.output_text.delta", b'"content_index":0,', b',"logprobs":[]'),
        }[part.kind]
        head = b'event: %s\ndata: {"type":"%s","item_id":%s,"output_index":%d,%s"delta":"' % (
            kind.encode(),
            kind.encode(),
            orjson.dumps(self.item_ids[k]),
            k,
            fields,
        )
        return head, b'"' + after + b',"sequence_number":'

    def open_item(self, k: int, part: Part, where: dict[str, Any]) -> bytes:
        frame = self.event("response.output_item.added", output_index=k, item=self.item(k, False))
        if part.kind == "content":
            frame += self.event(
                "response.content_part.added", **where, content_index=0, part=output_text("")
            )
        elif part.kind == "reasoning":
            frame += self.event(
                "response.content_part.added",
                **where,
                content_index=0,
                part={"type": "reasoning_text", "text": ""},
            )
        return frame

    def close_item(self, k: int, part: Part, where: dict[str, Any]) -> bytes:
        text = self.text(part)
        if part.kind == "tool":
            assert part.call is not None
            frame = self.event(
                "response.function_call_arguments.done",
                **where,
                name=part.call.name,
                arguments=text,
            )
        elif part.kind == "reasoning":
            frame = self.event("response.reasoning_text.done", **where, content_index=0, text=text)
            frame += self.event(
                "response.content_part.done",
                **where,
                content_index=0,
                part={"type": "reasoning_text", "text": text},
            )
        else:
            frame = self.event(
                "response.output_text.done", **where, content_index=0, text=text, logprobs=[]
            )
            frame += self.event(
                "response.content_part.done", **where, content_index=0, part=output_text(text)
            )
        return frame + self.event(
            "response.output_item.done", output_index=k, item=self.item(k, True)
        )

    def streams(self) -> list[tuple[Sequence[float], Iterator[bytes]]]:
        return [(self.choice.offsets, self.frames())]

    @property
    def event_ends(self) -> list[Sequence[int]]:
        return [self.choice.event_ends]

    @property
    def charge(self) -> int:
        return charged(self.prompt_tokens, [self.choice], self.request.max_output_tokens)

    @property
    def completion_tokens(self) -> int:
        return self.choice.tokens

    @property
    def finish_reason(self) -> str | None:
        return self.choice.finish_reason

    def closing(self) -> bytes:
        return self.event(f"response.{self.status}", response=self.response(self.status))

    def late(self, error: OpenAIError) -> bytes:
        body = error.to_body()["error"]
        assert isinstance(body, dict)
        return self.event("error", code=body["code"], message=body["message"], param=body["param"])


def echoed_tools(tools: Any) -> list[Any]:
    """The request's tools as the response lists them: function tools with their
    ``description`` and ``strict`` (true unless turned off, as the API defaults it)."""
    if not isinstance(tools, list):
        return []
    return [
        {"description": None, "strict": True} | tool
        if isinstance(tool, dict) and tool.get("type") == "function"
        else tool
        for tool in tools
    ]


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
