"""PPO-clip (Schulman et al., 2017) with GAE, minibatch epochs, clipped value loss, gradient
clipping and optional linear learning-rate annealing; discrete and continuous actions.

One ``step`` collects ``num_steps`` steps from ``num_envs`` envs, computes GAE(λ) advantages
(a truncation bootstraps from the value of the true final observation), then runs
``update_epochs`` passes over the batch in ``num_minibatches`` shuffled minibatches.
Defaults follow PureJaxRL's CartPole settings (Lu et al., 2022).

Example:
    >>> config = ppo.Config(env_id="CartPole-v1", total_steps=100_000)
    >>> train = jax.jit(jax.vmap(ppo.make_train(config)))
    >>> state, metrics = train(jax.random.split(jax.random.PRNGKey(0), 8))
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from purerl.algorithms import actor_critic as ac
from purerl.algorithms.common import require
from purerl.algorithms.rollout import Rollout
from purerl.policy_gradient import ppo_loss
from purerl.returns import gae

__all__ = ["Config", "State", "init", "step", "evaluate", "make_train", "schedule"]

State = ac.PGState
evaluate = ac.evaluate
schedule = ac.schedule


class Config(ac.PGConfig):
    """PPO hyperparameters (shared ones documented in ``actor_critic.PGConfig``)."""

    num_envs: int = eqx.field(static=True, default=4)
    num_steps: int = eqx.field(static=True, default=128)
    update_epochs: int = eqx.field(static=True, default=4)
    num_minibatches: int = eqx.field(static=True, default=4)
    anneal_lr: bool = eqx.field(static=True, default=True)
    clip_value: bool = eqx.field(static=True, default=True)
    normalize_advantages: bool = eqx.field(static=True, default=True)
    eval_every: int = eqx.field(static=True, default=10_240)
    learning_rate: float | Float[Array, ""] = 2.5e-4
    gae_lambda: float | Float[Array, ""] = 0.95
    clip_eps: float | Float[Array, ""] = 0.2
    value_coef: float | Float[Array, ""] = 0.5

    def __check_init__(self):
        require(self.update_epochs > 0, "update_epochs", f"must be > 0, got {self.update_epochs}")
        require(
            self.num_minibatches > 0, "num_minibatches", f"must be > 0, got {self.num_minibatches}"
        )
        batch = self.num_envs * self.num_steps
        require(
            batch % self.num_minibatches == 0,
            "num_minibatches",
            f"must divide the batch num_envs × num_steps = {batch}, got {self.num_minibatches}",
        )
        require(self.clip_eps > 0, "clip_eps", f"must be > 0, got {self.clip_eps}")
        require(
            (self.gae_lambda >= 0) & (self.gae_lambda <= 1),
            "gae_lambda",
            f"must be in [0, 1], got {self.gae_lambda}",
        )
        require(self.value_coef >= 0, "value_coef", f"must be >= 0, got {self.value_coef}")


def total_updates(config: Config) -> int | None:
    """Number of optimizer updates in the run (for learning-rate annealing), or ``None``."""
    if not config.anneal_lr:
        return None
    num_periods, period = schedule(config)
    return num_periods * period * config.update_epochs * config.num_minibatches


def init(key: PRNGKeyArray, config: Config) -> State:
    """Reset envs, build the actor-critic and optimizer state."""
    return ac.init_state(key, config, total_updates(config))


def _advantages(network, rollout: Rollout, config: Config) -> tuple[Array, Array]:
    values = rollout.extras["value"]
    next_values = ac.values_of(network, rollout.next_obs)
    adv = gae(
        rollout.reward,
        rollout.discount(config.gamma),
        values,
        next_values,
        config.gae_lambda,
        done_t=rollout.done,
    )
    return adv, adv + values


def _minibatch_loss(network, batch: dict[str, Array], config: Config):
    adv = batch["advantages"]
    if config.normalize_advantages:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return ppo_loss(
        network,
        batch["obs"],
        batch["action"],
        batch["log_prob"],
        batch["value"],
        adv,
        batch["returns"],
        clip_eps=config.clip_eps,
        value_clip_eps=config.clip_eps if config.clip_value else None,
        value_coef=config.value_coef,
        entropy_coef=config.entropy_coef,
    )


def _epoch(carry: tuple[Any, Any], key: PRNGKeyArray, flat: dict[str, Array], config: Config):
    optimizer = ac.make_optimizer(config, total_updates(config))
    size = jax.tree.leaves(flat)[0].shape[0]
    order = jax.random.permutation(key, size).reshape(config.num_minibatches, -1)

    def update(carry, idx):
        network, opt_state = carry
        batch = jax.tree.map(lambda x: x[idx], flat)
        grad_fn = eqx.filter_value_and_grad(_minibatch_loss, has_aux=True)
        (loss, info), grads = grad_fn(network, batch, config)
        network, opt_state = ac.apply_gradients(network, opt_state, grads, optimizer)
        return (network, opt_state), {"loss": loss, **info}

    return jax.lax.scan(update, carry, order)


def step(state: State) -> tuple[State, dict[str, Array]]:
    """Collect a rollout, compute GAE, run the minibatch epochs of clipped updates."""
    c = state.config
    state, rollout, episodes = ac.collect_rollout(state)
    advantages, returns = _advantages(state.network, rollout, c)
    flat = {
        "obs": rollout.obs,
        "action": rollout.action,
        "log_prob": rollout.extras["log_prob"],
        "value": rollout.extras["value"],
        "advantages": advantages,
        "returns": returns,
    }
    flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), flat)
    key, epoch_key = jax.random.split(state.key)
    state = eqx.tree_at(lambda s: s.key, state, key)
    (network, opt_state), info = jax.lax.scan(
        lambda carry, k: _epoch(carry, k, flat, c),
        (state.network, state.opt_state),
        jax.random.split(epoch_key, c.update_epochs),
    )
    return ac.finish_iteration(
        state, network, opt_state, {**jax.tree.map(jnp.mean, info), **episodes}
    )


def make_train(config: Config):
    """``train(key) -> (final_state, metrics)``; every check runs first, before any compile."""
    return ac.make_train(config, step, init)
