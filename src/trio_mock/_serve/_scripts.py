"""Scripted responses: ordered rules that give chosen requests an exact answer.

A rule matches on endpoint, model, the text being answered and headers, and answers with
fixed content, a tool call, an error, a fault or a latency; it may fire a set number of
times. The first rule that matches and is not used up wins, and is used up at once (no
await between match and count), so concurrent requests never share a one-shot rule; with
several workers, uses are counted in a ``Tally`` they share, so that holds across them. A
scripted answer is carried as ``Overrides``, which the request's own ``x-mock-*`` headers
override field by field.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import cattrs
import orjson
from attrs import define, field, frozen

from .._config._faults import parse_fault
from .._openai._convert import content_text, converter, shape_error
from .._openai._errors import OpenAIError, invalid, status_error
from .._openai._overrides import OVERRIDE_RANGES, Overrides, ScriptedCall

if TYPE_CHECKING:
    from ._tally import Tally

# Short names for the generation endpoints; a rule may also give the path itself.
ENDPOINTS = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "responses": "/responses",
    "embeddings": "/embeddings",
    "realtime": "/realtime",  # each response.create of a Realtime session
    "messages": "/messages",  # Anthropic's
}


@frozen(kw_only=True)
class Match:
    """Which requests a rule answers; every condition given must hold."""

    endpoint: str | None = (
        None  # chat, completions, responses, embeddings, realtime, messages, a path
    )
    model: str | None = None  # a name, or a * pattern
    text: str | None = None  # a substring of the text being answered
    regex: str | None = None  # a regular expression searched in that text
    headers: dict[str, str] = field(factory=dict)  # name -> exact value


@frozen(kw_only=True)
class ToolCallAnswer:
    name: str
    arguments: dict[str, Any] | str = field(factory=dict)


@frozen(kw_only=True)
class ErrorAnswer:
    status: int
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None


@frozen(kw_only=True)
class Answer:
    """What a rule answers; parts may combine (content with a latency, say)."""

    content: str | None = None
    tool_call: ToolCallAnswer | None = None
    error: ErrorAnswer | None = None
    fault: str | None = None  # as x-mock-fault: 503, disconnect-after=3, ...
    ttft_ms: float | None = None
    itl_ms: float | None = None
    output_tokens: int | None = None


@frozen(kw_only=True)
class RuleSpec:
    """A rule as written in a file or posted: ``times`` None fires every time."""

    name: str | None = None
    match: Match = Match()
    reply: Answer
    times: int | None = None


def strict_objects(cls: type) -> Callable[[Any, type], Any]:
    """A structure hook that takes only a JSON object, and refuses unknown keys (typos)."""
    build: Callable[[Any, type], Any] = cattrs.gen.make_dict_structure_fn(
        cls, converter, _cattrs_forbid_extra_keys=True
    )

    def structure(value: Any, _: type) -> Any:
        if not isinstance(value, dict):
            raise TypeError("expected object")
        return build(value, cls)

    return structure


for _cls in (Match, ToolCallAnswer, ErrorAnswer, Answer, RuleSpec):
    converter.register_structure_hook(_cls, strict_objects(_cls))


@define(eq=False)
class Rule:
    """A loaded rule: its spec, compiled, with its count of uses."""

    id: int
    spec: RuleSpec
    overrides: Overrides
    error: OpenAIError | None
    path: str | None
    regex: re.Pattern[str] | None
    headers: tuple[tuple[bytes, bytes], ...]
    hits: int = 0  # with a Tally: this worker's last look at it
    slot: int = -1  # its count's place in the Tally, if any

    @property
    def remaining(self) -> int | None:
        return None if self.spec.times is None else self.spec.times - self.hits

    @property
    def label(self) -> str:
        return self.spec.name or f"rule {self.id}"

    def matches(self, path: str, model: str, text: str, headers: Mapping[bytes, bytes]) -> bool:
        m = self.spec.match
        return (
            # OpenRouter's /api/v1 routes are the same endpoints
            (self.path is None or path.removeprefix("/api").removeprefix("/v1") == self.path)
            and (m.model is None or fnmatch.fnmatchcase(model, m.model))
            and (m.text is None or m.text in text)
            and (self.regex is None or self.regex.search(text) is not None)
            and all(headers.get(name) == value for name, value in self.headers)
        )

    def to_data(self) -> dict[str, Any]:
        spec: dict[str, Any] = converter.unstructure(self.spec)
        return {"id": self.id, **spec, "hits": self.hits, "remaining": self.remaining}


def compile_rule(rule_id: int, spec: RuleSpec, where: str) -> Rule:
    """Check a spec's values and prepare it for matching.

    Raises:
      OpenAIError: a 400 naming the rule and the problem.
    """
    m, a = spec.match, spec.reply
    if spec.times is not None and spec.times < 1:
        raise invalid(f"{where}.times must be at least 1 (or absent: every time).", "times")
    path = None
    if m.endpoint is not None:
        path = ENDPOINTS.get(m.endpoint, m.endpoint.removeprefix("/v1"))
        if path not in ENDPOINTS.values():
            raise invalid(
                f"{where}.match.endpoint: unknown endpoint {m.endpoint!r}; expected one of "
                f"{', '.join(ENDPOINTS)} or their paths.",
                "match.endpoint",
            )
    regex = None
    if m.regex is not None:
        try:
            regex = re.compile(m.regex)
        except re.error as problem:
            raise invalid(f"{where}.match.regex: {problem}.", "match.regex") from None
    fault = None
    if a.fault is not None:
        try:
            fault = parse_fault(a.fault)
        except ValueError as problem:
            raise invalid(f"{where}.reply.fault: {problem}.", "reply.fault") from None
    scripted_error = None
    if a.error is not None:
        e = a.error
        if not 400 <= e.status <= 599:
            raise invalid(f"{where}.reply.error.status must be 400-599.", "reply.error.status")
        usual = status_error(e.status)  # OpenAI's body for the status, unless told otherwise
        scripted_error = attrs.evolve(
            usual,
            message=e.message or usual.message,
            param=e.param,
            code=e.code or usual.code,
            type=e.type or usual.type,
        )
    for name in ("ttft_ms", "itl_ms", "output_tokens"):  # the x-mock-* headers' ranges
        value = getattr(a, name)
        wrong = None if value is None else OVERRIDE_RANGES[name](value)
        if wrong is not None:
            raise invalid(f"{where}.reply.{name}: {wrong}.", f"reply.{name}")
    if a.content is not None and a.tool_call is not None:
        raise invalid(f"{where}.reply: give content or tool_call, not both.", "reply")
    call = None
    if a.tool_call is not None:
        arguments = a.tool_call.arguments
        text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
        call = ScriptedCall(a.tool_call.name, text)
    overrides = Overrides(
        ttft_ms=a.ttft_ms,
        itl_ms=a.itl_ms,
        output_tokens=a.output_tokens,
        fault=fault,
        content=a.content,
        tool_call=call,
    )
    headers = []
    for header, wanted in m.headers.items():
        try:
            headers.append((header.lower().encode("latin-1"), wanted.encode("latin-1")))
        except UnicodeEncodeError:
            raise invalid(
                f"{where}.match.headers[{header!r}]: HTTP headers are latin-1 text.",
                "match.headers",
            ) from None
    return Rule(rule_id, spec, overrides, scripted_error, path, regex, tuple(headers))


def answered_text(data: Mapping[str, Any]) -> str:
    """The text a request asks the model to answer: the last message's (chat), the
    prompt (completions), the last input item's (responses), every input (embeddings)."""
    if isinstance(messages := data.get("messages"), list) and messages:
        return content_text(messages[-1].get("content") if isinstance(messages[-1], dict) else None)
    for key in ("prompt", "input"):
        value = data.get(key)
        if isinstance(value, list) and value and key == "input":
            if all(isinstance(item, str) for item in value):  # embeddings' inputs
                return "\n".join(value)
            last = value[-1]
            return content_text(last.get("content") if isinstance(last, dict) else last)
        if value is not None:
            return content_text(value)
    return ""


class Scripts:
    """The ordered rules of one app, or of a server's workers when given their ``Tally``
    (the supervisor's copy ``add``s them, each worker's ``install``s them)."""

    def __init__(self, tally: Tally | None = None) -> None:
        self.rules: list[Rule] = []
        self.ids = itertools.count(1)
        self.tally = tally

    def add(self, data: Any, where: str = "rules") -> list[Rule]:
        """Append rules from decoded JSON: one rule, a list, or ``{"rules": [...]}``.
        All are checked before any is added.

        Raises:
          OpenAIError: 400 naming the first bad rule.
        """
        if isinstance(data, dict) and "rules" in data and "reply" not in data:
            data = data["rules"]
        items = data if isinstance(data, list) else [data]
        rules = []
        for i, item in enumerate(items):
            label = f"{where}[{i}]"
            if not isinstance(item, dict):
                raise invalid(f"{label} must be an object.", label)
            try:
                spec = converter.structure(item, RuleSpec)
            except cattrs.BaseValidationError as error:
                shaped = shape_error(error, item)
                raise invalid(f"{label}: {shaped.message}", shaped.param, shaped.code) from None
            rules.append(compile_rule(next(self.ids), spec, label))
        if self.tally is not None:
            if len(rules) > self.tally.available:
                raise invalid(
                    f"{where}: at most {len(self.rules) + self.tally.available} rules at once "
                    "with several workers; delete some first.",
                    code="too_many_rules",
                )
            for rule in rules:
                rule.slot = self.tally.claim(rule.id)
        self.rules += rules
        return rules

    def replace(self, data: Any, where: str = "rules") -> list[Rule]:
        """Put the rules of ``data`` in place of all the rules, at once.

        Raises:
          OpenAIError: 400 naming the first bad rule (the old rules stay).
        """
        Scripts().add(data, where)  # every rule checked before the old ones go
        self.clear()
        return self.add(data, where)

    def install(self, entries: Iterable[tuple[int, int, RuleSpec]]) -> None:
        """Append rules the supervisor checked and numbered: (id, tally slot, spec)."""
        for rule_id, slot, spec in entries:
            rule = compile_rule(rule_id, spec, "rules")
            rule.slot = slot
            self.rules.append(rule)

    def entries(self, rules: Iterable[Rule]) -> list[tuple[int, int, RuleSpec]]:
        """What ``install`` takes, for ``rules``."""
        return [(rule.id, rule.slot, rule.spec) for rule in rules]

    def load(self, path: str) -> None:
        """Rules from a TOML (``[[rules]]`` tables) or JSON file.

        Raises:
          ValueError: the file cannot be read or holds a bad rule.
        """
        data = read_rules(path)
        try:
            self.add(data, f"{path}: rules")
        except OpenAIError as error:  # more rules than the workers' tally holds
            raise ValueError(error.message) from None

    def remove(self, rule_id: int) -> bool:
        kept = [r for r in self.rules if r.id != rule_id]
        self.forget([r for r in self.rules if r.id == rule_id])
        found = len(kept) != len(self.rules)
        self.rules = kept
        return found

    def clear(self) -> int:
        count = len(self.rules)
        self.forget(self.rules)
        self.rules = []
        return count

    def forget(self, rules: Iterable[Rule]) -> None:
        if self.tally is not None:
            for rule in rules:
                self.tally.release(rule.slot, rule.id)

    def listing(self) -> list[dict[str, Any]]:
        if self.tally is not None:  # every worker's uses
            for rule in self.rules:
                uses = self.tally.uses(rule.slot, rule.id)
                rule.hits = rule.hits if uses is None else uses
        return [r.to_data() for r in self.rules]

    def take(
        self, path: str, data: Mapping[str, Any], headers: Iterable[tuple[bytes, bytes]]
    ) -> Rule | None:
        """The first rule that matches and has uses left, counted as used."""
        if not self.rules:
            return None
        model = data.get("model")
        model = model if isinstance(model, str) else ""
        text = answered_text(data)
        lowered = {name.lower(): value for name, value in headers}
        for rule in self.rules:
            if rule.remaining != 0 and rule.matches(path, model, text, lowered):
                if self.tally is None:
                    rule.hits += 1
                    return rule
                uses = self.tally.use(rule.slot, rule.id, rule.spec.times)
                if uses is not None:
                    rule.hits = uses
                    return rule
                if rule.spec.times is not None:  # used up by other workers: skip it now
                    rule.hits = rule.spec.times
        return None


def read_rules(path: str) -> Any:
    """The rules of a TOML (``[[rules]]`` tables) or JSON file, decoded and checked.

    Raises:
      ValueError: the file cannot be read or holds a bad rule.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.endswith(".toml") else json.loads(text)
        Scripts().add(data, f"{path}: rules")  # every rule checked, none kept
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load scripts from {path!r}: {error}") from None
    except OpenAIError as error:
        raise ValueError(error.message) from None
    return data
