"""nox sessions: tests, lint and typecheck by default; bench on request.

nox                 # tests + lint + typecheck
nox -s tests        # the test suite (what CI runs)
nox -s bench        # loopback benchmark, prints one JSON line per scenario
nox -s bench -- --quick --only resilience   # what abusive clients do (issue 15)
"""

from __future__ import annotations

import shutil

import nox

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
PYPROJECT = nox.project.load_toml("pyproject.toml")


@nox.session(python=None)
def tests(session: nox.Session) -> None:
    """Run pytest (pytest-trio; pacing checked on MockClock, loopback for the rest)."""
    session.install("-e.", *nox.project.dependency_groups(PYPROJECT, "test"))
    session.run("pytest", *session.posargs)


@nox.session(python=None)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=None)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src, tests and this file."""
    session.install("-e.", *nox.project.dependency_groups(PYPROJECT, "typecheck"))
    session.run("mypy", *session.posargs)


BENCH_TOOLS = {"wrk": "wrk", "h2load": "nghttp2-client"}  # tool: the Debian package that has it


@nox.session(python=None, default=False)
def bench(session: nox.Session) -> None:
    """Loopback benchmark with bench/'s load tools (needs wrk and h2load; bounded in time)."""
    missing = [tool for tool in BENCH_TOOLS if shutil.which(tool) is None]
    if missing and not any(arg.startswith("--only") for arg in session.posargs):
        packages = " ".join(BENCH_TOOLS[tool] for tool in missing)
        session.error(
            f"nox -s bench needs {' and '.join(missing)} on PATH (Debian: apt-get install "
            f"{packages}); --only picks phases that need less"
        )
    session.install("-e.", *nox.project.dependency_groups(PYPROJECT, "bench"))
    session.run("python", "bench/bench.py", *session.posargs)
