"""JSON Schema support shared by checking and sampling (``_schema_values``): the limits that
keep both bounded, ``SchemaError``, and small readers of a schema's keywords."""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Hashable, Mapping
from fractions import Fraction
from typing import Any

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

_MISSING: Any = object()


class SchemaError(ValueError):
    """A schema we cannot honour; the message starts with its JSON path (``schema.a.b``)."""


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
