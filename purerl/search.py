"""L2: Monte Carlo tree search over a two-player board game, through DeepMind's ``mctx``.

The game's own rules are the model: ``recurrent_fn`` plays the searched action with the pure
``game.play`` (exact for a deterministic game), so nothing is learned about the dynamics. A
node's embedding is ``(board, terminal)``: the canonical board (``+1`` = the stones of the
player to move, see ``purerl.envs.games``) and whether the game is over.

Two-player zero-sum search uses mctx's sign convention: the reward of an edge is the mover's,
and ``discount = −1`` between plies, so ``Q(s, a) = r + (−1)·V(s')`` turns the next mover's
value into the current mover's; at a terminal node ``discount = 0`` and the value is 0.
Illegal actions get a prior logit of ``−inf``-like (``finfo.min``) inside the tree and are
``invalid_actions`` at the root, so they are never visited.

An *evaluator* ``evaluate(params, key, boards [B, cells]) -> (logits [B, A], value [B])``
scores leaves: ``network_evaluator`` (AlphaZero: the policy-value network on the observation)
or ``rollout_evaluator`` (plain MCTS: uniform prior, value of one random playout).

Selection: ``kind="puct"`` is AlphaZero's PUCT (``mctx.muzero_policy``, Silver et al. 2017,
2018), optionally with Dirichlet noise at the root; ``kind="gumbel"`` is Gumbel MuZero's
sequential halving (``mctx.gumbel_muzero_policy``, Danihelka et al. 2022), whose
``action_weights`` are an improved policy even at a handful of simulations.

Example:
    >>> game = games.TIC_TAC_TOE
    >>> out = search.run(game, search.rollout_evaluator(game), None, key, boards,
    ...                  num_simulations=64, kind="puct")
    >>> out.action_weights.shape  # [B, 9]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import mctx
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

__all__ = [
    "SEARCH_KINDS",
    "check_model",
    "Evaluator",
    "masked_logits",
    "network_evaluator",
    "rollout_evaluator",
    "recurrent_fn",
    "root",
    "run",
    "best_action",
    "mcts_opponent",
]

SEARCH_KINDS = ("gumbel", "puct")

# evaluate(params, key, boards [B, cells]) -> (prior logits [B, A], value [B]) for the mover
Evaluator = Callable[[Any, PRNGKeyArray, Array], tuple[Array, Array]]


def masked_logits(logits: Float[Array, "B A"], legal: Bool[Array, "B A"]) -> Float[Array, "B A"]:
    """``logits`` with illegal actions at the lowest float (softmax gives them exactly 0,
    where ``−inf`` would make an all-illegal row NaN)."""
    return jnp.where(legal, logits, jnp.finfo(logits.dtype).min)


MODEL_METHODS = (
    "play",
    "legal_mask",
    "random_move",
    "observe",
    "board_from_obs",
    "initial_board",
)


def check_model(game: Any) -> None:
    """``ValueError`` unless ``game`` is a deterministic two-player game model with discrete
    moves (``purerl.envs.games.BoardGame``): a gymnax environment is not one — its ``step``
    may draw from a key, and its actions may be continuous, so it cannot be searched as an
    exact model."""
    missing = [m for m in MODEL_METHODS if not callable(getattr(game, m, None))]
    if missing or not getattr(game, "deterministic", False):
        raise ValueError(
            f"search: needs a deterministic two-player game with discrete moves "
            f"(purerl.envs.games.BoardGame: {', '.join(MODEL_METHODS)}), got "
            f"{type(game).__name__}" + (f" (no {', '.join(missing)})" if missing else "")
        )


def network_evaluator(game: Any, apply: Callable[[Any, Array], tuple[Array, Array]]) -> Evaluator:
    """Leaves scored by a policy-value network: ``apply(params, obs) -> (logits, value)`` for
    ONE observation ``game.observe(board)`` (vmapped here over the batch)."""

    def evaluate(params: Any, key: PRNGKeyArray, boards: Array) -> tuple[Array, Array]:
        obs = jax.vmap(game.observe)(boards)
        logits, value = jax.vmap(lambda o: apply(params, o))(obs)
        return logits, value

    return evaluate


def _playout_value(game: Any, key: PRNGKeyArray, board: Array) -> Float[Array, ""]:
    """The outcome, for the player to move on ``board``, of one game played on by uniformly
    random legal moves (a non-terminal board)."""

    def cond(c):
        return ~c[2]

    def body(c):
        key, board, done, sign, value = c
        key, move_key = jax.random.split(key)
        board, reward, terminal = game.play(board, game.random_move(move_key, board))
        # the mover of this ply is the root mover when sign = +1
        return key, board, terminal, -sign, jnp.where(terminal, sign * reward, value)

    init = (key, board, jnp.asarray(False), jnp.float32(1.0), jnp.float32(0.0))
    return jax.lax.while_loop(cond, body, init)[4]


def rollout_evaluator(game: Any) -> Evaluator:
    """Plain MCTS leaves (Kocsis & Szepesvári 2006; no network): a uniform prior over the
    actions and the value of one random playout from the leaf. ``params`` are unused."""

    def evaluate(params: Any, key: PRNGKeyArray, boards: Array) -> tuple[Array, Array]:
        keys = jax.random.split(key, boards.shape[0])
        value = jax.vmap(lambda k, b: _playout_value(game, k, b))(keys, boards)
        return jnp.zeros((boards.shape[0], game.num_actions), jnp.float32), value

    return evaluate


def recurrent_fn(game: Any, evaluate: Evaluator) -> Callable[..., Any]:
    """mctx's ``recurrent_fn(params, key, action [B], (board, terminal)) -> (output, embedding)``
    with the game's rules as the model (see the module docstring for the sign convention)."""

    def step(params: Any, key: PRNGKeyArray, action: Array, embedding: Any):
        board, done = embedding
        next_board, reward, terminal = jax.vmap(game.play)(board, action)
        next_board = jnp.where(done[:, None], board, next_board)  # a finished game stays put
        next_done = done | terminal
        logits, value = evaluate(params, key, next_board)
        legal = jax.vmap(game.legal_mask)(next_board)
        output = mctx.RecurrentFnOutput(
            reward=jnp.where(done, 0.0, reward).astype(jnp.float32),
            discount=jnp.where(next_done, 0.0, -1.0).astype(jnp.float32),
            prior_logits=masked_logits(logits, legal),
            value=jnp.where(next_done, 0.0, value).astype(jnp.float32),
        )
        return output, (next_board, next_done)

    return step


def root(
    game: Any, evaluate: Evaluator, params: Any, key: PRNGKeyArray, boards: Int[Array, "B cells"]
) -> mctx.RootFnOutput:
    """The search root for non-terminal ``boards``: the evaluator's prior (masked) and value."""
    logits, value = evaluate(params, key, boards)
    legal = jax.vmap(game.legal_mask)(boards)
    done = jnp.zeros((boards.shape[0],), bool)
    return mctx.RootFnOutput(
        prior_logits=masked_logits(logits, legal),
        value=value.astype(jnp.float32),
        embedding=(boards, done),
    )


def run(
    game: Any,
    evaluate: Evaluator,
    params: Any,
    key: PRNGKeyArray,
    boards: Int[Array, "B cells"],
    *,
    num_simulations: int,
    kind: str = "gumbel",
    gumbel_scale: float | ArrayLike = 1.0,
    dirichlet_fraction: float | ArrayLike = 0.0,
    dirichlet_alpha: float | ArrayLike = 0.3,
) -> mctx.PolicyOutput:
    """Search from each of ``boards`` (non-terminal, canonical for the player to move).

    Args:
        kind: ``"gumbel"`` (``gumbel_scale``: 1 samples the root's Gumbel noise, as in
            self-play; 0 is a deterministic search for evaluation) or ``"puct"``
            (``dirichlet_fraction`` of ``Dir(dirichlet_alpha)`` noise mixed into the root
            prior: AlphaZero's self-play uses 0.25 and α = 0.3 for chess; 0 for evaluation).
        num_simulations: simulations per root (static).

    Returns:
        ``mctx.PolicyOutput``: ``action`` (the searched move: PUCT samples it from the visit
        counts at temperature 1, Gumbel picks it), ``action_weights`` ``[B, A]`` (the improved
        policy: AlphaZero's training target) and the tree.
    """
    check_model(game)
    if kind not in SEARCH_KINDS:
        raise ValueError(f"search: must be one of {SEARCH_KINDS}, got {kind!r}")
    if int(num_simulations) < 1:
        raise ValueError(f"num_simulations: must be >= 1, got {num_simulations}")
    root_key, search_key = jax.random.split(key)
    start = root(game, evaluate, params, root_key, boards)
    invalid = ~jax.vmap(game.legal_mask)(boards)
    model = recurrent_fn(game, evaluate)
    if kind == "gumbel":
        return mctx.gumbel_muzero_policy(
            params,
            search_key,
            start,
            model,
            num_simulations,
            invalid_actions=invalid,
            max_num_considered_actions=game.num_actions,
            gumbel_scale=gumbel_scale,
        )
    return mctx.muzero_policy(
        params,
        search_key,
        start,
        model,
        num_simulations,
        invalid_actions=invalid,
        dirichlet_fraction=dirichlet_fraction,
        dirichlet_alpha=dirichlet_alpha,
    )


def best_action(output: mctx.PolicyOutput, legal: Bool[Array, "B A"]) -> Int[Array, " B"]:
    """The most visited legal action of each root (deterministic play)."""
    return jnp.argmax(jnp.where(legal, output.action_weights, -1.0), axis=-1)


def mcts_opponent(
    game: Any, num_simulations: int, *, kind: str = "gumbel"
) -> Callable[[PRNGKeyArray, Array], Array]:
    """A reference opponent ``opponent(key, board) -> move``: plain MCTS (uniform priors,
    random-playout values, no network) with ``num_simulations`` simulations.

    ``kind="gumbel"`` (default) selects at the root by sequential halving without noise, so
    every legal move is tried before the budget concentrates. ``python benchmarks/alphazero.py
    --parts references``: it blocked a Connect Four column threat in 31 of 32 searches at 64
    simulations, where PUCT over uniform priors (``kind="puct"``, the most visited move)
    blocked it in 14 (an untried move counts as its worst sibling, so PUCT may never try the
    one that matters)."""
    evaluate = rollout_evaluator(game)

    def opponent(key: PRNGKeyArray, board: Int[Array, " cells"]) -> Int[Array, ""]:
        boards = board[None]
        output = run(
            game,
            evaluate,
            None,
            key,
            boards,
            num_simulations=num_simulations,
            kind=kind,
            gumbel_scale=0.0,
        )
        if kind == "gumbel":
            return output.action[0]
        return best_action(output, jax.vmap(game.legal_mask)(boards))[0]

    return opponent
