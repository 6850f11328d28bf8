"""Fitting the latency model's distributions to measured samples (sans-IO, numpy).

``trio-mock fit`` measures a cassette's TTFTs, gaps and lengths; this module fits each
family the knobs can express (constant, normal, lognormal, uniform: ``_latency.draw``) by
maximum likelihood, scores every fit with the Kolmogorov-Smirnov statistic (the largest
distance between the samples' CDF and the fitted one: 0 is perfect), and writes the best
fits as a TOML profile that ``--config`` loads. No scipy: the CDFs are ``math.erf``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
from attrs import frozen

FloatArray = npt.NDArray[np.float64]
Cdf = Callable[[FloatArray], FloatArray]
ERF = np.frompyfunc(math.erf, 1, 1)


@frozen
class Fit:
    """One family fitted to samples: the knobs' mean, standard deviation and bounds (in
    the samples' unit), with its KS statistic."""

    family: str  # constant, normal, lognormal, uniform
    mean: float
    stddev: float
    low: float
    high: float
    ks: float


def normal_cdf(x: FloatArray, mu: float, sigma: float) -> FloatArray:
    z = (x - mu) / (sigma * math.sqrt(2))
    return 0.5 * (1 + np.asarray(ERF(z), dtype=np.float64))


def ks_statistic(samples: FloatArray, cdf: Cdf) -> float:
    """The largest gap between the samples' empirical CDF and ``cdf``."""
    x = np.sort(samples)
    n = len(x)
    fitted = cdf(x)
    above = np.arange(1, n + 1) / n - fitted
    below = fitted - np.arange(n) / n
    return float(max(above.max(), below.max()))


def fit_families(samples: Sequence[float]) -> list[Fit]:
    """Every family the knobs express, fitted to ``samples``, best (smallest KS) first.

    Raises:
      ValueError: no samples.
    """
    x = np.asarray(samples, dtype=np.float64)
    if not len(x):
        raise ValueError("no samples to fit")
    low, high, mean, stddev = float(x.min()), float(x.max()), float(x.mean()), float(x.std())
    if stddev == 0 or len(x) < 2:
        return [Fit("constant", mean, 0.0, low, high, 0.0)]
    fits = [
        Fit(
            "normal",
            mean,
            stddev,
            low,
            high,
            ks_statistic(x, lambda v: normal_cdf(v, mean, stddev)),
        )
    ]
    if high > low:
        uniform = ks_statistic(x, lambda v: np.clip((v - low) / (high - low), 0, 1))
        fits.append(
            Fit("uniform", (low + high) / 2, (high - low) / math.sqrt(12), low, high, uniform)
        )
    if low > 0:
        logs = np.log(x)
        mu, sigma = float(logs.mean()), float(logs.std())
        if sigma > 0:
            ks = ks_statistic(logs, lambda v: normal_cdf(v, mu, sigma))
            log_mean = math.exp(mu + sigma**2 / 2)  # the knobs take the samples' own moments
            log_sd = log_mean * math.sqrt(math.expm1(sigma**2))
            fits.append(Fit("lognormal", log_mean, log_sd, low, high, ks))
    return sorted(fits, key=lambda f: f.ks)


def described(name: str, fits: Sequence[Fit], unit: str, count: int) -> str:
    """A comment line: which family fits best, and how well the others did."""
    best, rest = fits[0], fits[1:]
    others = ", ".join(f"{f.family} {f.ks:.3f}" for f in rest)
    return (
        f"# {name}: {best.family} fits best (KS {best.ks:.3f}{'; ' + others if others else ''})"
        f" over {count} samples; mean {best.mean:.4g} {unit}, sd {best.stddev:.4g} {unit}"
    )


def latency_knobs(prefix: str, fit: Fit) -> list[str]:
    """The latency knobs (``ttft_*`` or ``itl_*``, milliseconds) for a fit."""
    family = "constant" if fit.family == "constant" else fit.family
    lines = [f'{prefix}_distribution = "{family}"', f"{prefix}_ms = {fit.mean:.4f}",
             f"{prefix}_jitter_ms = {fit.stddev:.4f}"]  # fmt: skip
    if fit.family == "uniform":
        lines += [f"{prefix}_min_ms = {fit.low:.4f}", f"{prefix}_max_ms = {fit.high:.4f}"]
    return lines


def length_knobs(fit: Fit) -> list[str]:
    """The output length knobs (tokens) for a fit."""
    family = "fixed" if fit.family == "constant" else fit.family
    lines = [f'output_tokens_distribution = "{family}"',
             f"output_tokens_mean = {max(fit.mean, 1.0):.2f}",
             f"output_tokens_stddev = {fit.stddev:.2f}"]  # fmt: skip
    if fit.family == "uniform":
        lines += [f"output_tokens_min = {max(1, math.floor(fit.low))}",
                  f"output_tokens_max = {max(1, math.ceil(fit.high))}"]  # fmt: skip
    return lines


def profile_toml(
    source: str, ttft_ms: Sequence[float], itl_ms: Sequence[float], lengths: Sequence[float]
) -> str:
    """A TOML profile fitted to the samples (milliseconds and tokens), for ``--config``.

    Raises:
      ValueError: no TTFT samples (no streamed recording with text).
    """
    ttft = fit_families(ttft_ms)
    lines = [f"# trio-mock fit {source}", described("TTFT", ttft, "ms", len(ttft_ms))]
    knobs = ["[latency]", *latency_knobs("ttft", ttft[0])]
    if itl_ms:
        itl = fit_families(itl_ms)
        lines.append(described("ITL", itl, "ms", len(itl_ms)))
        knobs += latency_knobs("itl", itl[0])
    if lengths:
        length = fit_families(lengths)
        lines.append(described("output length", length, "tokens", len(lengths)))
        knobs += ["", "[output]", *length_knobs(length[0])]
    return "\n".join([*lines, "", *knobs]) + "\n"
