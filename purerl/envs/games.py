"""Two-player zero-sum "k in a row" board games as pure JAX functions, and a gymnax
environment that plays them against a fixed opponent.

| id | board | moves | win |
|---|---|---|---|
| ``TicTacToe-v0`` | 3×3 | 9 cells | 3 in a row |
| ``ConnectFour-v0`` | 6×7, stones fall | 7 columns | 4 in a row |

**The rules** (``BoardGame``) work on *canonical boards*: a flat ``int8`` array of ``rows·cols``
cells (row-major, row 0 at the top), ``+1`` a stone of the player to move, ``−1`` one of the
other player's, ``0`` empty. ``play(board, a) -> (next_board, reward, terminal)``: the mover
puts a stone on cell ``a`` (or, with gravity, on the lowest empty cell of column ``a``);

    reward = +1 if the stone completes a line of ``connect`` of the mover's, else 0
    terminal = won or board full (a draw)
    next_board = −(board after the move)      (canonical for the next mover)

An illegal move (an occupied cell, a full column, an index outside ``[0, num_actions)``)
loses: ``reward = −1``, ``terminal = True``, the board is unchanged but flipped. The reward is
the mover's, so a two-player search flips the value's sign between plies. Every function is
pure and branch-free: ``jit``, ``vmap`` and ``mctx`` (``purerl.search``) use it as is.

**Tic-Tac-Toe is solved**: ``minimax_value`` and ``perfect_moves`` look a board up in a table
of exact minimax values (built once, in plain Python, on first use).

**As an environment** (``GameEnv``, ``make("TicTacToe-v0", opponent=...)``): the agent plays
against an opponent ``opponent(key, board) -> move`` (``board`` canonical for the opponent):
``"random"``, ``"perfect"`` (Tic-Tac-Toe) or any such function. The opponent opens half of
the episodes; the return is the score: +1 win, 0 draw, −1 loss or illegal move.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, no_type_check

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

__all__ = [
    "BoardGame",
    "winning_lines",
    "uniform_choice",
    "TIC_TAC_TOE",
    "CONNECT_FOUR",
    "GAMES",
    "game_of",
    "minimax_value",
    "perfect_moves",
    "Opponent",
    "random_opponent",
    "perfect_opponent",
    "OPPONENTS",
    "GameState",
    "GameParams",
    "GameEnv",
    "make_game_env",
    "ENVS",
]

_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))  # →, ↓, ↘, ↙


def uniform_choice(key: PRNGKeyArray, allowed: Bool[Array, " n"]) -> Int[Array, ""]:
    """An index drawn uniformly among those where ``allowed`` holds."""
    return jax.random.categorical(key, jnp.where(allowed, 0.0, -jnp.inf))


def winning_lines(rows: int, cols: int, connect: int) -> tuple[tuple[int, ...], ...]:
    """Every line of ``connect`` cells (horizontal, vertical, both diagonals) as flat cell
    indices: 8 for Tic-Tac-Toe, 69 for Connect Four."""
    lines = []
    for r in range(rows):
        for c in range(cols):
            for dr, dc in _DIRECTIONS:
                cells = [(r + i * dr, c + i * dc) for i in range(connect)]
                if all(0 <= rr < rows and 0 <= cc < cols for rr, cc in cells):
                    lines.append(tuple(rr * cols + cc for rr, cc in cells))
    return tuple(lines)


class BoardGame(eqx.Module):
    """The rules of a k-in-a-row game on canonical boards (``+1`` the mover's stones, ``−1``
    the other player's, ``0`` empty; see the module docstring).

    Example:
        >>> game = CONNECT_FOUR
        >>> board, reward, terminal = game.play(game.initial_board(), 3)  # centre column
        >>> game.legal_mask(board).shape  # (7,)
    """

    name: str = eqx.field(static=True)
    rows: int = eqx.field(static=True)
    cols: int = eqx.field(static=True)
    connect: int = eqx.field(static=True)
    gravity: bool = eqx.field(static=True)
    lines: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(self, name: str, rows: int, cols: int, connect: int, gravity: bool):
        self.name, self.rows, self.cols = str(name), int(rows), int(cols)
        self.connect, self.gravity = int(connect), bool(gravity)
        self.lines = winning_lines(self.rows, self.cols, self.connect)

    def __check_init__(self) -> None:
        if min(self.rows, self.cols, self.connect) < 1 or not self.lines:
            raise ValueError(
                f"env: a {self.rows}×{self.cols} board has no line of {self.connect}; "
                "rows, cols and connect must be >= 1 and connect <= max(rows, cols)"
            )

    @property
    def deterministic(self) -> bool:
        """Always ``True``: ``play`` is a function of ``(board, action)``, no chance, so
        search can use the rules as its model."""
        return True

    @property
    def num_actions(self) -> int:
        """The moves: one per column (gravity) or one per cell."""
        return self.cols if self.gravity else self.rows * self.cols

    @property
    def max_moves(self) -> int:
        """The longest game: every cell filled (``rows·cols`` plies, both players')."""
        return self.rows * self.cols

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """``(rows, cols, 2)``: the planes of ``observe``."""
        return (self.rows, self.cols, 2)

    def initial_board(self) -> Int[Array, " cells"]:
        """The empty board."""
        return jnp.zeros((self.rows * self.cols,), jnp.int8)

    def legal_mask(self, board: Int[Array, " cells"]) -> Bool[Array, " actions"]:
        """The legal moves: empty cells, or (gravity) columns whose top cell is empty."""
        return board[: self.cols] == 0 if self.gravity else board == 0

    def random_move(self, key: PRNGKeyArray, board: Int[Array, " cells"]) -> Int[Array, ""]:
        """A legal move drawn uniformly (the random opponent's, and a playout's)."""
        return uniform_choice(key, self.legal_mask(board))

    def has_line(self, board: Int[Array, " cells"], player: int = 1) -> Bool[Array, ""]:
        """Whether ``player``'s stones (``+1`` the mover, ``−1`` the other) fill a line:
        ``any_l all_i board[lines[l, i]] == player``."""
        lines = jnp.asarray(np.asarray(self.lines, np.int32))
        return jnp.any(jnp.all(board[lines] == player, axis=1))

    def _target_cell(self, board: Array, action: Array) -> Array:
        """The cell a move fills: ``action`` itself, or the lowest empty cell of column
        ``action`` (some cell of it when the column is full: the move is illegal then)."""
        if not self.gravity:
            return action
        column = board.reshape(self.rows, self.cols)[:, action]
        lowest = self.rows - 1 - jnp.argmax(column[::-1] == 0)
        return lowest * self.cols + action

    def play(
        self, board: Int[Array, " cells"], action: Int[ArrayLike, ""]
    ) -> tuple[Int[Array, " cells"], Float[Array, ""], Bool[Array, ""]]:
        """The mover plays ``action``.

        Returns:
            ``(next_board, reward, terminal)``: the board after the move from the NEXT
            mover's point of view (negated), the mover's reward (+1 for completing a line,
            0 otherwise, −1 for an illegal move), and whether the game is over (a win, a full
            board, or an illegal move, which leaves the board as it was, flipped).
        """
        action = jnp.asarray(action, jnp.int32)
        in_range = (action >= 0) & (action < self.num_actions)
        action = jnp.clip(action, 0, self.num_actions - 1)
        legal = in_range & self.legal_mask(board)[action]
        cell = self._target_cell(board, action)
        placed = board.at[cell].set(jnp.where(legal, 1, board[cell]).astype(jnp.int8))
        won = legal & self.has_line(placed)
        full = jnp.all(placed != 0)
        reward = jnp.where(legal, jnp.where(won, 1.0, 0.0), -1.0).astype(jnp.float32)
        return -placed, reward, won | full | ~legal

    def observe(self, board: Int[Array, " cells"]) -> Float[Array, "rows cols 2"]:
        """The network's view: planes ``(board == +1, board == −1)``, the mover's stones and
        the other player's, as ``float32`` ``[rows, cols, 2]``."""
        grid = board.reshape(self.rows, self.cols)
        return jnp.stack([grid == 1, grid == -1], axis=-1).astype(jnp.float32)

    def board_from_obs(self, obs: Float[Array, "rows cols 2"]) -> Int[Array, " cells"]:
        """The canonical board back from ``observe``'s planes (its inverse)."""
        return (obs[..., 0] - obs[..., 1]).reshape(-1).astype(jnp.int8)


TIC_TAC_TOE = BoardGame("TicTacToe", 3, 3, 3, False)
CONNECT_FOUR = BoardGame("ConnectFour", 6, 7, 4, True)
GAMES = {"TicTacToe-v0": TIC_TAC_TOE, "ConnectFour-v0": CONNECT_FOUR}


def game_of(env_id: str) -> BoardGame:
    """The rules of the board game ``env_id`` (a key of ``GAMES``).

    Raises:
        ValueError: ``env_id`` is not a board game.
    """
    if env_id not in GAMES:
        raise ValueError(f"env: {env_id!r} is not a board game; board games: {list(GAMES)}")
    return GAMES[env_id]


def _is_tic_tac_toe(game: BoardGame) -> bool:
    return (game.rows, game.cols, game.connect, game.gravity) == (3, 3, 3, False)


# ---------------------------------------------------------------- Tic-Tac-Toe, solved

_TTT_POWERS = 3 ** np.arange(9)


def _index(board: tuple[int, ...]) -> int:
    """Base-3 row of a board in the tables: cell ``v ∈ {−1, 0, 1}`` is digit ``v + 1``."""
    return int(np.dot(np.asarray(board) + 1, _TTT_POWERS))


@functools.lru_cache(maxsize=1)
def _minimax_tables() -> tuple[np.ndarray, np.ndarray]:
    """``(value int8 [3⁹], optimal bool [3⁹, 9])`` by exhaustive negamax from the empty board.

    ``value`` is the mover's game value (+1 win, 0 draw, −1 loss, no preference for faster
    wins) of every position reachable in play, finished ones included (−1 when the previous
    mover just completed a line, 0 for a full drawn board); ``optimal`` marks every move of an
    unfinished position that achieves it. Rows of unreachable boards: value 0, no move.
    """
    lines = TIC_TAC_TOE.lines
    value = np.zeros(3**9, np.int8)
    optimal = np.zeros((3**9, 9), bool)
    solved: set[tuple[int, ...]] = set()

    def negamax(board: tuple[int, ...]) -> int:
        idx = _index(board)
        if board in solved:
            return int(value[idx])
        outcomes = {}
        for a in (a for a in range(9) if board[a] == 0):
            placed = board[:a] + (1,) + board[a + 1 :]
            after = tuple(-v for v in placed)
            if any(all(placed[i] == 1 for i in line) for line in lines):
                outcomes[a] = 1
                value[_index(after)] = -1  # finished: the next mover has lost
            elif all(placed):
                outcomes[a] = 0  # finished: a draw (value 0 already)
            else:
                outcomes[a] = -negamax(after)
        best = max(outcomes.values())
        value[idx] = best
        optimal[idx, [a for a, v in outcomes.items() if v == best]] = True
        solved.add(board)
        return best

    negamax((0,) * 9)
    return value, optimal


def _row(board: Int[Array, " 9"]) -> Int[Array, ""]:
    return jnp.dot(board.astype(jnp.int32) + 1, jnp.asarray(_TTT_POWERS, jnp.int32))


def minimax_value(board: Int[Array, " 9"]) -> Float[Array, ""]:
    """The exact game value of a canonical Tic-Tac-Toe board for the player to move: +1
    (a forced win), 0 (a draw), −1 (a loss) under perfect play by both (0 for a board that
    cannot arise in play). The empty board is worth 0."""
    return jnp.asarray(_minimax_tables()[0], jnp.float32)[_row(board)]


def perfect_moves(board: Int[Array, " 9"]) -> Bool[Array, " 9"]:
    """Every move that achieves ``minimax_value`` of a canonical Tic-Tac-Toe board (all
    optimal moves, however fast they win); none on a finished or unreachable board."""
    return jnp.asarray(_minimax_tables()[1])[_row(board)]


# ---------------------------------------------------------------- opponents

Opponent = Callable[[PRNGKeyArray, Array], Array]
"""``opponent(key, board) -> move``: ``board`` is canonical for the opponent (its stones
``+1``); the move is an action index of the game. Must be jit- and vmap-friendly."""


def random_opponent(game: BoardGame) -> Opponent:
    """An opponent playing uniformly among the legal moves."""

    def opponent(key: PRNGKeyArray, board: Int[Array, " cells"]) -> Int[Array, ""]:
        return game.random_move(key, board)

    return opponent


def perfect_opponent(game: BoardGame) -> Opponent:
    """An opponent playing uniformly among the minimax-optimal moves (``perfect_moves``):
    it never loses. Tic-Tac-Toe only.

    Raises:
        ValueError: ``game`` is not Tic-Tac-Toe.
    """
    if not _is_tic_tac_toe(game):
        raise ValueError(
            f"env: the perfect opponent exists for TicTacToe-v0 only (exact minimax), "
            f"not {game.name}"
        )
    _minimax_tables()  # solve now, not inside a trace

    def opponent(key: PRNGKeyArray, board: Int[Array, " cells"]) -> Int[Array, ""]:
        moves = perfect_moves(board)
        moves = jnp.where(jnp.any(moves), moves, game.legal_mask(board))  # finished: any
        return uniform_choice(key, moves)

    return opponent


OPPONENTS: dict[str, Callable[[BoardGame], Opponent]] = {
    "random": random_opponent,
    "perfect": perfect_opponent,
}
"""Named opponents: ``name -> factory(game) -> opponent`` (``GameEnv``'s ``opponent="..."``)."""


# ---------------------------------------------------------------- the environment


# gymnax-style records: rebuilt by JAX with traced/batched leaves, so not type-checked
@no_type_check
@struct.dataclass
class GameState(environment.EnvState):
    """``board``: canonical from the AGENT's point of view (its stones ``+1``); ``time``: the
    agent's moves so far."""

    board: jax.Array
    time: Int[ArrayLike, "..."]


@no_type_check
@struct.dataclass
class GameParams(environment.EnvParams):
    """``max_steps_in_episode``: gymnax's time limit, set to the game's ``max_moves``, which
    the agent (making at most half the moves, rounded up) never reaches."""

    max_steps_in_episode: Int[ArrayLike, "..."] = 1000


class GameEnv(environment.Environment[GameState, GameParams]):
    """A board game as a single-agent gymnax environment: the agent against ``opponent``.

    ``reset`` gives the empty board, or, in half of the episodes, the board after the
    opponent's opening move. ``step`` plays the agent's move, then (unless that ended the
    game) the opponent's reply. Reward: +1 when the agent completes a line, −1 when the
    opponent does or the agent plays an illegal move, 0 otherwise (a draw included); the
    episode return is the score. The observation is ``game.observe`` of the board from the
    agent's point of view, so the legal moves are ``game.legal_mask(game.board_from_obs(obs))``
    (search rebuilds the board from the observation this way).

    Args:
        game: the rules.
        opponent: ``"random"``, ``"perfect"`` (a key of ``OPPONENTS``) or a function
            ``opponent(key, board) -> move`` of the board from the opponent's point of view
            (an illegal move by it loses: the agent gets +1).
    """

    # ``opponent: Any``: a bad one gets ``__init__``'s ValueError, not a type-check error
    def __init__(self, game: BoardGame, opponent: Any = "random"):
        super().__init__()
        if isinstance(opponent, str):
            if opponent not in OPPONENTS:
                raise ValueError(
                    f"env: opponent must be one of {list(OPPONENTS)} or a function "
                    f"opponent(key, board) -> move, got {opponent!r}"
                )
            opponent = OPPONENTS[opponent](game)
        elif not callable(opponent):
            raise ValueError(f"env: opponent must be a name or a function, got {opponent!r}")
        self.game = game
        self.opponent = opponent

    @property
    def default_params(self) -> GameParams:
        return GameParams(max_steps_in_episode=self.game.max_moves)

    def get_obs(self, state: GameState, params: Any = None, key: Any = None) -> jax.Array:
        return self.game.observe(state.board)

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, GameState]:
        first_key, move_key = jax.random.split(key)
        empty = self.game.initial_board()
        opened, _, _ = self.game.play(empty, self.opponent(move_key, empty))
        board = jnp.where(jax.random.bernoulli(first_key), opened, empty)
        state = GameState(board=board, time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        game = self.game
        theirs, reward, over = game.play(state.board, action)  # the opponent's view
        # The reply is computed either way (branch-free; vmapped games diverge) and discarded
        # when the agent's move ended the game.
        ours, their_reward, their_over = game.play(theirs, self.opponent(key, theirs))
        reward = jnp.where(over, reward, 0.0 - their_reward).astype(jnp.float32)
        new_state = GameState(board=jnp.where(over, -theirs, ours), time=state.time + 1)
        return self.get_obs(new_state), new_state, reward, over | their_over, {}

    def is_terminated(self, state: GameState, params: GameParams) -> jax.Array:
        """A line on the board or no legal move left (an illegal move's end leaves no trace
        on the board: ``step`` reports it)."""
        board = state.board
        finished = self.game.has_line(board, 1) | self.game.has_line(board, -1)
        return finished | ~jnp.any(self.game.legal_mask(board))

    @property
    def name(self) -> str:
        return f"{self.game.name}-v0"

    @property
    def num_actions(self) -> int:
        return self.game.num_actions

    def action_space(self, params: Any = None) -> spaces.Discrete:
        return spaces.Discrete(self.game.num_actions)

    def observation_space(self, params: Any = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, self.game.obs_shape, jnp.float32)


def make_game_env(env_id: str, opponent: Any = "random") -> GameEnv:
    """``GameEnv`` for the board game ``env_id`` (a key of ``GAMES``) against ``opponent``
    (a name in ``OPPONENTS`` or a function ``opponent(key, board) -> move``)."""
    return GameEnv(game_of(env_id), opponent)


ENVS = {env_id: functools.partial(make_game_env, env_id) for env_id in GAMES}
