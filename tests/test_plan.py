"""The plan (sans-IO): lengths, event grouping and the token schedule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from trio_mock._config._settings import LatencySettings
from trio_mock._sim._plan import Limits, completion_length, event_ends, plan_choice, token_offsets
from trio_mock._sim._text import RepeatedText

limits = st.builds(
    Limits,
    max_tokens=st.none() | st.integers(1, 500),
    min_tokens=st.integers(0, 50),
    ignore_eos=st.booleans(),
)


@given(natural=st.integers(0, 1000), limits=limits)
def test_completion_length_obeys_limits(natural: int, limits: Limits) -> None:
    if limits.max_tokens is not None and limits.min_tokens > limits.max_tokens:
        return  # rejected by validation before planning
    n, finish = completion_length(natural, limits)
    assert n >= limits.min_tokens
    if limits.max_tokens is not None:
        assert n <= limits.max_tokens
        assert (finish == "length") == (n == limits.max_tokens)
        if limits.ignore_eos:
            assert n == limits.max_tokens
    else:
        assert finish == "stop"
        assert n == max(natural, limits.min_tokens)


def test_offsets_without_jitter_are_exactly_ttft_plus_i_itl() -> None:
    latency = LatencySettings(ttft_ms=250, itl_ms=50)
    offsets = token_offsets(5, latency, np.random.default_rng(0))
    assert offsets.tolist() == [0.25 + i * 0.05 for i in range(5)]


@given(n=st.integers(2, 300), seed=st.integers(0, 2**32))
def test_jittered_offsets_rise_and_start_at_a_non_negative_ttft(n: int, seed: int) -> None:
    latency = LatencySettings(ttft_ms=100, ttft_jitter_ms=80, itl_ms=10, itl_jitter_ms=9)
    offsets = token_offsets(n, latency, np.random.default_rng(seed))
    assert len(offsets) == n
    assert offsets[0] >= 0
    assert np.all(np.diff(offsets) >= 0)


def test_jitter_keeps_the_mean_itl() -> None:
    latency = LatencySettings(ttft_ms=0, itl_ms=10, itl_jitter_ms=2)
    offsets = token_offsets(20_001, latency, np.random.default_rng(1))
    assert np.diff(offsets).mean() == pytest.approx(0.010, rel=0.01)
    assert np.diff(offsets).std() == pytest.approx(0.002, rel=0.05)


@given(
    n=st.integers(0, 400),
    low=st.integers(1, 6),
    extra=st.integers(0, 6),
    seed=st.integers(0, 2**32),
)
def test_events_partition_the_tokens(n: int, low: int, extra: int, seed: int) -> None:
    high = low + extra
    ends = event_ends(n, low, high, np.random.default_rng(seed))
    assert ends[-1] == n
    sizes = np.diff([0, *ends])
    if n:
        assert np.all(sizes[:-1] >= low)
        assert np.all(sizes >= 1)
        assert np.all(sizes <= high)


def test_events_are_due_with_their_last_token() -> None:
    source = RepeatedText(["a", "b", "c", "d", "e", "f", "g"])
    latency = LatencySettings(ttft_ms=100, itl_ms=10)
    plan = plan_choice(0, source, Limits(), latency, (2, 3), np.random.default_rng(3))
    assert plan.tokens == 7
    assert plan.text == "abcdefg"
    assert list(plan.offsets) == [0.1 + (end - 1) * 0.01 for end in plan.event_ends]


@given(seed=st.integers(0, 2**63))
def test_same_seed_same_plan(seed: int) -> None:
    source = RepeatedText(list("the quick brown fox"))
    latency = LatencySettings(ttft_ms=100, ttft_jitter_ms=20, itl_ms=10, itl_jitter_ms=3)
    plans = [
        plan_choice(0, source, Limits(max_tokens=12), latency, (1, 3), np.random.default_rng(seed))
        for _ in range(2)
    ]
    assert plans[0] == plans[1]


def test_no_tokens_is_one_empty_event_at_ttft() -> None:
    plan = plan_choice(
        0, RepeatedText([]), Limits(), LatencySettings(ttft_ms=40), (1, 1), np.random.default_rng(0)
    )
    assert plan.tokens == 0
    assert list(plan.event_ends) == [0]
    assert list(plan.offsets) == [0.04]
    assert plan.finish_reason == "stop"
