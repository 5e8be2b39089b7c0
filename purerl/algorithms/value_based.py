"""L3 helpers shared by the Q-learning algorithms (DQN, PQN): environments, the Q-network
chosen from the observation shape, ε-greedy exploration, greedy evaluation. Written once
here so neither algorithm file copies the other."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from purerl.algorithms.common import greedy_episode_returns, require
from purerl.envs import VecEnv
from purerl.networks import TORSOS, QNetwork, torso_for
from purerl.policies import epsilon_greedy, greedy, linear_schedule

__all__ = [
    "check_q_fields",
    "make_envs",
    "make_q_network",
    "epsilon",
    "epsilon_greedy_act",
    "evaluate",
]


def check_q_fields(c: Any) -> None:
    """Environment-free checks of the fields DQN and PQN share: ``network`` and the
    exploration schedule (``epsilon_start``, ``epsilon_end``, ``exploration_fraction``)."""
    require(
        c.network in ("auto", *TORSOS),
        "network",
        f"must be 'auto' or one of {list(TORSOS)}, got {c.network!r}",
    )
    for name in ("epsilon_start", "epsilon_end", "exploration_fraction"):
        v = getattr(c, name)
        require((v >= 0) & (v <= 1), name, f"must be in [0, 1], got {v}")


def make_envs(c: Any) -> tuple[VecEnv, VecEnv]:
    """Training and evaluation envs. ``ValueError`` for an unknown id, a continuous action
    space, or a ``network`` that cannot take the observations (e.g. a CNN on flat ones)."""
    env = VecEnv.make(c.env_id, num_envs=c.num_envs)
    env.num_actions  # noqa: B018 (raises for a continuous action space)
    torso_for(env.obs_shape, c.network)
    return env, VecEnv.make(c.env_id, num_envs=c.eval_envs)


def make_q_network(
    key: PRNGKeyArray, env: VecEnv, c: Any, *, dueling: bool = False, layer_norm: bool = False
) -> QNetwork:
    """The Q-network for ``env``: torso from ``c.network`` (``"auto"``: MLP for flat
    observations, MinAtar CNN for small images, Nature CNN for ≥ 36×36 images)."""
    return QNetwork(
        env.obs_shape,
        env.num_actions,
        c.hidden_sizes,
        c.activation,
        dueling,
        torso=c.network,
        layer_norm=layer_norm,
        key=key,
    )


def epsilon(c: Any, env_steps: Int[Array, ""]) -> Float[Array, ""]:
    """ε after ``env_steps``: linear from ``epsilon_start`` to ``epsilon_end`` over the first
    ``exploration_fraction`` of ``total_steps``, then constant."""
    decay = c.exploration_fraction * c.total_steps
    return linear_schedule(c.epsilon_start, c.epsilon_end, decay, env_steps)


def epsilon_greedy_act(q_net: QNetwork, eps: Float[Array, ""]):
    """An ``ActFn`` for ``rollout.collect``: ε-greedy on ``q_net``, nothing extra stored."""

    def act(key: PRNGKeyArray, obs: Array):
        action = epsilon_greedy(key, jax.vmap(q_net)(obs), eps)
        return action, action, {}

    return act


def evaluate(state: Any) -> tuple[Any, dict[str, Array]]:
    """Greedy return (one episode on each of ``eval_envs`` separate envs), averaged.

    Needs ``state.key``, ``state.eval_env``, ``state.q_net`` and ``state.env_steps``.
    """
    key, eval_key = jax.random.split(state.key)
    returns = greedy_episode_returns(
        eval_key, state.eval_env, lambda obs: greedy(jax.vmap(state.q_net)(obs))
    )
    state = eqx.tree_at(lambda s: s.key, state, key)
    return state, {"eval_return": jnp.mean(returns), "eval_env_steps": state.env_steps}
