"""L1: policy-gradient losses: REINFORCE, actor-critic (A2C) and PPO's clipped objectives.

A policy is any module mapping ONE observation to a distribution with ``log_prob`` and
``entropy`` (``purerl.policies.Categorical`` or ``DiagGaussian``); an actor-critic maps one
observation to ``(distribution, value)``. Advantages and returns are inputs, computed by
``purerl.returns``; losses never compute them. Inputs may carry any leading batch shape
(e.g. time-major ``[T, N]``); ``mask`` selects the valid entries of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = [
    "masked_mean",
    "reinforce_loss",
    "a2c_loss",
    "ppo_clipped_surrogate",
    "clipped_value_loss",
    "ppo_loss",
]


def masked_mean(x: Float[Array, "..."], mask: Array | None = None) -> Float[Array, ""]:
    """Mean of ``x`` over entries where ``mask`` is true (all entries when ``None``)."""
    if mask is None:
        return jnp.mean(x)
    mask = jnp.asarray(mask, bool)
    # where, not x * mask: a NaN/inf in a masked-out entry must not leak into the mean
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1).astype(x.dtype)


def _apply(module: Callable[[Array], Any], observations: Array, batch_ndim: int) -> Any:
    """Apply a one-observation module over the leading ``batch_ndim`` axes."""
    batch_shape = observations.shape[:batch_ndim]
    flat = observations.reshape(-1, *observations.shape[batch_ndim:])
    out = jax.vmap(module)(flat)
    return jax.tree.map(lambda x: x.reshape(*batch_shape, *x.shape[1:]), out)


def reinforce_loss(
    policy: Callable[[Array], Any],
    observations: Array,
    actions: Array,
    returns: Float[Array, "..."],
    *,
    mask: Array | None = None,
    baseline: Float[Array, "..."] | None = None,
    entropy_coef: float | Float[Array, ""] = 0.0,
) -> Float[Array, ""]:
    """REINFORCE: ``−mean_valid[ log π(a|s) · (G − b) ] − c_H · mean_valid[ H(π(·|s)) ]``.

    Its gradient is the score-function estimate ``−mean ∇log π(a|s)(G − b)`` of the policy
    gradient theorem; ``G − b`` is under ``stop_gradient`` (a learned baseline gets its own
    loss).

    Args:
        policy: module, one observation → distribution.
        observations: ``[*B, *obs_shape]``.
        actions: ``[*B]`` (discrete) or ``[*B, d]`` (continuous); ``B = returns.shape``.
        returns: reward-to-go ``G_t``, shape ``[*B]``.
        mask: valid entries (e.g. steps whose episode finished inside the rollout).
        baseline: ``b(s_t)``, shape ``[*B]`` (default 0).
        entropy_coef: weight ``c_H`` of the entropy bonus.

    Example:
        >>> g = discounted_returns(rewards, gamma * (1 - terminated), done_t=done)
        >>> loss = reinforce_loss(policy, obs, actions, g)

    Reference: Williams (1992); Sutton & Barto (2018), §13.3–13.4.
    """
    dist = _apply(policy, observations, returns.ndim)
    weight = returns if baseline is None else returns - baseline
    weight = jax.lax.stop_gradient(weight)
    loss = -masked_mean(dist.log_prob(actions) * weight, mask)
    return loss - entropy_coef * masked_mean(dist.entropy(), mask)


def a2c_loss(
    actor_critic: Callable[[Array], Any],
    observations: Array,
    actions: Array,
    advantages: Float[Array, "..."],
    returns: Float[Array, "..."],
    *,
    value_coef: float | Float[Array, ""] = 0.5,
    entropy_coef: float | Float[Array, ""] = 0.01,
    mask: Array | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Advantage actor-critic: ``−mean[log π(a|s)·A] + c_V·mean[½(V(s) − G)²] − c_H·mean[H]``.

    ``A`` and ``G`` are targets (``stop_gradient``); the value term trains the critic.

    Returns:
        ``(loss, {"policy_loss", "value_loss", "entropy"})``.

    Reference: Mnih et al. (2016), "Asynchronous methods for deep RL" (A3C/A2C).
    """
    dist, values = _apply(actor_critic, observations, advantages.ndim)
    advantages, returns = jax.lax.stop_gradient((advantages, returns))
    policy_loss = -masked_mean(dist.log_prob(actions) * advantages, mask)
    value_loss = masked_mean(0.5 * jnp.square(values - returns), mask)
    entropy = masked_mean(dist.entropy(), mask)
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}


def ppo_clipped_surrogate(
    ratio: Float[Array, "..."],
    advantages: Float[Array, "..."],
    clip_eps: float | Float[Array, ""],
) -> Float[Array, "..."]:
    """PPO's clipped surrogate, elementwise (to be maximised):
    ``min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A)`` with ``ρ = π(a|s) / π_old(a|s)``.

    Reference: Schulman et al. (2017), "Proximal Policy Optimization Algorithms", eq. 7.
    """
    return jnp.minimum(
        ratio * advantages, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    )


def clipped_value_loss(
    values: Float[Array, "..."],
    old_values: Float[Array, "..."],
    returns: Float[Array, "..."],
    clip_eps: float | Float[Array, ""],
) -> Float[Array, "..."]:
    """Clipped value loss, elementwise: ``½·max((V − G)², (V_old + clip(V − V_old, ±ε) − G)²)``.

    Reference: the PPO baselines implementation, as described by Engstrom et al. (2020),
    "Implementation Matters in Deep Policy Gradients".
    """
    clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    return 0.5 * jnp.maximum(jnp.square(values - returns), jnp.square(clipped - returns))


def ppo_loss(
    actor_critic: Callable[[Array], Any],
    observations: Array,
    actions: Array,
    old_log_probs: Float[Array, "..."],
    old_values: Float[Array, "..."],
    advantages: Float[Array, "..."],
    returns: Float[Array, "..."],
    *,
    clip_eps: float | Float[Array, ""] = 0.2,
    value_clip_eps: float | Float[Array, ""] | None = 0.2,
    value_coef: float | Float[Array, ""] = 0.5,
    entropy_coef: float | Float[Array, ""] = 0.0,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """PPO-clip: ``−mean[surrogate] + c_V·mean[value loss] − c_H·mean[H]``.

    ``value_clip_eps=None`` uses the plain ``½(V − G)²``. Returns ``(loss, info)`` with
    ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl`` (``mean[(ρ − 1) − log ρ]``) and
    ``clip_fraction``.
    """
    dist, values = _apply(actor_critic, observations, advantages.ndim)
    old_log_probs, old_values, advantages, returns = jax.lax.stop_gradient(
        (old_log_probs, old_values, advantages, returns)
    )
    log_ratio = dist.log_prob(actions) - old_log_probs
    ratio = jnp.exp(log_ratio)
    policy_loss = -jnp.mean(ppo_clipped_surrogate(ratio, advantages, clip_eps))
    if value_clip_eps is None:
        value_loss = jnp.mean(0.5 * jnp.square(values - returns))
    else:
        value_loss = jnp.mean(clipped_value_loss(values, old_values, returns, value_clip_eps))
    entropy = jnp.mean(dist.entropy())
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    info = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
        "clip_fraction": jnp.mean(jnp.abs(ratio - 1.0) > clip_eps),
    }
    return loss, info
