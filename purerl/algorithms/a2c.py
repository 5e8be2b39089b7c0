"""A2C (Mnih et al., 2016): synchronous advantage actor-critic with n-step bootstrapped returns.

One ``step`` collects ``num_steps`` (= n) steps from ``num_envs`` envs and takes one gradient
step on ``a2c_loss`` with ``G_t = r_t + γ r_{t+1} + … + γ^k V(s_{t+k+1})`` cut at episode ends
(a truncation bootstraps from the value of the true final observation) and ``A_t = G_t − V(s_t)``.

Example:
    >>> config = a2c.Config(env_id="CartPole-v1", total_steps=200_000)
    >>> state, metrics = jax.jit(a2c.make_train(config))(jax.random.PRNGKey(0))
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
from jaxtyping import ArrayLike, PRNGKeyArray, Real

from purerl.algorithms import actor_critic as ac
from purerl.algorithms.common import QUICK_ROLLOUT
from purerl.algorithms.rollout import Rollout
from purerl.policy_gradient import a2c_loss
from purerl.returns import discounted_returns

__all__ = ["Config", "State", "init", "step", "learn", "ALGORITHM", "make_train", "schedule"]

State = ac.PGState


class Config(ac.PGConfig):
    """A2C hyperparameters (shared ones documented in ``actor_critic.PGConfig``).

    ``total_steps`` [500,000]: over 64 CartPole-v1 seeds, 98% end ≥ 475 and the README's 8
    seeds all at 500; at the earlier 200,000, 83% (benchmarks/RESULTS.md, "Defaults over 64
    seeds").
    """

    num_envs: int = eqx.field(static=True, default=16)
    num_steps: int = eqx.field(static=True, default=5)
    total_steps: int = eqx.field(static=True, default=500_000)
    eval_every: int = eqx.field(static=True, default=20_000)
    learning_rate: Real[ArrayLike, ""] = 7e-4


def init(key: PRNGKeyArray, config: Config, *, network: Any = None) -> State:
    """Reset envs, build the actor-critic and optimizer state."""
    return ac.init_state(key, config, network)


def _loss(network, rollout: Rollout, config: Config):
    bootstrap = ac.values_of(network, rollout.next_obs)
    returns = discounted_returns(
        rollout.reward, rollout.discount(config.gamma), v_t=bootstrap, done_t=rollout.done
    )
    advantages = returns - ac.values_of(network, rollout.obs)
    return a2c_loss(
        network,
        rollout.obs,
        rollout.action,
        advantages,
        returns,
        value_coef=config.value_coef,
        entropy_coef=config.entropy_coef,
    )


ALGORITHM = ac.register_pg(
    "a2c", Config, init, ac.one_update(_loss), lambda: Config(**QUICK_ROLLOUT)
)
step = ALGORITHM.step
"""One iteration: collect a rollout, take one gradient step (``ac.one_update``)."""
learn = ALGORITHM.learn
make_train = ALGORITHM.make_train
schedule = ALGORITHM.schedule
