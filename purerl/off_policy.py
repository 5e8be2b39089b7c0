"""L1: off-policy actor-critic losses for continuous actions: SAC's soft target, critic, actor
and temperature losses, and TD3's clipped double-Q target, target-policy smoothing and
deterministic actor loss (DDPG is TD3 with one critic and no smoothing noise).

Array cores in the rlax / Stoix style: network *outputs* in, targets or scalar losses out, no
networks. Names say time: ``q_tm1`` are the ``K`` critics' values of the stored action at
``s_{t-1}``, ``q_t`` their (target-network) values of the next action at ``s_t``,
``discount_t = γ·(1 − terminated)``. Every bootstrap target is under ``jax.lax.stop_gradient``.
Leading batch axes ``...`` (``[B]``, ``[T, B]`` or none) are allowed everywhere; critics stack
on the last axis ``K``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Real

__all__ = [
    "soft_q_target",
    "clipped_double_q_target",
    "critic_loss",
    "sac_actor_loss",
    "temperature_loss",
    "default_target_entropy",
    "td3_target_action",
    "deterministic_actor_loss",
]


def soft_q_target(
    r_t: Float[ArrayLike, "..."],
    discount_t: Float[ArrayLike, "..."],
    q_t: Float[ArrayLike, "... K"],
    log_prob_t: Float[ArrayLike, "..."],
    alpha: Real[ArrayLike, ""],
) -> Float[Array, "..."]:
    """SAC's soft Bellman target with clipped double-Q, under ``stop_gradient``.

    ``y = r_t + discount_t · (min_k q_t[k] − α · log π(a_t|s_t))``, ``a_t ~ π(·|s_t)``

    Args:
        r_t: rewards, shape ``[...]``.
        discount_t: ``γ·(1 − terminated)``, shape ``[...]``.
        q_t: the ``K`` target critics at ``(s_t, a_t)``, shape ``[..., K]``.
        log_prob_t: ``log π(a_t|s_t)`` of the fresh next action, shape ``[...]``.
        alpha: the temperature ``α``.

    Returns:
        The target ``y``, shape ``[...]`` (no gradient flows through it).

    Example:
        >>> soft_q_target(1.0, 0.5, jnp.array([4.0, 3.0]), -1.0, 0.2)
        Array(2.6, dtype=float32)

    Reference: Haarnoja et al. (2018), "Soft Actor-Critic Algorithms and Applications",
    arXiv:1812.05905, §4.2; the minimum over critics from Fujimoto et al. (2018), ICML.
    """
    soft_value = jnp.min(q_t, axis=-1) - alpha * jnp.asarray(log_prob_t)
    return jax.lax.stop_gradient(r_t + discount_t * soft_value)


def clipped_double_q_target(
    r_t: Float[ArrayLike, "..."],
    discount_t: Float[ArrayLike, "..."],
    q_t: Float[ArrayLike, "... K"],
) -> Float[Array, "..."]:
    """TD3's clipped double-Q target, under ``stop_gradient`` (``K = 1``: DDPG's target).

    ``y = r_t + discount_t · min_k q_t[k]``

    Args:
        r_t: rewards, shape ``[...]``.
        discount_t: ``γ·(1 − terminated)``, shape ``[...]``.
        q_t: the ``K`` target critics at ``(s_t, ã_t)`` (``ã_t`` from ``td3_target_action``),
            shape ``[..., K]``.

    Returns:
        The target ``y``, shape ``[...]`` (no gradient flows through it).

    Example:
        >>> clipped_double_q_target(1.0, 0.5, jnp.array([4.0, 3.0]))
        Array(2.5, dtype=float32)

    Reference: Fujimoto et al. (2018), "Addressing Function Approximation Error in Actor-Critic
    Methods", ICML, §4.2 and algorithm 1.
    """
    return jax.lax.stop_gradient(r_t + discount_t * jnp.min(q_t, axis=-1))


def critic_loss(
    q_tm1: Float[ArrayLike, "... K"], target: Float[ArrayLike, "..."]
) -> Float[Array, ""]:
    """Squared TD loss of ``K`` critics against one shared target, summed over critics and
    averaged over the batch.

    ``L = mean_batch[ Σ_k ½ (q_tm1[k] − stop_gradient(y))² ]``

    Args:
        q_tm1: the ``K`` online critics at the stored ``(s_{t-1}, a_{t-1})``, shape ``[..., K]``.
        target: ``y`` from ``soft_q_target`` or ``clipped_double_q_target``, shape ``[...]``.

    Returns:
        The scalar loss.

    Example:
        >>> critic_loss(jnp.array([[1.0, 3.0]]), jnp.array([2.0]))
        Array(1., dtype=float32)

    Reference: Haarnoja et al. (2018), arXiv:1812.05905, §4.2; Fujimoto et al. (2018), ICML.
    """
    target = jax.lax.stop_gradient(jnp.asarray(target))
    td_error = jnp.asarray(q_tm1) - target[..., None]
    return jnp.mean(jnp.sum(0.5 * jnp.square(td_error), axis=-1))


def sac_actor_loss(
    log_prob: Float[ArrayLike, "..."],
    q: Float[ArrayLike, "... K"],
    alpha: Real[ArrayLike, ""],
) -> Float[Array, ""]:
    """SAC's policy loss on reparameterised actions ``a = f_φ(ε; s)``.

    ``L = mean[ stop_gradient(α) · log π(a|s) − min_k Q_k(s, a) ]``

    The gradient reaches the policy through both ``log_prob`` and ``q`` (via ``a``); the
    caller must differentiate with respect to the policy only, so the critics stay fixed.

    Args:
        log_prob: ``log π(a|s)`` of the reparameterised sample, shape ``[...]``.
        q: the ``K`` critics at ``(s, a)``, shape ``[..., K]``.
        alpha: the temperature ``α`` (gets no gradient).

    Returns:
        The scalar loss.

    Example:
        >>> sac_actor_loss(jnp.array([-1.0]), jnp.array([[4.0, 3.0]]), 0.5)
        Array(-3.5, dtype=float32)

    Reference: Haarnoja et al. (2018), arXiv:1812.05905, §4.2 (the reparameterised objective).
    """
    alpha = jax.lax.stop_gradient(alpha)
    return jnp.mean(alpha * jnp.asarray(log_prob) - jnp.min(q, axis=-1))


def temperature_loss(
    log_alpha: Real[ArrayLike, ""],
    log_prob: Float[ArrayLike, "..."],
    target_entropy: Real[ArrayLike, ""],
) -> Float[Array, ""]:
    """SAC's automatic entropy tuning: a loss on ``log α`` alone.

    ``L = mean[ −log α · stop_gradient(log π(a|s) + H̄) ]``

    Its gradient is ``−mean(log π + H̄) = mean(H) − H̄`` (with ``H ≈ −log π``), so gradient
    descent raises ``α`` while the policy's entropy is below the target ``H̄`` and lowers it
    above. It is written in ``log α`` (as in the authors' code) so ``α = exp(log α)`` stays
    positive.

    Args:
        log_alpha: ``log α``, the parameter being learnt.
        log_prob: ``log π(a|s)`` of fresh policy samples, shape ``[...]`` (gets no gradient).
        target_entropy: ``H̄``, e.g. ``default_target_entropy(action_dim)``.

    Returns:
        The scalar loss.

    Example:
        >>> temperature_loss(jnp.log(2.0), jnp.array([1.0, 3.0]), -1.0)
        Array(-0.6931472, dtype=float32)

    Reference: Haarnoja et al. (2018), arXiv:1812.05905, §5 (the objective ``J(α)``).
    """
    gap = jax.lax.stop_gradient(jnp.asarray(log_prob) + target_entropy)
    return jnp.mean(-log_alpha * gap)


def default_target_entropy(action_dim: int) -> float:
    """SAC's default target entropy for a ``d``-dimensional action: ``H̄ = −d``.

    Example:
        >>> default_target_entropy(6)
        -6.0

    Reference: Haarnoja et al. (2018), arXiv:1812.05905, §5 and appendix D.
    """
    return -float(action_dim)


def td3_target_action(
    key: PRNGKeyArray,
    action_t: Float[ArrayLike, "... d"],
    *,
    noise_std: Real[ArrayLike, ""],
    noise_clip: Real[ArrayLike, ""],
) -> Float[Array, "... d"]:
    """TD3's target-policy smoothing on actions in ``[−1, 1]``.

    ``ã = clip(a_t + clip(σ·ε, −c, c), −1, 1)``, ``ε ~ N(0, I)``

    ``noise_std = 0`` returns ``action_t`` unchanged (DDPG's target action).

    Args:
        key: PRNG key.
        action_t: the target actor's action ``μ'(s_t)`` in ``[−1, 1]``, shape ``[..., d]``.
        noise_std: ``σ`` (0.2 in the paper, for actions in ``[−1, 1]``).
        noise_clip: ``c`` (0.5 in the paper).

    Returns:
        The smoothed action, shape ``[..., d]``, in ``[−1, 1]``.

    Example:
        >>> a_t = td3_target_action(key, target_actor(next_obs), noise_std=0.2, noise_clip=0.5)

    Reference: Fujimoto et al. (2018), "Addressing Function Approximation Error in Actor-Critic
    Methods", ICML, §5.3 and algorithm 1.
    """
    action_t = jnp.asarray(action_t)
    eps = jax.random.normal(key, action_t.shape, action_t.dtype)
    noise = jnp.clip(noise_std * eps, -noise_clip, noise_clip)
    return jnp.clip(action_t + noise, -1.0, 1.0)


def deterministic_actor_loss(q: Float[ArrayLike, "..."]) -> Float[Array, ""]:
    """Deterministic policy-gradient loss: ``L = −mean[ Q(s, μ_φ(s)) ]``.

    ``q`` is one critic (TD3 uses the first) at the actor's own action; as in
    ``sac_actor_loss`` the caller differentiates with respect to the actor only.

    Args:
        q: ``Q(s, μ_φ(s))``, shape ``[...]``.

    Returns:
        The scalar loss.

    Example:
        >>> deterministic_actor_loss(jnp.array([1.0, 3.0]))
        Array(-2., dtype=float32)

    Reference: Silver et al. (2014), "Deterministic Policy Gradient Algorithms"; Lillicrap et
    al. (2016), DDPG; Fujimoto et al. (2018), ICML, algorithm 1.
    """
    return -jnp.mean(q)
