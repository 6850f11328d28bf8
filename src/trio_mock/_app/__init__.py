"""The application: the Quart-Trio app and its routes (admin, vLLM, JSON replies), built
with the runtime state a config change swaps (``_runtime``), the server, its supervisor,
the CLI, ``serve`` and ``running``.

The top layer: the public face (``trio_mock``, ``testing``, the pytest plugin) imports it.
"""
