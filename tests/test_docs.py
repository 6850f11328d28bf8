"""The README's settings reference is generated from Settings and must match it."""

from __future__ import annotations

from pathlib import Path

from trio_mock._app._cli import settings_reference

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_settings_table_is_current() -> None:
    table = settings_reference()
    assert table in README.read_text(encoding="utf-8"), (
        "README's settings table is stale; regenerate it with "
        "python -c 'from trio_mock._app._cli import settings_reference; print(settings_reference())'"
    )
