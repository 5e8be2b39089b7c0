"""Discrete observations for tabular methods: which row of a Q-table an observation is.

``tabular_states(env, params)`` returns ``(num_states, state_index)`` with
``state_index(obs) -> int`` for one observation (``vmap`` it over a batch). Supported:

* ``RobotInRoom-v0`` (purerl): the observation is the one-hot of the cell ``[12]``; the
  index is the cell ``4(y − 1) + (x − 1)``, 12 states.
* any env whose observation space is ``spaces.Discrete(n)``, e.g. ``FrozenLake-misc``: the
  observation is the integer itself, ``n`` states (16 on the 4×4 lake).
* ``DeepSea-bsuite`` (size ``N``): the observation is the one-hot of ``(row, column)``
  ``[N, N]``; the index is ``N·row + column``, ``N²`` states.
* ``FourRooms-misc`` (without ``use_visual_obs``): the observation is ``[y, x, goal_y,
  goal_x]`` on the 13×13 map; the index is ``13·y + x + 169·(13·goal_y + goal_x)``, 169²
  states.

Notes. DeepSea's observation after its last row is all zeros; it maps to 0 but is only ever
seen as the final observation of a terminated episode, whose value is never bootstrapped.
FourRooms' index includes the goal so that resampled goals stay Markov; with the default fixed
goal only the rows of the 104 open cells for that goal are ever visited. Environments not
listed here raise a ``ValueError``: a tabular method needs finitely many, indexable
observations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from gymnax.environments import spaces
from jaxtyping import Array, ArrayLike, Int

__all__ = ["tabular_states"]

StateIndex = Callable[[ArrayLike], Int[Array, ""]]


def _flat_argmax(obs: ArrayLike) -> Int[Array, ""]:
    return jnp.argmax(jnp.reshape(obs, (-1,))).astype(jnp.int32)


def _four_rooms_index(obs: ArrayLike) -> Int[Array, ""]:
    y, x, gy, gx = (jnp.asarray(obs[i], jnp.int32) for i in range(4))
    return 13 * y + x + 169 * (13 * gy + gx)


def _int_obs(obs: ArrayLike) -> Int[Array, ""]:
    return jnp.reshape(jnp.asarray(obs, jnp.int32), ())


def tabular_states(env: Any, params: Any) -> tuple[int, StateIndex]:
    """``(num_states, state_index)`` for an environment with finitely many observations.

    Args:
        env: a gymnax environment (as made by ``purerl.envs.make``).
        params: its parameters.

    Returns:
        The number of Q-table rows and a jit/vmap-friendly map from one observation to its row.

    Raises:
        ValueError: ``env_id: ...`` for an environment without a known finite state index.

    Example:
        >>> env, params = purerl.envs.make("FrozenLake-misc")
        >>> n, index = tabular_states(env, params)   # 16, obs -> obs
    """
    if hasattr(env, "state_index") and hasattr(env, "num_states"):
        return int(env.num_states), env.state_index
    space = env.observation_space(params)
    if isinstance(space, spaces.Discrete):
        return int(space.n), _int_obs
    if env.name == "DeepSea-bsuite":
        return int(env.size) ** 2, _flat_argmax
    if env.name == "FourRooms-misc" and not env.use_visual_obs:
        return 169 * 169, _four_rooms_index
    shape = getattr(space, "shape", None)
    raise ValueError(
        f"env_id: {env.name} has observations of shape {shape} that are not a finite set of "
        "states; tabular methods need RobotInRoom-v0, FrozenLake-misc, DeepSea-bsuite, "
        "FourRooms-misc or an environment with a Discrete observation space"
    )
