"""The one cattrs converter: JSON-decoded request bodies to ``_protocol`` models.

Strict where the API is strict: ``"5"`` is not an integer and ``"false"`` is not a boolean
(cattrs' defaults would coerce both). A shape error becomes a 400 whose ``param`` is the
field's path, e.g. ``messages[0].role``.
"""

from __future__ import annotations

import logging
import re
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import cattrs
import cattrs.cols
import cattrs.gen
import cattrs.preconf.json
import cattrs.v
import orjson

from ._errors import OpenAIError, invalid
from ._protocol import ContentPart

log = logging.getLogger("trio_mock")
T = TypeVar("T")

converter = cattrs.preconf.json.make_converter()


def _strict(kind: type, *accepted: type) -> None:
    def structure(value: Any, _: type) -> Any:
        if isinstance(value, accepted) and not (kind is not bool and isinstance(value, bool)):
            return kind(value)
        raise TypeError(f"expected {kind.__name__}")

    converter.register_structure_hook(kind, structure)


_strict(int, int)
_strict(float, int, float)
_strict(bool, bool)
_strict(str, str)


def _structure_content(value: Any, _: Any) -> str | list[ContentPart] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        return converter.structure(value, list[ContentPart])
    raise TypeError("expected a string or an array of content parts")


def _structure_stop(value: Any, _: Any) -> str | list[str] | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise TypeError("expected a string or an array of strings")


def _objects_only(cls: type) -> Any:
    build: Callable[[Any, type], Any] = cattrs.gen.make_dict_structure_fn(cls, converter)

    def structure(value: Any, _: type) -> Any:
        if not isinstance(value, dict):
            raise TypeError("expected object")
        return build(value, cls)

    return structure


def _arrays_only(tp: Any) -> Any:
    build = cattrs.cols.list_structure_factory(tp, converter)

    def structure(value: Any, _: type) -> Any:
        if not isinstance(value, list):
            raise TypeError("expected array")
        return build(value, tp)

    return structure


converter.register_structure_hook_factory(attrs.has, _objects_only)


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) is list


converter.register_structure_hook_factory(_is_list, _arrays_only)
# Predicate hooks: the preconf converter's own handler for unions with ``str`` would win over
# hooks registered by type.
CONTENT = str | list[ContentPart] | None
STOP = str | list[str] | None
converter.register_structure_hook_func(lambda tp: tp == CONTENT, _structure_content)
converter.register_structure_hook_func(lambda tp: tp == STOP, _structure_stop)


def parse_json(body: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)"
        ) from None
    if not isinstance(data, dict):
        raise invalid("The request body must be a JSON object.")
    return data


def structure(data: dict[str, Any], cls: type[T]) -> T:
    """Build ``cls`` from decoded JSON or raise a 400 naming the offending field."""
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as error:
        raise shape_error(error, data) from None


JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
}
EXPECTED_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "str": "a string",
    "object": "an object",
    "array": "an array",
}
NOT_IN_LITERAL = re.compile(r"not in literal typing\.Literal\[(.*)\]")


def shape_error(error: cattrs.BaseValidationError, data: dict[str, Any]) -> OpenAIError:
    """Turn cattrs' first complaint into OpenAI's wording, with the field path as ``param``."""
    first = cattrs.transform_error(error, path="$", format_exception=describe_problem)[0]
    problem, _, where = first.rpartition(" @ ")
    param = where.removeprefix("$").removeprefix(".") or None
    if problem.startswith("required field missing"):
        return invalid(
            f"Missing required parameter: '{param}'.", param, "missing_required_parameter"
        )
    got = JSON_TYPES.get(type(value_at(data, where)), "another type")
    if problem.startswith("expected "):
        wanted = problem.removeprefix("expected ")
        wanted = EXPECTED_NAMES.get(wanted, wanted)
        return invalid(
            f"Invalid type for '{param}': expected {wanted}, but got {got} instead.",
            param,
            "invalid_type",
        )
    if choices := NOT_IN_LITERAL.search(problem):
        value = value_at(data, where)
        return invalid(
            f"Invalid value: {value!r}. Supported values are: {choices.group(1)}.",
            param,
            "invalid_value",
        )
    if param is None:
        return invalid(f"Invalid value: {problem}.", None, "invalid_value")
    return invalid(f"Invalid value for '{param}': {problem}.", param, "invalid_value")


def describe_problem(exc: BaseException, tp: Any) -> str:
    """Our hooks' own words ("expected int") where they raised; cattrs' elsewhere."""
    if isinstance(exc, TypeError) and str(exc).startswith("expected "):
        return str(exc)
    return cattrs.v.format_exception(exc, tp)


def value_at(data: Any, where: str) -> Any:
    """The value at a cattrs path like ``$.messages[0].role`` (None if absent)."""
    for key, index in re.findall(r"\.(\w+)|\[(\d+)\]", where):
        try:
            data = data[key] if key else data[int(index)]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def content_text(content: Any) -> str:
    """Text out of a string, a list of strings, or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            p if isinstance(p, str) else p.get("text", "") if isinstance(p, dict) else ""
            for p in content
        ]
        return " ".join(p for p in parts if isinstance(p, str) and p)
    return ""
