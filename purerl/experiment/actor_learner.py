"""L4: the actor–learner loop that trains on host environments (Gymnasium, Atari; ids
``gymnasium:...``, ``atari:...``, see ``purerl.envs.host``).

Host environments cannot step inside ``jit``, so an iteration is cut where the algorithm
contract already cuts it (``core.Algorithm``: ``behaviour_policy``, ``learn``,
``rollout_length``):

- **Actors** (``actors`` threads) each own a slice of the envs: ``num_envs / actors`` copies of
  every run (runs = sweep points × seeds, batched). An actor acts with the jitted, vmapped
  ``behaviour_policy(state).act`` on a copy of the latest published parameters, steps its
  ``HostVecEnv`` (in this process, or one subprocess per copy with ``async_envs``), and puts a
  rollout of ``rollout_length`` steps into its bounded queue.
- **The learner** (the calling thread) takes one rollout from every actor, joins them along
  the env axis into the ``[runs, T, num_envs]`` rollout the compiled loop would have
  collected, and runs ``rollout.learn_from(algorithm.learn, ...)`` — the algorithm's own
  ``learn``, jitted and vmapped over the runs, behind the same divergence guard as the compiled
  loop (``core.guarded_step`` / ``core.end_period``) — then publishes the new behaviour
  parameters.

**Staleness.** Rollout ``i`` of an actor is collected with parameters of version ``v ≥ i −
max_staleness`` (the version counts learner updates); ``max_staleness = 0`` is the
synchronous, exactly on-policy loop (actors wait for every update), the default 1 lets each
actor collect the next rollout while the learner learns on the current one. The staleness of
every consumed rollout is a metric (``staleness``) and its mean/max is in ``summary["host"]``.

**Evaluation** is greedy, on ``eval_envs`` fresh host episodes per run between periods, seeded
from ``fold_in(eval_key, env_steps)`` as in the compiled loop. **Resume**: a host env's state
cannot be snapshotted, so a resumed run restarts every episode (and says so); the learner's
state (networks, optimizer, replay buffer) continues from the checkpoint.

**Shutdown**: an exception in an actor (or Ctrl-C) stops every actor, closes every env (and
its subprocesses), and ``run`` writes the results of the finished periods before raising
(``ActorLearnerError`` with the actor's error as cause, or ``KeyboardInterrupt``).
"""

from __future__ import annotations

import dataclasses
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from purerl.algorithms import core
from purerl.algorithms.common import finished_episode_stats
from purerl.algorithms.rollout import Rollout, learn_from
from purerl.envs.host import HostVecEnv
from purerl.types import Timestep

__all__ = [
    "HostSettings",
    "ActorLearnerError",
    "ActorLearner",
    "check_host_run",
    "learner_input",
]

# An evaluation episode longer than this is cut (its return so far counts): a host env
# without a time limit must not hang the run.
MAX_EVAL_STEPS = 108_000


@dataclasses.dataclass(frozen=True)
class HostSettings:
    """How the actor–learner loop runs (host environments only).

    Attributes:
        actors: actor threads; each steps ``num_envs / actors`` envs of every run.
        async_envs: every env copy in its own subprocess (Gymnasium ``AsyncVectorEnv``), so
            env stepping runs in parallel outside the GIL; else in the actor's thread.
        max_staleness: how many learner updates a rollout's parameters may lag behind (0:
            synchronous, exactly on-policy).
    """

    actors: int = 1
    async_envs: bool = False
    max_staleness: int = 1


class ActorLearnerError(RuntimeError):
    """An actor failed (its exception is the ``__cause__``); every actor was stopped and
    every env closed."""


def check_host_run(module: core.Algorithm, config: Any, host: HostSettings) -> list[str]:
    """Problems with training ``config`` on a host env, one line each (empty: none)."""
    problems = []
    if not module.learns_from_rollouts:
        able = [n for n in core.registered() if core.get(n).learns_from_rollouts]
        problems.append(
            f"algorithm: {module.name} cannot train on host environments ({config.env_id}); "
            f"those that can: {', '.join(able)}"
        )
    actors = host.actors
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        problems.append(f"actors: must be a whole number >= 1, got {actors!r}")
    elif config.num_envs % actors:
        problems.append(
            f"actors: {actors} actors must divide num_envs={config.num_envs} (each steps "
            "an equal share of the envs)"
        )
    staleness = host.max_staleness
    if isinstance(staleness, bool) or not isinstance(staleness, int) or staleness < 0:
        problems.append(f"max_staleness: must be a whole number >= 0, got {staleness!r}")
    return problems


class _Published:
    """The latest behaviour parameters and their version (learner updates so far)."""

    def __init__(self, params: Any):
        self._cond = threading.Condition()
        self.version, self.params = 0, params

    def publish(self, version: int, params: Any) -> None:
        with self._cond:
            self.version, self.params = version, params
            self._cond.notify_all()

    def wait(self, version: int, stop: threading.Event) -> tuple[int, Any] | None:
        """``(version, params)`` once at least ``version`` is out; ``None`` once stopped."""
        with self._cond:
            while self.version < version and not stop.is_set():
                self._cond.wait(0.1)
            return None if stop.is_set() else (self.version, self.params)


class _Item(NamedTuple):
    """One actor's rollout: NumPy ``[runs, T, envs, ...]`` fields, the parameters' version."""

    data: dict[str, Any]
    version: int


class _Failure(NamedTuple):
    error: BaseException
    trace: str


def _stack_steps(steps: list[Any]) -> Any:
    """Per-step trees ``[runs, envs, ...]`` → one tree ``[runs, T, envs, ...]``."""
    return jax.tree.map(lambda *xs: np.stack(xs, axis=1), *steps)


class _Actor(threading.Thread):
    """Steps one slice of the host envs with the latest parameters; see the module docstring."""

    def __init__(self, index: int, loop: ActorLearner, seeds: np.ndarray, key: jax.Array):
        super().__init__(name=f"purerl-actor-{index}", daemon=True)
        self.index, self.loop, self.seeds, self.key = index, loop, seeds, key
        self.queue: queue.Queue = queue.Queue(maxsize=loop.host.max_staleness + 1)
        self.env: HostVecEnv | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # noqa: BLE001 (handed to the learner, which raises it)
            self._put(_Failure(error, traceback.format_exc()))
        finally:
            if self.env is not None:
                self.env.close()

    def _put(self, item: Any) -> bool:
        while not self.loop.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        loop = self.loop
        runs, n = loop.runs, loop.envs_per_actor
        obs = self.env.reset(self.seeds)
        first = np.ones(runs * n, bool)
        carry = None
        for i in range(sys.maxsize):
            got = loop.published.wait(i - loop.host.max_staleness, loop.stop)
            if got is None:
                return
            version, params = got
            if carry is None and i == 0:
                carry = loop.initial_carry(params)
            start_carry, steps = carry, []
            for _ in range(loop.length):
                self.key, action, carry, extras = loop.act(
                    params, self.key, _runs(obs, runs), carry, _runs(first, runs)
                )
                action = np.asarray(action)
                out = self.env.step(action.reshape(runs * n, *action.shape[2:]))
                steps.append(_step_record(obs, first, action, out, extras, runs))
                obs, first = out.obs, out.done
            data = _stack_steps(steps)
            data["carry"], data["final_carry"] = start_carry, carry
            if not self._put(_Item(data, version)):
                return


def _runs(x: np.ndarray, runs: int) -> np.ndarray:
    """``[runs · envs, ...]`` → ``[runs, envs, ...]``."""
    return x.reshape(runs, -1, *x.shape[1:])


def _step_record(obs, first, action, out, extras, runs: int) -> dict[str, Any]:
    record = {
        "obs": obs,
        "first": first,
        "reward": out.reward,
        "terminated": out.terminated,
        "truncated": out.truncated,
        "next_obs": out.final_obs,
        "episode_return": out.episode_return,
        "episode_length": out.episode_length,
    }
    record = {k: _runs(v, runs) for k, v in record.items()}
    return {**record, "action": action, "extras": jax.tree.map(np.asarray, extras)}


def _join(items: list[_Item]) -> dict[str, Any]:
    """The actors' rollouts side by side along the env axis (``[runs, T, envs]``; carries
    ``[runs, envs]``), in actor order: the same batch whatever the timing."""
    datas = [item.data for item in items]
    steps = [{k: v for k, v in d.items() if k not in ("carry", "final_carry")} for d in datas]
    joined = jax.tree.map(lambda *xs: np.concatenate(xs, axis=2), *steps)
    for name in ("carry", "final_carry"):
        trees = [d[name] for d in datas]
        joined[name] = (
            None if trees[0] is None else jax.tree.map(lambda *xs: jnp.concatenate(xs, 1), *trees)
        )
    return joined


def learner_input(
    rollout: Rollout, episode_return: np.ndarray, episode_length: np.ndarray
) -> dict[str, Any]:
    """One run's ``[T, N]`` rollout in the form the actors hand to ``ActorLearner``'s
    learner, for a batch of one run (``[1, T, N]``), with the running episode return and
    length of every step (what the episode metrics are computed from). For feeding the
    learner transitions collected elsewhere (tests, benchmarks of the learner alone)."""
    data = {
        "obs": rollout.obs,
        "first": rollout.first,
        "reward": rollout.reward,
        "terminated": rollout.terminated,
        "truncated": rollout.truncated,
        "next_obs": rollout.next_obs,
        "episode_return": episode_return,
        "episode_length": episode_length,
        "action": rollout.action,
        "extras": rollout.extras,
    }
    data = jax.tree.map(lambda x: np.asarray(x)[None], data)
    return {**data, "carry": None, "final_carry": None}


def _as_rollout(data: dict[str, Any]) -> tuple[Rollout, dict[str, jax.Array]]:
    """One run's rollout (inside the vmap) and its episode metrics."""
    rollout = Rollout(
        obs=data["obs"],
        action=data["action"],
        reward=data["reward"],
        terminated=data["terminated"],
        truncated=data["truncated"],
        next_obs=data["next_obs"],
        extras=data["extras"],
        first=data["first"],
        carry=data["carry"],
        final_carry=data["final_carry"],
    )
    ts = Timestep(
        obs=data["next_obs"],
        reward=data["reward"],
        terminated=data["terminated"],
        truncated=data["truncated"],
        final_obs=data["next_obs"],
        episode_return=data["episode_return"],
        episode_length=data["episode_length"],
    )
    return rollout, finished_episode_stats(ts)


def _policy_parts(get_policy: Any, agent: Any) -> tuple[Any, Any]:
    """``(act, initial_carry)`` of ``get_policy(agent)``: static functions, read once by
    tracing the policy of one run (nothing is computed)."""
    parts: list[Any] = []

    def probe(a: Any) -> Any:
        policy = get_policy(a)
        parts.append((policy.act, policy.initial_carry))
        return policy.params

    jax.eval_shape(probe, agent)
    return parts[0]


def _batched_act(act: Any) -> Any:
    """``act`` vmapped over runs and jitted; it draws its key from the run's key stream."""

    def one(params, key, obs, carry, first):
        key, sub = jax.random.split(key)
        action, carry, extras = act(params, sub, obs, carry, first)
        return key, action, carry, extras

    return jax.jit(jax.vmap(one))


def _seeds(keys: jax.Array, salt: int, count: int) -> np.ndarray:
    """``[runs · count]`` Gymnasium seeds drawn from each run's key (``fold_in(key, salt)``)."""
    draw = jax.vmap(
        lambda k: jax.random.randint(jax.random.fold_in(k, salt), (count,), 0, 2**31 - 1)
    )
    return np.asarray(draw(keys)).reshape(-1)


class ActorLearner:
    """The loop of the module docstring for one batch of runs (``runs`` = sweep points ×
    seeds, every leaf of the training state with a leading ``[runs]`` axis).

    ``start(state)`` launches the actors, ``run_period(state)`` trains one evaluation period
    (``period`` learner updates, then the divergence check and a greedy evaluation) and
    returns the metrics the compiled loop's chunk returns, ``close()`` stops everything.
    """

    def __init__(self, module: core.Algorithm, config: Any, host: HostSettings, runs: int):
        self.module, self.config, self.host, self.runs = module, config, host, runs
        self.env_id, self.length = config.env_id, module.rollout_length(config)
        self.envs_per_actor = config.num_envs // host.actors
        self.period = core.schedule(module, config)[1]
        self.stop = threading.Event()
        self.actors: list[_Actor] = []
        self.eval_env: HostVecEnv | None = None
        self.updates = 0
        self.staleness: list[int] = []
        self.timing = {"wait_seconds": 0.0, "learn_seconds": 0.0, "eval_seconds": 0.0}

        def learn_one(agent, diverged_at, frozen_steps, data):
            rollout, episodes = _as_rollout(data)
            step = lambda a: learn_from(module.learn, a, rollout, episodes)  # noqa: E731
            return core.guarded_step(module, agent, diverged_at, frozen_steps, step)

        # the agent is donated: the replay buffer is updated in place, not copied per update
        self._learn = jax.jit(jax.vmap(learn_one), donate_argnums=0)
        self._end = jax.jit(jax.vmap(core.end_period))
        self._behaviour = jax.jit(jax.vmap(lambda a: module.behaviour_policy(a).params))
        self._greedy = jax.jit(jax.vmap(lambda a: module.greedy_policy(a).params))
        self._env_steps = jax.jit(jax.vmap(lambda a: a.env_steps))

    def _compile_acting(self, agent_batch: Any) -> None:
        one = jax.tree.map(lambda x: x[0], agent_batch)
        act, initial = _policy_parts(self.module.behaviour_policy, one)
        self.act = _batched_act(act)
        greedy_act, greedy_initial = _policy_parts(self.module.greedy_policy, one)
        self.greedy_act = _batched_act(greedy_act)
        n, e = self.envs_per_actor, self.config.eval_envs
        self._carry = jax.jit(jax.vmap(lambda p: initial(p, n)))
        self._greedy_carry = jax.jit(jax.vmap(lambda p: greedy_initial(p, e)))

    def initial_carry(self, params: Any) -> Any:
        """The behaviour policy's carry for an actor's envs of every run (``None``:
        feed-forward)."""
        return self._carry(params)

    def start(self, state: core.TrainState, *, resumed: bool = False) -> None:
        """Publish the parameters of ``state`` and launch the actors (each with its own key
        stream and env seeds, drawn from the runs' keys)."""
        if resumed:
            print(
                f"purerl: {self.env_id} runs on the host, whose env state cannot be "
                "snapshotted: the resumed run starts new episodes (the learner, its replay "
                "buffer and optimizer continue from the checkpoint)",
                file=sys.stderr,
            )
        self._compile_acting(state.agent)
        self.published = _Published(self._behaviour(state.agent))
        keys = state.agent.key
        for j in range(self.host.actors):
            actor_keys = jax.vmap(lambda k, j=j: jax.random.fold_in(k, 0xAC70 + j))(keys)
            seeds = _seeds(keys, j, self.envs_per_actor)
            self.actors.append(_Actor(j, self, seeds, actor_keys))
            self.actors[-1].env = self._make_env(self.runs * self.envs_per_actor)
        for actor in self.actors:
            actor.start()

    def _make_env(self, num_envs: int) -> HostVecEnv:
        """An actor's envs, made here in the main thread: subprocess envs start with Ctrl-C
        ignored, so an interrupt reaches this process alone, which stops the actors and then
        closes the envs (a worker killed mid-step would leave its actor waiting)."""
        if not self.host.async_envs or threading.current_thread() is not threading.main_thread():
            return HostVecEnv(self.env_id, num_envs, asynchronous=self.host.async_envs)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return HostVecEnv(self.env_id, num_envs, asynchronous=True)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _take(self, actor: _Actor) -> _Item:
        t0 = time.perf_counter()
        while True:
            try:
                item = actor.queue.get(timeout=0.1)
                break
            except queue.Empty:
                if not actor.is_alive() and actor.queue.empty():
                    raise ActorLearnerError(f"actor {actor.index} stopped unexpectedly") from None
        self.timing["wait_seconds"] += time.perf_counter() - t0
        if isinstance(item, _Failure):
            raise ActorLearnerError(
                f"actor {actor.index} failed: {item.error!r}\n{item.trace}"
            ) from item.error
        return item

    def run_period(self, s: core.TrainState) -> tuple[core.TrainState, dict[str, np.ndarray]]:
        """``period`` learner updates, the end-of-period divergence check (a run that went
        non-finite rolls back to ``s``) and a greedy evaluation: ``(state, metrics)`` with
        per-update metrics ``[runs, period]`` and evaluation metrics ``[runs, 1]``."""
        agent = jax.tree.map(jnp.copy, s.agent)  # ``s`` stays whole: the rollback point
        diverged_at, steps = s.diverged_at, []
        for _ in range(self.period):
            items = [self._take(actor) for actor in self.actors]
            t0 = time.perf_counter()
            (agent, diverged_at), metrics = self._learn(
                agent, diverged_at, s.frozen_steps, _join(items)
            )
            # wait for the update itself, so learn_seconds is learning, not just its dispatch
            # (the actors step their envs meanwhile; their next act waits for it anyway)
            jax.block_until_ready(metrics)
            stale = self.updates - min(item.version for item in items)
            self.staleness.append(stale)
            self.updates += 1
            self.published.publish(self.updates, self._behaviour(agent))
            steps.append({**metrics, "staleness": np.full(self.runs, stale, np.int32)})
            self.timing["learn_seconds"] += time.perf_counter() - t0
        s = self._end(s, agent, diverged_at)
        self.published.publish(self.updates, self._behaviour(s.agent))  # after a rollback
        per_update = {k: np.stack([np.asarray(m[k]) for m in steps], 1) for k in steps[0]}
        return s, {**per_update, **self.evaluate(s)}

    def evaluate(self, s: core.TrainState) -> dict[str, np.ndarray]:
        """Mean greedy return of ``eval_envs`` fresh host episodes per run (``[runs, 1]``),
        seeded from ``fold_in(eval_key, env_steps)``."""
        t0 = time.perf_counter()
        e = self.config.eval_envs
        env_steps = self._env_steps(s.agent)
        keys = jax.vmap(jax.random.fold_in)(s.eval_key, env_steps)
        if self.eval_env is None:
            self.eval_env = HostVecEnv(self.env_id, self.runs * e, asynchronous=False)
        obs = self.eval_env.reset(_seeds(keys, 0, e))
        params = self._greedy(s.agent)
        carry, first = self._greedy_carry(params), np.ones(self.runs * e, bool)
        returns = np.zeros(self.runs * e, np.float32)
        finished = np.zeros(self.runs * e, bool)
        for _ in range(MAX_EVAL_STEPS):
            keys, action, carry, _ = self.greedy_act(
                params, keys, _runs(obs, self.runs), carry, _runs(first, self.runs)
            )
            action = np.asarray(action)
            out = self.eval_env.step(action.reshape(self.runs * e, *action.shape[2:]))
            returns = np.where(finished, returns, out.episode_return)
            finished |= out.done
            if finished.all():
                break
            obs, first = out.obs, out.done
        self.timing["eval_seconds"] += time.perf_counter() - t0
        steps = np.asarray(env_steps + s.frozen_steps)
        mean = returns.reshape(self.runs, e).mean(1)
        return {"eval_return": mean[:, None], "eval_env_steps": steps[:, None]}

    def close(self) -> None:
        """Stop every actor (each closes its envs) and close the evaluation envs."""
        self.stop.set()
        for actor in self.actors:
            actor.join(timeout=10)
            if actor.is_alive() and actor.env is not None:  # stuck in a step: end its envs
                actor.env.close()
                actor.join(timeout=10)
        if self.eval_env is not None:
            self.eval_env.close()
            self.eval_env = None

    def summary(self) -> dict[str, Any]:
        """What ``summary["host"]`` records: the settings, staleness and where time went."""
        stale = np.asarray(self.staleness or [0])
        return {
            "actors": self.host.actors,
            "async_envs": self.host.async_envs,
            "max_staleness": self.host.max_staleness,
            "staleness_mean": float(stale.mean()),
            "staleness_max": int(stale.max()),
            **{k: round(v, 3) for k, v in self.timing.items()},
        }
