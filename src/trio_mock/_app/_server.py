"""Serving: our trio worker (``_worker``, Hypercorn's corrected) under our settings, for
the CLI and for embedders; ``_supervisor`` runs several of them.

``serve`` follows ``hypercorn.trio.serve``: ``task_status.started(binds)`` reports the real
URLs (port 0 resolved), and when ``shutdown_trigger`` returns the server stops accepting,
lets in-flight streams run for ``graceful_timeout_s``, then cancels them.
"""

from __future__ import annotations

import logging
import resource
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app

from .._serve._worker import worker_serve

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from .._config._settings import Settings
    from ._quart_app import TrioMockApp

log = logging.getLogger("trio_mock")
OPEN_FILES = 65536  # the soft limit asked for when the hard one is unlimited


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
    srv = settings.server
    with listen(srv.host, srv.port, srv.backlog) as listening:
        bound = sockets(hypercorn_config(settings), listening)
        await serve_sockets(app, settings, bound, shutdown_trigger, task_status=task_status)


async def serve_sockets(
    app: QuartTrio,
    settings: Settings,
    bound: Sockets,
    shutdown_trigger: Callable[[], Awaitable[None]] | None,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on sockets bound already: this process's, or the supervisor's."""
    config = hypercorn_config(settings)
    await worker_serve(
        wrap_app(app, config.wsgi_max_body_size, None),
        config,
        sockets=bound,
        send_timeout_s=settings.server.send_timeout_s,
        shutdown_trigger=shutdown_trigger,
        task_status=task_status,
    )


def sockets(config: Config, listening: socket.socket) -> Sockets:
    """Hypercorn's socket set: ``listening`` is secure when TLS is configured."""
    tls = config.ssl_enabled
    return Sockets([listening] if tls else [], [] if tls else [listening], [])


def listen(host: str, port: int, backlog: int, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket, as Hypercorn makes it, but closed when it cannot be bound
    (Hypercorn leaves that one to the garbage collector, which warns); says so when the
    kernel caps ``backlog``.

    Args:
      reuse_port: ``SO_REUSEPORT``, so that one socket per worker can listen on the port.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    cap = somaxconn()
    if cap is not None and cap < backlog and not reuse_port:  # said once, for the first
        log.warning(
            "listen backlog %d is capped at %d by the kernel: raise it with "
            "sysctl -w net.core.somaxconn=%d",
            backlog, cap, backlog,
        )  # fmt: skip
    return sock


def raise_open_files_limit() -> None:
    """Let a burst of connections use every descriptor the process may have, as nginx's
    ``worker_rlimit_nofile`` does: the soft limit (often 1024) up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else OPEN_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open files limit from %d: %s", soft, error)


def somaxconn() -> int | None:
    """The kernel's cap on listen backlogs (Linux), or None where it cannot be read."""
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text(encoding="ascii"))
    except (OSError, ValueError):
        return None


async def wait_for_signal() -> None:
    """Return on the first SIGINT or SIGTERM: the CLI's shutdown trigger."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            return
