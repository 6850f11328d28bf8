"""One request's exchange, decided before a byte of the answer goes out.

A generation request passes its stages (body, key, scripted rule, the handler's plan, rate
limit, fault, admission: ``_serve._exchange``); together they make one ``Exchange``,
immutable: a refusal, or a reply with when it is due. The transport (``_serve._endpoint``)
plays it, and the journal notes it in one call (``_observe._observer``). Pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from attrs import frozen

from .._config._faults import CUTS
from ._frames import Planned

if TYPE_CHECKING:
    from .._config._faults import Fault
    from .._sim._engine import Engine, Seq
    from ._errors import OpenAIError

Headers = tuple[tuple[bytes, bytes], ...]
Reply = TypeVar("Reply", bound=Planned)  # an HTTP endpoint's, or a Realtime response's


@frozen(kw_only=True)
class Exchange(Generic[Reply]):
    """A request, planned. Times are the server's clock (``trio.current_time()``)."""

    headers: Headers = ()  # the answer's own: request id, rule, fault, rate limits, the plan
    start: float  # arrival: the TTFT and the time limit count from here
    model: str | None = None
    rule: str | None = None  # the scripted rule that matched, as the journal names it
    recording: str | None = None  # the cassette's ``file:line`` that answered
    fault: Fault | None = None
    refusal: OpenAIError | None = None  # answered at once with this error ...
    reply: Reply | None = None  # ... or with this reply, on its schedule
    admitted: float = 0.0  # the schedule's start: arrival, later after a queue or slow headers
    ttft_scale: float = 1.0  # the load model's stretch of the first token, fixed at admission
    limit: float = 0.0  # when the request's time is up
    http2: bool = False
    # The plan, as the client is told it (``plan_headers``) and the journal keeps it:
    planned_ttft_s: float = 0.0  # the first token's moment after arrival (the queue included)
    planned_itl_s: float = 0.0  # the mean gap between the first choice's token events
    planned_events: int = 0  # token events, over all choices
    # The batched engine its choices run in, one sequence each (none: the simple engine).
    engine: Engine | None = None
    sequences: tuple[Seq, ...] = ()

    @property
    def cutting_fault(self) -> Fault | None:
        """The fault, when it cuts the reply (``disconnect``, ``error``, ``stall``)."""
        fault = self.fault
        return fault if fault is not None and fault.kind in CUTS else None


def planned_times(
    reply: Planned, start: float, admitted: float, ttft_scale: float
) -> tuple[float, float, int]:
    """A reply's planned TTFT from arrival, mean ITL and token events (``Exchange``'s
    ``planned_*``), read off its offsets once."""
    offsets = reply.offsets
    first = offsets[0] if offsets else ()
    ttft_s = admitted - start + (first[0] * ttft_scale if first else 0.0)
    itl_s = (first[-1] - first[0]) / (len(first) - 1) if len(first) > 1 else 0.0
    return ttft_s, itl_s, sum(map(len, offsets))


def plan_headers(reply: Planned, ttft_s: float, itl_s: float) -> Headers:
    """The plan, told to the client (``x-mock-ttft-ms`` counts from arrival)."""
    return (
        (b"x-mock-ttft-ms", b"%.3f" % (ttft_s * 1000)),
        (b"x-mock-itl-ms", b"%.3f" % (itl_s * 1000)),
        (b"x-mock-prompt-tokens", b"%d" % reply.prompt_tokens),
        (b"x-mock-output-tokens", b"%d" % reply.completion_tokens),
    )
