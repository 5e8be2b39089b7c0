"""Tabular control: Q-learning, SARSA and every-visit Monte Carlo on a Q-table ``[S, A]``.

The whole model is one array ``Q[s, a]``; observations become rows through
``purerl.envs.tabular_states`` (``RobotInRoom-v0``, ``FrozenLake-misc``, ``DeepSea-bsuite``,
``FourRooms-misc``, or any env with a ``Discrete`` observation space). One ``step`` acts
ε-greedily in each of ``num_envs`` envs and updates the table (``config.method``):

* ``"q_learning"`` (off-policy TD): ``Q[s, a] += α (r + γ(1 − d) max_a' Q[s', a'] − Q[s, a])``
  (Watkins, 1989; Sutton & Barto, 2018, §6.5);
* ``"sarsa"`` (on-policy TD): ``Q[s, a] += α (r + γ(1 − d) Q[s', a'] − Q[s, a])`` with ``a'``
  the ε-greedy action taken next (Rummery & Niranjan, 1994; Sutton & Barto, §6.4);
* ``"mc"`` (every-visit Monte Carlo control, constant-α form): when an episode ends, every
  visit ``t`` of it moves ``Q[s_t, a_t] += α (G_t − Q[s_t, a_t])``, with the return
  ``G_t = r_t + γ r_{t+1} + …`` (Sutton & Barto, §5.4 and eq. 6.1).

``d`` is *termination*: a time-limit truncation bootstraps from the true final state — for MC
the return of a truncated episode ends with ``γ^k · V(s_final)``, ``V`` the value of the
ε-greedy policy under the current table. The targets of one step that hit the same ``(s, a)``
— from several envs, or from repeated visits within one finished episode for MC — are
averaged into a single step of size α (``purerl.value.tabular_update``): for the TD methods
with ``num_envs = 1`` this is exactly the textbook algorithm; textbook every-visit MC would
apply repeated visits one after another instead. Each env picks its next action right after
its step, from the table before the update (SARSA needs it for its target), ε-greedily with
ties broken at random (``explore``). ε decays linearly from ``epsilon_start`` to
``epsilon_end`` over ``exploration_fraction`` of the run; α is constant unless
``decay_alpha``.

Example:
    >>> config = tabular.Config(env_id="RobotInRoom-v0", method="sarsa", total_steps=40_000)
    >>> state, metrics = jax.jit(jax.vmap(tabular.make_train(config)))(keys)
    >>> state.Q   # [seeds, 12, 4]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

from purerl.algorithms.common import (
    check_numbers,
    finished_episode_stats,
    require,
    require_one_of,
    require_positive,
)
from purerl.algorithms.core import Algorithm, Policy, register
from purerl.envs import VecEnv, VecEnvState, tabular_states
from purerl.policies import greedy, linear_schedule
from purerl.types import Timestep
from purerl.value import tabular_sarsa_update, tabular_td_update, tabular_update

__all__ = ["Config", "State", "init", "step", "ALGORITHM", "make_train", "schedule", "METHODS"]

METHODS = ("q_learning", "sarsa", "mc")


def _as_items(kwargs: Any) -> tuple[tuple[str, Any], ...]:
    """``env_kwargs`` as a sorted tuple of pairs (hashable, so it can be a static field)."""
    items = dict(kwargs or {}).items()
    return tuple(sorted((str(k), v) for k, v in items))


class Config(eqx.Module):
    """Tabular hyperparameters. Sizes and the method are static; floats are leaves (vmappable).

    α is constant (``alpha``) unless ``decay_alpha``: then it falls linearly from ``alpha`` to
    ``alpha_end`` over the run.

    ``env_kwargs`` (a dict, stored as sorted pairs) is passed to ``purerl.envs.make``, e.g.
    ``{"step_reward": -2.0}`` for ``RobotInRoom-v0``. ``q_init`` fills the initial table
    (a large value is optimistic and drives exploration; Sutton & Barto, §2.6).
    """

    env_id: str = eqx.field(static=True, default="RobotInRoom-v0")
    env_kwargs: tuple[tuple[str, Any], ...] = eqx.field(
        static=True, default=(), converter=_as_items
    )
    method: str = eqx.field(static=True, default="q_learning")
    total_steps: int = eqx.field(static=True, default=50_000)
    num_envs: int = eqx.field(static=True, default=4)
    eval_every: int = eqx.field(static=True, default=5_000)
    eval_envs: int = eqx.field(static=True, default=8)
    decay_alpha: bool = eqx.field(static=True, default=False)
    alpha: Real[ArrayLike, ""] = 0.1
    alpha_end: Real[ArrayLike, ""] = 0.01
    gamma: Real[ArrayLike, ""] = 0.99
    epsilon_start: Real[ArrayLike, ""] = 1.0
    epsilon_end: Real[ArrayLike, ""] = 0.1
    exploration_fraction: Real[ArrayLike, ""] = 0.5
    q_init: Real[ArrayLike, ""] = 0.0

    def __check_init__(self):
        check_config(self)


def check_config(c: Config) -> None:
    """Raise ``ValueError`` naming the first bad field (environment-free checks)."""
    check_numbers(c)
    require_one_of(c, "method", METHODS)
    require_positive(c, ("total_steps", "num_envs", "eval_every", "eval_envs"))
    require((c.alpha > 0) & (c.alpha <= 1), "alpha", f"must be in (0, 1], got {c.alpha}")
    ok = (c.alpha_end > 0) & (c.alpha_end <= 1)
    require(ok, "alpha_end", f"must be in (0, 1], got {c.alpha_end}")
    require((c.gamma > 0) & (c.gamma <= 1), "gamma", f"must be in (0, 1], got {c.gamma}")
    for name in ("epsilon_start", "epsilon_end", "exploration_fraction"):
        v = getattr(c, name)
        require((v >= 0) & (v <= 1), name, f"must be in [0, 1], got {v}")


class Episodes(eqx.Module):
    """Monte Carlo bookkeeping of the running episode of each env, ``[num_envs, L]`` with ``L``
    the env's time limit (``L = 0`` for the TD methods): the state and action of every visit so
    far and its partial return ``Σ_{t ≤ k ≤ now} γ^{k−t} r_k``."""

    states: Int[Array, "N L"]
    actions: Int[Array, "N L"]
    partial_return: Float[Array, "N L"]
    length: Int[Array, " N"]


class State(eqx.Module):
    """Everything a tabular run carries: the Q-table, the envs and the next action of each."""

    config: Config
    env: VecEnv
    env_state: VecEnvState
    Q: Float[Array, "S A"]
    action: Int[Array, " N"]
    episodes: Episodes
    key: PRNGKeyArray
    iteration: Int[Array, ""]

    @property
    def env_steps(self) -> Int[Array, ""]:
        """Environment steps taken so far (all envs together)."""
        return self.iteration * self.config.num_envs


def make_env(config: Config, num_envs: int) -> VecEnv:
    """``num_envs`` copies of ``config.env_id`` built with ``config.env_kwargs``."""
    return VecEnv.make(config.env_id, num_envs=num_envs, **dict(config.env_kwargs))


def check_env(config: Config) -> None:
    """``ValueError`` for unknown ids, continuous actions or observations that are not a
    finite set of states."""
    env = make_env(config, 1)
    env.num_actions  # noqa: B018 (raises for a continuous action space)
    tabular_states(env.env, env.params)


def state_index(env: VecEnv) -> tuple[int, Callable[[Array], Int[Array, " N"]]]:
    """``(num_states, index)`` with ``index`` mapping a batch of observations to table rows."""
    n, index = tabular_states(env.env, env.params)
    return n, jax.vmap(index)


def epsilon(config: Config, env_steps: Int[Array, ""]) -> Float[Array, ""]:
    """ε after ``env_steps``: linear from start to end over ``exploration_fraction`` of the run."""
    decay = config.exploration_fraction * config.total_steps
    return linear_schedule(config.epsilon_start, config.epsilon_end, decay, env_steps)


def step_size(config: Config, env_steps: Int[Array, ""]) -> Float[Array, ""]:
    """α after ``env_steps``: constant ``alpha``, or with ``decay_alpha`` linear from ``alpha``
    to ``alpha_end`` over the whole run (a decaying step size, as the convergence proofs ask:
    Watkins & Dayan, 1992)."""
    if not config.decay_alpha:
        return jnp.asarray(config.alpha, jnp.float32)
    return linear_schedule(config.alpha, config.alpha_end, config.total_steps, env_steps)


def explore(key: PRNGKeyArray, q: Float[Array, "N A"], eps: Float[Array, ""]) -> Int[Array, " N"]:
    """ε-greedy with ties broken at random (Sutton & Barto, 2018, §2.4). A fresh table is all
    ties: always taking the first of them (``purerl.greedy``) would push an untrained agent
    into one wall instead of letting it wander."""
    tie_key, coin_key, action_key = jax.random.split(key, 3)
    best = jnp.where(q == jnp.max(q, axis=-1, keepdims=True), 0.0, -jnp.inf)
    greedy_action = jax.random.categorical(tie_key, best, axis=-1)
    random_action = jax.random.randint(action_key, q.shape[:-1], 0, q.shape[-1])
    use_random = jax.random.uniform(coin_key, q.shape[:-1]) < eps
    return jnp.where(use_random, random_action, greedy_action).astype(jnp.int32)


def init(key: PRNGKeyArray, config: Config, *, network: Any = None) -> State:
    """Reset the envs, fill the table with ``q_init`` and pick each env's first action.

    Raises:
        ValueError: ``network`` is given (the Q-table is the whole model).
    """
    if network is not None:
        raise ValueError("network: tabular methods learn a Q-table; they take no network")
    env = make_env(config, config.num_envs)
    n_states, index = state_index(env)
    key, env_key, act_key = jax.random.split(key, 3)
    env_state = env.reset(env_key)
    Q = jnp.full((n_states, env.num_actions), config.q_init, jnp.float32)
    action = explore(act_key, Q[index(env_state.obs)], epsilon(config, jnp.int32(0)))
    L = int(env.params.max_steps_in_episode) if config.method == "mc" else 0
    shape = (config.num_envs, L)
    episodes = Episodes(
        jnp.zeros(shape, jnp.int32),
        jnp.zeros(shape, jnp.int32),
        jnp.zeros(shape, jnp.float32),
        jnp.zeros((config.num_envs,), jnp.int32),
    )
    return State(config, env, env_state, Q, action, episodes, key, jnp.zeros((), jnp.int32))


def _policy_value(Q_next: Float[Array, "N A"], eps: Float[Array, ""]) -> Float[Array, " N"]:
    """``V(s') = Σ_a π(a|s') Q[s', a]`` of the ε-greedy policy (MC's bootstrap at truncation)."""
    return (1.0 - eps) * jnp.max(Q_next, axis=-1) + eps * jnp.mean(Q_next, axis=-1)


def _monte_carlo(state: State, s, a, ts: Timestep, s_next, eps, alpha):
    """Record this step in each env's episode; at an episode's end, update every visit."""
    c, ep, Q = state.config, state.episodes, state.Q
    n = c.num_envs
    t = ep.length  # position of this step in its episode, [N]
    pos = jnp.arange(ep.states.shape[1])[None, :]
    visited = pos <= t[:, None]
    power = jnp.power(c.gamma, jnp.maximum(t[:, None] - pos, 0).astype(jnp.float32))
    partial = jnp.where(visited, ep.partial_return + power * ts.reward[:, None], 0.0)
    states = ep.states.at[jnp.arange(n), t].set(s)
    actions = ep.actions.at[jnp.arange(n), t].set(a)
    discount = c.gamma * (1.0 - ts.terminated.astype(jnp.float32))
    tail = discount * _policy_value(Q[s_next], eps)  # 0 after a termination
    returns = partial + power * tail[:, None]  # G_t = partial_t + γ^{now−t} · γ(1−d) V(s')
    update = visited & ts.done[:, None]
    new_Q = tabular_update(Q, states, actions, returns, alpha=alpha, mask=update)
    error = jnp.sum(jnp.where(update, jnp.abs(returns - Q[states, actions]), 0.0))
    error = error / jnp.maximum(jnp.sum(update), 1)
    done = ts.done[:, None]
    episodes = Episodes(
        states, actions, jnp.where(done, 0.0, partial), jnp.where(ts.done, 0, t + 1)
    )
    return new_Q, episodes, error


def _learn(state: State, s, a, ts: Timestep, s_next, a_next, eps, alpha):
    """The method's table update: ``(Q, episodes, mean |error| of the updated entries)``."""
    c, Q = state.config, state.Q
    if c.method == "mc":
        return _monte_carlo(state, s, a, ts, s_next, eps, alpha)
    discount = c.gamma * (1.0 - ts.terminated.astype(jnp.float32))
    if c.method == "sarsa":
        target = ts.reward + discount * Q[s_next, a_next]
        new_Q = tabular_sarsa_update(Q, s, a, ts.reward, discount, s_next, a_next, alpha=alpha)
    else:
        target = ts.reward + discount * jnp.max(Q[s_next], axis=-1)
        new_Q = tabular_td_update(Q, s, a, ts.reward, discount, s_next, alpha=alpha)
    return new_Q, state.episodes, jnp.mean(jnp.abs(target - Q[s, a]))


def step(state: State) -> tuple[State, dict[str, Array]]:
    """One iteration: each env takes its chosen action, picks the next one, the table learns."""
    c = state.config
    _, index = state_index(state.env)
    key, env_key, act_key = jax.random.split(state.key, 3)
    s, a = index(state.env_state.obs), state.action
    env_state, ts = state.env.step(env_key, state.env_state, a)
    s_next = index(ts.final_obs)  # the true next state, also where an episode just ended
    s_continue = index(ts.obs)  # = s_next, or the first state of the next episode
    eps = epsilon(c, state.env_steps + c.num_envs)
    # One key for both: where no episode ended, the action in s' is the one taken next.
    a_next = explore(act_key, state.Q[s_next], eps)
    action = explore(act_key, state.Q[s_continue], eps)
    alpha = step_size(c, state.env_steps)
    Q, episodes, error = _learn(state, s, a, ts, s_next, a_next, eps, alpha)
    iteration = state.iteration + 1
    state = eqx.tree_at(
        lambda st: (st.env_state, st.Q, st.action, st.episodes, st.key, st.iteration),
        state,
        (env_state, Q, action, episodes, key, iteration),
    )
    metrics = {
        "abs_error": error,
        **finished_episode_stats(ts),
        "epsilon": eps,
        "alpha": alpha,
        "env_steps": state.env_steps,
    }
    return state, metrics


def greedy_policy(state: State) -> Policy:
    """Greedy on the table (ties to the first action): how tabular agents are evaluated."""
    _, index = state_index(state.env)

    def act(Q, key, obs, carry, first):
        return greedy(Q[index(obs)]), carry, {}

    return Policy(state.Q, act)


def quick_config() -> Config:
    """Q-learning on the robot room in a second (conformance tests)."""
    return Config(total_steps=400, eval_every=200, num_envs=2, eval_envs=2, alpha=0.5)


ALGORITHM = register(
    Algorithm(
        name="tabular",
        Config=Config,
        init=init,
        step=step,
        greedy_policy=greedy_policy,
        iteration_steps=lambda c: c.num_envs,
        quick_config=quick_config,
        check=check_env,
        make_env=make_env,
    )
)
make_train = ALGORITHM.make_train
schedule = ALGORITHM.schedule
