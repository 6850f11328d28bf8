"""What a worker of ``--workers N`` and the supervisor send each other (``_hub``,
``_control``): plain values, pickled over the pipe between them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attrs import frozen

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from .._config._settings import Settings
    from .._serve._arrivals import SharedArrivals
    from .._serve._buckets import SharedBuckets
    from .._serve._scripts import Scripts
    from .._serve._slots import SharedSlots

ANSWER_WITHIN_S = 30.0  # for every worker to apply a change (a new corpus takes seconds)


@frozen
class Ask:
    """A worker's request to the supervisor: ``op`` (a ``Hub.ops`` name) with ``payload``."""

    ticket: int
    op: str
    payload: Any = None


@frozen
class Order:
    """What every worker applies for an ask (``SharedControl.obey``)."""

    id: int
    op: str
    payload: Any = None


@frozen
class Done:
    """A worker's result for an order: a value, or the exception it raised."""

    id: int
    result: Any


@frozen
class Report:
    """Which workers applied an order, and why the others did not."""

    applied: tuple[int, ...] = ()
    failed: tuple[tuple[int, str], ...] = ()

    def to_data(self) -> dict[str, Any]:
        failed = [{"worker": worker, "reason": why} for worker, why in self.failed]
        return {"applied": list(self.applied), "failed": failed}


@frozen
class Answer:
    """The supervisor's answer to an ask: a value (or an exception to raise) and who
    applied it."""

    ticket: int
    result: Any
    report: Report = Report()


@frozen
class Change:
    """A committed config change: what changed, the settings it made, and its number."""

    changed: list[str]
    settings: Settings
    version: int


@frozen
class Membership:
    """What a forked worker needs to join: its number, its end of the pipe, and the
    rules and the change count committed when it was forked (its settings are passed
    beside it: the committed ones too), what every worker shares in memory (the rate-limit
    levels, the capacity slots and the fault draws' arrival count), and the directory of
    the journal spools (``_observe._spool``)."""

    worker: int
    conn: Connection
    scripts: Scripts
    version: int
    buckets: SharedBuckets | None = None
    slots: SharedSlots | None = None
    arrivals: SharedArrivals | None = None
    spools: str | None = None
