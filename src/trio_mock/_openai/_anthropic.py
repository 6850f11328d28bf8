"""Anthropic's Messages API, the request side (pure): a ``/v1/messages`` (or
``/v1/messages/count_tokens``) body checked as Anthropic checks it and translated into
the model's ``Ask``; the ``anthropic-version`` header; a model as Anthropic lists it.

Bodies are checked by hand rather than by the OpenAI request models, so that each 400
names the field with Anthropic's dotted path (``messages.0.content.1.type: ...``, also in
``param``); ``_errors.anthropic_error_body`` gives it Anthropic's shape. Unknown fields are
accepted and ignored, as on the OpenAI side. Every list and string a client chooses is
bounded, by Anthropic's documented limits where it has them, else by ours.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import orjson
from attrs import frozen

from ._errors import invalid

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ._errors import OpenAIError

# Anthropic's limits (https://docs.anthropic.com/en/api/messages): 100,000 messages, a
# thinking budget of at least 1,024 tokens, ``metadata.user_id`` of at most 256 chars.
MAX_MESSAGES = 100_000
MIN_THINKING_BUDGET = 1024
MAX_USER_ID = 256
# Ours, where Anthropic documents none.
MAX_STOP_SEQUENCES = 64
MAX_STOP_CHARS = 1000
MAX_TOOLS = 512
MAX_TOP_K = 1 << 20
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
VERSION = re.compile(rb"\d{4}-\d{2}-\d{2}")  # a dated version: 2023-06-01, ...
# The system prompt Anthropic adds when tools are given, in tokens (its pricing page, for
# Claude 4 models): tool_choice auto or none, and any or tool.
TOOLS_PROMPT_TOKENS = 346
TOOLS_FORCED_TOKENS = 313

ROLES = ("user", "assistant")
BLOCK_TYPES = (
    "text", "image", "document", "search_result", "tool_use", "tool_result", "thinking",
    "redacted_thinking", "server_tool_use", "web_search_tool_result",
)  # fmt: skip
ONLY_IN = {"tool_result": "user", "tool_use": "assistant", "thinking": "assistant",
           "redacted_thinking": "assistant", "server_tool_use": "assistant"}  # fmt: skip
IMAGE_MEDIA = ("image/jpeg", "image/png", "image/gif", "image/webp")
SOURCE_TYPES = {
    "image": ("base64", "url", "file"),
    "document": ("base64", "text", "url", "content", "file"),
}
CHOICES = ("auto", "any", "tool", "none")
THINKING = ("enabled", "disabled", "adaptive")


def fail(path: str, problem: str) -> OpenAIError:
    """A 400 worded as Anthropic's: the dotted path, then what is wrong with it."""
    return invalid(f"{path}: {problem}", path)


def quoted(values: Iterable[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def field(data: dict[str, Any], key: str, path: str) -> Any:
    if key not in data:
        raise fail(path, "Field required")
    return data[key]


def a_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise fail(path, "Input should be a valid string")
    return value


def an_int(value: Any, path: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(path, "Input should be a valid integer")
    if value < low:
        raise fail(path, f"Input should be greater than or equal to {low}")
    if high is not None and value > high:
        raise fail(path, f"Input should be less than or equal to {high}")
    return value


def a_number(value: Any, path: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(path, "Input should be a valid number")
    if not low <= value <= high:
        bound = (
            f"greater than or equal to {low}" if value < low else f"less than or equal to {high}"
        )
        raise fail(path, f"Input should be {bound}")
    return float(value)


def a_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise fail(path, "Input should be a valid boolean")
    return value


def a_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise fail(path, "Input should be a valid list")
    return value


def an_object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise fail(path, "Input should be a valid dictionary or object")
    return value


def one_of(value: Any, path: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise fail(path, f"Input should be {quoted(allowed)}")
    result: str = value
    return result


@frozen(kw_only=True)
class Prompt:
    """What the prompt holds, for counting its tokens."""

    texts: list[str]  # every text: system, messages, tool inputs and results, tools
    messages: int
    images: int  # image and document blocks
    tools_tokens: int  # the system prompt tools add


@frozen(kw_only=True)
class Tool:
    """A custom tool: the function the model may call."""

    path: str  # where it is in the request (``tools.2``), for its schema's errors
    name: str
    input_schema: dict[str, Any]


@frozen(kw_only=True)
class MessagesRequest:
    """A checked Messages body: what the model and the renderer need of it (the handler
    makes it the model's ``Ask``)."""

    model: str
    max_tokens: int | None  # None: counting tokens
    stream: bool
    prompt: Prompt
    tools: tuple[Tool, ...]
    tool_choice: Literal["auto", "any", "none"] | Tool
    parallel_tool_calls: bool
    thinking_budget: int | None  # None: no thinking
    stop: tuple[str, ...]
    echo: str  # the last user text, which echo mode repeats


def check_version(headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Anthropic requires ``anthropic-version``; any dated version is taken (the SDK sends
    its own, newer than the documented ``2023-06-01``).

    Raises:
      OpenAIError: 400 when it is missing or not a date.
    """
    for name, value in headers:
        if name.lower() == b"anthropic-version":
            if VERSION.fullmatch(value.strip()):
                return
            shown = value.decode("latin-1")[:64]
            raise fail("anthropic-version", f'"{shown}" is not a valid version')
    raise fail("anthropic-version", "header is required")


def block_texts(block: dict[str, Any], path: str, role: str, texts: list[str]) -> int:
    """Check one content block; add its text to ``texts``. Returns its images (0 or 1)."""
    kind = field(block, "type", f"{path}.type")
    if kind not in BLOCK_TYPES:
        raise fail(
            f"{path}.type",
            f"Input tag '{kind}' found using 'type' does not match any of the expected tags: "
            + quoted(BLOCK_TYPES),
        )
    if ONLY_IN.get(kind, role) != role:
        raise fail(path, f"`{kind}` blocks can only be in `{ONLY_IN[kind]}` messages")
    if kind == "text":
        texts.append(a_str(field(block, "text", f"{path}.text"), f"{path}.text"))
    elif kind in SOURCE_TYPES:
        source = an_object(field(block, "source", f"{path}.source"), f"{path}.source")
        stype = one_of(source.get("type"), f"{path}.source.type", SOURCE_TYPES[kind])
        if kind == "image" and stype == "base64":
            one_of(source.get("media_type"), f"{path}.source.media_type", IMAGE_MEDIA)
            a_str(field(source, "data", f"{path}.source.data"), f"{path}.source.data")
        elif stype == "url":
            a_str(field(source, "url", f"{path}.source.url"), f"{path}.source.url")
        elif stype == "text":
            texts.append(a_str(field(source, "data", f"{path}.source.data"), f"{path}.source.data"))
        return 1
    elif kind == "tool_use":
        a_str(field(block, "id", f"{path}.id"), f"{path}.id")
        texts.append(a_str(field(block, "name", f"{path}.name"), f"{path}.name"))
        tool_input = an_object(field(block, "input", f"{path}.input"), f"{path}.input")
        texts.append(orjson.dumps(tool_input).decode())
    elif kind == "tool_result":
        a_str(field(block, "tool_use_id", f"{path}.tool_use_id"), f"{path}.tool_use_id")
        if "is_error" in block:
            a_bool(block["is_error"], f"{path}.is_error")
        content = block.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif content is not None:
            images = 0
            for j, inner in enumerate(a_list(content, f"{path}.content")):
                inner_path = f"{path}.content.{j}"
                images += block_texts(an_object(inner, inner_path), inner_path, role, texts)
            return images
    elif kind == "thinking":
        texts.append(a_str(field(block, "thinking", f"{path}.thinking"), f"{path}.thinking"))
        a_str(field(block, "signature", f"{path}.signature"), f"{path}.signature")
    elif kind == "redacted_thinking":
        a_str(field(block, "data", f"{path}.data"), f"{path}.data")
    return 0


def check_messages(value: Any, texts: list[str]) -> int:
    """Check ``messages``: roles, blocks, and each ``tool_result`` answering a ``tool_use``
    of the message before. Returns the images they hold."""
    messages = a_list(value, "messages")
    if not messages:
        raise fail("messages", "at least one message is required")
    if len(messages) > MAX_MESSAGES:
        raise fail("messages", f"too many messages: at most {MAX_MESSAGES} are allowed")
    images = 0
    asked: set[str] = set()  # the tool_use ids of the message before
    for i, message in enumerate(messages):
        path = f"messages.{i}"
        message = an_object(message, path)
        role = one_of(field(message, "role", f"{path}.role"), f"{path}.role", ROLES)
        content = field(message, "content", f"{path}.content")
        final_assistant = role == "assistant" and i == len(messages) - 1
        if not content and not final_assistant and isinstance(content, str | list):
            raise fail(path, "all messages must have non-empty content except for the optional "
                       "final assistant message")  # fmt: skip
        if isinstance(content, str):
            texts.append(content)
            asked = set()
            continue
        blocks = a_list(content, f"{path}.content")
        calls: set[str] = set()
        for j, block in enumerate(blocks):
            block_path = f"{path}.content.{j}"
            block = an_object(block, block_path)
            images += block_texts(block, block_path, role, texts)
            if block["type"] == "tool_use":
                calls.add(block["id"])
            elif block["type"] == "tool_result" and block["tool_use_id"] not in asked:
                raise fail(
                    block_path,
                    f"unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block['tool_use_id'][:128]}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message.",
                )
        asked = calls
    return images


def check_system(value: Any, texts: list[str]) -> None:
    if isinstance(value, str):
        texts.append(value)
        return
    for i, block in enumerate(a_list(value, "system")):
        block = an_object(block, f"system.{i}")
        one_of(block.get("type"), f"system.{i}.type", ("text",))
        texts.append(a_str(field(block, "text", f"system.{i}.text"), f"system.{i}.text"))


def check_tools(value: Any, texts: list[str]) -> tuple[Tool, ...]:
    """Custom tools become the model's functions (their schemas are checked by the
    handler); Anthropic's server tools (``type`` ``web_search_20250305``, ...) are accepted
    and never called."""
    tools = a_list(value, "tools")
    if len(tools) > MAX_TOOLS:
        raise fail("tools", f"too many tools: at most {MAX_TOOLS} are allowed")
    functions: list[Tool] = []
    names: set[str] = set()
    for i, tool in enumerate(tools):
        path = f"tools.{i}"
        tool = an_object(tool, path)
        name = a_str(field(tool, "name", f"{path}.name"), f"{path}.name")
        if name in names:
            raise fail("tools", f"Tool names must be unique; '{name[:128]}' appears twice")
        names.add(name)
        if tool.get("type", "custom") != "custom":
            continue
        if not TOOL_NAME.fullmatch(name):
            raise fail(f"{path}.name", "String should match pattern '^[a-zA-Z0-9_-]{1,128}$'")
        if "description" in tool:
            texts.append(a_str(tool["description"], f"{path}.description"))
        schema = an_object(field(tool, "input_schema", f"{path}.input_schema"),
                           f"{path}.input_schema")  # fmt: skip
        one_of(schema.get("type"), f"{path}.input_schema.type", ("object",))
        texts += [name, orjson.dumps(schema).decode()]
        functions.append(Tool(path=path, name=name, input_schema=schema))
    return tuple(functions)


def check_tool_choice(
    value: Any, tools: tuple[Tool, ...]
) -> tuple[Literal["auto", "any", "none"] | Tool, bool]:
    """The mode (or the tool) ``tool_choice`` asks for, and whether calls may be parallel."""
    choice = an_object(value, "tool_choice")
    kind = one_of(field(choice, "type", "tool_choice.type"), "tool_choice.type", CHOICES)
    parallel = True
    if "disable_parallel_tool_use" in choice and kind != "none":
        parallel = not a_bool(choice["disable_parallel_tool_use"],
                              "tool_choice.disable_parallel_tool_use")  # fmt: skip
    if kind in ("any", "tool") and not tools:
        raise fail("tool_choice", f"tool_choice.type '{kind}' requires at least one tool in tools")
    if kind == "tool":
        name = a_str(field(choice, "name", "tool_choice.name"), "tool_choice.name")
        for tool in tools:
            if tool.name == name:
                return tool, parallel
        raise fail("tool_choice.name", f"Tool '{name[:128]}' not found in tools")
    mode: Literal["auto", "any", "none"] = (
        "any" if kind == "any" else "none" if kind == "none" else "auto"
    )
    return mode, parallel


def check_thinking(value: Any, max_tokens: int | None) -> int | None:
    """The thinking budget, or None when the reply does not think."""
    thinking = an_object(value, "thinking")
    kind = one_of(field(thinking, "type", "thinking.type"), "thinking.type", THINKING)
    if kind == "disabled":
        return None
    if kind == "adaptive":  # the model decides: up to half of what it may write
        return max(1, (max_tokens or 2 * MIN_THINKING_BUDGET) // 2)
    budget = an_int(field(thinking, "budget_tokens", "thinking.budget_tokens"),
                    "thinking.budget_tokens", MIN_THINKING_BUDGET)  # fmt: skip
    if max_tokens is not None and budget >= max_tokens:
        raise fail("max_tokens", f"`max_tokens` must be greater than `thinking.budget_tokens`"
                   f" ({budget})")  # fmt: skip
    return budget


def check_sampling(data: dict[str, Any], thinks: bool) -> None:
    if data.get("temperature") is not None:
        temperature = a_number(data["temperature"], "temperature", 0, 1)
        if thinks and temperature != 1:
            raise fail("temperature", "may only be set to 1 when thinking is enabled")
    if data.get("top_p") is not None:
        a_number(data["top_p"], "top_p", 0, 1)
    if data.get("top_k") is not None:
        an_int(data["top_k"], "top_k", 0, MAX_TOP_K)
    if data.get("metadata") is not None:
        metadata = an_object(data["metadata"], "metadata")
        user = metadata.get("user_id")
        if user is not None and len(a_str(user, "metadata.user_id")) > MAX_USER_ID:
            raise fail("metadata.user_id", f"String should have at most {MAX_USER_ID} characters")


def check_stops(value: Any) -> tuple[str, ...]:
    stops = a_list(value, "stop_sequences")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise fail("stop_sequences", f"List should have at most {MAX_STOP_SEQUENCES} items")
    for i, stop in enumerate(stops):
        if len(a_str(stop, f"stop_sequences.{i}")) > MAX_STOP_CHARS:
            raise fail(f"stop_sequences.{i}", f"String should have at most {MAX_STOP_CHARS} "
                       "characters")  # fmt: skip
    return tuple(stops)


def last_user_text(data: dict[str, Any]) -> str:
    """What echo mode repeats: the last user message's text."""
    for message in reversed(data["messages"]):
        if message["role"] == "user":
            content = message["content"]
            if isinstance(content, str):
                return content
            return "".join(b.get("text", "") for b in content if b["type"] == "text")
    return ""


def messages_request(data: dict[str, Any], *, counting: bool = False) -> MessagesRequest:
    """Check a Messages body (or a count_tokens one: no ``max_tokens``) as Anthropic does.

    Raises:
      OpenAIError: 400 naming the first field that is wrong.
    """
    model = a_str(field(data, "model", "model"), "model")
    max_tokens = None if counting else an_int(field(data, "max_tokens", "max_tokens"),
                                              "max_tokens", 1)  # fmt: skip
    texts: list[str] = []
    if data.get("system") is not None:
        check_system(data["system"], texts)
    images = check_messages(field(data, "messages", "messages"), texts)
    tools = check_tools(data["tools"], texts) if data.get("tools") is not None else ()
    choice: Literal["auto", "any", "none"] | Tool = "auto"
    parallel = True
    if data.get("tool_choice") is not None:
        choice, parallel = check_tool_choice(data["tool_choice"], tools)
    forced = isinstance(choice, Tool) or choice == "any"
    budget = None
    if data.get("thinking") is not None:
        budget = check_thinking(data["thinking"], max_tokens)
        if budget is not None and forced:
            raise fail("thinking", "Thinking may not be enabled when tool_choice forces tool use.")
    check_sampling(data, budget is not None)
    stop = check_stops(data["stop_sequences"]) if data.get("stop_sequences") is not None else ()
    stream = a_bool(data["stream"], "stream") if data.get("stream") is not None else False
    prompt = Prompt(
        texts=texts,
        messages=len(data["messages"]),
        images=images,
        tools_tokens=(TOOLS_FORCED_TOKENS if forced else TOOLS_PROMPT_TOKENS) if tools else 0,
    )
    return MessagesRequest(
        model=model,
        max_tokens=max_tokens,
        stream=stream,
        prompt=prompt,
        tools=tools,
        tool_choice=choice,
        parallel_tool_calls=parallel,
        thinking_budget=budget,
        stop=stop,
        echo=last_user_text(data),
    )


def anthropic_model(model_id: str, *, created_at: str, context_length: int) -> dict[str, object]:
    """A model as Anthropic's ``GET /v1/models`` lists it (the SDK's ``ModelInfo``)."""
    return {
        "type": "model",
        "id": model_id,
        "display_name": model_id,
        "created_at": created_at,
        "lifecycle": "active",
        "max_input_tokens": context_length,
        "max_tokens": context_length,
    }
