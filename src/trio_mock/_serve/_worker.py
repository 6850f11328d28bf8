"""Our trio worker: Hypercorn's ``worker_serve`` and ``TCPServer``, with their faults fixed.

Hypercorn's trio worker (pinned: tested with hypercorn 0.18.0) loses a load test in four
ways, each corrected here at its extension point and nowhere else:

- ``TCPServer._close`` half-closes the socket (``send_eof``) without the send lock, so an
  h2c GOAWAY that arrives while the h2 send task writes raises ``BusyResourceError`` in
  that task, and the error ends the whole server (``h2load -D`` kills it).
- Any exception in one connection propagates into the server's nursery: one bad peer ends
  the process. Here it ends that connection, logged once with its cause.
- Every write runs in a shielded cancel scope with no deadline, so a client that stops
  reading holds shutdown (and its stream's ``max_request_s``) forever. Here a write stays
  shielded from a single stream's cancellation (a write cut in half would corrupt an h2
  connection's other streams), but it ends at the shutdown's hard stop, after
  ``send_timeout_s`` without progress, and, on HTTP/1.1, at the writer's own deadline;
  a write cut that way closes the connection.
- The accept loop takes one connection per scheduler pass and leaves EMFILE to trio; here
  it drains up to ``ACCEPT_BATCH`` waiting connections per wake-up, as asyncio does.

``Protocols`` (``_protocols``) swaps in ``OpenAIH11`` so framing errors get OpenAI-shaped
JSON, and the header limit is the configured one (h11 alone lets up to twice as much through).

It also sheds what a load-test target cannot afford per request and per token (each
measured with ``bench/bench.py``; the README's Performance section has the figures):

- a whole body is one write (head, body and end), not three;
- an HTTP/1.1 write that nobody contends goes straight to the socket, without the lock
  and shield (each a full scheduler pass when many streams are runnable);
- a streamed body's chunks can skip Hypercorn's and h11's per-chunk events
  (``BODY_EXTENSION``);
- a keep-alive timeout is a deadline on the connection's read loop, not a task started
  for every idle period;
- a request is stamped with when it reached the socket (``ARRIVAL_EXTENSION``: the
  kernel's receive timestamp on Linux), so its schedule, and the lag the server reports,
  count from there and not from its app task's first turn.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import trio
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import ShutdownError, parse_socket_addr, raise_shutdown, repr_socket_addr

from ._protocols import RECEIVED_AT, Protocols

if TYPE_CHECKING:
    import ssl

    from hypercorn.config import Config, Sockets
    from hypercorn.events import Event
    from hypercorn.typing import AppWrapper, LifespanState

log = logging.getLogger("trio_mock")
# A deadline that cancels the writer without being a trio deadline (the app's ``Watchdog``
# keeps stream backstops that way): an HTTP/1.1 write blocked past it is cut too.
WRITER_DEADLINE: ContextVar[float] = ContextVar("WRITER_DEADLINE", default=math.inf)

# Kernel receive timestamps (Linux's SO_TIMESTAMPNS, not in Python's socket module): a
# struct timespec in the SCM_TIMESTAMPNS message, of the same number.
SO_TIMESTAMPNS = 35
STAMP = struct.Struct("@qq")
STAMP_SPACE = socket.CMSG_SPACE(STAMP.size)
MAX_STAMP_AGE_S = 60.0
ACCEPT_BATCH = 64  # connections taken per wake-up of the listening socket
CLOSE_S = 1.0  # longest a close may wait for a peer (TLS close_notify) before it is forced
# Accept errors that mean "out of descriptors or memory for now": wait and retry (trio's).
CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
CAPACITY_PAUSE_S = 0.1
NO_LIMIT = contextlib.nullcontext()
STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError)


class Writes:
    """The worker's writes in flight, so that shutdown can end the ones still blocked when
    its grace period is over."""

    def __init__(self, send_timeout_s: float) -> None:
        self.send_timeout_s = send_timeout_s
        self.hard_stop = math.inf
        self.scopes: set[trio.CancelScope] = set()

    def stop_at(self, deadline: float) -> None:
        self.hard_stop = deadline
        for scope in self.scopes:
            scope.deadline = min(scope.deadline, deadline)

    def deadline(self, writer_s: float) -> float:
        return min(writer_s, trio.current_time() + self.send_timeout_s, self.hard_stop)


class KeepAlive:
    """Idle connections' keep-alive timeouts, as the deadline of each one's read loop.

    Hypercorn starts a task per idle period (``TrioSingleTask``: a lock, a nursery start
    and a cancel scope, on every request); here going idle or busy sets a deadline. On
    shutdown the idle ones close at once, as Hypercorn's did; busy ones close when done.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.reads: set[trio.CancelScope] = set()
        self.closing = False

    def idle(self, read: trio.CancelScope) -> None:
        read.deadline = -math.inf if self.closing else trio.current_time() + self.timeout_s

    def close_idle(self) -> None:
        self.closing = True
        for read in self.reads:
            if read.deadline != math.inf:
                read.deadline = -math.inf


class Connection(TCPServer):
    """One client connection: Hypercorn's ``TCPServer`` with bounded, lock-safe writes and
    closes, whose failures end only itself."""

    def __init__(
        self,
        writes: Writes,
        keep_alive: KeepAlive,
        raw: socket.socket | None,
        stamped: bool,
        *args: Any,
    ) -> None:
        super().__init__(*args)
        self.writes = writes
        self.keep_alive = keep_alive
        self.read = trio.CancelScope()  # its deadline is the keep-alive's while idle
        self.raw = raw  # the plain TCP socket under ``stream`` (None under TLS)
        self.stamped = stamped  # the kernel stamps what ``raw`` receives (``receive``)

    async def run(self) -> None:
        """Hypercorn's ``run`` (0.18.0), with ``Protocols`` and its errors kept here."""
        try:
            try:
                with trio.fail_after(self.config.ssl_handshake_timeout):
                    await self.stream.do_handshake()
            except (trio.BrokenResourceError, trio.TooSlowError):
                await trio.aclose_forcefully(self.stream)
                return
            alpn_protocol = self.stream.selected_alpn_protocol()
            sock = self.stream.transport_stream.socket
            tls = True
        except AttributeError:  # not TLS
            alpn_protocol = "http/1.1"
            sock = self.stream.socket
            tls = False
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            async with TaskGroup() as task_group:
                self._task_group = task_group
                self.protocol = Protocols(
                    self.app, self.config, self.context, task_group,
                    ConnectionState(self.state), tls, client, server, self.protocol_send,
                    alpn_protocol,
                )  # fmt: skip
                await self.protocol.initiate()
                self.keep_alive.idle(self.read)
                await self._read_data()
        except* OSError:
            pass  # the peer is gone
        except* Exception as group:  # any other failure ends this connection only
            log.exception("connection closed by an error", exc_info=group.exceptions[0])
        finally:
            await self._close()

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            if isinstance(event, Updated):
                if event.idle:
                    self.keep_alive.idle(self.read)
                else:
                    self.read.deadline = math.inf
            else:
                await super().protocol_send(event)
            return
        if not event.data:
            return  # h11's end of a body with a content-length: nothing to write
        if self.raw is not None and not self.send_lock.locked() and not self.h2:
            # HTTP/1.1's common case: nobody else is writing. Try the write at once,
            # without Hypercorn's lock and shield (each a full scheduler pass when many
            # streams are runnable; nothing can come between a write that does not wait
            # and this check); only what the socket does not take waits, as before.
            # (HTTP/2 keeps the old path: its streams' ends rely on the writes' yields.)
            sent = send_now(self.raw, event.data)
            if sent == len(event.data):
                return
            self.send_lock.acquire_nowait()  # free still: nothing ran since the check
            try:
                done = sent >= 0 and await self.write(memoryview(event.data)[sent:])
            finally:
                self.send_lock.release()
        else:
            async with self.send_lock:
                done = await self.write(event.data)
        if done:
            return
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLOSE_S):
            await self.protocol.handle(Closed())
        await trio.lowlevel.checkpoint()  # the writer's own cancellation, if that was the cause

    async def write(self, data: bytes | memoryview) -> bool:
        """Write ``data`` whole (the caller holds the send lock), shielded but bounded.

        Returns:
          False when the connection is broken, or unusable since a write was cut.
        """
        # On HTTP/1.1 the writer is the request's own task: its deadline (a stream's
        # max_request_s) may end the write. On HTTP/2 a stream's deadline must not cut a
        # write that carries other streams' frames, so only the connection's bounds apply.
        writer_s = (
            math.inf if self.h2
            else min(trio.current_effective_deadline(), WRITER_DEADLINE.get())
        )  # fmt: skip
        with trio.CancelScope(shield=True, deadline=self.writes.deadline(writer_s)) as scope:
            self.writes.scopes.add(scope)
            try:
                await self.stream.send_all(data)
            except STREAM_ERRORS:
                pass
            else:
                return True
            finally:
                self.writes.scopes.discard(scope)
        if scope.cancelled_caught:  # part of a frame may be out: the connection is unusable
            await trio.aclose_forcefully(self.stream)
        return False

    @property
    def h2(self) -> bool:
        return isinstance(self.protocol.protocol, H2Protocol)

    async def _close(self) -> None:
        """Half-close, then close, never racing a writer: with a write in flight the
        half-close is skipped (closing wakes that writer with ClosedResourceError)."""
        try:
            self.send_lock.acquire_nowait()
        except trio.WouldBlock:
            pass
        else:
            try:
                with trio.move_on_after(CLOSE_S):
                    await self.stream.send_eof()
            except (*STREAM_ERRORS, AttributeError):  # gone already, or TLS (no half-close)
                pass
            finally:
                self.send_lock.release()
        finally:
            with trio.move_on_after(CLOSE_S):
                await self.stream.aclose()  # closes even when cancelled or timed out

    async def receive(self) -> bytes:
        """``stream.receive_some``; on plain TCP with kernel timestamps, read with them, and
        note when the data reached the socket in ``RECEIVED_AT`` for the requests in it."""
        if not self.stamped:
            data = bytes(await self.stream.receive_some(MAX_RECV))
            RECEIVED_AT.set(trio.current_time())
            return data
        raw = self.raw
        assert raw is not None
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                data, ancillary, _, _ = raw.recvmsg(MAX_RECV, STAMP_SPACE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(raw)
                continue
            except OSError as error:  # reset by the peer, or closed by another task
                raise trio.BrokenResourceError from error
            RECEIVED_AT.set(received_at(ancillary))
            await trio.lowlevel.cancel_shielded_checkpoint()  # as trio's receive_some yields
            return data

    async def _read_data(self) -> None:
        """Hypercorn's (0.18.0), in the keep-alive's scope, and without a cancel scope per
        read when there is no ``read_timeout``."""
        read_timeout = self.config.read_timeout or math.inf
        self.keep_alive.reads.add(self.read)
        try:
            with self.read:
                while True:
                    try:
                        with trio.fail_after(read_timeout) if read_timeout < math.inf else NO_LIMIT:
                            data = await self.receive()
                    except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError):
                        break
                    await self.protocol.handle(RawData(bytes(data)))
                    if data == b"":
                        break
        finally:
            self.keep_alive.reads.discard(self.read)
        if self.read.cancelled_caught:  # idle for the keep-alive timeout, or shutting down
            await self._initiate_server_close()
        await self.protocol.handle(Closed())

    async def _initiate_server_close(self) -> None:
        """Hypercorn's idle close runs shielded: bound it, for a TLS peer that never reads."""
        with trio.move_on_after(CLOSE_S):
            await self.protocol.handle(Closed())
        with trio.move_on_after(CLOSE_S):
            await self.stream.aclose()


def stamp_arrivals(raw: socket.socket) -> bool:
    """Ask the kernel to stamp received data with its arrival (Linux); whether it will."""
    if sys.platform != "linux":
        return False
    try:
        raw.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def received_at(ancillary: list[tuple[int, int, bytes]]) -> float:
    """When the kernel received the data just read, in ``trio.current_time()``'s terms
    (now, without a timestamp). A request's TTFT counts from there: in a burst, data can
    wait in the socket for many milliseconds before the loop gets to it."""
    now = trio.current_time()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= STAMP.size:
            seconds, nanoseconds = STAMP.unpack_from(data)
            stamped: float = now - (time.time() - (seconds + nanoseconds * 1e-9))
            return min(now, max(stamped, now - MAX_STAMP_AGE_S))  # a clock step: bounded
    return now


def send_now(raw: socket.socket, data: bytes) -> int:
    """Bytes of ``data`` the non-blocking socket took at once; -1 when it is broken."""
    try:
        return raw.send(data)
    except BlockingIOError:
        return 0
    except OSError:
        return -1


async def accept_forever(
    sock: socket.socket,
    tls: ssl.SSLContext | None,
    handler: Callable[[trio.abc.Stream, socket.socket | None, bool], Awaitable[None]],
    nursery: trio.Nursery,
) -> None:
    """Accept connections on ``sock`` and start ``handler`` for each in ``nursery``: up to
    ``ACCEPT_BATCH`` per wake-up, pausing briefly when out of descriptors."""
    sock.setblocking(False)
    # Stamped on the listener: a connection inherits it when accepted, so even a request
    # that waited in a burst's backlog has its arrival.
    stamped = tls is None and stamp_arrivals(sock)
    try:
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(ACCEPT_BATCH):
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    break
                except OSError as error:
                    if error.errno not in CAPACITY_ERRNOS:
                        raise
                    log.warning("accept: %s; pausing %g s", error.strerror, CAPACITY_PAUSE_S)
                    await trio.sleep(CAPACITY_PAUSE_S)
                    break
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                stream: trio.abc.Stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                if tls is not None:
                    stream = trio.SSLStream(stream, tls, server_side=True, https_compatible=True)
                nursery.start_soon(handler, stream, conn if tls is None else None, stamped)
    finally:  # stop accepting at once: new connections are refused, not queued
        sock.close()


async def worker_serve(
    app: AppWrapper,
    config: Config,
    *,
    sockets: Sockets,
    send_timeout_s: float,
    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hypercorn's ``worker_serve`` (0.18.0, TCP only) with ``Connection`` and
    ``accept_forever``; after the grace period, writes still blocked are ended too."""
    config.set_statsd_logger_class(StatsdLogger)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(app, config, lifespan_state)
    context = WorkerContext(None)
    writes = Writes(send_timeout_s)
    keep_alive = KeepAlive(config.keep_alive_timeout)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        async with trio.open_nursery() as server_nursery:
            tls = config.create_ssl_context()
            listening = [(s, tls) for s in sockets.secure_sockets]
            listening += [(s, None) for s in sockets.insecure_sockets]
            binds = []
            for sock, context_ in listening:
                scheme = "https" if context_ is not None else "http"
                binds.append(f"{scheme}://{repr_socket_addr(sock.family, sock.getsockname())}")
            state = ConnectionState(lifespan_state.copy())

            async def handler(
                stream: trio.abc.Stream, raw: socket.socket | None, stamped: bool
            ) -> None:
                connection = Connection(
                    writes, keep_alive, raw, stamped, app, config, context, state, stream
                )
                await connection.run()

            task_status.started(binds)
            try:
                async with trio.open_nursery() as nursery:
                    if shutdown_trigger is not None:
                        nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(raise_shutdown, context.terminate.wait)
                    for sock, context_ in listening:
                        nursery.start_soon(accept_forever, sock, context_, handler, server_nursery)
            except BaseExceptionGroup as error:
                _, others = error.split((ShutdownError, KeyboardInterrupt))
                if others is not None:
                    raise others from None
            finally:
                await context.terminated.set()
                keep_alive.close_idle()
                deadline = trio.current_time() + config.graceful_timeout
                server_nursery.cancel_scope.deadline = deadline
                writes.stop_at(deadline)
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
