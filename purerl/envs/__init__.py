"""L2: the one adapter over gymnax, plus purerl's own environments.

``make(env_id)`` returns a gymnax environment and its params (purerl's probe environments
included, the course environments ``RobotInRoom-v0`` and ``Inventory-v0``, and the board games
``TicTacToe-v0`` and ``ConnectFour-v0`` against an opponent, ``make(id, opponent="random" |
"perfect" | function)``, see ``purerl.envs.games``), or, for an id
``brax:NAME`` and with the optional ``purerl[brax]`` extra, a Brax physics environment behind
the same interface (``purerl.envs.brax_env``); ``gymnasium:ID`` and ``atari:GAME`` name host
environments (``purerl.envs.host``, the optional ``purerl[gymnasium]`` / ``[box2d]`` /
``[atari]`` extras), trained through the actor–learner loop.
``tabular_states`` maps the observations of a discrete-state environment to Q-table rows.
``VecEnv`` runs ``num_envs`` copies with auto-reset and returns a ``Timestep`` that keeps
``terminated`` and ``truncated`` apart and carries the true final observation of an
episode that just ended, so a time-limit truncation can bootstrap from it. This module is the
only place that knows gymnax's ``step`` signature.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, NamedTuple

import equinox as eqx
import gymnax
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

from purerl.envs import brax_env, games, gridworld, host, inventory, memory, probes, text
from purerl.envs.discrete import tabular_states
from purerl.envs.gridworld import RobotInRoom
from purerl.envs.inventory import Inventory
from purerl.policies import clip_action
from purerl.types import Timestep, Transition

__all__ = [
    "make",
    "check_env_id",
    "split_env_id",
    "registered",
    "VecEnv",
    "VecEnvState",
    "ActionSpec",
    "to_transition",
    "tabular_states",
    "RobotInRoom",
    "Inventory",
]

_PURERL_ENVS = {
    **probes.PROBES,
    **gridworld.ENVS,
    **inventory.ENVS,
    **memory.ENVS,
    **games.ENVS,
    **text.ENVS,
}


def registered() -> list[str]:
    """All environment ids ``make`` accepts (gymnax's and purerl's own, and ``brax:NAME`` for
    Brax's environments when brax is installed; brax is not imported when it is absent)."""
    ids = {*gymnax.registered_envs, *_PURERL_ENVS}
    if brax_env.brax_available():
        try:
            ids.update(brax_env.PREFIX + name for name in brax_env.brax_env_names())
        except ImportError:  # installed but broken: make("brax:...") says so
            pass
    return sorted(ids)


def _check_brax_id(env_id: str, name: str, changes: dict[str, int | float]) -> None:
    """``check_env_id`` for ``brax:NAME`` (imports brax; ``BraxNotInstalledError`` without)."""
    names = brax_env.brax_env_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(repr(brax_env.PREFIX + c) for c in close)}?"
        raise ValueError(
            f"env: unknown Brax environment {env_id!r}.{hint if close else ''} "
            f"Brax offers {[brax_env.PREFIX + n for n in names]}."
        )
    _with_params(brax_env.BraxEnvParams(), changes, env_id)


def split_env_id(env_id: str) -> tuple[str, dict[str, int | float]]:
    """``"MemoryChain-bsuite?memory_length=10"`` → ``("MemoryChain-bsuite", {"memory_length":
    10})``: an id may end in ``?name=value&name=value`` setting fields of the environment's
    params (numbers only). The id alone comes back with ``{}``.

    Raises:
        ValueError: a malformed ``name=value`` or a value that is not a finite number.
    """
    base, _, query = str(env_id).partition("?")
    if not _:
        return base, {}
    changes: dict[str, int | float] = {}
    for item in query.split("&"):
        name, eq, text = item.partition("=")
        if not eq or not name.isidentifier():
            raise ValueError(f"env: expected ID?name=value&..., got {env_id!r}")
        try:
            value: int | float = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"env: parameter {name} must be a finite number, got {text!r}")
        changes[name] = value
    return base, changes


def _with_params(params: Any, changes: dict[str, int | float], env_id: str) -> Any:
    known = [f.name for f in dataclasses.fields(params)] if dataclasses.is_dataclass(params) else []
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ValueError(
            f"env: {env_id.partition('?')[0]} has no parameter {', '.join(unknown)}; "
            f"its parameters are {known}"
        )
    return params.replace(**changes) if changes else params


def check_env_id(env_id: str) -> None:
    """Raise ``ValueError`` for an unknown environment id, naming the closest known ids (an id
    may set environment parameters: ``ID?name=value``, see ``split_env_id``).

    Raises:
        ValueError: an unknown id (or parameter name).
        brax_env.BraxNotInstalledError: a ``brax:NAME`` id without brax installed (an
            ``ImportError`` and a ``ValueError``: "brax is not installed: pip install
            'purerl[brax]'").
    """
    if host.is_host_id(env_id):
        host.check_host_id(env_id)
        return
    env_id, changes = split_env_id(env_id)
    brax_name = brax_env.as_brax_name(env_id)
    if brax_name is not None:
        _check_brax_id(env_id, brax_name, changes)
        return
    if env_id in _PURERL_ENVS or env_id in gymnax.registered_envs:
        if changes:  # build the params: names an unknown field
            _with_params(make(env_id)[1], changes, env_id)
        return
    close = difflib.get_close_matches(str(env_id), registered(), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(f"env: unknown environment id {env_id!r}.{hint} See purerl.envs.registered().")


def make(env_id: str, **env_kwargs: Any) -> tuple[Any, Any]:
    """Build an environment by id: ``(env, env_params)``. ``ID?name=value&...`` sets fields
    of the params (e.g. ``"MemoryChain-bsuite?memory_length=10"``).

    ``env_kwargs`` go to the environment's constructor: e.g. a board game's opponent,
    ``make("TicTacToe-v0", opponent="perfect")`` (``purerl.envs.games.GameEnv``).

    ``"gymnasium:ID"`` / ``"atari:GAME"`` (host environments, ``purerl.envs.host``) give a
    ``host.HostSpecEnv``: the spaces only; such envs are stepped on the host by the
    actor–learner loop (``purerl.run``), not in compiled code.

    ``"brax:NAME"`` builds a ``brax_env.BraxEnv`` (``env_kwargs``: ``backend=``, one of
    ``brax_env.BACKENDS``), e.g. ``make("brax:ant?max_steps_in_episode=500")``.

    Raises:
        ValueError: for an unknown id, naming the closest known ids.
        brax_env.BraxNotInstalledError: a ``brax:NAME`` id without brax installed.
    """
    check_env_id(env_id)
    if host.is_host_id(env_id):
        env = host.HostSpecEnv(env_id)
        return env, env.default_params
    base, changes = split_env_id(env_id)
    brax_name = brax_env.as_brax_name(base)
    if brax_name is not None:
        env = brax_env.BraxEnv(brax_name, **env_kwargs)
        params = env.default_params
    elif base in _PURERL_ENVS:
        env = _PURERL_ENVS[base](**env_kwargs)
        params = env.default_params
    else:
        # Some constructors compute with jnp in Python control flow (FourRooms-misc): run them
        # eagerly even when ``make`` is called inside a trace (an algorithm's jitted ``init``).
        with jax.ensure_compile_time_eval():
            env, params = gymnax.make(base, **env_kwargs)
    return env, _with_params(params, changes, env_id)


class VecEnvState(eqx.Module):
    """State of ``num_envs`` environments plus running episode statistics."""

    env_state: Any
    obs: Array
    episode_return: Float[Array, " n"]
    episode_length: Int[Array, " n"]

    @property
    def first(self) -> Bool[Array, " n"]:
        """``obs`` is the first observation of an episode (where a recurrent agent resets)."""
        return self.episode_length == 0


class ActionSpec(NamedTuple):
    """What actions an env takes: ``size`` discrete actions, or a box of ``size`` floats
    between ``low`` and ``high`` (``None`` for discrete)."""

    discrete: bool
    size: int
    low: Array | None = None
    high: Array | None = None


class VecEnv(eqx.Module):
    """``num_envs`` copies of a gymnax environment (or a ``brax_env.BraxEnv``) stepped in
    lock-step with auto-reset.

    Example:
        >>> env = VecEnv.make("CartPole-v1", num_envs=8)
        >>> state = env.reset(key)
        >>> state, ts = env.step(key, state, actions)   # ts.terminated, ts.truncated, ts.final_obs
    """

    env: Any = eqx.field(static=True)
    params: Any
    num_envs: int = eqx.field(static=True)

    @classmethod
    def make(cls, env_id: str, num_envs: int = 1, **env_kwargs: Any) -> VecEnv:
        """``VecEnv`` over ``make(env_id, **env_kwargs)``."""
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        env, params = make(env_id, **env_kwargs)
        return cls(env=env, params=params, num_envs=int(num_envs))

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of one observation."""
        return tuple(self.env.observation_space(self.params).shape)

    @property
    def num_actions(self) -> int:
        """Number of discrete actions (``ValueError`` for a continuous action space)."""
        space = self.env.action_space(self.params)
        if not hasattr(space, "n"):
            raise ValueError(
                f"env: {self.env.name} has a continuous action space, not a discrete one"
            )
        return int(space.n)

    @property
    def action_dim(self) -> int:
        """Number of discrete actions, or the size of a continuous action vector."""
        space = self.env.action_space(self.params)
        if hasattr(space, "n"):
            return int(space.n)
        return int(space.shape[0]) if len(space.shape) else 1

    @property
    def action_bounds(self) -> tuple[Array, Array]:
        """``(low, high)`` of a continuous action space, as float arrays ``[action_dim]``."""
        space = self.env.action_space(self.params)
        if hasattr(space, "n"):
            raise ValueError(f"env: {self.env.name} has a discrete action space, not a box")
        shape = (self.action_dim,)
        low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), shape)
        return low, jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), shape)

    @property
    def action_spec(self) -> ActionSpec:
        """The action space as an ``ActionSpec`` (what a network factory is given)."""
        if self.is_discrete:
            return ActionSpec(True, self.action_dim)
        return ActionSpec(False, self.action_dim, *self.action_bounds)

    @property
    def is_discrete(self) -> bool:
        """Whether the action space is discrete."""
        return hasattr(self.env.action_space(self.params), "n")

    def reset(self, key: PRNGKeyArray) -> VecEnvState:
        """Reset every copy (one key each)."""
        keys = jax.random.split(key, self.num_envs)
        obs, env_state = jax.vmap(self.env.reset, in_axes=(0, None))(keys, self.params)
        zeros = jnp.zeros((self.num_envs,), jnp.float32)
        return VecEnvState(env_state, obs, zeros, jnp.zeros((self.num_envs,), jnp.int32))

    def step(
        self, key: PRNGKeyArray, state: VecEnvState, action: ArrayLike
    ) -> tuple[VecEnvState, Timestep]:
        """Step every copy; finished copies reset, their last observation kept in ``final_obs``.

        Continuous actions are clipped into the action box here, the one place that does it
        (a Gaussian policy's raw sample can leave it; learners keep the raw sample).
        """
        if not self.is_discrete:
            low, high = self.action_bounds
            action = clip_action(action, low, high)
        keys = jax.random.split(key, self.num_envs)
        obs, env_state, reward, terminated, truncated, info = jax.vmap(
            self.env.step, in_axes=(0, 0, 0, None)
        )(keys, state.env_state, action, self.params)
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.asarray(truncated, bool) & ~terminated
        done = terminated | truncated
        ep_return = state.episode_return + reward
        ep_length = state.episode_length + 1
        ts = Timestep(
            obs=obs,
            reward=reward,
            terminated=terminated,
            truncated=truncated,
            final_obs=info["final_observation"],
            episode_return=ep_return,
            episode_length=ep_length,
        )
        new_state = VecEnvState(
            env_state=env_state,
            obs=obs,
            episode_return=jnp.where(done, 0.0, ep_return),
            episode_length=jnp.where(done, 0, ep_length),
        )
        return new_state, ts


def to_transition(obs: Array, action: Array, ts: Timestep) -> Transition:
    """The ``Transition`` for acting ``action`` in ``obs``: discount ``1 − terminated``,
    ``next_obs`` the true final observation (so truncation bootstraps from it)."""
    return Transition(
        obs=obs,
        action=action,
        reward=ts.reward,
        discount=1.0 - ts.terminated.astype(jnp.float32),
        next_obs=ts.final_obs,
    )
