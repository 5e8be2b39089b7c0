"""L3 core: what an algorithm is, the registry of them, and the pieces every algorithm shares.

An algorithm is an ``Algorithm`` record (a ``NamedTuple`` of functions, optax style) registered
under its name. It writes only what is its own:

- ``Config``: a frozen ``eqx.Module`` (shape-fixing fields static, float hyperparameters leaves,
  so they vmap and sweep) with at least ``env_id``, ``total_steps``, ``eval_every`` and
  ``eval_envs``; its ``__check_init__`` raises ``ValueError("field: ...")`` for a bad value;
- ``init(key, config, *, network=None) -> State``: the agent's state. ``State`` has ``config``
  and ``env_steps`` (environment steps taken so far, all envs together);
- ``step(state) -> (state, metrics)``: one iteration (act, learn), metrics a dict of scalars;
- ``greedy_policy(state) -> Policy``: how the agent acts when it is evaluated;
- ``iteration_steps(config) -> int``: environment steps one ``step`` takes;
- ``check(config)``: the checks that need the environment (unknown id, action space, network
  that cannot take the observations); runs before anything compiles;
- ``make_env(config, num_envs) -> VecEnv`` (default: ``VecEnv.make(config.env_id, num_envs)``);
- ``quick_config() -> Config``: a tiny config that trains in seconds (conformance tests);
- ``env_defaults``: ``{env_id: {field: value}}``, the settings that replace ``Config()``'s
  defaults on an env the CartPole-tuned defaults do not suit (PPO on Pendulum-v1).
  ``default_config(algorithm, env_id)`` applies them; ``purerl.run`` / ``purerl train`` start
  from it, and the user's own fields override it. ``Config(env_id=...)`` itself never does.

Algorithms whose iteration is "collect a rollout, then learn from it" (DQN, the policy-gradient
family, SAC, TD3) also give the two halves, and build ``step`` from them
(``rollout.collect_and_learn``), so that the actor–learner loop for host environments
(``purerl.experiment.actor_learner``) runs the very same learner on rollouts collected on the
host:

- ``behaviour_policy(state) -> Policy``: how the agent acts while collecting data (ε-greedy,
  sampling; its extras are stored in the rollout);
- ``learn(state, rollout, episodes) -> (state, metrics)``: everything an iteration does with a
  time-major ``rollout.Rollout`` ``[rollout_length, num_envs]`` (store, update, target update,
  counters) and the episode metrics of that stretch;
- ``rollout_length(config) -> int``: steps of every env per iteration.

Everything else is written once, here: ``schedule`` (evaluation periods), ``evaluate`` (greedy
episodes with **their own keys**: ``fold_in(eval_key, env_steps)``, never split from the
training key, so how often or how widely you evaluate never changes training), ``run_periods``
(the nested scans of a run), ``make_train`` (``train(key) -> (state, metrics)``), and
``episode_returns`` (acting with an optional recurrent carry and episode-start flags).

Divergence is caught per run, once for every algorithm, in ``run_periods``: a run whose loss
(any float metric), parameters or state go non-finite is flagged with the env step where it
happened (``TrainState.diverged_at``; ``metrics["diverged_at"]`` from ``make_train``) and
frozen at its last finite state, while the other runs of a vmapped batch go on.

Acting: ``act(params, key, obs, carry, first) -> (action, carry, extras)`` over a batch of
observations ``[N, ...]``; ``first[N]`` marks the first step of an episode (where a recurrent
agent resets its carry); a feed-forward agent's carry is ``None``. A ``Policy`` bundles the
parameters, the ``act`` function and ``initial_carry(params, num_envs)``.

Example:
    >>> algo = core.get("dqn")
    >>> train = jax.jit(jax.vmap(algo.make_train(algo.Config(total_steps=20_000))))
    >>> state, metrics = train(jax.random.split(jax.random.PRNGKey(0), 8))
    >>> metrics["eval_return"].shape    # [8 seeds, 2 evaluations]
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PRNGKeyArray

from purerl.algorithms.common import iteration_schedule
from purerl.envs import VecEnv
from purerl.envs.host import is_host_id
from purerl.recurrent import is_recurrent

__all__ = [
    "ActFn",
    "Policy",
    "Algorithm",
    "TrainState",
    "register",
    "get",
    "registered",
    "default_config",
    "ALGORITHMS",
    "no_carry",
    "build_network",
    "UserNetwork",
    "default_make_env",
    "schedule",
    "check",
    "init",
    "evaluate",
    "episode_returns",
    "run_periods",
    "guarded_step",
    "end_period",
    "make_train",
    "check_compiled_env",
]

# act(params, key, obs [N, ...], carry, first [N]) -> (action [N, ...], carry, extras)
ActFn = Callable[
    [Any, PRNGKeyArray, Array, Any, Bool[Array, " N"]], tuple[Array, Any, dict[str, Array]]
]


def no_carry(params: Any, num_envs: int) -> None:
    """The carry of a feed-forward agent: nothing."""
    return None


class Policy(NamedTuple):
    """How an agent acts: its parameters, the pure ``act`` function, its initial carry.

    ``act(params, key, obs, carry, first) -> (action, carry, extras)`` takes a batch of
    observations; ``initial_carry(params, num_envs)`` is ``None`` for feed-forward agents.
    """

    params: Any
    act: ActFn
    initial_carry: Callable[[Any, int], Any] = no_carry


def default_make_env(config: Any, num_envs: int) -> VecEnv:
    """``VecEnv.make(config.env_id, num_envs)``: the environment of most algorithms."""
    return VecEnv.make(config.env_id, num_envs=num_envs)


def _no_env_check(config: Any) -> None:
    return None


class Algorithm(NamedTuple):
    """What an algorithm is: the functions it writes itself (see the module docstring).

    The generic ``schedule``, ``make_train``, ``evaluate`` are methods so that
    ``algo.make_train(config)`` reads like the per-module functions it replaces.
    """

    name: str
    Config: type
    init: Callable[..., Any]
    step: Callable[[Any], tuple[Any, dict[str, Array]]]
    greedy_policy: Callable[[Any], Policy]
    iteration_steps: Callable[[Any], int]
    quick_config: Callable[[], Any]
    check: Callable[[Any], None] = _no_env_check
    make_env: Callable[[Any, int], VecEnv] = default_make_env
    behaviour_policy: Callable[[Any], Policy] | None = None
    learn: Callable[[Any, Any, dict[str, Array]], tuple[Any, dict[str, Array]]] | None = None
    rollout_length: Callable[[Any], int] | None = None
    env_defaults: Mapping[str, Mapping[str, Any]] = MappingProxyType({})

    @property
    def learns_from_rollouts(self) -> bool:
        """Whether the algorithm gives ``behaviour_policy`` / ``learn`` / ``rollout_length``
        (what host environments need: the actor–learner loop drives those halves)."""
        return None not in (self.behaviour_policy, self.learn, self.rollout_length)

    def schedule(self, config: Any) -> tuple[int, int]:
        """``(num_periods, iterations_per_period)``: see ``core.schedule``."""
        return schedule(self, config)

    def make_train(self, config: Any, *, network: Any = None, evaluate: bool = True):
        """``train(key) -> (state, metrics)``: see ``core.make_train``."""
        return make_train(self, config, network=network, evaluate=evaluate)

    def evaluate(self, state: Any, eval_key: PRNGKeyArray) -> dict[str, Array]:
        """Greedy evaluation of ``state``: see ``core.evaluate``."""
        return evaluate(self, state, eval_key)


ALGORITHMS: dict[str, Algorithm] = {}


def register(algorithm: Algorithm, *, replace: bool = False) -> Algorithm:
    """Add ``algorithm`` to the registry under ``algorithm.name`` (so ``purerl train NAME``,
    ``purerl.run(NAME, ...)``, sweeps, checkpoints and plots reach it). Returns it.

    Raises:
        ValueError: the name is taken (pass ``replace=True`` to swap it) or not a string.
    """
    name = algorithm.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"algorithm: a name must be a non-empty string, got {name!r}")
    if name in ALGORITHMS and not replace and ALGORITHMS[name] is not algorithm:
        raise ValueError(f"algorithm: {name!r} is already registered (replace=True swaps it)")
    ALGORITHMS[name] = algorithm
    return algorithm


def registered() -> list[str]:
    """Names of every registered algorithm, sorted."""
    return sorted(ALGORITHMS)


def get(name: str | Algorithm) -> Algorithm:
    """The registered algorithm called ``name`` (an ``Algorithm`` is returned as it is).

    Raises:
        ValueError: unknown name, with close names suggested.
    """
    if isinstance(name, Algorithm):
        return name
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(str(name), list(ALGORITHMS), n=3, cutoff=0.3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"algorithm: unknown algorithm {name!r}.{hint} Known: {registered()}")
    return ALGORITHMS[name]


def default_config(algorithm: str | Algorithm, env_id: str | None = None) -> Any:
    """The algorithm's default config for ``env_id``: ``Config()`` with its ``env_defaults``
    for that env (and ``env_id`` set); plain ``Config()`` when ``env_id`` is None.

    Example:
        >>> core.default_config("ppo", "Pendulum-v1").num_envs   # rejax's Pendulum settings
        100
    """
    algorithm = get(algorithm)
    if env_id is None:
        return algorithm.Config()
    return algorithm.Config(**{**algorithm.env_defaults.get(env_id, {}), "env_id": env_id})


class UserNetwork(eqx.Module):
    """A user's network whose non-array leaves (activation functions such as ``jax.nn.relu``
    in ``eqx.nn.MLP``, Python numbers) are kept static, so the agent state holds only arrays
    and goes through ``jit``, ``vmap``, ``scan`` and checkpoints. Calls the module."""

    arrays: Any
    rest: Any = eqx.field(static=True)

    @property
    def module(self) -> eqx.Module:
        """The user's module, whole again."""
        return eqx.combine(self.arrays, self.rest)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def _arrays_only(module: eqx.Module) -> eqx.Module:
    arrays, rest = eqx.partition(module, eqx.is_array)
    if not jax.tree.leaves(rest):
        return module
    return UserNetwork(arrays, rest)


def build_network(
    network: Any,
    key: PRNGKeyArray,
    env: VecEnv,
    default: Callable[[PRNGKeyArray], eqx.Module],
    *,
    recurrent: bool = False,
) -> eqx.Module:
    """The agent's network: ``default(key)`` when ``network`` is ``None``, else the user's.

    ``network`` is an Equinox module (used as it is, the same initial weights for every seed)
    or a factory ``network(key, obs_shape, action_spec) -> module`` (called with the seed's key;
    ``action_spec`` is ``envs.ActionSpec``). What the module must compute depends on the
    algorithm (Q-values for DQN/PQN, ``(distribution, value)`` for the policy-gradient family).
    A module with non-array leaves (e.g. ``eqx.nn.MLP``'s activation) comes back wrapped in a
    ``UserNetwork`` (its ``.module`` is the user's module).

    ``recurrent`` says whether the algorithm runs its recurrent path (``Config.recurrent``):
    the network must then be recurrent (``purerl.recurrent.is_recurrent``), and otherwise not.

    Raises:
        ValueError: not a module or factory; a recurrent network on a feed-forward path or
            the other way round.
    """
    if network is None:
        return default(key)
    if isinstance(network, eqx.Module):
        module = network
    elif callable(network):
        module = network(key, env.obs_shape, env.action_spec)
        if not isinstance(module, eqx.Module):
            raise ValueError(
                f"network: the factory returned a {type(module).__name__}, not an equinox Module"
            )
    else:
        raise ValueError(
            "network: expected an equinox Module or a factory (key, obs_shape, action_spec) -> "
            f"Module, got {type(network).__name__}"
        )
    if is_recurrent(module) and not recurrent:
        raise ValueError(
            f"network: {type(module).__name__} is recurrent (it has initial_carry) but the "
            "config runs the feed-forward path: set recurrent='gru' or 'lstm' (ppo, pqn)"
        )
    if recurrent and not is_recurrent(module):
        raise ValueError(
            f"network: the config asks for a recurrent agent but {type(module).__name__} has "
            "no initial_carry(); give a module called as (carry, obs, first) -> (carry, out)"
        )
    return _arrays_only(module)


def schedule(algorithm: Algorithm, config: Any) -> tuple[int, int]:
    """``(num_periods, iterations_per_period)``: a run is ``num_periods`` evaluation periods of
    ``eval_every`` env steps, each ``iterations_per_period`` calls of ``step``.

    Raises:
        ValueError: ``total_steps`` / ``eval_every`` do not divide into whole iterations
            (``fit_budget`` rounds them; ``purerl.run`` and ``purerl train`` do it for you).
    """
    return iteration_schedule(
        config.total_steps, algorithm.iteration_steps(config), config.eval_every
    )


def fit_budget(algorithm: Algorithm, config: Any) -> Any:
    """``config`` with ``total_steps`` rounded up to whole iterations and ``eval_every`` to the
    nearest whole number of iterations, so that the run is equal evaluation periods and the last
    evaluation lands at its end (``purerl.run`` / ``purerl train`` call it: any positive budget
    works). Returned unchanged when it already divides.

    The run is ``ceil(total_steps / I)`` iterations of ``I = iteration_steps`` env steps, rounded
    up to a whole number of periods: at most one period minus one iteration more than asked.
    """
    if config.total_steps <= 0 or config.eval_every <= 0:
        return config  # nothing to round: ``check`` names the field
    size = algorithm.iteration_steps(config)
    iterations = -(-config.total_steps // size)
    per_period = min(max(1, round(config.eval_every / size)), iterations)
    periods = -(-iterations // per_period)
    total, every = periods * per_period * size, per_period * size
    if (total, every) == (config.total_steps, config.eval_every):
        return config
    return dataclasses.replace(config, total_steps=total, eval_every=every)


def check(algorithm: Algorithm, config: Any) -> None:
    """Every check of ``config`` for ``algorithm``, before anything compiles: the config's own
    (``__check_init__``, run when it was built), the environment's, the schedule's."""
    if not isinstance(config, algorithm.Config):
        raise ValueError(f"config: expected a {algorithm.name}.Config, got {type(config).__name__}")
    algorithm.check(config)
    algorithm.make_env(config, 1)
    schedule(algorithm, config)


def _int32(x: Any) -> Array:
    return jnp.asarray(x, jnp.int32)


class TrainState(eqx.Module):
    """What a training loop carries: the agent's state, the root of the evaluation keys, and
    whether the run diverged (see ``run_periods``).

    Attributes:
        agent: the algorithm's state (frozen once the run diverged).
        eval_key: the root of the evaluation keys.
        diverged_at: ``-1`` while the run is healthy; else the env steps the agent had taken
            before the first iteration whose metrics or parameters were not finite.
        frozen_steps: env steps the run has sat out frozen (0 while healthy); added to the
            ``env_steps`` / ``eval_env_steps`` metrics so every run shares one step axis.
    """

    agent: Any
    eval_key: PRNGKeyArray
    diverged_at: Int[Array, ""] = eqx.field(default=-1, converter=_int32)
    frozen_steps: Int[Array, ""] = eqx.field(default=0, converter=_int32)


def init(algorithm: Algorithm, key: PRNGKeyArray, config: Any, network: Any = None) -> TrainState:
    """``TrainState`` for one run: the key is split once into the agent's key (``init``) and the
    evaluation root, so evaluation draws never touch the training stream."""
    agent_key, eval_key = jax.random.split(key)
    return TrainState(algorithm.init(agent_key, config, network=network), eval_key)


def episode_returns(key: PRNGKeyArray, env: VecEnv, policy: Policy) -> Float[Array, " N"]:
    """Undiscounted return of the first episode in each of ``env.num_envs`` fresh copies,
    acting with ``policy`` (its carry reset at the start; gymnax time limits bound the loop)."""
    reset_key, key = jax.random.split(key)
    env_state = env.reset(reset_key)
    n = env.num_envs

    def cond(c):
        return ~jnp.all(c[-1])

    def body(c):
        key, env_state, carry, first, returns, finished = c
        key, act_key, step_key = jax.random.split(key, 3)
        action, carry, _ = policy.act(policy.params, act_key, env_state.obs, carry, first)
        env_state, ts = env.step(step_key, env_state, action)
        returns = jnp.where(finished, returns, ts.episode_return)
        return key, env_state, carry, ts.done, returns, finished | ts.done

    carry = policy.initial_carry(policy.params, n)
    first = jnp.ones((n,), bool)
    zeros = jnp.zeros((n,), jnp.float32)
    init_val = (key, env_state, carry, first, zeros, jnp.zeros((n,), bool))
    return jax.lax.while_loop(cond, body, init_val)[4]


def evaluate(algorithm: Algorithm, state: Any, eval_key: PRNGKeyArray) -> dict[str, Array]:
    """Mean greedy return over ``config.eval_envs`` fresh episodes, with the key
    ``fold_in(eval_key, env_steps)``: the same evaluation at the same step whatever the
    evaluation cadence, and no draw from the training key.

    Returns:
        ``{"eval_return", "eval_env_steps"}``.
    """
    config = state.config
    env = algorithm.make_env(config, config.eval_envs)
    key = jax.random.fold_in(eval_key, state.env_steps)
    returns = episode_returns(key, env, algorithm.greedy_policy(state))
    return {"eval_return": jnp.mean(returns), "eval_env_steps": state.env_steps}


def _all_finite(tree: Any) -> Bool[Array, ""]:
    """Whether every float leaf of ``tree`` is finite: one cheap reduction per leaf."""
    leaves = [x for x in jax.tree.leaves(tree) if eqx.is_inexact_array(x)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves] or [jnp.array(True)]))


def guarded_step(
    algorithm: Algorithm,
    agent: Any,
    diverged_at: Array,
    frozen_steps: Array,
    step: Callable[[Any], tuple[Any, dict[str, Array]]] | None = None,
) -> tuple[tuple[Any, Array], dict[str, Array]]:
    """``step(agent)`` (default ``algorithm.step``; the actor–learner loop passes its learner
    step), then the divergence check of its metrics and new parameters.

    From the first non-finite iteration on, float metrics are NaN (those iterations are
    discarded) and ``diverged_at`` holds the env steps taken before it; ``env_steps`` counts
    the scheduled steps (``frozen_steps`` added).
    """
    new, metrics = (step or algorithm.step)(agent)
    ok = _all_finite(metrics) & _all_finite(algorithm.greedy_policy(new).params)
    diverged_at = jnp.where((diverged_at < 0) & ~ok, agent.env_steps, diverged_at)
    discarded = diverged_at >= 0
    metrics = jax.tree.map(
        lambda m: jnp.where(discarded, jnp.nan, m) if eqx.is_inexact_array(m) else m, metrics
    )
    if "env_steps" in metrics:
        metrics = {**metrics, "env_steps": metrics["env_steps"] + frozen_steps}
    return (new, diverged_at), metrics


def end_period(s: TrainState, agent: Any, diverged_at: Array) -> TrainState:
    """Check the whole new agent state (its config aside: a swept value is not learned) and
    roll a diverged run back to ``s.agent``, the state at the start of the period."""
    has_config = isinstance(getattr(agent, "config", None), eqx.Module)
    learned = eqx.tree_at(lambda a: a.config, agent, None) if has_config else agent
    bad = (diverged_at >= 0) | ~_all_finite(learned)
    diverged_at = jnp.where(bad & (diverged_at < 0), s.agent.env_steps, diverged_at)
    frozen_steps = s.frozen_steps + jnp.where(bad, agent.env_steps - s.agent.env_steps, 0)
    agent = jax.tree.map(lambda old, new: jnp.where(bad, old, new), s.agent, agent)
    return TrainState(agent, s.eval_key, diverged_at, frozen_steps)


def run_periods(
    algorithm: Algorithm,
    state: TrainState,
    num_periods: int,
    period: int,
    *,
    evaluate: bool = True,
) -> tuple[TrainState, dict[str, Array]]:
    """``num_periods`` × (``period`` iterations of ``step``, then an evaluation), nested scans.

    Evaluation sits between scans rather than behind a ``lax.cond``: under ``vmap`` a cond
    becomes a select and would run the evaluation every iteration. It reads the agent's state
    and never writes it. ``evaluate=False`` leaves it out (training is bit for bit the same).

    Divergence is caught per run, inside the compiled loop (no host sync): after every
    iteration the float metrics (the loss among them) and the parameters
    (``greedy_policy(state).params``) must be finite — a non-finite gradient shows up as
    non-finite parameters in the same iteration — and at the end of each period every float
    leaf of the agent's state. A run that fails is flagged (``state.diverged_at``: the env
    steps before its first non-finite iteration, or the period's start when only the
    whole-state check saw it) and frozen: it rolls back to the state at the start of that
    period (the last one checked whole, so checkpoints stay finite) and stays there while the
    other runs of a vmapped batch go on. Rolling back once per period rather than keeping the
    previous state every iteration costs one copy of the state per period instead of one per
    iteration (a replay buffer each step). A frozen run's float metrics are NaN from its first
    non-finite iteration on (integer and boolean ones are those of the discarded steps); its
    evaluations are those of the frozen state; ``env_steps`` and ``eval_env_steps`` keep
    counting the scheduled steps. A healthy run is bit for bit what scanning ``step`` gives.

    Returns:
        Final state and metrics: per-iteration keys ``[num_periods · period]`` and
        per-evaluation keys ``[num_periods]``.
    """

    def one_period(s: TrainState, _):
        def guarded(carry, _):
            return guarded_step(algorithm, *carry, s.frozen_steps)

        carry = (s.agent, s.diverged_at)
        (agent, diverged_at), metrics = jax.lax.scan(guarded, carry, None, length=period)
        s = end_period(s, agent, diverged_at)
        evals = algorithm.evaluate(s.agent, s.eval_key) if evaluate else {}
        if "eval_env_steps" in evals:
            evals = {**evals, "eval_env_steps": evals["eval_env_steps"] + s.frozen_steps}
        return s, (metrics, evals)

    state, (metrics, evals) = jax.lax.scan(one_period, state, None, length=num_periods)
    metrics = jax.tree.map(lambda x: x.reshape(num_periods * period, *x.shape[2:]), metrics)
    return state, {**metrics, **evals}


def check_compiled_env(config: Any) -> None:
    """``ValueError`` for a host environment (``gymnasium:...``, ``atari:...``): those step on
    the host, through the actor–learner loop of ``purerl.run`` / ``purerl train``, never inside
    a compiled ``train``."""
    if is_host_id(getattr(config, "env_id", None)):
        raise ValueError(
            f"env: {config.env_id} is a host environment: it cannot run inside a compiled "
            "train(key); use purerl.run(...) or `purerl train`, which drive it through the "
            "actor–learner loop"
        )


def make_train(
    algorithm: Algorithm | str, config: Any, *, network: Any = None, evaluate: bool = True
) -> Callable[[PRNGKeyArray], tuple[Any, dict[str, Array]]]:
    """``train(key) -> (final agent state, metrics)`` running the whole ``config``.

    Every check runs here, before anything compiles. ``jax.jit(jax.vmap(train))(keys)`` trains
    one agent per key. ``network`` replaces the default network (see ``build_network``);
    ``evaluate=False`` skips the greedy evaluations (training is unchanged by them).
    ``metrics["diverged_at"]`` (a scalar per run) is ``-1``, or the env step where the run
    went non-finite and was frozen (see ``run_periods``).
    """
    algorithm = get(algorithm)
    check(algorithm, config)
    check_compiled_env(config)
    num_periods, period = schedule(algorithm, config)

    def train(key: PRNGKeyArray) -> tuple[Any, dict[str, Array]]:
        state = init(algorithm, key, config, network)
        state, metrics = run_periods(algorithm, state, num_periods, period, evaluate=evaluate)
        return state.agent, {**metrics, "diverged_at": state.diverged_at}

    return train
