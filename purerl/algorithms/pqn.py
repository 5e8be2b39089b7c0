"""PQN: parallelised Q-learning with λ-returns, no replay buffer and no target network
(Gallici, Fellows, Ellis, Pou, Masmitja, Foerster & Martin, 2024, "Simplifying Deep Temporal
Difference Learning").

One ``step`` collects ``num_steps`` ε-greedy steps from each of ``num_envs`` envs, computes
Q(λ) targets over the rollout with the current network,

``G_t = r_t + discount_t · ((1 − λ)·max_a Q(s_{t+1}, a) + λ·G_{t+1})``

(cut at episode ends, where a truncation bootstraps from ``max_a Q`` of the true final
observation and a termination does not), then runs ``update_epochs`` passes of
``num_minibatches`` shuffled minibatches of ``½ (Q(s_t, a_t) − G_t)²`` regression. LayerNorm
in the Q-network is what keeps this stable without a target network (the paper's analysis).

**Recurrent PQN** (rPQN, ``recurrent="gru"`` or ``"lstm"``; the paper's recurrent variant):
a ``RecurrentQNetwork`` carries a memory across steps, reset at episode starts. Targets use
``max_a Q`` of each next observation seen with the carry after that step; the batch is cut into
per-env sequences of ``sequence_length`` steps (0: the whole rollout), minibatches are whole
sequences, and the loss re-runs the core over each from its stored carry.

Defaults are the authors' published CartPole-v1 settings (github.com/mttga/purejaxql,
``purejaxql/config/alg/pqn_cartpole.yaml``, commit 970ecce): 32 envs × 64 steps, 4 epochs ×
16 minibatches, 2 × 256 LayerNorm MLP, RAdam lr 1e-4 decayed linearly, gradient norm 10,
ε 1 → 0.2 over 20% of the run, γ = 0.99, λ = 0.95, rewards scaled by 0.1.

Example:
    >>> config = pqn.Config(env_id="CartPole-v1", total_steps=204_800)
    >>> train = jax.jit(jax.vmap(pqn.make_train(config)))
    >>> state, metrics = train(jax.random.split(jax.random.PRNGKey(0), 8))
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

from purerl.algorithms import value_based as vb
from purerl.algorithms.common import QUICK_ROLLOUT, check_shared_fields, require
from purerl.algorithms.core import Algorithm, register
from purerl.algorithms.rollout import (
    Rollout,
    check_recurrent_fields,
    collect,
    minibatch_epochs,
    update_batch,
)
from purerl.envs import VecEnv, VecEnvState
from purerl.recurrent import carries_after, initial_carry, is_recurrent, unroll
from purerl.returns import lambda_returns
from purerl.value import squared_loss

__all__ = ["Config", "State", "init", "step", "ALGORITHM", "make_train", "schedule"]


class Config(eqx.Module):
    """PQN hyperparameters (static: shapes and switches; float leaves: vmappable).

    ``layer_norm`` puts LayerNorm before every hidden activation (the paper's default;
    switch it off to see why it matters). ``network`` as in DQN: ``"auto"`` picks the MinAtar
    CNN for 10×10×C observations. ``anneal_lr`` decays the learning rate linearly to 0 over
    the run's updates. ``recurrent``, ``core_size``, ``sequence_length``: recurrent PQN (as in
    ``ppo.Config``); ``num_minibatches`` then splits the per-env sequences.
    """

    env_id: str = eqx.field(static=True, default="CartPole-v1")
    total_steps: int = eqx.field(static=True, default=512_000)
    num_envs: int = eqx.field(static=True, default=32)
    num_steps: int = eqx.field(static=True, default=64)
    update_epochs: int = eqx.field(static=True, default=4)
    num_minibatches: int = eqx.field(static=True, default=16)
    hidden_sizes: tuple[int, ...] = eqx.field(static=True, default=(256, 256))
    activation: str = eqx.field(static=True, default="relu")
    network: str = eqx.field(static=True, default="auto")
    layer_norm: bool = eqx.field(static=True, default=True)
    anneal_lr: bool = eqx.field(static=True, default=True)
    eval_every: int = eqx.field(static=True, default=20_480)
    eval_envs: int = eqx.field(static=True, default=8)
    learning_rate: Real[ArrayLike, ""] = 1e-4
    gamma: Real[ArrayLike, ""] = 0.99
    lambda_: Real[ArrayLike, ""] = 0.95
    reward_scale: Real[ArrayLike, ""] = 0.1
    epsilon_start: Real[ArrayLike, ""] = 1.0
    epsilon_end: Real[ArrayLike, ""] = 0.2
    exploration_fraction: Real[ArrayLike, ""] = 0.2
    max_grad_norm: Real[ArrayLike, ""] = 10.0
    recurrent: str = eqx.field(static=True, default="none")
    core_size: int = eqx.field(static=True, default=64)
    sequence_length: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        check_config(self)


def check_config(c: Config) -> None:
    """Raise ``ValueError`` naming the first bad field (environment-free checks)."""
    positive = ("total_steps", "num_envs", "num_steps", "update_epochs", "num_minibatches")
    check_shared_fields(c, (*positive, "eval_every", "eval_envs"))
    vb.check_q_fields(c)
    batch = c.num_envs * c.num_steps
    require(
        batch % c.num_minibatches == 0,
        "num_minibatches",
        f"must divide the batch num_envs × num_steps = {batch}, got {c.num_minibatches}",
    )
    require((c.lambda_ >= 0) & (c.lambda_ <= 1), "lambda_", f"must be in [0, 1], got {c.lambda_}")
    require(c.reward_scale > 0, "reward_scale", f"must be > 0, got {c.reward_scale}")
    check_recurrent_fields(c)


def iteration_steps(c: Config) -> int:
    """Env steps of one iteration: ``num_envs × num_steps``."""
    return c.num_envs * c.num_steps


class State(eqx.Module):
    """Training state of a PQN run (``network``: the LayerNorm Q-network)."""

    config: Config
    env: VecEnv
    env_state: VecEnvState
    network: Any
    opt_state: Any
    key: PRNGKeyArray
    iteration: Int[Array, ""]
    carry: Any = None  # a recurrent agent's carry in each env ([num_envs, ...]), else None

    @property
    def env_steps(self) -> Int[Array, ""]:
        """Environment steps taken so far (all envs together)."""
        return self.iteration * self.config.num_envs * self.config.num_steps


def make_optimizer(c: Config) -> optax.GradientTransformation:
    """RAdam (Liu et al., 2020; the authors' choice) behind global-norm clipping; with
    ``anneal_lr`` the rate decays linearly to 0 over all minibatch updates."""
    lr = c.learning_rate
    if c.anneal_lr:
        iterations = c.total_steps // iteration_steps(c)
        total = iterations * c.update_epochs * c.num_minibatches
        lr = optax.linear_schedule(c.learning_rate, 0.0, total)
    return optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.radam(lr))


def init(key: PRNGKeyArray, config: Config, *, network: Any = None) -> State:
    """Reset the envs, build the LayerNorm Q-network (or the user's ``network``: a module or
    factory mapping one observation to Q-values) and its optimizer state."""
    env = VecEnv.make(config.env_id, num_envs=config.num_envs)
    key, env_key, net_key = jax.random.split(key, 3)
    q_net = vb.make_q_network(
        net_key, env, config, network, layer_norm=config.layer_norm, recurrent=config.recurrent
    )
    opt_state = make_optimizer(config).init(eqx.filter(q_net, eqx.is_inexact_array))
    zero = jnp.zeros((), jnp.int32)
    carry = initial_carry(q_net, config.num_envs)
    return State(config, env, env.reset(env_key), q_net, opt_state, key, zero, carry)


def q_lambda_targets(q_net: Any, rollout: Rollout, c: Config) -> Float[Array, "T N"]:
    """Peng's Q(λ) targets of a rollout: ``lambda_returns`` with ``v_t = max_a Q(s_{t+1}, a)``
    from the true next observation (the final one where an episode ended)."""
    if is_recurrent(q_net):  # each next_obs seen with the carry after its step
        after = carries_after(rollout.extras["carry"], rollout.final_carry)
        no_reset = jnp.zeros(rollout.reward.shape[1:], bool)
        v_t = jax.lax.map(
            lambda x: jnp.max(jax.vmap(q_net)(x[0], x[1], no_reset)[1], axis=-1),
            (after, rollout.next_obs),
        )
    else:
        # one time step at a time: a single [T·N] batch ran 3× slower on CPU (cache misses)
        v_t = jax.lax.map(lambda obs: jnp.max(jax.vmap(q_net)(obs), axis=-1), rollout.next_obs)
    return lambda_returns(
        c.reward_scale * rollout.reward,
        rollout.discount(c.gamma),
        jax.lax.stop_gradient(v_t),
        c.lambda_,
        done_t=rollout.done,
    )


def _loss(q_net: Any, batch: dict[str, Array]) -> tuple[Array, dict[str, Array]]:
    if "carry" in batch:  # sequences [L, B]: re-run the core from the stored carries
        start = jax.tree.map(lambda x: x[0], batch["carry"])
        q = unroll(q_net, start, batch["obs"], batch["first"])[1]
    else:
        q = jax.vmap(q_net)(batch["obs"])
    q_a = jnp.take_along_axis(q, batch["action"][..., None], axis=-1)[..., 0]
    return jnp.mean(squared_loss(batch["target"] - q_a)), {"q_mean": jnp.mean(q_a)}


def _update(optimizer: optax.GradientTransformation):
    def update(carry, batch):
        q_net, opt_state = carry
        (loss, info), grads = eqx.filter_value_and_grad(_loss, has_aux=True)(q_net, batch)
        params = eqx.filter(q_net, eqx.is_inexact_array)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (eqx.apply_updates(q_net, updates), opt_state), {"loss": loss, **info}

    return update


def step(state: State) -> tuple[State, dict[str, Array]]:
    """Collect a rollout ε-greedily, compute Q(λ) targets, run the minibatch epochs."""
    c = state.config
    key, rollout_key, epoch_key = jax.random.split(state.key, 3)
    eps = vb.epsilon(c, state.env_steps)
    policy = vb.epsilon_greedy_policy(state.network, eps)
    env_state, rollout, episodes = collect(
        rollout_key, state.env, state.env_state, policy, c.num_steps, carry=state.carry
    )
    targets = q_lambda_targets(state.network, rollout, c)
    data = {"obs": rollout.obs, "action": rollout.action, "target": targets}
    batch, axis = update_batch(data, rollout, c)
    (q_net, opt_state), info = minibatch_epochs(
        _update(make_optimizer(c)),
        (state.network, state.opt_state),
        epoch_key,
        batch,
        epochs=c.update_epochs,
        num_minibatches=c.num_minibatches,
        axis=axis,
    )
    state = eqx.tree_at(
        lambda s: (s.env_state, s.network, s.opt_state, s.key, s.iteration, s.carry),
        state,
        (env_state, q_net, opt_state, key, state.iteration + 1, rollout.final_carry),
        is_leaf=lambda x: x is None,
    )
    metrics = {**jax.tree.map(jnp.mean, info), **episodes, "epsilon": eps}
    return state, {**metrics, "env_steps": state.env_steps}


def quick_config() -> Config:
    """A PQN run that trains on a probe env in a second (conformance tests)."""
    return Config(**QUICK_ROLLOUT, update_epochs=2, num_minibatches=2)


ALGORITHM = register(
    Algorithm(
        name="pqn",
        Config=Config,
        init=init,
        step=step,
        greedy_policy=vb.greedy_policy,
        iteration_steps=iteration_steps,
        quick_config=quick_config,
        check=vb.check_env,
    )
)
make_train = ALGORITHM.make_train
schedule = ALGORITHM.schedule
