"""Tests for the policy distributions of purerl/policies.py (``Categorical``, ``DiagGaussian``)
and ``clip_action``, against NumPy formulas and sample statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from purerl.policies import Categorical, DiagGaussian, clip_action

N_DRAWS = 20_000
# Binomial std of a frequency over 20 000 draws is at most 0.0035; 0.015 is > 4 sigma.
FREQ_TOL = 0.015
# Std of a sample mean is σ/√20000 ≈ 0.007σ and of a sample std ≈ 0.005σ: 0.03σ is > 4 sigma.
MOMENT_TOL = 0.03
TOL = dict(rtol=1e-5, atol=1e-5)
HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)
rng = np.random.default_rng(0)


def np_log_softmax(logits):
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


# --------------------------------------------------------------------------------------------
# Categorical


def test_categorical_log_prob_and_entropy_match_numpy():
    logits = rng.normal(scale=2.0, size=(7, 5)).astype(np.float32)
    actions = rng.integers(0, 5, size=7).astype(np.int32)
    dist = Categorical(jnp.asarray(logits))
    logp = np_log_softmax(logits)
    expected_logp = [logp[i, actions[i]] for i in range(7)]
    expected_h = [-np.sum(np.exp(logp[i]) * logp[i]) for i in range(7)]
    assert dist.log_prob(actions).shape == (7,)
    np.testing.assert_allclose(dist.log_prob(actions), expected_logp, **TOL)
    np.testing.assert_allclose(dist.entropy(), expected_h, **TOL)


def test_categorical_hand_computed_and_extremes():
    uniform = Categorical(jnp.zeros(4))
    np.testing.assert_allclose(uniform.log_prob(jnp.array(2)), -np.log(4), **TOL)
    np.testing.assert_allclose(uniform.entropy(), np.log(4), **TOL)
    # a huge logit gap: log-probs stay finite, entropy tends to 0 (no 0·log 0 = NaN)
    peaked = Categorical(jnp.array([0.0, 200.0]))
    np.testing.assert_allclose(peaked.log_prob(jnp.array(1)), 0.0, atol=1e-6)
    np.testing.assert_allclose(peaked.log_prob(jnp.array(0)), -200.0, rtol=1e-6)
    assert np.isfinite(float(peaked.entropy())) and abs(float(peaked.entropy())) < 1e-6


def test_categorical_leading_dims_and_shift_invariance():
    logits = jnp.asarray(rng.normal(size=(3, 4, 6)), jnp.float32)
    actions = jnp.asarray(rng.integers(0, 6, size=(3, 4)), jnp.int32)
    dist = Categorical(logits)
    assert dist.log_prob(actions).shape == (3, 4) and dist.entropy().shape == (3, 4)
    shifted = Categorical(logits + 10.0)
    np.testing.assert_allclose(shifted.log_prob(actions), dist.log_prob(actions), **TOL)
    np.testing.assert_allclose(shifted.entropy(), dist.entropy(), **TOL)


def test_categorical_sample_frequencies_follow_softmax(key):
    logits = jnp.array([0.5, -1.0, 1.5, 0.0])
    dist = Categorical(jnp.tile(logits, (N_DRAWS, 1)))
    samples = np.asarray(dist.sample(key))
    assert samples.shape == (N_DRAWS,) and samples.dtype == np.int32
    freq = np.bincount(samples, minlength=4) / N_DRAWS
    np.testing.assert_allclose(freq, np.exp(np_log_softmax(logits)), atol=FREQ_TOL)
    # same key, same draws; another key, other draws
    np.testing.assert_array_equal(dist.sample(key), samples)
    assert (np.asarray(dist.sample(jax.random.PRNGKey(1))) != samples).any()


def test_categorical_mode_is_argmax():
    logits = rng.normal(size=(9, 5)).astype(np.float32)
    np.testing.assert_array_equal(Categorical(jnp.asarray(logits)).mode(), logits.argmax(-1))
    assert int(Categorical(jnp.array([1.0, 3.0, 3.0])).mode()) == 1  # first on ties


# --------------------------------------------------------------------------------------------
# DiagGaussian


def ref_gaussian_log_prob(a, mean, log_std):
    a, mean, log_std = (np.asarray(x, np.float64) for x in (a, mean, log_std))
    sd = np.exp(log_std)
    return np.sum(-0.5 * ((a - mean) / sd) ** 2 - log_std - HALF_LOG_2PI, axis=-1)


def test_diag_gaussian_log_prob_and_entropy_match_numpy():
    mean = rng.normal(size=(6, 3)).astype(np.float32)
    log_std = rng.normal(scale=0.5, size=(6, 3)).astype(np.float32)
    action = rng.normal(size=(6, 3)).astype(np.float32)
    dist = DiagGaussian(jnp.asarray(mean), jnp.asarray(log_std))
    assert dist.log_prob(action).shape == (6,)
    np.testing.assert_allclose(
        dist.log_prob(action), ref_gaussian_log_prob(action, mean, log_std), **TOL
    )
    expected_h = np.sum(log_std.astype(np.float64) + 0.5 * (1 + np.log(2 * np.pi)), axis=-1)
    np.testing.assert_allclose(dist.entropy(), expected_h, **TOL)


def test_diag_gaussian_hand_computed():
    # standard normal in 2-D at the mean: log p = −log 2π, H = 1 + log 2π
    dist = DiagGaussian(jnp.zeros(2), jnp.zeros(2))
    np.testing.assert_allclose(dist.log_prob(jnp.zeros(2)), -np.log(2 * np.pi), **TOL)
    np.testing.assert_allclose(dist.entropy(), 1 + np.log(2 * np.pi), **TOL)
    # σ = e in 1-D, one σ away: log p = −½ − 1 − ½ log 2π
    dist = DiagGaussian(jnp.array([1.0]), jnp.array([1.0]))
    np.testing.assert_allclose(dist.log_prob(jnp.array([1.0 + np.e])), -1.5 - HALF_LOG_2PI, **TOL)


def test_diag_gaussian_sample_moments(key):
    mu = np.array([1.0, -2.0, 0.0], np.float32)
    log_std = np.array([0.0, -1.0, 0.7], np.float32)
    dist = DiagGaussian(jnp.tile(mu, (N_DRAWS, 1)), jnp.tile(log_std, (N_DRAWS, 1)))
    samples = np.asarray(dist.sample(key), np.float64)
    assert samples.shape == (N_DRAWS, 3)
    sd = np.exp(log_std)
    np.testing.assert_allclose(samples.mean(0), mu, atol=MOMENT_TOL * sd.max())
    np.testing.assert_allclose(samples.std(0) / sd, 1.0, atol=MOMENT_TOL)
    # independent coordinates
    corr = np.corrcoef(samples.T)
    np.testing.assert_allclose(corr[~np.eye(3, dtype=bool)], 0.0, atol=MOMENT_TOL)
    np.testing.assert_array_equal(dist.sample(key), samples.astype(np.float32))


def test_diag_gaussian_mode_is_mean():
    mean = jnp.asarray(rng.normal(size=(4, 2)), jnp.float32)
    np.testing.assert_array_equal(DiagGaussian(mean, jnp.ones((4, 2))).mode(), mean)


def test_diag_gaussian_log_std_broadcast_values():
    """``log_std [d]`` shared by every row of ``mean [B, d]`` (rank promotion allowed)."""
    mean = rng.normal(size=(5, 3)).astype(np.float32)
    log_std = np.array([0.2, -0.3, 0.5], np.float32)
    action = rng.normal(size=(5, 3)).astype(np.float32)
    full = DiagGaussian(jnp.asarray(mean), jnp.tile(log_std, (5, 1)))
    shared = DiagGaussian(jnp.asarray(mean), jnp.asarray(log_std))
    key = jax.random.PRNGKey(3)
    with jax.numpy_rank_promotion("allow"):
        np.testing.assert_allclose(shared.log_prob(action), full.log_prob(action), **TOL)
        np.testing.assert_allclose(shared.sample(key), full.sample(key), **TOL)
    assert shared.entropy().shape == (5,)
    np.testing.assert_allclose(shared.entropy(), full.entropy(), **TOL)


def test_diag_gaussian_log_std_broadcast_under_rank_promotion_raise():
    shared = DiagGaussian(jnp.zeros((5, 3)), jnp.zeros(3))
    assert shared.log_prob(jnp.zeros((5, 3))).shape == (5,)
    assert shared.sample(jax.random.PRNGKey(0)).shape == (5, 3)


# --------------------------------------------------------------------------------------------
# clip_action


def test_clip_action_bounds():
    low, high = jnp.array([[-1.0, 0.0]]), jnp.array([[1.0, 2.0]])  # [1, d]: same rank as actions
    action = jnp.array([[-3.0, 5.0], [0.5, 1.0], [2.0, -0.1]])
    got = np.asarray(clip_action(action, low, high))
    np.testing.assert_array_equal(got, [[-1.0, 2.0], [0.5, 1.0], [1.0, 0.0]])
    samples = jnp.asarray(rng.normal(scale=3.0, size=(100, 2)), jnp.float32)
    got = np.asarray(clip_action(samples, low, high))
    assert (got >= np.asarray(low)).all() and (got <= np.asarray(high)).all()
    assert (got == np.asarray(low)).any() and (got == np.asarray(high)).any()
    inside = (np.asarray(samples) >= np.asarray(low)) & (np.asarray(samples) <= np.asarray(high))
    np.testing.assert_array_equal(got[inside], np.asarray(samples)[inside])


def test_clip_action_single_action_with_box_bounds():
    got = clip_action(jnp.array([-3.0, 0.5]), jnp.array([-1.0, 0.0]), jnp.array([1.0, 2.0]))
    np.testing.assert_array_equal(got, [-1.0, 0.5])


def test_clip_action_batch_with_env_bounds():
    # bounds [d] (as VecEnv.action_bounds) over actions [N, d], with rank promotion 'raise'
    low, high = jnp.array([-1.0, 0.0]), jnp.array([1.0, 2.0])
    got = clip_action(jnp.array([[-3.0, 5.0], [0.5, 1.0]]), low, high)
    np.testing.assert_array_equal(got, [[-1.0, 2.0], [0.5, 1.0]])
