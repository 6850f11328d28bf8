"""Cut the OpenAI OpenAPI spec down to the schemas the tests validate against.

A maintenance script, run by hand (never by the tests): it reads the full ``openapi.yaml``
of ``openai/openai-openapi``, keeps the ``components.schemas`` named in ``ROOTS`` and every
schema they reach through ``$ref``, and writes them, unchanged, to
``tests/data/openai-openapi-subset.json`` (one schema a line, so an update diffs by schema).
``tests/openapi.py`` loads that file by default. Regenerate it after a spec update, or after
a test starts validating against a schema that is not in it::

    python tests/data/vendor_openapi.py path/to/openapi.yaml --commit <sha> --date YYYY-MM-DD

then update the commit and date in ``tests/data/README.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Any

import yaml

UPSTREAM = "https://github.com/openai/openai-openapi"
OUTPUT = Path(__file__).resolve().with_name("openai-openapi-subset.json")
_REF_PREFIX = "#/components/schemas/"

# The Realtime tests build their schema names as a prefix (GA or beta) plus an event's name.
_REALTIME_EVENTS = (
    "SessionCreated",
    "SessionUpdated",
    "ConversationItemCreated",
    "ConversationItemDeleted",
    "ConversationItemRetrieved",
    "ResponseCreated",
    "ResponseOutputItemAdded",
    "ResponseContentPartAdded",
    "ResponseTextDelta",
    "ResponseTextDone",
    "ResponseContentPartDone",
    "ResponseOutputItemDone",
    "ResponseDone",
    "Error",
)

# Every name a test passes to ``openapi.validate``; a name missing here fails that test
# with a KeyError naming this list.
ROOTS: tuple[str, ...] = (
    # models, errors (test_wire, test_faults, test_ratelimit, test_context_length, ...)
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
    # chat completions (test_wire, test_tools, test_scripts)
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    # legacy completions, chunks included (test_completions)
    "CreateCompletionResponse",
    # embeddings (test_embeddings_unit, test_vllm_embeddings)
    "CreateEmbeddingResponse",
    # the Responses API and its stream (test_responses, test_faults)
    "Response",
    "ResponseUsage",
    "FunctionTool",
    "ResponseStreamEvent",
    "ResponseErrorEvent",
    "ResponseCreatedEvent",
    "ResponseInProgressEvent",
    "ResponseCompletedEvent",
    "ResponseIncompleteEvent",
    "ResponseOutputItemAddedEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseContentPartAddedEvent",
    "ResponseContentPartDoneEvent",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "ResponseReasoningTextDeltaEvent",
    "ResponseReasoningTextDoneEvent",
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    # the Realtime API's server events, GA and beta (test_realtime)
    *(f"RealtimeServerEvent{event}" for event in _REALTIME_EVENTS),
    *(f"RealtimeBetaServerEvent{event}" for event in _REALTIME_EVENTS),
)


def reachable(schemas: dict[str, Any], roots: tuple[str, ...]) -> list[str]:
    """Return the names of ``roots`` and of every schema they reach through ``$ref``, sorted.

    Raises:
      KeyError: if a root, or a schema a ``$ref`` names, is not in ``schemas``.
    """
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in schemas:
            raise KeyError(f"no schema {name!r} in components.schemas")
        seen.add(name)
        todo.extend(_refs(schemas[name]))
    return sorted(seen)


def _refs(node: object) -> list[str]:
    # Any "$ref" at any depth counts: keeping a schema too many is harmless, one too few is not.
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                if not value.startswith(_REF_PREFIX):
                    raise ValueError(f"a $ref outside components.schemas: {value!r}")
                found.append(value.removeprefix(_REF_PREFIX))
            else:
                found += _refs(value)
    elif isinstance(node, list):
        for value in node:
            found += _refs(value)
    return found


def subset_text(document: dict[str, Any], *, commit: str, date: str) -> str:
    """Return the subset file's text: a minimal OpenAPI document holding the kept schemas."""
    schemas: dict[str, Any] = document["components"]["schemas"]
    names = reachable(schemas, ROOTS)
    info = document["info"]
    head = {
        "openapi": document["openapi"],
        "info": {"title": info["title"], "version": info["version"], "license": info["license"]},
        "x-vendored": {
            "from": UPSTREAM,
            "file": "openapi.yaml",
            "commit": commit,
            "date": date,
            "copyright": "Copyright (c) OpenAI; MIT licence, see tests/data/README.md",
            "regenerate": "python tests/data/vendor_openapi.py <openapi.yaml> --commit --date",
            "roots": list(ROOTS),
            "kept": f"{len(names)} of {len(schemas)} components.schemas",
        },
    }
    lines = ["{"]
    lines += [f"{json.dumps(key)}: {_dumps(value)}," for key, value in head.items()]
    lines.append('"components": {"schemas": {')
    for i, name in enumerate(names):
        comma = "," if i < len(names) - 1 else ""
        lines.append(f"{json.dumps(name)}: {_dumps(schemas[name])}{comma}")
    lines.append("}}}")
    return "\n".join(lines) + "\n"


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_yaml_scalar)


def _yaml_scalar(value: object) -> str:
    # YAML reads an unquoted 2024-10-01 as a date (one spec example has one); JSON has none.
    if isinstance(value, datetime.date):
        return value.isoformat()
    raise TypeError(f"not JSON: {value!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="the full openapi.yaml")
    parser.add_argument("--commit", required=True, help=f"the {UPSTREAM} commit it comes from")
    parser.add_argument("--date", required=True, help="that commit's date, YYYY-MM-DD")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    loader: type[yaml.CSafeLoader | yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with args.spec.open("rb") as f:
        document: dict[str, Any] = yaml.load(f, Loader=loader)
    text = subset_text(document, commit=args.commit, date=args.date)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(text.encode()):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
