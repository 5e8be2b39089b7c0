"""L1: policy-gradient losses: REINFORCE, actor-critic (A2C) and PPO's clipped objectives.

Two tiers:

* **Array cores** (rlax / Stoix style: arrays in, scalar out, no networks):
  ``policy_gradient_loss``, ``entropy_loss``, ``ppo_clip_loss``, ``ppo_diagnostics`` and
  ``value_loss``, built on the elementwise ``ppo_clipped_surrogate`` and ``clipped_value_loss``
  and on ``masked_mean``. They take network *outputs* (log-probabilities, entropies, values) and
  targets of any leading batch shape ``[*B]``; targets (advantages, returns, old values) are put
  under ``stop_gradient`` inside the core.
* **Homework wrappers** ``reinforce_loss``, ``a2c_loss`` and ``ppo_loss``: apply a network to a
  batch of observations, then call the cores. A policy is any module mapping ONE observation to a
  distribution with ``log_prob`` and ``entropy`` (``purerl.policies.Categorical`` or
  ``DiagGaussian``); an actor-critic maps one observation to ``(distribution, value)``.

Advantages and returns are inputs, computed by ``purerl.returns``; losses never compute them.
Inputs may carry any leading batch shape (e.g. time-major ``[T, N]``); ``mask`` (same shape,
boolean) selects the valid entries of it, and every mean is over the valid entries only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

__all__ = [
    # array cores
    "masked_mean",
    "policy_gradient_loss",
    "entropy_loss",
    "ppo_clipped_surrogate",
    "ppo_clip_loss",
    "ppo_diagnostics",
    "clipped_value_loss",
    "value_loss",
    "ppo_objective",
    # homework wrappers
    "reinforce_loss",
    "a2c_loss",
    "ppo_loss",
]


def masked_mean(x: Float[ArrayLike, "..."], mask: ArrayLike | None = None) -> Float[Array, ""]:
    """Mean of ``x`` over entries where ``mask`` is true (all entries when ``None``)."""
    if mask is None:
        return jnp.mean(x)
    mask = jnp.asarray(mask, bool)
    # where, not x * mask: a NaN/inf in a masked-out entry must not leak into the mean
    return jnp.sum(jnp.where(mask, x, 0.0)) / jnp.maximum(jnp.sum(mask), 1).astype(x.dtype)


def _apply(module: Callable[[Array], Any], observations: ArrayLike, batch_ndim: int) -> Any:
    """Apply a one-observation module over the leading ``batch_ndim`` axes."""
    batch_shape = observations.shape[:batch_ndim]
    flat = observations.reshape(-1, *observations.shape[batch_ndim:])
    out = jax.vmap(module)(flat)
    return jax.tree.map(lambda x: x.reshape(*batch_shape, *x.shape[1:]), out)


# --------------------------------------------------------------------------------------------
# Elementwise building blocks


def ppo_clipped_surrogate(
    ratio: Float[ArrayLike, "..."],
    advantages: Float[ArrayLike, "..."],
    clip_eps: Real[ArrayLike, ""],
) -> Float[Array, "..."]:
    """PPO's clipped surrogate, elementwise (to be maximised):
    ``min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A)`` with ``ρ = π(a|s) / π_old(a|s)``.

    Reference: Schulman et al. (2017), "Proximal Policy Optimization Algorithms", eq. 7.
    """
    return jnp.minimum(
        ratio * advantages, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    )


def clipped_value_loss(
    values: Float[ArrayLike, "..."],
    old_values: Float[ArrayLike, "..."],
    returns: Float[ArrayLike, "..."],
    clip_eps: Real[ArrayLike, ""],
) -> Float[Array, "..."]:
    """Clipped value loss, elementwise: ``½·max((V − G)², (V_old + clip(V − V_old, ±ε) − G)²)``.

    Reference: the PPO baselines implementation, as described by Engstrom et al. (2020),
    "Implementation Matters in Deep Policy Gradients".
    """
    clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    return 0.5 * jnp.maximum(jnp.square(values - returns), jnp.square(clipped - returns))


# --------------------------------------------------------------------------------------------
# Array cores: arrays in, scalar out


def policy_gradient_loss(
    log_probs: Float[ArrayLike, "*B"],
    advantages: Float[ArrayLike, "*B"],
    *,
    mask: Bool[ArrayLike, "*B"] | Int[ArrayLike, "*B"] | None = None,
) -> Float[Array, ""]:
    """Score-function policy-gradient loss (to be minimised).

    ``L = −mean_valid[ log π(a|s) · stop_gradient(A) ]``

    Its gradient is ``−mean_valid[ ∇log π(a|s) · A ]``, the policy gradient theorem's estimate;
    ``A`` (an advantage, or a return minus a baseline) is a target and gets no gradient.

    Args:
        log_probs: ``log π(a|s)`` of the taken actions, shape ``[*B]``.
        advantages: weights ``A``, shape ``[*B]`` (under ``stop_gradient``).
        mask: valid entries, shape ``[*B]`` (default: all).

    Returns:
        The scalar loss.

    Example:
        >>> policy_gradient_loss(jnp.log(jnp.array([0.5, 0.25])), jnp.array([1.0, -1.0]))
        Array(-0.3465736, dtype=float32)

    Reference: Williams (1992); Sutton & Barto (2018), §13.3; rlax ``policy_gradient_loss``.
    """
    advantages = jax.lax.stop_gradient(advantages)
    return -masked_mean(log_probs * advantages, mask)


def entropy_loss(
    entropies: Float[ArrayLike, "*B"],
    *,
    mask: Bool[ArrayLike, "*B"] | Int[ArrayLike, "*B"] | None = None,
) -> Float[Array, ""]:
    """Negative mean entropy: ``loss + c_H · entropy_loss`` adds an entropy bonus.

    ``L_H = −mean_valid[ H(π(·|s)) ]``

    Args:
        entropies: ``H(π(·|s))`` per state, shape ``[*B]``.
        mask: valid entries, shape ``[*B]`` (default: all).

    Returns:
        The scalar loss (minus the mean entropy).

    Example:
        >>> entropy_loss(jnp.array([1.0, 3.0]))
        Array(-2., dtype=float32)

    Reference: Williams & Peng (1991), "Function optimization using connectionist reinforcement
    learning algorithms"; Mnih et al. (2016), §4; rlax ``entropy_loss``.
    """
    return -masked_mean(entropies, mask)


def ppo_clip_loss(
    log_ratio: Float[ArrayLike, "*B"],
    advantages: Float[ArrayLike, "*B"],
    clip_eps: Real[ArrayLike, ""],
    *,
    mask: Bool[ArrayLike, "*B"] | Int[ArrayLike, "*B"] | None = None,
) -> Float[Array, ""]:
    """PPO's clipped surrogate objective, negated and averaged (to be minimised).

    ``L = −mean_valid[ min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A) ]`` with ``ρ = exp(log_ratio)``

    Args:
        log_ratio: ``log π(a|s) − log π_old(a|s)``, shape ``[*B]`` (the gradient flows
            through it; ``log π_old`` should be a constant).
        advantages: ``A``, shape ``[*B]`` (under ``stop_gradient``).
        clip_eps: the clip range ``ε``.
        mask: valid entries, shape ``[*B]`` (default: all).

    Returns:
        The scalar loss.

    Example:
        >>> ppo_clip_loss(jnp.log(jnp.array([1.5, 0.5])), jnp.array([1.0, -1.0]), 0.2)
        Array(-0.20000002, dtype=float32)

    Reference: Schulman et al. (2017), "Proximal Policy Optimization Algorithms", eq. 7;
    rlax ``clipped_surrogate_pg_loss``.
    """
    advantages = jax.lax.stop_gradient(advantages)
    ratio = jnp.exp(log_ratio)
    return -masked_mean(ppo_clipped_surrogate(ratio, advantages, clip_eps), mask)


def ppo_diagnostics(
    log_ratio: Float[ArrayLike, "*B"],
    clip_eps: Real[ArrayLike, ""],
    *,
    mask: Bool[ArrayLike, "*B"] | Int[ArrayLike, "*B"] | None = None,
) -> dict[str, Float[Array, ""]]:
    """PPO's monitoring statistics (no gradient): approximate KL and fraction of clipped ratios.

    ``approx_kl = mean_valid[ (ρ − 1) − log ρ ]``, ``clip_fraction = mean_valid[ |ρ − 1| > ε ]``

    ``(ρ − 1) − log ρ ≥ 0`` is an unbiased, low-variance estimator of ``KL(π_old ‖ π)`` under
    actions sampled from ``π_old``.

    Args:
        log_ratio: ``log π(a|s) − log π_old(a|s)``, shape ``[*B]``.
        clip_eps: the clip range ``ε``.
        mask: valid entries, shape ``[*B]`` (default: all).

    Returns:
        ``{"approx_kl", "clip_fraction"}``, scalars under ``stop_gradient``.

    Example:
        >>> ppo_diagnostics(jnp.log(jnp.array([1.5, 1.0])), 0.2)["clip_fraction"]
        Array(0.5, dtype=float32)

    Reference: Schulman (2020), "Approximating KL divergence" (the ``k3`` estimator);
    Schulman et al. (2017); the ``clipfrac`` of OpenAI Baselines' PPO2.
    """
    log_ratio = jax.lax.stop_gradient(log_ratio)
    ratio = jnp.exp(log_ratio)
    # a float copy of the indicator: what jnp.mean would average a boolean array in
    clipped = (jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.result_type(float))
    return {
        "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
        "clip_fraction": masked_mean(clipped, mask),
    }


def value_loss(
    values: Float[ArrayLike, "*B"],
    returns: Float[ArrayLike, "*B"],
    *,
    old_values: Float[ArrayLike, "*B"] | None = None,
    clip_eps: Real[ArrayLike, ""] | None = None,
    mask: Bool[ArrayLike, "*B"] | Int[ArrayLike, "*B"] | None = None,
) -> Float[Array, ""]:
    """Critic regression loss, optionally PPO-clipped around the old values.

    ``L_V = mean_valid[ ½(V − G)² ]``, or with ``old_values`` and ``clip_eps``
    ``mean_valid[ ½·max((V − G)², (V_old + clip(V − V_old, ±ε) − G)²) ]``

    Args:
        values: predictions ``V(s)``, shape ``[*B]``.
        returns: targets ``G``, shape ``[*B]`` (under ``stop_gradient``).
        old_values: ``V_old(s)`` of the data-collecting critic (under ``stop_gradient``);
            give it together with ``clip_eps`` for the clipped form.
        clip_eps: the value clip range ``ε``; give it together with ``old_values``.
        mask: valid entries, shape ``[*B]`` (default: all).

    Returns:
        The scalar loss.

    Raises:
        ValueError: when only one of ``old_values`` and ``clip_eps`` is given.

    Example:
        >>> value_loss(jnp.array([1.0, 1.0]), jnp.array([2.0, 1.0]))
        Array(0.25, dtype=float32)

    Reference: Mnih et al. (2016) (the plain form); the clipped form of the PPO baselines
    implementation, as described by Engstrom et al. (2020), "Implementation Matters in Deep
    Policy Gradients".
    """
    if (old_values is None) != (clip_eps is None):
        given, missing = (
            ("old_values", "clip_eps") if clip_eps is None else ("clip_eps", "old_values")
        )
        raise ValueError(
            f"value_loss: the clipped form needs both old_values and clip_eps; got {given} "
            f"without {missing}"
        )
    returns = jax.lax.stop_gradient(returns)
    if old_values is None:
        return masked_mean(0.5 * jnp.square(values - returns), mask)
    old_values = jax.lax.stop_gradient(old_values)
    return masked_mean(clipped_value_loss(values, old_values, returns, clip_eps), mask)


def ppo_objective(
    log_ratio: Float[ArrayLike, "*B"],
    advantages: Float[ArrayLike, "*B"],
    values: Float[ArrayLike, "*B"],
    returns: Float[ArrayLike, "*B"],
    entropies: Float[ArrayLike, "*B"],
    *,
    clip_eps: Real[ArrayLike, ""],
    value_coef: Real[ArrayLike, ""],
    entropy_coef: Real[ArrayLike, ""],
    old_values: Float[ArrayLike, "*B"] | None = None,
    value_clip_eps: Real[ArrayLike, ""] | None = None,
    mask: Bool[ArrayLike, "*B"] | Int[ArrayLike, "*B"] | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """PPO's whole loss from arrays: ``ppo_clip_loss + c_V·value_loss − c_H·mean[H]``.

    The one place the three terms are combined: ``ppo`` (actions of an env), ``ppo_loss`` (the
    homework wrapper) and RLHF's token-level PPO (``purerl.algorithms.rlhf``) all call it.

    Args:
        log_ratio: ``log π(a|s) − log π_old(a|s)``, shape ``[*B]``.
        advantages, returns: targets, shape ``[*B]`` (under ``stop_gradient``).
        values, entropies: the critic's ``V(s)`` and the policy's ``H(π(·|s))``, ``[*B]``.
        clip_eps: the ratio clip ``ε``; ``value_coef`` ``c_V``, ``entropy_coef`` ``c_H``.
        old_values, value_clip_eps: give both for the clipped value loss (else ``½(V − G)²``).
        mask: valid entries, shape ``[*B]`` (default: all).

    Returns:
        ``(loss, info)`` with ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``,
        ``clip_fraction``.
    """
    policy_loss = ppo_clip_loss(log_ratio, advantages, clip_eps, mask=mask)
    v_loss = value_loss(values, returns, old_values=old_values, clip_eps=value_clip_eps, mask=mask)
    entropy = -entropy_loss(entropies, mask=mask)
    loss = policy_loss + value_coef * v_loss - entropy_coef * entropy
    info = {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": entropy}
    return loss, info | ppo_diagnostics(log_ratio, clip_eps, mask=mask)


# --------------------------------------------------------------------------------------------
# Homework wrappers: apply the network, then call the cores


def reinforce_loss(
    policy: Callable[[Array], Any],
    observations: ArrayLike,
    actions: ArrayLike,
    returns: Float[ArrayLike, "..."],
    *,
    mask: ArrayLike | None = None,
    baseline: Float[ArrayLike, "..."] | None = None,
    entropy_coef: Real[ArrayLike, ""] = 0.0,
) -> Float[Array, ""]:
    """REINFORCE: ``−mean_valid[ log π(a|s) · (G − b) ] − c_H · mean_valid[ H(π(·|s)) ]``.

    A wrapper: applies ``policy`` to ``observations``, then calls ``policy_gradient_loss`` with
    weight ``G − b`` and subtracts ``c_H`` times the mean entropy (``−entropy_loss``). Its
    gradient is the score-function estimate ``−mean ∇log π(a|s)(G − b)`` of the policy gradient
    theorem; ``G − b`` is under ``stop_gradient`` (a learned baseline gets its own loss).

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
    loss = policy_gradient_loss(dist.log_prob(actions), weight, mask=mask)
    entropy = -entropy_loss(dist.entropy(), mask=mask)
    return loss - entropy_coef * entropy


def a2c_loss(
    actor_critic: Callable[[Array], Any],
    observations: ArrayLike,
    actions: ArrayLike,
    advantages: Float[ArrayLike, "..."],
    returns: Float[ArrayLike, "..."],
    *,
    value_coef: Real[ArrayLike, ""] = 0.5,
    entropy_coef: Real[ArrayLike, ""] = 0.01,
    mask: ArrayLike | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Advantage actor-critic: ``−mean[log π(a|s)·A] + c_V·mean[½(V(s) − G)²] − c_H·mean[H]``.

    A wrapper: applies ``actor_critic`` to ``observations``, then combines
    ``policy_gradient_loss``, ``value_loss`` and ``entropy_loss``. ``A`` and ``G`` are targets
    (``stop_gradient``); the value term trains the critic.

    Returns:
        ``(loss, {"policy_loss", "value_loss", "entropy"})``.

    Reference: Mnih et al. (2016), "Asynchronous methods for deep RL" (A3C/A2C).
    """
    dist, values = _apply(actor_critic, observations, advantages.ndim)
    policy_loss = policy_gradient_loss(dist.log_prob(actions), advantages, mask=mask)
    v_loss = value_loss(values, returns, mask=mask)
    entropy = -entropy_loss(dist.entropy(), mask=mask)
    loss = policy_loss + value_coef * v_loss - entropy_coef * entropy
    return loss, {"policy_loss": policy_loss, "value_loss": v_loss, "entropy": entropy}


def ppo_loss(
    actor_critic: Callable[[Array], Any],
    observations: ArrayLike,
    actions: ArrayLike,
    old_log_probs: Float[ArrayLike, "..."],
    old_values: Float[ArrayLike, "..."],
    advantages: Float[ArrayLike, "..."],
    returns: Float[ArrayLike, "..."],
    *,
    clip_eps: Real[ArrayLike, ""] = 0.2,
    value_clip_eps: Real[ArrayLike, ""] | None = 0.2,
    value_coef: Real[ArrayLike, ""] = 0.5,
    entropy_coef: Real[ArrayLike, ""] = 0.0,
    mask: ArrayLike | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """PPO-clip: ``−mean[surrogate] + c_V·mean[value loss] − c_H·mean[H]``.

    A wrapper: applies ``actor_critic`` to ``observations``, then combines ``ppo_clip_loss``,
    ``value_loss`` (clipped around ``old_values`` with ``value_clip_eps``; ``None`` uses the
    plain ``½(V − G)²``) and ``entropy_loss``, and adds ``ppo_diagnostics``. Every mean is over
    the entries valid under ``mask``. Returns ``(loss, info)`` with ``policy_loss``,
    ``value_loss``, ``entropy``, ``approx_kl`` (``mean[(ρ − 1) − log ρ]``) and
    ``clip_fraction``.
    """
    dist, values = _apply(actor_critic, observations, advantages.ndim)
    log_ratio = dist.log_prob(actions) - jax.lax.stop_gradient(old_log_probs)
    return ppo_objective(
        log_ratio,
        advantages,
        values,
        returns,
        dist.entropy(),
        clip_eps=clip_eps,
        value_coef=value_coef,
        entropy_coef=entropy_coef,
        old_values=old_values if value_clip_eps is not None else None,
        value_clip_eps=value_clip_eps,
        mask=mask,
    )
