"""JSON values that fit a caller's JSON Schema, for tool calls and structured output (sans-IO).

A client that sends ``tools`` or ``response_format: json_schema`` parses the reply against its
schema, often strictly (pydantic), so the mock must answer with *valid* JSON, not just
plausible text. This stage turns a schema and a seeded numpy Generator into such a value,
the same value for the same seed, and rejects up front (``SchemaError``, which the server
makes a 400) the schemas it cannot honour. It does no I/O and knows nothing of requests.

Limits: ``if``/``then``/``else``, ``contains``, ``propertyNames``, ``dependent*`` and
``unevaluated*`` are accepted but ignored; inside ``allOf`` the first ``pattern``, ``format``,
``const``, ``multipleOf`` and ``prefixItems`` win. ``oneOf`` exclusivity and ``not`` are
checked by a cheap, partial validator, with a few retries. A ``pattern`` is met when a few
words happen to match it, or when the small generator below understands it (literals,
classes, ``\\d \\w \\s .``, quantifiers, groups, alternation, anchors); with lookarounds,
backreferences or ``\\b`` the value falls back to plain words, which may not match. Patterns
are Python ``re``, not ECMA 262. Recursion bottoms out: past six levels only required
properties, ``minItems`` and non-recursive branches are drawn. A schema with no finite instance (a required property that
recurses forever, contradictory ``allOf`` branches) gets a best-effort value, not an error.

This module draws the values (with budgets against blow-ups and recursion); ``_schema_check``
refuses the schemas it cannot honour, ``_schema_pattern`` draws strings for a ``pattern``,
and ``_schema_rules`` holds what both read.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import uuid
from collections.abc import Hashable, Mapping, Sequence
from datetime import date, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import numpy as np

from ._schema_pattern import _FORMAT_ALIASES, _pattern_generator
from ._schema_rules import (
    _BUDGET,
    _HARD_DEPTH,
    _SOFT_DEPTH,
    _STEPS,
    DEFAULT_WORDS,
    _as_schema,
    _bounds,
    _clashes,
    _compatible,
    _high,
    _infer_type,
    _is_leafy,
    _is_number,
    _is_type,
    _item_schemas,
    _key,
    _low,
    _merge,
    _multiples,
    _number_ok,
    _pointer,
    _types,
    _window,
)

_T = TypeVar("_T")

# --- sampling -------------------------------------------------------------------------------


class _Sampler:
    """Draws a value for one schema tree; ``nodes`` and ``checks`` bound the work."""

    def __init__(
        self, root: Mapping[str, Any], rng: np.random.Generator, words: Sequence[str]
    ) -> None:
        self.root, self.rng = root, rng
        self.words = tuple(w for w in words if w) or DEFAULT_WORDS
        self.nodes = self.checks = 0

    def pick(self, options: Sequence[_T]) -> _T:
        return options[int(self.rng.integers(len(options)))]

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def word(self) -> str:
        """A word fit for keys, hostnames and emails: lower-case ASCII letters and digits."""
        return re.sub(r"[^a-z0-9]+", "", self.pick(self.words).lower()) or "item"

    def draw_words(self, n: int) -> list[str]:
        return [self.words[i] for i in self.rng.integers(len(self.words), size=n)]

    def text(self, low: int = 0, high: int | None = None) -> str:
        """1-4 words, padded with more words or cut to fit ``[low, high]`` characters."""
        text = " ".join(self.draw_words(1 + int(self.rng.integers(4))))
        while len(text) < low:  # a word adds at least 2 characters: rarely more than 2 rounds
            text = " ".join([text, *self.draw_words((low - len(text)) // 4 + 1)])
        if high is not None and len(text) > high:
            text = text[:high]
            text = text.rstrip() if len(text.rstrip()) >= low else text
        self.nodes += len(text) // 100
        return text

    def sample(self, schema: Any, depth: int) -> Any:
        self.nodes += 1
        if depth > _HARD_DEPTH or self.nodes > _BUDGET:
            return None
        if not isinstance(schema, Mapping):  # true: anything goes
            return self.text()
        s = self.resolve(schema, depth)
        if "oneOf" in s:
            return self.one_of(s, depth)
        if "const" in s:
            return copy.deepcopy(s["const"])
        if s.get("nullable") is True and self.chance(0.2):  # OpenAPI 3.0
            return None
        if "enum" in s:  # the members that fit the other keywords, if any do
            rest = {k: v for k, v in s.items() if k != "enum"}
            banned = s.get("not", False)
            fits = [v for v in s["enum"] if self.may_match(v, rest)]
            fits = [v for v in fits if not self.may_match(v, banned)] or fits
            return copy.deepcopy(self.pick(fits or s["enum"]))
        if "not" in s:
            return self.avoid(s, depth)
        types = _types(s)
        kind = _infer_type(s) if types is None else self.pick_type(types, depth)
        if kind == "object":
            return self.object(s, depth)
        if kind == "array":
            return self.array(s, depth)
        if kind in {"integer", "number"}:
            return self.number(s, integer=kind == "integer")
        if kind in {"boolean", "null"}:
            return self.chance(0.5) if kind == "boolean" else None
        return self.string(s) if kind == "string" else self.text()  # "any": a short string

    def pick_type(self, types: list[str], depth: int) -> str:
        if depth >= _SOFT_DEPTH:
            types = [t for t in types if t not in {"object", "array"}] or types
        return self.pick(types)

    def resolve(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        """Follow ``$ref``, merge ``allOf`` and commit to one ``anyOf`` branch, until only
        plain keywords (and perhaps ``oneOf`` or ``not``, see ``sample``) are left.

        ``allOf`` goes before ``anyOf`` so that the pick sees every ``type``; an ``allOf``
        branch whose ``anyOf``/``oneOf`` clashes with one already here waits its turn.
        """
        s = dict(schema)
        for _ in range(_STEPS):
            waiting = s.get("allOf", [])
            if "$ref" in s:
                s = _merge(_as_schema(_pointer(self.root, s.pop("$ref"))), s)
            elif waiting and not all(_clashes(s, branch) for branch in waiting):
                for branch in s.pop("allOf"):
                    s = _merge(s, _as_schema(branch))  # a clash goes back into allOf
            elif "anyOf" in s:
                branches = s.pop("anyOf")
                s = _merge(s, _as_schema(branches[self.choose(branches, depth, s)]))
            else:
                return s  # any allOf left waits for one_of()
        return {k: v for k, v in s.items() if k not in {"$ref", "allOf", "anyOf"}}

    def choose(self, branches: list[Any], depth: int, base: Mapping[str, Any]) -> int:
        """A random branch that agrees with ``base`` on type; past ``_SOFT_DEPTH``, one
        that ends recursion if there is one."""
        options = [i for i, b in enumerate(branches) if _compatible(base, self.peek(b))]
        options = options or list(range(len(branches)))
        if depth >= _SOFT_DEPTH:
            options = [i for i in options if _is_leafy(branches[i])] or options
        return self.pick(options)

    def peek(self, schema: Any) -> Any:
        """``schema`` with its ``$ref`` chain followed (no merging, no randomness)."""
        for _ in range(8):
            if not (isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str)):
                break
            schema = _pointer(self.root, schema["$ref"])
        return schema

    def avoid(self, s: dict[str, Any], depth: int) -> Any:
        """A value for ``s`` that (as far as ``may_match`` can tell) fails ``s["not"]``;
        the second half of the tries sample lean, like ``one_of``."""
        banned = s.pop("not")
        value: Any = None
        for attempt in range(12):
            value = self.sample(s, depth + 1 if attempt < 6 else max(depth + 1, _SOFT_DEPTH))
            if not self.may_match(value, banned):
                break
        return value

    def one_of(self, s: dict[str, Any], depth: int) -> Any:
        """A value for one branch that (as far as ``may_match`` can tell) fits no other.

        Each branch gets a turn; the second round samples lean (required properties only,
        as past ``_SOFT_DEPTH``), which is what usually tells overlapping branches apart.
        """
        branches, base = s.pop("oneOf"), s
        first = self.choose(branches, depth, base)
        order = [first, *(int(i) for i in self.rng.permutation(len(branches)) if i != first)]
        value: Any = None
        for attempt in range(2 * max(3, len(order))):
            chosen = order[attempt % len(order)]
            lean = depth + 1 if attempt < max(3, len(order)) else max(depth + 1, _SOFT_DEPTH)
            value = self.sample(_merge(base, _as_schema(branches[chosen])), lean)
            others = (_merge(base, _as_schema(b)) for i, b in enumerate(branches) if i != chosen)
            if not any(self.may_match(value, other) for other in others):
                break
        return value

    def object(self, s: Mapping[str, Any], depth: int) -> dict[str, Any]:
        props: Mapping[str, Any] = s.get("properties", {})
        required = list(dict.fromkeys(s.get("required", ())))
        deep = depth >= _SOFT_DEPTH
        chosen = [
            name
            for name, sub in props.items()
            if name in required or (sub is not False and not deep and self.chance(0.5))
        ]
        low, high = _low(s, "minProperties"), _high(s, "maxProperties")
        spare = [name for name, sub in props.items() if name not in chosen and sub is not False]
        chosen += spare[: max(0, low - len(chosen))]
        optional = [name for name in chosen if name not in required]
        while high is not None and len(chosen) > high and optional:
            chosen.remove(optional.pop())
        names = [name for name in props if name in chosen]
        names += [name for name in required if name not in props]
        while len(names) < low:
            extra = self.extra_key(s, names)
            if extra is None:
                break
            names.append(extra)
        return {name: self.sample(self.property_schema(s, name), depth + 1) for name in names}

    def property_schema(self, s: Mapping[str, Any], name: str) -> Any:
        parts = [s["properties"][name]] if name in s.get("properties", {}) else []
        patterns: Mapping[str, Any] = s.get("patternProperties", {})
        parts += [sub for pattern, sub in patterns.items() if re.search(pattern, name)]
        if not parts:
            return s.get("additionalProperties", True)
        return parts[0] if len(parts) == 1 else {"allOf": parts}

    def extra_key(self, s: Mapping[str, Any], taken: list[str]) -> str | None:
        """A new key beyond ``properties`` (only ever for ``minProperties``), or None."""
        props = s.get("properties", {})
        closed = s.get("additionalProperties", True) is False
        patterns = list(s.get("patternProperties", {})) if closed else []
        for _ in range(8):
            if closed and not patterns:
                return None
            pattern = self.pick(patterns) if closed else None
            key = self.string({"pattern": pattern}) if pattern else self.word()
            fits = pattern is None or re.search(pattern, key) is not None
            if fits and key not in taken and key not in props:
                return key
        return None if closed else f"{self.word()}_{len(taken)}"

    def array(self, s: Mapping[str, Any], depth: int) -> list[Any]:
        prefix, rest = _item_schemas(s)
        low, high = _low(s, "minItems"), _high(s, "maxItems")
        if rest is False:
            high = len(prefix) if high is None else min(high, len(prefix))
        n = low if depth >= _SOFT_DEPTH else 1 + int(self.rng.integers(3))
        n = max(low, n if high is None else min(n, high))
        unique = s.get("uniqueItems") is True
        if unique and (distinct := self.distinct(rest)) is not None:
            n = max(low, min(n, len(prefix) + distinct))
        out: list[Any] = []
        seen: set[Hashable] = set()
        for i in range(n):
            if self.nodes > _BUDGET:
                break
            sub = prefix[i] if i < len(prefix) else rest
            value = self.sample(sub, depth + 1)
            for _ in range(8 if unique else 0):  # best effort, then a shorter array
                if _key(value) not in seen:
                    break
                value = self.sample(sub, depth + 1)
            if unique and _key(value) in seen and len(out) >= low:
                break
            seen.add(_key(value))
            out.append(value)
        return out

    def distinct(self, schema: Any) -> int | None:
        """How many distinct values ``schema`` allows, when that is small and obvious."""
        schema = self.peek(schema)
        if not isinstance(schema, Mapping):
            return None
        if "const" in schema or "enum" in schema:
            return len({_key(v) for v in schema.get("enum", [schema.get("const")])})
        types = set(_types(schema) or ["any"])
        return (
            2 * ("boolean" in types) + ("null" in types) if types <= {"boolean", "null"} else None
        )

    def string(self, s: Mapping[str, Any]) -> str:
        low, high, pattern = _low(s, "minLength"), _high(s, "maxLength"), s.get("pattern")

        def fits(text: str) -> bool:
            if len(text) < low or (high is not None and len(text) > high):
                return False
            return pattern is None or re.search(pattern, text) is not None

        formatted = self.formatted(s.get("format"))
        if formatted is not None and fits(formatted):
            return formatted
        text = self.text(low, high)
        if pattern is None:
            return text
        generate = _pattern_generator(pattern, self.rng) or (lambda: text)
        candidates = itertools.chain(
            [text], (self.text(low, high) for _ in range(3)), (generate() for _ in range(12))
        )
        return next((c for c in candidates if fits(c)), text)  # else: beyond our generator

    def formatted(self, fmt: Any) -> str | None:
        fmt = _FORMAT_ALIASES.get(fmt, fmt) if isinstance(fmt, str) else None
        r = self.rng
        if fmt == "uuid":
            return str(uuid.UUID(bytes=r.bytes(16), version=4))
        if fmt in {"ipv4", "ipv6"}:
            if fmt == "ipv4":
                return ".".join(str(int(part)) for part in r.integers(1, 255, 4))
            return ":".join(f"{int(part):x}" for part in r.integers(0, 65536, 8))
        if fmt in {"email", "uri", "hostname"}:
            first, second = self.word(), self.word()
            return {
                "email": f"{first}.{second}@example.com",
                "uri": f"https://example.com/{first}/{second}",
                "hostname": f"{first}.example.com",
            }[fmt]
        if fmt not in {"date-time", "date", "time"}:
            return None  # unknown formats are annotations: plain words will do
        day = (date(2020, 1, 1) + timedelta(days=int(r.integers(2500)))).isoformat()
        clock = ":".join(f"{int(r.integers(n)):02d}" for n in (24, 60, 60)) + "Z"
        return {"date-time": f"{day}T{clock}", "date": day, "time": clock}[fmt]

    def number(self, s: Mapping[str, Any], *, integer: bool) -> int | float:
        """A multiple of ``multipleOf`` (or of 0.01: "nice") within the bounds, near zero."""
        step, k_lo, k_hi = _multiples(s, integer=integer)
        lo, _, hi, _ = _bounds(s)
        if integer:  # within 64 bits, which check_schema made sure is possible
            top, bottom = math.floor((2**63 - 1) / step), math.ceil(-(2**63) / step)
            k_lo = bottom if k_lo is None else max(k_lo, bottom)
            k_hi = top if k_hi is None else min(k_hi, top)
        if k_lo is not None and k_hi is not None and k_lo > k_hi:
            if not integer and lo is not None and hi is not None:
                return float((lo + hi) / 2)  # bounds closer than 0.01
            return int(k_lo * step) if integer else float(k_lo * step)  # unsatisfiable (allOf)
        a, b = _window(k_lo, k_hi, max(1, min(10**6, int(100 / step))))
        m = s.get("multipleOf")
        small = max(abs(a), abs(b)) * step < 2**53  # else a float, which JSON encoders take
        exact_ints = integer or (m is not None and not isinstance(m, float) and small)
        spares: list[float] = []
        value: int | float = 0
        for _ in range(8):
            k = a + int(self.rng.integers(b - a + 1))
            value = int(k * step) if exact_ints else float(k * step)
            if _number_ok(value, s):
                return value
            if isinstance(m, float):  # jsonschema divides floats: 0.3 / 0.1 is not 3
                spares.append(float(k * Fraction(m)))  # uglier (0.30000000000000004)
        return next((spare for spare in spares if _number_ok(spare, s)), value)

    def may_match(self, value: Any, schema: Any, depth: int = 0) -> bool:
        """Cheap, conservative validation: False only when ``value`` surely fails ``schema``."""
        self.checks += 1
        if not isinstance(schema, Mapping):
            return schema is not False
        if depth > 8 or self.checks > _BUDGET:
            return True

        def fits(item: Any, sub: Any) -> bool:
            return self.may_match(item, sub, depth + 1)

        if "$ref" in schema and not fits(value, _pointer(self.root, schema["$ref"])):
            return False
        if not all(fits(value, branch) for branch in schema.get("allOf", ())):
            return False
        for key in ("anyOf", "oneOf"):
            if key in schema and not any(fits(value, branch) for branch in schema[key]):
                return False
        if "const" in schema and _key(value) != _key(schema["const"]):
            return False
        if "enum" in schema and _key(value) not in {_key(v) for v in schema["enum"]}:
            return False
        types = _types(schema)
        if types and not any(_is_type(value, t) for t in types):
            return value is None and schema.get("nullable") is True
        if isinstance(value, str):
            low, high = _low(schema, "minLength"), _high(schema, "maxLength")
            pattern = schema.get("pattern")
            if len(value) < low or (high is not None and len(value) > high):
                return False
            return pattern is None or re.search(pattern, value) is not None
        if _is_number(value):
            return _number_ok(value, schema)
        if isinstance(value, list):
            low, high = _low(schema, "minItems"), _high(schema, "maxItems")
            prefix, rest = _item_schemas(schema)
            if len(value) < low or (high is not None and len(value) > high):
                return False
            return all(fits(v, prefix[i] if i < len(prefix) else rest) for i, v in enumerate(value))
        if isinstance(value, Mapping):
            props = schema.get("properties", {})
            if any(name not in value for name in schema.get("required", ())):
                return False
            closed = (
                schema.get("additionalProperties") is False and "patternProperties" not in schema
            )
            if closed and any(name not in props for name in value):
                return False
            return all(fits(v, props[k]) for k, v in value.items() if k in props)
        return True


def sample_json(
    schema: Mapping[str, Any],
    rng: np.random.Generator,
    words: Sequence[str] = DEFAULT_WORDS,
) -> Any:
    """Return a JSON-compatible value that is valid against ``schema``, which must have
    passed ``check_schema`` (``_schema_check``): the sampler trusts every keyword's shape.

    The same schema and the same ``rng`` state give the same value.

    Args:
      schema: the JSON Schema (a function's ``parameters``, or ``json_schema.schema``);
        ``$ref``s resolve against it.
      rng: per-request generator, so a request ``seed`` reproduces the value.
      words: the pool string values are built from (1-4 words joined by spaces).

    Returns:
      dicts, lists, strs, ints, floats, bools and None only; object keys follow
      ``properties`` order, as OpenAI's strict mode does.
    """
    return _Sampler(schema, rng, words).sample(schema, 0)


def sample_json_object(
    rng: np.random.Generator, words: Sequence[str] = DEFAULT_WORDS
) -> dict[str, Any]:
    """Return a small plausible object, for ``response_format: json_object`` (no schema).

    Args:
      rng: per-request generator, so a request ``seed`` reproduces the object.
      words: the pool keys and strings are built from.

    Returns:
      2-4 snake_case keys holding strings, numbers, booleans or a short list of words.
    """
    sampler = _Sampler({}, rng, words)
    wanted = 2 + int(rng.integers(3))
    out: dict[str, Any] = {}
    for _ in range(8 * wanted):  # bounded: a tiny word pool has few distinct keys
        if len(out) == wanted:
            break
        key = "_".join(sampler.word() for _ in range(1 + int(rng.integers(2))))
        if key in out:
            continue
        match int(rng.integers(5)):
            case 0:
                out[key] = sampler.text()
            case 1:
                out[key] = int(rng.integers(1, 1000))
            case 2:
                out[key] = round(float(rng.uniform(0, 100)), 2)
            case 3:
                out[key] = sampler.chance(0.5)
            case _:
                out[key] = [sampler.word() for _ in range(2 + int(rng.integers(2)))]
    return out
