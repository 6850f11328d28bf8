"""The one cattrs converter: JSON-decoded request bodies to ``_protocol`` models.

Strict where the API is strict: ``"5"`` is not an integer and ``"false"`` is not a boolean
(cattrs' defaults would coerce both). A shape error becomes a 400 whose ``param`` is the
field's path, e.g. ``messages[0].role``.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import cattrs
import cattrs.preconf.json
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


converter.register_structure_hook(str | list[ContentPart] | None, _structure_content)
converter.register_structure_hook(str | list[str] | None, _structure_stop)


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
        raise shape_error(error) from None


def shape_error(error: cattrs.BaseValidationError) -> OpenAIError:
    """Turn cattrs' first complaint into OpenAI's wording, with the field path as ``param``."""
    first = cattrs.transform_error(error, path="$")[0]
    problem, _, where = first.rpartition(" @ ")
    param = where.removeprefix("$").removeprefix(".") or None
    if problem.startswith("required field missing"):
        return invalid(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    return invalid(f"Invalid type for '{param}': {problem}.", param, "invalid_type")
