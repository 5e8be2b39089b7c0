"""Tests for purerl/returns.py against plain NumPy loops written from the docstring maths."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.returns import discounted_returns, n_step_targets

GAMMA = 0.9


# --------------------------------------------------------------------------------------------
# References (float64 NumPy loops over the first axis; trailing axes broadcast elementwise)


def ref_discounted_returns(r, d, v=None, done=None):
    """G_t = r_t + d_t * (v_t if done_t or t == T-1 else G_{t+1})."""
    r, d = np.asarray(r, np.float64), np.asarray(d, np.float64)
    v = np.zeros_like(r) if v is None else np.asarray(v, np.float64)
    done = np.zeros(r.shape, bool) if done is None else np.asarray(done, bool)
    T = r.shape[0]
    g = np.zeros_like(r)
    for t in reversed(range(T)):
        nxt = v[t] if t == T - 1 else np.where(done[t], v[t], g[t + 1])
        g[t] = r[t] + d[t] * nxt
    return g


def ref_n_step(r, d, v, n, done=None):
    """G^(n)_t = r_t + d_t * (v_t if n == 1 or done_t or t == T-1 else G^(n-1)_{t+1})."""
    r, d, v = (np.asarray(x, np.float64) for x in (r, d, v))
    done = np.zeros(r.shape, bool) if done is None else np.asarray(done, bool)
    T = r.shape[0]

    def g(t, k):
        if k == 1 or t == T - 1:
            return r[t] + d[t] * v[t]
        return r[t] + d[t] * np.where(done[t], v[t], g(t + 1, k - 1))

    return np.stack([g(t, n) for t in range(T)])


def ref_n_step_closed_form(r, d, v, n, done):
    """Σ_{k<m} (Π_{j<k} d_{t+j}) r_{t+k} + (Π_{j<m} d_{t+j}) v_{t+m-1}, for 1-D sequences;
    m is the window length: n, cut after the first done step and at the sequence end."""
    r, d, v = (np.asarray(x, np.float64) for x in (r, d, v))
    T = len(r)
    out = np.zeros(T)
    for t in range(T):
        m = 1
        while m < n and t + m - 1 < T - 1 and not done[t + m - 1]:
            m += 1
        total, prod = 0.0, 1.0
        for k in range(m):
            total += prod * r[t + k]
            prod *= d[t + k]
        out[t] = total + prod * v[t + m - 1]
    return out


def random_episode_data(seed, shape):
    """Rewards, values, and episode ends with both terminations (discount 0, done) and
    truncations (discount γ, done: bootstrap from v_t)."""
    rng = np.random.default_rng(seed)
    r = rng.normal(size=shape).astype(np.float32)
    v = rng.normal(size=shape).astype(np.float32)
    u = rng.uniform(size=shape)
    terminated = u < 0.15
    truncated = (u >= 0.15) & (u < 0.3)
    d = np.where(terminated, 0.0, GAMMA).astype(np.float32)
    done = terminated | truncated
    assert terminated[:-1].any() and truncated[:-1].any()  # mid-sequence ends of both kinds
    return r, d, v, done


# --------------------------------------------------------------------------------------------
# discounted_returns


def test_discounted_returns_hand_computed():
    g = discounted_returns(jnp.ones(3), jnp.full(3, 0.5))
    np.testing.assert_allclose(g, [1.75, 1.5, 1.0], rtol=1e-6)


def test_discounted_returns_hand_computed_termination_and_truncation():
    r = jnp.array([1.0, 2.0, 3.0, 4.0])
    # step 1 terminates (discount 0); step 2 is truncated (discount 0.5, bootstraps from v_2).
    d = jnp.array([0.5, 0.0, 0.5, 0.5])
    v = jnp.array([10.0, 20.0, 30.0, 40.0])
    done = jnp.array([False, True, True, False])
    g = discounted_returns(r, d, v_t=v, done_t=done)
    # G_3 = 4 + .5*40 = 24; G_2 = 3 + .5*30 = 18; G_1 = 2 + 0 = 2; G_0 = 1 + .5*2 = 2
    np.testing.assert_allclose(g, [2.0, 2.0, 18.0, 24.0], rtol=1e-6)


def test_discounted_returns_zero_discount_stops_the_sum_without_done():
    # Without done_t, a discount of 0 alone already stops the sum.
    g = discounted_returns(jnp.array([1.0, 1.0, 1.0]), jnp.array([0.5, 0.0, 0.5]))
    np.testing.assert_allclose(g, [1.5, 1.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_discounted_returns_matches_loop(seed):
    r, d, v, done = random_episode_data(seed, (23,))
    got = discounted_returns(r, d, v_t=v, done_t=done)
    np.testing.assert_allclose(got, ref_discounted_returns(r, d, v, done), rtol=1e-5, atol=1e-5)


def test_discounted_returns_monte_carlo_default_values():
    r, d, _, _ = random_episode_data(2, (17,))
    got = discounted_returns(r, d)
    np.testing.assert_allclose(got, ref_discounted_returns(r, d), rtol=1e-5, atol=1e-5)


def test_discounted_returns_truncation_bootstraps_from_value():
    # A truncated step keeps discount γ: changing v at that step must change G there.
    r, d, v, done = random_episode_data(3, (20,))
    trunc = np.flatnonzero(done & (d > 0))[0]
    v2 = v.copy()
    v2[trunc] += 1.0
    g1 = np.asarray(discounted_returns(r, d, v_t=v, done_t=done))
    g2 = np.asarray(discounted_returns(r, d, v_t=v2, done_t=done))
    np.testing.assert_allclose(g2[trunc] - g1[trunc], GAMMA, rtol=1e-5)
    # ... and nothing after the boundary changes.
    np.testing.assert_array_equal(g1[trunc + 1 :], g2[trunc + 1 :])


def test_discounted_returns_trailing_dims():
    r, d, v, done = random_episode_data(4, (19, 3))
    got = discounted_returns(r, d, v_t=v, done_t=done)
    assert got.shape == (19, 3)
    np.testing.assert_allclose(got, ref_discounted_returns(r, d, v, done), rtol=1e-5, atol=1e-5)


def test_discounted_returns_jit_and_vmap():
    r, d, v, done = random_episode_data(5, (4, 15))  # [B, T]
    fn = lambda r, d, v, done: discounted_returns(r, d, v_t=v, done_t=done)  # noqa: E731
    jitted = jax.jit(fn)(r[0], d[0], v[0], done[0])
    np.testing.assert_allclose(jitted, ref_discounted_returns(r[0], d[0], v[0], done[0]), 1e-5)
    batched = jax.jit(jax.vmap(fn))(r, d, v, done)
    looped = np.stack([np.asarray(fn(r[b], d[b], v[b], done[b])) for b in range(4)])
    np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-6)
    refs = np.stack([ref_discounted_returns(r[b], d[b], v[b], done[b]) for b in range(4)])
    np.testing.assert_allclose(batched, refs, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# n_step_targets


def test_n_step_hand_computed():
    r = jnp.array([1.0, 2.0, 3.0])
    d = jnp.array([0.5, 0.5, 0.5])
    v = jnp.array([10.0, 20.0, 30.0])
    # n=2: G_0 = 1 + .5*(2 + .5*20) = 7; G_1 = 2 + .5*(3 + .5*30) = 11; G_2 = 3 + .5*30 = 18
    np.testing.assert_allclose(n_step_targets(r, d, v, 2), [7.0, 11.0, 18.0], rtol=1e-6)
    # n=1: r + d v
    np.testing.assert_allclose(n_step_targets(r, d, v, 1), [6.0, 12.0, 18.0], rtol=1e-6)


def test_n_step_hand_computed_with_termination_and_truncation():
    r = jnp.array([1.0, 1.0, 1.0, 1.0])
    d = jnp.array([0.5, 0.0, 0.5, 0.5])  # step 1 terminates
    v = jnp.array([4.0, 8.0, 12.0, 16.0])
    done = jnp.array([False, True, True, False])  # step 2 is truncated
    # n=3: G_0 = 1 + .5*(1 + 0) = 1.5; G_1 = 1; G_2 = 1 + .5*12 = 7; G_3 = 1 + .5*16 = 9
    np.testing.assert_allclose(n_step_targets(r, d, v, 3, done_t=done), [1.5, 1, 7, 9], 1e-6)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 40])
def test_n_step_matches_loops(n):
    r, d, v, done = random_episode_data(10 + n, (21,))
    got = n_step_targets(r, d, v, n, done_t=done)
    np.testing.assert_allclose(got, ref_n_step(r, d, v, n, done), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, ref_n_step_closed_form(r, d, v, n, done), rtol=1e-5, atol=1e-5)


def test_n_step_one_is_one_step_target():
    r, d, v, done = random_episode_data(6, (16,))
    got = n_step_targets(r, d, v, 1, done_t=done)
    np.testing.assert_allclose(got, r + d * v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(n_step_targets(r, d, v, 1), r + d * v, rtol=1e-6, atol=1e-6)


def test_n_step_longer_than_sequence_equals_bootstrapped_return():
    r, d, v, done = random_episode_data(7, (12,))
    long = n_step_targets(r, d, v, 30, done_t=done)
    np.testing.assert_allclose(
        long, discounted_returns(r, d, v_t=v, done_t=done), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(long, n_step_targets(r, d, v, 12, done_t=done), 1e-6, 1e-6)


def test_n_step_without_done():
    r, d, v, _ = random_episode_data(8, (14,))
    got = n_step_targets(r, d, v, 4)
    np.testing.assert_allclose(got, ref_n_step(r, d, v, 4), rtol=1e-5, atol=1e-5)


def test_n_step_trailing_dims():
    r, d, v, done = random_episode_data(9, (13, 3))
    got = n_step_targets(r, d, v, 3, done_t=done)
    assert got.shape == (13, 3)
    np.testing.assert_allclose(got, ref_n_step(r, d, v, 3, done), rtol=1e-5, atol=1e-5)


def test_n_step_jit_and_vmap():
    r, d, v, done = random_episode_data(11, (3, 10))  # [B, T]
    fn = functools.partial(n_step_targets, n=3)
    jitted = jax.jit(lambda r, d, v, done: fn(r, d, v, done_t=done))
    np.testing.assert_allclose(
        jitted(r[0], d[0], v[0], done[0]), ref_n_step(r[0], d[0], v[0], 3, done[0]), 1e-5, 1e-5
    )
    batched = jax.jit(jax.vmap(lambda r, d, v, done: fn(r, d, v, done_t=done)))(r, d, v, done)
    looped = np.stack([np.asarray(fn(r[b], d[b], v[b], done_t=done[b])) for b in range(3)])
    np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-6)
    refs = np.stack([ref_n_step(r[b], d[b], v[b], 3, done[b]) for b in range(3)])
    np.testing.assert_allclose(batched, refs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [0, -1])
def test_n_step_rejects_n_below_one(n):
    x = jnp.ones(3)
    with pytest.raises(ValueError, match="n"):
        n_step_targets(x, x, x, n)
