"""Robot in a room: the 4×3 grid world of Russell & Norvig (AIMA, 4th ed., 2021, §17.1, Fig. 17.1).

Columns ``x = 1..4`` run left to right, rows ``y = 1..3`` bottom to top::

    y=3 |  .  |  .  |  .  | +1  |
    y=2 |  .  | ### |  .  | −1  |
    y=1 |  S  |  .  |  .  |  .  |
          x=1   x=2   x=3   x=4

The robot starts at (1, 1); (2, 2) is a wall; (4, 3) and (4, 2) are terminal. Actions are
``0 = up, 1 = right, 2 = down, 3 = left``. A move goes in the intended direction with
probability ``intended_prob`` (0.8 in the book) and at right angles to it with probability
``(1 − intended_prob)/2`` each; a move into the wall or off the grid leaves the robot where it
is. ``intended_prob = 1`` makes the world deterministic.

Rewards: every step earns ``step_reward`` (−0.04 in the book), and the step that enters (4, 3)
or (4, 2) earns a further +1 or −1, after which the episode terminates. So the undiscounted
return of an episode equals the book's utility ``Σ_t R(s_t)`` with ``R(s) = step_reward`` for
non-terminal ``s`` and ``±1`` for the exits, and with ``γ = 1`` the optimal values are the book's
(``U(1, 1) = 0.705`` for −0.04, Fig. 17.3). Episodes are cut after ``max_steps_in_episode``
steps (a time-limit truncation: agents bootstrap there, it is not a terminal state).

Cells are numbered ``s = 4·(y − 1) + (x − 1)`` (0 = start, 5 = wall, 7 = −1 exit, 11 = +1
exit). The observation is the one-hot vector of ``s`` (``float32 [12]``), which a network can
read directly; ``RobotInRoom.state_index(obs)`` turns it back into ``s`` for a Q-table.
``transition_model(params)`` returns ``(P, R, terminal)`` for ``purerl.planning``.
"""

from __future__ import annotations

from typing import Any, no_type_check

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

__all__ = ["RobotInRoom", "RoomParams", "RoomState", "cell_index", "ENVS"]

WIDTH, HEIGHT = 4, 3
NUM_STATES = WIDTH * HEIGHT
NUM_ACTIONS = 4
ACTION_NAMES = ("up", "right", "down", "left")
ARROWS = ("↑", "→", "↓", "←")
_MOVES = ((0, 1), (1, 0), (0, -1), (-1, 0))  # (dx, dy) per action, clockwise


def cell_index(x: int, y: int) -> int:
    """Cell number ``4·(y − 1) + (x − 1)`` of the book's coordinates ``(x, y)``."""
    return WIDTH * (y - 1) + (x - 1)


START = cell_index(1, 1)
WALL = cell_index(2, 2)
GOAL = cell_index(4, 3)
PIT = cell_index(4, 2)


def _next_cell_table() -> np.ndarray:
    """``[S, 4]``: the cell a move in each direction leads to (blocked moves stay put)."""
    table = np.zeros((NUM_STATES, NUM_ACTIONS), np.int32)
    for s in range(NUM_STATES):
        x, y = s % WIDTH + 1, s // WIDTH + 1
        for d, (dx, dy) in enumerate(_MOVES):
            nx, ny = x + dx, y + dy
            blocked = not (1 <= nx <= WIDTH and 1 <= ny <= HEIGHT) or cell_index(nx, ny) == WALL
            stuck = s in (WALL, GOAL, PIT)
            table[s, d] = s if blocked or stuck else cell_index(nx, ny)
    return table


_NEXT = _next_cell_table()
_EXIT_REWARD = np.zeros(NUM_STATES, np.float32)
_EXIT_REWARD[GOAL], _EXIT_REWARD[PIT] = 1.0, -1.0
_TERMINAL = np.zeros(NUM_STATES, bool)
_TERMINAL[[GOAL, PIT]] = True


# A gymnax state/params record is a pytree that JAX and Equinox rebuild through ``__init__``
# with traced, batched or placeholder leaves (``eqx.tree_at``): its fields are documented as
# (possibly traced or batched) numbers but not checked at runtime (``no_type_check``).
@no_type_check
@struct.dataclass
class RoomState(environment.EnvState):
    """The robot's cell ``s`` and the steps taken in this episode."""

    cell: jax.Array
    time: Int[ArrayLike, "..."]


@no_type_check
@struct.dataclass
class RoomParams(environment.EnvParams):
    """Reward per step, probability of moving as intended, time limit (all vmappable)."""

    step_reward: Real[ArrayLike, "..."] = -0.04
    intended_prob: Real[ArrayLike, "..."] = 0.8
    max_steps_in_episode: Int[ArrayLike, "..."] = 100


class RobotInRoom(environment.Environment[RoomState, RoomParams]):
    """The 4×3 grid world (see the module docstring); keyword arguments set the default params.

    Example:
        >>> env, params = purerl.envs.make("RobotInRoom-v0", step_reward=-2.0)
        >>> P, R, terminal = env.transition_model(params)
    """

    num_states = NUM_STATES

    def __init__(
        self,
        step_reward: float | int = -0.04,
        intended_prob: float | int = 0.8,
        max_steps_in_episode: int = 100,
    ):
        if not 0.0 <= intended_prob <= 1.0:
            raise ValueError(f"intended_prob: must be in [0, 1], got {intended_prob}")
        if int(max_steps_in_episode) < 1:
            raise ValueError(f"max_steps_in_episode: must be >= 1, got {max_steps_in_episode}")
        self._defaults = RoomParams(
            step_reward=float(step_reward),
            intended_prob=float(intended_prob),
            max_steps_in_episode=int(max_steps_in_episode),
        )

    @property
    def default_params(self) -> RoomParams:
        return self._defaults

    @staticmethod
    def direction_probs(action: Int[ArrayLike, ""], intended_prob: Any) -> Float[Array, " 4"]:
        """Probability of actually moving in each of the 4 directions when taking ``action``."""
        side = (1.0 - intended_prob) / 2.0
        directions = jnp.arange(NUM_ACTIONS)
        perpendicular = (directions == (action + 1) % 4) | (directions == (action + 3) % 4)
        return jnp.where(directions == action, intended_prob, jnp.where(perpendicular, side, 0.0))

    def step_env(self, key, state: RoomState, action, params: RoomParams):
        action = jnp.asarray(action, jnp.int32)
        direction = jax.random.choice(
            key, NUM_ACTIONS, p=self.direction_probs(action, params.intended_prob)
        )
        cell = jnp.asarray(_NEXT)[state.cell, direction]
        reward = params.step_reward + jnp.asarray(_EXIT_REWARD)[cell]
        new_state = RoomState(cell=cell, time=state.time + 1)
        terminated = self.is_terminated(new_state, params)
        obs = self.get_obs(new_state)
        return obs, new_state, jnp.asarray(reward, jnp.float32), terminated, {}

    def reset_env(self, key, params: RoomParams):
        state = RoomState(cell=jnp.int32(START), time=0)
        return self.get_obs(state), state

    def get_obs(self, state: RoomState, params: Any = None, key: Any = None) -> Array:
        return jax.nn.one_hot(state.cell, NUM_STATES, dtype=jnp.float32)

    @staticmethod
    def state_index(obs: Float[ArrayLike, " 12"]) -> Int[Array, ""]:
        """Cell number ``s`` of a one-hot observation (the row of a Q-table)."""
        return jnp.argmax(obs, axis=-1).astype(jnp.int32)

    def is_terminated(self, state: RoomState, params: RoomParams) -> Array:
        return jnp.asarray(_TERMINAL)[state.cell]

    def transition_model(
        self, params: RoomParams | None = None
    ) -> tuple[Float[Array, "S A S"], Float[Array, "S A"], Bool[Array, " S"]]:
        """``(P[s, a, s'], R[s, a], terminal[s])`` of this world under ``params``.

        ``R[s, a]`` is the expected reward ``Σ_s' P[s, a, s'] (step_reward + exit(s'))``.
        The exits and the wall cell (never entered) are marked terminal: they are absorbing,
        reward 0, value 0. Jit/vmap friendly in ``params`` (e.g. a sweep over step rewards).
        """
        params = self.default_params if params is None else params
        probs = jax.vmap(lambda a: self.direction_probs(a, params.intended_prob))(
            jnp.arange(NUM_ACTIONS)
        )  # [A, D]
        moves = jax.nn.one_hot(jnp.asarray(_NEXT), NUM_STATES)  # [S, D, S']
        P = jnp.einsum("ad,sdt->sat", probs, moves)
        terminal = jnp.asarray(_TERMINAL).at[WALL].set(True)
        reward = params.step_reward + jnp.asarray(_EXIT_REWARD)  # [S'] reward of entering s'
        R = jnp.where(terminal[:, None], 0.0, jnp.einsum("sat,t->sa", P, reward))
        return P, R, terminal

    @property
    def name(self) -> str:
        return "RobotInRoom-v0"

    @property
    def num_actions(self) -> int:
        return NUM_ACTIONS

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(NUM_ACTIONS)

    def observation_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (NUM_STATES,), jnp.float32)

    def state_space(self, params: Any = None) -> spaces.Dict:
        return spaces.Dict({"cell": spaces.Discrete(NUM_STATES), "time": spaces.Discrete(10**6)})

    @staticmethod
    def as_grid(values: ArrayLike) -> np.ndarray:
        """``[S]`` per-cell values as a ``[3, 4]`` NumPy array laid out like the picture (top
        row y = 3), NaN at the wall: ready for ``plt.imshow``."""
        grid = np.asarray(values, np.float64).reshape(HEIGHT, WIDTH).copy()
        grid[WALL // WIDTH, WALL % WIDTH] = np.nan
        return grid[::-1]

    @staticmethod
    def policy_string(actions: ArrayLike) -> str:
        """A ``[S]`` array of actions drawn as arrows (``#`` wall, ``+``/``−`` exits)."""
        actions = np.asarray(actions)
        rows = []
        for y in range(HEIGHT, 0, -1):
            cells = []
            for x in range(1, WIDTH + 1):
                s = cell_index(x, y)
                special = {WALL: "#", GOAL: "+", PIT: "−"}
                cells.append(special.get(s, ARROWS[int(actions[s])]))
            rows.append(" ".join(cells))
        return "\n".join(rows)


ENVS = {"RobotInRoom-v0": RobotInRoom}
