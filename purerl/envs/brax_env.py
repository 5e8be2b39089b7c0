"""L2: Brax physics environments behind purerl's (gymnax 1.x) environment interface.

``make("brax:inverted_pendulum")`` (in ``purerl.envs``) builds a ``BraxEnv`` over a raw Brax
environment (``brax.envs.get_environment``), not over Brax's own ``EpisodeWrapper`` /
``AutoResetWrapper``: those fold the time limit into ``state.done`` (and only flag it in
``info["truncation"]``), and their auto-reset replaces the last observation of an episode with
the first one of the next. Here the adapter owns both, the gymnax 1.x way ``VecEnv`` expects:

- ``terminated`` is Brax's ``state.done`` (the pendulum fell, the ant flipped): the episode has
  no future, so a learner's target must not bootstrap (discount 0).
- ``truncated`` is the time limit ``params.max_steps_in_episode`` cutting a live episode: the
  state still has a future, so a learner bootstraps from the true last observation, returned in
  ``info["final_observation"]`` while ``obs`` is already the first of the next episode.

Keeping the two apart matters: treating a time-limit cut as a terminal state teaches an agent
that surviving 1000 steps of ``inverted_pendulum`` is worth nothing after step 1000 (values
collapse near the limit), a known source of bias (Pardo et al., 2018, "Time Limits in
Reinforcement Learning").

Brax is an optional extra (``pip install 'purerl[brax]'``) imported lazily: nothing here
imports it at module import time, and ``BraxEnv`` raises a clear ``ImportError`` without it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
from typing import Any, no_type_check

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces
from jaxtyping import Array, ArrayLike, Int, PRNGKeyArray

__all__ = [
    "PREFIX",
    "BACKENDS",
    "DEFAULT_BACKEND",
    "FALLBACK_BACKEND",
    "BraxEnv",
    "BraxEnvParams",
    "BraxEnvState",
    "BraxNotInstalledError",
    "brax_available",
    "brax_env_names",
    "import_brax_envs",
    "as_brax_name",
]

PREFIX = "brax:"
"""Environment ids of the form ``brax:NAME`` (e.g. ``brax:ant``) go to this adapter."""

BACKENDS = ("generalized", "positional", "spring", "mjx")
"""Brax's physics pipelines (``backend=``)."""

DEFAULT_BACKEND = "spring"
"""The pipeline used when none is asked for: the fastest on a CPU (``inverted_pendulum``,
random actions, 2 cores: ~24k steps/s for one env and ~54k for 8 vmapped, against ~16k/15k
for ``generalized``, ~11k/21k for ``positional`` and ~7k/25k for ``mjx``; and the quickest to
compile). It is the crudest physics; ``backend="generalized"`` (Brax's own default) is more
accurate. An env that rejects it (``swimmer``) gets ``FALLBACK_BACKEND``."""

FALLBACK_BACKEND = "generalized"
"""The pipeline for envs without ``DEFAULT_BACKEND``: every Brax env supports it."""

_MISSING = "brax is not installed: pip install 'purerl[brax]'"


class BraxNotInstalledError(ImportError, ValueError):
    """brax is missing. An ``ImportError``, and a ``ValueError`` too, so that the ``purerl``
    command reports it as bad input (one line, exit status 2), not with a traceback."""


# Brax's test double ``fast`` has no physics system and counts calls in Python: not an env.
_EXCLUDED = frozenset({"fast"})


def brax_available() -> bool:
    """Whether the ``brax`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("brax") is not None


def import_brax_envs() -> Any:
    """``brax.envs``, imported on first use.

    MuJoCo's ``mjx`` prints a line to stdout when the optional ``warp`` package is absent;
    that line is swallowed so a ``purerl`` command's output stays clean.

    Raises:
        BraxNotInstalledError: "brax is not installed: pip install 'purerl[brax]'" (an
            ``ImportError`` and a ``ValueError``).
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import brax.envs as brax_envs
    except ImportError as error:
        raise BraxNotInstalledError(_MISSING) from error
    return brax_envs


def brax_env_names() -> list[str]:
    """Names Brax's registry offers (``ant``, ``halfcheetah``, ``inverted_pendulum``, …),
    without the ``brax:`` prefix; ``ImportError`` without brax."""
    registry = getattr(import_brax_envs(), "_envs", {})
    return sorted(set(registry) - _EXCLUDED)


@functools.cache
def _raw_env(name: str, backend: str) -> Any:
    """One Brax env per (name, backend): loading the MJCF model is slow, and reusing the object
    keeps every ``make`` of the same id the same static value under ``jit``. Built eagerly
    even inside a trace (an algorithm's jitted ``init``), so no tracer lands in the cache."""
    brax_envs = import_brax_envs()
    with jax.ensure_compile_time_eval():
        return brax_envs.get_environment(name, backend=backend)


def _brax_numpy() -> Any:
    """Brax's physics broadcasts arrays of different ranks on purpose: allow it inside Brax's
    calls even where a caller (purerl's tests) sets ``jax_numpy_rank_promotion="raise"``."""
    return jax.numpy_rank_promotion("allow")


# Like gymnax's own records, params and state are flax dataclasses that JAX rebuilds with
# traced or batched leaves, so their annotations are documentation, not runtime checks.
@no_type_check
@struct.dataclass
class BraxEnvParams(environment.EnvParams):
    """Parameters of a ``BraxEnv`` (leaves, so they can be vmapped or set in an id:
    ``brax:ant?max_steps_in_episode=500``).

    - ``max_steps_in_episode`` [1000]: the time limit; reaching it truncates the episode.
    """

    max_steps_in_episode: Int[ArrayLike, "..."] = 1000


@no_type_check
@struct.dataclass
class BraxEnvState:
    """The Brax ``State`` of one env (physics, observation, reward, done, metrics) and
    ``time``, the steps taken in the current episode."""

    brax_state: Any
    time: Int[ArrayLike, "..."]


class BraxEnv:
    """A raw Brax environment with gymnax 1.x's interface, auto-reset and time limit.

    ``reset(key, params) -> (obs, state)`` and
    ``step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)``
    act on one env (``VecEnv`` vmaps them). Actions live in ``Box(-1, 1, (action_size,))``
    (Brax scales them to the actuators' ranges). When an episode ends, ``step`` returns the
    first observation of a fresh episode (reset with a key split from the step key) and the
    true last one in ``info["final_observation"]``. ``backend`` picks Brax's physics pipeline
    (``BACKENDS``; default ``DEFAULT_BACKEND``, or ``FALLBACK_BACKEND`` where unsupported).

    Example:
        >>> env = BraxEnv("inverted_pendulum")
        >>> obs, state = env.reset(key, env.default_params)
        >>> obs, state, reward, terminated, truncated, info = env.step(
        ...     key, state, jnp.zeros(1), env.default_params)

    Raises:
        BraxNotInstalledError: brax is not installed (an ``ImportError``).
        ValueError: an unknown Brax env name or backend.
    """

    def __init__(self, name: str, backend: str | None = None):
        if backend is not None and backend not in BACKENDS:
            raise ValueError(f"brax: backend must be one of {list(BACKENDS)}, got {backend!r}")
        names = brax_env_names()
        if name not in names:
            raise ValueError(f"brax: unknown environment {name!r}; Brax offers {names}")
        if backend is None:
            try:
                brax_env, backend = _raw_env(name, DEFAULT_BACKEND), DEFAULT_BACKEND
            except ValueError:  # Brax: "Unsupported backend"
                brax_env, backend = _raw_env(name, FALLBACK_BACKEND), FALLBACK_BACKEND
        else:
            try:
                brax_env = _raw_env(name, backend)
            except ValueError as error:
                raise ValueError(f"brax: {name} with backend {backend!r}: {error}") from error
        self.env_name = name
        self.backend = backend
        """The physics pipeline in use (``DEFAULT_BACKEND`` unless asked or unsupported)."""
        self.brax_env = brax_env
        """The raw Brax env (``brax.envs.Env``) this adapter steps."""

    # Equal (and equally hashed) when built from the same name and backend, so that a static
    # ``VecEnv`` over a ``BraxEnv`` hits jit's cache whenever the same id is made again.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BraxEnv):
            return NotImplemented
        return (self.env_name, self.backend) == (other.env_name, other.backend)

    def __hash__(self) -> int:
        return hash((BraxEnv, self.env_name, self.backend))

    def __repr__(self) -> str:
        return f"BraxEnv({self.env_name!r}, backend={self.backend!r})"

    @property
    def name(self) -> str:
        """The id this env is made from, e.g. ``"brax:inverted_pendulum"``."""
        return PREFIX + self.env_name

    @property
    def default_params(self) -> BraxEnvParams:
        """A 1000-step time limit (Brax's and MuJoCo's usual episode length)."""
        return BraxEnvParams()

    @property
    def num_actions(self) -> int:
        """Size of the action vector."""
        return int(self.brax_env.action_size)

    def observation_space(self, params: Any = None) -> spaces.Box:
        """Unbounded float32 vectors of Brax's ``observation_size``."""
        size = int(self.brax_env.observation_size)
        return spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)

    def action_space(self, params: Any = None) -> spaces.Box:
        """``Box(-1, 1, (action_size,))``: Brax maps [-1, 1] onto each actuator's range."""
        return spaces.Box(-1.0, 1.0, (self.num_actions,), jnp.float32)

    def reset(self, key: PRNGKeyArray, params: Any = None) -> tuple[Array, BraxEnvState]:
        """Start an episode: ``(obs, state)``."""
        brax_state = self._brax_reset(key)
        return brax_state.obs, BraxEnvState(brax_state=brax_state, time=jnp.int32(0))

    def step(
        self,
        key: PRNGKeyArray,
        state: BraxEnvState,
        action: ArrayLike,
        params: Any = None,
    ) -> tuple[Array, BraxEnvState, Array, Array, Array, dict[str, Any]]:
        """One step, with auto-reset: ``(obs, state, reward, terminated, truncated, info)``.

        ``terminated`` is Brax's ``done``; ``truncated`` is the time limit reached by an episode
        that did not terminate. ``info["final_observation"]`` is the observation the step
        reached (the pre-reset one when the episode ended), and ``info`` also carries Brax's
        per-step ``metrics`` (e.g. ``reward_forward`` of ``ant``).
        """
        params = self.default_params if params is None else params
        action = jnp.asarray(action, jnp.float32).reshape((self.num_actions,))
        with _brax_numpy():
            stepped = self._normalize(self.brax_env.step(state.brax_state, action))
        time = state.time + 1
        terminated = stepped.done.astype(bool)
        truncated = (time >= params.max_steps_in_episode) & ~terminated
        done = terminated | truncated

        fresh = self._brax_reset(jax.random.split(key)[1])
        next_brax = jax.tree.map(lambda r, s: jnp.where(done, r, s), fresh, stepped)
        next_state = BraxEnvState(brax_state=next_brax, time=jnp.where(done, 0, time))
        info = {
            **stepped.metrics,
            "terminated": terminated,
            "truncated": truncated,
            "final_observation": stepped.obs,
        }
        return next_brax.obs, next_state, stepped.reward, terminated, truncated, info

    def _brax_reset(self, key: PRNGKeyArray) -> Any:
        with _brax_numpy():
            return self._normalize(self.brax_env.reset(key))

    def _normalize(self, brax_state: Any) -> Any:
        """Fixed dtypes for the fields purerl reads (Brax returns Python floats for some
        rewards and floats for ``done``), so reset and step states line up leaf by leaf."""
        return brax_state.replace(
            obs=jnp.asarray(brax_state.obs, jnp.float32),
            reward=jnp.asarray(brax_state.reward, jnp.float32),
            done=jnp.asarray(brax_state.done, jnp.float32),
        )


def as_brax_name(env_id: str) -> str | None:
    """``"brax:ant"`` → ``"ant"``; ``None`` for an id without the ``brax:`` prefix."""
    return env_id[len(PREFIX) :] if env_id.startswith(PREFIX) else None
