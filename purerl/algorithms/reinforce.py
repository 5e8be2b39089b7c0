"""REINFORCE (Williams, 1992): Monte-Carlo policy gradient with optional learned baseline.

One ``step`` collects ``num_steps`` steps from ``num_envs`` envs, computes each step's
reward-to-go ``G_t`` up to the end of its episode, and takes one gradient step on
``reinforce_loss`` over the steps whose episode ended inside the rollout (the others have no
complete return yet). With ``baseline=True`` a value network ``b(s) ≈ E[G | s]`` is trained
alongside (``value_coef``) and subtracted; ``normalize_returns`` standardises the weights.
A time-limit truncation inside the rollout closes an episode; with a baseline its return is
bootstrapped from ``b(final_obs)``, without one it is cut there.

Example:
    >>> config = reinforce.Config(env_id="CartPole-v1", total_steps=500_000)
    >>> state, metrics = jax.jit(reinforce.make_train(config))(jax.random.PRNGKey(0))
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray, Real

from purerl.algorithms import actor_critic as ac
from purerl.algorithms.common import QUICK_ROLLOUT
from purerl.algorithms.rollout import Rollout
from purerl.policy_gradient import masked_mean, reinforce_loss
from purerl.returns import discounted_returns

__all__ = ["Config", "State", "init", "step", "learn", "ALGORITHM", "make_train", "schedule"]

State = ac.PGState


class Config(ac.PGConfig):
    """REINFORCE hyperparameters (shared ones documented in ``actor_critic.PGConfig``)."""

    num_envs: int = eqx.field(static=True, default=10)
    num_steps: int = eqx.field(static=True, default=500)
    # over 64 CartPole-v1 seeds 97% end ≥ 475, the README's 8 all do; at the earlier 500k,
    # 94% (benchmarks/RESULTS.md, "Defaults over 64 seeds")
    total_steps: int = eqx.field(static=True, default=1_000_000)
    eval_every: int = eqx.field(static=True, default=50_000)
    baseline: bool = eqx.field(static=True, default=True)
    normalize_returns: bool = eqx.field(static=True, default=True)
    learning_rate: Real[ArrayLike, ""] = 3e-3
    max_grad_norm: Real[ArrayLike, ""] = 1.0


def init(key: PRNGKeyArray, config: Config, *, network: Any = None) -> State:
    """Reset envs, build the policy (and baseline) network and optimizer state."""
    return ac.init_state(key, config, network)


def episode_complete(done: Array) -> Array:
    """``[T, N]``: the episode running at step ``t`` ends at some step ``≥ t`` of the rollout."""
    return jnp.flip(jnp.cumsum(jnp.flip(done, 0), 0), 0) > 0


def _loss(network, rollout: Rollout, config: Config):
    discount = rollout.discount(config.gamma)
    mask = episode_complete(rollout.done)
    bootstrap = ac.values_of(network, rollout.next_obs) if config.baseline else None
    g = discounted_returns(rollout.reward, discount, v_t=bootstrap, done_t=rollout.done)
    g = jax.lax.stop_gradient(g)
    policy = lambda obs: network(obs)[0]  # noqa: E731
    if config.baseline:
        values = ac.values_of(network, rollout.obs)
        weight = g - jax.lax.stop_gradient(values)
        value_loss = masked_mean(0.5 * jnp.square(values - g), mask)
    else:
        weight, value_loss = g, jnp.zeros(())
    if config.normalize_returns:
        mean = masked_mean(weight, mask)
        std = jnp.sqrt(masked_mean(jnp.square(weight - mean), mask))
        weight = (weight - mean) / (std + 1e-8)
    pg = reinforce_loss(
        policy, rollout.obs, rollout.action, weight, mask=mask, entropy_coef=config.entropy_coef
    )
    return pg + config.value_coef * value_loss, {
        "policy_loss": pg,
        "value_loss": value_loss,
        "valid_fraction": jnp.mean(mask),
    }


ALGORITHM = ac.register_pg(
    "reinforce", Config, init, ac.one_update(_loss), lambda: Config(**QUICK_ROLLOUT)
)
step = ALGORITHM.step
"""One iteration: collect a rollout, take one gradient step (``ac.one_update``)."""
learn = ALGORITHM.learn
make_train = ALGORITHM.make_train
schedule = ALGORITHM.schedule
