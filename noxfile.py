"""nox sessions: tests, lint and typecheck by default; bench on request.

nox                 # tests + lint + typecheck
nox -s tests        # the whole suite under coverage, gated (what CI runs)
nox -s tests -- -m "not slow"   # the inner loop: no subprocesses, installs, workers, browser
nox -s bench        # loopback benchmark, prints one JSON line per scenario
nox -s bench -- --quick --only resilience   # what abusive clients do (issue 15)
nox -s bench -- --quick --only capacity     # paced streams held, 1 and 2 workers (issue 16)
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
PYPROJECT = nox.project.load_toml("pyproject.toml")


@nox.session(python=None)
def tests(session: nox.Session) -> None:
    """Run pytest (pytest-trio; pacing checked on MockClock, loopback for the rest).

    With no arguments: the whole suite under coverage (src/, branches too, subprocesses
    included), failing under ``fail_under`` of ``[tool.coverage.report]``. With arguments
    (``-- -m "not slow"``, ``-- tests/test_wire.py``): plain pytest, no gate.
    """
    session.install("-e.", *nox.project.dependency_groups(PYPROJECT, "test"))
    if session.posargs:
        session.run("pytest", *session.posargs)
        return
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest")
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report")


@nox.session(python=None)
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, the layer contracts (import-linter), and the longest
    import chain (at most 8 modules, ``tools/import_chain.py``)."""
    session.install("-e.", *nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")
    session.run("python", "tools/import_chain.py", "--max", "8")


@nox.session(python=None)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src, tests and this file."""
    session.install("-e.", *nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.run("mypy", *session.posargs)


@nox.session(python=None, default=False)
def bench(session: nox.Session) -> None:
    """Loopback benchmark: the load client is bench/loadgen.py, installed here with uvloop.

    wrk and h2load are system tools: bench.py skips the phases that need a missing one and
    says so, so a fresh clone runs the rest (pace, capacity, load) with nothing beside it.
    """
    session.install("-e.", *nox.project.dependency_groups(PYPROJECT, "bench"))
    session.run("python", "bench/bench.py", *session.posargs)
