"""Sampling from the configured distributions (sans-IO, numpy).

One function serves TTFT, ITL and output lengths, so every knob family (``*_distribution``,
mean, ``*_jitter_ms`` / stddev, ``*_min``, ``*_max``) means the same thing everywhere.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .._config._settings import LatencySettings

FloatArray = npt.NDArray[np.float64]


def draw(
    distribution: str,
    mean: float,
    stddev: float,
    low: float,
    high: float | None,
    size: int,
    rng: np.random.Generator,
) -> FloatArray:
    """``size`` samples, clamped to ``[low, high]`` so no delay is ever negative.

    ``lognormal`` is parametrised by the mean and standard deviation of the samples
    themselves (not of their logarithm), so switching distribution keeps the mean.
    ``uniform`` spans ``[low, high]``; ``constant`` and ``fixed`` ignore ``stddev``.
    """
    if constant(distribution, stddev):
        values = np.full(size, mean, dtype=np.float64)
    else:
        values = np.asarray(sample(distribution, mean, stddev, low, high, size, rng))
    return np.clip(values, low, math.inf if high is None else high)


def draw_one(
    distribution: str,
    mean: float,
    stddev: float,
    low: float,
    high: float | None,
    rng: np.random.Generator,
) -> float:
    """One sample, as ``draw`` gives it (the same value for the same generator state),
    without arrays: it is drawn per request, where numpy's array and clip cost more than
    the rest of planning a reply."""
    value = mean
    if not constant(distribution, stddev):
        value = float(sample(distribution, mean, stddev, low, high, None, rng))
    return min(max(value, low), math.inf if high is None else high)


def constant(distribution: str, stddev: float) -> bool:
    return distribution in {"constant", "fixed"} or (distribution != "uniform" and not stddev)


def sample(
    distribution: str,
    mean: float,
    stddev: float,
    low: float,
    high: float | None,
    size: int | None,
    rng: np.random.Generator,
) -> FloatArray | float:
    """Unclamped samples of a random distribution; a float when ``size`` is None."""
    if distribution == "normal":
        return rng.normal(mean, stddev, size)
    if distribution == "lognormal":
        if mean <= 0:
            return 0.0 if size is None else np.zeros(size)
        sigma2 = math.log1p((stddev / mean) ** 2)
        return rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), size)
    if distribution == "uniform":
        return rng.uniform(low, high if high is not None else low, size)
    raise ValueError(f"unknown distribution {distribution!r}")


def draw_ttft_s(latency: LatencySettings, prompt_tokens: int, rng: np.random.Generator) -> float:
    """Time to first token: a sample plus the prefill cost of the prompt, in seconds."""
    ttft_ms = draw_one(
        latency.ttft_distribution,
        latency.ttft_ms,
        latency.ttft_jitter_ms,
        latency.ttft_min_ms,
        latency.ttft_max_ms,
        rng,
    )
    return (ttft_ms + prompt_tokens * latency.prefill_ms_per_token) / 1000


def draw_itl_s(latency: LatencySettings, size: int, rng: np.random.Generator) -> FloatArray:
    """``size`` inter-token gaps in seconds."""
    gaps_ms = draw(
        latency.itl_distribution,
        latency.itl_ms,
        latency.itl_jitter_ms,
        latency.itl_min_ms,
        latency.itl_max_ms,
        size,
        rng,
    )
    return gaps_ms / 1000
