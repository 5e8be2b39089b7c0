"""Robot in a room (Russell & Norvig's 4×3 world): dynamics, rewards, the transition model,
and value iteration against the book's utilities and optimal policies.

Book coordinates: (x, y), x = column 1..4 from the left, y = row 1..3 from the bottom; cell
``s = 4(y − 1) + (x − 1)``. Wall (2, 2); exits +1 at (4, 3), −1 at (4, 2); start (1, 1).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl import envs
from purerl.envs.gridworld import cell_index
from purerl.planning import policy_evaluation, value_iteration

UP, RIGHT, DOWN, LEFT = range(4)
EXITS = {cell_index(4, 3), cell_index(4, 2)}
WALL = cell_index(2, 2)
DECISION_CELLS = [s for s in range(12) if s not in EXITS and s != WALL]


def model(step_reward=-0.04, intended_prob=0.8):
    env, params = envs.make("RobotInRoom-v0")
    return env.transition_model(
        params.replace(step_reward=step_reward, intended_prob=intended_prob)
    )


def optimal_policy(step_reward, gamma):
    P, R, terminal = model(step_reward)
    V, Q = value_iteration(P, R, terminal, gamma=gamma, tol=1e-7)
    return np.asarray(V), np.asarray(Q), np.asarray(Q).argmax(-1)


def step_from(env, params, cell, action, key):
    """One env transition from ``cell`` (no auto-reset): (next cell, reward, terminated)."""
    state = envs.gridworld.RoomState(cell=jnp.int32(cell), time=0)
    _, new, reward, terminated, _ = env.step_env(key, state, action, params)
    return new.cell, reward, terminated


# ---------------------------------------------------------------- dynamics and rewards


def test_registered_and_listed():
    assert "RobotInRoom-v0" in envs.registered()
    env, params = envs.make("RobotInRoom-v0", step_reward=-2.0, intended_prob=1.0)
    assert (params.step_reward, params.intended_prob) == (-2.0, 1.0)
    assert env.observation_space(params).shape == (12,)
    assert env.action_space(params).n == 4


@pytest.mark.parametrize("field, value", [("intended_prob", 1.5), ("max_steps_in_episode", 0)])
def test_bad_params_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        envs.make("RobotInRoom-v0", **{field: value})


def test_reset_is_the_start_cell_one_hot_and_indexable():
    env, params = envs.make("RobotInRoom-v0")
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(obs, np.eye(12)[cell_index(1, 1)])
    assert int(env.state_index(obs)) == 0
    n, index = envs.tabular_states(env, params)
    assert n == 12 and int(index(jax.nn.one_hot(9, 12))) == 9


@pytest.mark.parametrize(
    "start, action, expected, reward, terminated",
    [
        ((1, 1), UP, (1, 2), -0.04, False),
        ((1, 1), LEFT, (1, 1), -0.04, False),  # off the grid: stays
        ((2, 1), UP, (2, 1), -0.04, False),  # into the wall: stays
        ((3, 3), RIGHT, (4, 3), 0.96, True),  # -0.04 + 1, the +1 exit
        ((3, 2), RIGHT, (4, 2), -1.04, True),  # -0.04 - 1, the -1 exit
        ((4, 1), UP, (4, 2), -1.04, True),
    ],
)
def test_deterministic_moves_rewards_and_exits(start, action, expected, reward, terminated):
    env, params = envs.make("RobotInRoom-v0", intended_prob=1.0)
    cell, r, term = step_from(env, params, cell_index(*start), action, jax.random.PRNGKey(3))
    assert int(cell) == cell_index(*expected)
    assert float(r) == pytest.approx(reward)
    assert bool(term) is terminated


def test_sampled_moves_follow_the_transition_model():
    """4,000 samples per (cell, action): empirical next-cell frequencies within 0.025 of P
    (binomial std ≤ 0.008, so this is > 3σ yet catches any wrong 0.1/0.8 split)."""
    env, params = envs.make("RobotInRoom-v0")
    P, _, _ = model()
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)

    @jax.jit
    def frequencies(cell, action):
        nxt = jax.vmap(lambda k: step_from(env, params, cell, action, k)[0])(keys)
        return jnp.mean(jax.nn.one_hot(nxt, 12), axis=0)

    for s in DECISION_CELLS:
        for a in range(4):
            np.testing.assert_allclose(frequencies(s, a), P[s, a], atol=0.025)


def test_transition_model_is_stochastic_and_rewards_are_expected_rewards():
    P, R, terminal = model()
    np.testing.assert_allclose(np.asarray(P).sum(-1), 1.0, atol=1e-6)
    assert set(np.flatnonzero(terminal)) == EXITS | {WALL}
    # From (3, 3) going right: 0.8 into +1, 0.1 up (bump, stay), 0.1 down to (3, 2).
    s = cell_index(3, 3)
    assert P[s, RIGHT, cell_index(4, 3)] == pytest.approx(0.8)
    assert P[s, RIGHT, s] == pytest.approx(0.1)
    assert P[s, RIGHT, cell_index(3, 2)] == pytest.approx(0.1)
    assert R[s, RIGHT] == pytest.approx(-0.04 + 0.8 * 1.0)


def test_time_limit_truncates_without_terminating():
    env = envs.VecEnv.make("RobotInRoom-v0", num_envs=1, max_steps_in_episode=3)
    state = env.reset(jax.random.PRNGKey(0))
    for t in range(3):
        state, ts = env.step(jax.random.PRNGKey(t), state, jnp.array([LEFT]))  # bumps
    assert bool(ts.truncated[0]) and not bool(ts.terminated[0])
    assert float(ts.episode_return[0]) == pytest.approx(-0.12)


# ---------------------------------------------------------------- value iteration vs the book


def test_utilities_match_russell_norvig_figure_17_3():
    """R(s) = −0.04, γ = 1: the book's utilities (AIMA Fig. 17.3), to its three decimals."""
    V, _, _ = optimal_policy(-0.04, 1.0)
    book = {
        (1, 3): 0.812, (2, 3): 0.868, (3, 3): 0.918,
        (1, 2): 0.762, (3, 2): 0.660,
        (1, 1): 0.705, (2, 1): 0.655, (3, 1): 0.611, (4, 1): 0.388,
    }  # fmt: skip
    for (x, y), u in book.items():
        assert V[cell_index(x, y)] == pytest.approx(u, abs=6e-4), (x, y)


def test_optimal_policy_for_step_reward_minus_0_04():
    """AIMA Fig. 17.2(a), γ = 1. The shortest *safe* path: along the top row to +1.
    (3, 1) and (4, 1) go LEFT, the long way round: going up from (3, 1) leads to (3, 2), whose
    best move still risks a 0.1 slip into −1, and going up from (4, 1) enters −1 with 0.8.
    (3, 2) goes UP (0.1 slip into −1) rather than the longer way back left."""
    _, _, pi = optimal_policy(-0.04, 1.0)
    expected = {
        (1, 3): RIGHT, (2, 3): RIGHT, (3, 3): RIGHT,
        (1, 2): UP, (3, 2): UP,
        (1, 1): UP, (2, 1): LEFT, (3, 1): LEFT, (4, 1): LEFT,
    }  # fmt: skip
    assert {xy: int(pi[cell_index(*xy)]) for xy in expected} == expected


def test_optimal_policy_for_step_reward_minus_2():
    """AIMA Fig. 17.2(b), R(s) < −1.6284: living hurts more than −1, so rush to the nearest
    exit. (3, 2) walks straight into −1 (−2 − 1 = −3 beats at least two more steps), (4, 1)
    steps up into −1; the bottom row heads right to reach it; the rest take the top row to +1."""
    _, _, pi = optimal_policy(-2.0, 1.0)
    expected = {
        (1, 3): RIGHT, (2, 3): RIGHT, (3, 3): RIGHT,
        (1, 2): UP, (3, 2): RIGHT,
        (1, 1): RIGHT, (2, 1): RIGHT, (3, 1): RIGHT, (4, 1): UP,
    }  # fmt: skip
    assert {xy: int(pi[cell_index(*xy)]) for xy in expected} == expected


def test_optimal_policy_for_step_reward_plus_0_01_avoids_both_exits():
    """AIMA Fig. 17.2(b), R(s) > 0: life is good, so never leave. With γ = 0.999 staying
    forever is worth 0.01/(1 − γ) = 10 > 1.01 for exiting at +1 (with γ = 1 the values are
    infinite; with γ ≤ 0.99 exiting at +1 wins). Next to the exits the only actions with no
    chance of exiting are: (3, 3) LEFT, (3, 2) LEFT (into the wall), (4, 1) DOWN (into the
    edge); everywhere the chosen action has probability 0 of reaching an exit."""
    P, _, _ = model(0.01)
    _, _, pi = optimal_policy(0.01, 0.999)
    assert int(pi[cell_index(3, 3)]) == LEFT
    assert int(pi[cell_index(3, 2)]) == LEFT
    assert int(pi[cell_index(4, 1)]) == DOWN
    for s in DECISION_CELLS:
        assert sum(float(P[s, pi[s], e]) for e in EXITS) == 0.0, s


@pytest.mark.parametrize("boundary, cell", [(-0.0850, (2, 1)), (-0.0221, (4, 1))])
def test_policy_changes_at_the_books_thresholds(boundary, cell):
    """AIMA Fig. 17.2(b) gives the step rewards where the optimal policy changes; at two of
    them (−0.0850 and −0.0221) the action in ``cell`` flips within ±0.0002 of the book's
    value, and nowhere else in the grid."""
    _, _, below = optimal_policy(boundary - 0.0002, 1.0)
    _, _, above = optimal_policy(boundary + 0.0002, 1.0)
    changed = [s for s in DECISION_CELLS if below[s] != above[s]]
    assert changed == [cell_index(*cell)]


def test_random_policy_value_is_far_below_optimal():
    """Context for the learning tests: the uniform random policy's expected return from the
    start (about −1.59) is far below the optimal 0.705."""
    P, R, terminal = model()
    V_random = policy_evaluation(P, R, terminal, jnp.full((12, 4), 0.25), gamma=1.0)
    assert float(V_random[0]) < -1.0
