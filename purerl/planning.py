"""L1: dynamic programming on a known model: Bellman backups, iterative policy evaluation and
value iteration. The ground truth that tabular learners (``purerl.algorithms.tabular``) are
checked against.

A finite MDP is three arrays (``purerl.envs.RobotInRoom.transition_model`` returns them):

* ``P[s, a, s']``: probability of moving to ``s'`` when taking ``a`` in ``s`` (rows sum to 1);
* ``R[s, a]``: expected reward of that step, ``Σ_s' P[s, a, s'] · r(s, a, s')``
  (an ``R[s, a, s']`` array is accepted and averaged under ``P``);
* ``terminal[s]``: states where the episode is over; their value is 0 (whatever the episode
  earns on entering one is in the reward of the step that enters it).

Every function here is pure and jit/vmap friendly (e.g. ``vmap`` over ``gamma``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

__all__ = ["bellman_q", "policy_evaluation", "value_iteration"]


def _expected_reward(
    P: Float[ArrayLike, "S A S"], R: Float[ArrayLike, "S A ..."]
) -> Float[ArrayLike, "S A"]:
    if R.ndim == 3:
        return jnp.sum(P * R, axis=-1)
    return R


def bellman_q(
    P: Float[ArrayLike, "S A S"],
    R: Float[ArrayLike, "S A ..."],
    V: Float[ArrayLike, " S"],
    *,
    gamma: Real[ArrayLike, ""],
) -> Float[Array, "S A"]:
    """One-step lookahead: ``Q[s, a] = R[s, a] + γ · Σ_s' P[s, a, s'] · V[s']``.

    ``V`` must already be 0 at terminal states (``policy_evaluation`` and ``value_iteration``
    keep it so). Reference: Sutton & Barto (2018), eq. 4.6.
    """
    return _expected_reward(P, R) + gamma * jnp.einsum("sat,t->sa", P, V)


def _iterate(
    backup, V0: Array, tol: Real[ArrayLike, ""], max_iterations: int
) -> tuple[Array, Array]:
    """Apply ``backup`` until ``max|V' − V| < tol`` or ``max_iterations``; returns (V, count)."""

    def cond(carry):
        _, delta, i = carry
        return (delta >= tol) & (i < max_iterations)

    def body(carry):
        V, _, i = carry
        V_new = backup(V)
        return V_new, jnp.max(jnp.abs(V_new - V)), i + 1

    V, _, count = jax.lax.while_loop(cond, body, (V0, jnp.asarray(jnp.inf, V0.dtype), 0))
    return V, count


def policy_evaluation(
    P: Float[ArrayLike, "S A S"],
    R: Float[ArrayLike, "S A ..."],
    terminal: Bool[ArrayLike, " S"],
    policy: Int[ArrayLike, " S"] | Float[ArrayLike, "S A"],
    *,
    gamma: Real[ArrayLike, ""],
    tol: Real[ArrayLike, ""] = 1e-6,
    max_iterations: int = 100_000,
) -> Float[Array, " S"]:
    """Iterative policy evaluation: ``V ← Σ_a π(a|s) (R[s, a] + γ Σ_s' P[s, a, s'] V[s'])``.

    Sweeps until the largest change is below ``tol``. With ``γ = 1`` it converges only if the
    policy reaches a terminal state with probability 1 from everywhere (a "proper" policy);
    otherwise it stops after ``max_iterations``.

    Args:
        P, R, terminal: the model (see the module docstring).
        policy: deterministic actions ``[S]`` (ints) or action probabilities ``[S, A]``.
        gamma: discount γ ∈ (0, 1].
        tol: stop when ``max_s |V_new − V| < tol``.
        max_iterations: upper bound on sweeps.

    Returns:
        ``V^π[s]``, 0 at terminal states.

    Example:
        >>> V = policy_evaluation(P, R, terminal, jnp.zeros(S, int), gamma=0.9)

    Reference: Sutton & Barto (2018), §4.1.
    """
    n_actions = P.shape[1]
    probs = policy if jnp.ndim(policy) == 2 else jax.nn.one_hot(policy, n_actions)

    def backup(V):
        v = jnp.sum(probs * bellman_q(P, R, V, gamma=gamma), axis=-1)
        return jnp.where(terminal, 0.0, v)

    V0 = jnp.zeros(P.shape[0], jnp.result_type(P.dtype, jnp.float32))
    return _iterate(backup, V0, tol, max_iterations)[0]


def value_iteration(
    P: Float[ArrayLike, "S A S"],
    R: Float[ArrayLike, "S A ..."],
    terminal: Bool[ArrayLike, " S"],
    *,
    gamma: Real[ArrayLike, ""],
    tol: Real[ArrayLike, ""] = 1e-6,
    max_iterations: int = 100_000,
) -> tuple[Float[Array, " S"], Float[Array, "S A"]]:
    """Value iteration: ``V ← max_a (R[s, a] + γ Σ_s' P[s, a, s'] V[s'])`` until converged.

    Returns the optimal values and action values; ``purerl.greedy(Q)`` is an optimal policy
    (``Q`` rows of terminal states are meaningless). With ``γ = 1`` it converges when every
    optimal policy is proper (e.g. a negative reward per step); with ``γ < 1`` always, the
    error shrinking by a factor γ per sweep.

    Args:
        P, R, terminal: the model (see the module docstring).
        gamma: discount γ ∈ (0, 1].
        tol: stop when ``max_s |V_new − V| < tol``.
        max_iterations: upper bound on sweeps.

    Returns:
        ``(V*, Q*)`` with shapes ``[S]`` and ``[S, A]``.

    Example:
        >>> env, params = purerl.envs.make("RobotInRoom-v0")
        >>> V, Q = value_iteration(*env.transition_model(params), gamma=1.0)

    Reference: Bellman (1957); Sutton & Barto (2018), §4.4; Russell & Norvig (2021), §17.2.1.
    """

    def backup(V):
        return jnp.where(terminal, 0.0, jnp.max(bellman_q(P, R, V, gamma=gamma), axis=-1))

    V0 = jnp.zeros(P.shape[0], jnp.result_type(P.dtype, jnp.float32))
    V, _ = _iterate(backup, V0, tol, max_iterations)
    return V, bellman_q(P, R, V, gamma=gamma)
