"""L1: value-based learning: TD errors, losses, ``td_update`` and target-network updates, and
the tabular updates (``tabular_td_update``, ``tabular_sarsa_update``) on a Q-table.

Names say time, as in rlax: ``q_tm1`` are Q-values at the state where ``a_tm1`` was taken,
``q_t`` at the next state, ``discount_t = γ·(1 − terminated)``. Every target is wrapped in
``jax.lax.stop_gradient``: gradients flow only through ``Q(s_{t-1}, a_{t-1})``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

from purerl.types import Transition

__all__ = [
    "q_learning_td_error",
    "double_q_learning_td_error",
    "squared_loss",
    "huber_loss",
    "td_loss",
    "td_update",
    "polyak_update",
    "periodic_update",
    "tabular_update",
    "tabular_td_update",
    "tabular_sarsa_update",
]

LossName = Literal["huber", "squared"]


def _take(q: Float[ArrayLike, "... n"], a: Int[ArrayLike, "..."]) -> Float[Array, "..."]:
    return jnp.take_along_axis(q, a[..., None].astype(jnp.int32), axis=-1)[..., 0]


def q_learning_td_error(
    q_tm1: Float[ArrayLike, "... n_actions"],
    a_tm1: Int[ArrayLike, "..."],
    r_t: Float[ArrayLike, "..."],
    discount_t: Float[ArrayLike, "..."],
    q_t: Float[ArrayLike, "... n_actions"],
) -> Float[Array, "..."]:
    """Q-learning TD error ``δ = r_t + discount_t · max_a q_t[a] − q_tm1[a_tm1]``.

    Works on one transition or any batch (leading axes broadcast nowhere: shapes must match).
    The target is under ``stop_gradient``.

    Reference: Watkins & Dayan (1992); Mnih et al. (2015).
    """
    target = jax.lax.stop_gradient(r_t + discount_t * jnp.max(q_t, axis=-1))
    return target - _take(q_tm1, a_tm1)


def double_q_learning_td_error(
    q_tm1: Float[ArrayLike, "... n_actions"],
    a_tm1: Int[ArrayLike, "..."],
    r_t: Float[ArrayLike, "..."],
    discount_t: Float[ArrayLike, "..."],
    q_t_value: Float[ArrayLike, "... n_actions"],
    q_t_selector: Float[ArrayLike, "... n_actions"],
) -> Float[Array, "..."]:
    """Double Q-learning TD error: the online net picks, the target net evaluates.

    ``δ = r_t + discount_t · q_t_value[argmax_a q_t_selector[a]] − q_tm1[a_tm1]``.

    Reference: van Hasselt, Guez & Silver (2016), "Deep RL with Double Q-learning".
    """
    best = jnp.argmax(q_t_selector, axis=-1)
    target = jax.lax.stop_gradient(r_t + discount_t * _take(q_t_value, best))
    return target - _take(q_tm1, a_tm1)


def squared_loss(td_error: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """``½ δ²``, elementwise."""
    return 0.5 * jnp.square(td_error)


def huber_loss(
    td_error: Float[ArrayLike, "..."], delta: Real[ArrayLike, ""] = 1.0
) -> Float[Array, "..."]:
    """Huber loss, elementwise: ``½ δ²`` for ``|δ| ≤ Δ``, else ``Δ·(|δ| − ½Δ)``.

    Its gradient is the TD error clipped to ``[−Δ, Δ]`` (Mnih et al., 2015).
    """
    abs_error = jnp.abs(td_error)
    quadratic = jnp.minimum(abs_error, delta)
    return 0.5 * jnp.square(quadratic) + delta * (abs_error - quadratic)


def _batch_q(net: Callable[[Array], Array], obs: Array) -> Array:
    return jax.vmap(net)(obs)


def td_loss(
    q_net: eqx.Module,
    target_net: eqx.Module,
    batch: Transition,
    *,
    gamma: Real[ArrayLike, ""],
    double: bool = False,
    loss: LossName = "huber",
    huber_delta: Real[ArrayLike, ""] = 1.0,
    weights: Float[ArrayLike, " batch"] | None = None,
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """Mean TD loss of a batch of transitions, and the TD errors.

    ``target_net`` only enters the (stop-gradient) target, so passing ``q_net`` itself gives
    DQN "without a target network" and still no gradient through the target.

    Returns:
        ``(loss, aux)`` with ``aux = {"td_error": [B], "q_mean": []}``.
    """
    q_tm1 = _batch_q(q_net, batch.obs)
    q_t = _batch_q(target_net, batch.next_obs)
    discount_t = gamma * batch.discount
    if double:
        q_t_selector = _batch_q(q_net, batch.next_obs)
        td = double_q_learning_td_error(
            q_tm1, batch.action, batch.reward, discount_t, q_t, q_t_selector
        )
    else:
        td = q_learning_td_error(q_tm1, batch.action, batch.reward, discount_t, q_t)
    per_item = huber_loss(td, huber_delta) if loss == "huber" else squared_loss(td)
    if weights is not None:
        per_item = per_item * weights
    aux = {"td_error": td, "q_mean": jnp.mean(_take(q_tm1, batch.action))}
    return jnp.mean(per_item), aux


@eqx.filter_jit
def td_update(
    q_net: eqx.Module,
    target_net: eqx.Module,
    opt_state: optax.OptState,
    batch: Transition,
    *,
    optimizer: optax.GradientTransformation,
    gamma: Real[ArrayLike, ""],
    double: bool = False,
    loss: LossName = "huber",
    huber_delta: Real[ArrayLike, ""] = 1.0,
    weights: Float[ArrayLike, " batch"] | None = None,
) -> tuple[eqx.Module, optax.OptState, dict[str, Any]]:
    """One gradient step of (double) DQN on a batch of transitions.

    ``θ ← θ − lr · ∇_θ mean_i L(r_i + γ·discount_i·Q_target(s'_i, ·) − Q_θ(s_i, a_i))``.

    Args:
        q_net: online Q-network, a module mapping one observation to ``[n_actions]`` values.
        target_net: network for the bootstrap target (never differentiated).
        opt_state: ``optimizer.init(eqx.filter(q_net, eqx.is_inexact_array))``.
        batch: ``Transition`` with leading batch axis.
        optimizer: any optax transformation.
        gamma: discount factor γ (may be a traced leaf of a config).
        double: use the Double-DQN target.
        loss: ``"huber"`` or ``"squared"``.
        huber_delta: Huber threshold Δ.
        weights: optional per-item importance weights (prioritised replay).

    Compiled with ``eqx.filter_jit`` (the optimizer and flags are static), so it is fast when
    called from a plain Python loop and free inside an outer ``jit``.

    Returns:
        ``(new_q_net, new_opt_state, info)``; ``info`` holds ``loss``, ``q_mean``,
        ``td_error`` (``[B]``) and ``grad_norm``.

    Example:
        >>> optimizer = optax.adam(1e-3)
        >>> opt_state = optimizer.init(eqx.filter(q_net, eqx.is_inexact_array))
        >>> q_net, opt_state, info = td_update(q_net, target_net, opt_state, batch,
        ...                                    optimizer=optimizer, gamma=0.99)

    Reference: Mnih et al. (2015), "Human-level control through deep RL", Nature.
    """
    grad_fn = eqx.filter_value_and_grad(td_loss, has_aux=True)
    (loss_value, aux), grads = grad_fn(
        q_net,
        target_net,
        batch,
        gamma=gamma,
        double=double,
        loss=loss,
        huber_delta=huber_delta,
        weights=weights,
    )
    params = eqx.filter(q_net, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    q_net = eqx.apply_updates(q_net, updates)
    info = {"loss": loss_value, "grad_norm": optax.tree.norm(grads), **aux}
    return q_net, opt_state, info


def polyak_update(target: eqx.Module, online: eqx.Module, tau: Real[ArrayLike, ""]) -> eqx.Module:
    """Soft target update ``θ⁻ ← (1 − τ)·θ⁻ + τ·θ`` (τ = 1 copies; τ = 0 keeps the target).

    Reference: Lillicrap et al. (2016), DDPG.
    """
    target_params, static = eqx.partition(target, eqx.is_inexact_array)
    online_params = eqx.filter(online, eqx.is_inexact_array)
    mixed = jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target_params, online_params)
    return eqx.combine(mixed, static)


def periodic_update(
    target: eqx.Module,
    online: eqx.Module,
    step: Int[ArrayLike, ""],
    period: int,
    tau: Real[ArrayLike, ""] = 1.0,
) -> eqx.Module:
    """Every ``period`` steps (when ``step % period == 0``) apply ``polyak_update(..., tau)``.

    ``tau = 1`` is the hard copy of the Nature DQN; ``period = 1`` with small ``tau`` is Polyak
    averaging. ``step`` may be traced: the choice is a ``select``, not Python control flow.
    """
    if int(period) < 1:
        raise ValueError(f"period: must be >= 1, got {period}")
    updated = polyak_update(target, online, tau)
    now = (jnp.asarray(step) % period) == 0
    target_params, static = eqx.partition(target, eqx.is_inexact_array)
    updated_params = eqx.filter(updated, eqx.is_inexact_array)
    chosen = jax.tree.map(lambda u, t: jnp.where(now, u, t), updated_params, target_params)
    return eqx.combine(chosen, static)


# ---------------------------------------------------------------- tabular (a Q-table [S, A])


@jax.jit
def tabular_update(
    Q: Float[ArrayLike, "S A"],
    s: Int[ArrayLike, "..."],
    a: Int[ArrayLike, "..."],
    target: Float[ArrayLike, "..."],
    *,
    alpha: Real[ArrayLike, ""],
    mask: Bool[ArrayLike, "..."] | Int[ArrayLike, "..."] | None = None,
) -> Float[Array, "S A"]:
    """Move ``Q[s, a]`` a step of size α toward ``target``: ``Q[s, a] += α (target − Q[s, a])``.

    ``s``, ``a``, ``target`` (and ``mask``) are one entry or a batch of the same shape. In a
    batch, the errors of the entries that share a pair ``(s, a)`` are *averaged* before the
    step, so one call moves each ``Q[s, a]`` at most a fraction α of the way (with one entry
    per pair it is the textbook update). Entries where ``mask`` is False are ignored.

    Reference: Sutton & Barto (2018), eq. 2.4 (the incremental-mean form).
    """
    keep = jnp.ones(jnp.shape(target), bool) if mask is None else jnp.asarray(mask, bool)
    error = jnp.where(keep, target - Q[s, a], 0.0)
    total = jnp.zeros_like(Q).at[s, a].add(error)
    count = jnp.zeros_like(Q).at[s, a].add(keep.astype(Q.dtype))
    return Q + alpha * total / jnp.maximum(count, 1.0)


@jax.jit
def tabular_td_update(
    Q: Float[ArrayLike, "S A"],
    s: Int[ArrayLike, "..."],
    a: Int[ArrayLike, "..."],
    r: Float[ArrayLike, "..."],
    discount: Float[ArrayLike, "..."],
    s_next: Int[ArrayLike, "..."],
    *,
    alpha: Real[ArrayLike, ""],
) -> Float[Array, "S A"]:
    """Tabular Q-learning: ``Q[s, a] += α (r + discount · max_a' Q[s', a'] − Q[s, a])``.

    ``discount = γ·(1 − terminated)``: a transition into a terminal state does not bootstrap,
    a time-limit truncation does (pass the true final state as ``s_next``). Works on one
    transition (scalars) or a batch (see ``tabular_update`` for repeated pairs). Compiled with
    ``jax.jit``: fast from a plain Python loop, free inside an outer ``jit``.

    Args:
        Q: action values ``[n_states, n_actions]``.
        s, a: state and action indices.
        r: reward.
        discount: ``γ·(1 − terminated)``.
        s_next: next state index.
        alpha: step size α ∈ (0, 1].

    Returns:
        The updated table (a new array; ``Q`` is not modified).

    Example:
        >>> Q = jnp.zeros((12, 4))
        >>> Q = tabular_td_update(Q, 0, 1, -0.04, 0.9 * (1 - terminated), 1, alpha=0.1)

    Reference: Watkins (1989); Watkins & Dayan (1992); Sutton & Barto (2018), eq. 6.8.
    """
    target = r + discount * jnp.max(Q[s_next], axis=-1)
    return tabular_update(Q, s, a, target, alpha=alpha)


@jax.jit
def tabular_sarsa_update(
    Q: Float[ArrayLike, "S A"],
    s: Int[ArrayLike, "..."],
    a: Int[ArrayLike, "..."],
    r: Float[ArrayLike, "..."],
    discount: Float[ArrayLike, "..."],
    s_next: Int[ArrayLike, "..."],
    a_next: Int[ArrayLike, "..."],
    *,
    alpha: Real[ArrayLike, ""],
) -> Float[Array, "S A"]:
    """Tabular SARSA: ``Q[s, a] += α (r + discount · Q[s', a'] − Q[s, a])``, where ``a'`` is
    the action the behaviour policy takes (or would take) in ``s'``: on-policy TD control.

    Arguments as in ``tabular_td_update``, plus ``a_next``.

    Reference: Rummery & Niranjan (1994); Sutton & Barto (2018), eq. 6.7.
    """
    target = r + discount * Q[s_next, a_next]
    return tabular_update(Q, s, a, target, alpha=alpha)
