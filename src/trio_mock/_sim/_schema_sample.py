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
"""

from __future__ import annotations

import copy
import itertools
import math
import re
import string
import urllib.parse
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import date, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DEFAULT_WORDS", "SchemaError", "check_schema", "sample_json", "sample_json_object"]

DEFAULT_WORDS: tuple[str, ...] = tuple(
    "apple river stone cloud green quick light north paper music garden orange window silver "
    "market summer winter bright forest ocean yellow simple planet coffee mountain little people "
    "school family friend animal travel number letter circle button camera doctor energy flower "
    "island jacket kitchen ladder mirror pencil rocket shadow table valley wonder zebra blue red "
    "small large happy calm fast slow warm cold".split()
)

JSON_TYPES = ("string", "number", "integer", "boolean", "null", "array", "object")
_SOFT_DEPTH = 6  # deeper than this, only what is required (recursive schemas must bottom out)
_HARD_DEPTH = 24  # deeper than this a schema never bottoms out: give up with null
_BUDGET = 20_000  # samples (and 100-character string chunks) per value, against blow-ups
_STEPS = 64  # $ref / allOf / anyOf expansions per value, against reference loops
_MAX_NESTING = 100  # JSON levels a schema may have, so recursion here stays far from the limit
_MAX_ITEMS = 1_000  # largest minItems / minProperties we will build
_MAX_LENGTH = 100_000  # largest minLength
_MAX_MAGNITUDE = 1e300  # numeric keywords beyond this cannot be turned into floats safely

# Where subschemas live: one schema, a map of them, a list of them.
_ONE_SCHEMA = (
    "items additionalProperties additionalItems contains not if then else propertyNames "
    "unevaluatedItems unevaluatedProperties"
).split()
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
# Keywords that tell a schema without "type" what it describes.
_OBJECT_WORDS = "properties required additionalProperties patternProperties minProperties".split()
_ARRAY_WORDS = "items prefixItems minItems maxItems uniqueItems".split()
_STRING_WORDS = "minLength maxLength pattern format".split()

_T = TypeVar("_T")
_MISSING: Any = object()


class SchemaError(ValueError):
    """A schema we cannot honour; the message starts with its JSON path (``schema.a.b``)."""


def sample_json(
    schema: Mapping[str, Any],
    rng: np.random.Generator,
    words: Sequence[str] = DEFAULT_WORDS,
    *,
    checked: bool = False,
) -> Any:
    """Return a JSON-compatible value that is valid against ``schema``.

    The same schema and the same ``rng`` state give the same value.

    Args:
      schema: the JSON Schema (a function's ``parameters``, or ``json_schema.schema``);
        ``$ref``s resolve against it.
      rng: per-request generator, so a request ``seed`` reproduces the value.
      words: the pool string values are built from (1-4 words joined by spaces).
      checked: the caller already ran ``check_schema`` on this schema (the server does,
        once per distinct schema), so it is not run again.

    Returns:
      dicts, lists, strs, ints, floats, bools and None only; object keys follow
      ``properties`` order, as OpenAI's strict mode does.

    Raises:
      SchemaError: from ``check_schema``.
    """
    if not checked:
        check_schema(schema)  # the sampler trusts every keyword's shape
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


def check_schema(schema: Any) -> None:
    """Raise ``SchemaError`` unless ``sample_json`` can honour ``schema``.

    Checks the shape of every keyword the sampler reads, that every ``$ref`` is local and
    resolves, and the plainly unsatisfiable (``minimum > maximum``, no integer in range,
    more required properties than ``maxProperties``, ...).

    Args:
      schema: any JSON value (it comes from the request body); nothing but
        ``SchemaError`` escapes, whatever it is.

    Raises:
      SchemaError: e.g. ``"schema.properties.city.type: unknown type 'strng'"``.
    """
    if not isinstance(schema, Mapping):
        raise SchemaError("schema: must be a JSON object")
    if _nesting(schema) > _MAX_NESTING:
        raise SchemaError(f"schema: nested more than {_MAX_NESTING} levels deep")
    _Checker(schema).run()


# --- checking -------------------------------------------------------------------------------


class _Checker:
    """One walk over every subschema, then over each ``$ref`` target not yet visited."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.seen: set[int] = set()
        self.targets: list[tuple[Any, str]] = []

    def run(self) -> None:
        self.walk(self.root, "schema")
        while self.targets:
            node, path = self.targets.pop()
            if id(node) not in self.seen:
                self.walk(node, path)

    def walk(self, node: Any, path: str, *, may_be_false: bool = False) -> None:
        if isinstance(node, bool):
            if node or may_be_false:  # false only where it merely forbids extras
                return
            raise SchemaError(f"{path}: the schema false accepts no value")
        if not isinstance(node, Mapping):
            raise SchemaError(f"{path}: a schema must be an object or a boolean")
        self.seen.add(id(node))
        _check_keywords(node, path)
        for key in _ONE_SCHEMA:
            if key in node:
                subs = node[key] if key in {"items", "additionalItems"} else None
                if isinstance(subs, list):  # draft-4 tuple form of items
                    for i, sub in enumerate(subs):
                        self.walk(sub, f"{path}.{key}[{i}]")
                else:
                    self.walk(node[key], f"{path}.{key}", may_be_false=True)
        for key in _SCHEMA_MAPS:
            if key in node:
                if not isinstance(node[key], Mapping):
                    raise SchemaError(f"{path}.{key}: must be an object")
                for name, sub in node[key].items():
                    self.walk(sub, f"{path}.{key}.{name}", may_be_false=key == "properties")
        for key in _SCHEMA_LISTS:
            if key in node:
                subs = node[key]
                if not isinstance(subs, list) or (not subs and key != "prefixItems"):
                    raise SchemaError(f"{path}.{key}: must be a non-empty list of schemas")
                for i, sub in enumerate(subs):
                    self.walk(sub, f"{path}.{key}[{i}]")
        if "$ref" in node:
            self.follow(node["$ref"], f"{path}.$ref")
        _check_ranges(node, path)  # last: it relies on the shapes checked above

    def follow(self, ref: str, path: str) -> None:
        """Resolve a ``$ref`` chain to a schema, and queue the targets for checking."""
        chain: list[str] = []
        node: Any = {"$ref": ref}
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            ref = node["$ref"]
            if ref in chain:
                raise SchemaError(f"{path}: circular $ref {ref!r}")
            chain.append(ref)
            node = _pointer(self.root, ref)
            if node is _MISSING:
                raise SchemaError(f"{path}: cannot resolve {ref!r} (only local '#/...' refs)")
            if not isinstance(node, Mapping) and node is not True:
                raise SchemaError(f"{path}: {ref!r} is not a schema that accepts values")
            self.targets.append((node, "schema" + ref[1:].replace("/", ".")))


def _check_keywords(node: Mapping[str, Any], path: str) -> None:
    """Check the values of the non-schema keywords ``_Sampler`` relies on."""
    regexes = [node.get("pattern", "")]
    if isinstance(node.get("patternProperties"), Mapping):
        regexes += list(node["patternProperties"])
    for pattern in regexes:
        try:
            re.compile(pattern)
        except (re.error, RecursionError, OverflowError, ValueError, TypeError) as error:
            raise SchemaError(f"{path}: invalid pattern {pattern!r} ({error})") from None
    if "type" in node:
        kinds = node["type"]
        names = kinds if isinstance(kinds, list) and kinds else [kinds]
        for name in names:
            if not isinstance(name, str):
                raise SchemaError(f"{path}.type: must be a type name or a list of them")
            if name not in JSON_TYPES:
                raise SchemaError(f"{path}.type: unknown type {name!r}")
    if "required" in node:
        required, props = node["required"], node.get("properties")
        if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
            raise SchemaError(f"{path}.required: must be a list of property names")
        props = props if isinstance(props, Mapping) else {}
        closed = node.get("additionalProperties") is False
        for name in required:
            if props.get(name) is False:
                raise SchemaError(f"{path}.properties.{name}: required, but the schema is false")
            if closed and name not in props and not any(re.search(p, name) for p in regexes[1:]):
                raise SchemaError(
                    f"{path}.required: {name!r} is not in properties and additionalProperties "
                    "is false"
                )
    if "enum" in node and not (isinstance(node["enum"], list) and node["enum"]):
        raise SchemaError(f"{path}.enum: must be a non-empty list")
    for key in ("$ref", "pattern", "format"):
        if key in node and not isinstance(node[key], str):
            raise SchemaError(f"{path}.{key}: must be a string")
    for key in ("uniqueItems", "nullable"):
        if key in node and not isinstance(node[key], bool):
            raise SchemaError(f"{path}.{key}: must be true or false")
    for key in _COUNTS:
        value = node.get(key, 0)
        if not (
            _is_number(value) and value >= 0 and (isinstance(value, int) or value.is_integer())
        ):
            raise SchemaError(f"{path}.{key}: must be a non-negative integer")
        limit = _MAX_LENGTH if key == "minLength" else _MAX_ITEMS
        if key.startswith("min") and value > limit:
            raise SchemaError(f"{path}.{key}: {value} is more than trio-mock builds ({limit})")
    for key in _NUMBERS:
        value = node.get(key, 0)
        if not (isinstance(value, bool) and key.startswith("exclusive")) and not (
            _is_number(value) and abs(value) <= _MAX_MAGNITUDE  # also rejects NaN
        ):
            raise SchemaError(f"{path}.{key}: must be a number")
    if node.get("multipleOf", 1) <= 0:
        raise SchemaError(f"{path}.multipleOf: must be greater than 0")


def _check_ranges(node: Mapping[str, Any], path: str) -> None:
    """Reject the plainly unsatisfiable: empty ranges, more required than allowed."""
    for low, high in zip(_COUNTS[::2], _COUNTS[1::2], strict=True):
        if node.get(low, 0) > node.get(high, math.inf):
            raise SchemaError(f"{path}: {low} {node[low]} > {high} {node[high]}")
    props, required = node.get("properties", {}), node.get("required", [])
    if len(set(required)) > node.get("maxProperties", math.inf):
        raise SchemaError(f"{path}: {len(set(required))} required > maxProperties")
    closed = node.get("additionalProperties") is False and "patternProperties" not in node
    if closed and node.get("minProperties", 0) > len(props):
        raise SchemaError(f"{path}: minProperties > the {len(props)} properties allowed")
    prefix, rest = _item_schemas(node)
    if rest is False and node.get("minItems", 0) > len(prefix):
        raise SchemaError(f"{path}: minItems > the {len(prefix)} items allowed")
    lo, lo_x, hi, hi_x = _bounds(node)
    if lo is not None and hi is not None and lo > hi:
        raise SchemaError(f"{path}: minimum {lo} > maximum {hi}")
    if lo is not None and lo == hi and (lo_x or hi_x):
        raise SchemaError(f"{path}: an exclusive bound at {lo} leaves no number")
    types = _types(node)
    if types and set(types) <= {"integer", "number"}:
        integer = "number" not in types
        _, k_lo, k_hi = _multiples(node, integer=integer)
        checkable = (integer or "multipleOf" in node) and k_lo is not None and k_hi is not None
        if checkable and k_lo > k_hi:
            what = f"multiple of {node['multipleOf']}" if "multipleOf" in node else "integer"
            raise SchemaError(f"{path}: no {what} lies between {lo} and {hi}")
    if types and "integer" in types and "number" not in types:  # JSON encoders stop at 64 bits
        step, k_lo, k_hi = _multiples(node, integer=True)
        if (k_lo is not None and k_lo * step >= 2**63) or (
            k_hi is not None and k_hi * step < -(2**63)
        ):
            raise SchemaError(f"{path}: integers beyond 64 bits are not supported")


def _nesting(value: Any) -> int:
    """How many JSON levels ``value`` has (iteratively, so any input is safe)."""
    deepest, stack = 0, [(value, 1)]
    while stack and deepest <= _MAX_NESTING:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, Mapping):
            stack.extend((child, depth + 1) for child in node.values())
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
    return deepest


# --- small helpers shared by checking, sampling and matching ----------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _types(schema: Mapping[str, Any]) -> list[str] | None:
    kinds = schema.get("type")
    return None if kinds is None else [kinds] if isinstance(kinds, str) else list(kinds)


def _pointer(root: Any, ref: str) -> Any:
    """The node a local ``$ref`` ("#", "#/$defs/a", any JSON pointer) names, or _MISSING."""
    if not ref.startswith("#"):
        return _MISSING
    pointer = urllib.parse.unquote(ref[1:])
    if not pointer:
        return root
    if not pointer.startswith("/"):  # "#anchor" needs $anchor support
        return _MISSING
    node = root
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and re.fullmatch(r"0|[1-9][0-9]*", token):
            if int(token) >= len(node):
                return _MISSING
            node = node[int(token)]
        else:
            return _MISSING
    return node


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str, sign: int) -> Any:
    """The tighter of ``inclusive`` and ``exclusive`` (either draft's spelling), with a flag."""
    value, flag = schema.get(inclusive), schema.get(exclusive)
    if isinstance(flag, bool):  # draft 4: exclusiveMinimum: true qualifies minimum
        return value, flag and value is not None
    if flag is None or (value is not None and value * sign > flag * sign):
        return value, False
    return flag, True


def _bounds(schema: Mapping[str, Any]) -> tuple[Any, bool, Any, bool]:
    """Effective ``(low, low is exclusive, high, high is exclusive)``; None is unbounded."""
    return (
        *_bound(schema, "minimum", "exclusiveMinimum", 1),
        *_bound(schema, "maximum", "exclusiveMaximum", -1),
    )


def _multiples(schema: Mapping[str, Any], *, integer: bool) -> tuple[Fraction, Any, Any]:
    """The step every value is a multiple of, and the range of multipliers the bounds allow.

    Without ``multipleOf`` numbers step by 0.01, which keeps them "nice". Exact fractions
    keep huge bounds and tiny steps from overflowing floats.
    """
    m = schema.get("multipleOf")
    step = Fraction(1, 1 if integer else 100) if m is None else Fraction(m)
    nice = step.limit_denominator(10**9)  # 0.1 is 1/10, not the binary fraction nearest it
    if nice and abs(nice - step) <= step / 10**9:
        step = nice
    if integer:  # integer multiples of p/q are the multiples of p
        step = Fraction(step.numerator)
    lo, lo_x, hi, hi_x = _bounds(schema)
    k_lo = k_hi = None
    if lo is not None:
        q = Fraction(lo) / step
        k_lo = math.ceil(q) + (1 if lo_x and q.denominator == 1 else 0)
    if hi is not None:
        q = Fraction(hi) / step
        k_hi = math.floor(q) - (1 if hi_x and q.denominator == 1 else 0)
    return step, k_lo, k_hi


def _number_ok(value: float, schema: Mapping[str, Any]) -> bool:
    """Bounds and ``multipleOf`` exactly as jsonschema checks them (float quotients and all)."""
    lo, lo_x, hi, hi_x = _bounds(schema)
    if lo is not None and (value < lo or (lo_x and value == lo)):
        return False
    if hi is not None and (value > hi or (hi_x and value == hi)):
        return False
    m = schema.get("multipleOf")
    if m is None:
        return True
    if isinstance(m, float):
        try:
            quotient = value / m
            return bool(int(quotient) == quotient)
        except OverflowError:
            return (Fraction(value) / Fraction(m)).denominator == 1
    return bool(value % m == 0)


def _window(lo: int | None, hi: int | None, width: int) -> tuple[int, int]:
    """A range at most ``width`` wide inside ``[lo, hi]``, as near zero as the bounds allow."""
    start = 0 if lo is None else max(lo, 0)
    if hi is not None and start + width > hi:
        start = hi - width if lo is None else max(lo, hi - width)
    return start, start + width if hi is None else min(start + width, hi)


def _key(value: Any) -> Hashable:
    """JSON equality as a hashable key: 1 == 1.0, but true != 1 and key order is moot."""
    if value is None or isinstance(value, bool):
        return (type(value).__name__, value)
    if _is_number(value):
        return ("number", value)
    if isinstance(value, list):
        return ("array", tuple(_key(v) for v in value))
    if isinstance(value, Mapping):
        return ("object", frozenset((k, _key(v)) for k, v in value.items()))
    return (type(value).__name__, value)


def _as_schema(schema: Any) -> Mapping[str, Any]:
    return schema if isinstance(schema, Mapping) else {}


def _both(ours: Any, theirs: Any) -> Any:
    """One subschema that means both (``items``, ``additionalProperties``)."""
    if ours is False or theirs is False:
        return False
    if ours is True or theirs is True:
        return theirs if ours is True else ours
    return {"allOf": [ours, theirs]}


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """One schema that means both ``a`` and ``b``, for the keywords the sampler honours.

    Combinators that clash are deferred into ``allOf``; other clashes keep ``a``'s value.
    """
    out, theirs_all = _modern_bounds(a), _modern_bounds(b)
    for key, theirs in theirs_all.items():
        if key not in out:
            out[key] = theirs
            continue
        ours = out[key]
        if key in {"$ref", "anyOf", "oneOf"}:
            out["allOf"] = [*out.get("allOf", ()), {key: theirs}]
        elif key == "allOf":
            out[key] = [*ours, *theirs]
        elif key == "properties":
            both = {k: {"allOf": [ours[k], v]} if k in ours else v for k, v in theirs.items()}
            out[key] = {**ours, **both}
        elif key == "required":
            out[key] = [*ours, *(name for name in theirs if name not in ours)]
        elif key == "type":
            mine, other = _types(out) or [], _types(theirs_all) or []
            common = [t for t in mine if t in other or (t == "integer" and "number" in other)]
            if "number" in mine and "integer" in other and "integer" not in common:
                common.append("integer")
            out[key] = common or mine
        elif key == "enum":
            keys = {_key(v) for v in theirs}
            out[key] = [v for v in ours if _key(v) in keys] or ours
        elif key in _LOWER:
            out[key] = max(ours, theirs)
        elif key in _UPPER:
            out[key] = min(ours, theirs)
        elif key in {"items", "additionalProperties", "additionalItems"}:
            if not isinstance(ours, list) and not isinstance(theirs, list):
                out[key] = _both(ours, theirs)
        elif key in {"uniqueItems", "nullable"}:
            out[key] = ours or theirs
        elif key == "not":  # neither A nor B
            out[key] = {"anyOf": [ours, theirs]}
    return out


def _modern_bounds(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with draft-4 boolean ``exclusiveMinimum``/``Maximum`` in the numeric form."""
    out = dict(schema)
    for inclusive, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        flag = out.get(exclusive)
        if isinstance(flag, bool):
            del out[exclusive]
            if flag and inclusive in out:
                out[exclusive] = out.pop(inclusive)
    return out


def _clashes(s: Mapping[str, Any], branch: Any) -> bool:
    """Whether merging ``branch`` into ``s`` would have to defer a combinator."""
    return any(key in s and key in _as_schema(branch) for key in ("anyOf", "oneOf"))


def _compatible(base: Mapping[str, Any], branch: Any) -> bool:
    """Whether an ``anyOf``/``oneOf`` branch can agree with ``base`` on the value's type."""
    ours = _types(base)
    if not isinstance(branch, Mapping) or ours is None:
        return branch is not False
    ours = [*ours, "null"] if base.get("nullable") is True else ours
    if "const" in branch or "enum" in branch:
        values = branch.get("enum", [branch.get("const")])
        return any(_is_type(value, kind) for value in values for kind in ours)
    if "integer" in ours or "number" in ours:  # the two overlap
        ours = [*ours, "integer", "number"]
    theirs = _types(branch)
    return theirs is None or any(t in ours for t in theirs)


def _is_leafy(schema: Any) -> bool:
    """Whether a branch surely ends recursion (preferred past ``_SOFT_DEPTH``)."""
    if not isinstance(schema, Mapping):
        return True
    if any(k in schema for k in ("$ref", "allOf", "anyOf", "oneOf", "properties", "items")):
        return False
    types = _types(schema)
    return types is None or any(t not in {"object", "array"} for t in types)


def _infer_type(schema: Mapping[str, Any]) -> str:
    for kind, words in (("object", _OBJECT_WORDS), ("array", _ARRAY_WORDS)):
        if any(word in schema for word in words):
            return kind
    if any(word in schema for word in _STRING_WORDS):
        return "string"
    return "number" if any(word in schema for word in _NUMBERS) else "any"


def _is_type(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean" or isinstance(value, bool):
        return kind == "boolean" and isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float))
    return isinstance(value, str if kind == "string" else list if kind == "array" else Mapping)


def _low(schema: Mapping[str, Any], key: str) -> int:
    return int(schema.get(key, 0))


def _high(schema: Mapping[str, Any], key: str) -> int | None:
    return None if schema.get(key) is None else int(schema[key])


def _item_schemas(schema: Mapping[str, Any]) -> tuple[list[Any], Any]:
    """Positional item schemas, and the schema of every later item."""
    items = schema.get("items", True)
    if isinstance(items, list):  # draft 4-2019 tuple form
        return items, schema.get("additionalItems", True)
    return list(schema.get("prefixItems", ())), items


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


# --- generating strings from simple patterns ------------------------------------------------

_Gen = Callable[[], str]
_ANY = string.ascii_letters + string.digits
_PRINTABLE = _ANY + " -_.,:;!?@#/"
_CLASS_ESCAPES = {
    "d": string.digits,
    "w": _ANY + "_",
    "s": " ",
    "D": string.ascii_letters + " -_.",
    "W": " -.,:;!?@#/",
    "S": _ANY,
}
_CONTROL = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v"}
_FORMAT_ALIASES = {"url": "uri", "iri": "uri", "uri-reference": "uri", "idn-email": "email"}
_BRACES = re.compile(r"\{([0-9]*)(,?)([0-9]*)\}")
_HEX = {"x": re.compile(r"[0-9a-fA-F]{2}"), "u": re.compile(r"[0-9a-fA-F]{4}")}
_MAX_REPEAT = 1_000


class _Unsupported(Exception):
    """The pattern uses something the small generator does not know."""


def _pattern_generator(pattern: str, rng: np.random.Generator) -> _Gen | None:
    """A function drawing strings that ``pattern`` matches, or None when it is beyond us."""
    parser = _PatternParser(pattern, rng)
    try:
        generate = parser.alternation()
        if parser.i != len(pattern):
            raise _Unsupported
    except (_Unsupported, RecursionError):
        return None
    return generate


class _PatternParser:
    """Recursive descent over a regex subset; each method returns a generator closure."""

    def __init__(self, pattern: str, rng: np.random.Generator) -> None:
        self.p, self.i, self.rng = pattern, 0, rng

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def take(self) -> str:
        if self.i >= len(self.p):
            raise _Unsupported
        self.i += 1
        return self.p[self.i - 1]

    def chars(self, options: str) -> _Gen:
        rng = self.rng
        return lambda: options[int(rng.integers(len(options)))]

    def alternation(self) -> _Gen:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        rng = self.rng
        return lambda: branches[int(rng.integers(len(branches)))]()

    def sequence(self) -> _Gen:
        parts: list[_Gen] = []
        while self.peek() not in {"", "|", ")"}:
            atom = self.atom()
            bounds = self.quantifier()
            parts.append(atom if bounds is None else self.repeat(atom, *bounds))
        return lambda: "".join(part() for part in parts)

    def repeat(self, atom: _Gen, low: int, high: int) -> _Gen:
        rng = self.rng
        return lambda: "".join(atom() for _ in range(low + int(rng.integers(high - low + 1))))

    def quantifier(self) -> tuple[int, int] | None:
        c = self.peek()
        if c in {"?", "*", "+"}:
            self.i += 1
            low, high = {"?": (0, 1), "*": (0, 3), "+": (1, 4)}[c]
        elif c == "{" and (m := _BRACES.match(self.p, self.i)) and (m[1] or m[3]):
            self.i = m.end()
            low = int(m[1] or 0)
            high = int(m[3]) if m[3] else low + 3 if m[2] else low
        else:
            return None
        if self.peek() in {"?", "+"}:  # lazy or possessive: the same strings match
            self.i += 1
        if high > _MAX_REPEAT:
            raise _Unsupported
        return low, high

    def atom(self) -> _Gen:
        c = self.take()
        if c == "(":
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.p.startswith("?P<", self.i) and ">" in self.p[self.i :]:
                self.i = self.p.index(">", self.i) + 1
            elif self.peek() == "?":  # lookaround, flags, conditionals
                raise _Unsupported
            inner = self.alternation()
            if self.take() != ")":
                raise _Unsupported
            return inner
        if c == "[":
            return self.chars(self.char_class())
        if c == ".":
            return self.chars(_ANY)
        if c in {"^", "$"} or (c == "\\" and self.peek() in {"A", "Z"}):
            self.i += c == "\\"
            return lambda: ""  # anchors: the generated string is the whole match
        if c == "\\":
            return self.chars(self.escape())
        if c in {"*", "+", "?"}:
            raise _Unsupported
        return lambda: c

    def escape(self) -> str:
        c = self.take()
        if c in _CLASS_ESCAPES or c in _CONTROL:
            return _CLASS_ESCAPES.get(c) or _CONTROL[c]
        if c in {"x", "u"} and (m := _HEX[c].match(self.p, self.i)):
            self.i = m.end()
            return chr(int(m[0], 16))
        if c.isascii() and c.isalnum():  # \b, backreferences, \N{...} ...
            raise _Unsupported
        return c

    def char_class(self) -> str:
        negate = self.peek() == "^"
        self.i += negate
        members: list[str] = []
        first = True
        while (c := self.take()) != "]" or first:
            first = False
            if c == "\\":
                c = self.escape()
                if len(c) != 1:
                    members.extend(c)
                    continue
            if self.peek() == "-" and self.p[self.i + 1 : self.i + 2] not in {"", "]"}:
                self.i += 1
                end = self.take()
                end = self.escape() if end == "\\" else end
                if len(end) != 1 or ord(end) < ord(c):
                    raise _Unsupported
                members.extend(chr(o) for o in range(ord(c), ord(end) + 1))
            else:
                members.append(c)
        excluded = set(members)
        allowed = [ch for ch in _PRINTABLE if ch not in excluded] if negate else members
        if not allowed:
            raise _Unsupported
        return "".join(dict.fromkeys(allowed))
