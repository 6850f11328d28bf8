"""The Realtime API over WebSocket (``/v1/realtime``, ``/realtime``): text responses.

What this file proves:

- Over loopback with a trio-websocket client, every server event read is checked against
  the official OpenAPI spec (``RealtimeServerEvent*`` in the GA dialect,
  ``RealtimeBetaServerEvent*`` in the beta one), and:
  ``session.created`` on connect (model from ``?model=``); ``session.update`` answered with
  ``session.updated``, all or nothing (an unknown field is ``unknown_parameter`` naming
  ``session.<name>``); conversation items created (with ``previous_item_id``, after the last
  item, at the ``root`` or after a given id), retrieved and deleted; a response's events in
  order with one response and item id, deltas that join to the ``*.text.done`` text, the
  content part, the output item and ``response.done``'s output; usage that adds up (input:
  the tokens of instructions plus conversation; output: the tokens sent); a token cap ends
  it ``incomplete``; ``conversation: "none"`` keeps it out of the conversation.
- Refusals are ``error`` events naming the client's ``event_id``, and the session goes on:
  bad JSON, no type, an unknown type, audio events, a second ``response.create`` while one
  is active, ``response.cancel`` with none active, bad items, bad caps.
- ``response.cancel`` ends the active response with ``response.done`` status
  ``cancelled`` and the usage of what was sent; the journal says ``cut: cancelled``.
  A client that leaves mid-response shows as ``disconnected``, and the server goes on.
- The handshake: ``api_keys`` checked from the Authorization header or the browser's
  ``openai-insecure-api-key.<key>`` subprotocol (``realtime`` echoed); a refusal is an HTTP
  401 (or 400 for a bad ``x-mock-*`` header) with an OpenAI error body; plain HTTP is a 426.
- Dialects: beta names by default and with ``OpenAI-Beta: realtime=v1``; a ``session.update``
  with ``session.type == "realtime"`` switches to GA names and the GA session shape.
- Scripted rules (endpoint ``realtime``) answer with content or an error; each response is
  one journal record and counts in ``/metrics`` (endpoint ``/realtime``); a runtime config
  change reaches the next response of an open session.
- Under MockClock, the app driven in memory through its ASGI entry point: text deltas at
  exactly admission + TTFT, then one ITL apart, from the upgrade's ``x-mock-*`` headers, from
  the settings, from a scripted rule and after a runtime change; a queued response counts
  from its admission; a cancel stops the schedule where it is.
- The official ``openai`` SDK, GA (``client.realtime``) and beta (``client.beta.realtime``).

Four bugs these tests found are fixed: GA assistant text parts typed ``text`` (not
``output_text``); a refused ``session.update`` still switching the dialect;
``conversation_id`` always null; ``response.cancel`` of a queued response waiting for a slot.
"""

from __future__ import annotations

import copy
import gc
import threading
import warnings
from collections.abc import AsyncGenerator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import httpx
import openai
import orjson
import pytest
import trio
import trio.testing
from openai.types.beta.realtime import (
    ResponseDoneEvent as BetaResponseDone,
    ResponseTextDeltaEvent as BetaTextDelta,
    ResponseTextDoneEvent as BetaTextDone,
)
from openai.types.realtime import (
    RealtimeConversationItemAssistantMessage as RealtimeAssistantMessage,
    ResponseDoneEvent as RealtimeResponseDone,
    ResponseTextDeltaEvent as RealtimeTextDelta,
    ResponseTextDoneEvent as RealtimeTextDone,
    SessionUpdatedEvent as RealtimeSessionUpdated,
)
from trio_websocket import ConnectionRejected, WebSocketConnection, open_websocket_url

from asgi import call
from conftest import FAST, fast_settings
from exposition import Samples, by_label, parse, value
from helpers import on_schedule, tokens
from openapi import validate
from trio_mock import create_app
from trio_mock.testing import MockServer

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from conftest import StartServer
    from trio_mock._serve._request import ASGIApp

Event = dict[str, Any]
Message = dict[str, Any]  # an ASGI message
WAIT_S = 10.0  # any one event over loopback
POLL_S = 0.02
MAX_EVENTS = 2000  # events read while waiting for one kind
PATH = "/v1/realtime"
KEY = "sk-realtime-test-key-0001"
# Replies of exactly this many tokens, one token per delta.
TOKENS = 6
SIX: dict[str, Any] = {"output_tokens_distribution": "fixed", "output_tokens_mean": TOKENS}
# A schedule without randomness: token i due at TTFT + i * ITL after admission.
EXACT: dict[str, Any] = SIX | {"ttft_distribution": "constant", "itl_distribution": "constant"}
LONG = [(b"x-mock-output-tokens", b"200"), (b"x-mock-itl-ms", b"20")]  # four seconds of text


def prompt_tokens(instructions: str, *texts: str) -> int:
    """A response's input tokens: its instructions and each conversation item, a line each."""
    return tokens("\n".join([instructions, *texts]))


def user(text: str, **fields: Any) -> Event:
    """A ``conversation.item.create`` of a user message."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    return {"type": "conversation.item.create", "item": item, **fields}


# --- the spec's schemas ---------------------------------------------------------------------

SCHEMAS = {
    "session.created": "SessionCreated",
    "session.updated": "SessionUpdated",
    "conversation.item.created": "ConversationItemCreated",
    "conversation.item.deleted": "ConversationItemDeleted",
    "conversation.item.retrieved": "ConversationItemRetrieved",
    "response.created": "ResponseCreated",
    "response.output_item.added": "ResponseOutputItemAdded",
    "response.content_part.added": "ResponseContentPartAdded",
    "response.output_text.delta": "ResponseTextDelta",
    "response.output_text.done": "ResponseTextDone",
    "response.content_part.done": "ResponseContentPartDone",
    "response.output_item.done": "ResponseOutputItemDone",
    "response.done": "ResponseDone",
    "error": "Error",
}
BETA_NAMES = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
}
# The spec marks none of these nullable, yet its own response.created example sends
# status_details and usage as null, and its text says conversation_id is null for a
# response out of band.
NULLABLE = ("status_details", "usage", "conversation_id")


def spec_view(event: Event, ga: bool, *, strict: bool = False) -> tuple[str, Event]:
    """The schema to check ``event`` against, and the event as that schema words it.

    The spec's beta schemas carry the GA text event names and reuse GA's conversation item,
    whose assistant text part is ``output_text`` (the beta API and SDK call it ``text``).
    ``strict``: leave GA's assistant parts alone (GA types them ``output_text``).
    """
    event = copy.deepcopy(event)
    kind = event["type"]
    if not ga:
        assert kind not in BETA_NAMES.values(), f"a GA event name in a beta session: {kind}"
        kind = event["type"] = BETA_NAMES.get(kind, kind)
    response = event.get("response")
    if isinstance(response, dict):
        for name in NULLABLE:
            if response.get(name, 0) is None:
                del response[name]
    if not (ga and strict):
        items = [event.get("item"), *(response or {}).get("output", [])]
        for item in items:
            if isinstance(item, dict) and item.get("role") == "assistant":
                for part in item.get("content", []):
                    if part.get("type") == "text":
                        part["type"] = "output_text"
    # session.created comes before the client could show its dialect: always beta's.
    prefix = (
        "RealtimeServerEvent" if ga and kind != "session.created" else "RealtimeBetaServerEvent"
    )
    return prefix + SCHEMAS[kind], event


def check_event(event: Event, ga: bool) -> None:
    """``event`` matches the spec's schema for it, in the session's dialect."""
    assert event["type"] in SCHEMAS or event["type"] in BETA_NAMES, event
    validate(*spec_view(event, ga))


# --- a response's events ----------------------------------------------------------------------


class Reply(NamedTuple):
    events: list[Event]
    deltas: list[str]
    response: Event  # response.done's

    @property
    def text(self) -> str:
        return "".join(self.deltas)

    @property
    def usage(self) -> Event:
        usage: Event = self.response["usage"]
        return usage


def check_reply(events: Sequence[Event], ga: bool, in_band: bool = True) -> Reply:
    """A response's events from ``response.created`` to ``response.done``: in order, about
    one response and one item, every view of the text the deltas joined, usage summed."""
    delta, done = (
        ("response.output_text.delta", "response.output_text.done")
        if ga
        else ("response.text.delta", "response.text.done")
    )
    kinds = [e["type"] for e in events]
    opening = ["response.created", "response.output_item.added"]
    opening += ["conversation.item.created"] * in_band + ["response.content_part.added"]
    closing = [done, "response.content_part.done", "response.output_item.done", "response.done"]
    assert kinds == opening + [delta] * kinds.count(delta) + closing, kinds
    created, added, *_, text_done, part_done, item_done, finished = events
    response_id, item_id = created["response"]["id"], added["item"]["id"]
    assert created["response"]["status"] == "in_progress"
    assert created["response"]["output"] == []
    assert added["item"]["status"] == "in_progress"
    assert (added["item"]["role"], added["item"]["content"]) == ("assistant", [])
    for event in events[1:-1]:
        assert event.get("response_id", response_id) == response_id
        assert event.get("item_id", item_id) == item_id
        assert event.get("item", {"id": item_id})["id"] == item_id
        assert event.get("output_index", 0) == event.get("content_index", 0) == 0
    if in_band:
        assert events[2]["item"] == added["item"]
    deltas = [e["delta"] for e in events if e["type"] == delta]
    text = "".join(deltas)
    assert text_done["text"] == part_done["part"]["text"] == text
    assert part_done["part"]["type"] == "text"
    item = item_done["item"]
    assert [part["text"] for part in item["content"]] == [text]
    if not ga:
        assert [part["type"] for part in item["content"]] == ["text"]
    response = finished["response"]
    assert (response["id"], response["output"]) == (response_id, [item])
    modalities = "output_modalities" if ga else "modalities"
    assert response[modalities] == ["text"]
    assert item["status"] == ("completed" if response["status"] == "completed" else "incomplete")
    usage = response["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_token_details"]["text_tokens"] == usage["input_tokens"]
    assert usage["output_token_details"] == {
        "text_tokens": usage["output_tokens"],
        "audio_tokens": 0,
    }
    return Reply(list(events), deltas, response)


class Peer:
    """The client's end of one session: sends events and reads the server's, checking
    each against the spec in the session's dialect (``ga``, which tests set)."""

    ga = False

    async def send_text(self, text: str) -> None:
        raise NotImplementedError

    async def receive(self) -> Event:
        raise NotImplementedError

    async def send(self, **event: Any) -> None:
        await self.send_text(orjson.dumps(event).decode())

    async def next(self) -> Event:
        event = await self.receive()
        check_event(event, self.ga)
        return event

    async def expect(self, kind: str) -> Event:
        event = await self.next()
        assert event["type"] == kind, event
        return event

    async def until(self, kind: str) -> list[Event]:
        """Events up to and including the next of ``kind``."""
        events = []
        for _ in range(MAX_EVENTS):
            events.append(await self.next())
            if events[-1]["type"] == kind:
                return events
        raise AssertionError(f"no {kind} in {MAX_EVENTS} events")

    async def error(self, **event: Any) -> Event:
        """Send ``event``; the ``error`` it gets back, with the client's event_id."""
        await self.send(event_id="evt_client_1", **event)
        answer = await self.expect("error")
        assert answer["error"]["event_id"] == "evt_client_1"
        error: Event = answer["error"]
        return error

    async def respond(self, in_band: bool = True, **response: Any) -> Reply:
        """``response.create`` and its events, checked."""
        await self.send(type="response.create", **({"response": response} if response else {}))
        return check_reply(await self.until("response.done"), self.ga, in_band)

    async def add(self, text: str, **fields: Any) -> Event:
        """A user message appended; the ``conversation.item.created`` for it."""
        await self.send(**user(text, **fields))
        return await self.expect("conversation.item.created")

    async def works(self) -> None:
        """The session still answers: a message, then a full response."""
        await self.add("Still there?")
        assert (await self.respond()).response["status"] == "completed"


class Client(Peer):
    """A trio-websocket client over loopback."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.session: Event = {}

    async def send_text(self, text: str) -> None:
        await self.ws.send_message(text)

    async def receive(self) -> Event:
        with trio.fail_after(WAIT_S):
            message = await self.ws.get_message()
        event: Event = orjson.loads(message)
        return event


def ws_url(url: str, path: str = PATH) -> str:
    return url.replace("http://", "ws://", 1) + path


@asynccontextmanager
async def connect(
    url: str,
    path: str = PATH,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    subprotocols: Sequence[str] = (),
) -> AsyncGenerator[Client, None]:
    """A session of the server at ``url``, its ``session.created`` read."""
    async with open_websocket_url(
        ws_url(url, path), subprotocols=subprotocols, extra_headers=list(headers)
    ) as ws:
        client = Client(ws)
        client.session = (await client.expect("session.created"))["session"]
        yield client


@asynccontextmanager
async def http_client(url: str) -> AsyncGenerator[httpx.AsyncClient, None]:
    async with httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http:
        yield http


async def journal(http: httpx.AsyncClient, count: int) -> list[Event]:
    """The journal once it holds ``count`` entries (a response is recorded just after its
    ``response.done`` goes out, or when its client is gone)."""
    with trio.fail_after(WAIT_S):
        while True:
            response = await http.get("/_mock/requests")
            assert response.status_code == 200, response.text
            entries: list[Event] = response.json()["data"]
            if len(entries) >= count:
                assert len(entries) == count, entries
                return entries
            await trio.sleep(POLL_S)


# --- connect, session.update ------------------------------------------------------------------


async def test_session_created_with_the_query_model(start_server: StartServer) -> None:
    url = await start_server()
    async with connect(url, "/v1/realtime?model=gpt-realtime") as client:
        session = client.session
        assert session["model"] == "gpt-realtime"
        assert session["object"] == "realtime.session"
        assert session["id"].startswith("sess_")
        assert (session["modalities"], session["max_response_output_tokens"]) == (["text"], "inf")
    async with connect(url) as client:
        assert client.session["model"] == fast_settings().models.models[0]


async def test_session_update_sets_fields(start_server: StartServer) -> None:
    url = await start_server()
    async with connect(url) as client:
        changes = {
            "instructions": "Be brief.",
            "temperature": 0.6,
            "voice": "verse",
            "max_response_output_tokens": 50,
            "modalities": ["text"],
        }
        await client.send(type="session.update", session=changes)
        session = (await client.expect("session.updated"))["session"]
        assert session["id"] == client.session["id"]
        assert (session["instructions"], session["temperature"]) == ("Be brief.", 0.6)
        assert (session["voice"], session["max_response_output_tokens"]) == ("verse", 50)
        await client.send(type="session.update", session={"max_response_output_tokens": "inf"})
        session = (await client.expect("session.updated"))["session"]
        assert session["max_response_output_tokens"] == "inf"
        assert session["instructions"] == "Be brief."  # kept: fields left out are unchanged


@pytest.mark.parametrize(
    ("changes", "code", "param"),
    [
        ({"bogus": 1}, "unknown_parameter", "session.bogus"),
        ({"temperature": "hot"}, "invalid_type", "session.temperature"),
        ({"instructions": 7}, "invalid_type", "session.instructions"),
        ({"tools": {}}, "invalid_type", "session.tools"),
        ({"max_response_output_tokens": 0}, "invalid_value", "session.max_response_output_tokens"),
        (
            {"max_response_output_tokens": 4097},
            "invalid_value",
            "session.max_response_output_tokens",
        ),
        ({"max_output_tokens": True}, "invalid_value", "session.max_output_tokens"),
    ],
)
async def test_session_update_is_all_or_nothing(
    start_server: StartServer, changes: Event, code: str, param: str
) -> None:
    url = await start_server()
    async with connect(url) as client:
        # A good field beside the bad one is not applied either.
        error = await client.error(type="session.update", session={"instructions": "X"} | changes)
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            code,
            param,
        )
        assert param.removeprefix("session.") in error["message"]
        await client.send(type="session.update", session={})
        session = (await client.expect("session.updated"))["session"]
        assert session == client.session
        await client.works()


async def test_session_update_without_a_session_is_refused(start_server: StartServer) -> None:
    url = await start_server()
    async with connect(url) as client:
        error = await client.error(type="session.update")
        assert (error["code"], error["param"]) == ("missing_required_parameter", "session")
        await client.works()


# --- responses ----------------------------------------------------------------------------------


async def test_response_events_usage_and_journal(start_server: StartServer) -> None:
    url = await start_server()
    headers = [(b"x-mock-output-tokens", b"7")]  # every response of the session
    async with connect(url, headers=headers) as client, http_client(url) as http:
        asked = await client.add("Hello there")
        reply = await client.respond()
        assert len(reply.deltas) == 7  # one token each
        assert reply.usage["output_tokens"] == 7
        assert reply.usage["input_tokens"] == prompt_tokens("", "Hello there")
        assert (reply.response["status"], reply.response["status_details"]) == ("completed", None)
        assert reply.events[2]["previous_item_id"] == asked["item"]["id"]
        # The reply joined the conversation: the next response reads it too.
        await client.add("And then?")
        second = await client.respond()
        assert second.usage["input_tokens"] == prompt_tokens(
            "", "Hello there", reply.text, "And then?"
        )
        assert second.response["id"] != reply.response["id"]
        entries = await journal(http, 2)
    for entry, answered in zip(entries, [reply, second], strict=True):
        assert entry["id"] == answered.response["id"]
        assert (entry["method"], entry["endpoint"], entry["status"]) == ("WEBSOCKET", PATH, 200)
        assert (entry["model"], entry["stream"]) == (client.session["model"], True)
        assert (entry["cut"], entry["disconnected"], entry["error"]) == (None, False, None)
        assert entry["plan"]["completion_tokens"] == 7
        assert entry["plan"]["prompt_tokens"] == answered.usage["input_tokens"]
        assert entry["plan"]["finish_reason"] == "stop"
        assert orjson.loads(entry["body"]) == {"type": "response.create"}
        assert len(entry["events"]) == 7


async def test_session_model_and_instructions_reach_responses(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with connect(url) as client, http_client(url) as http:
        changes = {"model": "gpt-4o-realtime-preview", "instructions": "Answer in French."}
        await client.send(type="session.update", session=changes)
        await client.expect("session.updated")
        await client.add("Hello there")
        reply = await client.respond()
        assert reply.usage["input_tokens"] == prompt_tokens("Answer in French.", "Hello there")
        # Instructions given with the response are its own.
        second = await client.respond(instructions="Be terse.")
        assert second.usage["input_tokens"] == prompt_tokens("Be terse.", "Hello there", reply.text)
        entries = await journal(http, 2)
    assert [e["model"] for e in entries] == ["gpt-4o-realtime-preview"] * 2


async def test_token_caps_end_a_response_incomplete(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with connect(url) as client:
        await client.send(type="session.update", session={"max_response_output_tokens": 3})
        await client.expect("session.updated")
        await client.add("Hello")
        capped = await client.respond()
        assert (len(capped.deltas), capped.usage["output_tokens"]) == (3, 3)
        assert capped.response["status"] == "incomplete"
        assert capped.response["status_details"] == {
            "type": "incomplete",
            "reason": "max_output_tokens",
        }
        assert capped.response["output"][0]["status"] == "incomplete"
        # A response's own cap wins over the session's, either way.
        assert len((await client.respond(max_output_tokens=2)).deltas) == 2
        whole = await client.respond(max_response_output_tokens="inf")
        assert (len(whole.deltas), whole.response["status"]) == (TOKENS, "completed")


async def test_out_of_band_responses(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with connect(url) as client:
        await client.add("Hello there")
        aside = await client.respond(in_band=False, conversation="none")
        assert aside.usage["input_tokens"] == prompt_tokens("", "Hello there")
        # Its own input, in place of the conversation.
        given = [user("Only this.")["item"]]
        alone = await client.respond(in_band=False, conversation="none", input=given)
        assert alone.usage["input_tokens"] == prompt_tokens("", "Only this.")
        # Neither joined the conversation.
        reply = await client.respond()
        assert reply.usage["input_tokens"] == prompt_tokens("", "Hello there")
        assert reply.text != aside.text  # a new reply, not the out-of-band one again


async def test_conversation_items_in_order(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with connect(url) as client:
        a = (await client.add("A"))["item"]
        assert a["id"].startswith("item_")
        assert (a["status"], a["object"]) == ("completed", "realtime.item")
        assert a["content"] == [{"type": "input_text", "text": "A"}]
        b = await client.add("B", event_id="evt_b")
        assert b["previous_item_id"] == a["id"]
        c = await client.add("C", previous_item_id="root")
        assert c["previous_item_id"] is None
        d = await client.add("D", previous_item_id=a["id"])
        assert d["previous_item_id"] == a["id"]
        await client.send(type="conversation.item.create", item=user("E")["item"] | {"id": "mine"})
        e = await client.expect("conversation.item.created")
        assert e["item"]["id"] == "mine"
        assert e["previous_item_id"] == b["item"]["id"]  # order: C A D B E
        await client.send(type="conversation.item.retrieve", item_id=d["item"]["id"])
        retrieved = await client.expect("conversation.item.retrieved")
        assert retrieved["item"] == d["item"]
        await client.send(type="conversation.item.delete", item_id="mine")
        deleted = await client.expect("conversation.item.deleted")
        assert deleted["item_id"] == "mine"
        error = await client.error(type="conversation.item.retrieve", item_id="mine")
        assert (error["code"], error["param"]) == ("item_not_found", "item_id")
        reply = await client.respond()
        assert reply.events[2]["previous_item_id"] == b["item"]["id"]
        assert reply.usage["input_tokens"] == prompt_tokens("", "C", "A", "D", "B")


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"type": "conversation.item.create"}, "missing_required_parameter", "item"),
        (user("x") | {"item": {"type": "image"}}, "invalid_value", "item.type"),
        (
            user("x") | {"item": {"type": "message", "role": "tool", "content": []}},
            "invalid_value",
            "item.role",
        ),
        (
            user("x") | {"item": {"type": "message", "role": "user", "content": "hi"}},
            "missing_required_parameter",
            "item.content",
        ),
        (user("x", previous_item_id="item_nope"), "item_not_found", "item_id"),
        (
            {"type": "conversation.item.delete", "item_id": "item_nope"},
            "item_not_found",
            "item_id",
        ),
        ({"type": "conversation.item.retrieve"}, "item_not_found", "item_id"),
        ({"type": "response.create", "response": "now"}, "invalid_type", "response"),
        (
            {"type": "response.create", "response": {"max_output_tokens": 0}},
            "invalid_value",
            "response.max_output_tokens",
        ),
        (
            {"type": "response.create", "response": {"input": [{"type": "image"}]}},
            "invalid_value",
            "item.type",
        ),
        ({"type": "input_audio_buffer.append", "audio": ""}, "unsupported_event", "type"),
        ({"type": "input_audio_buffer.commit"}, "unsupported_event", "type"),
        ({"type": "input_audio_buffer.clear"}, "unsupported_event", "type"),
        ({"type": "output_audio_buffer.clear"}, "unsupported_event", "type"),
        ({"type": "transcription_session.update"}, "invalid_value", "type"),
        ({"type": "response.cancel"}, "response_cancel_not_active", None),
    ],
)
async def test_refused_events_leave_the_session_working(
    start_server: StartServer, event: Event, code: str, param: str | None
) -> None:
    url = await start_server(**SIX)
    async with connect(url) as client:
        await client.add("Hello")
        error = await client.error(**event)
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            code,
            param,
        )
        assert error["message"]
        # Nothing refused reached the conversation: the reply reads "Hello" alone.
        reply = await client.respond()
        assert reply.usage["input_tokens"] == prompt_tokens("", "Hello")
        await client.works()


@pytest.mark.parametrize(
    ("text", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ("", "invalid_json", None),
        ("[1, 2]", "missing_required_parameter", "type"),
        ('{"event_id": "e1"}', "missing_required_parameter", "type"),
        ('{"type": 7}', "missing_required_parameter", "type"),
    ],
)
async def test_unreadable_events_leave_the_session_working(
    start_server: StartServer, text: str, code: str, param: str | None
) -> None:
    url = await start_server(**SIX)
    async with connect(url) as client:
        await client.send_text(text)
        error = (await client.expect("error"))["error"]
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            code,
            param,
        )
        await client.works()


async def test_one_active_response_at_a_time(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    slow = [(b"x-mock-ttft-ms", b"300")]  # the first is still active when the second comes
    async with connect(url, headers=slow) as client:
        await client.add("Hello")
        await client.send(type="response.create")
        created = await client.expect("response.created")
        await client.send(type="response.create", event_id="evt_second")
        events = await client.until("response.done")
        (error,) = [e["error"] for e in events if e["type"] == "error"]
        assert (error["code"], error["event_id"]) == (
            "conversation_already_has_active_response",
            "evt_second",
        )
        assert created["response"]["id"] in error["message"]
        rest = [e for e in events if e["type"] != "error"]
        first = check_reply([created, *rest], ga=False)
        assert (len(first.deltas), first.response["status"]) == (TOKENS, "completed")
        await client.works()


async def test_cancel_mid_stream(start_server: StartServer) -> None:
    url = await start_server()
    async with connect(url, headers=LONG) as client, http_client(url) as http:
        await client.add("Tell me a long story.")
        await client.send(type="response.create")
        events = [await client.expect("response.created")]
        while sum(e["type"] == "response.text.delta" for e in events) < 2:
            events.append(await client.next())
        # A cancel naming another response is refused, and changes nothing.
        await client.send(type="response.cancel", response_id="resp_other", event_id="evt_other")
        await client.send(type="response.cancel", response_id=events[0]["response"]["id"])
        events += await client.until("response.done")
        (error,) = [e["error"] for e in events if e["type"] == "error"]
        assert (error["code"], error["event_id"]) == ("response_cancel_not_active", "evt_other")
        reply = check_reply([e for e in events if e["type"] != "error"], ga=False)
        assert reply.response["status"] == "cancelled"
        assert reply.response["status_details"] == {
            "type": "cancelled",
            "reason": "client_cancelled",
        }
        assert 2 <= len(reply.deltas) < 200
        assert reply.usage["output_tokens"] == len(reply.deltas)  # a token a delta
        assert reply.response["output"][0]["status"] == "incomplete"
        (entry,) = await journal(http, 1)
        assert (entry["status"], entry["cut"], entry["disconnected"]) == (200, "cancelled", False)
        assert entry["plan"]["completion_tokens"] == 200
        assert len(entry["events"]) == len(reply.deltas)
        # The cancelled reply stays in the conversation as far as it went.
        await client.add("Go on.")
        after = await client.respond(max_output_tokens=1)  # LONG is for every response
        assert after.usage["input_tokens"] == prompt_tokens(
            "", "Tell me a long story.", reply.text, "Go on."
        )


async def test_cancel_without_an_id_cancels_the_active_one(start_server: StartServer) -> None:
    url = await start_server()
    async with connect(url, headers=LONG) as client:
        await client.add("Hello")
        await client.send(type="response.create")
        await client.expect("response.created")
        await client.send(type="response.cancel")
        done = (await client.until("response.done"))[-1]["response"]
        assert done["status"] == "cancelled"
        assert done["usage"]["output_tokens"] < 200
        error = await client.error(type="response.cancel")  # it is over now
        assert error["code"] == "response_cancel_not_active"


async def test_client_leaving_mid_response(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with http_client(url) as http:
        async with connect(url, headers=LONG) as client:
            await client.add("Hello")
            await client.send(type="response.create")
            for _ in range(MAX_EVENTS):
                if (await client.next())["type"] == "response.text.delta":
                    break
        (entry,) = await journal(http, 1)
        assert (entry["status"], entry["disconnected"], entry["cut"]) == (200, True, None)
        assert 1 <= len(entry["events"]) < 200
        assert (await http.get("/health")).json() == {"status": "ok"}
        async with connect(url) as client:
            await client.works()
        await journal(http, 2)
        samples = await scrape(http)
        assert value(samples, "trio_mock_client_disconnects_total", endpoint="/realtime") == 1
        assert value(samples, "trio_mock_requests_total", endpoint="/realtime") == 2


# --- the handshake ------------------------------------------------------------------------------


async def rejected(url: str, **kwargs: Any) -> tuple[int, dict[str, str], Event]:
    """A handshake the server refuses: its status, headers and JSON body."""
    with pytest.raises(ConnectionRejected) as caught:
        async with connect(url, **kwargs):
            pass
    status, raw = caught.value.status_code, caught.value.headers
    assert caught.value.body is not None
    body: Event = orjson.loads(caught.value.body)
    del caught
    # trio-websocket 0.12 drops a refused handshake's TCP stream without closing it: collect
    # it now, quietly, rather than have its ResourceWarning fail a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    headers = {k.decode().lower(): v.decode() for k, v in raw}
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return status, headers, body["error"]


async def test_api_keys_guard_the_handshake(start_server: StartServer) -> None:
    url = await start_server(api_keys=[KEY])
    status, headers, error = await rejected(url)
    assert (status, headers["content-type"]) == (401, "application/json")
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_api_key",
        None,
    )
    assert error["message"].startswith("You didn't provide an API key.")
    wrong = "sk-wrong-key-00000000"
    for kwargs in (
        {"headers": [(b"authorization", f"Bearer {wrong}".encode())]},
        {"subprotocols": ["realtime", f"openai-insecure-api-key.{wrong}"]},
    ):
        status, _, error = await rejected(url, **kwargs)
        assert (status, error["code"]) == (401, "invalid_api_key")
        assert error["message"].startswith("Incorrect API key provided: sk-")
        assert wrong not in error["message"]  # masked
    async with connect(url, headers=[(b"authorization", f"Bearer {KEY}".encode())]) as client:
        assert client.ws.subprotocol is None
        await client.works()
    async with connect(url, headers=[(b"api-key", KEY.encode())]) as client:
        await client.works()
    protocols = ["realtime", f"openai-insecure-api-key.{KEY}", "openai-beta.realtime-v1"]
    async with connect(url, subprotocols=protocols) as client:
        assert client.ws.subprotocol == "realtime"
        await client.works()


async def test_bad_mock_header_refuses_the_handshake(start_server: StartServer) -> None:
    url = await start_server()
    status, _, error = await rejected(url, headers=[(b"x-mock-ttft-ms", b"soon")])
    assert (status, error["type"]) == (400, "invalid_request_error")
    assert (error["code"], error["param"]) == ("invalid_header", "x-mock-ttft-ms")


@pytest.mark.parametrize("path", [PATH, "/realtime"])
async def test_plain_http_is_told_to_upgrade(start_server: StartServer, path: str) -> None:
    url = await start_server()
    async with http_client(url) as http:
        response = await http.get(path)
    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
    assert response.json()["error"]["code"] == "upgrade_required"


async def test_the_path_without_v1(start_server: StartServer) -> None:
    url = await start_server(**SIX, models=("trio-mock", "m2"))  # m2 keeps its metrics label
    async with connect(url, "/realtime?model=m2") as client, http_client(url) as http:
        await client.works()
        (entry,) = await journal(http, 1)
        assert (entry["endpoint"], entry["model"]) == ("/realtime", "m2")
        samples = await scrape(http)
        assert value(samples, "trio_mock_requests_total", endpoint="/realtime", model="m2") == 1


# --- dialects -----------------------------------------------------------------------------------

GA_SESSION = {"type": "realtime", "output_modalities": ["text"]}


async def test_ga_clients_get_ga_names(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with connect(url, "/v1/realtime?model=gpt-realtime") as client:
        await client.add("Hello")
        await client.respond()  # beta names until the client shows its dialect
        client.ga = True
        await client.send(type="session.update", session=GA_SESSION | {"max_output_tokens": 4})
        session = (await client.expect("session.updated"))["session"]
        assert (session["type"], session["model"]) == ("realtime", "gpt-realtime")
        assert (session["output_modalities"], session["max_output_tokens"]) == (["text"], 4)
        assert "modalities" not in session
        assert "voice" not in session
        reply = await client.respond()  # check_reply: response.output_text.* this time
        assert (len(reply.deltas), reply.response["status"]) == (4, "incomplete")
        await client.send(type="session.update", session={"max_output_tokens": "inf"})
        await client.expect("session.updated")
        await client.works()


async def test_beta_header_keeps_beta_names(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with connect(url, headers=[(b"openai-beta", b"realtime=v1")]) as client:
        await client.send(type="session.update", session=GA_SESSION)
        session = (await client.expect("session.updated"))["session"]
        assert (session["modalities"], session["voice"]) == (["text"], "alloy")
        assert "type" not in session
        await client.works()  # check_reply: response.text.*


async def test_ga_events_match_the_spec_strictly(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with connect(url) as client:
        client.ga = True
        await client.send(type="session.update", session=GA_SESSION)
        await client.expect("session.updated")
        await client.add("Hello")
        await client.send(type="response.create")
        for event in await client.until("response.done"):
            validate(*spec_view(event, ga=True, strict=True))


async def test_an_update_without_type_keeps_beta(start_server: StartServer) -> None:
    """A session stays beta after an update without a type."""
    url = await start_server(**SIX)
    async with connect(url) as client:
        await client.send(type="session.update", session={"instructions": "Hi."})
        assert "type" not in (await client.expect("session.updated"))["session"]
        await client.works()


async def test_a_refused_ga_update_changes_nothing(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with connect(url) as client:
        error = await client.error(type="session.update", session=GA_SESSION | {"bogus": 1})
        assert error["code"] == "unknown_parameter"
        await client.send(type="session.update", session={})
        assert (await client.expect("session.updated"))["session"] == client.session


async def test_conversation_id(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with connect(url) as client:
        await client.add("Hello")
        reply = await client.respond()
        assert str(reply.response["conversation_id"]).startswith("conv_")
        aside = await client.respond(in_band=False, conversation="none")
        assert aside.response["conversation_id"] is None


# --- scripts, runtime config, metrics -----------------------------------------------------------


async def test_scripted_rules_answer_responses(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    rules = [
        {"name": "chat only", "match": {"endpoint": "chat"}, "reply": {"content": "Wrong."}},
        {
            "name": "weather",
            "match": {"endpoint": "realtime", "text": "weather"},
            "reply": {"content": "Sunny all day."},
        },
        {
            "name": "refusal",
            "match": {"endpoint": "/v1/realtime", "text": "fail"},
            "times": 1,
            "reply": {
                "error": {"status": 429, "code": "rate_limit_exceeded", "message": "Slow down."}
            },
        },
    ]
    async with http_client(url) as http, connect(url) as client:
        assert (await http.post("/_mock/scripts", json=rules)).status_code == 200
        await client.add("What's the weather?")
        reply = await client.respond()
        assert reply.text == "Sunny all day."
        assert reply.usage["output_tokens"] == tokens("Sunny all day.")
        await client.add("Now fail, please.")
        await client.send(type="response.create", event_id="evt_fail")
        error = (await client.expect("error"))["error"]
        assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")  # as HTTP
        assert (error["message"], error["event_id"]) == ("Slow down.", "evt_fail")
        await client.add("And a story?")  # no rule matches: generated text
        generated = await client.respond()
        assert len(generated.deltas) == TOKENS
        assert generated.text != "Wrong."
        entries = await journal(http, 3)
        assert [e["rule"] for e in entries] == ["weather", "refusal", None]
        assert [e["status"] for e in entries] == [200, 429, 200]
        assert entries[1]["error"]["code"] == "rate_limit_exceeded"
        listed = (await http.get("/_mock/scripts")).json()["data"]
        assert [r["hits"] for r in listed] == [0, 1, 1]
        samples = await scrape(http)
        assert value(samples, "trio_mock_requests_total", endpoint="/realtime", status="429") == 1


async def test_runtime_config_reaches_an_open_session(start_server: StartServer) -> None:
    url = await start_server(**SIX)
    async with http_client(url) as http, connect(url) as client:
        await client.add("Hello")
        assert len((await client.respond()).deltas) == TOKENS
        changed = await http.patch("/_mock/config", json={"output_tokens_mean": 3})
        assert changed.status_code == 200, changed.text
        assert len((await client.respond()).deltas) == 3


async def test_metrics_count_realtime_responses(start_server: StartServer) -> None:
    url = await start_server(**SIX, models=("trio-mock", "rt"))  # rt keeps its metrics label
    async with http_client(url) as http:
        async with connect(url, "/v1/realtime?model=rt") as client:
            await client.add("Hello")
            replies = [await client.respond(), await client.respond()]
        await journal(http, 2)  # both recorded
        samples = await scrape(http)
    assert by_label(samples, "trio_mock_requests_total", "endpoint", "model", "status") == {
        ("/realtime", "rt", "200"): 2
    }
    sent = sum(r.usage["output_tokens"] for r in replies)
    read = sum(r.usage["input_tokens"] for r in replies)
    assert value(samples, "trio_mock_generation_tokens_total", endpoint="/realtime") == sent
    assert value(samples, "trio_mock_prompt_tokens_total", endpoint="/realtime") == read


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    return parse(response.text)


# --- under MockClock: the app's ASGI entry point in memory ------------------------------------


class Wire(Peer):
    """The app's end of one WebSocket, in memory: no socket, so MockClock stays exact. The
    test plays the client (and the server, for the handshake); ``at`` holds when each
    event left the app."""

    def __init__(self) -> None:
        self.inbox_send, self.inbox = trio.open_memory_channel[Message](16)
        self.outbox_send, self.outbox = trio.open_memory_channel[tuple[float, Message]](256)
        self.at: dict[str, float] = {}
        self.last_at = 0.0

    async def send_text(self, text: str) -> None:
        await self.inbox_send.send({"type": "websocket.receive", "text": text})

    async def message(self) -> Message:
        """The app's next ASGI message (virtual time: a stall fails at once)."""
        with trio.fail_after(3600):
            at, message = await self.outbox.receive()
        self.last_at = at
        return message

    async def receive(self) -> Event:
        message = await self.message()
        assert message["type"] == "websocket.send", message
        event: Event = orjson.loads(message["text"])
        self.at[event["event_id"]] = self.last_at
        return event

    def times(self, events: Sequence[Event], since: float) -> list[float]:
        return [self.at[e["event_id"]] - since for e in events]


@asynccontextmanager
async def open_wire(
    app: QuartTrio,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    http_response: bool = True,
) -> AsyncGenerator[Wire, None]:
    """The app serving one WebSocket, handshake not yet read; the client leaves on exit."""
    wire = Wire()
    extensions: dict[str, Any] = {"websocket.http.response": {}} if http_response else {}
    scope: Message = {
        "type": "websocket",
        "path": PATH,
        "headers": list(headers),
        "query_string": b"",
        "subprotocols": [],
        "extensions": extensions,
    }

    async def send(message: Message) -> None:
        await wire.outbox_send.send((trio.current_time(), message))

    async def serve() -> None:
        async with wire.outbox_send:  # closed when the app returns
            await cast("ASGIApp", app)(scope, wire.inbox.receive, send)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        await wire.inbox_send.send({"type": "websocket.connect"})
        try:
            yield wire
            await wire.inbox_send.send({"type": "websocket.disconnect", "code": 1000})
            with trio.fail_after(3600):
                async for _ in wire.outbox:  # what the app still sends, until it returns
                    pass
        finally:
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def session(
    app: QuartTrio, headers: Sequence[tuple[bytes, bytes]] = ()
) -> AsyncGenerator[Wire, None]:
    async with open_wire(app, headers) as wire:
        assert (await wire.message())["type"] == "websocket.accept"
        await wire.expect("session.created")
        yield wire


def deltas_of(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if e["type"] == "response.text.delta"]


class Timed(NamedTuple):
    reply: Reply
    at: list[float]  # when each of its events left, from response.create

    @property
    def deltas(self) -> list[float]:
        return [t for t, e in zip(self.at, self.reply.events, strict=True) if "delta" in e]


async def timed_reply(wire: Wire, **response: Any) -> Timed:
    """A response, and when each of its events left the app."""
    start = trio.current_time()
    reply = await wire.respond(**response)
    return Timed(reply, wire.times(reply.events, start))


async def in_memory_journal(app: QuartTrio) -> list[Event]:
    answer = await call(app, "/_mock/requests", method="GET")
    assert answer.status == 200
    entries: list[Event] = answer.json()["data"]
    return entries


async def test_deltas_follow_the_upgrade_headers(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(ttft_ms=5000, ttft_jitter_ms=900, itl_ms=500, itl_jitter_ms=90))
    headers = [
        (b"x-mock-ttft-ms", b"250"),
        (b"x-mock-itl-ms", b"40"),
        (b"x-mock-output-tokens", b"5"),
    ]
    async with session(app, headers) as wire:
        await trio.sleep(1.0)  # the schedule counts from response.create, not the connect
        await wire.add("Hello")
        for _ in range(2):  # every response of the session
            timed = await timed_reply(wire)
            assert timed.at[:4] == [0.0] * 4  # created, item added, item created, part added
            assert timed.deltas == pytest.approx(on_schedule(5, 0.25, 0.04), abs=1e-9)
            assert timed.at[-4:] == pytest.approx([timed.deltas[-1]] * 4, abs=1e-9)
            await trio.sleep(2.0)
    entries = await in_memory_journal(app)
    assert [e["plan"]["ttft_ms"] for e in entries] == pytest.approx([250.0, 250.0])
    assert [e["plan"]["itl_ms"] for e in entries] == pytest.approx([40.0, 40.0])
    for entry in entries:
        due = [e["due_ms"] for e in entry["events"]]
        assert due == pytest.approx(on_schedule(5, 250, 40), abs=1e-6)
        assert [e["sent_ms"] for e in entry["events"]] == pytest.approx(due, abs=1e-6)
        assert entry["timing"]["admitted_ms"] == 0.0


async def test_deltas_follow_the_settings(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(**EXACT, ttft_ms=100, itl_ms=10))
    async with session(app) as wire:
        await wire.add("Hello")
        timed = await timed_reply(wire)
        assert timed.deltas == pytest.approx(on_schedule(TOKENS, 0.1, 0.01), abs=1e-9)


async def test_prompt_tokens_cost_prefill_time(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(**EXACT, ttft_ms=100, itl_ms=10, prefill_ms_per_token=10))
    async with session(app) as wire:
        text = "The quick brown fox jumps over the lazy dog."
        await wire.add(text)
        timed = await timed_reply(wire, instructions="Be brief.")
        prompt = prompt_tokens("Be brief.", text)
        assert timed.reply.usage["input_tokens"] == prompt
        assert timed.deltas[0] == pytest.approx(0.1 + 0.01 * prompt, abs=1e-9)


async def test_a_queued_response_counts_from_admission(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(**EXACT, ttft_ms=100, itl_ms=100, max_concurrency=1))
    async with session(app) as first, session(app) as second, trio.open_nursery() as nursery:
        await first.add("Hello")
        await second.add("Hello")
        nursery.start_soon(first.respond)  # holds the only slot until its last token
        await trio.sleep(0.05)
        timed = await timed_reply(second)
        waited = 0.1 + 0.1 * (TOKENS - 1) - 0.05
        assert timed.at[0] == pytest.approx(waited)  # response.created once admitted
        assert timed.deltas == pytest.approx(on_schedule(TOKENS, waited + 0.1, 0.1), abs=1e-9)
    entries = await in_memory_journal(app)
    assert entries[1]["timing"]["admitted_ms"] == pytest.approx(waited * 1000)


async def test_a_full_queue_is_an_error_event(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(
        fast_settings(**EXACT, ttft_ms=100, itl_ms=100, max_concurrency=1, max_queue=0)
    )
    async with session(app) as first, session(app) as second, trio.open_nursery() as nursery:
        nursery.start_soon(first.respond)
        await trio.sleep(0.05)
        error = await second.error(type="response.create")
        assert (error["type"], error["code"]) == ("server_error", "server_overloaded")
        await trio.sleep(1)
        await second.works()
    entries = await in_memory_journal(app)
    assert [e["status"] for e in entries] == [503, 200, 200]  # in the order they ended


async def test_cancel_stops_the_schedule(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(**EXACT | {"output_tokens_mean": 10}, ttft_ms=100, itl_ms=20))
    async with session(app) as wire:
        await wire.add("Hello")
        start = trio.current_time()
        await wire.send(type="response.create")
        await trio.sleep(0.145)  # deltas went at 0.10, 0.12 and 0.14
        await wire.send(type="response.cancel")
        reply = check_reply(await wire.until("response.done"), ga=False)
        assert wire.times(deltas_of(reply.events), start) == pytest.approx(
            on_schedule(3, 0.1, 0.02), abs=1e-9
        )
        assert wire.times(reply.events, start)[-1] == pytest.approx(0.145)
        assert (reply.response["status"], reply.usage["output_tokens"]) == ("cancelled", 3)
        await wire.works()
    cancelled, _ = await in_memory_journal(app)
    assert (cancelled["cut"], cancelled["status"]) == ("cancelled", 200)
    assert [e["sent_ms"] for e in cancelled["events"]] == pytest.approx([100, 120, 140])
    assert cancelled["timing"]["ended_ms"] == pytest.approx(145)


async def test_cancel_of_a_queued_response_is_prompt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(**EXACT, ttft_ms=100, itl_ms=1000, max_concurrency=1))
    async with session(app) as first, session(app) as second, trio.open_nursery() as nursery:
        nursery.start_soon(first.respond)  # holds the only slot for 5.1 s
        await trio.sleep(0.05)
        start = trio.current_time()
        await second.send(type="response.create")
        await trio.sleep(0.5)
        await second.send(type="response.cancel")
        events = await second.until("response.done")
        assert second.times(events, start)[-1] == pytest.approx(0.5)
        assert events[-1]["response"]["status"] == "cancelled"


async def test_leaving_mid_response_is_journaled(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(**EXACT | {"output_tokens_mean": 10}, ttft_ms=100, itl_ms=20))
    async with session(app) as wire:
        await wire.add("Hello")
        await wire.send(type="response.create")
        await trio.sleep(0.145)
    (entry,) = await in_memory_journal(app)
    assert (entry["status"], entry["disconnected"], entry["cut"]) == (200, True, None)
    assert [e["sent_ms"] for e in entry["events"]] == pytest.approx([100, 120, 140])
    assert entry["timing"]["ended_ms"] == pytest.approx(145)


async def test_scripted_latency(autojump_clock: trio.testing.MockClock) -> None:
    app = create_app(fast_settings(**EXACT, ttft_ms=100, itl_ms=10))
    rule = {
        "match": {"endpoint": "realtime"},
        "reply": {"ttft_ms": 500, "itl_ms": 50, "output_tokens": 3},
    }
    assert (await call(app, "/_mock/scripts", rule)).status == 200
    async with session(app) as wire:
        await wire.add("Hello")
        timed = await timed_reply(wire)
        assert timed.deltas == pytest.approx(on_schedule(3, 0.5, 0.05), abs=1e-9)
    async with session(app, [(b"x-mock-itl-ms", b"10")]) as wire:  # the client's own wins
        await wire.add("Hello")
        timed = await timed_reply(wire)
        assert timed.deltas == pytest.approx(on_schedule(3, 0.5, 0.01), abs=1e-9)


async def test_runtime_change_reaches_the_next_response(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(**EXACT, ttft_ms=100, itl_ms=10))
    async with session(app) as wire:
        await wire.add("Hello")
        timed = await timed_reply(wire)
        assert timed.deltas == pytest.approx(on_schedule(TOKENS, 0.1, 0.01), abs=1e-9)
        changed = await call(
            app,
            "/_mock/config",
            {"ttft_ms": 300, "itl_ms": 30, "output_tokens_mean": 4},
            method="PATCH",
        )
        assert changed.status == 200, changed.body
        timed = await timed_reply(wire)
        assert timed.deltas == pytest.approx(on_schedule(4, 0.3, 0.03), abs=1e-9)


async def test_a_change_leaves_a_running_response_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    app = create_app(fast_settings(**EXACT, ttft_ms=100, itl_ms=10))
    async with session(app) as wire:
        await wire.add("Hello")
        start = trio.current_time()
        await wire.send(type="response.create")
        await trio.sleep(0.105)
        changed = await call(app, "/_mock/config", {"itl_ms": 500}, method="PATCH")
        assert changed.status == 200
        reply = check_reply(await wire.until("response.done"), ga=False)
        assert wire.times(deltas_of(reply.events), start) == pytest.approx(
            on_schedule(TOKENS, 0.1, 0.01), abs=1e-9
        )


@pytest.mark.parametrize(
    ("http_response", "expected"),
    [
        (True, [{"type": "websocket.http.response.start", "status": 401}]),
        (False, [{"type": "websocket.close", "code": 1008}]),
    ],
)
async def test_a_refused_handshake_in_asgi_terms(
    autojump_clock: trio.testing.MockClock, http_response: bool, expected: list[Message]
) -> None:
    """The OpenAI error body where the server can send one (ASGI's websocket.http.response
    extension), else a policy-violation close."""
    app = create_app(fast_settings(api_keys=[KEY]))
    async with open_wire(app, http_response=http_response) as wire:
        first = await wire.message()
        assert {k: first[k] for k in expected[0]} == expected[0]
        if http_response:
            assert (b"content-type", b"application/json") in first["headers"]
            body = await wire.message()
            assert body["type"] == "websocket.http.response.body"
            assert orjson.loads(body["body"])["error"]["code"] == "invalid_api_key"


# --- the official SDK, both dialects --------------------------------------------------------


class Watchdog:
    """Closes a sync SDK connection after ``WAIT_S`` so a silent server fails the test
    (its ``recv`` takes no timeout)."""

    def __init__(self, close: Any) -> None:
        self.timer = threading.Timer(WAIT_S, close)

    def __enter__(self) -> None:
        self.timer.start()

    def __exit__(self, *_: object) -> None:
        self.timer.cancel()


def sdk_events(recv: Any, last: str) -> Iterator[Any]:
    for _ in range(MAX_EVENTS):
        event = recv()
        yield event
        if event.type == last:
            return
    raise AssertionError(f"no {last} in {MAX_EVENTS} events")


def test_sdk_ga() -> None:
    with MockServer(**FAST, **SIX) as server:
        client = openai.OpenAI(base_url=server.url, api_key="sk-test", max_retries=0)
        with (
            client,
            client.realtime.connect(model="gpt-realtime") as connection,
            Watchdog(connection.close),
        ):
            connection.session.update(session={"type": "realtime", "output_modalities": ["text"]})
            connection.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Say hello."}],
                }
            )
            connection.response.create()
            events = list(sdk_events(connection.recv, "response.done"))
        entries = server.requests()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["session.created", "session.updated"]
    assert isinstance(events[1], RealtimeSessionUpdated)
    deltas = [e.delta for e in events if isinstance(e, RealtimeTextDelta)]
    (done,) = [e for e in events if isinstance(e, RealtimeTextDone)]
    (finished,) = [e for e in events if isinstance(e, RealtimeResponseDone)]
    assert kinds.count("response.output_text.delta") == len(deltas) == TOKENS
    assert "response.text.delta" not in kinds
    response = finished.response
    (item,) = response.output or []
    assert isinstance(item, RealtimeAssistantMessage)
    assert "".join(deltas) == done.text == item.content[0].text
    usage = response.usage
    assert usage is not None
    prompt = prompt_tokens("", "Say hello.")
    counts = (usage.input_tokens, usage.output_tokens, usage.total_tokens)
    assert counts == (prompt, TOKENS, prompt + TOKENS)
    assert response.status == "completed"
    assert [(e["endpoint"], e["model"]) for e in entries] == [(PATH, "gpt-realtime")]


def test_sdk_beta() -> None:
    with MockServer(**FAST, **SIX) as server:
        client = openai.OpenAI(
            base_url=server.url,
            api_key="sk-test",
            max_retries=0,
            websocket_base_url=server.url.replace("http", "ws", 1),
        )
        with (
            client,
            client.beta.realtime.connect(model="gpt-4o-realtime-preview") as connection,
            Watchdog(connection.close),
        ):
            connection.session.update(session={"modalities": ["text"], "instructions": "Hi."})
            connection.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Say hello."}],
                }
            )
            connection.response.create()
            events = list(sdk_events(connection.recv, "response.done"))
        entries = server.requests()
    kinds = [e.type for e in events]
    assert "response.output_text.delta" not in kinds
    deltas = [e.delta for e in events if isinstance(e, BetaTextDelta)]
    (done,) = [e for e in events if isinstance(e, BetaTextDone)]
    (finished,) = [e for e in events if isinstance(e, BetaResponseDone)]
    assert kinds.count("response.text.delta") == len(deltas) == TOKENS
    (item,) = finished.response.output or []
    assert item.content is not None
    assert "".join(deltas) == done.text == item.content[0].text
    usage = finished.response.usage
    assert usage is not None
    prompt = prompt_tokens("Hi.", "Say hello.")
    counts = (usage.input_tokens, usage.output_tokens, usage.total_tokens)
    assert counts == (prompt, TOKENS, prompt + TOKENS)
    assert [(e["endpoint"], e["model"]) for e in entries] == [(PATH, "gpt-4o-realtime-preview")]
