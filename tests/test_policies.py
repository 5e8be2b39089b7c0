"""Tests for purerl/policies.py: greedy / ε-greedy action selection and the linear schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.policies import epsilon_greedy, greedy, linear_schedule

N_DRAWS = 20_000
N_ACTIONS = 4
GREEDY = 2
# Binomial std of a frequency over 20 000 draws is at most 0.0035; 0.015 is > 4 sigma.
FREQ_TOL = 0.015
# One shape for every ε-greedy call: each new shape costs a compile of the PRNG (~1 s on CPU).
Q = jnp.tile(jnp.array([0.0, 0.0, 1.0, 0.0]), (N_DRAWS, 1))
select = jax.jit(epsilon_greedy)


def frequencies(actions):
    return np.bincount(np.asarray(actions), minlength=N_ACTIONS) / len(actions)


def test_greedy_picks_argmax_and_first_on_ties():
    q = jnp.array([[1.0, 3.0, 2.0], [5.0, 5.0, 1.0], [0.0, 2.0, 2.0], [7.0, 7.0, 7.0]])
    np.testing.assert_array_equal(greedy(q), [1, 0, 1, 0])
    assert greedy(q).dtype == jnp.int32
    assert greedy(jnp.array([0.0, -1.0, 4.0])).shape == ()
    assert greedy(jnp.zeros((2, 3, 4))).shape == (2, 3)


def test_greedy_matches_numpy_argmax():
    q = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    np.testing.assert_array_equal(greedy(q), np.argmax(q, axis=-1))


def test_epsilon_zero_is_greedy(key):
    q = jax.random.normal(key, (N_DRAWS, N_ACTIONS))
    for k in jax.random.split(jax.random.PRNGKey(1), 3):
        np.testing.assert_array_equal(select(k, q, 0.0), greedy(q))


def test_epsilon_one_is_uniform(key):
    # Strongly peaked Q-values: any leak of the greedy action would show.
    actions = np.asarray(select(key, Q * 10.0, 1.0))
    assert actions.dtype == np.int32 and actions.shape == (N_DRAWS,)
    assert actions.min() >= 0 and actions.max() < N_ACTIONS
    np.testing.assert_allclose(frequencies(actions), 1 / N_ACTIONS, atol=FREQ_TOL)


@pytest.mark.parametrize("epsilon", [0.3, 0.8])
def test_epsilon_greedy_frequencies(key, epsilon):
    expected = np.full(N_ACTIONS, epsilon / N_ACTIONS)
    expected[GREEDY] = 1 - epsilon + epsilon / N_ACTIONS
    np.testing.assert_allclose(frequencies(select(key, Q, epsilon)), expected, atol=FREQ_TOL)


def test_epsilon_greedy_eager_equals_jit_and_traced_epsilon(key):
    np.testing.assert_array_equal(epsilon_greedy(key, Q, 0.3), select(key, Q, 0.3))
    np.testing.assert_array_equal(select(key, Q, jnp.float32(0.0)), np.full(N_DRAWS, GREEDY))
    freq_greedy = frequencies(select(key, Q, jnp.float32(0.5)))[GREEDY]
    np.testing.assert_allclose(freq_greedy, 0.625, atol=FREQ_TOL)


def test_epsilon_greedy_envs_draw_independently(key):
    # Rows are envs. Pairs of envs (2j, 2j+1) at ε = 1: the joint action is uniform over the
    # 16 pairs (cell std ≈ 0.0024 over 10 000 pairs; tolerance 0.012).
    a = np.asarray(select(key, Q, 1.0)).reshape(-1, 2)
    joint = np.bincount(a[:, 0] * N_ACTIONS + a[:, 1], minlength=N_ACTIONS**2) / len(a)
    np.testing.assert_allclose(joint, 1 / N_ACTIONS**2, atol=0.012)
    # The explore coin is per env too: at ε = .5 both envs act greedily with probability
    # (1 - ε + ε/4)^2 = 0.390625, where one shared coin would give 0.53125.
    a = np.asarray(select(jax.random.PRNGKey(5), Q, 0.5)).reshape(-1, 2)
    both_greedy = np.mean((a[:, 0] == GREEDY) & (a[:, 1] == GREEDY))
    np.testing.assert_allclose(both_greedy, 0.390625, atol=0.025)


def test_epsilon_greedy_same_key_same_result_different_keys_differ(key):
    a1 = select(key, Q, 0.7)
    np.testing.assert_array_equal(a1, select(key, Q, 0.7))
    a2 = select(jax.random.PRNGKey(1), Q, 0.7)
    assert np.mean(np.asarray(a1) != np.asarray(a2)) > 0.3


def test_epsilon_greedy_shapes(key):
    for shape in [(3,), (2, 7, 3)]:
        out = jax.eval_shape(epsilon_greedy, key, jnp.zeros(shape), 0.5)
        assert out.shape == shape[:-1] and out.dtype == jnp.int32


# --------------------------------------------------------------------------------------------
# linear_schedule


def test_linear_schedule_endpoints_and_midpoint():
    np.testing.assert_allclose(linear_schedule(1.0, 0.1, 100, 0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(linear_schedule(1.0, 0.1, 100, 50), 0.55, rtol=1e-6)
    np.testing.assert_allclose(linear_schedule(1.0, 0.1, 100, 25), 0.775, rtol=1e-6)
    np.testing.assert_allclose(linear_schedule(1.0, 0.1, 100, 100), 0.1, rtol=1e-6)
    # increasing schedules work too
    np.testing.assert_allclose(linear_schedule(0.0, 2.0, 10, 3), 0.6, rtol=1e-6)


@pytest.mark.parametrize("count", [101, 1000, 10**6])
def test_linear_schedule_clamps_after_duration(count):
    np.testing.assert_allclose(linear_schedule(1.0, 0.1, 100, count), 0.1, rtol=1e-6)


@pytest.mark.parametrize("duration", [0, -5, 0.0])
def test_linear_schedule_nonpositive_duration_is_end(duration):
    for count in [0, 3, 1000]:
        np.testing.assert_allclose(linear_schedule(1.0, 0.25, duration, count), 0.25)


def test_linear_schedule_matches_formula():
    counts = np.arange(0, 300, 7)
    got = np.array([float(linear_schedule(0.9, 0.05, 200, int(c))) for c in counts])
    np.testing.assert_allclose(got, 0.9 + (0.05 - 0.9) * np.minimum(counts / 200, 1), 1e-5)


def test_linear_schedule_traced_under_jit():
    fn = jax.jit(lambda c: linear_schedule(1.0, 0.0, 40, c))
    for count, want in [(0, 1.0), (10, 0.75), (40, 0.0), (90, 0.0)]:
        np.testing.assert_allclose(fn(jnp.int32(count)), want, atol=1e-6)
    # every argument traced (a vmapped sweep of schedules)
    vals = jax.jit(jax.vmap(linear_schedule))(
        jnp.array([1.0, 1.0, 0.5]),
        jnp.array([0.0, 0.5, 0.5]),
        jnp.array([10.0, 0.0, 4.0]),
        jnp.array([5, 5, 2]),
    )
    np.testing.assert_allclose(vals, [0.5, 0.5, 0.5], atol=1e-6)


def test_linear_schedule_fractional_duration():
    np.testing.assert_allclose(linear_schedule(1.0, 0.0, 0.5, 0.25), 0.5, atol=1e-6)
