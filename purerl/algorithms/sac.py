"""SAC: soft actor-critic with twin critics and automatic entropy tuning (Haarnoja et al.,
2018, "Soft Actor-Critic Algorithms and Applications", arXiv:1812.05905).

One ``step`` = act in ``num_envs`` envs (uniformly random until ``learning_starts``, then a
sample of the tanh-squashed Gaussian policy), store, then ``updates_per_iteration`` updates,
each: the critics on the soft clipped-double-Q target, the actor on the reparameterised
``α·log π − min_k Q_k``, the temperature on ``−log α·(log π + H̄)``, a Polyak step of the
target critics. Evaluation acts with ``tanh(mean)``.

Example:
    >>> config = sac.Config(env_id="Pendulum-v1", total_steps=10_000)
    >>> train = jax.jit(jax.vmap(sac.make_train(config)))
    >>> state, metrics = train(jax.random.split(jax.random.PRNGKey(0), 4))
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray, Real

from purerl.algorithms import continuous as cont
from purerl.algorithms.actor_critic import apply_gradients
from purerl.algorithms.common import require
from purerl.envs import VecEnv
from purerl.networks import SquashedGaussianActor
from purerl.off_policy import (
    critic_loss,
    default_target_entropy,
    sac_actor_loss,
    soft_q_target,
    temperature_loss,
)
from purerl.value import polyak_update

__all__ = ["Config", "init", "step", "ALGORITHM", "make_train", "schedule"]


class Config(cont.OffPolicyConfig):
    """SAC hyperparameters (the shared ones are documented in ``OffPolicyConfig``).

    - ``autotune`` [True]: learn the temperature α towards ``target_entropy``; False keeps
      α = ``init_alpha`` fixed.
    - ``init_alpha`` [1.0]: the initial temperature (log α = 0, as in the paper's code).
    - ``target_entropy`` [None: −action_dim, the paper's heuristic]: the entropy H̄ the
      temperature steers towards.
    """

    autotune: bool = eqx.field(static=True, default=True)
    init_alpha: Real[ArrayLike, ""] = 1.0
    target_entropy: Real[ArrayLike, ""] | None = None

    def __check_init__(self):
        cont.check_off_policy_fields(self)
        require(self.init_alpha > 0, "init_alpha", f"must be > 0, got {self.init_alpha}")


def _default_actor(key: PRNGKeyArray, env: VecEnv, c: Config) -> SquashedGaussianActor:
    return SquashedGaussianActor(
        env.obs_shape, env.action_dim, c.hidden_sizes, c.activation, key=key
    )


def init(key: PRNGKeyArray, config: Config, *, network: Any = None) -> cont.OffPolicyState:
    """Envs, the squashed-Gaussian actor and twin critics (or the user's pair
    ``network=(actor, critic)``), target critics, α, optimizer states, an empty buffer."""
    return cont.init_state(
        key,
        config,
        network,
        lambda k, env: _default_actor(k, env, config),
        actor_target=False,
        temperature=config.init_alpha,
    )


def _explore(actor: Any, key: PRNGKeyArray, obs: Array) -> Array:
    return jax.vmap(actor)(obs).sample(key)


EXPLORATION = cont.Exploration(lambda s: s.actor, _explore)
"""A sample of the tanh-squashed Gaussian policy."""


def _target_entropy(state: cont.OffPolicyState) -> Any:
    c = state.config
    if c.target_entropy is None:
        return default_target_entropy(state.env.action_dim)
    return c.target_entropy


def _critic_step(state: cont.OffPolicyState, batch: Any, key: PRNGKeyArray):
    """One update of the critics on the soft target (next actions drawn from π)."""
    c, alpha = state.config, jnp.exp(state.log_alpha)
    next_action, next_log_prob = jax.vmap(state.actor)(batch.next_obs).sample_and_log_prob(key)
    q_next = jax.vmap(state.critic_target)(batch.next_obs, next_action)
    target = soft_q_target(batch.reward, c.gamma * batch.discount, q_next, next_log_prob, alpha)

    def loss(critic):
        q = jax.vmap(critic)(batch.obs, batch.action)
        return critic_loss(q, target), q

    (value, q), grads = eqx.filter_value_and_grad(loss, has_aux=True)(state.critic)
    optimizer = cont.make_optimizer(c)
    critic, critic_opt = apply_gradients(state.critic, state.critic_opt, grads, optimizer)
    return critic, critic_opt, {"critic_loss": value, "q_mean": jnp.mean(q)}


def _actor_step(state: cont.OffPolicyState, critic: Any, obs: Array, key: PRNGKeyArray):
    """One update of the actor against ``critic`` (closed over: only the actor moves)."""
    alpha = jnp.exp(state.log_alpha)

    def loss(actor):
        action, log_prob = jax.vmap(actor)(obs).sample_and_log_prob(key)
        return sac_actor_loss(log_prob, jax.vmap(critic)(obs, action), alpha), log_prob

    (value, log_prob), grads = eqx.filter_value_and_grad(loss, has_aux=True)(state.actor)
    optimizer = cont.make_optimizer(state.config)
    actor, actor_opt = apply_gradients(state.actor, state.actor_opt, grads, optimizer)
    return actor, actor_opt, log_prob, {"actor_loss": value, "entropy": -jnp.mean(log_prob)}


def _temperature_step(state: cont.OffPolicyState, log_prob: Array):
    """One update of log α (a no-op without ``autotune``)."""
    if not state.config.autotune:
        return state.log_alpha, state.alpha_opt
    target_entropy = _target_entropy(state)
    grad = jax.grad(temperature_loss)(state.log_alpha, log_prob, target_entropy)
    updates, alpha_opt = cont.make_optimizer(state.config).update(grad, state.alpha_opt)
    return state.log_alpha + updates, alpha_opt


def _update(state: cont.OffPolicyState, key: PRNGKeyArray):
    sample_key, critic_key, actor_key = jax.random.split(key, 3)
    batch = cont.make_buffer(state.config).sample(sample_key, state.buffer).batch
    critic, critic_opt, critic_info = _critic_step(state, batch, critic_key)
    actor, actor_opt, log_prob, actor_info = _actor_step(state, critic, batch.obs, actor_key)
    log_alpha, alpha_opt = _temperature_step(state, log_prob)
    target = polyak_update(state.critic_target, critic, state.config.tau)
    state = eqx.tree_at(
        lambda s: (
            s.actor,
            s.critic,
            s.critic_target,
            s.actor_opt,
            s.critic_opt,
            s.log_alpha,
            s.alpha_opt,
            s.updates,
        ),
        state,
        (actor, critic, target, actor_opt, critic_opt, log_alpha, alpha_opt, state.updates + 1),
    )
    return state, {**critic_info, **actor_info, "alpha": jnp.exp(log_alpha)}


def _learn(state: cont.OffPolicyState, key: PRNGKeyArray):
    keys = jax.random.split(key, state.config.updates_per_iteration)
    state, info = jax.lax.scan(_update, state, keys)
    return state, jax.tree.map(jnp.mean, info)


def quick_config() -> Config:
    """A SAC run that trains on a probe env in seconds (conformance tests)."""
    return Config(**cont.quick_fields())


ALGORITHM = cont.register_off_policy(
    "sac",
    Config,
    init,
    EXPLORATION,
    _learn,
    cont.greedy_policy(lambda actor, obs: actor(obs).mode()),
    quick_config,
)
step = ALGORITHM.step
"""One iteration: act, store, learn (once ``learning_starts`` env steps are in)."""
make_train = ALGORITHM.make_train
schedule = ALGORITHM.schedule
