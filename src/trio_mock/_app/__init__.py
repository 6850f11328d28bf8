"""The application: the Quart-Trio app and its routes (admin, vLLM, JSON replies), the
runtime state a config change swaps, the server, its supervisor, the CLI and ``running``.

The top layer: the public face (``trio_mock``, ``testing``, the pytest plugin) imports it.
"""
