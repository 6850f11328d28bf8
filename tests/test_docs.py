"""The README's settings reference is generated from Settings and must match it."""

from __future__ import annotations

import re
from pathlib import Path

from trio_mock._app._cli import settings_reference

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_settings_table_is_current() -> None:
    table = settings_reference()
    assert table in README.read_text(encoding="utf-8"), (
        "README's settings table is stale; regenerate it with "
        "python -c 'from trio_mock._app._cli import settings_reference; print(settings_reference())'"
    )


def test_coming_from_names_only_real_flags() -> None:
    """Every trio-mock flag the "Coming from another mock" tables name exists (a bool's
    ``--no-`` form included), so the porting guide cannot drift from the settings."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Coming from another mock", 1)[1].split("\n## ", 1)[0]
    known = set(re.findall(r"`(--[a-z0-9-]+)`", settings_reference()))
    known |= {"--no-" + flag[2:] for flag in known}
    ours = [row.rsplit("|", 2)[-2] for row in section.splitlines() if row.startswith("| ")]
    named = {flag for cell in ours for flag in re.findall(r"--[a-z0-9-]+[a-z0-9](?![-*\w])", cell)}
    assert len(named) > 40
    assert named <= known, sorted(named - known)
