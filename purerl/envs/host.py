"""L2: environments that run on the host, not inside the compiled loop: Gymnasium (and
Atari through Gymnasium's own preprocessing wrappers), reached by id everywhere an env id is
accepted.

- ``gymnasium:ID`` — any registered Gymnasium environment, e.g. ``gymnasium:CartPole-v1``,
  ``gymnasium:LunarLander-v3`` (needs ``purerl[box2d]``). ``ID?name=value`` passes keyword
  arguments to ``gymnasium.make`` (numbers only), e.g. ``gymnasium:LunarLander-v3?continuous=1``.
- ``atari:GAME`` — ``ALE/GAME-v5`` with the Nature-DQN preprocessing (Mnih et al., 2015):
  no frame skip inside ALE, then ``gymnasium.wrappers.AtariPreprocessing`` (up to 30 no-op
  starts, frame skip 4 with max-pooling, 84×84 grey) and ``FrameStackObservation`` (4 frames),
  observations ``[84, 84, 4]`` uint8 (channels last, what purerl's CNNs take). Options through
  the id: ``clip_rewards=1`` (sign of the reward), ``sticky=0.25`` (ALE's repeat-action
  probability; default 0), ``frame_skip``, ``noop_max``, ``frame_stack``, ``max_frames``
  (episodes are truncated after that many emulator frames; default ALE's 108,000, 30 minutes
  of play: lower it when a greedy policy may stall, as one that never presses FIRE in
  Breakout does), e.g. ``atari:Pong?clip_rewards=1``. Needs ``purerl[atari]`` (ale-py with
  its ROMs, OpenCV for the resizing). Episodic life is not offered: Gymnasium's
  ``terminal_on_life_loss`` resets the whole game after a lost life (so an agent would never
  play past its first life), not the Nature-DQN "end the episode for learning, play on" of
  the paper (EnvPool's ``episodic_life`` is that, below).
- ``envpool:TASK`` — an EnvPool task (``envpool.list_all_envs()``: ``envpool:Pong-v5``,
  ``envpool:CartPole-v1``, MuJoCo ...), its C++ copies stepped in EnvPool's own threads.
  ``?name=value`` goes to ``envpool.make_gymnasium`` (its Atari preprocessing is built in:
  ``episodic_life``, ``reward_clip``, ``stack_num``, ``noop_max``, ...); image observations
  come channels last. EnvPool's next-step auto-reset is turned into same-step auto-reset
  (``_EnvPoolVector``). With ``episodic_life=1`` a lost life ends an episode for learning
  while the game plays on, so returns and evaluations count one life, not one game. Needs
  ``purerl[envpool]`` (Linux wheels).

Two halves, because the compiled algorithms and the host loop need different things:

- ``HostSpecEnv``: what ``envs.make`` returns for a host id — the spaces only, behind the gymnax
  interface, so an algorithm's ``init`` builds its networks and buffers unchanged. Its ``step``
  refuses: host environments are stepped by the actor–learner loop
  (``purerl.experiment.actor_learner``), never inside ``jit``.
- ``HostVecEnv``: ``num_envs`` copies on the host (``gymnasium.make_vec``, in this process or
  one subprocess each with ``asynchronous=True``), NumPy in and out, with the semantics of
  purerl's ``VecEnv``: same-step auto-reset (Gymnasium's ``AutoresetMode.SAME_STEP``: the
  observation returned where an episode ended is already the next episode's first one, and the
  true last observation comes back as ``final_obs``), ``terminated`` and ``truncated`` kept
  apart (a time-limit cut is ``truncated`` only, so learners bootstrap from ``final_obs``), and
  running episode returns and lengths.

Gymnasium is an optional extra: nothing here imports it before a host id is used, and a
missing package raises ``HostNotInstalledError`` naming the ``pip install`` to run.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

__all__ = [
    "PREFIXES",
    "HostNotInstalledError",
    "HostSpecEnv",
    "HostStep",
    "HostVecEnv",
    "is_host_id",
    "check_host_id",
]

PREFIXES = ("gymnasium:", "atari:", "envpool:")
"""Env ids starting with one of these are host environments."""

# Gymnasium's entry points → the purerl extra that installs what they need
_EXTRA_OF_ENTRY_POINT = {"box2d": "box2d", "ale_py": "atari", "mujoco": "mujoco"}
# EnvPool's own options that purerl sets: seeds come from ``reset(seeds)``, and the copies
# from ``num_envs``
_ENVPOOL_RESERVED = ("num_envs", "batch_size", "seed")

# atari:GAME options (id query) and their defaults: the Nature-DQN preprocessing
_ATARI_OPTIONS = {
    "clip_rewards": 0,
    "sticky": 0.0,
    "frame_skip": 4,
    "noop_max": 30,
    "frame_stack": 4,
    "max_frames": 108_000,  # ALE's own cap: 30 minutes of play, then truncated
}


class HostNotInstalledError(ImportError, ValueError):
    """A package a host env needs is missing. An ``ImportError`` and a ``ValueError`` (so the
    ``purerl`` command reports it as bad input, one line and exit status 2)."""


def is_host_id(env_id: str) -> bool:
    """Whether ``env_id`` names a host environment (``gymnasium:...``, ``atari:...`` or
    ``envpool:...``)."""
    return isinstance(env_id, str) and env_id.startswith(PREFIXES)


def _missing(extra: str, what: str) -> HostNotInstalledError:
    return HostNotInstalledError(f"env: {what} is not installed: pip install 'purerl[{extra}]'")


def _gymnasium() -> Any:
    try:
        return importlib.import_module("gymnasium")
    except ImportError:
        raise _missing("gymnasium", "gymnasium") from None


def _envpool() -> Any:
    try:
        return importlib.import_module("envpool")
    except ImportError:
        raise _missing("envpool", "envpool") from None


def _register_ale(gym: Any) -> None:
    try:
        ale_py = importlib.import_module("ale_py")
    except ImportError:
        raise _missing("atari", "ale-py (the Arcade Learning Environment)") from None
    gym.register_envs(ale_py)


class _Target(NamedTuple):
    """What a host id means: the Gymnasium (or EnvPool) id, ``make`` kwargs, Atari options
    (or ``None``), and which library steps it."""

    gym_id: str
    kwargs: tuple[tuple[str, Any], ...]
    atari: tuple[tuple[str, Any], ...] | None
    source: str = "gymnasium"


def _parse(env_id: str) -> _Target:
    from purerl.envs import split_env_id  # the one parser of ``ID?name=value``

    base, changes = split_env_id(env_id)
    if base.startswith("atari:"):
        game = base[len("atari:") :]
        unknown = sorted(set(changes) - set(_ATARI_OPTIONS))
        if unknown:
            raise ValueError(
                f"env: {base} has no option {', '.join(unknown)}; its options are "
                f"{sorted(_ATARI_OPTIONS)}"
            )
        name = game if "/" in game else f"ALE/{game}"
        name = name if name.rsplit("-", 1)[-1].startswith("v") else f"{name}-v5"
        return _Target(name, (), tuple(sorted({**_ATARI_OPTIONS, **changes}.items())))
    if base.startswith("envpool:"):
        reserved = sorted(set(changes) & set(_ENVPOOL_RESERVED))
        if reserved:
            raise ValueError(
                f"env: {base}: {', '.join(reserved)} cannot be set in the id (purerl sets the "
                "copies from num_envs and the seeds from the run's keys)"
            )
        return _Target(base[len("envpool:") :], tuple(sorted(changes.items())), None, "envpool")
    return _Target(base[len("gymnasium:") :], tuple(sorted(changes.items())), None)


def _extra_for(spec: Any) -> str | None:
    entry = str(getattr(spec, "entry_point", ""))
    return next((extra for key, extra in _EXTRA_OF_ENTRY_POINT.items() if key in entry), None)


def check_host_id(env_id: str) -> None:
    """``ValueError`` for an unknown host id (close ids suggested) or a bad option;
    ``HostNotInstalledError`` when gymnasium, Box2D or ale-py is missing, naming the extra.
    Builds the environment once (cached) to read its spaces."""
    _spaces(env_id)


def _lookup_envpool(target: _Target, env_id: str) -> None:
    known = _envpool().list_all_envs()
    if target.gym_id not in known:
        close = difflib.get_close_matches(target.gym_id, known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr('envpool:' + c) for c in close)}?" if close else ""
        raise ValueError(
            f"env: unknown EnvPool task {env_id!r}.{hint} (ids after 'envpool:' are "
            "EnvPool's: envpool.list_all_envs())"
        )


def _make_envpool(target: _Target, num_envs: int, seed: int) -> Any:
    """``num_envs`` EnvPool copies (EnvPool seeds copy ``i`` with ``seed + i``)."""
    return _envpool().make_gymnasium(
        target.gym_id, num_envs=num_envs, seed=int(seed), **dict(target.kwargs)
    )


def _lookup(gym: Any, target: _Target, env_id: str) -> Any:
    if target.gym_id.startswith("ALE/"):
        _register_ale(gym)
    try:
        return gym.spec(target.gym_id)
    except gym.error.Error:
        ids = list(gym.registry)
        close = difflib.get_close_matches(target.gym_id, ids, n=3, cutoff=0.5)
        prefix = env_id.split(":", 1)[0] + ":"
        hint = f" Did you mean {', '.join(repr('gymnasium:' + c) for c in close)}?" if close else ""
        raise ValueError(
            f"env: unknown Gymnasium environment {env_id!r}.{hint} "
            f"(ids after {prefix!r} are Gymnasium's: gymnasium.registry)"
        ) from None


def _make_one(target: _Target) -> Any:
    """One environment with the wrappers the id asks for (what ``make_vec`` builds N of)."""
    gym = _gymnasium()
    if target.atari is None:
        return gym.make(target.gym_id, **dict(target.kwargs))
    o = dict(target.atari)
    env = gym.make(
        target.gym_id,
        frameskip=1,
        repeat_action_probability=float(o["sticky"]),
        max_num_frames_per_episode=int(o["max_frames"]),
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=int(o["noop_max"]),
        frame_skip=int(o["frame_skip"]),
        screen_size=84,
        terminal_on_life_loss=False,
        grayscale_obs=True,
        scale_obs=False,
    )
    env = gym.wrappers.FrameStackObservation(env, int(o["frame_stack"]))
    if o["clip_rewards"]:
        env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))
    return env


def _channels_last(target: _Target, obs_shape: tuple[int, ...]) -> bool:
    """Whether observations come channels first and are moved last: Atari's frame stack is
    ``[4, 84, 84]`` (Gymnasium's wrappers and EnvPool's alike), purerl's CNNs take
    ``[H, W, C]``. For EnvPool: any image ``[C, H, W]`` with fewer channels than rows and
    columns."""
    if target.atari is not None:
        return True
    shape = tuple(obs_shape)
    return target.source == "envpool" and len(shape) == 3 and shape[0] < min(shape[1:])


def _spaces(env_id: str) -> tuple[Any, Any]:
    """``(observation_space, action_space)`` of one copy, as gymnax spaces (checked ids only)."""
    return _described(env_id)[:2]


def _layout(env_id: str) -> bool:
    """Whether the env's observations are moved from channels first to channels last."""
    return _described(env_id)[2]


@functools.lru_cache(maxsize=64)
def _described(env_id: str) -> tuple[Any, Any, bool]:
    """Spaces (``_spaces``) and layout (``_layout``) of one copy, read by making it once."""
    gym = _gymnasium()
    target = _parse(env_id)
    if target.source == "envpool":
        _lookup_envpool(target, env_id)
        try:
            env = _make_envpool(target, 1, 0)
        except (TypeError, ValueError, RuntimeError) as e:  # e.g. an unknown option
            raise ValueError(f"env: {env_id}: {e}") from None
        obs_space, action_space = env.observation_space, env.action_space
        env.close()
    else:
        obs_space, action_space = _gymnasium_spaces(gym, target, env_id)
    move = _channels_last(target, tuple(getattr(obs_space, "shape", None) or ()))
    obs = _to_gymnax(obs_space, move, env_id)
    return obs, _to_gymnax(action_space, False, env_id), move


def _gymnasium_spaces(gym: Any, target: _Target, env_id: str) -> tuple[Any, Any]:
    spec = _lookup(gym, target, env_id)
    try:
        env = _make_one(target)
    except gym.error.DependencyNotInstalled as e:
        extra = _extra_for(spec)
        if extra is None:
            raise ValueError(f"env: {env_id}: {e}") from None
        raise _missing(extra, f"what {env_id} needs ({e})") from None
    except TypeError as e:  # an unknown keyword from the id's query
        raise ValueError(f"env: {env_id}: {e}") from None
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def _to_gymnax(space: Any, channels_last: bool, env_id: str) -> Any:
    if hasattr(space, "n"):
        return spaces.Discrete(int(space.n))
    shape = getattr(space, "shape", None)
    if shape is None or not hasattr(space, "low"):
        raise ValueError(
            f"env: {env_id} has a {type(space).__name__} space; purerl takes Box and "
            "Discrete spaces"
        )
    low, high = np.asarray(space.low), np.asarray(space.high)
    if channels_last and len(shape) == 3:
        low, high, shape = np.moveaxis(low, 0, -1), np.moveaxis(high, 0, -1), (*shape[1:], shape[0])
    return spaces.Box(low, high, tuple(shape), space.dtype)


@struct.dataclass
class HostParams:
    """Host environments have no JAX-side parameters (``make`` kwargs go in the id)."""


@dataclasses.dataclass(frozen=True)
class HostSpecEnv:
    """The spaces of a host environment behind the gymnax interface (what ``envs.make`` and
    ``VecEnv`` hold for a host id). ``reset`` gives zero observations of the right shape
    (placeholders: an algorithm's state is built unchanged); ``step`` refuses — host envs are
    stepped by the actor–learner loop, on the host."""

    env_id: str

    @property
    def name(self) -> str:
        """The host id."""
        return self.env_id

    @property
    def default_params(self) -> HostParams:
        """No JAX-side parameters."""
        return HostParams()

    def observation_space(self, params: Any = None) -> Any:
        """One copy's observation space (a gymnax ``Box``; images channels last)."""
        return _spaces(self.env_id)[0]

    def action_space(self, params: Any = None) -> Any:
        """One copy's action space (a gymnax ``Discrete`` or ``Box``)."""
        return _spaces(self.env_id)[1]

    def reset(self, key: Any, params: Any = None) -> tuple[Any, Any]:
        """Zero observations (placeholders for building an agent's state) and no state."""
        space = self.observation_space()
        return jnp.zeros(space.shape, space.dtype), jnp.zeros((), jnp.int32)

    def step(self, *args: Any, **kwargs: Any) -> Any:
        """Refused: host environments step on the host (``HostVecEnv``)."""
        raise ValueError(
            f"env: {self.env_id} is a host environment: it steps on the host, through the "
            "actor–learner loop (purerl.run / purerl train), not inside a compiled function"
        )


class HostStep(NamedTuple):
    """One step of a ``HostVecEnv`` (NumPy, leading axis ``[num_envs]``); the fields of
    purerl's ``Timestep``."""

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray

    @property
    def done(self) -> np.ndarray:
        """``terminated | truncated``."""
        return self.terminated | self.truncated


class _GymnasiumVector:
    """Gymnasium's vector env with same-step auto-reset: ``reset(seeds)``, ``step(actions) ->
    (obs, reward, terminated, truncated, final_obs)`` (observations as the env gives them)."""

    def __init__(self, target: _Target, num_envs: int, asynchronous: bool):
        gym = _gymnasium()
        kwargs = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        fns = [functools.partial(_make_one, target) for _ in range(num_envs)]
        vector = gym.vector.AsyncVectorEnv if asynchronous else gym.vector.SyncVectorEnv
        self.env = vector(fns, **kwargs)

    def reset(self, seeds: list[int] | None) -> np.ndarray:
        return np.asarray(self.env.reset(seed=seeds)[0])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        obs = np.asarray(obs)
        final_obs = obs.copy()
        mask = info.get("_final_obs")
        if mask is not None:
            for i in np.flatnonzero(mask):
                final_obs[i] = np.asarray(info["final_obs"][i])
        return obs, reward, terminated, truncated, final_obs

    def close(self) -> None:
        if isinstance(self.env, _gymnasium().vector.AsyncVectorEnv):
            self.env.close(terminate=True)  # end the workers now, even mid-step (Ctrl-C)
        else:
            self.env.close()


class _EnvPoolVector:
    """EnvPool's copies (stepped in its own C++ threads), turned into same-step auto-reset.

    EnvPool resets an ended episode on the *next* step (the one after the last observation
    returns the first observation of the new episode, with reward 0, and ignores its
    action). Here the copies whose episode just ended take that reset step at once (EnvPool
    steps a subset given their ``env_id``), so ``obs`` is already the new episode's first
    observation and the last one is ``final_obs``, as with Gymnasium's ``SAME_STEP``.
    EnvPool seeds copy ``i`` with ``seed + i`` from one seed, so ``reset(seeds)`` makes the
    copies again from ``seeds[0]``."""

    def __init__(self, target: _Target, num_envs: int):
        self.target, self.num_envs = target, num_envs
        self.env, self.seed = _make_envpool(target, num_envs, 0), 0

    def reset(self, seeds: list[int] | None) -> np.ndarray:
        if seeds is not None and int(seeds[0]) % 2**31 != self.seed:
            self.close()
            self.seed = int(seeds[0]) % 2**31
            self.env = _make_envpool(self.target, self.num_envs, self.seed)
        return np.asarray(self.env.reset()[0])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        ids = np.arange(self.num_envs, dtype=np.int32)
        obs, reward, terminated, truncated, info = self.env.step(actions, ids)
        obs = np.array(obs)
        final_obs = obs.copy()
        ended = np.flatnonzero(np.asarray(terminated) | np.asarray(truncated)).astype(np.int32)
        if ended.size:
            first, *_, reset_info = self.env.step(np.zeros_like(actions[ended]), ended)
            obs[np.asarray(reset_info["env_id"])] = np.asarray(first)
        return obs, reward, terminated, truncated, final_obs

    def close(self) -> None:
        env, self.env = self.env, None
        if env is not None and hasattr(env, "close"):
            env.close()


class HostVecEnv:
    """``num_envs`` copies of a host environment, stepped together with same-step auto-reset
    (see the module docstring): ``reset(seeds) -> obs``, ``step(actions) -> HostStep``,
    ``close()``. Continuous actions are clipped into the action box here, as ``VecEnv`` does.

    Args:
        env_id: a host id (``gymnasium:...``, ``atari:...``, ``envpool:...``).
        num_envs: copies.
        asynchronous: one subprocess per copy (``gymnasium.vector.AsyncVectorEnv``): env
            stepping runs in parallel, outside this process's GIL. Else all in this process.
            (EnvPool steps its copies in its own threads either way.)

    Example:
        >>> env = HostVecEnv("gymnasium:CartPole-v1", 4)
        >>> obs = env.reset([0, 1, 2, 3])
        >>> out = env.step(np.zeros(4, np.int64))   # out.terminated, out.truncated, out.final_obs
    """

    def __init__(self, env_id: str, num_envs: int, *, asynchronous: bool = False):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs: must be >= 1, got {num_envs}")
        _gymnasium()
        self.env_id, self.num_envs = env_id, int(num_envs)
        obs_space, action_space = _spaces(env_id)  # checks the id first
        self.obs_shape = tuple(obs_space.shape)
        self.discrete = hasattr(action_space, "n")
        self._low = None if self.discrete else np.asarray(action_space.low, np.float32)
        self._high = None if self.discrete else np.asarray(action_space.high, np.float32)
        target = _parse(env_id)
        self._channels_last = _layout(env_id)
        if target.source == "envpool":
            self._env: Any = _EnvPoolVector(target, self.num_envs)
        else:
            self._env = _GymnasiumVector(target, self.num_envs, bool(asynchronous))
        self.asynchronous = bool(asynchronous) and target.source != "envpool"
        self._return = np.zeros(self.num_envs, np.float32)
        self._length = np.zeros(self.num_envs, np.int32)

    def _obs(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs)
        return np.moveaxis(obs, 1, -1) if self._channels_last else obs

    def reset(self, seeds: Any = None) -> np.ndarray:
        """Start a new episode in every copy; ``seeds``: one int per copy (or ``None``)."""
        seeds = None if seeds is None else [int(s) for s in np.asarray(seeds).reshape(-1)]
        if seeds is not None and len(seeds) != self.num_envs:
            raise ValueError(f"seeds: expected {self.num_envs} seeds, got {len(seeds)}")
        obs = self._env.reset(seeds)
        self._return[:] = 0.0
        self._length[:] = 0
        return self._obs(obs)

    def step(self, actions: Any) -> HostStep:
        """Step every copy; copies whose episode ended start the next one in the same call."""
        actions = np.asarray(actions)
        if not self.discrete:
            actions = np.clip(actions.astype(np.float32), self._low, self._high)
        obs, reward, terminated, truncated, final_obs = self._env.step(actions)
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool) & ~terminated
        reward = np.asarray(reward, np.float32)
        self._return += reward
        self._length += 1
        out = HostStep(
            self._obs(obs),
            reward,
            terminated,
            truncated,
            self._obs(final_obs),
            self._return.copy(),
            self._length.copy(),
        )
        done = terminated | truncated
        self._return[done] = 0.0
        self._length[done] = 0
        return out

    def close(self) -> None:
        """Close every copy (and end their subprocesses)."""
        env, self._env = getattr(self, "_env", None), None
        if env is not None:
            env.close()

    def __enter__(self) -> HostVecEnv:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
