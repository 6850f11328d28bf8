"""The longest chain of runtime imports inside trio_mock (type-checking imports excluded).

    python tools/import_chain.py            # e.g. "8 pytest_plugin -> testing -> ..."
    python tools/import_chain.py --max 8    # and exit 1 when it is longer (nox -s lint)

A deep stack of imports makes a module's job hard to see and a change travel far; issue 17
set the bound at 8. Uses grimp (import-linter's graph builder, in the lint group).
"""

from __future__ import annotations

import sys
from pathlib import Path

import grimp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))


def longest_chain(package: str = "trio_mock") -> list[str]:
    graph = grimp.build_graph(package, exclude_type_checking_imports=True)
    inside = [m for m in graph.modules if m.startswith(package + ".")]
    imports = {
        m: {d for d in graph.find_modules_directly_imported_by(m) if d.startswith(package + ".")}
        for m in inside
    }
    best: dict[str, list[str]] = {}

    def chain(module: str, seen: frozenset[str]) -> list[str]:
        if module in seen:
            return []
        if module not in best:
            below = [chain(d, seen | {module}) for d in imports.get(module, ())]
            best[module] = [module, *max(below, key=len, default=[])]
        return best[module]

    return max((chain(m, frozenset()) for m in inside), key=len)


if __name__ == "__main__":
    found = longest_chain()
    print(len(found), " -> ".join(m.removeprefix("trio_mock.") for m in found))
    if "--max" in sys.argv and len(found) > int(sys.argv[sys.argv.index("--max") + 1]):
        sys.exit(f"the longest import chain is {len(found)} modules, over --max")
