"""The one view of a server's runtime state: what the control routes and ``running()`` use.

``Control`` acts on this process's ``Live``: a server of one process. ``SharedControl``
is a worker's of ``--workers N``: changes and the journal go through the supervisor
(``_hub``), which has every worker apply a change before it answers, and a task of the
worker's obeys the supervisor's orders as they come. Every worker holds the committed
config and rules, so reading them stays local. Each method returns its result and, with
several workers, the ``Report`` of which applied it.
"""

from __future__ import annotations

import itertools
import logging
import operator
from typing import TYPE_CHECKING, Any

import orjson
import trio

from .._openai._errors import OpenAIError
from ._messages import ANSWER_WITHIN_S, Answer, Ask, Change, Done, Order, Report

if TYPE_CHECKING:
    from ._messages import Membership
    from ._runtime import Live

log = logging.getLogger("trio_mock")
ASK_WITHIN_S = 2 * ANSWER_WITHIN_S  # the asks ahead of this one may each take their time
ARRIVAL_ORDER = operator.itemgetter("arrived", "worker", "seq")


def newest(entries: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """``GET /_mock/requests``'s ``limit``: the newest ``limit`` entries (all when None)."""
    if limit is None:
        return entries
    return entries[-limit:] if limit else []


class Control:
    """A server of one process: its worker number is 0."""

    worker = 0
    shared = False  # with other workers

    def __init__(self, live: Live) -> None:
        self.live = live

    async def configure(self, data: dict[str, Any]) -> tuple[Change, Report | None]:
        """Change knobs given flat or by group (``PATCH /_mock/config``).

        Raises:
          SettingsError: an unknown knob, a bad value, or one read only at start-up.
        """
        changed = await self.live.update(data)
        return Change(changed, self.live.settings, self.live.version), None

    async def add_scripts(self, data: Any) -> tuple[list[dict[str, Any]], Report | None]:
        """Append rules (one, a list, or ``{"rules": [...]}``); return them as listed.

        Raises:
          OpenAIError: a bad rule (none is added).
        """
        await trio.lowlevel.checkpoint()
        return [rule.to_data() for rule in self.live.scripts.add(data)], None

    async def replace_scripts(self, data: Any) -> tuple[list[dict[str, Any]], Report | None]:
        """Put rules in place of all the rules, at once (``PUT /_mock/scripts``).

        Raises:
          OpenAIError: a bad rule (the old rules stay).
        """
        await trio.lowlevel.checkpoint()
        return [rule.to_data() for rule in self.live.scripts.replace(data)], None

    async def remove_script(self, rule_id: int) -> tuple[bool, Report | None]:
        await trio.lowlevel.checkpoint()
        return self.live.scripts.remove(rule_id), None

    async def clear_scripts(self) -> tuple[int, Report | None]:
        await trio.lowlevel.checkpoint()
        return self.live.scripts.clear(), None

    async def requests(self, **filters: Any) -> tuple[list[dict[str, Any]], Report | None]:
        """Journal entries in arrival order, each with its ``worker``.

        Args:
          filters: ``model``, ``endpoint``, ``status``, ``since``, ``limit``.
        """
        await trio.lowlevel.checkpoint()
        return self.own_requests(filters), None

    async def clear_requests(self) -> tuple[int, Report | None]:
        await trio.lowlevel.checkpoint()
        return self.live.journal.clear(), None

    def own_requests(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        return self.live.journal.select(**filters)  # each entry names its worker


class Reply:
    """Where the supervisor's answer to one ask lands."""

    def __init__(self) -> None:
        self.arrived = trio.Event()
        self.answer: Answer | None = None


class SharedControl(Control):
    """A worker of several: changes and the journal through the supervisor."""

    shared = True

    def __init__(self, live: Live, membership: Membership) -> None:
        super().__init__(live)
        self.worker = membership.worker
        self.conn = membership.conn
        self.tickets = itertools.count(1)
        self.replies: dict[int, Reply] = {}

    async def configure(self, data: dict[str, Any]) -> tuple[Change, Report | None]:
        change: Change
        change, report = await self.ask("configure", data)
        return change, report

    async def add_scripts(self, data: Any) -> tuple[list[dict[str, Any]], Report | None]:
        listed: list[dict[str, Any]]
        listed, report = await self.ask("scripts.add", data)
        return listed, report

    async def replace_scripts(self, data: Any) -> tuple[list[dict[str, Any]], Report | None]:
        listed: list[dict[str, Any]]
        listed, report = await self.ask("scripts.replace", data)
        return listed, report

    async def remove_script(self, rule_id: int) -> tuple[bool, Report | None]:
        found: bool
        found, report = await self.ask("scripts.remove", rule_id)
        return found, report

    async def clear_scripts(self) -> tuple[int, Report | None]:
        count: int
        count, report = await self.ask("scripts.clear")
        return count, report

    async def requests(self, **filters: Any) -> tuple[list[dict[str, Any]], Report | None]:
        parts: list[bytes]  # each worker's entries, and the dead workers' (``Hub``)
        parts, report = await self.ask("journal.select", filters)
        entries = [entry for part in parts for entry in orjson.loads(part)]
        entries.sort(key=ARRIVAL_ORDER)
        return newest(entries, filters.get("limit")), report

    async def clear_requests(self) -> tuple[int, Report | None]:
        count: int
        count, report = await self.ask("journal.clear")
        return count, report

    async def ask(self, op: str, payload: Any = None) -> tuple[Any, Report]:
        """Send an ask to the supervisor and wait for its answer.

        Raises:
          OpenAIError: 503 when the supervisor cannot be reached or does not answer;
          what the supervisor raised for the ask (a bad knob or rule).
        """
        ticket = next(self.tickets)
        reply = self.replies[ticket] = Reply()
        try:
            self.conn.send(Ask(ticket, op, payload))
            with trio.move_on_after(ASK_WITHIN_S):
                await reply.arrived.wait()
        except OSError:
            pass  # the supervisor is gone: this worker stops soon
        finally:
            del self.replies[ticket]
        answer = reply.answer
        if answer is None:
            raise OpenAIError(
                503,
                "The supervisor of the workers did not answer: the change may not be applied.",
                code="supervisor_unavailable",
            )
        if isinstance(answer.result, BaseException):
            raise answer.result
        return answer.result, answer.report

    async def run(self) -> None:
        """Obey the supervisor's orders and deliver its answers, until its pipe closes."""
        while True:
            await trio.lowlevel.wait_readable(self.conn.fileno())
            try:
                message = self.conn.recv()
            except (EOFError, OSError):  # the supervisor is gone; its stop pipe ends us
                for waiting in self.replies.values():
                    waiting.arrived.set()  # with no answer: a 503 now, not at ASK_WITHIN_S
                return
            if isinstance(message, Answer):
                if reply := self.replies.get(message.ticket):
                    reply.answer = message
                    reply.arrived.set()
            elif isinstance(message, Order):
                try:
                    result = await self.obey(message)
                except Exception as error:  # reported to the asker, by worker
                    log.exception("worker %d: applying %s failed", self.worker, message.op)
                    result = RuntimeError(f"{type(error).__name__}: {error}")
                try:
                    self.conn.send(Done(message.id, result))
                except OSError:
                    return

    async def obey(self, order: Order) -> Any:
        live, payload = self.live, order.payload
        if order.op == "settings":
            return await live.adopt(*payload)
        if order.op == "scripts.add":
            live.scripts.install(payload)
            return len(payload)
        if order.op == "scripts.replace":  # with no checkpoint between: at once
            live.scripts.clear()
            live.scripts.install(payload)
            return len(payload)
        if order.op == "scripts.remove":
            return live.scripts.remove(payload)
        if order.op == "scripts.clear":
            return live.scripts.clear()
        if order.op == "journal.select":
            return orjson.dumps(self.own_requests(payload))
        if order.op == "journal.clear":
            return live.journal.clear()
        raise ValueError(f"unknown order {order.op!r}")
