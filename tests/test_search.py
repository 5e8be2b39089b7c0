"""Tree search over board games (purerl/search.py, on mctx): the game as the model, the
two-player sign convention, masking, and known positions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl import search
from purerl.envs import games
from purerl.policies import Categorical

TTT = games.TIC_TAC_TOE
C4 = games.CONNECT_FOUR


def _board(rows: list[str]) -> jnp.ndarray:
    """A canonical board from text: ``x`` = the player to move, ``o`` = the other, ``.``."""
    cells = [{"x": 1, "o": -1, ".": 0}[ch] for row in rows for ch in row]
    return jnp.asarray(cells, jnp.int8)


# x to move wins with cell 2 (top row); o threatens nothing it can finish first
WIN_IN_ONE = _board(["xx.", "oo.", "..."])
# o has two open lines (cells 2 and 6): whatever x does, o wins next: a lost position for x
LOST = _board(["oo.", "ox.", ".x."])


def _plain(game, key, boards, simulations, **options):
    """Plain MCTS (uniform prior, random playouts) from each of ``boards``."""
    evaluate = search.rollout_evaluator(game)
    return search.run(game, evaluate, None, key, boards, num_simulations=simulations, **options)


def _uniform_net(params, obs):
    return jnp.zeros((TTT.num_actions,), jnp.float32), jnp.float32(0.0)


def test_recurrent_fn_is_the_games_own_step():
    """The model's next board, reward and discount are ``game.play``'s, for every action of a
    batch of random positions, and a finished game stays finished with reward 0."""
    model = search.recurrent_fn(TTT, search.network_evaluator(TTT, _uniform_net))
    key = jax.random.PRNGKey(0)
    boards = jnp.stack([WIN_IN_ONE, LOST, TTT.initial_board()])
    for action in range(9):
        actions = jnp.full((3,), action)
        legal = jax.vmap(TTT.legal_mask)(boards)[:, action]
        out, (nb, done) = model(None, key, actions, (boards, jnp.zeros(3, bool)))
        ref_board, ref_reward, ref_terminal = jax.vmap(TTT.play)(boards, actions)
        np.testing.assert_array_equal(nb, ref_board)
        np.testing.assert_array_equal(out.reward, ref_reward)
        np.testing.assert_array_equal(done, ref_terminal)
        np.testing.assert_array_equal(out.discount, np.where(ref_terminal, 0.0, -1.0))
        assert bool(jnp.all(jnp.where(legal, True, ref_terminal)))  # illegal ends the game
    out, (nb, done) = model(None, key, jnp.zeros(3, int), (boards, jnp.ones(3, bool)))
    np.testing.assert_array_equal(nb, boards)
    np.testing.assert_array_equal(out.reward, 0.0)
    np.testing.assert_array_equal(out.discount, 0.0)
    assert bool(jnp.all(done))


@pytest.mark.parametrize(("kind", "simulations"), [("puct", 64), ("gumbel", 16)])
def test_search_finds_the_win_in_one_every_time(kind, simulations):
    """Plain MCTS (uniform prior, random playouts) plays the winning move in 64 of 64
    searches with different keys; a uniformly random mover would pick it 1 time in 5.
    PUCT plays its most visited move; Gumbel search without root noise (evaluation) its
    choice, after trying every legal move (PUCT at 32 simulations sometimes never tries the
    win: an unvisited move counts as the worst sibling)."""
    boards = jnp.broadcast_to(WIN_IN_ONE, (64, 9))
    run = jax.jit(lambda k, b: _plain(TTT, k, b, simulations, kind=kind, gumbel_scale=0.0))
    out = run(jax.random.PRNGKey(1), boards)
    best = search.best_action(out, jax.vmap(TTT.legal_mask)(boards))
    np.testing.assert_array_equal(best, 2)
    if kind == "gumbel":
        np.testing.assert_array_equal(out.action, 2)


def test_value_sign_flips_between_players():
    """The root value of a won position is positive, of a lost one negative, for the player
    to move: the opponent's win one ply below counts against the mover (discount −1)."""
    run = jax.jit(lambda k, b: _plain(TTT, k, b, 128, kind="puct"))
    out = run(jax.random.PRNGKey(2), jnp.stack([WIN_IN_ONE, LOST]))
    value = out.search_tree.summary().value
    assert value[0] > 0.5, value
    assert value[1] < -0.5, value


@pytest.mark.parametrize("kind", search.SEARCH_KINDS)
def test_illegal_moves_never_get_visits(kind):
    """At every node of the tree (not only the root, where mctx masks ``invalid_actions``),
    occupied cells / full columns have zero visits."""
    key = jax.random.PRNGKey(3)
    boards = jnp.stack([WIN_IN_ONE, LOST, TTT.initial_board(), _board(["xo.", "...", "..."])])
    out = _plain(TTT, key, boards, 64, kind=kind)
    tree = out.search_tree
    node_boards, node_done = tree.embeddings  # [B, nodes, cells], [B, nodes]
    legal = jax.vmap(jax.vmap(TTT.legal_mask))(node_boards)
    visits = tree.children_visits
    expanded = (tree.node_visits > 0) & ~node_done  # below a finished game nothing counts
    illegal_visits = jnp.where(expanded[..., None] & ~legal, visits, 0)
    assert int(jnp.sum(illegal_visits)) == 0
    assert float(jnp.sum(jnp.where(~jax.vmap(TTT.legal_mask)(boards), out.action_weights, 0))) == 0


def test_connect_four_search_blocks_a_column_threat():
    """Connect Four: the opponent has three stacked in column 0; a 64-simulation plain MCTS
    (Gumbel root selection, random playouts) blocks it (plays column 0) in every one of 16
    searches; a random mover would block 1 time in 7."""
    rows = [".......", ".......", ".......", "o......", "o......", "ox.x..."]
    board = _board(rows)
    boards = jnp.broadcast_to(board, (16, 42))
    out = _plain(C4, jax.random.PRNGKey(4), boards, 64, kind="gumbel", gumbel_scale=0.0)
    np.testing.assert_array_equal(out.action, 0)
    opponent = jax.jit(jax.vmap(search.mcts_opponent(C4, 128)))
    moves = np.asarray(opponent(jax.random.split(jax.random.PRNGKey(5), 16), boards))
    assert np.sum(moves == 0) >= 15, moves  # random playouts: a rare miss is allowed


def test_mcts_opponent_plays_legal_winning_moves():
    opponent = jax.jit(search.mcts_opponent(TTT, 32))
    assert int(opponent(jax.random.PRNGKey(5), WIN_IN_ONE)) == 2


def test_bad_model_and_budget_are_refused():
    from purerl.envs import make

    env, _ = make("CartPole-v1")
    boards = TTT.initial_board()[None]
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="^search: needs a deterministic"):
        search.run(env, search.rollout_evaluator(TTT), None, key, boards, num_simulations=4)
    with pytest.raises(ValueError, match="^num_simulations: must be >= 1"):
        _plain(TTT, key, boards, 0)
    with pytest.raises(ValueError, match="^search: must be one of"):
        _plain(TTT, key, boards, 4, kind="ucb")


def test_masked_categorical_stays_finite():
    """Illegal actions at logit −inf: entropy, log-probs of legal actions and their gradients
    are finite; sampling never picks an illegal action. Reference entropy of [0, −inf, 1]:
    p = softmax([0, 1]) = (0.2689, 0.7311), H = 0.5822."""
    logits = jnp.array([0.0, -jnp.inf, 1.0])
    dist = Categorical(logits)
    p = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(dist.entropy(), -(p * np.log(p)).sum(), rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(), 0.5822, atol=1e-4)
    assert np.isfinite(dist.log_prob(jnp.array(2)))

    def objective(x):
        return Categorical(x).entropy() + Categorical(x).log_prob(jnp.array(0))

    grads = jax.grad(objective)(logits)
    assert np.all(np.isfinite(grads))
    samples = jax.vmap(dist.sample)(jax.random.split(jax.random.PRNGKey(0), 2000))
    assert not np.any(np.asarray(samples) == 1)
    assert set(np.unique(samples).tolist()) == {0, 2}
    batch = Categorical(jnp.stack([logits, jnp.array([-jnp.inf, 0.0, -jnp.inf])]))
    assert np.all(np.isfinite(batch.entropy()))
    np.testing.assert_allclose(batch.entropy()[1], 0.0)
