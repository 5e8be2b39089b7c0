"""Tests for purerl/returns.py: ``lambda_returns`` and ``gae`` against plain NumPy loops written
from the docstring maths, hand-computed cases, and their identities."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.returns import discounted_returns, gae, lambda_returns

GAMMA = 0.9
LAM = 0.8
TOL = dict(rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# References (float64 NumPy loops over the first axis; trailing axes elementwise)


def ref_lambda_returns(r, d, v, lam, done=None):
    """G_t = r_t + d_t · (v_t if done_t or t = T−1 else (1 − λ)·v_t + λ·G_{t+1})."""
    r, d, v = (np.asarray(x, np.float64) for x in (r, d, v))
    done = np.zeros(r.shape, bool) if done is None else np.asarray(done, bool)
    T = r.shape[0]
    g = np.zeros_like(r)
    for t in reversed(range(T)):
        mixed = v[t] if t == T - 1 else (1 - lam) * v[t] + lam * g[t + 1]
        g[t] = r[t] + d[t] * np.where(done[t], v[t], mixed)
    return g


def ref_gae(r, d, values, v, lam, done=None):
    """δ_t = r_t + d_t·v_t − values_t;  A_t = δ_t + (0 if done_t or t = T−1 else d_t·λ·A_{t+1})."""
    r, d, values, v = (np.asarray(x, np.float64) for x in (r, d, values, v))
    done = np.zeros(r.shape, bool) if done is None else np.asarray(done, bool)
    T = r.shape[0]
    adv = np.zeros_like(r)
    for t in reversed(range(T)):
        delta = r[t] + d[t] * v[t] - values[t]
        nxt = 0.0 if t == T - 1 else np.where(done[t], 0.0, d[t] * lam * adv[t + 1])
        adv[t] = delta + nxt
    return adv


def rollout_data(seed, shape):
    """A consistent rollout: ``values = V(s_t)``; ``v_t = V(s_{t+1}) = values_{t+1}`` where no
    episode ends, the value of the true final observation where one ends (truncated steps,
    discount γ, bootstrap; terminated steps, discount 0), and a bootstrap value at the end."""
    rng = np.random.default_rng(seed)
    r = rng.normal(size=shape).astype(np.float32)
    values_ext = rng.normal(size=(shape[0] + 1, *shape[1:])).astype(np.float32)  # V(s_0..s_T)
    final_v = rng.normal(size=shape).astype(np.float32)
    u = rng.uniform(size=shape)
    terminated = u < 0.15
    truncated = (u >= 0.15) & (u < 0.3)
    terminated[shape[0] // 3], truncated[shape[0] // 3] = True, False  # one of each kind, for sure
    truncated[2 * shape[0] // 3], terminated[2 * shape[0] // 3] = True, False
    done = terminated | truncated
    d = np.where(terminated, 0.0, GAMMA).astype(np.float32)
    values = values_ext[:-1]
    v = np.where(done, final_v, values_ext[1:]).astype(np.float32)
    return r, d, values, v, done


# --------------------------------------------------------------------------------------------
# lambda_returns


def test_lambda_returns_hand_computed():
    r = jnp.array([1.0, 2.0, 3.0])
    d = jnp.array([0.5, 0.5, 0.5])
    v = jnp.array([10.0, 20.0, 30.0])
    # G_2 = 3 + .5·30 = 18; G_1 = 2 + .5·(.5·20 + .5·18) = 11.5; G_0 = 1 + .5·(.5·10 + .5·11.5)
    np.testing.assert_allclose(lambda_returns(r, d, v, 0.5), [6.375, 11.5, 18.0], rtol=1e-6)


def test_lambda_returns_hand_computed_with_termination_and_truncation():
    r = jnp.array([1.0, 2.0, 3.0])
    v = jnp.array([10.0, 20.0, 30.0])
    # step 1 terminates: G_1 = 2; G_0 = 1 + .5·(.5·10 + .5·2) = 4
    d = jnp.array([0.5, 0.0, 0.5])
    got = lambda_returns(r, d, v, 0.5, done_t=jnp.array([False, True, False]))
    np.testing.assert_allclose(got, [4.0, 2.0, 18.0], rtol=1e-6)
    # step 1 truncated (discount kept): G_1 = 2 + .5·20 = 12; G_0 = 1 + .5·(.5·10 + .5·12) = 6.5
    d = jnp.array([0.5, 0.5, 0.5])
    got = lambda_returns(r, d, v, 0.5, done_t=jnp.array([False, True, False]))
    np.testing.assert_allclose(got, [6.5, 12.0, 18.0], rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_lambda_returns_matches_loop(seed, lam):
    r, d, _, v, done = rollout_data(seed, (23,))
    got = lambda_returns(r, d, v, lam, done_t=done)
    np.testing.assert_allclose(got, ref_lambda_returns(r, d, v, lam, done), **TOL)


def test_lambda_returns_without_done():
    r, d, _, v, _ = rollout_data(2, (17,))
    got = lambda_returns(r, d, v, LAM)
    np.testing.assert_allclose(got, ref_lambda_returns(r, d, v, LAM), **TOL)


def test_lambda_zero_is_one_step_target():
    r, d, _, v, done = rollout_data(3, (16,))
    np.testing.assert_allclose(lambda_returns(r, d, v, 0.0, done_t=done), r + d * v, 1e-6, 1e-6)


def test_lambda_one_is_bootstrapped_discounted_return():
    r, d, _, v, done = rollout_data(4, (16,))
    np.testing.assert_allclose(
        lambda_returns(r, d, v, 1.0, done_t=done),
        discounted_returns(r, d, v_t=v, done_t=done),
        rtol=1e-6,
        atol=1e-6,
    )


def test_lambda_returns_truncation_bootstraps_and_cuts():
    r, d, _, v, done = rollout_data(5, (20,))
    trunc = np.flatnonzero(done & (d > 0))[0]
    v2 = v.copy()
    v2[trunc] += 1.0
    g1 = np.asarray(lambda_returns(r, d, v, LAM, done_t=done))
    g2 = np.asarray(lambda_returns(r, d, v2, LAM, done_t=done))
    np.testing.assert_allclose(g2[trunc] - g1[trunc], GAMMA, rtol=1e-5)
    np.testing.assert_array_equal(g1[trunc + 1 :], g2[trunc + 1 :])


def test_lambda_returns_trailing_dims():
    r, d, _, v, done = rollout_data(6, (19, 3))
    got = lambda_returns(r, d, v, LAM, done_t=done)
    assert got.shape == (19, 3)
    np.testing.assert_allclose(got, ref_lambda_returns(r, d, v, LAM, done), **TOL)


def test_lambda_returns_jit_and_vmap():
    r, d, _, v, done = rollout_data(7, (4, 15))  # [B, T]
    lams = np.array([0.0, 0.3, 0.9, 1.0], np.float32)
    fn = lambda r, d, v, lam, done: lambda_returns(r, d, v, lam, done_t=done)  # noqa: E731
    jitted = jax.jit(fn)(r[0], d[0], v[0], jnp.float32(LAM), done[0])  # traced λ
    np.testing.assert_allclose(jitted, ref_lambda_returns(r[0], d[0], v[0], LAM, done[0]), **TOL)
    batched = jax.jit(jax.vmap(fn))(r, d, v, lams, done)
    looped = np.stack([np.asarray(fn(r[b], d[b], v[b], lams[b], done[b])) for b in range(4)])
    np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-6)
    refs = np.stack([ref_lambda_returns(r[b], d[b], v[b], lams[b], done[b]) for b in range(4)])
    np.testing.assert_allclose(batched, refs, **TOL)


# --------------------------------------------------------------------------------------------
# gae


def test_gae_hand_computed():
    r = jnp.array([1.0, 2.0, 3.0])
    d = jnp.array([0.5, 0.5, 0.5])
    values = jnp.array([4.0, 8.0, 12.0])
    v = jnp.array([8.0, 12.0, 30.0])  # v_t = values_{t+1}, then a bootstrap value
    # δ = [1 + 4 − 4, 2 + 6 − 8, 3 + 15 − 12] = [1, 0, 6]
    # A_2 = 6; A_1 = 0 + .5·.5·6 = 1.5; A_0 = 1 + .25·1.5 = 1.375
    np.testing.assert_allclose(gae(r, d, values, v, 0.5), [1.375, 1.5, 6.0], rtol=1e-6)
    # step 1 ends (truncated, discount kept): the sum is cut after it, δ_1 still bootstraps
    got = gae(r, d, values, v, 0.5, done_t=jnp.array([False, True, False]))
    np.testing.assert_allclose(got, [1.0, 0.0, 6.0], rtol=1e-6)
    # step 1 terminates: δ_1 = 2 − 8 = −6; A_0 = 1 + .25·(−6) = −0.5
    d = jnp.array([0.5, 0.0, 0.5])
    got = gae(r, d, values, v, 0.5, done_t=jnp.array([False, True, False]))
    np.testing.assert_allclose(got, [-0.5, -6.0, 6.0], rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_matches_loop(seed, lam):
    r, d, values, v, done = rollout_data(10 + seed, (23,))
    got = gae(r, d, values, v, lam, done_t=done)
    np.testing.assert_allclose(got, ref_gae(r, d, values, v, lam, done), **TOL)


def test_gae_without_done():
    r, d, values, v, _ = rollout_data(12, (17,))
    got = gae(r, d, values, v, LAM)
    np.testing.assert_allclose(got, ref_gae(r, d, values, v, LAM), **TOL)


def test_gae_lambda_zero_is_td_error():
    r, d, values, v, done = rollout_data(13, (16,))
    np.testing.assert_allclose(
        gae(r, d, values, v, 0.0, done_t=done), r + d * v - values, rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("lam", [0.0, 0.7, 1.0])
def test_gae_plus_values_is_lambda_return(lam):
    r, d, values, v, done = rollout_data(14, (25, 3))
    adv = gae(r, d, values, v, lam, done_t=done)
    g = lambda_returns(r, d, v, lam, done_t=done)
    np.testing.assert_allclose(adv + values, g, **TOL)


def test_gae_identity_needs_consistent_values():
    # A v_t that is not values_{t+1} at a non-done step breaks the identity: the test has teeth.
    r, d, values, v, done = rollout_data(15, (20,))
    t = np.flatnonzero(~done[:-1])[0]
    v = v.copy()
    v[t] += 1.0
    adv = np.asarray(gae(r, d, values, v, LAM, done_t=done))
    g = np.asarray(lambda_returns(r, d, v, LAM, done_t=done))
    assert np.abs(adv + values - g).max() > 1e-2


def test_gae_trailing_dims():
    r, d, values, v, done = rollout_data(16, (19, 3))
    got = gae(r, d, values, v, LAM, done_t=done)
    assert got.shape == (19, 3)
    np.testing.assert_allclose(got, ref_gae(r, d, values, v, LAM, done), **TOL)


def test_gae_jit_and_vmap():
    r, d, values, v, done = rollout_data(17, (4, 15))  # [B, T]
    lams = np.array([0.0, 0.3, 0.9, 1.0], np.float32)
    fn = lambda r, d, x, v, lam, done: gae(r, d, x, v, lam, done_t=done)  # noqa: E731
    jitted = jax.jit(fn)(r[0], d[0], values[0], v[0], jnp.float32(LAM), done[0])
    np.testing.assert_allclose(jitted, ref_gae(r[0], d[0], values[0], v[0], LAM, done[0]), **TOL)
    batched = jax.jit(jax.vmap(fn))(r, d, values, v, lams, done)
    looped = np.stack(
        [np.asarray(fn(r[b], d[b], values[b], v[b], lams[b], done[b])) for b in range(4)]
    )
    np.testing.assert_allclose(batched, looped, rtol=1e-6, atol=1e-6)
    refs = np.stack([ref_gae(r[b], d[b], values[b], v[b], lams[b], done[b]) for b in range(4)])
    np.testing.assert_allclose(batched, refs, **TOL)
