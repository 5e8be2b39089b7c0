"""DQN (Mnih et al., 2015) with Double-DQN targets (van Hasselt et al., 2016) by default.

One ``step`` = act ε-greedily in ``num_envs`` envs, store the transitions, then
``updates_per_iteration`` gradient steps on uniformly sampled batches, then a target update.

Example:
    >>> config = dqn.Config(env_id="CartPole-v1", total_steps=50_000)
    >>> train = jax.jit(jax.vmap(dqn.make_train(config)))
    >>> state, metrics = train(jax.random.split(jax.random.PRNGKey(0), 8))
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from purerl import replay
from purerl.algorithms.common import (
    check_shared_fields,
    finished_episode_stats,
    greedy_episode_returns,
    iteration_schedule,
    require,
    run_periods,
)
from purerl.envs import VecEnv, VecEnvState, to_transition
from purerl.networks import QNetwork
from purerl.policies import epsilon_greedy, greedy, linear_schedule
from purerl.types import Transition
from purerl.value import periodic_update, td_update

__all__ = ["Config", "State", "init", "step", "evaluate", "make_train", "schedule"]


class Config(eqx.Module):
    """DQN hyperparameters. Integers that fix shapes are static; floats are leaves (vmappable).

    Defaults train CartPole-v1 to ~500 within 100k env steps (see benchmarks/RESULTS.md).
    """

    env_id: str = eqx.field(static=True, default="CartPole-v1")
    total_steps: int = eqx.field(static=True, default=100_000)
    num_envs: int = eqx.field(static=True, default=10)
    buffer_size: int = eqx.field(static=True, default=50_000)
    batch_size: int = eqx.field(static=True, default=100)
    learning_starts: int = eqx.field(static=True, default=1_000)
    updates_per_iteration: int = eqx.field(static=True, default=5)
    target_update_period: int = eqx.field(static=True, default=1)
    hidden_sizes: tuple[int, ...] = eqx.field(static=True, default=(64, 64))
    activation: str = eqx.field(static=True, default="swish")
    dueling: bool = eqx.field(static=True, default=True)
    double: bool = eqx.field(static=True, default=True)
    loss: str = eqx.field(static=True, default="huber")
    eval_every: int = eqx.field(static=True, default=10_000)
    eval_envs: int = eqx.field(static=True, default=8)
    learning_rate: float | Float[Array, ""] = 5e-4
    gamma: float | Float[Array, ""] = 0.99
    tau: float | Float[Array, ""] = 0.02
    epsilon_start: float | Float[Array, ""] = 1.0
    epsilon_end: float | Float[Array, ""] = 0.05
    exploration_fraction: float | Float[Array, ""] = 0.15
    max_grad_norm: float | Float[Array, ""] = 10.0

    def __check_init__(self):
        check_config(self)


def check_config(c: Config) -> None:
    """Raise ``ValueError`` naming the first bad field (environment-free checks)."""
    positive = (
        "total_steps",
        "num_envs",
        "buffer_size",
        "batch_size",
        "updates_per_iteration",
        "target_update_period",
        "eval_every",
        "eval_envs",
    )
    check_shared_fields(c, positive)
    require(c.learning_starts >= 0, "learning_starts", f"must be >= 0, got {c.learning_starts}")
    require(
        c.batch_size <= c.buffer_size,
        "batch_size",
        f"batch_size={c.batch_size} is larger than the replay capacity buffer_size={c.buffer_size}",
    )
    require(
        c.num_envs <= c.buffer_size,
        "num_envs",
        f"num_envs={c.num_envs} transitions per step exceed buffer_size={c.buffer_size}",
    )
    require(c.loss in ("huber", "squared"), "loss", f"must be 'huber' or 'squared', got {c.loss!r}")
    require((c.tau > 0) & (c.tau <= 1), "tau", f"must be in (0, 1], got {c.tau}")
    for name in ("epsilon_start", "epsilon_end", "exploration_fraction"):
        v = getattr(c, name)
        require((v >= 0) & (v <= 1), name, f"must be in [0, 1], got {v}")
    iteration_schedule(c.total_steps, c.num_envs, c.eval_every)


class State(eqx.Module):
    """Everything a DQN run carries from one iteration to the next."""

    config: Config
    env: VecEnv
    eval_env: VecEnv
    env_state: VecEnvState
    q_net: QNetwork
    target_net: QNetwork
    opt_state: Any
    buffer: replay.ReplayBuffer[Transition]
    key: PRNGKeyArray
    iteration: Int[Array, ""]

    @property
    def env_steps(self) -> Int[Array, ""]:
        """Environment steps taken so far (all envs together)."""
        return self.iteration * self.config.num_envs


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Adam with global-norm gradient clipping; the learning rate may be a traced leaf."""
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate)
    )


def make_envs(config: Config) -> tuple[VecEnv, VecEnv]:
    """Training and evaluation envs; ``ValueError`` for unknown ids or continuous actions."""
    env = VecEnv.make(config.env_id, num_envs=config.num_envs)
    env.num_actions  # noqa: B018 (raises for a continuous action space)
    return env, VecEnv.make(config.env_id, num_envs=config.eval_envs)


def init(key: PRNGKeyArray, config: Config) -> State:
    """Reset the envs, build the networks, optimizer state and an empty replay buffer."""
    env, eval_env = make_envs(config)
    key, env_key, net_key = jax.random.split(key, 3)
    env_state = env.reset(env_key)
    q_net = QNetwork(
        env.obs_shape,
        env.num_actions,
        config.hidden_sizes,
        config.activation,
        config.dueling,
        key=net_key,
    )
    opt_state = make_optimizer(config).init(eqx.filter(q_net, eqx.is_inexact_array))
    example = Transition(
        obs=env_state.obs[0],
        action=jnp.int32(0),
        reward=jnp.float32(0.0),
        discount=jnp.float32(1.0),
        next_obs=env_state.obs[0],
    )
    buffer = replay.init(example, config.buffer_size)
    return State(
        config,
        env,
        eval_env,
        env_state,
        q_net,
        q_net,
        opt_state,
        buffer,
        key,
        jnp.zeros((), jnp.int32),
    )


def epsilon(config: Config, env_steps: Int[Array, ""]) -> Float[Array, ""]:
    """ε after ``env_steps``: linear from start to end over ``exploration_fraction`` of the run."""
    decay = config.exploration_fraction * config.total_steps
    return linear_schedule(config.epsilon_start, config.epsilon_end, decay, env_steps)


def _learn(state: State, key: PRNGKeyArray) -> tuple[QNetwork, Any, dict[str, Array]]:
    c = state.config
    optimizer = make_optimizer(c)

    def update(carry, k):
        q_net, opt_state = carry
        batch = replay.sample(k, state.buffer, c.batch_size)
        q_net, opt_state, info = td_update(
            q_net,
            state.target_net,
            opt_state,
            batch,
            optimizer=optimizer,
            gamma=c.gamma,
            double=c.double,
            loss=c.loss,
        )
        return (q_net, opt_state), {"loss": info["loss"], "q_mean": info["q_mean"]}

    keys = jax.random.split(key, c.updates_per_iteration)
    (q_net, opt_state), info = jax.lax.scan(update, (state.q_net, state.opt_state), keys)
    return q_net, opt_state, jax.tree.map(jnp.mean, info)


def _keep_if(ready: Array, new: Any, old: Any) -> Any:
    new_arrays, static = eqx.partition(new, eqx.is_array)
    old_arrays = eqx.filter(old, eqx.is_array)
    chosen = jax.tree.map(lambda n, o: jnp.where(ready, n, o), new_arrays, old_arrays)
    return eqx.combine(chosen, static)


def step(state: State) -> tuple[State, dict[str, Array]]:
    """One iteration: act, store, learn (once ``learning_starts`` steps are in), update target."""
    c = state.config
    key, act_key, env_key, learn_key = jax.random.split(state.key, 4)
    eps = epsilon(c, state.env_steps)
    obs = state.env_state.obs
    action = epsilon_greedy(act_key, jax.vmap(state.q_net)(obs), eps)
    env_state, ts = state.env.step(env_key, state.env_state, action)
    buffer = replay.add(state.buffer, to_transition(obs, action, ts))
    state = eqx.tree_at(lambda s: (s.env_state, s.buffer), state, (env_state, buffer))

    env_steps = state.env_steps + c.num_envs
    ready = (env_steps >= c.learning_starts) & replay.can_sample(buffer, c.batch_size)
    # Learn unconditionally and keep the result only when ready: a lax.cond would copy the
    # replay buffer into its branches, and under vmap it turns into a select anyway.
    q_net, opt_state, info = _learn(state, learn_key)
    q_net, opt_state = _keep_if(ready, (q_net, opt_state), (state.q_net, state.opt_state))
    info = jax.tree.map(lambda x: jnp.where(ready, x, 0.0), info)
    iteration = state.iteration + 1
    target_net = periodic_update(state.target_net, q_net, iteration, c.target_update_period, c.tau)
    state = eqx.tree_at(
        lambda s: (s.q_net, s.target_net, s.opt_state, s.key, s.iteration),
        state,
        (q_net, target_net, opt_state, key, iteration),
    )
    metrics = {
        **info,
        **finished_episode_stats(ts),
        "epsilon": eps,
        "learning": ready,
        "env_steps": env_steps,
    }
    return state, metrics


def evaluate(state: State) -> tuple[State, dict[str, Array]]:
    """Greedy return (one episode on each of ``eval_envs`` separate envs), averaged."""
    key, eval_key = jax.random.split(state.key)
    returns = greedy_episode_returns(
        eval_key, state.eval_env, lambda obs: greedy(jax.vmap(state.q_net)(obs))
    )
    state = eqx.tree_at(lambda s: s.key, state, key)
    return state, {"eval_return": jnp.mean(returns), "eval_env_steps": state.env_steps}


def schedule(config: Config) -> tuple[int, int]:
    """``(num_periods, iterations_per_period)``; one iteration steps each of ``num_envs`` once."""
    return iteration_schedule(config.total_steps, config.num_envs, config.eval_every)


def make_train(config: Config):
    """``train(key) -> (final_state, metrics)`` running the whole config; checks come first.

    ``jax.jit(jax.vmap(make_train(config)))(keys)`` trains one agent per key.
    """
    check_config(config)
    make_envs(config)  # unknown env id / continuous actions: fail before any compile
    num_periods, period = schedule(config)

    def train(key: PRNGKeyArray) -> tuple[State, dict[str, Array]]:
        return run_periods(step, evaluate, init(key, config), num_periods, period)

    return train
