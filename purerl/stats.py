"""L4: statistics across seeds — point estimates and bootstrap confidence intervals.

Follows Agarwal et al. (2021), "Deep RL at the Edge of the Statistical Precipice" (rliable):
report the interquartile mean (IQM) rather than the mean or the median, with stratified
bootstrap confidence intervals (seeds resampled with replacement *within* each task or
config, never across), and the probability of improvement between two algorithms.

Everything here is NumPy on the host: it runs on results already written to disk.

Example:
    >>> scores = np.array([1.0, 2.0, 3.0, 4.0, 100.0])    # final returns of 5 seeds
    >>> iqm(scores)                                       # 3.0 (drops 1.0 and 100.0)
    >>> lo, hi = bootstrap_ci(scores, iqm, key=0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from jaxtyping import ArrayLike

__all__ = [
    "mean",
    "median",
    "iqm",
    "bootstrap_ci",
    "probability_of_improvement",
    "probability_of_improvement_ci",
    "summarize",
]

# What the functions take: anything ``np.asarray`` makes scores of (NumPy or JAX arrays,
# nested lists, ...). What they return: an array, or a NumPy scalar where every axis was reduced.
Scores = ArrayLike | Sequence[Any]
Estimate = np.ndarray | np.floating
Statistic = Callable[..., Estimate]


def mean(x: Scores, axis: int = -1) -> Estimate:
    """Arithmetic mean over ``axis`` (the seeds)."""
    return np.mean(np.asarray(x, np.float64), axis=axis)


def median(x: Scores, axis: int = -1) -> Estimate:
    """Median over ``axis`` (the seeds)."""
    return np.median(np.asarray(x, np.float64), axis=axis)


def iqm(x: Scores, axis: int = -1) -> Estimate:
    """Interquartile mean: the mean of the middle 50% of values along ``axis``.

    ``IQM = mean(sorted(x)[k : n - k])`` with ``k = floor(n / 4)`` — the 25%-trimmed mean of
    Agarwal et al. (2021), which rliable computes with ``scipy.stats.trim_mean(x, 0.25)``.
    Robust to a few outlier seeds, far less noisy than the median. For ``n < 4`` nothing is
    trimmed and it equals the mean.
    """
    x = np.sort(np.asarray(x, np.float64), axis=axis)
    n = x.shape[axis]
    if n == 0:
        raise ValueError("iqm: needs at least one value")
    k = n // 4
    return np.mean(np.take(x, np.arange(k, n - k), axis=axis), axis=axis)


def _stratified_resample(rng: np.random.Generator, x: np.ndarray, reps: int) -> np.ndarray:
    """``[reps, *x.shape]``: every row of ``x`` (a task/config) has its last axis (seeds)
    resampled with replacement independently — a stratified bootstrap."""
    n = x.shape[-1]
    idx = rng.integers(0, n, size=(reps, *x.shape))
    return np.take_along_axis(np.broadcast_to(x, (reps, *x.shape)), idx, axis=-1)


def bootstrap_ci(
    x: Scores,
    statistic: Statistic = iqm,
    *,
    confidence: float = 0.95,
    reps: int = 2_000,
    key: int = 0,
) -> tuple[Estimate, Estimate]:
    """Percentile stratified-bootstrap confidence interval of ``statistic`` over seeds.

    ``x`` has seeds on the last axis and any leading axes (tasks, configs, time). Each
    bootstrap replicate resamples the seeds of every leading row independently (stratified:
    rows never exchange seeds) and recomputes ``statistic(sample, axis=-1)``; the interval is
    the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the replicates.

    Args:
        x: scores, ``[..., seeds]``.
        statistic: ``f(x, axis=-1)``, e.g. ``iqm``, ``mean``, ``median``.
        confidence: coverage of the interval, in (0, 1).
        reps: number of bootstrap replicates.
        key: seed of the NumPy generator (same key → same interval).

    Returns:
        ``(low, high)``, each shaped like ``x.shape[:-1]``.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: must be in (0, 1), got {confidence}")
    if reps < 1:
        raise ValueError(f"reps: must be >= 1, got {reps}")
    x = np.asarray(x, np.float64)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"x: needs a last (seed) axis with at least one value, got {x.shape}")
    rng = np.random.default_rng(key)
    replicates = statistic(_stratified_resample(rng, x, reps), axis=-1)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(replicates, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return low, high


def probability_of_improvement(x: Scores, y: Scores) -> float:
    """``P(X > Y)``: the chance a random seed of run X beats a random seed of run Y.

    ``P = (1 / (n·m)) Σ_i Σ_j ( [x_i > y_j] + ½ [x_i = y_j] )`` — the Mann–Whitney U
    statistic normalised to [0, 1] (Agarwal et al., 2021, for one task). 0.5 means neither is
    better; use ``bootstrap_ci`` on it via ``probability_of_improvement_ci`` for an interval.
    """
    x = np.asarray(x, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    if x.size == 0 or y.size == 0:
        raise ValueError("probability_of_improvement: both runs need at least one seed")
    greater = (x[:, None] > y[None, :]).mean()
    ties = (x[:, None] == y[None, :]).mean()
    return float(greater + 0.5 * ties)


def probability_of_improvement_ci(
    x: Scores, y: Scores, *, confidence: float = 0.95, reps: int = 2_000, key: int = 0
) -> tuple[float, float]:
    """Stratified-bootstrap interval of ``probability_of_improvement(x, y)`` (seeds of X and Y
    resampled independently)."""
    x = np.asarray(x, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    rng = np.random.default_rng(key)
    xs = _stratified_resample(rng, x, reps)
    ys = _stratified_resample(rng, y, reps)
    values = np.array([probability_of_improvement(a, b) for a, b in zip(xs, ys, strict=True)])
    alpha = (1 - confidence) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def summarize(x: Scores, *, confidence: float = 0.95, key: int = 0) -> dict[str, float | int]:
    """Mean, median, IQM and the IQM's bootstrap interval of 1-D per-seed scores."""
    x = np.asarray(x, np.float64).reshape(-1)
    low, high = bootstrap_ci(x, iqm, confidence=confidence, key=key)
    return {
        "mean": float(mean(x)),
        "std": float(np.std(x)),
        "median": float(median(x)),
        "iqm": float(iqm(x)),
        "iqm_ci_low": float(low),
        "iqm_ci_high": float(high),
        "seeds": int(x.size),
    }
