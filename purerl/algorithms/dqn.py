"""DQN (Mnih et al., 2015) with each of the lecture's fixes behind one config field.

One ``step`` = act ε-greedily in ``num_envs`` envs (``behaviour_policy``), then ``learn``:
store the transitions (through an n-step window if ``n_step > 1``), take
``updates_per_iteration`` gradient steps on batches drawn from the buffer, update the target.
The defaults are Double DQN with a dueling head, 5-step targets, squared TD loss, uniform
replay and Polyak target averaging, for 100k env steps.

Example:
    >>> config = dqn.Config(env_id="CartPole-v1", total_steps=50_000)
    >>> train = jax.jit(jax.vmap(dqn.make_train(config)))   # = core.make_train(dqn.ALGORITHM, ...)
    >>> state, metrics = train(jax.random.split(jax.random.PRNGKey(0), 8))
    >>> # the Nature-DQN ablation: the same algorithm without replay / target network
    >>> dqn.Config(env_id="Breakout-MinAtar", replay=False, target_network=False)
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Int, PRNGKeyArray, Real

from purerl import buffers, replay
from purerl.algorithms import value_based as vb
from purerl.algorithms.common import (
    check_shared_fields,
    keep_if,
    learning_ready,
    require,
)
from purerl.algorithms.core import Algorithm, Policy, register
from purerl.algorithms.rollout import Rollout, collect_and_learn
from purerl.envs import VecEnv, VecEnvState
from purerl.policies import linear_schedule
from purerl.types import Transition
from purerl.value import periodic_update, td_update

__all__ = [
    "Config",
    "State",
    "init",
    "step",
    "learn",
    "behaviour_policy",
    "ALGORITHM",
    "make_train",
    "schedule",
]

epsilon = vb.epsilon


class Config(eqx.Module):
    """DQN hyperparameters. Integers that fix shapes are static; floats are leaves (vmappable).

    Every fix of the DQN lecture is one field, so an ablation is a set of configs of this one
    algorithm (defaults in brackets):

    - ``replay`` [True]: False = no replay: every update uses the latest ``batch_size``
      transitions (a FIFO of that size, used whole; ``buffer_size`` is then unused).
    - ``target_network`` [True]: False = bootstrap from the online network itself (the
      target is still under ``stop_gradient``).
    - ``double`` [True]: Double-DQN target ``Q⁻(s', argmax_a Q(s', a))``, else
      ``max_a Q⁻(s', a)``.
    - ``n_step`` [5]: n-step targets, the window cut at episode ends
      (``replay.window_push``: a truncation bootstraps from the true final observation).
      5 by default: each Bellman backup reaches 5 steps further, so CartPole's values
      (≈ 100 at γ = 0.99, truncation bootstrapped) settle in a fifth of the target updates;
      at 100k steps 98% of 64 CartPole seeds end ≥ 475, against 83% with 3-step and 80% with
      1-step targets (benchmarks/RESULTS.md, "Defaults over 64 seeds"). ``n_step=1`` is
      textbook DQN.
    - ``dueling`` [True]: dueling head ``V + A − mean A``.
    - ``loss`` ["squared"]: ``"squared"`` (½·δ², rejax's and the DQN lecture's) or
      ``"huber"`` TD loss. Squared by default: over 64 CartPole seeds it ends ≥ 475 on 80% of
      seeds against Huber's 69%, and on rejax's own config Huber is what made purerl learn
      worse than rejax (benchmarks/RESULTS.md, "DQN defaults" and "DQN vs rejax").
    - ``prioritized`` [False]: proportional prioritized replay with ``per_alpha``,
      ``per_beta_start`` (annealed linearly to 1 over ``total_steps``) and ``per_eps``.
    - ``network`` ["auto"]: ``"mlp"``, ``"minatar_cnn"``, ``"nature_cnn"``, or chosen from
      the observation shape (``networks.torso_for``).

    ``anneal_lr`` decays Adam's learning rate linearly to 0 over the run's gradient steps
    (``total_updates``).

    Target updates, periodic or Polyak: every ``target_update_period`` iterations,
    ``θ⁻ ← (1 − τ)·θ⁻ + τ·θ``. Polyak averaging (default) is period 1 with small ``tau``
    (0.02); the Nature-DQN hard copy every ``C`` env steps is ``tau=1`` with
    ``target_update_period = C / num_envs`` (the period counts iterations).

    Defaults train CartPole-v1 to ≥ 475 within 100k env steps on 98% of 64 seeds (see
    benchmarks/RESULTS.md, "Defaults over 64 seeds").
    """

    env_id: str = eqx.field(static=True, default="CartPole-v1")
    total_steps: int = eqx.field(static=True, default=100_000)
    num_envs: int = eqx.field(static=True, default=10)
    buffer_size: int = eqx.field(static=True, default=50_000)
    batch_size: int = eqx.field(static=True, default=100)
    learning_starts: int = eqx.field(static=True, default=1_000)
    updates_per_iteration: int = eqx.field(static=True, default=5)
    target_update_period: int = eqx.field(static=True, default=1)
    hidden_sizes: tuple[int, ...] = eqx.field(static=True, default=(64, 64))
    activation: str = eqx.field(static=True, default="swish")
    network: str = eqx.field(static=True, default="auto")
    dueling: bool = eqx.field(static=True, default=True)
    double: bool = eqx.field(static=True, default=True)
    loss: str = eqx.field(static=True, default="squared")
    n_step: int = eqx.field(static=True, default=5)
    replay: bool = eqx.field(static=True, default=True)
    target_network: bool = eqx.field(static=True, default=True)
    prioritized: bool = eqx.field(static=True, default=False)
    anneal_lr: bool = eqx.field(static=True, default=False)
    eval_every: int = eqx.field(static=True, default=10_000)
    eval_envs: int = eqx.field(static=True, default=8)
    learning_rate: Real[ArrayLike, ""] = 5e-4
    gamma: Real[ArrayLike, ""] = 0.99
    tau: Real[ArrayLike, ""] = 0.02
    epsilon_start: Real[ArrayLike, ""] = 1.0
    epsilon_end: Real[ArrayLike, ""] = 0.05
    exploration_fraction: Real[ArrayLike, ""] = 0.15
    max_grad_norm: Real[ArrayLike, ""] = 10.0
    # Schaul et al. (2016), proportional variant: α = 0.6, β₀ = 0.4
    per_alpha: Real[ArrayLike, ""] = 0.6
    per_beta_start: Real[ArrayLike, ""] = 0.4
    per_eps: Real[ArrayLike, ""] = 1e-6

    def __check_init__(self):
        check_config(self)


def _capacity(c: Config) -> int:
    """Slots of the buffer: ``buffer_size``, or ``batch_size`` without replay."""
    return c.buffer_size if c.replay else c.batch_size


def check_config(c: Config) -> None:
    """Raise ``ValueError`` naming the first bad field (environment-free checks)."""
    positive = (
        "total_steps",
        "num_envs",
        "buffer_size",
        "batch_size",
        "updates_per_iteration",
        "target_update_period",
        "eval_every",
        "eval_envs",
    )
    check_shared_fields(c, positive)
    vb.check_q_fields(c)
    require(c.learning_starts >= 0, "learning_starts", f"must be >= 0, got {c.learning_starts}")
    require(
        c.batch_size <= c.buffer_size,
        "batch_size",
        f"batch_size={c.batch_size} is larger than the replay capacity buffer_size={c.buffer_size}",
    )
    require(
        c.num_envs <= _capacity(c),
        "num_envs",
        f"num_envs={c.num_envs} transitions per step exceed the buffer "
        f"({'buffer_size' if c.replay else 'batch_size, as replay=False'} = {_capacity(c)})",
    )
    require(c.loss in ("huber", "squared"), "loss", f"must be 'huber' or 'squared', got {c.loss!r}")
    require((c.tau > 0) & (c.tau <= 1), "tau", f"must be in (0, 1], got {c.tau}")
    _check_extensions(c)


def _check_extensions(c: Config) -> None:
    require(c.n_step >= 1, "n_step", f"must be >= 1, got {c.n_step}")
    require(
        c.n_step * c.num_envs <= _capacity(c),
        "n_step",
        f"n_step={c.n_step} steps of num_envs={c.num_envs} envs are more transitions than the "
        f"buffer holds ({'buffer_size' if c.replay else 'batch_size, as replay=False'} = "
        f"{_capacity(c)})",
    )
    require(
        c.replay or not c.prioritized,
        "prioritized",
        "prioritized replay needs replay=True (there is no buffer to prioritise)",
    )
    require(c.per_alpha >= 0, "per_alpha", f"must be >= 0, got {c.per_alpha}")
    require(
        (c.per_beta_start >= 0) & (c.per_beta_start <= 1),
        "per_beta_start",
        f"must be in [0, 1], got {c.per_beta_start}",
    )
    require(c.per_eps > 0, "per_eps", f"must be > 0, got {c.per_eps}")


class State(eqx.Module):
    """Everything a DQN run carries from one iteration to the next: the Q-network
    (``network``) and its target copy (``target``); ``window`` is ``None`` for one-step
    targets."""

    config: Config
    env: VecEnv
    env_state: VecEnvState
    network: Any
    target: Any
    opt_state: Any
    buffer: Any  # a buffers.Buffer state (uniform, prioritized or FIFO)
    window: replay.NStepWindow | None
    key: PRNGKeyArray
    iteration: Int[Array, ""]

    @property
    def env_steps(self) -> Int[Array, ""]:
        """Environment steps taken so far (all envs together)."""
        return self.iteration * self.config.num_envs


def total_updates(c: Config) -> int:
    """Gradient steps in the run: ``updates_per_iteration`` in every iteration from the one
    that reaches ``learning_starts`` env steps and a full batch on (``learning_ready``; an
    n-step window's first ``n − 1`` steps are not counted)."""
    iterations = -(-c.total_steps // c.num_envs)
    waiting = max(-(-max(c.learning_starts, c.batch_size) // c.num_envs) - 1, 0)
    return max(iterations - waiting, 1) * c.updates_per_iteration


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """Adam with global-norm gradient clipping; the learning rate may be a traced leaf. With
    ``anneal_lr`` it decays linearly to 0 over the run's gradient steps (``total_updates``)."""
    lr = config.learning_rate
    if config.anneal_lr:
        lr = optax.linear_schedule(config.learning_rate, 0.0, total_updates(config))
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr))


def make_buffer(c: Config) -> buffers.Buffer:
    """The replay buffer the config asks for: uniform, prioritized, or (``replay=False``) a
    FIFO of the latest ``batch_size`` transitions. The rest of DQN uses only the ``Buffer``
    interface, whatever the kind."""
    if not c.replay:
        return buffers.fifo(c.batch_size)
    if c.prioritized:
        return buffers.prioritized(c.buffer_size, c.batch_size, alpha=c.per_alpha, eps=c.per_eps)
    return buffers.uniform(c.buffer_size, c.batch_size)


def _empty_storage(c: Config, obs: Array) -> tuple[Any, replay.NStepWindow | None]:
    n = obs.shape[0]
    batch = Transition(
        obs=obs,
        action=jnp.zeros((n,), jnp.int32),
        reward=jnp.zeros((n,), jnp.float32),
        discount=jnp.ones((n,), jnp.float32),
        next_obs=obs,
    )
    example = jax.tree.map(lambda x: x[0], batch)
    window = replay.window_init(batch, c.n_step) if c.n_step > 1 else None
    return make_buffer(c).init(example), window


def init(key: PRNGKeyArray, config: Config, *, network: Any = None) -> State:
    """Reset the envs, build the Q-network (the default, or ``network``: a module or factory
    mapping one observation to Q-values), its target copy, the optimizer state and an empty
    replay buffer."""
    env = VecEnv.make(config.env_id, num_envs=config.num_envs)
    key, env_key, net_key = jax.random.split(key, 3)
    env_state = env.reset(env_key)
    q_net = vb.make_q_network(net_key, env, config, network, dueling=config.dueling)
    opt_state = make_optimizer(config).init(eqx.filter(q_net, eqx.is_inexact_array))
    buffer, window = _empty_storage(config, env_state.obs)
    zero = jnp.zeros((), jnp.int32)
    return State(config, env, env_state, q_net, q_net, opt_state, buffer, window, key, zero)


def _store(state: State, items: Transition, done: Array) -> tuple[Any, Any]:
    """Add one step of every env to the buffer (its n-step form once the window is full)."""
    c, window, valid = state.config, state.window, None
    if c.n_step > 1:
        window, items, valid = replay.window_push(window, items, done, c.gamma)
    return make_buffer(c).add(state.buffer, items, valid), window


def _learn(state: State, key: PRNGKeyArray, ready: Array):
    """``updates_per_iteration`` TD updates on sampled batches (weighted by the buffer's
    importance weights); the buffer then gets the new TD errors (new priorities for PER, only
    where ``ready``; a no-op for uniform and FIFO buffers)."""
    c = state.config
    optimizer = make_optimizer(c)
    buffer_fns = make_buffer(c)
    beta = linear_schedule(c.per_beta_start, 1.0, c.total_steps, state.env_steps)

    def update(carry, k):
        q_net, opt_state, buffer = carry
        batch, idx, weights = buffer_fns.sample(k, buffer, beta=beta)
        target_net = state.target if c.target_network else q_net
        q_net, opt_state, info = td_update(
            q_net,
            target_net,
            opt_state,
            batch,
            optimizer=optimizer,
            gamma=c.gamma,
            double=c.double,
            loss=c.loss,
            weights=weights,
        )
        buffer = buffer_fns.update(buffer, idx, info["td_error"], ready)
        return (q_net, opt_state, buffer), {"loss": info["loss"], "q_mean": info["q_mean"]}

    keys = jax.random.split(key, c.updates_per_iteration)
    carry = (state.network, state.opt_state, state.buffer)
    (q_net, opt_state, buffer), info = jax.lax.scan(update, carry, keys)
    return q_net, opt_state, buffer, jax.tree.map(jnp.mean, info)


def behaviour_policy(state: State) -> Policy:
    """ε-greedy on the online network, ε from the schedule at ``state.env_steps``."""
    return vb.epsilon_greedy_policy(state.network, epsilon(state.config, state.env_steps))


def learn(
    state: State, rollout: Rollout, episodes: dict[str, Array]
) -> tuple[State, dict[str, Array]]:
    """What an iteration does with one step of every env (``rollout`` ``[1, num_envs]``):
    store it, learn (once ``learning_starts`` steps are in), update the target."""
    c = state.config
    key, learn_key = jax.random.split(state.key)
    eps = epsilon(c, state.env_steps)
    first = lambda x: x[0]  # noqa: E731 (the rollout's one step)
    items = jax.tree.map(first, rollout.transitions())
    buffer, window = _store(state, items, first(rollout.done))
    state = eqx.tree_at(
        lambda s: (s.buffer, s.window), state, (buffer, window), is_leaf=lambda x: x is None
    )
    env_steps = state.env_steps + c.num_envs
    ready = learning_ready(c, buffer, env_steps)
    # Learn unconditionally and keep the result only when ready: a lax.cond would copy the
    # replay buffer into its branches, and under vmap it turns into a select anyway.
    q_net, opt_state, buffer, info = _learn(state, learn_key, ready)
    q_net, opt_state = keep_if(ready, (q_net, opt_state), (state.network, state.opt_state))
    info = jax.tree.map(lambda x: jnp.where(ready, x, 0.0), info)
    iteration = state.iteration + 1
    target_net = q_net
    if c.target_network:
        target_net = periodic_update(state.target, q_net, iteration, c.target_update_period, c.tau)
    state = eqx.tree_at(
        lambda s: (s.network, s.target, s.opt_state, s.buffer, s.key, s.iteration),
        state,
        (q_net, target_net, opt_state, buffer, key, iteration),
    )
    metrics = {**info, **episodes, "epsilon": eps, "learning": ready, "env_steps": env_steps}
    return state, metrics


def _one_step(c: Config) -> int:
    return 1


step = collect_and_learn(behaviour_policy, learn, _one_step)
"""One iteration: act ε-greedily in every env (one step), then ``learn``."""


def quick_config() -> Config:
    """A DQN that trains on a probe env in a second (conformance tests)."""
    return Config(
        env_id="ObsActionReward-probe",
        total_steps=400,
        eval_every=200,
        num_envs=4,
        buffer_size=200,
        batch_size=16,
        learning_starts=32,
        updates_per_iteration=2,
        hidden_sizes=(16,),
        eval_envs=2,
    )


ALGORITHM = register(
    Algorithm(
        name="dqn",
        Config=Config,
        init=init,
        step=step,
        greedy_policy=vb.greedy_policy,
        iteration_steps=lambda c: c.num_envs,
        quick_config=quick_config,
        check=vb.check_env,
        behaviour_policy=behaviour_policy,
        learn=learn,
        rollout_length=_one_step,
    )
)
make_train = ALGORITHM.make_train
schedule = ALGORITHM.schedule
