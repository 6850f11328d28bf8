"""The Realtime API over WebSocket, text modality: ``GET /v1/realtime``.

One ``Connection`` per socket: it reads client events in order and answers each, while a
response streams in a task of its own, so ``response.cancel`` can stop it. A response is
planned by the same model as the HTTP endpoints and its ``response.text.delta`` events go
out on the same schedule (``_pacing.schedule``: deadlines from admission, no drift), built
from a template made once per response, and those due together are sent together; each
response is one journal record and counts in the metrics.

Event names follow the beta protocol (``OpenAI-Beta: realtime=v1``) unless the client
speaks the GA one, which it shows by a ``session.update`` with ``session.type``; then the
text events are ``response.output_text.*`` and the session has the GA shape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import aclosing
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import attrs
import orjson
import trio
from attrs import define, field

from .._openai._errors import OpenAIError
from .._openai._exchange import Exchange, planned_times
from .._openai._frames import new_id
from .._openai._model import Ask
from .._openai._overrides import merged, parse_overrides
from .._openai._realtime_events import (
    AUDIO_EVENTS,
    GA_NAMES,
    KEY_SUBPROTOCOL,
    SERVER_ERROR,
    RealtimeError,
    RealtimeReply,
    Session,
    checked_item,
    delta_frames,
    event_error,
    item_text,
    max_tokens,
)
from .._sim._plan import Limits
from .._sim._schedule import Ending
from .._sim._timeline import Clock, timeline
from ._offload import off_loop
from ._pacing import paced

if TYPE_CHECKING:
    from .._observe._journal import Record
    from .._openai._model import MockModel
    from .._openai._overrides import Overrides
    from .._sim._plan import ChoicePlan
    from ._exchange import Services
    from ._load import Admission
    from ._request import Message, Receive, Send

log = logging.getLogger("trio_mock")


@define
class Response:
    """One response in progress: what the ``response.*`` events refer to."""

    id: str = field(factory=lambda: new_id("resp_"))
    item_id: str = field(factory=lambda: new_id("item_"))
    queue: trio.CancelScope = field(factory=trio.CancelScope)  # waiting for a slot
    scope: trio.CancelScope = field(factory=trio.CancelScope)  # sending its deltas
    in_band: bool = True  # its reply joins the conversation
    cancelled: bool = False
    sent_tokens: int = 0


class RealtimeEndpoint:
    """``/v1/realtime`` as an ASGI WebSocket callable."""

    def __init__(
        self,
        model: MockModel,
        services: Services,
        latest: Callable[[], RealtimeEndpoint] | None = None,
    ) -> None:
        """``latest``: the endpoint of the settings now in force. A session outlives
        runtime config changes, so each response takes its model and services from it."""
        self.model = model
        self.services = services
        self.latest = latest or (lambda: self)
        # As the HTTP endpoints: each ITL step stretched by the decode count at that moment.
        factor = services.settings.latency.itl_load_factor
        self.itl_scale = partial(services.load.itl_scale, factor) if factor else None

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        headers = list(scope["headers"])
        offered = [p.strip() for p in scope.get("subprotocols", [])]
        for protocol in offered:  # a browser's key rides in a subprotocol
            if protocol.startswith(KEY_SUBPROTOCOL):
                key = protocol.removeprefix(KEY_SUBPROTOCOL).encode("latin-1")
                headers.append((b"authorization", b"Bearer " + key))
        try:
            self.services.auth.check(scope["path"], headers)
            overrides = parse_overrides(headers)
        except OpenAIError as error:
            await refuse(scope, send, error)
            return
        accepted = "realtime" if "realtime" in offered else None
        await send({"type": "websocket.accept", "subprotocol": accepted})
        model = query_model(scope) or self.services.settings.models.models[0]
        beta = any(n == b"openai-beta" and b"realtime" in v.lower() for n, v in headers)
        connection = Connection(self, scope, send, Session(model=model), overrides, beta)
        await connection.run(receive)


def query_model(scope: Message) -> str | None:
    """The ``?model=`` the client connected with."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return query["model"][0] if query.get("model") else None


async def refuse(scope: Message, send: Send, error: OpenAIError) -> None:
    """Deny the handshake with the error's status and OpenAI body where the server can
    (ASGI's ``websocket.http.response``), else with a bare close (HTTP 403)."""
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [(b"content-type", b"application/json"), *error.headers]
        await send({"type": "websocket.http.response.start", "status": error.status,
                    "headers": headers})  # fmt: skip
        await send({"type": "websocket.http.response.body", "body": error.to_json()})
    else:
        await send({"type": "websocket.close", "code": 1008})


class Connection:
    """One client's session: its conversation and at most one response at a time."""

    def __init__(
        self,
        endpoint: RealtimeEndpoint,
        scope: Message,
        send: Send,
        session: Session,
        overrides: Overrides,
        beta: bool,
    ) -> None:
        self.latest = endpoint.latest
        self.scope = scope
        self.socket_send = send
        self.session = session
        self.overrides = overrides
        self.beta = beta  # a beta client keeps the beta protocol whatever it sends
        self.items: list[dict[str, Any]] = []
        self.conversation_id = new_id("conv_")  # the session's one default conversation
        self.active: Response | None = None
        self.sending = trio.Lock()  # the reader and the response task both send
        self.nursery: trio.Nursery | None = None
        self.gone = False  # the client disconnected

    async def emit(self, kind: str, **fields: Any) -> None:
        if self.session.ga:
            kind = GA_NAMES.get(kind, kind)
        event = {"event_id": new_id("event_"), "type": kind, **fields}
        async with self.sending:
            await self.socket_send({"type": "websocket.send", "text": orjson.dumps(event).decode()})

    async def error(self, error: RealtimeError, event_id: Any = None) -> None:
        await self.emit("error", error={"type": error.kind, "code": error.code,
                                        "message": error.message, "param": error.param,
                                        "event_id": event_id})  # fmt: skip

    async def run(self, receive: Receive) -> None:
        await self.emit("session.created", session=self.session.view())
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    self.gone = True
                    break
                if message["type"] == "websocket.receive":
                    await self.handle(message.get("text") or message.get("bytes") or b"")
            nursery.cancel_scope.cancel()  # the client left: so does its response

    async def handle(self, raw: str | bytes) -> None:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            await self.error(RealtimeError(f"The event is not valid JSON: {error}.",
                                           "invalid_json"))  # fmt: skip
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.error(RealtimeError("Missing required parameter: 'type'.",
                                           "missing_required_parameter", "type"))  # fmt: skip
            return
        kind, event_id = event["type"], event.get("event_id")
        try:
            if kind == "session.update":
                self.session.update(event.get("session"))  # all or nothing
                self.session.ga = self.session.ga or (
                    not self.beta and event["session"].get("type") == "realtime"
                )
                await self.emit("session.updated", session=self.session.view())
            elif kind == "conversation.item.create":
                await self.create_item(event)
            elif kind == "conversation.item.delete":
                await self.delete_item(event.get("item_id"))
            elif kind == "conversation.item.retrieve":
                await self.emit("conversation.item.retrieved", item=self.find(event.get("item_id")))
            elif kind == "response.create":
                self.create_response(event)
            elif kind == "response.cancel":
                self.cancel_response(event.get("response_id"))
            elif kind in AUDIO_EVENTS:
                raise RealtimeError(f"'{kind}': trio-mock's realtime endpoint serves text only.",
                                    "unsupported_event", "type")  # fmt: skip
            else:
                raise RealtimeError(f"Invalid value: '{kind}'. It is not a client event type "
                                    "trio-mock knows.", "invalid_value", "type")  # fmt: skip
        except RealtimeError as error:
            await self.error(error, event_id)
        except Exception:  # a bug must not end the session with a traceback
            log.exception("realtime: unexpected error handling %s", kind)
            await self.error(SERVER_ERROR, event_id)

    # --- the conversation ----------------------------------------------------------------

    def find(self, item_id: Any) -> dict[str, Any]:
        for item in self.items:
            if item["id"] == item_id:
                return item
        raise RealtimeError(f"Conversation item with item_id '{item_id}' does not exist.",
                            "item_not_found", "item_id")  # fmt: skip

    async def create_item(self, event: dict[str, Any]) -> None:
        item = checked_item(event.get("item"))
        after = event.get("previous_item_id")
        if after is None:
            index = len(self.items)
        elif after == "root":
            index = 0
        else:
            index = self.items.index(self.find(after)) + 1
        previous = self.items[index - 1]["id"] if index else None
        self.items.insert(index, item)
        await self.emit("conversation.item.created", previous_item_id=previous, item=item)

    async def delete_item(self, item_id: Any) -> None:
        self.items.remove(self.find(item_id))
        await self.emit("conversation.item.deleted", item_id=item_id)

    # --- responses -----------------------------------------------------------------------

    def create_response(self, event: dict[str, Any]) -> None:
        if self.active is not None:
            raise RealtimeError(
                "Conversation already has an active response in progress: "
                f"{self.active.id}. Wait until the response is finished before creating a "
                "new one.",
                "conversation_already_has_active_response",
            )
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise RealtimeError("Invalid type for 'response': expected an object.",
                                "invalid_type", "response")  # fmt: skip
        cap = self.session.max_output_tokens
        for name in ("max_response_output_tokens", "max_output_tokens"):
            if name in params:
                cap = max_tokens(params[name], f"response.{name}")
        in_band = params.get("conversation", "auto") != "none"
        given = params.get("input")
        context = [checked_item(i) for i in given] if isinstance(given, list) else self.items
        instructions = params.get("instructions", self.session.instructions)
        response = self.active = Response(in_band=in_band)
        assert self.nursery is not None
        self.nursery.start_soon(self.respond, response, event, context, str(instructions), cap,
                                in_band)  # fmt: skip

    def cancel_response(self, response_id: Any) -> None:
        active = self.active
        if active is None or response_id not in (None, active.id):
            raise RealtimeError("Cancellation failed: no active response found.",
                                "response_cancel_not_active")  # fmt: skip
        active.cancelled = True
        active.queue.cancel()
        active.scope.cancel()

    async def respond(
        self,
        response: Response,
        event: dict[str, Any],
        context: list[dict[str, Any]],
        instructions: str,
        cap: int | None,
        in_band: bool,
    ) -> None:
        """Plan, admit and stream one response; journal it whatever happens."""
        endpoint = self.latest()
        services = endpoint.services
        observer = services.observer
        start = trio.current_time()
        record = observer.open({**self.scope, "method": "WEBSOCKET"}, start,
                               response.id.encode())  # fmt: skip
        observer.received(record, orjson.dumps(event))
        exchange: Exchange[RealtimeReply] = Exchange(start=start, model=self.session.model)
        admission: Admission | None = None
        refusal: RealtimeError | None = None
        try:
            try:
                exchange, refusal = await self.plan(endpoint, context, instructions, cap, exchange)
                if refusal is None:
                    with response.queue:  # a cancel reaches a response still queued
                        admission = await services.load.admit()
            except OpenAIError as error:  # the queue is full
                refusal = event_error(error)
            if admission is not None and exchange.reply is not None:
                admitted, scale = trio.current_time(), admission.ttft_scale
                ttft_s, itl_s, events = planned_times(exchange.reply, start, admitted, scale)
                exchange = attrs.evolve(exchange, admitted=admitted, ttft_scale=scale,
                                        planned_ttft_s=ttft_s, planned_itl_s=itl_s,
                                        planned_events=events)  # fmt: skip
            observer.planned(record, exchange)
            if refusal is None and admission is None:  # cancelled while queued
                observer.answered(record, 200)
                observer.cut(record, "cancelled")
                await self.emit(
                    "response.created", response=self.response_view(response, "in_progress")
                )
                await self.emit(
                    "response.done", response=self.response_view(response, "cancelled", [])
                )
            elif refusal is None:
                assert admission is not None
                await self.stream(endpoint, response, exchange, admission, record, in_band)
        except Exception:  # a bug must not end the session with a traceback
            log.exception("realtime: unexpected error in response %s", response.id)
            refusal = SERVER_ERROR
        finally:
            if self.gone:
                observer.gone(record)
            if admission is not None:
                admission.finish()
            self.active = None
            if refusal is not None:
                observer.refused(record, refusal.status, refusal.body())
            observer.close(record)
        if refusal is not None and not self.gone:
            await self.error(refusal, event.get("event_id"))

    async def plan(
        self,
        endpoint: RealtimeEndpoint,
        context: list[dict[str, Any]],
        instructions: str,
        cap: int | None,
        exchange: Exchange[RealtimeReply],
    ) -> tuple[Exchange[RealtimeReply], RealtimeError | None]:
        """The response's exchange with the model's plan for a reply to ``context`` (a
        scripted rule may decide it), or with the rule that refuses it and the refusal."""
        services = endpoint.services
        prompt = "\n".join([instructions, *map(item_text, context)])
        encode = endpoint.model.tokenizer_for(self.session.model).encode
        prompt_tokens = len(await off_loop(len(prompt), encode, prompt))
        overrides = self.overrides
        messages = [{"role": i.get("role", "user"), "content": item_text(i)} for i in context]
        data = {"model": self.session.model, "messages": messages}
        rule = services.scripts.take(self.scope["path"], data, self.scope["headers"])
        if rule is not None:
            exchange = attrs.evolve(exchange, rule=rule.label)
            if rule.error is not None:
                return exchange, event_error(rule.error)
            overrides = merged(rule.overrides, overrides)
        ask = Ask(model=self.session.model, limits=Limits(max_tokens=cap), can_reason=False)
        try:
            (plan,) = await endpoint.model.plan(ask, prompt_tokens, overrides)
        except OpenAIError as error:
            return exchange, event_error(error)
        return attrs.evolve(exchange, reply=RealtimeReply(plan, prompt_tokens)), None

    async def stream(
        self,
        endpoint: RealtimeEndpoint,
        response: Response,
        exchange: Exchange[RealtimeReply],
        admission: Admission,
        record: Record,
        in_band: bool,
    ) -> None:
        """The response's events, its text deltas on schedule from admission."""
        assert exchange.reply is not None
        plan = exchange.reply.plan
        ids = {"response_id": response.id, "item_id": response.item_id, "output_index": 0}
        item: dict[str, Any] = {
            "id": response.item_id, "object": "realtime.item", "type": "message",
            "status": "in_progress", "role": "assistant", "content": [],
        }  # fmt: skip
        observer = endpoint.services.observer
        await self.emit("response.created", response=self.response_view(response, "in_progress"))
        observer.answered(record, 200)
        await self.emit("response.output_item.added", response_id=response.id, output_index=0,
                        item=item)  # fmt: skip
        if in_band:
            previous = self.items[-1]["id"] if self.items else None
            self.items.append(item)
            await self.emit("conversation.item.created", previous_item_id=previous, item=item)
        part = {"type": "text", "text": ""}
        await self.emit("response.content_part.added", **ids, content_index=0, part=part)
        with response.scope:
            if plan.tokens:
                await self.deltas(endpoint, response, plan, admission, exchange.admitted, ids,
                                  record)  # fmt: skip
        text = "".join(plan.pieces[: response.sent_tokens])
        status = "completed"
        if response.cancelled:
            status = "cancelled"
            observer.cut(record, "cancelled")
        elif plan.finish_reason == "length":
            status = "incomplete"
        item |= {"status": "completed" if status == "completed" else "incomplete",
                 "content": [{"type": "output_text" if self.session.ga else "text",
                              "text": text}]}  # fmt: skip
        await self.emit("response.text.done", **ids, content_index=0, text=text)
        part = {"type": "text", "text": text}
        await self.emit("response.content_part.done", **ids, content_index=0, part=part)
        await self.emit("response.output_item.done", response_id=response.id, output_index=0,
                        item=item)  # fmt: skip
        done = self.response_view(response, status, [item], exchange.reply.prompt_tokens)
        await self.emit("response.done", response=done)

    async def deltas(
        self,
        endpoint: RealtimeEndpoint,
        response: Response,
        plan: ChoicePlan,
        admission: Admission,
        admitted: float,
        ids: dict[str, Any],
        record: Record,
    ) -> None:
        """The text deltas, each on its deadline (as ``_pacing`` schedules the HTTP
        streams, from admission), noting when each went out.

        The same timeline and pacing loop as the HTTP streams (``_sim._timeline``,
        ``_pacing.paced``): deltas due together (or overdue, behind a slow client) are drawn
        together and sent back to back under one hold of the lock, with one wait for the
        group: a WebSocket message carries one event, so each is still a message of its
        own, but no scheduler round is spent between them."""
        ends = plan.event_ends
        frames = delta_frames(plan, ids, self.session.ga)
        clock = Clock(admitted, ttft_scale=admission.ttft_scale, itl_scale=endpoint.itl_scale,
                      on_first=admission.first_token)  # fmt: skip
        events = timeline([(plan.offsets, frames)], [ends], clock, Ending(bytes), Ending(bytes))
        sleep_until = endpoint.services.pacer.sleep_until  # the HTTP streams' timer too
        sent = 0  # delta events sent
        async with aclosing(paced(events, sleep_until, list)) as batches:
            async for due, ending, batch in batches:
                if ending is not None:  # the end of the deltas: no message of its own
                    del batch[-1], due[-1]
                first = sent
                try:
                    async with self.sending:
                        for frame in batch:
                            await self.socket_send(
                                {"type": "websocket.send", "text": frame.decode()}
                            )
                            response.sent_tokens = ends[sent]
                            sent += 1
                finally:  # a cancel may land between two sends: count what went
                    record.wrote(due[: sent - first], trio.current_time())

    def response_view(
        self,
        response: Response,
        status: str,
        output: list[dict[str, Any]] | None = None,
        prompt_tokens: int = 0,
    ) -> dict[str, Any]:
        details = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": "client_cancelled"}
        elif status == "incomplete":
            details = {"type": "incomplete", "reason": "max_output_tokens"}
        usage = None
        if output is not None:
            sent = response.sent_tokens
            usage = {
                "total_tokens": prompt_tokens + sent,
                "input_tokens": prompt_tokens,
                "output_tokens": sent,
                "input_token_details": {
                    "cached_tokens": 0, "text_tokens": prompt_tokens, "audio_tokens": 0,
                    "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0},
                },
                "output_token_details": {"text_tokens": sent, "audio_tokens": 0},
            }  # fmt: skip
        modalities = "output_modalities" if self.session.ga else "modalities"
        return {"id": response.id, "object": "realtime.response", "status": status,
                "status_details": details, "output": output or [], "usage": usage,
                "conversation_id": self.conversation_id if response.in_band else None,
                modalities: ["text"], "metadata": None}  # fmt: skip
