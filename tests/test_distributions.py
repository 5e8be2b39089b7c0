"""Tests for the policy distributions of purerl/policies.py (``Categorical``, ``DiagGaussian``,
``TanhGaussian``) and ``clip_action`` / ``scale_action`` / ``unscale_action``, against NumPy
formulas, a numerical change of variables, and sample statistics."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.policies import (
    Categorical,
    DiagGaussian,
    TanhGaussian,
    clip_action,
    scale_action,
    unscale_action,
)

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


# --------------------------------------------------------------------------------------------
# TanhGaussian


def np_std_normal_cdf(z):
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(z, np.float64) / np.sqrt(2.0)))


def ref_tanh_gaussian_log_prob_fd(a, mean, log_std, h=1e-4):
    """log density of ``tanh(u)``, ``u ~ N(mean, σ²)`` per coordinate, summed over the last
    axis: ``P(a − h < tanh u < a + h) / 2h`` through the Gaussian CDF at ``arctanh(a ± h)``
    (no Jacobian formula involved)."""
    a, mean, sd = np.float64(a), np.float64(mean), np.exp(np.float64(log_std))
    upper = np_std_normal_cdf((np.arctanh(a + h) - mean) / sd)
    lower = np_std_normal_cdf((np.arctanh(a - h) - mean) / sd)
    return np.sum(np.log((upper - lower) / (2 * h)), axis=-1)


def ref_tanh_gaussian_log_prob_of_u(u, mean, log_std):
    """The change of variables at the pre-squash ``u``, in float64 with a stable
    ``log(1 − tanh²u) = 2(log 2 − u − log(1 + e^{−2u}))``."""
    u = np.float64(u)
    log1m_tanh_sq = 2.0 * (np.log(2.0) - u - np.logaddexp(0.0, -2.0 * u))
    return ref_gaussian_log_prob(u, mean, log_std) - np.sum(log1m_tanh_sq, axis=-1)


def test_tanh_gaussian_hand_computed():
    # a = 0 = tanh(0) at the mean of N(0, 1): the Jacobian 1 − tanh² 0 = 1, log p = −½ log 2π
    dist = TanhGaussian(jnp.zeros(1), jnp.zeros(1))
    np.testing.assert_allclose(dist.log_prob(jnp.zeros(1)), -HALF_LOG_2PI, **TOL)
    # a = tanh(1) = .7616 for N(1, 1): log p = −½ log 2π − log(1 − .7616²) = −.9189 + .8676
    a = jnp.array([np.tanh(1.0)], jnp.float32)
    expected = -HALF_LOG_2PI - np.log(1 - np.tanh(1.0) ** 2)
    np.testing.assert_allclose(TanhGaussian(jnp.ones(1), jnp.zeros(1)).log_prob(a), expected, 1e-5)


@pytest.mark.parametrize("d", [1, 2])
def test_tanh_gaussian_log_prob_matches_change_of_variables(d):
    mean = rng.normal(size=(8, d)).astype(np.float32)
    log_std = rng.uniform(-1.0, 0.5, size=(8, d)).astype(np.float32)
    action = rng.uniform(-0.95, 0.95, size=(8, d)).astype(np.float32)
    got = TanhGaussian(jnp.asarray(mean), jnp.asarray(log_std)).log_prob(action)
    assert got.shape == (8,)
    expected = ref_tanh_gaussian_log_prob_fd(action, mean, log_std)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_tanh_gaussian_density_integrates_to_one():
    grid = np.linspace(-1, 1, 20_001)[1:-1]  # the density → 0 at ±1 here
    n = len(grid)
    dist = TanhGaussian(jnp.full((n, 1), 0.3), jnp.full((n, 1), np.log(0.5), jnp.float32))
    density = np.exp(np.asarray(dist.log_prob(jnp.asarray(grid[:, None], jnp.float32)), float))
    np.testing.assert_allclose(np.sum(density) * (grid[1] - grid[0]), 1.0, atol=1e-3)


def test_tanh_gaussian_sample_and_log_prob_consistent(key):
    mean = jnp.asarray(rng.normal(scale=0.5, size=(64, 3)), jnp.float32)
    log_std = jnp.asarray(rng.uniform(-1.0, 0.0, size=(64, 3)), jnp.float32)
    dist = TanhGaussian(mean, log_std)
    action, log_prob = dist.sample_and_log_prob(key)
    assert action.shape == (64, 3) and log_prob.shape == (64,)
    assert np.abs(np.asarray(action)).max() < 1.0
    # the same draw as ``sample`` and as the base Gaussian's, squashed
    np.testing.assert_array_equal(dist.sample(key), action)
    u = DiagGaussian(mean, log_std).sample(key)
    np.testing.assert_allclose(action, np.tanh(np.float64(u)), **TOL)
    np.testing.assert_allclose(log_prob, ref_tanh_gaussian_log_prob_of_u(u, mean, log_std), **TOL)
    # ``log_prob`` of the sample (through arctanh) agrees where |a| is not too close to 1
    inside = np.abs(np.asarray(action)).max(-1) < 0.99
    assert inside.sum() > 40
    np.testing.assert_allclose(
        dist.log_prob(action)[inside], log_prob[inside], rtol=1e-3, atol=1e-3
    )


def test_tanh_gaussian_finite_for_extreme_means(key):
    """``tanh`` rounds to ±1 at mean ±20: the log-prob from the pre-squash sample stays finite
    and exact, and so do its gradients."""
    mean = jnp.array([[20.0, -20.0], [20.0, 0.0]])
    log_std = jnp.zeros((2, 2))
    action, log_prob = TanhGaussian(mean, log_std).sample_and_log_prob(key)
    assert np.abs(np.asarray(action)).max() <= 1.0 and (np.abs(np.asarray(action)) == 1.0).any()
    u = DiagGaussian(mean, log_std).sample(key)
    np.testing.assert_allclose(log_prob, ref_tanh_gaussian_log_prob_of_u(u, mean, log_std), 1e-5)
    assert np.isfinite(np.asarray(TanhGaussian(mean, log_std).log_prob(action))).all()

    def total_log_prob(m, s):
        return TanhGaussian(m, s).sample_and_log_prob(key)[1].sum()

    grads = jax.grad(total_log_prob, argnums=(0, 1))(mean, log_std)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_tanh_gaussian_reparameterised_gradients(key):
    """With ``u = μ + σε``, ``a = tanh u``: ``∂a/∂μ = 1 − a²``, ``∂a/∂log σ = (1 − a²)(u − μ)``;
    ``log π = log N(ε) − log σ − log(1 − a²)`` gives ``∂/∂μ = 2a`` and
    ``∂/∂log σ = −1 + 2a(u − μ)``."""
    mean = jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)
    log_std = jnp.asarray(rng.uniform(-1.0, 0.5, size=(5, 2)), jnp.float32)
    u = np.asarray(DiagGaussian(mean, log_std).sample(key), np.float64)
    a, dev = np.tanh(u), u - np.asarray(mean, np.float64)

    def action_sum(m, s):
        return TanhGaussian(m, s).sample_and_log_prob(key)[0].sum()

    def log_prob_sum(m, s):
        return TanhGaussian(m, s).sample_and_log_prob(key)[1].sum()

    g_mean, g_log_std = jax.grad(action_sum, argnums=(0, 1))(mean, log_std)
    np.testing.assert_allclose(g_mean, 1 - a**2, **TOL)
    np.testing.assert_allclose(g_log_std, (1 - a**2) * dev, **TOL)
    g_mean, g_log_std = jax.grad(log_prob_sum, argnums=(0, 1))(mean, log_std)
    np.testing.assert_allclose(g_mean, 2 * a, **TOL)
    np.testing.assert_allclose(g_log_std, -1 + 2 * a * dev, **TOL)


def test_tanh_gaussian_mode_and_shared_log_std(key):
    mean = jnp.asarray(rng.normal(scale=2.0, size=(4, 3)), jnp.float32)
    np.testing.assert_allclose(TanhGaussian(mean, jnp.zeros((4, 3))).mode(), np.tanh(mean), **TOL)
    # one log-std [d] for a batch of means [B, d], under rank promotion "raise"
    shared = TanhGaussian(mean, jnp.array([0.1, -0.2, 0.3]))
    full = TanhGaussian(mean, jnp.tile(jnp.array([0.1, -0.2, 0.3]), (4, 1)))
    a_shared, lp_shared = shared.sample_and_log_prob(key)
    a_full, lp_full = full.sample_and_log_prob(key)
    np.testing.assert_allclose(a_shared, a_full, **TOL)
    np.testing.assert_allclose(lp_shared, lp_full, **TOL)
    assert shared.log_prob(a_full).shape == (4,)


# --------------------------------------------------------------------------------------------
# scale_action / unscale_action


def test_scale_action_maps_bounds_and_midpoint():
    low, high = jnp.array([-2.0, 0.0, 10.0]), jnp.array([2.0, 1.0, 30.0])
    np.testing.assert_allclose(scale_action(-jnp.ones(3), low, high), low, **TOL)
    np.testing.assert_allclose(scale_action(jnp.ones(3), low, high), high, **TOL)
    np.testing.assert_allclose(scale_action(jnp.zeros(3), low, high), [0.0, 0.5, 20.0], **TOL)
    # a = .5 is three quarters of the way: −2 + .75·4 = 1, 0 + .75·1 = .75, 10 + .75·20 = 25
    np.testing.assert_allclose(scale_action(jnp.full(3, 0.5), low, high), [1.0, 0.75, 25.0])
    np.testing.assert_allclose(unscale_action(low, low, high), -np.ones(3), **TOL)
    np.testing.assert_allclose(unscale_action(high, low, high), np.ones(3), **TOL)


def test_scale_and_unscale_are_inverses_on_a_batch():
    # env bounds [d] over actions [N, d] (as the off-policy algorithms call it), with rank
    # promotion "raise"
    low, high = jnp.array([-2.0, 0.0, 10.0]), jnp.array([2.0, 1.0, 30.0])
    a = jnp.asarray(rng.uniform(-1, 1, size=(50, 3)), jnp.float32)
    scaled = scale_action(a, low, high)
    assert scaled.shape == (50, 3)
    assert (np.asarray(scaled) >= np.asarray(low)).all()
    assert (np.asarray(scaled) <= np.asarray(high)).all()
    np.testing.assert_allclose(unscale_action(scaled, low, high), a, **TOL)
    env_a = jnp.asarray(rng.uniform(low, high, size=(50, 3)), jnp.float32)
    np.testing.assert_allclose(
        scale_action(unscale_action(env_a, low, high), low, high), env_a, 1e-5
    )
    # scalar bounds broadcast too
    np.testing.assert_allclose(scale_action(a, -3.0, 3.0), 3.0 * a, **TOL)
