"""L3 helpers shared by the Q-learning algorithms (DQN, PQN): config and environment checks,
the Q-network (the default chosen from the observation shape, or the user's), ε-greedy and
greedy policies. Written once here so neither algorithm file copies the other."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
from jaxtyping import Array, Float, Int, PRNGKeyArray

from purerl.algorithms.common import require
from purerl.algorithms.core import Policy, build_network
from purerl.envs import VecEnv
from purerl.networks import TORSOS, QNetwork, torso_for
from purerl.policies import epsilon_greedy, greedy, linear_schedule
from purerl.recurrent import RecurrentQNetwork, initial_carry, is_recurrent

__all__ = [
    "check_q_fields",
    "check_env",
    "make_q_network",
    "epsilon",
    "epsilon_greedy_policy",
    "greedy_policy",
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


def check_env(c: Any) -> None:
    """``ValueError`` for an unknown env id, a continuous action space, or a ``network`` that
    cannot take the observations (e.g. a CNN on flat ones)."""
    env = VecEnv.make(c.env_id, num_envs=1)
    env.num_actions  # noqa: B018 (raises for a continuous action space)
    torso_for(env.obs_shape, c.network)


def make_q_network(
    key: PRNGKeyArray,
    env: VecEnv,
    c: Any,
    network: Any = None,
    *,
    dueling: bool = False,
    layer_norm: bool = False,
    recurrent: str = "none",
) -> eqx.Module:
    """The Q-network for ``env`` (one observation → Q-values ``[num_actions]``): the user's
    ``network`` (module or factory, see ``core.build_network``) or the default, whose torso
    ``c.network`` picks (``"auto"``: MLP for flat observations, MinAtar CNN for small images,
    Nature CNN for ≥ 36×36 images). ``recurrent="gru"``/``"lstm"``: a ``RecurrentQNetwork``
    (``(carry, obs, first) -> (carry, Q-values)``) with ``c.core_size`` units."""

    def default(k: PRNGKeyArray) -> QNetwork | RecurrentQNetwork:
        if recurrent != "none":
            return RecurrentQNetwork(
                env.obs_shape,
                env.num_actions,
                hidden_sizes=c.hidden_sizes,
                activation=c.activation,
                core=recurrent,
                core_size=c.core_size,
                layer_norm=layer_norm,
                key=k,
            )
        return QNetwork(
            env.obs_shape,
            env.num_actions,
            c.hidden_sizes,
            c.activation,
            dueling,
            torso=c.network,
            layer_norm=layer_norm,
            key=k,
        )

    return build_network(network, key, env, default, recurrent=recurrent != "none")


def epsilon(c: Any, env_steps: Int[Array, ""]) -> Float[Array, ""]:
    """ε after ``env_steps``: linear from ``epsilon_start`` to ``epsilon_end`` over the first
    ``exploration_fraction`` of ``total_steps``, then constant."""
    decay = c.exploration_fraction * c.total_steps
    return linear_schedule(c.epsilon_start, c.epsilon_end, decay, env_steps)


def _epsilon_greedy_act(params, key, obs, carry, first):
    network, eps = params
    return epsilon_greedy(key, jax.vmap(network)(obs), eps), carry, {}


def _greedy_act(network, key, obs, carry, first):
    return greedy(jax.vmap(network)(obs)), carry, {}


def _recurrent_epsilon_greedy_act(params, key, obs, carry, first):
    network, eps = params
    new_carry, q = jax.vmap(network)(carry, obs, first)
    # the carry *before* the step: a loss re-runs the core from it (resetting at ``first``)
    return epsilon_greedy(key, q, eps), new_carry, {"carry": carry}


def _recurrent_greedy_act(network, key, obs, carry, first):
    new_carry, q = jax.vmap(network)(carry, obs, first)
    return greedy(q), new_carry, {}


def epsilon_greedy_policy(network: Any, eps: Float[Array, ""]) -> Policy:
    """ε-greedy on ``network``'s Q-values (params ``(network, ε)``), nothing extra stored (a
    recurrent network stores the carry before each step)."""
    if is_recurrent(network):
        return Policy(
            (network, eps), _recurrent_epsilon_greedy_act, lambda p, n: initial_carry(p[0], n)
        )
    return Policy((network, eps), _epsilon_greedy_act)


def greedy_policy(state: Any) -> Policy:
    """Greedy on ``state.network``'s Q-values: how DQN and PQN are evaluated (a recurrent
    network carries its memory through each episode)."""
    if is_recurrent(state.network):
        return Policy(state.network, _recurrent_greedy_act, initial_carry)
    return Policy(state.network, _greedy_act)
