"""Schema-valid JSON for tool calls and structured output (sans-IO).

Every sample is checked by ``jsonschema`` (Draft 2020-12, formats asserted), over 200 seeds.
"""

from __future__ import annotations

import datetime
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from jsonschema import (  # type: ignore[import-untyped]
    Draft4Validator,
    Draft7Validator,
    Draft202012Validator,
    FormatChecker,
)

from trio_mock._sim._schema_check import check_schema
from trio_mock._sim._schema_rules import DEFAULT_WORDS, SchemaError
from trio_mock._sim._schema_values import sample_json as sample_checked, sample_json_object

SEEDS = range(200)


def sample_json(schema: Any, rng: np.random.Generator, words: Sequence[str] = DEFAULT_WORDS) -> Any:
    """Check, then sample, as the server does."""
    check_schema(schema)
    return sample_checked(schema, rng, words)


# jsonschema checks date, email, ipv4 and uuid itself; the rest need optional packages.
FORMATS = FormatChecker(formats=["date", "email", "ipv4", "ipv6", "uuid", "regex"])
_RFC3339 = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"
_HOSTNAME = (
    r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
)


def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return re.fullmatch(_RFC3339, value) is not None and bool(
        datetime.datetime.fromisoformat(value)
    )


def _is_time(value: object) -> bool:
    return _is_date_time(f"2024-01-01T{value}") if isinstance(value, str) else True


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urllib.parse.urlsplit(value)
    return bool(parts.scheme and parts.netloc) and " " not in value


def _is_hostname(value: object) -> bool:
    return not isinstance(value, str) or re.fullmatch(_HOSTNAME, value, re.IGNORECASE) is not None


for _name, _check in (
    ("date-time", _is_date_time),
    ("time", _is_time),
    ("uri", _is_uri),
    ("hostname", _is_hostname),
):
    FORMATS.checks(_name, raises=ValueError)(_check)


def samples(schema: Mapping[str, Any], seeds: range = SEEDS) -> list[Any]:
    return [sample_json(schema, np.random.default_rng(seed)) for seed in seeds]


def assert_all_valid(
    schema: Mapping[str, Any], *, validator: Any = Draft202012Validator, seeds: range = SEEDS
) -> list[Any]:
    """Sample ``schema`` once per seed and validate every value; return the values."""
    checker = validator(schema, format_checker=FORMATS)
    values = samples(schema, seeds)
    for seed, value in zip(seeds, values, strict=True):
        error = next(iter(checker.iter_errors(value)), None)
        assert error is None, f"seed {seed}: {value!r}: {error.message} at {list(error.path)}"
    return values


WEATHER = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "City and country, e.g. Paris, France"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
    },
    "required": ["location", "unit"],
    "additionalProperties": False,
}

TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["name", "children"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}

# Strict mode as OpenAI documents it: everything required, optional means "or null".
STRICT_ORDER = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
        "items": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "sku": {"type": "string", "format": "uuid"},
                    "quantity": {"type": "integer", "minimum": 1},
                    "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000},
                    "note": {"type": ["string", "null"]},
                },
                "required": ["sku", "quantity", "price", "note"],
                "additionalProperties": False,
            },
        },
        "shipping": {
            "anyOf": [
                {"$ref": "#/definitions/address"},
                {"type": "null"},
            ]
        },
        "placed_at": {"type": "string", "format": "date-time"},
    },
    "required": ["order_id", "items", "shipping", "placed_at"],
    "additionalProperties": False,
    "definitions": {
        "address": {
            "type": "object",
            "properties": {
                "street": {"type": "string", "minLength": 3, "maxLength": 40},
                "city": {"type": "string"},
                "zip": {"type": "string", "pattern": "^\\d{5}(-\\d{4})?$"},
                "country": {"const": "US"},
            },
            "required": ["street", "city", "zip", "country"],
            "additionalProperties": False,
        }
    },
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "weather tool": WEATHER,
    "strict order": STRICT_ORDER,
    "recursive tree": TREE,
    "nested objects and arrays of objects": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
                    "address": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}, "zip": {"type": "string"}},
                        "required": ["city"],
                    },
                },
                "required": ["name", "address"],
            },
            "events": {
                "type": "array",
                "minItems": 2,
                "items": {
                    "type": "object",
                    "properties": {
                        "kind": {"enum": ["click", "view", "buy"]},
                        "at": {"type": "string", "format": "date-time"},
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                    "required": ["kind", "at", "score"],
                },
            },
        },
        "required": ["user", "events"],
    },
    "no type keyword": {
        "properties": {"a": {"minLength": 2}, "b": {"items": {"type": "boolean"}}},
        "required": ["a", "b"],
    },
    "type list": {"type": ["integer", "string", "null"], "minimum": 5, "maxLength": 3},
    "const and enum": {
        "type": "object",
        "properties": {
            "version": {"const": 2},
            "mode": {"enum": ["fast", 3, None, True, {"k": [1]}]},
            "level": {"type": "string", "enum": ["low", "high", 7]},
        },
        "required": ["version", "mode", "level"],
    },
    "additionalProperties schema and minProperties": {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "additionalProperties": {"type": "boolean"},
        "minProperties": 4,
        "maxProperties": 5,
    },
    "closed object with minProperties": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "null"}},
        "additionalProperties": False,
        "minProperties": 2,
    },
    "patternProperties": {
        "type": "object",
        "patternProperties": {"^x-[a-z]+$": {"type": "integer", "maximum": -10}},
        "additionalProperties": False,
        "minProperties": 2,
    },
    "prefixItems with closed tail": {
        "type": "array",
        "prefixItems": [{"type": "string", "format": "email"}, {"type": "integer"}],
        "items": False,
        "minItems": 1,
    },
    "unique items": {
        "type": "array",
        "items": {"type": "integer", "minimum": 0, "maximum": 5},
        "uniqueItems": True,
        "minItems": 3,
        "maxItems": 6,
    },
    "unique enum items": {
        "type": "array",
        "items": {"enum": ["a", "b", "c"]},
        "uniqueItems": True,
        "minItems": 2,
        "maxItems": 8,
    },
    "unique booleans": {
        "type": "array",
        "items": {"type": "boolean"},
        "uniqueItems": True,
        "maxItems": 10,
    },
    "string lengths": {
        "type": "array",
        "prefixItems": [
            {"type": "string", "minLength": 30},
            {"type": "string", "maxLength": 3},
            {"type": "string", "minLength": 5, "maxLength": 5},
            {"type": "string", "minLength": 0, "maxLength": 0},
        ],
        "minItems": 4,
    },
    "patterns": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
            "email": {"type": "string", "pattern": "^\\w+@example\\.com$"},
            "hex": {"type": "string", "pattern": "^(0x)?[0-9a-f]{2,8}$"},
            "choice": {"type": "string", "pattern": "^(?:red|green|blue)(-[a-z]+)*$"},
            "phone": {"type": "string", "pattern": "^\\+?[1-9]\\d{1,14}$"},
            "negated": {"type": "string", "pattern": "^[^aeiou\\s]{4}\\.txt$"},
            "escapes": {"type": "string", "pattern": "^[\\u0041-\\u005A]{2}\\x2d\\t?$"},
            "unanchored": {"type": "string", "pattern": "id_\\d+"},
            "short": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 2},
        },
        "required": "code email hex choice phone negated escapes unanchored short".split(),
    },
    "formats": {
        "type": "object",
        "properties": {
            name: {"type": "string", "format": name}
            for name in ("date-time", "date", "time", "email", "uri", "uuid", "ipv4", "hostname")
        }
        | {
            "url": {"type": "string", "format": "url"},
            "ipv6": {"type": "string", "format": "ipv6"},
        },
        "required": [
            "date-time",
            "date",
            "time",
            "email",
            "uri",
            "uuid",
            "ipv4",
            "hostname",
            "url",
            "ipv6",
        ],
    },
    "numeric bounds": {
        "type": "array",
        "prefixItems": [
            {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3},
            {"type": "integer", "minimum": 0.5, "maximum": 1.5},
            {"type": "number", "multipleOf": 0.5, "minimum": -2, "maximum": 2},
            {"type": "integer", "multipleOf": 7, "exclusiveMinimum": 7, "maximum": 30},
            {"type": "number", "multipleOf": 0.1},
            {"type": "integer", "multipleOf": 2.5},
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.001},
            {"type": "integer", "minimum": 1000000, "maximum": 1000000},
            {"type": "number", "maximum": -1e12},
            {"type": "integer", "minimum": 9007199254740993},
            {"type": "number", "minimum": 1e-9, "maximum": 2e-9},
            {"type": "integer", "minimum": 0, "maximum": 0},
            {"type": "integer", "maximum": 0, "multipleOf": 3},
            {"type": "number", "multipleOf": 1, "minimum": 1e20},
        ],
        "minItems": 14,
    },
    "anyOf with null": {"anyOf": [{"type": "string", "maxLength": 10}, {"type": "null"}]},
    "oneOf overlapping types": {"oneOf": [{"type": "number"}, {"type": "integer"}]},
    "oneOf discriminated": {
        "oneOf": [
            {
                "type": "object",
                "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}},
                "required": ["kind", "r"],
            },
            {
                "type": "object",
                "properties": {"kind": {"const": "square"}, "side": {"type": "number"}},
                "required": ["kind", "side"],
            },
        ]
    },
    "oneOf beside allOf": {
        "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
        "allOf": [{"oneOf": [{"required": ["c"]}, {"required": ["d"]}]}],
        "type": "object",
        "properties": {n: {"type": "integer"} for n in "abcd"},
        "additionalProperties": False,
    },
    "allOf merges objects and bounds": {
        "allOf": [
            {
                "type": "object",
                "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 100}},
                "required": ["a"],
            },
            {
                "properties": {"a": {"minimum": 50}, "b": {"type": "string"}},
                "required": ["b"],
            },
            {"$ref": "#/$defs/stamped"},
        ],
        "$defs": {
            "stamped": {
                "properties": {"at": {"type": "string", "format": "date"}},
                "required": ["at"],
            }
        },
    },
    "$ref with siblings and pointer escapes": {
        "$defs": {"a/b": {"type": "integer", "minimum": 10}, "c~d": {"type": "string"}},
        "type": "object",
        "properties": {
            "n": {"$ref": "#/$defs/a~1b", "maximum": 12},
            "s": {"$ref": "#/$defs/c~0d"},
        },
        "required": ["n", "s"],
    },
    "recursive anyOf linked list": {
        "$defs": {
            "list": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {
                            "head": {"type": "integer"},
                            "tail": {"$ref": "#/$defs/list"},
                        },
                        "required": ["head", "tail"],
                    },
                    {"type": "null"},
                ]
            }
        },
        "$ref": "#/$defs/list",
    },
    "empty and true subschemas": {
        "type": "object",
        "properties": {"any": {}, "yes": True, "items": {"type": "array", "items": True}},
        "required": ["any", "yes", "items"],
    },
    "forbidden optional property": {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": False},
        "required": ["a"],
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("schema", SCHEMAS.values(), ids=SCHEMAS.keys())
def test_every_sample_is_valid(schema: dict[str, Any]) -> None:
    values = assert_all_valid(schema)
    assert len({repr(v) for v in values}) > 1, "200 seeds gave one value"


def test_weather_tool_arguments_look_like_a_model_wrote_them() -> None:
    values = assert_all_valid(WEATHER)
    assert all(list(v)[:2] == ["location", "unit"] for v in values)  # properties order
    assert {v["unit"] for v in values} == {"celsius", "fahrenheit"}
    with_days = sum("days" in v for v in values)
    assert 50 < with_days < 150  # optional: present about half the time
    assert {v["days"] for v in values if "days" in v} <= set(range(1, 15))
    for value in values:
        words = value["location"].split(" ")
        assert 1 <= len(words) <= 4
        assert set(words) <= set(DEFAULT_WORDS)


def test_same_seed_gives_the_same_value_and_seeds_differ() -> None:
    for schema in SCHEMAS.values():
        first, again = samples(schema, range(5)), samples(schema, range(5))
        assert first == again
    assert len({repr(v) for v in samples(STRICT_ORDER, range(20))}) == 20


def test_words_feed_the_strings() -> None:
    value = sample_json({"type": "string"}, np.random.default_rng(1), words=["zork"])
    assert set(value.split(" ")) == {"zork"}


def test_recursion_is_bounded() -> None:
    def depth(node: dict[str, Any]) -> int:
        return 1 + max((depth(child) for child in node["children"]), default=0)

    depths = [depth(v) for v in samples(TREE)]
    assert max(depths) <= 5
    assert max(depths) >= 3


def test_strict_order_fields() -> None:
    values = samples(STRICT_ORDER)  # validated in test_every_sample_is_valid
    assert all(list(v) == ["order_id", "items", "shipping", "placed_at"] for v in values)
    shipping = [v["shipping"] for v in values]
    assert any(s is None for s in shipping)
    assert any(isinstance(s, dict) and s["country"] == "US" for s in shipping)
    notes = [item["note"] for v in values for item in v["items"]]
    assert None in notes
    assert any(isinstance(note, str) for note in notes)


def test_patterns_are_generated_not_just_checked() -> None:
    values = samples(SCHEMAS["patterns"])
    assert len({v["code"] for v in values}) > 150
    assert any(v["hex"].startswith("0x") for v in values)
    assert {v["choice"].split("-")[0] for v in values} == {"red", "green", "blue"}


def test_a_pattern_beyond_the_generator_falls_back_to_words() -> None:
    schema = {"type": "string", "pattern": "^(?=.*[0-9])(?=.*[A-Z])\\w{8}$"}
    assert all(set(v.split(" ")) <= set(DEFAULT_WORDS) for v in samples(schema, range(20)))


def test_numbers_are_nice_and_respect_the_bounds() -> None:
    values = samples(SCHEMAS["numeric bounds"])
    assert {v[0] for v in values} == {1, 2}
    assert {v[1] for v in values} == {1}
    assert {v[2] for v in values} <= {x / 2 for x in range(-4, 5)}
    assert {v[3] for v in values} <= {14, 21, 28}
    assert all(isinstance(v[0], int) and not isinstance(v[0], bool) for v in values)
    assert all(v[9] >= 9007199254740993 and isinstance(v[9], int) for v in values)
    assert {v[11] for v in values} == {0}
    assert all(v[12] <= 0 and v[12] % 3 == 0 for v in values)
    plain = samples({"type": "number", "minimum": -50, "maximum": 50})
    assert all(round(x, 2) == x for x in plain)
    assert any(x != int(x) for x in plain)


def test_draft4_boolean_exclusive_bounds() -> None:
    schema = {
        "type": "integer",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 3,
        "exclusiveMaximum": True,
    }
    assert set(assert_all_valid(schema, validator=Draft4Validator)) == {1, 2}
    loose = {"type": "number", "minimum": 0, "exclusiveMinimum": False, "maximum": 0}
    assert set(assert_all_valid(loose, validator=Draft4Validator)) == {0}


def test_draft7_tuple_items() -> None:
    schema = {
        "type": "array",
        "items": [{"type": "boolean"}, {"type": "null"}],
        "additionalItems": {"type": "string", "maxLength": 4},
        "minItems": 3,
        "maxItems": 4,
    }
    values = assert_all_valid(schema, validator=Draft7Validator)
    assert all(isinstance(v[0], bool) and v[1] is None and isinstance(v[2], str) for v in values)


def test_unique_items_cap_lengths_at_the_distinct_values() -> None:
    assert all(len(v) <= 3 for v in assert_all_valid(SCHEMAS["unique enum items"]))
    assert all(len(v) <= 2 for v in assert_all_valid(SCHEMAS["unique booleans"]))
    assert all(len(v) == 3 for v in assert_all_valid(SCHEMAS["unique items"]))  # 1-3, >= 3


def test_min_properties_adds_optional_properties_then_extra_keys() -> None:
    closed = assert_all_valid(SCHEMAS["closed object with minProperties"])
    assert all(set(v) <= {"a", "b", "c"} for v in closed)
    opened = assert_all_valid(SCHEMAS["additionalProperties schema and minProperties"])
    assert all(4 <= len(v) <= 5 for v in opened)
    assert all(isinstance(x, bool) for v in opened for k, x in v.items() if k != "id")
    # without minProperties no extra key is ever invented
    plain = samples({"type": "object", "additionalProperties": {"type": "integer"}}, range(20))
    assert plain == [{}] * 20


def test_optional_properties_are_sometimes_present() -> None:
    schema = {"type": "object", "properties": {k: {"type": "integer"} for k in "abc"}}
    values = assert_all_valid(schema)
    for key in "abc":
        assert 40 < sum(key in v for v in values) < 160
    assert {} in values
    assert all(list(v) == sorted(v) for v in values)  # properties order


def test_not_is_avoided() -> None:
    pair = {"type": "integer"}
    schema = {"properties": {"a": pair, "b": pair}, "not": {"required": ["a", "b"]}}
    values = assert_all_valid(schema)
    assert any("a" in v for v in values)
    assert any("b" in v for v in values)
    assert set(assert_all_valid({"enum": ["x", "y", "z"], "not": {"const": "y"}})) == {"x", "z"}
    thirds = {"type": "integer", "minimum": 0, "maximum": 9, "not": {"multipleOf": 3}}
    assert set(assert_all_valid(thirds)) == {1, 2, 4, 5, 7, 8}


def test_branches_must_agree_with_the_type_beside_them() -> None:
    auto_or_config = {
        "type": "object",
        "oneOf": [
            {"type": "string", "enum": ["auto"]},
            {"properties": {"threshold": {"type": "number"}}, "required": ["threshold"]},
        ],
    }
    assert all(isinstance(v, dict) for v in assert_all_valid(auto_or_config))
    # allOf is merged before the anyOf branch is picked, so its type rules out null
    schema = {"allOf": [{"anyOf": [{"type": "null"}, {"type": "integer"}]}, {"type": "integer"}]}
    assert all(isinstance(v, int) for v in assert_all_valid(schema))


def test_schemas_without_finite_instances_still_return() -> None:
    forever = {
        "$defs": {"n": {"properties": {"next": {"$ref": "#/$defs/n"}}, "required": ["next"]}},
        "$ref": "#/$defs/n",
    }
    value, levels = sample_json(forever, np.random.default_rng(0)), 0
    while isinstance(value, dict):
        value, levels = value["next"], levels + 1
    assert value is None
    assert 10 < levels < 30
    huge = {"type": "array", "minItems": 1000, "items": {"$ref": "#/$defs/row"}}
    huge["$defs"] = {"row": {"type": "array", "minItems": 1000, "items": {"minLength": 1000}}}
    rows = sample_json(huge, np.random.default_rng(0))
    assert sum(len(s) for row in rows for s in row) < 10_000_000  # the work budget held


def test_any_of_with_null_gives_both() -> None:
    values = assert_all_valid(SCHEMAS["anyOf with null"])
    assert None in values
    assert any(isinstance(v, str) for v in values)


def test_one_of_avoids_values_that_match_two_branches() -> None:
    values = assert_all_valid(SCHEMAS["oneOf overlapping types"])
    assert all(isinstance(v, float) and not v.is_integer() for v in values)
    shapes = assert_all_valid(SCHEMAS["oneOf discriminated"])
    assert {v["kind"] for v in shapes} == {"circle", "square"}


def test_all_of_intersects_bounds_and_unions_required() -> None:
    values = assert_all_valid(SCHEMAS["allOf merges objects and bounds"])
    assert all(50 <= v["a"] <= 100 and {"a", "b", "at"} <= set(v) for v in values)


def test_nullable_is_an_allowed_null() -> None:
    schema = {"type": "string", "nullable": True, "minLength": 2}
    values = samples(schema)
    assert None in values
    assert all(v is None or (isinstance(v, str) and len(v) >= 2) for v in values)
    ref = {"$defs": {"a": {"type": "integer"}}, "allOf": [{"$ref": "#/$defs/a"}], "nullable": True}
    assert {type(v) for v in samples(ref)} == {int, type(None)}


def test_empty_schema_is_a_short_string() -> None:
    values = samples({})
    assert all(isinstance(v, str) and 0 < len(v) < 60 for v in values)


def test_json_object_mode() -> None:
    values = [sample_json_object(np.random.default_rng(seed)) for seed in SEEDS]
    assert all(2 <= len(v) <= 4 for v in values)
    assert all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)?", k) for v in values for k in v)
    kinds = {type(x) for v in values for x in v.values()}
    assert kinds == {str, int, float, bool, list}
    again = [sample_json_object(np.random.default_rng(seed)) for seed in SEEDS]
    assert again == values


def _deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([], "schema: must be a JSON object"),
        (
            {"type": "object", "properties": {"city": {"type": "strng"}}},
            "schema.properties.city.type: unknown type 'strng'",
        ),
        ({"type": ["string", 3]}, "schema.type: must be a type name"),
        ({"properties": []}, "schema.properties: must be an object"),
        ({"required": "a"}, "schema.required: must be a list of property names"),
        ({"items": {"enum": []}}, "schema.items.enum: must be a non-empty list"),
        ({"$ref": "#/$defs/missing"}, "schema.$ref: cannot resolve '#/$defs/missing'"),
        ({"$ref": "https://example.com/s.json"}, "schema.$ref: cannot resolve"),
        (
            {
                "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                "$ref": "#/$defs/a",
            },
            "circular $ref",
        ),
        (
            {"properties": {"n": {"minimum": 5, "maximum": 3}}},
            "schema.properties.n: minimum 5 > maximum 3",
        ),
        ({"exclusiveMinimum": 3, "maximum": 3}, "schema: an exclusive bound at 3 leaves no"),
        ({"minimum": 3, "exclusiveMinimum": True, "maximum": 3}, "exclusive bound at 3"),
        ({"type": "object", "maxProperties": 1, "required": ["a", "b"]}, "2 required >"),
        (
            {"properties": {"a": {}}, "additionalProperties": False, "minProperties": 2},
            "schema: minProperties > the 1 properties allowed",
        ),
        ({"prefixItems": [{}], "items": False, "minItems": 2}, "minItems > the 1 items"),
        ({"anyOf": [{"minItems": 4, "maxItems": 2}]}, "schema.anyOf[0]: minItems 4 > maxItems 2"),
        ({"minLength": 9, "maxLength": 2}, "schema: minLength 9 > maxLength 2"),
        ({"type": "integer", "minimum": 1.2, "maximum": 1.8}, "schema: no integer lies"),
        ({"type": "integer", "multipleOf": 5, "minimum": 1, "maximum": 4}, "no multiple of 5"),
        ({"multipleOf": 0}, "schema.multipleOf: must be greater than 0"),
        ({"type": "integer", "minimum": 2**63}, "schema: integers beyond 64 bits"),
        ({"minimum": "1"}, "schema.minimum: must be a number"),
        ({"minItems": -1}, "schema.minItems: must be a non-negative integer"),
        ({"minLength": 10**7}, "schema.minLength: 10000000 is more than trio-mock builds"),
        ({"pattern": "(unclosed"}, "schema: invalid pattern '(unclosed'"),
        ({"anyOf": []}, "schema.anyOf: must be a non-empty list of schemas"),
        ({"properties": {"a": False}, "required": ["a"]}, "schema.properties.a: required"),
        (
            {"properties": {"a": {}}, "required": ["b"], "additionalProperties": False},
            "schema.required: 'b' is not in properties and additionalProperties is false",
        ),
        ({"allOf": [False]}, "schema.allOf[0]: the schema false accepts no value"),
        ({"items": 3}, "schema.items: a schema must be an object or a boolean"),
        ({"nullable": "yes"}, "schema.nullable: must be true or false"),
        ({"$defs": {"x": {"type": "strng"}}}, "schema.$defs.x.type: unknown type 'strng'"),
        ({"const": _deep(150)}, "schema: nested more than 100 levels deep"),
    ],
)
def test_check_schema_names_the_path(schema: Any, message: str) -> None:
    with pytest.raises(SchemaError, match=re.escape(message)):
        check_schema(schema)
    with pytest.raises(SchemaError):
        sample_json(schema, np.random.default_rng(0))


def test_schema_error_is_a_value_error() -> None:
    assert issubclass(SchemaError, ValueError)


# --- fuzzing ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

KEYWORDS = [
    "type", "properties", "required", "items", "prefixItems", "enum", "const", "anyOf", "oneOf",
    "allOf", "$ref", "$defs", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", "minLength", "maxLength", "pattern", "format", "minItems", "maxItems",
    "uniqueItems", "additionalProperties", "minProperties", "maxProperties", "nullable",
    "patternProperties", "additionalItems", "not", "definitions",
]  # fmt: skip
keyword_values = (
    st.sampled_from(["string", "integer", "number", "object", "array", "null", "boolean", "strng"])
    | st.lists(st.sampled_from(["string", "integer", "null", "object"]), max_size=3)
    | st.integers(-3, 12)
    | st.sampled_from([0.5, 0.1, 2.5, -1.5, 1e300, True, False, None])
    | st.sampled_from(["#", "#/$defs/a", "#/definitions/a", "#/properties/a", "#/nope"])
    | st.sampled_from(["^[a-z]{2,4}$", "^\\d+$", "(x", "a|b", "date-time", "email", "uuid"])
    | st.lists(st.sampled_from(["a", "b", 1, None]), max_size=3)
)


def schema_like(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    names = st.sampled_from(["a", "b", "c"])
    return st.dictionaries(
        st.sampled_from(KEYWORDS),
        keyword_values
        | children
        | st.lists(children, max_size=3)
        | st.dictionaries(names, children, max_size=3),
        max_size=5,
    )


schemas: st.SearchStrategy[Any] = st.recursive(
    st.booleans() | st.just({}), schema_like, max_leaves=12
)

PATTERNS = [
    "^[A-Z]{3}-\\d{4}$",
    "^\\w+@example\\.com$",
    "^(ab|cd)?[0-9]{1,3}$",
    "x+y*",
    "^[^,]{2}$",
]
FORMAT_NAMES = ["date-time", "date", "time", "email", "uri", "uuid", "ipv4", "hostname"]
bounds = st.integers(-60, 60) | st.floats(-60, 60).map(lambda x: round(x, 2))


@st.composite
def scalar_schemas(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["string", "integer", "number", "boolean", "null", "enum"]))
    if kind == "string":
        low = draw(st.integers(0, 8))
        return draw(
            st.sampled_from(
                [
                    {"type": "string"},
                    {
                        "type": "string",
                        "minLength": low,
                        "maxLength": low + draw(st.integers(0, 8)),
                    },
                    {"type": "string", "pattern": draw(st.sampled_from(PATTERNS))},
                    {"type": "string", "format": draw(st.sampled_from(FORMAT_NAMES))},
                ]
            )
        )
    if kind in {"integer", "number"}:
        out: dict[str, Any] = {"type": kind}
        for key in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
            if draw(st.booleans()):
                out[key] = draw(bounds)
        if draw(st.booleans()):
            out["multipleOf"] = draw(st.sampled_from([1, 2, 7, 0.5, 0.25, 0.1, 2.5]))
        return out
    if kind == "enum":
        return {"enum": draw(st.lists(st.sampled_from(["a", 1, None, True, 2.5, [1]]), min_size=1))}
    return {"type": kind, "nullable": False}


def container_schemas(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    def objects(draw: st.DrawFn, names: str, *, may_close: bool) -> dict[str, Any]:
        props = draw(st.dictionaries(st.sampled_from(names), children, max_size=len(names)))
        required = draw(st.lists(st.sampled_from(sorted(props) or [names[0]]), unique=True))
        out: dict[str, Any] = {"type": "object", "properties": props, "required": required}
        if may_close and draw(st.booleans()):
            out["additionalProperties"] = False
        if draw(st.booleans()):
            out["minProperties"] = draw(st.integers(0, len(props | dict.fromkeys(required))))
        return out

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out: dict[str, Any]
        kind = draw(st.sampled_from(["object", "array", "anyOf", "oneOf", "allOf"]))
        if kind == "object":
            return objects(draw, "abcd", may_close=True)
        if kind == "allOf":  # disjoint halves, so the merge is satisfiable
            return {
                "allOf": [
                    objects(draw, "ab", may_close=False),
                    objects(draw, "cd", may_close=False),
                ]
            }
        if kind == "array":
            low = draw(st.integers(0, 3))
            out = {"type": "array", "items": draw(children), "minItems": low}
            if draw(st.booleans()):
                out["maxItems"] = low + draw(st.integers(0, 3))
            if low <= 1 and draw(st.booleans()):
                out["uniqueItems"] = True
            return out
        if kind == "anyOf":
            return {"anyOf": draw(st.lists(children, min_size=1, max_size=3))}
        kinds = draw(
            st.lists(
                st.sampled_from(["string", "boolean", "null", "integer", "array"]),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
        return {"oneOf": [{"type": k} for k in kinds]}

    return build()


well_formed = st.recursive(scalar_schemas(), container_schemas, max_leaves=8)
well_formed |= well_formed.map(lambda s: {"$defs": {"x": s}, "$ref": "#/$defs/x"})
fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@fuzz
@given(schema=json_values)
def test_any_json_is_accepted_or_a_schema_error(schema: Any) -> None:
    try:
        check_schema(schema)
    except SchemaError:
        return
    json.dumps(sample_json(schema, np.random.default_rng(0)), allow_nan=False)


@pytest.mark.slow
@fuzz
@given(schema=schemas.filter(lambda s: isinstance(s, dict)), seed=st.integers(0, 2**32))
def test_schema_shaped_json_is_sampled_without_crashing(schema: dict[str, Any], seed: int) -> None:
    try:
        check_schema(schema)
    except SchemaError as error:
        message = str(error)
    else:
        message = ""
    if message:
        assert message.startswith("schema")
        return
    value = sample_json(schema, np.random.default_rng(seed))
    assert json.dumps(value, allow_nan=False) == json.dumps(
        sample_json(schema, np.random.default_rng(seed))
    )


@pytest.mark.slow
@fuzz
@given(schema=well_formed, seed=st.integers(0, 2**32 - 1))
def test_well_formed_schemas_give_valid_values(schema: dict[str, Any], seed: int) -> None:
    try:
        check_schema(schema)
    except SchemaError:
        return  # e.g. no multiple of 7 between the drawn bounds
    value = sample_json(schema, np.random.default_rng(seed))
    errors = list(Draft202012Validator(schema, format_checker=FORMATS).iter_errors(value))
    assert not errors, f"{value!r}: {errors[0].message}"
