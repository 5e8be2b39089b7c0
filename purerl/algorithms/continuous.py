"""L3 helpers shared by the off-policy continuous-control actor-critics (SAC, TD3 and DDPG as
a TD3 setting): their common config fields and checks, the state, acting (uniform random
actions until ``learning_starts``, then the algorithm's exploration: ``behaviour_policy``),
storing transitions in the replay buffer and gating the updates (``learner``), and the step
built from those halves (``rollout.collect_and_learn``, so host environments train them
through the actor–learner loop too). Each algorithm file writes only its exploration and its
updates.

Actions live in ``[−1, 1]^d`` everywhere inside (the actors end in ``tanh``, the critics and
the replay buffer see those actions); ``policies.scale_action`` maps them to the env's box in
one place, ``to_env``, used for training and evaluation alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

from purerl import buffers
from purerl.algorithms.common import (
    check_shared_fields,
    keep_if,
    learning_ready,
    require,
)
from purerl.algorithms.core import Algorithm, Policy, build_network, register
from purerl.algorithms.rollout import Rollout, collect_and_learn
from purerl.envs import VecEnv, VecEnvState
from purerl.networks import CriticEnsemble
from purerl.policies import scale_action
from purerl.types import Transition

__all__ = [
    "OffPolicyConfig",
    "OffPolicyState",
    "check_off_policy_fields",
    "check_env",
    "init_state",
    "to_env",
    "make_optimizer",
    "make_buffer",
    "Exploration",
    "behaviour_policy",
    "learner",
    "step",
    "register_off_policy",
]


class OffPolicyConfig(eqx.Module):
    """Fields SAC and TD3 share (defaults in brackets; per-algorithm ones in their files).

    The defaults are rejax's published Pendulum-v1 configs (``configs/gymnax/pendulum.yaml``
    of rejax 0.1.3: 64-64 swish networks, a 10k buffer, 10k steps); SAC and TD3 override the
    fields where those configs differ. The papers' 256-256 ReLU networks (Haarnoja et al.,
    2018; Fujimoto et al., 2018) are ``hidden_sizes=(256, 256), activation="relu"``, with
    ~14x the multiply-adds per update of 64-64 (Pendulum needs no more than 64-64).

    - ``env_id`` ["Pendulum-v1"]: a gymnax id with a continuous (box) action space.
    - ``total_steps`` [10,000], ``eval_every`` [1,000], ``eval_envs`` [8]: the budget in env
      steps (all envs together), the evaluation cadence and width (greedy episodes).
    - ``num_envs`` [1]: envs stepped per iteration; ``updates_per_iteration`` [1]: gradient
      updates per iteration, so ``updates_per_iteration / num_envs`` is the update-to-data
      ratio (1 in both papers).
    - ``buffer_size`` [10,000], ``batch_size`` [256], ``learning_starts`` [256]: replay
      capacity, minibatch, and the env steps of uniformly random actions before learning
      (and before the actor acts).
    - ``hidden_sizes`` [(64, 64)], ``activation`` ["swish"]: the actor's and each critic's
      MLP; ``num_critics`` [2]: the twin critics whose minimum makes the target (clipped
      double Q).
    - ``learning_rate`` [1e-2 for SAC, 1e-3 for TD3] (actor, critics and SAC's temperature),
      ``gamma`` [0.99], ``tau`` [0.02 for SAC, 0.05 for TD3] (Polyak step of the target
      networks), ``max_grad_norm`` [1e10 for SAC: a bound no finite run reaches, i.e. no
      clipping as in the paper; 100 for TD3].
    """

    env_id: str = eqx.field(static=True, default="Pendulum-v1")
    total_steps: int = eqx.field(static=True, default=10_000)
    num_envs: int = eqx.field(static=True, default=1)
    updates_per_iteration: int = eqx.field(static=True, default=1)
    buffer_size: int = eqx.field(static=True, default=10_000)
    batch_size: int = eqx.field(static=True, default=256)
    learning_starts: int = eqx.field(static=True, default=256)
    hidden_sizes: tuple[int, ...] = eqx.field(static=True, default=(64, 64))
    activation: str = eqx.field(static=True, default="swish")
    num_critics: int = eqx.field(static=True, default=2)
    eval_every: int = eqx.field(static=True, default=1_000)
    eval_envs: int = eqx.field(static=True, default=8)
    learning_rate: Real[ArrayLike, ""] = 1e-2
    gamma: Real[ArrayLike, ""] = 0.99
    tau: Real[ArrayLike, ""] = 0.02
    max_grad_norm: Real[ArrayLike, ""] = 1e10


def check_off_policy_fields(c: OffPolicyConfig) -> None:
    """Environment-free checks of the shared fields; ``ValueError`` naming the field."""
    positive = (
        "total_steps",
        "num_envs",
        "updates_per_iteration",
        "buffer_size",
        "batch_size",
        "num_critics",
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
    require((c.tau > 0) & (c.tau <= 1), "tau", f"must be in (0, 1], got {c.tau}")


def check_env(c: OffPolicyConfig) -> None:
    """``ValueError`` for an unknown env id or a discrete action space."""
    env = VecEnv.make(c.env_id, num_envs=1)
    require(
        not env.is_discrete,
        "env_id",
        f"{c.env_id} has a discrete action space; SAC, TD3 and DDPG need continuous (box) "
        "actions (use dqn, pqn or ppo for discrete ones)",
    )


class OffPolicyState(eqx.Module):
    """What an off-policy actor-critic run carries. ``actor_target`` is TD3's (``None`` for
    SAC); ``log_alpha`` / ``alpha_opt`` are SAC's temperature and its optimizer state
    (``None`` for TD3); ``updates`` counts gradient updates (TD3's policy delay)."""

    config: Any
    env: VecEnv
    env_state: VecEnvState
    actor: Any
    critic: Any
    critic_target: Any
    actor_opt: Any
    critic_opt: Any
    buffer: Any
    key: PRNGKeyArray
    iteration: Int[Array, ""]
    updates: Int[Array, ""]
    actor_target: Any = None
    log_alpha: Float[Array, ""] | None = None
    alpha_opt: Any = None

    @property
    def env_steps(self) -> Int[Array, ""]:
        """Environment steps taken so far (all envs together)."""
        return self.iteration * self.config.num_envs


def make_optimizer(c: OffPolicyConfig) -> optax.GradientTransformation:
    """Adam behind global-norm clipping (a no-op at SAC's default ``max_grad_norm = 1e10``);
    both rates are traced leaves, so they sweep."""
    return optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.adam(c.learning_rate))


def make_buffer(c: OffPolicyConfig) -> buffers.Buffer:
    """Uniform replay of ``buffer_size`` transitions, batches of ``batch_size``."""
    return buffers.uniform(c.buffer_size, c.batch_size)


def _split_network(network: Any) -> tuple[Any, Any]:
    if network is None:
        return None, None
    if isinstance(network, tuple) and len(network) == 2:
        return network
    raise ValueError(
        "network: SAC/TD3 take a pair (actor, critic), each an equinox Module, a factory "
        "(key, obs_shape, action_spec) -> Module, or None for the default; got "
        f"{type(network).__name__}"
    )


def init_state(
    key: PRNGKeyArray,
    c: OffPolicyConfig,
    network: Any,
    default_actor: Callable[[PRNGKeyArray, VecEnv], eqx.Module],
    *,
    actor_target: bool,
    temperature: Real[ArrayLike, ""] | None,
) -> OffPolicyState:
    """Reset the envs; build the actor (``default_actor(key, env)`` or the user's) and the
    critic ensemble (``CriticEnsemble`` of ``num_critics``, or the user's; it maps
    ``(obs, action in [−1, 1]^d)`` to ``[num_critics]`` Q-values), their target copies, the
    optimizer states and an empty replay buffer. ``temperature``: SAC's initial α (``None``
    for TD3). ``network`` is ``None`` or a pair ``(actor, critic)`` (either may be ``None``)."""
    env = VecEnv.make(c.env_id, num_envs=c.num_envs)
    key, env_key, actor_key, critic_key = jax.random.split(key, 4)
    user_actor, user_critic = _split_network(network)
    actor = build_network(user_actor, actor_key, env, lambda k: default_actor(k, env))

    def default_critic(k: PRNGKeyArray) -> CriticEnsemble:
        return CriticEnsemble(
            env.obs_shape,
            env.action_dim,
            c.num_critics,
            c.hidden_sizes,
            c.activation,
            key=k,
        )

    critic = build_network(user_critic, critic_key, env, default_critic)
    optimizer = make_optimizer(c)
    env_state = env.reset(env_key)
    example = Transition(
        obs=env_state.obs[0],
        action=jnp.zeros((env.action_dim,), jnp.float32),
        reward=jnp.zeros((), jnp.float32),
        discount=jnp.ones((), jnp.float32),
        next_obs=env_state.obs[0],
    )
    log_alpha = alpha_opt = None
    if temperature is not None:
        log_alpha = jnp.log(jnp.asarray(temperature, jnp.float32))
        alpha_opt = optimizer.init(log_alpha)
    zero = jnp.zeros((), jnp.int32)
    return OffPolicyState(
        config=c,
        env=env,
        env_state=env_state,
        actor=actor,
        critic=critic,
        critic_target=critic,
        actor_opt=optimizer.init(eqx.filter(actor, eqx.is_inexact_array)),
        critic_opt=optimizer.init(eqx.filter(critic, eqx.is_inexact_array)),
        buffer=make_buffer(c).init(example),
        key=key,
        iteration=zero,
        updates=zero,
        actor_target=actor if actor_target else None,
        log_alpha=log_alpha,
        alpha_opt=alpha_opt,
    )


def to_env(env: VecEnv, action: Float[ArrayLike, "N d"]) -> Float[Array, "N d"]:
    """Actions in ``[−1, 1]^d`` → the env's box: the one place actors meet env bounds."""
    low, high = env.action_bounds
    return scale_action(action, low, high)


def greedy_policy(
    greedy_action: Callable[[Any, Array], Array],
) -> Callable[[OffPolicyState], Policy]:
    """``greedy_policy(state)`` for the contract: ``greedy_action(actor, obs) -> [−1, 1]^d``
    for one observation, scaled to the env's box."""

    def act(params, key, obs, carry, first):
        actor, low, high = params
        return scale_action(jax.vmap(lambda o: greedy_action(actor, o))(obs), low, high), carry, {}

    def policy(state: OffPolicyState) -> Policy:
        low, high = state.env.action_bounds
        return Policy((state.actor, low, high), act)

    return policy


def _learner(s: OffPolicyState) -> tuple:
    """The fields learning changes (the replay buffer and envs are not among them)."""
    return (
        s.actor,
        s.critic,
        s.critic_target,
        s.actor_opt,
        s.critic_opt,
        s.updates,
        s.actor_target,
        s.log_alpha,
        s.alpha_opt,
    )


Learner = Callable[[OffPolicyState, PRNGKeyArray], tuple[OffPolicyState, dict[str, Array]]]


class Exploration(eqx.Module):
    """How an algorithm explores once ``learning_starts`` env steps are in:
    ``act(params, key, obs) -> actions in [−1, 1]^d`` for a batch of observations, with
    ``params(state)`` (the actor and any traced noise scale) the parameters it reads."""

    params: Callable[[OffPolicyState], Any] = eqx.field(static=True)
    act: Callable[[Any, PRNGKeyArray, Array], Array] = eqx.field(static=True)


def behaviour_policy(exploration: Exploration) -> Callable[[OffPolicyState], Policy]:
    """The contract's ``behaviour_policy``: uniform actions in ``[−1, 1]^d`` until
    ``learning_starts`` env steps, then ``exploration``; the env gets them scaled to its box
    (``to_env``) and the rollout keeps the ``[−1, 1]^d`` action in ``extras["action"]``, the
    one the critics and the replay buffer see."""

    def act(params, key, obs, carry, first):
        explore_params, random_phase, low, high = params
        uniform_key, policy_key = jax.random.split(key)
        shape = (obs.shape[0], low.shape[-1])
        uniform = jax.random.uniform(uniform_key, shape, minval=-1.0, maxval=1.0)
        learned = exploration.act(explore_params, policy_key, obs)
        action = jnp.where(random_phase, uniform, learned)
        return scale_action(action, low, high), carry, {"action": action}

    def policy(state: OffPolicyState) -> Policy:
        low, high = state.env.action_bounds
        random_phase = state.env_steps < state.config.learning_starts
        return Policy((exploration.params(state), random_phase, low, high), act)

    return policy


def learner(learn: Learner) -> Callable[..., tuple[OffPolicyState, dict[str, Array]]]:
    """The contract's ``learn`` from an algorithm's update ``learn(state, key)``: store one
    step of every env (``rollout`` ``[1, num_envs]``, actions in ``[−1, 1]^d`` from
    ``extras["action"]``), then (once ``learning_starts`` env steps are in and a batch can
    be drawn) ``learn``: the algorithm's ``updates_per_iteration`` gradient and target
    updates."""

    def learn_step(
        state: OffPolicyState, rollout: Rollout, episodes: dict[str, Array]
    ) -> tuple[OffPolicyState, dict[str, Array]]:
        c = state.config
        key, learn_key = jax.random.split(state.key)
        items = jax.tree.map(lambda x: x[0], rollout.transitions(rollout.extras["action"]))
        buffer = make_buffer(c).add(state.buffer, items)
        state = eqx.tree_at(lambda s: (s.buffer, s.key), state, (buffer, key))
        env_steps = state.env_steps + c.num_envs
        ready = learning_ready(c, buffer, env_steps)
        learned, info = learn(state, learn_key)
        kept = keep_if(ready, _learner(learned), _learner(state))
        state = eqx.tree_at(_learner, state, kept, is_leaf=lambda x: x is None)
        info = jax.tree.map(lambda x: jnp.where(ready, x, 0.0), info)
        state = eqx.tree_at(lambda s: s.iteration, state, state.iteration + 1)
        return state, {**info, **episodes, "learning": ready, "env_steps": env_steps}

    return learn_step


def _one_step(c: OffPolicyConfig) -> int:
    return 1


def step(exploration: Exploration, learn: Learner) -> Callable[[OffPolicyState], Any]:
    """An algorithm's ``step``: act in ``num_envs`` envs for one step (``behaviour_policy``),
    then store and learn (``learner``)."""
    return collect_and_learn(behaviour_policy(exploration), learner(learn), _one_step)


def register_off_policy(
    name: str,
    config: type,
    init: Callable[..., OffPolicyState],
    exploration: Exploration,
    learn: Learner,
    greedy: Callable[[OffPolicyState], Policy],
    quick_config: Callable[[], Any],
) -> Algorithm:
    """Register an off-policy continuous algorithm on the shared contract, its ``step``
    built from its halves (so it also trains on host environments)."""
    return register(
        Algorithm(
            name=name,
            Config=config,
            init=init,
            step=step(exploration, learn),
            greedy_policy=greedy,
            iteration_steps=lambda c: c.num_envs,
            quick_config=quick_config,
            check=check_env,
            behaviour_policy=behaviour_policy(exploration),
            learn=learner(learn),
            rollout_length=_one_step,
        )
    )


def quick_fields() -> dict[str, Any]:
    """A run on ``ContinuousTarget-probe`` that trains in seconds (``quick_config``)."""
    return dict(
        env_id="ContinuousTarget-probe",
        total_steps=512,
        eval_every=256,
        num_envs=4,
        updates_per_iteration=2,
        buffer_size=512,
        batch_size=32,
        learning_starts=64,
        hidden_sizes=(16,),
        eval_envs=2,
    )
