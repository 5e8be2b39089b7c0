"""L1: running mean and variance of observations (pure ``init / update / normalize``).

Used for optional observation normalisation in the policy-gradient algorithms; the batch
update is the parallel form of Welford's algorithm (Chan, Golub & LeVeque, 1979).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Real, Shaped

__all__ = ["RunningStats", "init", "update", "normalize"]


class RunningStats(eqx.Module):
    """Mean and variance of everything seen so far, per observation element."""

    mean: Float[Array, "..."]
    var: Float[Array, "..."]
    count: Float[Array, ""]


def init(shape: Sequence[int]) -> RunningStats:
    """No data yet: mean 0, variance 1 (a tiny count keeps the first update well defined)."""
    shape = tuple(int(d) for d in shape)
    return RunningStats(jnp.zeros(shape), jnp.ones(shape), jnp.asarray(1e-4, jnp.float32))


def update(stats: RunningStats, batch: Shaped[ArrayLike, "B ..."]) -> RunningStats:
    """Fold a batch (leading axis) into the statistics."""
    batch = batch.reshape(-1, *stats.mean.shape).astype(jnp.float32)
    n = jnp.asarray(batch.shape[0], jnp.float32)
    mean_b, var_b = jnp.mean(batch, axis=0), jnp.var(batch, axis=0)
    total = stats.count + n
    delta = mean_b - stats.mean
    mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + var_b * n + jnp.square(delta) * stats.count * n / total
    return RunningStats(mean, m2 / total, total)


def normalize(stats: RunningStats, obs: ArrayLike, clip: Real[ArrayLike, ""] = 10.0) -> Array:
    """``clip((obs − mean) / sqrt(var + 1e-8), ±clip)``; any leading batch axes."""
    mean = jnp.broadcast_to(stats.mean, jnp.shape(obs))
    std = jnp.broadcast_to(jnp.sqrt(stats.var + 1e-8), jnp.shape(obs))
    return jnp.clip((obs - mean) / std, -clip, clip)
