"""The batched engine (``--engine batched``): one simulated vLLM-like engine per model,
stepping in time, from which each stream's token deadlines are read.

Pure and sans-IO, no trio: a discrete-event simulation evaluated lazily. A request joins
with its arrival, its prompt (less what the prefix cache holds) and its output length;
asking for the moment of a sequence's k-th token runs the simulation just far enough.
Each step starts when the previous one ended (when idle: at the next arrival) and takes
its batch as it stands then, as vLLM's scheduler does: the running sequences first (a
decode token each, or their next prefill chunk), then the waiting ones in arrival order,
up to ``max_num_seqs`` sequences and ``max_num_batched_tokens`` tokens (chunked prefill).
A step lasts ``step_s`` and ends with one token for each sequence whose prefill is done.

A step is fixed once computed; a request that arrives after that joins the next one, as
with vLLM's asynchronous scheduling, where the next batch is chosen while a step runs.

KV pressure: a running sequence holds ``(prompt + generated) // block_size + 1`` blocks.
When the running sequences need more than the cache's blocks, the newest is preempted:
back to the front of the queue, its blocks freed, and its prompt and output so far
prefilled again when it is readmitted (vLLM's recompute policy), which shows as a gap.
"""

from __future__ import annotations

import collections
import math
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from attrs import frozen

if TYPE_CHECKING:
    from .._config._settings import LatencySettings

# Client-chosen model names each get an engine: past this many, the least recently used
# model's engine is dropped (its streams keep the one they hold).
MAX_MODELS = 8


@frozen(kw_only=True)
class EngineProfile:
    """The step-time curve and the scheduler's limits (the README's "Batched engine").

    ``step_s(P, B) = itl_s + prefill_s_per_token * P + seq_s * (min(B, knee) - 1)
    + past_knee_s * max(B - knee, 0)`` for a step of ``B`` sequences that prefills ``P``
    tokens: a lone decode step is ``itl_s``; below the knee a step is memory-bound and
    each sequence adds little, past it compute-bound and each adds more.
    """

    itl_s: float
    prefill_s_per_token: float
    seq_s: float
    knee: int
    past_knee_s: float
    max_num_seqs: int
    max_batched_tokens: int
    kv_blocks: int = 0  # 0: no limit, no preemption
    block_size: int = 16

    def step_s(self, prefill_tokens: int, seqs: int) -> float:
        below = min(seqs, self.knee)
        past = seqs - self.knee if seqs > self.knee else 0
        return (
            self.itl_s
            + self.prefill_s_per_token * prefill_tokens
            + self.seq_s * (below - 1 if below > 1 else 0)
            + self.past_knee_s * past
        )


class Seq:
    """One sequence (a choice of a request) in an engine: what it still has to prefill,
    the moments of its tokens so far, and what the journal tells of it."""

    __slots__ = (
        "admitted_at",
        "arrival",
        "blocks",
        "decode_steps",
        "done",
        "generated",
        "output",
        "preemptions",
        "prefill_steps",
        "prompt",
        "to_prefill",
        "token_times",
    )

    def __init__(self, arrival: float, prompt: int, uncached: int, output: int) -> None:
        self.arrival = arrival
        self.prompt = prompt  # all of it holds KV blocks, cached or not
        self.to_prefill = max(uncached, 1)  # vLLM recomputes at least the last token
        self.output = output
        self.generated = 0
        self.blocks = 0  # held while running
        self.token_times = array("d")
        self.done = False  # finished generating, or released
        self.admitted_at: float | None = None  # the first step it ran in began
        self.prefill_steps = self.decode_steps = self.preemptions = 0

    def summary(self) -> dict[str, object]:
        """What the journal keeps of it."""
        return {
            "queue_s": None if self.admitted_at is None else self.admitted_at - self.arrival,
            "prefill_steps": self.prefill_steps,
            "decode_steps": self.decode_steps,
            "preemptions": self.preemptions,
        }


class Engine:
    """One model's engine: waiting and running sequences, and where its clock stands."""

    def __init__(self, profile: EngineProfile) -> None:
        self.profile = profile
        self.waiting: collections.deque[Seq] = collections.deque()
        self.running: list[Seq] = []
        self.clock = -math.inf  # when the last computed step ended
        self.used_blocks = 0
        self.joined = 0
        self.steps = 0
        self.preemptions = 0
        self.batch = 0  # sequences in the last step
        self.prefilling = 0  # running sequences with prefill left
        # A decode-only step's time by batch size: the common step, looked up, not computed.
        self.decode_s = [profile.step_s(0, b) for b in range(profile.max_num_seqs + 1)]

    def join(self, arrival: float, prompt: int, uncached: int, output: int) -> Seq:
        """A new sequence, waiting from ``arrival``."""
        seq = Seq(arrival, prompt, uncached, output)
        self.joined += 1
        if output > 0:
            self.waiting.append(seq)
        else:
            seq.done = True
        return seq

    def token_at(self, seq: Seq, k: int) -> float:
        """When ``seq``'s ``k``-th token (from 1) comes out: the end of its step."""
        times = seq.token_times
        while len(times) < k:
            if seq.done:
                return math.inf  # released: never due
            if not self.profile.kv_blocks and self.decodes_only():
                self.decode_run(seq, k)
            elif not self.step():
                return math.inf  # (a bug) never scheduled: never due
        return times[k - 1]

    def decode_run(self, seq: Seq, k: int) -> None:
        """``decode_step`` repeated in one loop until ``seq``'s ``k``-th token, a
        sequence's last, or the step that someone waiting joins: the same steps, for less
        (the common case: a few streams decoding, or a mock whose steps outrun arrivals).
        Only without a KV limit, whose blocks each step would have to grow."""
        running, waiting = self.running, self.waiting
        joins_at = waiting[0].arrival if waiting else math.inf
        step_s = self.decode_s[len(running)]
        clock, times, count = self.clock, seq.token_times, 0
        ended = False
        while len(times) < k and not ended:
            clock += step_s
            count += 1
            ended = self.decoded(clock)
            if clock >= joins_at:  # the next step starts once it has arrived: it joins
                break
        self.clock = clock
        self.steps += count
        self.batch = len(running)
        if ended:
            self.finish_ended()

    def decoded(self, end: float) -> bool:
        """Every running sequence's next token, at ``end``; whether one has its last."""
        ended = False
        for seq in self.running:
            seq.token_times.append(end)
            seq.generated += 1
            seq.decode_steps += 1
            if seq.generated >= seq.output:
                ended = True
        return ended

    def finish_ended(self) -> None:
        for seq in [s for s in self.running if s.generated >= s.output]:
            self.finish(seq)

    def finish(self, seq: Seq) -> None:
        """Release ``seq`` (its stream ended or its client left): its blocks are freed."""
        if seq.done:
            return
        seq.done = True
        if seq.blocks:
            if seq.to_prefill:
                self.prefilling -= 1
            self.running.remove(seq)
            self.used_blocks -= seq.blocks
            seq.blocks = 0
        else:
            self.waiting.remove(seq)

    def release(self, sequences: Iterable[Seq]) -> None:
        """A request's sequences leave: its answer ended, its client left, or it was cut."""
        for seq in sequences:
            self.finish(seq)

    def deadlines(
        self, seq: Seq, ends: Sequence[int], on_first: Callable[[], None] | None = None
    ) -> Iterator[float]:
        """The deadline of each event that carries ``seq``'s tokens up to ``ends[i]``,
        computed lazily (as the previous event goes out); ``on_first`` is called once the
        first has come."""
        token_at = self.token_at
        it = iter(ends)
        for end in it:
            yield token_at(seq, end)
            break
        if on_first is not None:
            on_first()
        for end in it:
            yield token_at(seq, end)

    def blocks_for(self, seq: Seq) -> int:
        return (seq.prompt + seq.generated) // self.profile.block_size + 1

    def step(self) -> bool:
        """Compute the next step; False when no sequence is left to run."""
        if self.decodes_only():
            self.decode_step()
            return True
        return self.mixed_step()

    def decodes_only(self) -> bool:
        """Whether the next step only decodes: nothing prefills, and no one waiting can
        join (none has arrived by its start, or the batch is full)."""
        waiting = self.waiting
        return (
            bool(self.running)
            and not self.prefilling
            and (
                not waiting
                or waiting[0].arrival > self.clock
                or len(self.running) >= self.profile.max_num_seqs
            )
        )

    def decode_step(self) -> None:
        """A step in which every running sequence decodes and none joins (the common one,
        so it is kept short: about 0.3 us a sequence)."""
        running = self.running
        end = self.clock + self.decode_s[len(running)]
        self.clock = end
        self.steps += 1
        self.batch = len(running)
        if self.decoded(end):
            self.finish_ended()
        kv = self.profile.kv_blocks
        if kv:
            for seq in running:
                self.grow(seq)
            if self.used_blocks > kv:
                self.preempt_over(kv)

    def mixed_step(self) -> bool:
        """A step that prefills: chunks of running prompts, and waiting sequences admitted."""
        profile = self.profile
        running, waiting = self.running, self.waiting
        if not running:
            if not waiting:
                return False
            start = max(self.clock, waiting[0].arrival)
        else:
            start = self.clock
        kv = profile.kv_blocks
        budget = profile.max_batched_tokens
        prefill = 0
        batch: list[Seq] = []
        for seq in running:
            if budget <= 0:
                break
            chunk = min(seq.to_prefill, budget) if seq.to_prefill else 1
            budget -= chunk
            if seq.to_prefill:
                prefill += chunk
                seq.to_prefill -= chunk
                seq.prefill_steps += 1
            else:
                seq.decode_steps += 1
            batch.append(seq)
        while (
            waiting
            and budget > 0
            and len(running) < profile.max_num_seqs
            and waiting[0].arrival <= start
        ):
            seq = waiting[0]
            need = self.blocks_for(seq)
            if kv and self.used_blocks + need > kv:
                break
            waiting.popleft()
            seq.blocks = need
            self.used_blocks += need
            if seq.admitted_at is None:
                seq.admitted_at = start
            chunk = min(seq.to_prefill, budget)
            budget -= chunk
            prefill += chunk
            seq.to_prefill -= chunk
            seq.prefill_steps += 1
            running.append(seq)
            batch.append(seq)
        if not batch:  # never: a sequence too big for the cache alone is refused
            return False
        end = start + profile.step_s(prefill, len(batch))
        self.clock = end
        self.steps += 1
        self.batch = len(batch)
        for seq in batch:
            if seq.to_prefill:
                continue  # a chunk of its prefill: no token yet
            seq.token_times.append(end)
            seq.generated += 1
            if seq.generated >= seq.output:
                self.finish(seq)
            else:
                self.grow(seq)
        if kv and self.used_blocks > kv:
            self.preempt_over(kv)
        self.prefilling = sum(1 for seq in running if seq.to_prefill)
        return True

    def grow(self, seq: Seq) -> None:
        need = self.blocks_for(seq)
        if need != seq.blocks:
            self.used_blocks += need - seq.blocks
            seq.blocks = need

    def preempt_over(self, kv: int) -> None:
        """Preempt the newest running sequences until the rest fit the cache."""
        running = self.running
        while self.used_blocks > kv and len(running) > 1:
            self.preempt(running.pop())

    def preempt(self, seq: Seq) -> None:
        """``seq``, just taken off the running list, goes back to the front of the queue;
        its prompt and output so far are prefilled again when it is readmitted."""
        self.used_blocks -= seq.blocks
        seq.blocks = 0
        if seq.to_prefill:
            self.prefilling -= 1
        seq.to_prefill = seq.prompt + seq.generated
        seq.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(seq)

    @property
    def usage(self) -> float:
        """The share of the cache's blocks the running sequences hold, 0 to 1."""
        kv = self.profile.kv_blocks
        return self.used_blocks / kv if kv else 0.0


class Engines:
    """An ``Engine`` per model, at most ``MAX_MODELS`` of them."""

    def __init__(self, profile: EngineProfile) -> None:
        self.profile = profile
        self.engines: collections.OrderedDict[str, Engine] = collections.OrderedDict()
        self.dropped_preemptions = 0  # of engines dropped: the counter never goes back

    def __getitem__(self, model: str) -> Engine:
        engine = self.engines.get(model)
        if engine is None:
            engine = self.engines[model] = Engine(self.profile)
            if len(self.engines) > MAX_MODELS:
                _, old = self.engines.popitem(last=False)
                self.dropped_preemptions += old.preemptions
        else:
            self.engines.move_to_end(model)
        return engine

    def fits(self, tokens: int) -> bool:
        """Whether a sequence of ``tokens`` (prompt and output) fits the cache alone."""
        kv = self.profile.kv_blocks
        return not kv or tokens // self.profile.block_size + 1 <= kv

    @property
    def usage(self) -> float:
        """The fullest engine's KV usage."""
        return max((e.usage for e in self.engines.values()), default=0.0)

    @property
    def batch(self) -> int:
        """Sequences in the last step, over every model's engine."""
        return sum(e.batch if e.running else 0 for e in self.engines.values())

    @property
    def preemptions(self) -> int:
        return self.dropped_preemptions + sum(e.preemptions for e in self.engines.values())


def engines_for(latency: LatencySettings) -> Engines | None:
    """The batched engines the settings ask for (None: the simple engine). Their KV cache
    is the prefix cache's blocks (0: no limit), as in vLLM, where they are one pool."""
    if latency.engine != "batched":
        return None
    profile = EngineProfile(
        itl_s=latency.itl_ms / 1000,
        prefill_s_per_token=latency.prefill_ms_per_token / 1000,
        seq_s=latency.engine_seq_ms / 1000,
        knee=latency.engine_knee_seqs,
        past_knee_s=latency.engine_past_knee_ms / 1000,
        max_num_seqs=latency.max_num_seqs,
        max_batched_tokens=latency.max_num_batched_tokens,
        kv_blocks=latency.prefix_cache_blocks,
        block_size=latency.kv_block_size,
    )
    return Engines(profile)
