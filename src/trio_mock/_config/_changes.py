"""The check a runtime config change passes, in one process or in the supervisor.

Pure over ``Settings``: ``Live`` (``_app._runtime``) applies what it returns in one
process, the supervisor (``_app._hub``) commits it for every worker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._knobs import SettingsError
from ._settings import KNOBS, describe

if TYPE_CHECKING:
    from ._settings import Settings

SECRETS = ("api_keys", "admin_key", "upstream_api_key")  # shown masked by Settings.public()


def change_of(old: Settings, leaves: dict[str, Any]) -> tuple[Settings, list[str]]:
    """The settings ``leaves`` make of ``old``, and the names of the knobs that change.

    Raises:
      SettingsError: an unknown knob, a bad value, or one read only at start-up.
    """
    shown = old.public()
    for name in SECRETS:  # the masked view sent back means "unchanged"
        if name in leaves and leaves[name] == shown[KNOBS[name].group][name]:
            del leaves[name]
    new = old.replace(**leaves)
    changed = changed_knobs(old, new)
    fixed = [name for name in changed if not KNOBS[name].live]
    if fixed:
        raise SettingsError(
            f"{describe(fixed[0])}: read at start-up only; restart the server to change it"
        )
    return new, changed


def changed_knobs(old: Settings, new: Settings) -> list[str]:
    return [k.name for k in KNOBS.values() if new.value(k.name) != old.value(k.name)]
