"""The supervisor's end of the state the workers of ``--workers N`` share.

What changes rarely goes through the supervisor: a worker asked to change the runtime
config or the scripted rules, or to show or clear the journal, sends the ask here
(``Ask``). The supervisor checks a change against its own copy of the state, commits it,
sends it to every worker (``Order``) and answers the asker once each one has applied it
(``Done``) or its time is up, naming the workers that did not (``Report``). Asks are
handled one at a time, so two changes at once end as if made one after the other, each
built on the last, and a worker forked later starts from what was committed. Each worker
has a duplex pipe to the supervisor; requests never use it (rule uses are counted in a
shared ``Tally``, rate-limit levels kept in ``SharedBuckets``, capacity in ``SharedSlots``,
fault draws numbered by ``SharedArrivals``). Sync, without Trio or threads: the supervisor
forks.

The hub also keeps the journal entries of the workers that died (``departed``, read from
their spools: ``_observe._spool``), which the journal's answers include.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import time
from typing import TYPE_CHECKING, Any

import orjson
from attrs import define, field

from .._config._changes import change_of
from .._config._knobs import SettingsError
from .._config._settings import KNOBS, flatten
from .._observe._journal import Journal
from .._observe._spool import SEGMENTS, read_spool
from .._openai._errors import OpenAIError
from ._messages import ANSWER_WITHIN_S, Answer, Ask, Change, Done, Order, Report

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.connection import Connection

    from .._config._settings import Settings
    from .._serve._arrivals import SharedArrivals
    from .._serve._buckets import SharedBuckets
    from .._serve._scripts import Scripts

log = logging.getLogger("trio_mock")
MECHANISM = (
    "config and scripts pushed through the supervisor; rule uses, rate-limit buckets,"
    " capacity and fault arrivals in shared memory"
)


# What an ask does here: the order for the workers (None: nothing for them to do), and
# what makes the answer of their results (by worker).
Step = tuple[Order | None, "Callable[[dict[int, Any]], Any]"]


@define
class Operation:
    """An ask being applied: the workers yet to answer, and their results so far."""

    asker: int
    ticket: int
    id: int
    finish: Callable[[dict[int, Any]], Any]
    deadline: float
    waiting: set[int]
    results: dict[int, Any] = field(factory=dict)
    failed: dict[int, str] = field(factory=dict)

    def report(self) -> Report:
        applied = tuple(sorted(self.results))
        return Report(applied, tuple(sorted(self.failed.items())))


class Hub:
    """The committed state (settings, rules, a change count) and the asks in turn."""

    def __init__(
        self,
        settings: Settings,
        scripts: Scripts,
        buckets: SharedBuckets | None = None,
        arrivals: SharedArrivals | None = None,
    ) -> None:
        self.settings = settings
        self.scripts = scripts
        self.buckets = buckets
        self.arrivals = arrivals
        self.version = 0
        obs = settings.observability
        # The dead workers' journal entries, each under its worker's number; memory only.
        self.departed = Journal(obs.journal_size, None, obs.journal_body_bytes)
        self.cleared_at = 0.0  # wall clock of the last journal clear
        self.members: dict[int, Connection] = {}  # by worker number
        self.asks: collections.deque[tuple[int, Ask]] = collections.deque()
        self.current: Operation | None = None
        self.ids = itertools.count(1)
        self.ops: dict[str, Callable[[Any], Step]] = {
            "configure": self.configure,
            "scripts.add": self.add_scripts,
            "scripts.replace": self.replace_scripts,
            "scripts.remove": self.remove_script,
            "scripts.clear": self.clear_scripts,
            "journal.select": self.select_journal,
            "journal.clear": self.clear_journal,
        }

    # --- the supervisor's loop calls these ------------------------------------------------

    def join(self, worker: int, conn: Connection) -> None:
        self.members[worker] = conn

    def leave(self, worker: int) -> None:
        """``worker`` exited: it answers nothing more."""
        conn = self.members.pop(worker, None)
        if conn is None:
            return
        conn.close()
        self.asks = collections.deque((w, ask) for w, ask in self.asks if w != worker)
        if self.current is not None and worker in self.current.waiting:
            self.current.waiting.discard(worker)
            self.current.failed[worker] = "exited (its replacement starts from the change)"
        self.advance()

    def depart(self, spool: str) -> int:
        """A worker died: keep the journal entries in its ``spool`` file, which goes.

        Returns:
          How many it held (the newest ``journal_size`` of all dead workers' are kept).
        """
        # A worker that died before it could clear its spool must not bring back what a
        # clear since then removed.
        records = [r for r in read_spool(spool) if r.arrived >= self.cleared_at]
        for end in SEGMENTS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool + end)
        self.departed.merge(records)
        return len(records)

    def connections(self) -> dict[Connection, int]:
        return {conn: worker for worker, conn in self.members.items()}

    def receive(self, conn: Connection) -> None:
        """Read one message from a worker's pipe, which is readable."""
        worker = self.connections().get(conn)
        if worker is None:
            return
        try:
            message = conn.recv()
        except (EOFError, OSError):
            self.leave(worker)
            return
        except Exception:  # a message that does not unpickle: its pipe is no good now
            log.exception("shared state: a bad message from worker %d; closing its pipe", worker)
            self.leave(worker)
            return
        current = self.current
        if isinstance(message, Ask):
            self.asks.append((worker, message))
        elif isinstance(message, Done) and current is not None and message.id == current.id:
            current.waiting.discard(worker)
            if isinstance(message.result, BaseException):
                current.failed[worker] = str(message.result) or type(message.result).__name__
            else:
                current.results[worker] = message.result
        self.advance()

    def wait_s(self) -> float | None:
        """How long until the current ask's time is up (None: no ask)."""
        if self.current is None:
            return None
        return max(0.0, self.current.deadline - time.monotonic())

    def expire(self) -> None:
        """Answer the current ask if its time is up, naming the workers still silent."""
        current = self.current
        if current is not None and time.monotonic() >= current.deadline:
            for worker in current.waiting:
                current.failed[worker] = f"did not answer within {ANSWER_WITHIN_S:g} s"
            current.waiting.clear()
            self.advance()

    # --- asks, one at a time ----------------------------------------------------------------

    def advance(self) -> None:
        while True:
            current = self.current
            if current is not None:
                if current.waiting:
                    return
                self.current = None
                self.answer(current)
            if not self.asks:
                return
            self.begin(*self.asks.popleft())

    def begin(self, worker: int, ask: Ask) -> None:
        try:
            order, finish = self.ops[ask.op](ask.payload)
        except (SettingsError, OpenAIError) as error:
            self.send(worker, Answer(ask.ticket, error))
            return
        except Exception as error:  # a bug: the asker reports it, the supervisor goes on
            log.exception("shared state: %s failed", ask.op)
            self.send(worker, Answer(ask.ticket, RuntimeError(f"{ask.op} failed: {error}")))
            return
        if order is None:  # nothing for the workers to do
            self.send(worker, Answer(ask.ticket, finish({}), Report(tuple(sorted(self.members)))))
            return
        deadline = time.monotonic() + ANSWER_WITHIN_S
        operation = Operation(worker, ask.ticket, order.id, finish, deadline, set())
        self.current = operation
        for member in sorted(self.members):
            if self.send(member, order):
                operation.waiting.add(member)
            else:
                operation.failed[member] = "its pipe is closed"

    def answer(self, operation: Operation) -> None:
        try:
            result = operation.finish(operation.results)
        except Exception as error:  # a bug: the asker reports it, the supervisor goes on
            log.exception("shared state: answering ask %d failed", operation.id)
            result = error
        self.send(operation.asker, Answer(operation.ticket, result, operation.report()))

    def send(self, worker: int, message: Any) -> bool:
        conn = self.members.get(worker)
        if conn is None:
            return False
        try:
            conn.send(message)
        except OSError:  # it died: its sentinel tells the supervisor
            return False
        return True

    def order(self, op: str, payload: Any = None) -> Order:
        return Order(next(self.ids), op, payload)

    # --- what each ask does here, and what it answers -----------------------------------------

    def configure(self, data: Any) -> Step:
        new, changed = change_of(self.settings, flatten(data, "config"))
        if not changed:
            return None, lambda _: Change([], new, self.version)
        self.settings, self.version = new, self.version + 1
        obs = new.observability
        self.departed.resize(obs.journal_size)
        self.departed.body_limit = obs.journal_body_bytes
        if self.buckets is not None and any(KNOBS[n].group == "rate_limits" for n in changed):
            self.buckets.clear()  # new limits start full, as one process's new limiter does
        if self.arrivals is not None and any(KNOBS[n].group == "faults" for n in changed):
            self.arrivals.clear()  # new fault settings draw from their seed's start
        change = Change(changed, new, self.version)
        return self.order("settings", (new, self.version)), lambda _: change

    def add_scripts(self, data: Any) -> Step:
        rules = self.scripts.add(data)
        listed = [rule.to_data() for rule in rules]
        return self.order("scripts.add", self.scripts.entries(rules)), lambda _: listed

    def replace_scripts(self, data: Any) -> Step:
        rules = self.scripts.replace(data)
        listed = [rule.to_data() for rule in rules]
        return self.order("scripts.replace", self.scripts.entries(rules)), lambda _: listed

    def remove_script(self, rule_id: int) -> Step:
        if not self.scripts.remove(rule_id):
            return None, lambda _: False
        return self.order("scripts.remove", rule_id), lambda _: True

    def clear_scripts(self, _: Any) -> Step:
        count = self.scripts.clear()
        return self.order("scripts.clear"), lambda _: count

    def select_journal(self, filters: dict[str, Any]) -> Step:
        """Each worker's own entries and the dead workers' as JSON parts (the asker
        merges them). The dead ones' are chosen last: a worker that died meanwhile's too."""

        def parts(selected: dict[int, bytes]) -> list[bytes]:
            return [*selected.values(), orjson.dumps(self.departed.select(**filters))]

        return self.order("journal.select", filters), parts

    def clear_journal(self, _: Any) -> Step:
        """Every worker's entries (and spool) and the dead workers': how many in all."""
        departed = self.departed.clear()
        self.cleared_at = time.time()
        return self.order("journal.clear"), lambda counts: sum(counts.values()) + departed
