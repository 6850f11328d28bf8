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

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from ._schema_check import _Checker, _nesting
from ._schema_rules import _MAX_NESTING, DEFAULT_WORDS, SchemaError
from ._schema_values import _Sampler

__all__ = ["DEFAULT_WORDS", "SchemaError", "check_schema", "sample_json", "sample_json_object"]


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
