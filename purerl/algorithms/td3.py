"""TD3: twin delayed deep deterministic policy gradient (Fujimoto et al., 2018, "Addressing
Function Approximation Error in Actor-Critic Methods"), and DDPG (Lillicrap et al., 2016) as
one of its settings (``ddpg_config``: one critic, no target smoothing, no delay).

One ``step`` = act in ``num_envs`` envs (uniformly random until ``learning_starts``, then
``clip(μ(s) + N(0, exploration_noise²))``), store, then ``updates_per_iteration`` updates,
each: the critics on ``r + γ·min_k Q⁻_k(s', clip(μ⁻(s') + clip(ε, −c, c)))``; every
``policy_delay``-th update also the actor on ``−Q_1(s, μ(s))`` and a Polyak step of the
target actor and critics. Evaluation acts with ``μ(s)``.

Example:
    >>> train = jax.jit(jax.vmap(td3.make_train(td3.Config(env_id="Pendulum-v1"))))
    >>> ddpg = td3.ddpg_config(env_id="Pendulum-v1")       # the same algorithm, DDPG's setting
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
from purerl.networks import DeterministicActor
from purerl.off_policy import (
    clipped_double_q_target,
    critic_loss,
    deterministic_actor_loss,
    td3_target_action,
)
from purerl.value import polyak_update

__all__ = ["Config", "ddpg_config", "init", "step", "ALGORITHM", "make_train", "schedule"]


class Config(cont.OffPolicyConfig):
    """TD3 hyperparameters (shared ones in ``OffPolicyConfig``). Defaults from rejax's
    Pendulum-v1 TD3 config (batch 100, 1,000 random steps, lr 1e-3, Polyak 0.05, gradient
    clip 100, exploration noise 0.3); the paper's (Fujimoto et al., 2018) otherwise:

    - ``policy_delay`` [2]: critic updates per actor (and target) update.
    - ``exploration_noise`` [0.3]: std of the Gaussian noise on ``μ(s)`` when acting
      (actions in ``[−1, 1]``; the paper uses 0.1 on MuJoCo).
    - ``policy_noise`` [0.2], ``noise_clip`` [0.5]: target-policy smoothing.
    """

    batch_size: int = eqx.field(static=True, default=100)
    learning_starts: int = eqx.field(static=True, default=1_000)
    learning_rate: Real[ArrayLike, ""] = 1e-3
    tau: Real[ArrayLike, ""] = 0.05
    max_grad_norm: Real[ArrayLike, ""] = 100.0
    policy_delay: int = eqx.field(static=True, default=2)
    exploration_noise: Real[ArrayLike, ""] = 0.3
    policy_noise: Real[ArrayLike, ""] = 0.2
    noise_clip: Real[ArrayLike, ""] = 0.5

    def __check_init__(self):
        cont.check_off_policy_fields(self)
        require(self.policy_delay > 0, "policy_delay", f"must be > 0, got {self.policy_delay}")
        for name in ("exploration_noise", "policy_noise", "noise_clip"):
            v = getattr(self, name)
            require(v >= 0, name, f"must be >= 0, got {v}")


def ddpg_config(**overrides: Any) -> Config:
    """DDPG as a TD3 setting: one critic, no target-policy smoothing, the actor updated with
    every critic update (Fujimoto et al.'s "OurDDPG" with Gaussian exploration)."""
    return Config(**{"num_critics": 1, "policy_delay": 1, "policy_noise": 0.0, **overrides})


def _default_actor(key: PRNGKeyArray, env: VecEnv, c: Config) -> DeterministicActor:
    return DeterministicActor(env.obs_shape, env.action_dim, c.hidden_sizes, c.activation, key=key)


def init(key: PRNGKeyArray, config: Config, *, network: Any = None) -> cont.OffPolicyState:
    """Envs, the deterministic actor and the critics (or the user's pair
    ``network=(actor, critic)``), their target copies, optimizer states, an empty buffer."""
    return cont.init_state(
        key,
        config,
        network,
        lambda k, env: _default_actor(k, env, config),
        actor_target=True,
        temperature=None,
    )


def _explore(params: Any, key: PRNGKeyArray, obs: Array) -> Array:
    actor, noise_std = params
    mu = jax.vmap(actor)(obs)
    return jnp.clip(mu + noise_std * jax.random.normal(key, mu.shape), -1.0, 1.0)


EXPLORATION = cont.Exploration(lambda s: (s.actor, s.config.exploration_noise), _explore)
"""``clip(μ(s) + N(0, exploration_noise²), −1, 1)``."""


def _critic_step(state: cont.OffPolicyState, batch: Any, key: PRNGKeyArray):
    """One update of the critics on the clipped double-Q target with smoothed target actions."""
    c = state.config
    next_action = td3_target_action(
        key,
        jax.vmap(state.actor_target)(batch.next_obs),
        noise_std=c.policy_noise,
        noise_clip=c.noise_clip,
    )
    q_next = jax.vmap(state.critic_target)(batch.next_obs, next_action)
    target = clipped_double_q_target(batch.reward, c.gamma * batch.discount, q_next)

    def loss(critic):
        q = jax.vmap(critic)(batch.obs, batch.action)
        return critic_loss(q, target), q

    (value, q), grads = eqx.filter_value_and_grad(loss, has_aux=True)(state.critic)
    optimizer = cont.make_optimizer(c)
    critic, critic_opt = apply_gradients(state.critic, state.critic_opt, grads, optimizer)
    return critic, critic_opt, {"critic_loss": value, "q_mean": jnp.mean(q)}


class _Delayed(eqx.Module):
    """What the delayed update changes (kept apart so ``lax.cond`` never sees the buffer)."""

    actor: Any
    actor_opt: Any
    actor_target: Any
    critic_target: Any


def _delayed(s: cont.OffPolicyState) -> _Delayed:
    return _Delayed(s.actor, s.actor_opt, s.actor_target, s.critic_target)


def _actor_step(d: _Delayed, critic: Any, obs: Array, c: Config) -> tuple[_Delayed, Array]:
    """The delayed update: the actor on ``−Q_1(s, μ(s))`` (the first critic, closed over so
    it does not move), then a Polyak step of both target networks."""

    def loss(actor):
        q = jax.vmap(critic)(obs, jax.vmap(actor)(obs))
        return deterministic_actor_loss(q[:, 0])

    value, grads = eqx.filter_value_and_grad(loss)(d.actor)
    actor, actor_opt = apply_gradients(d.actor, d.actor_opt, grads, cont.make_optimizer(c))
    actor_target = polyak_update(d.actor_target, actor, c.tau)
    critic_target = polyak_update(d.critic_target, critic, c.tau)
    return _Delayed(actor, actor_opt, actor_target, critic_target), value


def _update(state: cont.OffPolicyState, key: PRNGKeyArray):
    c = state.config
    sample_key, critic_key = jax.random.split(key)
    batch = cont.make_buffer(c).sample(sample_key, state.buffer).batch
    critic, critic_opt, info = _critic_step(state, batch, critic_key)
    updates = state.updates + 1
    # under vmap this cond becomes a select (both branches run); one seed skips the actor
    arrays, static = eqx.partition(_delayed(state), eqx.is_array)

    def actor_branch(arrays):
        new, value = _actor_step(eqx.combine(arrays, static), critic, batch.obs, c)
        return eqx.filter(new, eqx.is_array), value

    def skip(arrays):
        return arrays, jnp.zeros((), jnp.float32)

    arrays, actor_loss = jax.lax.cond(updates % c.policy_delay == 0, actor_branch, skip, arrays)
    d = eqx.combine(arrays, static)
    state = eqx.tree_at(
        lambda s: (
            s.critic,
            s.critic_opt,
            s.updates,
            s.actor,
            s.actor_opt,
            s.actor_target,
            s.critic_target,
        ),
        state,
        (critic, critic_opt, updates, d.actor, d.actor_opt, d.actor_target, d.critic_target),
    )
    return state, {**info, "actor_loss": actor_loss}


def _learn(state: cont.OffPolicyState, key: PRNGKeyArray):
    keys = jax.random.split(key, state.config.updates_per_iteration)
    state, info = jax.lax.scan(_update, state, keys)
    return state, jax.tree.map(jnp.mean, info)


def quick_config() -> Config:
    """A TD3 run that trains on a probe env in seconds (conformance tests)."""
    return Config(**cont.quick_fields())


ALGORITHM = cont.register_off_policy(
    "td3",
    Config,
    init,
    EXPLORATION,
    _learn,
    cont.greedy_policy(lambda actor, obs: actor(obs)),
    quick_config,
)
step = ALGORITHM.step
"""One iteration: act, store, learn (once ``learning_starts`` env steps are in)."""
make_train = ALGORITHM.make_train
schedule = ALGORITHM.schedule
