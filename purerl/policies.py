"""L1: action selection from Q-values (greedy, ε-greedy) and exploration schedules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

__all__ = ["greedy", "epsilon_greedy", "linear_schedule"]


def greedy(q_values: Float[Array, "... n_actions"]) -> Int[Array, "..."]:
    """Index of the largest Q-value (first one on ties): ``argmax_a Q(s, a)``."""
    return jnp.argmax(q_values, axis=-1).astype(jnp.int32)


@jax.jit
def epsilon_greedy(
    key: PRNGKeyArray,
    q_values: Float[Array, "... n_actions"],
    epsilon: float | Float[Array, ""],
) -> Int[Array, "..."]:
    """With probability ε a uniformly random action, otherwise the greedy one.

    Each leading index (e.g. each of N parallel envs) draws independently. The random action
    can coincide with the greedy one, so the greedy action has probability ``1 − ε + ε/|A|``.

    Args:
        key: PRNG key.
        q_values: ``[..., n_actions]``.
        epsilon: exploration probability in ``[0, 1]`` (may be traced, e.g. from a schedule).

    Returns:
        Integer actions of shape ``q_values.shape[:-1]``.

    Example:
        >>> a = epsilon_greedy(key, q_net(obs), 0.1)

    Reference: Sutton & Barto (2018), §2.2; Mnih et al. (2015), "Human-level control...".
    """
    explore_key, action_key = jax.random.split(key)
    batch_shape = q_values.shape[:-1]
    explore = jax.random.uniform(explore_key, batch_shape) < epsilon
    random_actions = jax.random.randint(action_key, batch_shape, 0, q_values.shape[-1])
    return jnp.where(explore, random_actions, greedy(q_values)).astype(jnp.int32)


def linear_schedule(
    start: float | Float[Array, ""],
    end: float | Float[Array, ""],
    duration: float | Float[Array, ""],
    count: int | Array,
) -> Float[Array, ""]:
    """Linear interpolation from ``start`` to ``end`` over ``duration`` counts, then ``end``.

    ``value(c) = start + (end − start) · min(c / duration, 1)``; ``duration ≤ 0`` gives ``end``.

    Example:
        >>> eps = linear_schedule(1.0, 0.05, 50_000, env_steps)
    """
    duration = jnp.asarray(duration, dtype=jnp.float32)
    safe = jnp.where(duration > 0, duration, 1.0)  # no 0/0 in the branch thrown away
    frac = jnp.where(duration > 0, jnp.asarray(count, jnp.float32) / safe, 1.0)
    frac = jnp.clip(frac, 0.0, 1.0)
    return jnp.asarray(start, jnp.float32) + (jnp.asarray(end, jnp.float32) - start) * frac
