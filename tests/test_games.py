"""Tests for purerl/envs/games.py: the rules on hand-built boards and against a plain-Python
reference over hundreds of random games (eagerly, under ``jit`` and under ``vmap``), Tic-Tac-Toe's
minimax tables against a plain negamax, the opponents, and ``GameEnv`` alone and through
``VecEnv``."""

from __future__ import annotations

import functools
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.envs import VecEnv, check_env_id, games, make, registered

TTT, C4 = games.TIC_TAC_TOE, games.CONNECT_FOUR
N_GAMES = 200

# Many small programs run once each on tiny batches here: XLA's backend optimizations would
# quadruple their compile time, most of this file's time, and speed nothing up.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
TTT_PLAY, C4_PLAY = jit(TTT.play), jit(C4.play)


# --------------------------------------------------------------------------------------------
# A plain-Python reference (lists of ints), written from the module docstring


class RefGame:
    """The rules again: a win is found by counting the mover's stones through the new one."""

    def __init__(self, rows: int, cols: int, connect: int, gravity: bool):
        self.rows, self.cols, self.connect, self.gravity = rows, cols, connect, gravity

    def legal(self, board: list[int]) -> list[bool]:
        if self.gravity:
            return [board[c] == 0 for c in range(self.cols)]
        return [v == 0 for v in board]

    def _run(self, board: list[int], cell: int, dr: int, dc: int) -> int:
        r, c = divmod(cell, self.cols)
        count = 0
        r, c = r + dr, c + dc
        while 0 <= r < self.rows and 0 <= c < self.cols and board[r * self.cols + c] == 1:
            count += 1
            r, c = r + dr, c + dc
        return count

    def wins(self, board: list[int], cell: int) -> bool:
        for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
            if (
                1 + self._run(board, cell, dr, dc) + self._run(board, cell, -dr, -dc)
                >= self.connect
            ):
                return True
        return False

    def play(self, board: list[int], action: int) -> tuple[list[int], float, bool]:
        legal = self.legal(board)
        if not 0 <= action < len(legal) or not legal[action]:
            return [-v for v in board], -1.0, True
        cell = action
        if self.gravity:
            cell = max(
                r * self.cols + action
                for r in range(self.rows)
                if board[r * self.cols + action] == 0
            )
        placed = list(board)
        placed[cell] = 1
        won = self.wins(placed, cell)
        return [-v for v in placed], 1.0 if won else 0.0, won or all(placed)


REF = {TTT.name: RefGame(3, 3, 3, False), C4.name: RefGame(6, 7, 4, True)}


def parse(text: str) -> jax.Array:
    """A board from rows of ``X`` (the mover, +1), ``O`` (the other player, −1) and ``.``."""
    cells = [{"X": 1, "O": -1, ".": 0}[ch] for ch in "".join(text.split())]
    return jnp.asarray(cells, jnp.int8)


def random_games(game: games.BoardGame, n: int, seed: int) -> list[list[tuple]]:
    """``n`` reference games of uniformly random legal moves: per move ``(board, legal,
    action, next_board, reward, terminal)``."""
    ref, rng = REF[game.name], random.Random(seed)
    played = []
    for _ in range(n):
        board, moves, terminal = [0] * game.max_moves, [], False
        while not terminal:
            legal = ref.legal(board)
            action = rng.choice([a for a, ok in enumerate(legal) if ok])
            nxt, reward, terminal = ref.play(board, action)
            moves.append((board, legal, action, nxt, reward, terminal))
            board = nxt
        played.append(moves)
    return played


@functools.cache
def played(name: str) -> list[list[tuple]]:
    return random_games({TTT.name: TTT, C4.name: C4}[name], N_GAMES, seed=len(name))


def step_fn(game: games.BoardGame):
    return lambda board, action: (game.legal_mask(board), *game.play(board, action))


# --------------------------------------------------------------------------------------------
# Rules on hand-built boards

TTT_LINES = [(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)]


def test_winning_lines():
    assert sorted(TTT.lines) == sorted(TTT_LINES)
    # Connect Four: 6·4 horizontal + 3·7 vertical + 2·(3·4) diagonal
    assert len(C4.lines) == 69 and all(len(line) == 4 for line in C4.lines)
    assert len(set(C4.lines)) == 69
    assert (TTT.num_actions, TTT.max_moves, TTT.obs_shape) == (9, 9, (3, 3, 2))
    assert (C4.num_actions, C4.max_moves, C4.obs_shape) == (7, 42, (6, 7, 2))
    with pytest.raises(ValueError, match="no line of 4"):
        games.BoardGame("Tiny", 3, 3, 4, False)


@pytest.mark.parametrize("line", TTT_LINES)
def test_tictactoe_completing_any_line_wins(line):
    others = jnp.asarray([c for c in range(9) if c not in line][:2])
    board = jnp.zeros(9, jnp.int8).at[jnp.asarray(line[:2])].set(1).at[others].set(-1)
    nxt, reward, terminal = TTT_PLAY(board, line[2])
    assert float(reward) == 1.0 and bool(terminal)
    expected = -board.at[line[2]].set(1)
    np.testing.assert_array_equal(nxt, expected)  # flipped: the next mover's view
    assert bool(TTT.has_line(nxt, -1)) and not bool(TTT.has_line(nxt, 1))


def test_play_flips_the_board_and_reports_the_movers_reward():
    board, reward, terminal = TTT_PLAY(TTT.initial_board(), 4)
    np.testing.assert_array_equal(board, parse("... .O. ..."))
    assert float(reward) == 0.0 and not bool(terminal)
    assert board.dtype == jnp.int8 and reward.dtype == jnp.float32 and terminal.dtype == bool
    board, reward, terminal = TTT_PLAY(board, 0)  # the second player answers in the corner
    np.testing.assert_array_equal(board, parse("O.. .X. ..."))
    # one short of a line: no reward
    _, reward, terminal = TTT_PLAY(parse("XO. .X. ..O"), 2)
    assert float(reward) == 0.0 and not bool(terminal)


def test_tictactoe_full_board_without_a_line_is_a_draw():
    board = parse("XOX XOO OX.")
    nxt, reward, terminal = TTT_PLAY(board, 8)
    assert float(reward) == 0.0 and bool(terminal)
    assert not TTT.legal_mask(nxt).any()


@pytest.mark.parametrize("action", [0, 4, 9, -1, 100])
def test_illegal_moves_lose_and_leave_the_board_flipped(action):
    board = parse("XO. .X. O..")  # cells 0, 1, 4, 6 taken; 9, -1, 100 out of range
    nxt, reward, terminal = TTT_PLAY(board, action)
    assert float(reward) == -1.0 and bool(terminal)
    np.testing.assert_array_equal(nxt, -board)


C4_WINS = {
    "horizontal": (". . . . OOO. XXX.", 3),
    "vertical": (". . . X. XO. XO.", 0),
    "diagonal ↗": (". . . ..XO... .XOO... XOOX...", 3),
    "diagonal ↘": (". . . ...OX.. ...OOX. ...XOOX", 3),
}


def c4(text: str) -> jax.Array:
    """A Connect Four board from its lowest rows (``.`` for an empty row), top rows empty."""
    rows = [row.ljust(7, ".") for row in text.split()]
    return parse(" ".join(["......."] * (6 - len(rows)) + rows))


@pytest.mark.parametrize("name", list(C4_WINS))
def test_connect_four_wins_where_the_stone_falls(name):
    text, column = C4_WINS[name]
    board = c4(text)
    nxt, reward, terminal = C4_PLAY(board, column)
    assert float(reward) == 1.0 and bool(terminal), name
    # the stone landed on the lowest empty cell of the column
    landed = np.flatnonzero(np.asarray(-nxt) != np.asarray(board))
    assert len(landed) == 1 and landed[0] % 7 == column
    below = np.asarray(board).reshape(6, 7)[landed[0] // 7 + 1 :, column]
    assert np.all(below != 0)
    # one column over, no line
    _, reward, terminal = C4_PLAY(board, 6 if column != 6 else 5)
    assert float(reward) == 0.0 and not bool(terminal)


def test_connect_four_gravity_stacking_and_full_columns():
    board = C4.initial_board()
    for _ in range(6):
        assert bool(C4.legal_mask(board)[2])
        board, reward, terminal = C4_PLAY(board, 2)
        assert float(reward) == 0.0 and not bool(terminal)
    grid = np.asarray(board).reshape(6, 7)
    # six alternating stones in column 2, the first player's at the bottom (row 5): after
    # six plies the first player is to move again, so its stones are +1
    np.testing.assert_array_equal(grid[:, 2], [-1, 1, -1, 1, -1, 1])
    assert np.count_nonzero(grid) == 6
    mask = np.asarray(C4.legal_mask(board))
    np.testing.assert_array_equal(mask, [True, True, False, True, True, True, True])
    nxt, reward, terminal = C4_PLAY(board, 2)  # the full column
    assert float(reward) == -1.0 and bool(terminal)
    np.testing.assert_array_equal(nxt, -board)


def test_connect_four_full_board_without_a_line_is_a_draw():
    full = parse(" ".join(["XXOOXXO", "OOXXOOX"] * 3))
    assert not bool(C4.has_line(full, 1)) and not bool(C4.has_line(full, -1))
    board = full.at[0].set(0)
    np.testing.assert_array_equal(C4.legal_mask(board), [True] + [False] * 6)
    nxt, reward, terminal = C4_PLAY(board, 0)
    assert float(reward) == 0.0 and bool(terminal)
    np.testing.assert_array_equal(nxt, -full)


def test_legal_masks():
    np.testing.assert_array_equal(TTT.legal_mask(TTT.initial_board()), [True] * 9)
    np.testing.assert_array_equal(TTT.legal_mask(parse("XO. .X. O..")), [0, 0, 1, 1, 0, 1, 0, 1, 1])
    np.testing.assert_array_equal(C4.legal_mask(C4.initial_board()), [True] * 7)
    board = parse("XOXOXO. " + "OXOXOXO " * 5)  # columns 0..5 full, 6 has one cell left
    np.testing.assert_array_equal(C4.legal_mask(board), [0, 0, 0, 0, 0, 0, 1])


def test_observe_and_board_from_obs_round_trip():
    for game in (TTT, C4):
        boards = [m[0] for g in played(game.name)[:20] for m in g]
        boards = jnp.asarray(boards, jnp.int8)
        obs = jax.vmap(game.observe)(boards)
        assert obs.shape == (len(boards), *game.obs_shape) and obs.dtype == jnp.float32
        grid = np.asarray(boards).reshape(len(boards), game.rows, game.cols)
        np.testing.assert_array_equal(obs[..., 0], grid == 1)
        np.testing.assert_array_equal(obs[..., 1], grid == -1)
        np.testing.assert_array_equal(jax.vmap(game.board_from_obs)(obs), boards)
        assert game.board_from_obs(obs[0]).dtype == jnp.int8


def test_game_of_and_registration():
    assert games.game_of("TicTacToe-v0") is TTT and games.game_of("ConnectFour-v0") is C4
    with pytest.raises(ValueError, match="^env: 'CartPole-v1' is not a board game"):
        games.game_of("CartPole-v1")
    assert {"TicTacToe-v0", "ConnectFour-v0"} <= set(registered())
    check_env_id("ConnectFour-v0?max_steps_in_episode=42")
    env, params = make("ConnectFour-v0")
    assert env.name == "ConnectFour-v0" and params.max_steps_in_episode == 42
    with pytest.raises(ValueError, match="TicTacToe-v0 only"):
        make("ConnectFour-v0", opponent="perfect")
    with pytest.raises(ValueError, match="opponent must be one of"):
        make("TicTacToe-v0", opponent="god")
    with pytest.raises(ValueError, match="a name or a function"):
        make("TicTacToe-v0", opponent=3)


# --------------------------------------------------------------------------------------------
# The rules against the reference over random games: eager, jit step by step, vmap


def _check_move(game, move, out) -> None:
    board, legal, action, nxt, reward, terminal = move
    mask, got_next, got_reward, got_terminal = map(np.asarray, out)
    np.testing.assert_array_equal(mask, legal, err_msg=f"{board} {action}")
    np.testing.assert_array_equal(got_next, nxt, err_msg=f"{board} {action}")
    assert (float(got_reward), bool(got_terminal)) == (reward, terminal), (board, action)


@pytest.mark.parametrize("game", [TTT, C4], ids=lambda g: g.name)
def test_eager_play_matches_the_reference(game):
    step = step_fn(game)
    for moves in played(game.name)[:4]:
        for move in moves:
            _check_move(game, move, step(jnp.asarray(move[0], jnp.int8), move[2]))


@pytest.mark.parametrize("game", [TTT, C4], ids=lambda g: g.name)
def test_jit_play_matches_the_reference_move_by_move(game):
    step = jit(step_fn(game))
    for moves in played(game.name):
        for move in moves:
            _check_move(game, move, step(jnp.asarray(move[0], jnp.int8), move[2]))


@pytest.mark.parametrize("game", [TTT, C4], ids=lambda g: g.name)
def test_vmapped_games_match_the_reference(game):
    """All games at once: ``vmap`` over games of a ``scan`` over moves, from the empty board."""
    plays = played(game.name)
    actions = np.zeros((len(plays), game.max_moves), np.int32)
    for g, moves in enumerate(plays):
        actions[g, : len(moves)] = [m[2] for m in moves]

    @jit
    @jax.vmap
    def run(actions):
        def body(board, action):
            out = step_fn(game)(board, action)
            return out[1], (board, *out)

        return jax.lax.scan(body, game.initial_board(), actions)[1]

    boards, masks, nexts, rewards, terminals = map(np.asarray, run(jnp.asarray(actions)))
    for g, moves in enumerate(plays):
        for t, move in enumerate(moves):
            np.testing.assert_array_equal(boards[g, t], move[0])
            _check_move(game, move, (masks[g, t], nexts[g, t], rewards[g, t], terminals[g, t]))
    lengths = [len(m) for m in plays]
    assert min(lengths) >= 2 * game.connect - 1 and max(lengths) <= game.max_moves


def test_random_games_cover_wins_and_draws():
    for game in (TTT, C4):
        rewards = [g[-1][4] for g in played(game.name)]
        assert rewards.count(1.0) > N_GAMES // 2 and rewards.count(-1.0) == 0
    assert [g[-1][4] for g in played(TTT.name)].count(0.0) > 10  # draws happen


# --------------------------------------------------------------------------------------------
# Tic-Tac-Toe's minimax


@functools.cache
def negamax(board: tuple[int, ...]) -> tuple[int, frozenset[int]]:
    """``(value for the mover, optimal moves)`` of an unfinished board, by plain negamax."""
    ref = REF[TTT.name]
    outcomes = {}
    for action in range(9):
        if board[action] == 0:
            nxt, reward, terminal = ref.play(list(board), action)
            outcomes[action] = int(reward) if terminal else -negamax(tuple(nxt))[0]
    best = max(outcomes.values())
    return best, frozenset(a for a, v in outcomes.items() if v == best)


def reachable(board: tuple[int, ...], seen: set | None = None) -> set[tuple[int, ...]]:
    """Every unfinished board reachable from ``board`` (itself included)."""
    seen = set() if seen is None else seen
    seen.add(board)
    for action in range(9):
        nxt, _, terminal = REF[TTT.name].play(list(board), action)
        if board[action] == 0 and not terminal and tuple(nxt) not in seen:
            reachable(tuple(nxt), seen)
    return seen


value_and_moves = jit(jax.vmap(lambda b: (games.minimax_value(b), games.perfect_moves(b))))


def test_minimax_hand_positions():
    empty = TTT.initial_board()
    assert float(games.minimax_value(empty)) == 0.0  # Tic-Tac-Toe is a draw
    assert bool(games.perfect_moves(empty).all())  # ... whatever the opening
    win_in_one = parse("XX. OO. ...")
    assert float(games.minimax_value(win_in_one)) == 1.0
    np.testing.assert_array_equal(games.perfect_moves(win_in_one), np.arange(9) == 2)
    must_block = parse("OO. .X. ...")  # no threat of the mover's own: block or lose
    assert float(games.minimax_value(must_block)) == 0.0
    np.testing.assert_array_equal(games.perfect_moves(must_block), np.arange(9) == 2)
    lost = parse("XX. OOO X..")  # finished: the other player has a line
    assert float(games.minimax_value(lost)) == -1.0
    assert not bool(games.perfect_moves(lost).any())


def test_minimax_tables_match_plain_negamax():
    boards = sorted(reachable(tuple([0] * 9)))
    values, moves = map(np.asarray, value_and_moves(jnp.asarray(boards, jnp.int8)))
    for board, value, optimal in zip(boards, values, moves, strict=True):
        expected_value, expected_moves = negamax(board)
        assert value == expected_value, board
        assert set(np.flatnonzero(optimal)) == expected_moves, board
    assert len(boards) == 4520 and set(values) == {-1.0, 0.0, 1.0}


def test_perfect_opponent_rejects_other_games():
    with pytest.raises(ValueError, match="^env: the perfect opponent exists for TicTacToe-v0"):
        games.perfect_opponent(C4)


# --------------------------------------------------------------------------------------------
# GameEnv: whole episodes against each opponent (one compiled program per env)


def _episodes(env, params, perfect_agent, keys, steps):
    """One episode per key with ``env.step_env`` (no auto-reset), the agent playing perfectly
    where ``perfect_agent`` (Tic-Tac-Toe) and uniformly among the legal moves elsewhere: the
    reset observation, and per step ``(obs before, action, obs after, reward, terminated,
    active)``."""
    game = env.game
    random_agent = games.random_opponent(game)
    perfect = games.perfect_opponent(game) if game is TTT else random_agent

    def episode(key, perfect_agent):
        key, reset_key = jax.random.split(key)
        obs, state = env.reset_env(reset_key, params)

        def body(carry, key):
            obs, state, done = carry
            act_key, step_key = jax.random.split(key)
            board = game.board_from_obs(obs)
            action = jnp.where(perfect_agent, perfect(act_key, board), random_agent(act_key, board))
            new_obs, new_state, reward, terminated, _ = env.step_env(
                step_key, state, action, params
            )
            out = (obs, action, new_obs, reward, terminated, ~done)
            return (new_obs, new_state, done | terminated), out

        return obs, jax.lax.scan(body, (obs, state, False), jax.random.split(key, steps))[1]

    return jax.tree.map(np.asarray, jit(jax.vmap(episode))(keys, perfect_agent))


def _board(obs) -> list[int]:
    return [int(v) for v in np.asarray(obs[..., 0] - obs[..., 1]).reshape(-1)]


def _check_against_reference(game, steps) -> None:
    """Each step is the agent's move then the opponent's legal reply, exactly as the
    reference rules play them; rewards are the agent's; every episode ends in time."""
    ref = REF[game.name]
    obs, action, new_obs, reward, terminated, active = steps
    for g in range(len(obs)):
        assert terminated[g][active[g]].sum() == 1  # every episode ends within `steps`
        for t in np.flatnonzero(active[g]):
            theirs, r, over = ref.play(_board(obs[g, t]), int(action[g, t]))
            after = _board(new_obs[g, t])
            if over:
                assert after == [-v for v in theirs]
                assert (reward[g, t], terminated[g, t]) == (r, True)
                continue
            changed = [c for c in range(game.max_moves) if after[c] != -theirs[c]]
            assert len(changed) == 1, "the opponent plays exactly one stone"
            reply = changed[0] % game.cols if game.gravity else changed[0]
            assert ref.legal(theirs)[reply], "the opponent plays legal moves"
            ours, their_r, their_over = ref.play(theirs, reply)
            assert after == ours and (reward[g, t], terminated[g, t]) == (-their_r, their_over)


def _both_sides_played(first) -> None:
    opened = first.sum(axis=(1, 2, 3))  # the opponent's opening stone, or none
    assert set(opened) == {0.0, 1.0} and np.all(first[..., 0] == 0)
    assert 0.3 < opened.mean() < 0.7


def test_tictactoe_env_against_random():
    """200 episodes of a random agent (replayed with the reference), 256 of a perfect agent:
    it never loses."""
    env, params = make("TicTacToe-v0")
    perfect_agent = np.arange(456) >= 200
    keys = jax.random.split(jax.random.PRNGKey(1), len(perfect_agent))
    first, steps = _episodes(env, params, perfect_agent, keys, 5)
    _both_sides_played(first)
    _check_against_reference(TTT, steps)
    reward, active = steps[3], steps[5]
    returns = (reward * active).sum(axis=1)
    assert set(returns) == {-1.0, 0.0, 1.0}  # the score of each game
    assert np.all(returns[perfect_agent] >= 0.0) and np.mean(returns[perfect_agent] == 1) > 0.5
    assert np.mean(returns[~perfect_agent] == -1.0) > 0.2


def test_tictactoe_env_against_perfect():
    """Perfect against perfect always draws (100 games); a random agent never wins."""
    env, params = make("TicTacToe-v0", opponent="perfect")
    perfect_agent = np.arange(228) < 100
    keys = jax.random.split(jax.random.PRNGKey(2), len(perfect_agent))
    first, steps = _episodes(env, params, perfect_agent, keys, 5)
    _both_sides_played(first)
    _check_against_reference(TTT, steps)
    obs, action, _, reward, terminated, active = steps
    returns = (reward * active).sum(axis=1)
    draws = returns[perfect_agent] == 0.0
    assert np.all(draws) and np.all(terminated[perfect_agent].argmax(axis=1) >= 3)
    assert len({tuple(a) for a in action[perfect_agent]}) > 20  # uniform among optimal moves
    assert np.all(returns[~perfect_agent] <= 0.0) and np.mean(returns[~perfect_agent] < 0) > 0.5


def test_connect_four_env_against_random():
    env, params = make("ConnectFour-v0")
    keys = jax.random.split(jax.random.PRNGKey(3), 48)
    first, steps = _episodes(env, params, np.zeros(48, bool), keys, 21)  # ≤ 21 agent moves
    _both_sides_played(first)
    _check_against_reference(C4, steps)
    returns = (steps[3] * steps[5]).sum(axis=1)
    assert set(returns) <= {-1.0, 0.0, 1.0} and {-1.0, 1.0} <= set(returns)


def _agent_first(env, params):
    """``(step, state)``: the jitted ``step_env`` and an empty board with the agent to move."""
    _, state = env.reset_env(jax.random.PRNGKey(0), params)
    return jit(env.step_env), state.replace(board=env.game.initial_board())


def test_illegal_agent_move_ends_the_episode_with_minus_one():
    env, params = make("TicTacToe-v0")
    step, state = _agent_first(env, params)
    obs, state, reward, terminated, _ = step(jax.random.PRNGKey(1), state, 4, params)
    assert float(reward) == 0.0 and not bool(terminated)
    taken = int(np.flatnonzero(np.asarray(obs[..., 1]).reshape(-1))[0])  # the opponent's stone
    for action in (4, taken, 9, -1):
        new_obs, new_state, reward, terminated, _ = step(
            jax.random.PRNGKey(2), state, action, params
        )
        assert float(reward) == -1.0 and bool(terminated)
        np.testing.assert_array_equal(new_obs, obs)  # nothing was played
        np.testing.assert_array_equal(new_state.board, state.board)


def test_callable_opponent():
    """A function opponent(key, board) -> move: here, always the first empty cell."""
    env, params = make("TicTacToe-v0", opponent=lambda key, board: jnp.argmax(board == 0))
    step, state = _agent_first(env, params)
    obs, state, reward, terminated, _ = step(jax.random.PRNGKey(0), state, 4, params)
    np.testing.assert_array_equal(TTT.board_from_obs(obs), parse("O.. .X. ..."))
    for action in (8, 2):  # the opponent answers 1, then 3; the agent's 2 blocks its row
        obs, state, reward, terminated, _ = step(jax.random.PRNGKey(0), state, action, params)
        assert float(reward) == 0.0 and not bool(terminated)
    np.testing.assert_array_equal(TTT.board_from_obs(obs), parse("OOX OX. ..X"))
    obs, state, reward, terminated, _ = step(jax.random.PRNGKey(0), state, 6, params)
    assert float(reward) == 1.0 and bool(terminated)  # 2-4-6
    np.testing.assert_array_equal(TTT.board_from_obs(obs), parse("OOX OX. X.X"))


def test_vec_env_auto_resets_games():
    env = VecEnv.make("TicTacToe-v0", num_envs=8)
    assert env.obs_shape == (3, 3, 2) and env.num_actions == 9 and env.is_discrete

    @jit
    def run(key):
        def body(state, key):
            act_key, step_key = jax.random.split(key)
            legal = jax.vmap(lambda o: TTT.legal_mask(TTT.board_from_obs(o)))(state.obs)
            action = jax.random.categorical(act_key, jnp.where(legal, 0.0, -jnp.inf))
            new_state, ts = env.step(step_key, state, action)
            return new_state, ts

        return jax.lax.scan(body, env.reset(key), jax.random.split(key, 40))[1]

    ts = jax.tree.map(np.asarray, run(jax.random.PRNGKey(4)))
    done = ts.terminated
    assert done.sum() > 30 and not ts.truncated.any()
    assert set(ts.episode_return[done]) <= {-1.0, 0.0, 1.0}
    assert ts.episode_length[done].max() <= 5 and ts.episode_length[done].min() >= 2
    # after an episode: a fresh board (empty, or the opponent's opening stone)
    fresh = ts.obs[done]
    assert np.all(fresh[..., 0].sum(axis=(1, 2)) == 0) and np.all(fresh.sum(axis=(1, 2, 3)) <= 1)
    assert np.all(ts.final_obs[done].sum(axis=(1, 2, 3)) >= 5)  # the finished game's board
    np.testing.assert_array_equal(ts.obs[~done], ts.final_obs[~done])
    assert np.all(ts.reward[~done] == 0.0)
