"""Serving: Hypercorn's trio worker under our settings, for the CLI and for embedders.

``serve`` follows ``hypercorn.trio.serve``: ``task_status.started(binds)`` reports the real
URLs (port 0 resolved), and when ``shutdown_trigger`` returns the server stops accepting,
lets in-flight streams run for ``graceful_timeout_s``, then cancels them.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from ._app import SETTINGS_JSON, create_app
from ._metrics import MULTIPROC_DIR

if TYPE_CHECKING:
    from ._app import TrioMockApp
    from ._settings import Settings

log = logging.getLogger("trio_mock")


def hypercorn_config(settings: Settings) -> Config:
    """Translate our server knobs into Hypercorn's Config."""
    srv = settings.server
    config = Config()
    host = f"[{srv.host}]" if ":" in srv.host else srv.host
    config.bind = [f"{host}:{srv.port}"]
    config.worker_class = "trio"
    config.workers = srv.workers
    config.backlog = srv.backlog
    config.graceful_timeout = srv.graceful_timeout_s
    config.keep_alive_timeout = srv.keep_alive_timeout_s
    config.keep_alive_max_requests = srv.keep_alive_max_requests
    config.h11_max_incomplete_size = 64 * 1024
    config.h2_max_inbound_frame_size = 2**14
    if srv.certfile and srv.keyfile:
        config.certfile, config.keyfile = srv.certfile, srv.keyfile
        config.alpn_protocols = ["h2", "http/1.1"]
    # Hypercorn's records go through logging, so the CLI's one handler prints them once.
    config.accesslog = logging.getLogger("hypercorn.access") if srv.access_log else None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def serve(
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve trio-mock in the current Trio run until ``shutdown_trigger`` returns.

    Args:
      shutdown_trigger: awaited; when it returns, shut down gracefully. None: run until
        cancelled.
      task_status: for ``nursery.start``: receives the bound URLs, e.g.
        ``["http://127.0.0.1:41234"]``.
    """
    await serve_app(
        create_app(settings), settings, shutdown_trigger=shutdown_trigger, task_status=task_status
    )


async def serve_app(
    app: TrioMockApp,
    settings: Settings,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` in this process (Hypercorn's trio worker) on a socket bound here.

    Raises:
      OSError: the address cannot be bound (the socket is closed first).
    """
    config = hypercorn_config(settings)
    config.workers = 1
    listening = listen(settings.server.host, settings.server.port, config.backlog)
    tls = config.ssl_enabled
    sockets = Sockets([listening] if tls else [], [] if tls else [listening], [])
    with listening:
        await worker_serve(
            wrap_app(app, config.wsgi_max_body_size, None),
            config,
            sockets=sockets,
            shutdown_trigger=shutdown_trigger,
            task_status=task_status,
        )


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket, as Hypercorn makes it, but closed when it cannot be bound
    (Hypercorn leaves that one to the garbage collector, which warns)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


async def wait_for_signal() -> None:
    """Return on the first SIGINT or SIGTERM: the CLI's shutdown trigger."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            return


def run_workers(settings: Settings) -> int:
    """Run ``settings.server.workers`` processes on one port through Hypercorn's supervisor.

    Each worker imports ``trio_mock:app``, which reads the exact settings from the
    environment variable set here, and keeps its metrics in prometheus-client's
    multiprocess files.
    """
    from hypercorn.run import run

    os.environ[SETTINGS_JSON] = settings.to_json()
    config = hypercorn_config(settings)
    config.application_path = "trio_mock:app"
    if not settings.observability.metrics or os.environ.get(MULTIPROC_DIR):
        return run(config)  # a directory the user chose is theirs to clean
    # Each worker keeps its metrics in files here, so any worker's /metrics sums them all.
    with tempfile.TemporaryDirectory(prefix="trio-mock-metrics-") as directory:
        os.environ[MULTIPROC_DIR] = directory
        try:
            return run(config)
        finally:
            del os.environ[MULTIPROC_DIR]
