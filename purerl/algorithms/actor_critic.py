"""L3 helpers shared by the policy-gradient algorithms (REINFORCE, A2C, PPO): the common
config fields and checks, the training state, the sampling and greedy policies, rollouts, the
optimizer, the start of every ``learn`` (observation statistics) and the one-gradient-step
update. Each algorithm writes its ``update(state, rollout, episodes)``; ``register_pg`` builds
``learn`` and ``step`` from it (``rollout.collect_and_learn``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

from purerl import running_stats
from purerl.algorithms.common import check_shared_fields, require
from purerl.algorithms.core import Algorithm, Policy, build_network, register
from purerl.algorithms.rollout import Rollout, collect_and_learn, collect_from, recurrent_core
from purerl.envs import VecEnv, VecEnvState
from purerl.networks import ActorCritic
from purerl.recurrent import RecurrentActorCritic, carries_after, initial_carry, is_recurrent

__all__ = [
    "PGConfig",
    "PGState",
    "check_pg_fields",
    "check_env",
    "next_values",
    "iteration_steps",
    "init_state",
    "sampling_policy",
    "greedy_policy",
    "make_optimizer",
    "apply_gradients",
    "minibatch_update",
    "one_update",
    "collect_rollout",
    "observe_rollout",
    "learner",
    "rollout_length",
    "register_pg",
]


class PGConfig(eqx.Module):
    """Fields every policy-gradient algorithm shares (each algorithm's ``Config`` adds its own).

    ``normalize_observations`` feeds every network ``(obs − mean) / std`` with running
    statistics of the observations collected so far (clipped to ±10).
    ``action_space`` is ``"auto"`` (follow the env), or ``"discrete"`` / ``"continuous"`` to
    insist on one: a mismatch with the env raises ``ValueError``.
    """

    env_id: str = eqx.field(static=True, default="CartPole-v1")
    total_steps: int = eqx.field(static=True, default=102_400)
    num_envs: int = eqx.field(static=True, default=8)
    num_steps: int = eqx.field(static=True, default=128)
    hidden_sizes: tuple[int, ...] = eqx.field(static=True, default=(64, 64))
    activation: str = eqx.field(static=True, default="tanh")
    shared_torso: bool = eqx.field(static=True, default=False)
    action_space: str = eqx.field(static=True, default="auto")
    normalize_observations: bool = eqx.field(static=True, default=False)
    eval_every: int = eqx.field(static=True, default=10_240)
    eval_envs: int = eqx.field(static=True, default=8)
    learning_rate: Real[ArrayLike, ""] = 2.5e-4
    gamma: Real[ArrayLike, ""] = 0.99
    entropy_coef: Real[ArrayLike, ""] = 0.01
    value_coef: Real[ArrayLike, ""] = 0.5
    max_grad_norm: Real[ArrayLike, ""] = 0.5
    log_std_init: Real[ArrayLike, ""] = 0.0

    def __check_init__(self):
        check_pg_fields(self)


def check_pg_fields(c: PGConfig) -> None:
    """Environment-free checks; ``ValueError`` naming the first bad field."""
    check_shared_fields(c, ("total_steps", "num_envs", "num_steps", "eval_every", "eval_envs"))
    require(
        c.action_space in ("auto", "discrete", "continuous"),
        "action_space",
        f"must be 'auto', 'discrete' or 'continuous', got {c.action_space!r}",
    )
    require(c.entropy_coef >= 0, "entropy_coef", f"must be >= 0, got {c.entropy_coef}")
    require(c.value_coef >= 0, "value_coef", f"must be >= 0, got {c.value_coef}")


def iteration_steps(c: PGConfig) -> int:
    """Env steps of one iteration: ``num_envs × num_steps``."""
    return c.num_envs * c.num_steps


def check_env(c: PGConfig) -> None:
    """``ValueError`` for an unknown env id or an action space that contradicts the config."""
    env = VecEnv.make(c.env_id, num_envs=1)
    kind = "discrete" if env.is_discrete else "continuous"
    require(
        c.action_space in ("auto", kind),
        "action_space",
        f"the config asks for a {c.action_space} action space but {c.env_id} is {kind}",
    )


class PGState(eqx.Module):
    """Training state of a policy-gradient run."""

    config: Any
    env: VecEnv
    env_state: VecEnvState
    network: Any
    opt_state: Any
    obs_stats: running_stats.RunningStats
    key: PRNGKeyArray
    iteration: Int[Array, ""]
    carry: Any = None  # a recurrent agent's carry in each env ([num_envs, ...]), else None

    def observe(self, obs: Array) -> Array:
        """What the network sees: ``obs``, normalised if the config asks for it."""
        if self.config.normalize_observations:
            return running_stats.normalize(self.obs_stats, obs)
        return obs

    @property
    def env_steps(self) -> Int[Array, ""]:
        """Environment steps taken so far (all envs together)."""
        return self.iteration * self.config.num_envs * self.config.num_steps


def make_optimizer(c: PGConfig, total_updates: int | None = None) -> optax.GradientTransformation:
    """Adam behind global-norm gradient clipping; with ``total_updates`` the learning rate
    decays linearly to 0 over that many updates. The rate may be a traced leaf (sweeps)."""
    lr = c.learning_rate
    if total_updates is not None:
        lr = optax.linear_schedule(c.learning_rate, 0.0, total_updates)
    return optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.adam(lr, eps=1e-5))


def init_state(
    key: PRNGKeyArray, c: PGConfig, network: Any = None, total_updates: int | None = None
) -> PGState:
    """Reset the envs and build the actor-critic (the default ``ActorCritic``, or the user's
    ``network``: a module or factory mapping one observation to ``(distribution, value)``) and
    its optimizer state."""
    env = VecEnv.make(c.env_id, num_envs=c.num_envs)
    key, env_key, net_key = jax.random.split(key, 3)

    core = recurrent_core(c)

    def default(k: PRNGKeyArray) -> ActorCritic | RecurrentActorCritic:
        if core != "none":
            return RecurrentActorCritic(
                env.obs_shape,
                env.action_dim,
                continuous=not env.is_discrete,
                hidden_sizes=c.hidden_sizes,
                activation=c.activation,
                core=core,
                core_size=c.core_size,
                log_std_init=c.log_std_init,
                key=k,
            )
        return ActorCritic(
            env.obs_shape,
            env.action_dim,
            continuous=not env.is_discrete,
            hidden_sizes=c.hidden_sizes,
            activation=c.activation,
            shared_torso=c.shared_torso,
            log_std_init=c.log_std_init,
            key=k,
        )

    net = build_network(network, net_key, env, default, recurrent=core != "none")
    opt_state = make_optimizer(c, total_updates).init(eqx.filter(net, eqx.is_inexact_array))
    stats = running_stats.init(env.obs_shape)
    zero = jnp.zeros((), jnp.int32)
    carry = initial_carry(net, c.num_envs)
    return PGState(c, env, env.reset(env_key), net, opt_state, stats, key, zero, carry)


def _inputs(params: tuple[Any, Any], obs: Array) -> Array:
    stats = params[1]
    return obs if stats is None else running_stats.normalize(stats, obs)


def _critic_apart(network: Any) -> bool:
    """Whether ``network`` is an ``ActorCritic`` whose critic is a tower of its own, so that
    acting can run the policy tower alone."""
    return isinstance(network, ActorCritic) and not network.shared_torso


def _act_outputs(network: Any, obs: Array) -> tuple[Any, dict[str, Array]]:
    """``(π(·|obs), extras)`` for a batch of observations. The critic runs here only when it
    shares the policy's torso (or the network is the user's own): a separate critic tower is
    evaluated by the learner over the whole rollout at once (``rollout_values``), one batched
    pass instead of a small one per step."""
    if _critic_apart(network):
        return jax.vmap(network.policy)(obs), {}
    dist, value = jax.vmap(network)(obs)
    return dist, {"value": value}


def _sample_act(params, key, obs, carry, first):
    dist, extras = _act_outputs(params[0], _inputs(params, obs))
    action = dist.sample(key)
    return action, carry, {"log_prob": dist.log_prob(action), **extras}


def _mode_act(params, key, obs, carry, first):
    dist, _ = _act_outputs(params[0], _inputs(params, obs))
    return dist.mode(), carry, {}


def _recurrent_sample_act(params, key, obs, carry, first):
    new_carry, (dist, value) = jax.vmap(params[0])(carry, _inputs(params, obs), first)
    action = dist.sample(key)
    # the carry *before* the step: a loss re-runs the core from it (resetting at ``first``)
    return action, new_carry, {"log_prob": dist.log_prob(action), "value": value, "carry": carry}


def _recurrent_mode_act(params, key, obs, carry, first):
    new_carry, (dist, _) = jax.vmap(params[0])(carry, _inputs(params, obs), first)
    return dist.mode(), new_carry, {}


def _carry_of(params: tuple[Any, Any], num_envs: int) -> Any:
    return initial_carry(params[0], num_envs)


def _params(state: PGState) -> tuple[Any, Any]:
    """``(network, observation statistics or None)``: what acting needs."""
    stats = state.obs_stats if state.config.normalize_observations else None
    return state.network, stats


def sampling_policy(state: PGState) -> Policy:
    """Sample from π(·|s); extras are the log-prob, V(s) unless the critic is a separate tower
    (``rollout_values`` then computes it for the whole rollout), and, for a recurrent agent,
    the carry before each step. The env clips continuous samples into its action box; the rollout
    keeps the raw sample (its log-prob is the one stored)."""
    if is_recurrent(state.network):
        return Policy(_params(state), _recurrent_sample_act, _carry_of)
    return Policy(_params(state), _sample_act)


def greedy_policy(state: PGState) -> Policy:
    """The mode of π(·|s): how the policy-gradient family is evaluated (a recurrent agent
    carries its state through each evaluation episode, reset at its start)."""
    if is_recurrent(state.network):
        return Policy(_params(state), _recurrent_mode_act, _carry_of)
    return Policy(_params(state), _mode_act)


def values_of(network: eqx.Module, obs: Array) -> Float[Array, "T N"]:
    """``V(obs)`` over leading ``[T, N]`` axes."""
    flat = obs.reshape(-1, *obs.shape[2:])
    return jax.vmap(network)(flat)[1].reshape(obs.shape[:2])


def rollout_values(network: eqx.Module, rollout: Rollout) -> Float[Array, "T N"]:
    """``V(obs)`` of every step ``[T, N]`` as the policy saw it: the values acting stored
    (recurrent or shared-torso networks), else one batched pass of ``network`` over the
    rollout's observations (normalised already by ``observe_rollout``). In the compiled step
    the learner's network is the one that acted, so both give the same values; with host
    actors that act on older parameters (``max_staleness`` ≥ 1), the batched pass uses the
    learner's."""
    if "value" in rollout.extras:
        return rollout.extras["value"]
    return values_of(network, rollout.obs)


def next_values(network: eqx.Module, rollout: Rollout) -> Float[Array, "T N"]:
    """``V(next_obs)`` of every step ``[T, N]``, the bootstrap values of GAE. A recurrent
    network sees each ``next_obs`` with the carry after that step (the episode's history,
    also at a truncation, where ``next_obs`` is the true final observation)."""
    if not is_recurrent(network):
        return values_of(network, rollout.next_obs)
    after = carries_after(rollout.extras["carry"], rollout.final_carry)
    flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), (after, rollout.next_obs))
    first = jnp.zeros(flat[1].shape[:1], bool)
    _, (_, values) = jax.vmap(network)(*flat, first)
    return values.reshape(rollout.reward.shape)


def apply_gradients(
    network: eqx.Module, opt_state: Any, grads: Any, optimizer: optax.GradientTransformation
) -> tuple[eqx.Module, Any]:
    """One optimizer step on the network."""
    params = eqx.filter(network, eqx.is_inexact_array)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return eqx.apply_updates(network, updates), opt_state


def minibatch_update(
    loss: Callable[[Any, Any, Any], tuple[Array, dict[str, Array]]],
    optimizer: optax.GradientTransformation,
    config: Any,
) -> Callable[[tuple[Any, Any], Any], tuple[tuple[Any, Any], dict[str, Array]]]:
    """``update((network, opt_state), batch)`` for ``rollout.minibatch_epochs``: one optimizer
    step on ``loss(network, batch, config) -> (value, info)``; the info gains ``loss``
    (PPO's epochs, RLHF's token-level PPO)."""

    def update(carry, batch):
        network, opt_state = carry
        grad_fn = eqx.filter_value_and_grad(loss, has_aux=True)
        (value, info), grads = grad_fn(network, batch, config)
        network, opt_state = apply_gradients(network, opt_state, grads, optimizer)
        return (network, opt_state), {"loss": value, **info}

    return update


def collect_rollout(state: PGState) -> tuple[PGState, Rollout, dict[str, Array]]:
    """``num_steps`` steps of every env under the current policy (env state, key and carry
    advance), the rollout as ``learn`` sees it (``observe_rollout``) and its episode metrics:
    the first half of every policy-gradient ``step``, for looking at a rollout."""
    state, rollout, episodes = collect_from(state, sampling_policy(state), state.config.num_steps)
    state, rollout = observe_rollout(state, rollout)
    return state, rollout, episodes


def observe_rollout(state: PGState, rollout: Rollout) -> tuple[PGState, Rollout]:
    """The start of every policy-gradient ``learn``: with observation normalisation the
    rollout's observations are normalised with the statistics the policy acted on, and the
    statistics then absorb the new raw ones (else both come back unchanged)."""
    if not state.config.normalize_observations:
        return state, rollout
    stats = running_stats.update(state.obs_stats, rollout.obs)
    rollout = eqx.tree_at(
        lambda r: (r.obs, r.next_obs),
        rollout,
        (state.observe(rollout.obs), state.observe(rollout.next_obs)),
    )
    return eqx.tree_at(lambda s: s.obs_stats, state, stats), rollout


def learner(
    update: Callable[[PGState, Rollout, dict[str, Array]], tuple[PGState, dict[str, Array]]],
) -> Callable[[PGState, Rollout, dict[str, Array]], tuple[PGState, dict[str, Array]]]:
    """A policy-gradient algorithm's ``learn``: ``observe_rollout``, then its ``update``."""

    def learn(state: PGState, rollout: Rollout, episodes: dict[str, Array]):
        state, rollout = observe_rollout(state, rollout)
        return update(state, rollout, episodes)

    return learn


def finish_iteration(
    state: PGState, network: eqx.Module, opt_state: Any, metrics: dict[str, Array]
) -> tuple[PGState, dict[str, Array]]:
    """Store the updated network, count the iteration, add ``env_steps`` to the metrics."""
    state = eqx.tree_at(
        lambda s: (s.network, s.opt_state, s.iteration),
        state,
        (network, opt_state, state.iteration + 1),
    )
    return state, {**metrics, "env_steps": state.env_steps}


def one_update(
    loss: Callable[[Any, Rollout, Any], tuple[Array, dict]],
) -> Callable[[PGState, Rollout, dict[str, Array]], tuple[PGState, dict[str, Array]]]:
    """``update(state, rollout, episodes)`` taking ONE gradient step on
    ``loss(network, rollout, config)`` (REINFORCE and A2C)."""
    return functools.partial(_one_update, loss)


def _one_update(loss, state: PGState, rollout: Rollout, episodes: dict[str, Array]):
    grad_fn = eqx.filter_value_and_grad(loss, has_aux=True)
    (value, info), grads = grad_fn(state.network, rollout, state.config)
    optimizer = make_optimizer(state.config)
    network, opt_state = apply_gradients(state.network, state.opt_state, grads, optimizer)
    return finish_iteration(state, network, opt_state, {"loss": value, **info, **episodes})


def rollout_length(c: PGConfig) -> int:
    """Steps of every env per iteration: ``num_steps``."""
    return c.num_steps


def register_pg(
    name: str, config: type, init, update, quick_config, env_defaults=None
) -> Algorithm:
    """Register a policy-gradient algorithm: its own ``Config``, ``init``, ``update(state,
    rollout, episodes)``, quick config and per-env defaults (``Algorithm.env_defaults``);
    acting (``sampling_policy``), ``learn`` (``learner(update)``), ``step``
    (``rollout.collect_and_learn``), evaluation, schedule and checks are the family's."""
    learn = learner(update)
    algorithm = Algorithm(
        name=name,
        Config=config,
        init=init,
        step=collect_and_learn(sampling_policy, learn, rollout_length),
        greedy_policy=greedy_policy,
        iteration_steps=iteration_steps,
        quick_config=quick_config,
        check=check_env,
        behaviour_policy=sampling_policy,
        learn=learn,
        rollout_length=rollout_length,
        env_defaults=MappingProxyType(dict(env_defaults or {})),
    )
    return register(algorithm)
