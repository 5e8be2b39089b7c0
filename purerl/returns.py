"""L1: discounted returns, reward-to-go and n-step targets over time-major sequences.

Conventions (as in rlax): index ``t`` runs over the first axis; ``r_t`` is the reward of step
``t``, ``discount_t = γ·(1 − terminated_t)``, and ``v_t`` is the value of the state reached
*after* step ``t`` (for a truncated step, the value of its true final observation). Where
``done_t`` is given, the sum never crosses from one episode into the next: at such a step the
recursion stops and bootstraps from ``discount_t · v_t`` — zero after a termination, the value
of the final observation after a time-limit truncation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Real

__all__ = ["discounted_returns", "n_step_targets", "lambda_returns", "gae"]


def _cut(done_t: ArrayLike | None, like: ArrayLike) -> Array:
    if done_t is None:
        return jnp.zeros(like.shape, dtype=bool)
    return jnp.asarray(done_t, dtype=bool)


def discounted_returns(
    r_t: Float[ArrayLike, "T ..."],
    discount_t: Float[ArrayLike, "T ..."],
    *,
    v_t: Float[ArrayLike, "T ..."] | None = None,
    done_t: Bool[ArrayLike, "T ..."] | None = None,
) -> Float[Array, "T ..."]:
    """Discounted return (reward-to-go) of every step of a sequence.

    ``G_t = r_t + discount_t · (v_t if done_t or t = T−1 else G_{t+1})``.

    With ``v_t = None`` the values are zero, which gives Monte-Carlo reward-to-go: the last
    step of the sequence then bootstraps from nothing, so pass ``v_t`` when the sequence was cut
    in the middle of an episode.

    Args:
        r_t: rewards ``[T, ...]``.
        discount_t: ``γ·(1 − terminated_t)``, same shape.
        v_t: value of the state after step ``t`` (default zeros).
        done_t: episode ends at step ``t`` (terminated or truncated); default: no boundaries
            other than those ``discount_t = 0`` already encodes.

    Returns:
        ``G_t`` with the shape of ``r_t``.

    Example:
        >>> discounted_returns(jnp.ones(3), jnp.full(3, 0.5))  # [1.75, 1.5, 1.0]
    """
    v_t = jnp.zeros_like(r_t) if v_t is None else v_t
    return lambda_returns(r_t, discount_t, v_t, 1.0, done_t=done_t)  # the λ = 1 case


def n_step_targets(
    r_t: Float[ArrayLike, "T ..."],
    discount_t: Float[ArrayLike, "T ..."],
    v_t: Float[ArrayLike, "T ..."],
    n: int,
    *,
    done_t: Bool[ArrayLike, "T ..."] | None = None,
) -> Float[Array, "T ..."]:
    """n-step bootstrapped targets, the window clipped at episode ends and the sequence end.

    ``G_t^(n) = r_t + discount_t · (v_t if n = 1 or done_t or t = T−1 else G_{t+1}^(n−1))``,
    i.e. ``Σ_{k<m} (Π_{j<k} d_{t+j}) r_{t+k} + (Π_{j<m} d_{t+j}) v_{t+m−1}`` with ``m ≤ n``.

    Args:
        r_t: rewards ``[T, ...]``.
        discount_t: ``γ·(1 − terminated_t)``.
        v_t: bootstrap value of the state after step ``t`` (e.g. ``max_a Q_target(s_{t+1}, a)``).
        n: window length, ``n ≥ 1`` (a Python int: it fixes the computation).
        done_t: episode ends (terminated or truncated) that cut the window.

    Returns:
        ``G_t^(n)`` with the shape of ``r_t``. ``n = 1`` gives the one-step TD target.

    Reference: Sutton & Barto (2018), eq. 7.1.
    """
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    done_t = _cut(done_t, r_t)
    stop = done_t.at[-1].set(True)  # the sequence end cuts every window
    g = jnp.asarray(r_t + discount_t * v_t)  # G^(1); a JAX array for NumPy inputs too
    for _ in range(int(n) - 1):
        g_next = jnp.concatenate([g[1:], g[-1:]], axis=0)  # G_{t+1}^(k-1); last row unused
        g = r_t + discount_t * jnp.where(stop, v_t, g_next)
    return g


def lambda_returns(
    r_t: Float[ArrayLike, "T ..."],
    discount_t: Float[ArrayLike, "T ..."],
    v_t: Float[ArrayLike, "T ..."],
    lambda_: Real[ArrayLike, ""],
    *,
    done_t: Bool[ArrayLike, "T ..."] | None = None,
) -> Float[Array, "T ..."]:
    """TD(λ) returns: ``G_t = r_t + discount_t · ((1 − λ)·v_t + λ·G_{t+1})``.

    At an episode end (``done_t``) or the sequence end the recursion stops at
    ``r_t + discount_t · v_t``: zero after a termination, the value of the true final
    observation after a truncation. ``λ = 1`` gives Monte-Carlo returns bootstrapped at cuts;
    ``λ = 0`` the one-step TD target.

    Args:
        r_t, discount_t: as in ``discounted_returns``.
        v_t: value of the state after step ``t`` (of ``final_obs`` where an episode ended).
        lambda_: λ in ``[0, 1]`` (may be traced).
        done_t: episode ends (terminated or truncated).

    Reference: Sutton & Barto (2018), §12.1.
    """
    done_t = _cut(done_t, r_t)

    def backward(g_next, xs):
        r, d, v, done = xs
        mixed = (1.0 - lambda_) * v + lambda_ * g_next
        g = r + d * jnp.where(done, v, mixed)
        return g, g

    _, g_t = jax.lax.scan(backward, v_t[-1], (r_t, discount_t, v_t, done_t), reverse=True)
    return g_t


def gae(
    r_t: Float[ArrayLike, "T ..."],
    discount_t: Float[ArrayLike, "T ..."],
    values: Float[ArrayLike, "T ..."],
    v_t: Float[ArrayLike, "T ..."],
    lambda_: Real[ArrayLike, ""],
    *,
    done_t: Bool[ArrayLike, "T ..."] | None = None,
) -> Float[Array, "T ..."]:
    """Generalised advantage estimates ``A_t = δ_t + discount_t · λ · A_{t+1}``.

    ``δ_t = r_t + discount_t · v_t − values_t``, where ``values_t = V(s_t)`` and
    ``v_t = V(s_{t+1})`` (of the true final observation where an episode ended, so a
    truncation bootstraps and a termination, through ``discount_t = 0``, does not). The sum
    is cut at ``done_t`` and at the sequence end. When ``v_t = values_{t+1}`` wherever no
    episode ends (true of any rollout), ``A_t + values_t`` equals ``lambda_returns(...)``.

    Reference: Schulman et al. (2016), "High-dimensional continuous control using GAE".
    """
    done_t = _cut(done_t, r_t)
    delta = r_t + discount_t * v_t - values

    def backward(a_next, xs):
        dlt, d, done = xs
        a = dlt + d * lambda_ * jnp.where(done, 0.0, a_next)
        return a, a

    zero = jnp.zeros_like(delta[-1])
    _, a_t = jax.lax.scan(backward, zero, (delta, discount_t, done_t), reverse=True)
    return a_t
