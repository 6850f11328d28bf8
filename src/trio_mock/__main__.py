"""``python -m trio_mock``: the same as the ``trio-mock`` command."""

from trio_mock._app._cli import main

main()
