"""Validate wire bodies against the official OpenAI OpenAPI spec.

This test helper loads ``openapi.yaml`` (OpenAPI 3.1, whose ``components.schemas`` are
JSON Schema 2020-12) as one ``referencing`` resource and checks a decoded JSON body
against ``#/components/schemas/<Name>``. It does no I/O beyond reading the spec once, and
it never checks ``format`` (the spec's ``unixtime``, ``float`` and ``int64`` are labels,
not assertions).

The spec still carries 109 OpenAPI 3.0 ``nullable: true`` keywords, which JSON Schema ignores;
without help a chunk's ``"finish_reason": null`` or ``"usage": null`` would be rejected
although the API sends both. The loader rewrites ``nullable: true`` into the 3.1 form
(``type: [..., "null"]``, or ``anyOf: [schema, {"type": "null"}]``).

By default it reads ``tests/data/openai-openapi-subset.json``: the schemas the tests use, cut
unchanged from the full spec by ``tests/data/vendor_openapi.py`` (provenance and licence in
``tests/data/README.md``), so a fresh clone validates with nothing beside it. Set
``TRIO_MOCK_OPENAPI`` to a full ``openapi.yaml`` (or another subset) to use that instead.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SPEC_PATH", "SPEC_URI", "VENDORED_SPEC", "schema_names", "spec_available", "validate"]

VENDORED_SPEC = Path(__file__).resolve().parent / "data" / "openai-openapi-subset.json"
SPEC_PATH: Path = Path(os.environ.get("TRIO_MOCK_OPENAPI") or VENDORED_SPEC).expanduser().resolve()
SPEC_URI: str = SPEC_PATH.as_uri()

# Keywords whose value is a map of names to subschemas, a list of subschemas, or one subschema.
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_ONE = frozenset({"items", "additionalProperties", "unevaluatedItems", "contains"})
_SCHEMA_ONE |= {"unevaluatedProperties", "propertyNames", "not", "if", "then", "else"}
# With any of these beside ``nullable``, widening ``type`` is not enough: wrap in anyOf.
_WRAP_IF = frozenset({"$ref", "allOf", "anyOf", "oneOf", "not", "if", "const"})
_MAX_LISTED = 20
_MAX_MESSAGE = 300


def spec_available() -> bool:
    """Return whether the spec file exists at ``SPEC_PATH`` (the vendored one always does)."""
    return SPEC_PATH.is_file()


def validate(schema_name: str, instance: object) -> None:
    """Check a decoded JSON body against ``components.schemas[schema_name]``.

    Args:
      schema_name: a key of ``components.schemas``, e.g. ``"CreateChatCompletionResponse"``.
      instance: the body as ``json.loads`` returns it.

    Raises:
      AssertionError: listing each violation as ``<JSON path>: <message>``.
      KeyError: if the spec has no such schema.
      FileNotFoundError: if ``TRIO_MOCK_OPENAPI`` names a missing file.
    """
    errors = sorted(_validator(schema_name).iter_errors(instance), key=_sort_key)
    if not errors:
        return
    count = f"{len(errors)} error{'s' if len(errors) > 1 else ''}"
    lines = [f"body does not match OpenAPI schema {schema_name!r} ({count}):"]
    lines += [f"  {_describe(error)}" for error in errors[:_MAX_LISTED]]
    if len(errors) > _MAX_LISTED:
        lines.append(f"  ... and {len(errors) - _MAX_LISTED} more")
    raise AssertionError("\n".join(lines))


def schema_names() -> frozenset[str]:
    """Return the names under ``components.schemas``."""
    return frozenset(_schemas())


@functools.cache
def _document() -> dict[str, Any]:
    document: dict[str, Any]
    with SPEC_PATH.open("rb") as f:
        if SPEC_PATH.suffix == ".json":  # the vendored subset: a few milliseconds
            document = json.load(f)
        else:  # the full YAML spec: libyaml takes about 1 s, the pure-Python loader about 4 s
            loader: type[yaml.CSafeLoader | yaml.SafeLoader]
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            document = yaml.load(f, Loader=loader)
    components = dict(document["components"])
    components["schemas"] = {
        name: _from_nullable(schema) for name, schema in components["schemas"].items()
    }
    return {**document, "components": components}


def _schemas() -> Mapping[str, Any]:
    schemas: Mapping[str, Any] = _document()["components"]["schemas"]
    return schemas


@functools.cache
def _registry() -> Registry[Any]:
    # No $id or $anchor in the spec, so there is nothing to crawl: refs are JSON pointers.
    resource: Resource[Any] = DRAFT202012.create_resource(_document())
    registry: Registry[Any] = Registry().with_resource(SPEC_URI, resource)
    return registry


@functools.cache
def _validator(schema_name: str) -> Any:
    if schema_name not in _schemas():
        hint = ""
        if SPEC_PATH == VENDORED_SPEC:
            hint = " (the vendored subset: add it to ROOTS in tests/data/vendor_openapi.py)"
        raise KeyError(f"no schema {schema_name!r} in components.schemas of {SPEC_PATH}{hint}")
    ref = {"$ref": f"{SPEC_URI}#/components/schemas/{schema_name}"}
    # No format_checker: ``format`` stays an annotation, as JSON Schema 2020-12 defaults.
    return Draft202012Validator(ref, registry=_registry())


def _from_nullable(schema: Any) -> Any:
    """Return ``schema`` (recursively) with OpenAPI 3.0 ``nullable`` in 3.1 form."""
    if not isinstance(schema, dict):
        return schema  # a boolean schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _from_nullable(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_from_nullable(sub) for sub in value]
        elif key in _SCHEMA_ONE:
            out[key] = _from_nullable(value)
        else:
            out[key] = value
    nullable = out.pop("nullable", False)
    if nullable is not True:
        return out
    kind = out.get("type")
    if kind is None or _WRAP_IF.intersection(out):
        return {"anyOf": [out, {"type": "null"}]}
    kinds = [kind] if isinstance(kind, str) else list(kind)
    out["type"] = kinds if "null" in kinds else [*kinds, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _sort_key(error: ValidationError) -> tuple[str, str]:
    return (error.json_path, error.message)


def _describe(error: ValidationError) -> str:
    text = f"{error.json_path}: {_shorten(error.message)}"
    # anyOf / oneOf: name the branch that came closest, never the {"type": "null"} one.
    branches = [
        e for e in error.context if not (e.validator == "type" and e.validator_value == "null")
    ]
    if branches:
        closest = best_match(branches)
        text += f" (closest: {closest.json_path}: {_shorten(closest.message)})"
    return text


def _shorten(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."
