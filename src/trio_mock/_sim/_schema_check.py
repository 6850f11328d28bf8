"""Checking a schema before sampling (``_schema_values``): what the sampler cannot honour is a
``SchemaError`` (a 400), before any value is drawn."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ._schema_rules import (
    _COUNTS,
    _MAX_ITEMS,
    _MAX_LENGTH,
    _MAX_MAGNITUDE,
    _MAX_NESTING,
    _MISSING,
    _NUMBERS,
    _ONE_SCHEMA,
    _SCHEMA_LISTS,
    _SCHEMA_MAPS,
    JSON_TYPES,
    SchemaError,
    _bounds,
    _is_number,
    _item_schemas,
    _multiples,
    _pointer,
    _types,
)

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
