"""``--workers N``: N worker processes on one port, kept at N until shutdown.

This replaces Hypercorn's supervisor (``hypercorn.run.run``), which, when one worker dies,
stops all the others and exits 0, so a process manager never restarts the server. Here
a worker that dies is logged with its exit and replaced while the others keep serving;
only SIGINT or SIGTERM stops the supervisor (exit 0, after the workers' grace period).
Workers that keep dying before they serve (a bad start-up) stop it with exit status 1.

Workers are forked, not spawned: the supervisor loads the tokenizer and builds the corpus
first, so every worker shares those pages (and the imported modules') copy-on-write
instead of holding its own copy, and a replacement starts without re-importing anything.
That needs the supervisor never to start Trio or a thread before it forks.

Each worker number has its own listening socket on the port (``SO_REUSEPORT``), made and
kept by the supervisor. With one shared socket, the worker that wakes first drains a
burst of connections (64 opened at once all went to one worker about half the time, and
requests/s halved); with one each, the kernel hashes every connection to a socket.

The supervisor also keeps the state the workers share (``_hub``): each worker has a pipe
to it, which the supervisor's loop reads beside the workers' sentinels, and a replacement
starts from the config and rules committed so far.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import tempfile
import time
from functools import partial
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, cast

import trio
from attrs import frozen

from .._observe._metrics import MULTIPROC_DIR
from .._observe._spool import spool_path
from .._serve._arrivals import SharedArrivals
from .._serve._buckets import SharedBuckets
from .._serve._scripts import Scripts
from .._serve._slots import SharedSlots
from .._serve._tally import Tally
from .._sim._corpus import release_free_memory, shared_corpus
from .._sim._tokens import load_tokenizer
from ._hub import MECHANISM, Hub
from ._messages import Membership
from ._runtime import create_app, load_scripts
from ._server import hypercorn_config, listen, serve_sockets, sockets
from ._tokenizers import model_tokenizers

if TYPE_CHECKING:
    import socket
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess
    from multiprocessing.synchronize import Event

    from .._config._settings import Settings
    from ._watch import Sources

log = logging.getLogger("trio_mock")

START_FAILURES = 3  # deaths in a row before any worker was ready: the start-up is broken
STOP_MARGIN_S = 5.0  # after the grace period, how long workers get before SIGKILL
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def supervise(settings: Settings, watch: Sources | None = None) -> int:
    """Serve ``settings`` with ``settings.server.workers`` processes; returns the exit status.

    Each worker builds its own app from ``settings`` and keeps its metrics in
    prometheus-client's multiprocess files, so any worker's /metrics reports them all.

    Args:
      watch: where ``settings`` came from: worker 0 applies changes to the config and
        scripts files through the hub, so every worker gets each one once.

    Raises:
      SettingsError: the scripts file cannot be read or holds a bad rule.
    """
    preload(settings)
    scripts = load_scripts(settings, Scripts(Tally()))
    hub = Hub(settings, scripts, SharedBuckets(), SharedArrivals())
    srv = settings.server
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(listen(srv.host, srv.port, srv.backlog, reuse_port=True))]
        host, port = socks[0].getsockname()[:2]
        for _ in range(srv.workers - 1):  # the same port: the kernel spreads connections
            socks.append(stack.enter_context(listen(host, port, srv.backlog, reuse_port=True)))
        log.info("serving on http%s://%s:%d with %d workers; shared state: %s (Ctrl+C to stop)",
                 "s" if srv.certfile else "", host, port, srv.workers, MECHANISM)  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="trio-mock-journal-") as spools:
            supervisor = Supervisor(settings, socks, hub, watch, spools)
            if not settings.observability.metrics or os.environ.get(MULTIPROC_DIR):
                return supervisor.run()  # a directory the user chose is theirs
            with tempfile.TemporaryDirectory(prefix="trio-mock-metrics-") as directory:
                os.environ[MULTIPROC_DIR] = directory
                try:
                    return supervisor.run()
                finally:
                    del os.environ[MULTIPROC_DIR]


def preload(settings: Settings) -> None:
    """Build what every worker reads but never writes, once, before the first fork.

    ``gc.freeze`` keeps it out of the workers' collections, which would otherwise write
    to every object's header and so copy the pages it sits on into each worker.
    """
    out = settings.output
    tokenizers = [load_tokenizer(out.tokenizer), *model_tokenizers(settings.models).values()]
    if out.output_mode == "corpus":
        for tokenizer in tokenizers:
            shared_corpus(tokenizer, out.corpus_articles, out.corpus_seed)
    gc.collect()
    release_free_memory()
    gc.freeze()


@frozen
class Worker:
    process: BaseProcess
    ready: Event
    number: int  # 0 to N-1; a replacement takes the number of the worker it replaces


class Supervisor:
    """Starts the workers, replaces the ones that die, and stops them on a signal.

    The workers stop when their stop pipe's write end, which only the supervisor holds,
    closes: when the supervisor asks, and also when it dies, even by SIGKILL. (A ``multiprocessing.Event`` did this before, but
    its ``set`` waits for every waiter to wake, forever when one was killed waiting.)
    """

    def __init__(
        self,
        settings: Settings,
        socks: list[socket.socket],
        hub: Hub,
        watch: Sources | None = None,
        spools: str | None = None,
    ) -> None:
        self.watch = watch
        # Where each worker spools its journal entries, read when it dies (the
        # supervisor's own directory); None: a dead worker's entries are lost.
        self.spools = spools
        self.settings = settings
        # One listening socket per worker number, all on the port (SO_REUSEPORT): the kernel
        # hashes each new connection to one, so a burst is spread over the workers rather
        # than drained by whichever woke first. The supervisor keeps them open: a dead
        # worker's connections wait in its socket's backlog for its replacement.
        self.socks = socks
        self.hub = hub
        self.slots = SharedSlots(settings.server.workers)  # the server's capacity
        self.context = multiprocessing.get_context("fork")
        self.stop_reader, self.stop_writer = os.pipe()
        self.workers: dict[int, Worker] = {}  # by sentinel
        self.stopping = False

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.on_signal)
        failures = 0
        status = 0
        for number in range(self.settings.server.workers):
            self.start_worker(number)
        while not self.stopping:
            pipes = self.hub.connections()
            due = self.hub.wait_s()  # a signal sets ``stopping`` but does not end the wait
            timeout = 1.0 if due is None else min(1.0, due)
            for ready in wait([*self.workers, *pipes], timeout=timeout):
                if not isinstance(ready, int):  # a worker's pipe: a message for the hub
                    self.hub.receive(cast("Connection", ready))
                    continue
                worker = self.workers.pop(ready)
                process = worker.process
                process.join()
                kept = self.depart(worker.number)  # before ``leave``, which may answer an ask
                self.hub.leave(worker.number)
                self.slots.forget(worker.number)  # its slots and its place in the queue
                failures = 0 if worker.ready.is_set() else failures + 1
                self.forget(process)
                if failures >= START_FAILURES:
                    log.error("worker %d %s before serving, %d times in a row: stopping",
                              process.pid, describe(process.exitcode), failures)  # fmt: skip
                    self.stopping, status = True, 1
                    break
                log.error("worker %d (number %d) %s; %d journal entries kept; starting a new one",
                          process.pid, worker.number, describe(process.exitcode), kept)  # fmt: skip
                self.start_worker(worker.number)
            self.hub.expire()
        self.stop_workers()
        return status

    def depart(self, number: int) -> int:
        """Worker ``number`` died: the hub keeps the entries of its journal spool."""
        return 0 if self.spools is None else self.hub.depart(spool_path(self.spools, number))

    def on_signal(self, signum: int, frame: Any) -> None:
        log.info("received %s, stopping the workers", signal.Signals(signum).name)
        self.stopping = True

    def start_worker(self, number: int) -> None:
        """Fork worker ``number``, with the state committed so far. SIGINT and SIGTERM
        wait, blocked, until it has its own handlers (the supervisor's would stop only the
        worker's copy of the supervisor)."""
        ready = self.context.Event()
        ours, theirs = self.context.Pipe()
        hub = self.hub
        membership = Membership(
            number,
            theirs,
            hub.scripts,
            hub.version,
            hub.buckets,
            self.slots,
            hub.arrivals,
            spools=self.spools,
        )
        not_its = [*hub.members.values(), ours]  # the supervisor's ends: the worker closes them
        process = self.context.Process(
            target=run_worker,
            args=(hub.settings, self.socks[number], self.stop_reader, self.stop_writer, ready),
            kwargs={
                "membership": membership,
                "not_its": not_its,
                "other_sockets": [sock for sock in self.socks if sock is not self.socks[number]],
                "watch": self.watch if number == 0 else None,
            },
            daemon=True,
        )
        gc.freeze()  # what the supervisor made since: shared too, and out of their collections
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            theirs.close()
        hub.join(number, ours)
        self.workers[process.sentinel] = Worker(process, ready, number)

    def stop_workers(self) -> None:
        """Ask every worker to stop; those still running after the grace period and a
        margin are killed."""
        os.close(self.stop_writer)
        for sock in self.socks:  # with the workers' copies closed, new connections are refused
            sock.close()
        deadline = time.monotonic() + self.settings.server.graceful_timeout_s + STOP_MARGIN_S
        for worker in self.workers.values():
            process = worker.process
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("worker %d did not stop in time: killed", process.pid)
                process.kill()
                process.join()
            self.forget(process)

    def forget(self, process: BaseProcess) -> None:
        """A dead worker's gauges leave the multiprocess metrics."""
        if process.pid is not None and os.environ.get(MULTIPROC_DIR):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(process.pid)  # type: ignore[no-untyped-call]


def describe(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"was killed by {signal.Signals(-exitcode).name}"
    return f"exited with status {exitcode}"


def run_worker(
    settings: Settings,
    sock: socket.socket,
    stop_reader: int,
    stop_writer: int,
    ready: Event,
    *,
    membership: Membership,
    not_its: list[Connection],
    other_sockets: list[socket.socket],
    watch: Sources | None = None,
) -> None:
    """A worker process: serve on its socket of the supervisor's until ``stop_reader``
    reads EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the supervisor, which stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    os.close(stop_writer)  # else the pipe would stay open for as long as this worker
    for conn in not_its:
        conn.close()
    for other in other_sockets:  # the other workers'
        other.close()
    from prometheus_client import values

    # Chosen when prometheus-client was imported, before the multiprocess directory was set.
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    app = create_app(settings, membership, watch=watch)

    async def stopped() -> None:
        await trio.lowlevel.wait_readable(stop_reader)  # EOF: the supervisor closed its end

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            bound = sockets(hypercorn_config(settings), sock)
            await nursery.start(partial(serve_sockets, app, settings, bound, stopped))
            ready.set()
            log.info("worker %d serving as number %d", os.getpid(), membership.worker)

    trio.run(main)
