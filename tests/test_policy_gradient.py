"""Tests for purerl/policy_gradient.py against float64 NumPy loops written from the docstring
maths, hand-computed cases, and the score-function gradient of a softmax logits table; the
network-taking wrappers are checked to be (bitwise) compositions of the array cores."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.policies import Categorical, DiagGaussian
from purerl.policy_gradient import (
    a2c_loss,
    clipped_value_loss,
    entropy_loss,
    masked_mean,
    policy_gradient_loss,
    ppo_clip_loss,
    ppo_clipped_surrogate,
    ppo_diagnostics,
    ppo_loss,
    reinforce_loss,
    value_loss,
)

S, A = 5, 3  # states (integer observations) and actions of the table policies
T, N = 6, 4  # time-major leading shape; also flattened to [B] = [T * N]
TOL = dict(rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Tiny policies: a softmax over a logits table indexed by an integer observation


class TablePolicy(eqx.Module):
    logits: jax.Array  # [S, A]

    def __call__(self, s):
        return Categorical(self.logits[s])


class TableActorCritic(eqx.Module):
    logits: jax.Array  # [S, A]
    values: jax.Array  # [S]

    def __call__(self, s):
        return Categorical(self.logits[s]), self.values[s]


class LinearGaussian(eqx.Module):
    weight: jax.Array  # [d, k]
    log_std: jax.Array  # [d]

    def __call__(self, x):
        return DiagGaussian(self.weight @ x, self.log_std)


def make_data(seed, shape=(T, N)):
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=(S, A)).astype(np.float32)
    values = rng.normal(size=S).astype(np.float32)
    s = rng.integers(0, S, size=shape).astype(np.int32)
    a = rng.integers(0, A, size=shape).astype(np.int32)
    g = rng.normal(size=shape).astype(np.float32)
    b = rng.normal(size=shape).astype(np.float32)
    mask = rng.uniform(size=shape) < 0.6
    mask.flat[0] = True  # at least one valid and one invalid entry
    mask.flat[-1] = False
    return theta, values, s, a, g, b, mask


# --------------------------------------------------------------------------------------------
# References (float64 loops over the flattened batch)


def np_softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def np_entropy(p):
    return -np.sum(p * np.log(p))


def np_mean(x, mask):
    x = np.ravel(np.asarray(x, np.float64))
    m = np.ones(x.shape) if mask is None else np.ravel(np.asarray(mask, np.float64))
    total, count = 0.0, 0.0
    for xi, mi in zip(x, m, strict=True):
        total += xi * mi
        count += mi
    return total / max(count, 1.0)


def per_item(theta, s, a):
    """log π(a_i|s_i) and H(π(·|s_i)) for every item of the flattened batch."""
    logp, ent = [], []
    for si, ai in zip(np.ravel(s), np.ravel(a), strict=True):
        p = np_softmax(theta[si])
        logp.append(np.log(p[ai]))
        ent.append(np_entropy(p))
    return np.array(logp), np.array(ent)


def ref_reinforce(theta, s, a, g, mask=None, b=None, c=0.0):
    logp, ent = per_item(theta, s, a)
    w = np.ravel(np.asarray(g, np.float64))
    if b is not None:
        w = w - np.ravel(b)
    return -np_mean(logp * w, mask) - c * np_mean(ent, mask)


def ref_table_policy_grad(theta, s, a, weight, mask=None, c=0.0):
    """∇_θ of −mean_valid[log π(a|s)·w] − c·mean_valid[H]: the score ``onehot(a) − π(·|s)`` and
    the entropy gradient ``−p ⊙ (log p + H)``, each placed at row s."""
    s, a, w = np.ravel(s), np.ravel(a), np.ravel(np.asarray(weight, np.float64))
    m = np.ones(s.shape, bool) if mask is None else np.ravel(mask)
    n = max(m.sum(), 1)
    grad = np.zeros(theta.shape, np.float64)
    for si, ai, wi, mi in zip(s, a, w, m, strict=True):
        if not mi:
            continue
        p = np_softmax(theta[si])
        score = np.eye(A)[ai] - p
        d_entropy = -p * (np.log(p) + np_entropy(p))
        grad[si] -= (wi * score + c * d_entropy) / n
    return grad


def ref_a2c(theta, values, s, a, adv, ret, value_coef, entropy_coef, mask=None):
    logp, ent = per_item(theta, s, a)
    v = np.array([values[si] for si in np.ravel(s)], np.float64)
    policy_loss = -np_mean(logp * np.ravel(adv), mask)
    value_loss = np_mean(0.5 * (v - np.ravel(ret)) ** 2, mask)
    entropy = np_mean(ent, mask)
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}


def ref_surrogate(ratio, adv, eps):
    out = np.zeros(np.shape(ratio))
    for i, (r, x) in enumerate(zip(np.ravel(ratio), np.ravel(adv), strict=True)):
        out.flat[i] = min(r * x, min(max(r, 1 - eps), 1 + eps) * x)
    return out


def ref_clipped_value(v, v_old, g, eps):
    out = np.zeros(np.shape(v))
    for i, (vi, oi, gi) in enumerate(zip(np.ravel(v), np.ravel(v_old), np.ravel(g), strict=True)):
        clipped = oi + min(max(vi - oi, -eps), eps)
        out.flat[i] = 0.5 * max((vi - gi) ** 2, (clipped - gi) ** 2)
    return out


def ref_ppo(theta, values, s, a, old_logp, old_v, adv, ret, eps, v_eps, value_coef, ent_coef):
    logp, ent = per_item(theta, s, a)
    v = np.array([values[si] for si in np.ravel(s)], np.float64)
    ratio = np.exp(logp - np.ravel(old_logp))
    policy_loss = -np.mean(ref_surrogate(ratio, np.ravel(adv), eps))
    if v_eps is None:
        value_loss = np.mean(0.5 * (v - np.ravel(ret)) ** 2)
    else:
        value_loss = np.mean(ref_clipped_value(v, np.ravel(old_v), np.ravel(ret), v_eps))
    entropy = np.mean(ent)
    info = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": np.mean((ratio - 1) - np.log(ratio)),
        "clip_fraction": np.mean(np.abs(ratio - 1) > eps),
    }
    return policy_loss + value_coef * value_loss - ent_coef * entropy, info


# --------------------------------------------------------------------------------------------
# masked_mean


def test_masked_mean_hand_computed():
    x = jnp.array([1.0, 2.0, 3.0, 4.0])
    assert float(masked_mean(x)) == pytest.approx(2.5)
    assert float(masked_mean(x, jnp.array([True, False, True, False]))) == pytest.approx(2.0)
    assert float(masked_mean(x, jnp.array([0, 0, 0, 1]))) == pytest.approx(4.0)


def test_masked_mean_all_false_is_zero_not_nan():
    out = masked_mean(jnp.array([[1.0, -2.0], [3.0, 5.0]]), jnp.zeros((2, 2), bool))
    assert np.isfinite(float(out)) and float(out) == 0.0
    grad = jax.grad(lambda x: masked_mean(x, jnp.zeros(3, bool)))(jnp.ones(3))
    np.testing.assert_array_equal(grad, 0.0)


def test_masked_mean_ignores_non_finite_masked_out_entries():
    x = jnp.array([1.0, 3.0, jnp.inf, jnp.nan])
    assert float(masked_mean(x, jnp.array([True, True, False, False]))) == pytest.approx(2.0)


# --------------------------------------------------------------------------------------------
# reinforce_loss


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("use_baseline", [False, True])
@pytest.mark.parametrize("entropy_coef", [0.0, 0.3])
def test_reinforce_matches_numpy(use_mask, use_baseline, entropy_coef):
    theta, _, s, a, g, b, mask = make_data(0)
    mask = mask if use_mask else None
    b = b if use_baseline else None
    got = reinforce_loss(
        TablePolicy(jnp.asarray(theta)), s, a, g, mask=mask, baseline=b, entropy_coef=entropy_coef
    )
    assert got.shape == ()
    expected = ref_reinforce(theta, s, a, g, mask, b, entropy_coef)
    np.testing.assert_allclose(got, expected, **TOL)


def test_reinforce_flat_batch_equals_time_major():
    theta, _, s, a, g, b, mask = make_data(1)
    policy = TablePolicy(jnp.asarray(theta))
    tm = reinforce_loss(policy, s, a, g, mask=mask, baseline=b, entropy_coef=0.1)
    flat = reinforce_loss(
        policy,
        s.ravel(),
        a.ravel(),
        g.ravel(),
        mask=mask.ravel(),
        baseline=b.ravel(),
        entropy_coef=0.1,
    )
    np.testing.assert_allclose(flat, tm, **TOL)
    np.testing.assert_allclose(flat, ref_reinforce(theta, s, a, g, mask, b, 0.1), **TOL)


def test_reinforce_hand_computed():
    # uniform policy over 2 actions: log π = −log 2, H = log 2
    policy = TablePolicy(jnp.zeros((1, 2)))
    s = jnp.zeros(3, jnp.int32)
    a = jnp.array([0, 1, 1], jnp.int32)
    g = jnp.array([1.0, 2.0, 3.0])
    mask = jnp.array([True, True, False])
    log2 = np.log(2.0)
    # −mean_valid[−log 2 · G] = log 2 · (1 + 2)/2; minus 0.5 · log 2
    got = reinforce_loss(policy, s, a, g, mask=mask, entropy_coef=0.5)
    np.testing.assert_allclose(got, 1.5 * log2 - 0.5 * log2, **TOL)
    got = reinforce_loss(policy, s, a, g, baseline=jnp.full(3, 2.0))
    np.testing.assert_allclose(got, log2 * (-1.0 + 0.0 + 1.0) / 3, **TOL)


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("entropy_coef", [0.0, 0.3])
def test_reinforce_gradient_is_score_function_estimate(use_mask, entropy_coef):
    """∇ loss = −(1/n) Σ_valid (G_i − b_i)(onehot(a_i) − π(·|s_i)) at row s_i (+ entropy)."""
    theta, _, s, a, g, b, mask = make_data(2)
    mask = mask if use_mask else None
    grad = eqx.filter_grad(
        lambda p: reinforce_loss(p, s, a, g, mask=mask, baseline=b, entropy_coef=entropy_coef)
    )(TablePolicy(jnp.asarray(theta)))
    expected = ref_table_policy_grad(theta, s, a, g - b, mask, entropy_coef)
    np.testing.assert_allclose(grad.logits, expected, rtol=1e-5, atol=1e-6)
    assert np.abs(expected).max() > 1e-2  # the check is not vacuous


def test_reinforce_no_gradient_into_returns_or_baseline():
    theta, _, s, a, g, b, mask = make_data(3)
    policy = TablePolicy(jnp.asarray(theta))
    d_g, d_b = jax.grad(
        lambda g, b: reinforce_loss(policy, s, a, g, mask=mask, baseline=b), argnums=(0, 1)
    )(jnp.asarray(g), jnp.asarray(b))
    np.testing.assert_array_equal(d_g, 0.0)
    np.testing.assert_array_equal(d_b, 0.0)


def test_reinforce_continuous_gaussian_matches_numpy():
    rng = np.random.default_rng(4)
    d, k = 2, 3
    w = rng.normal(size=(d, k)).astype(np.float32)
    log_std = rng.normal(scale=0.3, size=d).astype(np.float32)
    obs = rng.normal(size=(T, N, k)).astype(np.float32)
    act = rng.normal(size=(T, N, d)).astype(np.float32)
    g = rng.normal(size=(T, N)).astype(np.float32)
    got = reinforce_loss(
        LinearGaussian(jnp.asarray(w), jnp.asarray(log_std)), obs, act, g, entropy_coef=0.2
    )
    logp, ent = [], []
    sd = np.exp(log_std.astype(np.float64))
    for x, y in zip(obs.reshape(-1, k), act.reshape(-1, d), strict=True):
        mu = w.astype(np.float64) @ x
        logp.append(np.sum(-0.5 * ((y - mu) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)))
        ent.append(np.sum(np.log(sd) + 0.5 * (1 + np.log(2 * np.pi))))
    expected = -np.mean(np.array(logp) * g.ravel()) - 0.2 * np.mean(ent)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_reinforce_jit_and_vmap_over_datasets():
    K = 3
    theta, _, s, a, g, b, mask = make_data(5, shape=(K, T * N))
    policy = TablePolicy(jnp.asarray(theta))

    def loss(policy, s, a, g, b, mask):
        return reinforce_loss(policy, s, a, g, mask=mask, baseline=b, entropy_coef=0.1)

    jitted = eqx.filter_jit(loss)(policy, s[0], a[0], g[0], b[0], mask[0])
    np.testing.assert_allclose(
        jitted, ref_reinforce(theta, s[0], a[0], g[0], mask[0], b[0], 0.1), **TOL
    )
    batched = eqx.filter_jit(jax.vmap(loss, in_axes=(None, 0, 0, 0, 0, 0)))(
        policy, s, a, g, b, mask
    )
    assert batched.shape == (K,)
    looped = [loss(policy, s[i], a[i], g[i], b[i], mask[i]) for i in range(K)]
    np.testing.assert_allclose(batched, looped, **TOL)
    refs = [ref_reinforce(theta, s[i], a[i], g[i], mask[i], b[i], 0.1) for i in range(K)]
    np.testing.assert_allclose(batched, refs, **TOL)


# --------------------------------------------------------------------------------------------
# a2c_loss


@pytest.mark.parametrize("use_mask", [False, True])
def test_a2c_matches_numpy(use_mask):
    theta, values, s, a, adv, ret, mask = make_data(6)
    mask = mask if use_mask else None
    ac = TableActorCritic(jnp.asarray(theta), jnp.asarray(values))
    loss, info = a2c_loss(ac, s, a, adv, ret, value_coef=0.7, entropy_coef=0.05, mask=mask)
    exp_loss, exp_info = ref_a2c(theta, values, s, a, adv, ret, 0.7, 0.05, mask)
    assert set(info) == {"policy_loss", "value_loss", "entropy"}
    np.testing.assert_allclose(loss, exp_loss, **TOL)
    for name, value in exp_info.items():
        assert info[name].shape == ()
        np.testing.assert_allclose(info[name], value, **TOL, err_msg=name)
    np.testing.assert_allclose(
        loss, info["policy_loss"] + 0.7 * info["value_loss"] - 0.05 * info["entropy"], **TOL
    )


def test_a2c_default_coefficients():
    theta, values, s, a, adv, ret, _ = make_data(7)
    ac = TableActorCritic(jnp.asarray(theta), jnp.asarray(values))
    loss, _ = a2c_loss(ac, s, a, adv, ret)
    np.testing.assert_allclose(loss, ref_a2c(theta, values, s, a, adv, ret, 0.5, 0.01)[0], **TOL)


def test_a2c_gradients_actor_critic_and_no_gradient_into_targets():
    theta, values, s, a, adv, ret, mask = make_data(8)
    ac = TableActorCritic(jnp.asarray(theta), jnp.asarray(values))

    def loss(ac, adv, ret):
        return a2c_loss(ac, s, a, adv, ret, value_coef=0.7, entropy_coef=0.05, mask=mask)[0]

    d_ac, d_adv, d_ret = eqx.filter_grad(lambda args: loss(*args))((ac, adv, ret))
    np.testing.assert_array_equal(d_adv, 0.0)
    np.testing.assert_array_equal(d_ret, 0.0)
    # actor: the score-function estimate with A as weight, plus the entropy bonus
    expected = ref_table_policy_grad(theta, s, a, adv, mask, 0.05)
    np.testing.assert_allclose(d_ac.logits, expected, rtol=1e-5, atol=1e-6)
    # critic: c_V · (1/n) Σ_{valid i, s_i = s} (V(s) − G_i)
    n = mask.sum()
    expected_v = np.zeros(S)
    for si, gi, mi in zip(s.ravel(), ret.ravel(), mask.ravel(), strict=True):
        expected_v[si] += 0.7 * mi * (values[si] - gi) / n
    np.testing.assert_allclose(d_ac.values, expected_v, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# ppo_clipped_surrogate and clipped_value_loss


def test_ppo_surrogate_hand_computed():
    ratio = jnp.array([1.5, 0.5, 0.5, 1.5, 1.1, 0.9, 1.0])
    adv = jnp.array([1.0, 1.0, -1.0, -1.0, 2.0, -2.0, 3.0])
    got = ppo_clipped_surrogate(ratio, adv, 0.2)
    np.testing.assert_allclose(got, [1.2, 0.5, -0.8, -1.5, 2.2, -1.8, 3.0], **TOL)
    # the clipped side carries no gradient: ratio 1.5 with A > 0, ratio 0.5 with A < 0
    d_ratio = jax.grad(lambda r: jnp.sum(ppo_clipped_surrogate(r, adv, 0.2)))(ratio)
    np.testing.assert_allclose(d_ratio, [0.0, 1.0, 0.0, -1.0, 2.0, -2.0, 3.0], **TOL)


def test_ppo_surrogate_matches_numpy_and_jit_vmap():
    rng = np.random.default_rng(9)
    ratio = np.exp(rng.normal(scale=0.4, size=(3, 20))).astype(np.float32)
    adv = rng.normal(size=(3, 20)).astype(np.float32)
    expected = ref_surrogate(ratio, adv, 0.2)
    np.testing.assert_allclose(ppo_clipped_surrogate(ratio, adv, 0.2), expected, **TOL)
    jitted = jax.jit(ppo_clipped_surrogate)(ratio, adv, jnp.float32(0.2))  # traced ε
    np.testing.assert_allclose(jitted, expected, **TOL)
    eps = np.array([0.1, 0.2, 0.3], np.float32)
    batched = jax.jit(jax.vmap(ppo_clipped_surrogate))(ratio, adv, eps)
    refs = np.stack([ref_surrogate(ratio[i], adv[i], float(eps[i])) for i in range(3)])
    np.testing.assert_allclose(batched, refs, **TOL)


def test_clipped_value_loss_hand_computed():
    v = jnp.array([1.0, 1.0, 0.1, -1.0])
    v_old = jnp.zeros(4)
    g = jnp.array([2.0, 0.0, 1.0, -0.5])
    # 1: clipped V = 0.2 is further from G = 2: ½·1.8² = 1.62
    # 2: unclipped error 1 beats clipped 0.2: ½·1 = 0.5
    # 3: inside the clip range: ½·0.9² = 0.405
    # 4: unclipped 0.5 beats clipped −0.2 (error 0.3): ½·0.25 = 0.125
    got = clipped_value_loss(v, v_old, g, 0.2)
    np.testing.assert_allclose(got, [1.62, 0.5, 0.405, 0.125], **TOL)


def test_clipped_value_loss_matches_numpy_and_jit_vmap():
    rng = np.random.default_rng(10)
    v, v_old, g = (rng.normal(size=(3, 20)).astype(np.float32) for _ in range(3))
    expected = ref_clipped_value(v, v_old, g, 0.3)
    np.testing.assert_allclose(clipped_value_loss(v, v_old, g, 0.3), expected, **TOL)
    batched = jax.jit(jax.vmap(clipped_value_loss, in_axes=(0, 0, 0, None)))(v, v_old, g, 0.3)
    np.testing.assert_allclose(batched, expected, **TOL)


# --------------------------------------------------------------------------------------------
# ppo_loss


def ppo_inputs(seed):
    theta, values, s, a, adv, ret, _ = make_data(seed)
    ac = TableActorCritic(jnp.asarray(theta), jnp.asarray(values))
    logp, _ = per_item(theta, s, a)
    return ac, theta, values, s, a, logp.reshape(s.shape).astype(np.float32), adv, ret


def test_ppo_loss_at_old_policy_ratio_is_one():
    ac, theta, values, s, a, logp, adv, ret = ppo_inputs(11)
    old_v = values[s] + 0.5  # value clipping active
    _, info = ppo_loss(ac, s, a, logp, old_v, adv, ret)
    np.testing.assert_allclose(info["policy_loss"], -np.mean(adv), **TOL)
    np.testing.assert_allclose(info["approx_kl"], 0.0, atol=1e-6)
    assert float(info["clip_fraction"]) == 0.0
    # ... and the policy gradient is the plain score-function estimate weighted by A
    grad = eqx.filter_grad(lambda p: ppo_loss(p, s, a, logp, old_v, adv, ret, value_coef=0.0)[0])(
        ac
    )
    expected = ref_table_policy_grad(theta, s, a, adv)
    np.testing.assert_allclose(grad.logits, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("value_clip_eps", [None, 0.2])
def test_ppo_loss_matches_numpy(value_clip_eps):
    ac, theta, values, s, a, logp, adv, ret = ppo_inputs(12)
    rng = np.random.default_rng(12)
    old_logp = (logp + rng.normal(scale=0.3, size=logp.shape)).astype(np.float32)
    old_v = (values[s] + rng.normal(scale=0.5, size=s.shape)).astype(np.float32)
    kw = dict(clip_eps=0.2, value_clip_eps=value_clip_eps, value_coef=0.7, entropy_coef=0.05)
    loss, info = ppo_loss(ac, s, a, old_logp, old_v, adv, ret, **kw)
    exp_loss, exp_info = ref_ppo(
        theta, values, s, a, old_logp, old_v, adv, ret, 0.2, value_clip_eps, 0.7, 0.05
    )
    assert 0.0 < exp_info["clip_fraction"] < 1.0  # some ratios clipped, some not
    assert set(info) == set(exp_info)
    np.testing.assert_allclose(loss, exp_loss, rtol=1e-5, atol=1e-5)
    for name, value in exp_info.items():
        np.testing.assert_allclose(info[name], value, rtol=1e-5, atol=1e-5, err_msg=name)


def test_ppo_loss_value_clip_none_is_plain_squared_loss():
    ac, _, values, s, a, logp, adv, ret = ppo_inputs(13)
    old_v = values[s] + 5.0  # far away: clipping would change the loss
    _, plain = ppo_loss(ac, s, a, logp, old_v, adv, ret, value_clip_eps=None)
    np.testing.assert_allclose(plain["value_loss"], np.mean(0.5 * (values[s] - ret) ** 2), **TOL)
    _, clipped = ppo_loss(ac, s, a, logp, old_v, adv, ret, value_clip_eps=0.2)
    assert float(clipped["value_loss"]) > float(plain["value_loss"]) + 1.0


def test_ppo_loss_entropy_bonus_lowers_the_loss():
    ac, _, values, s, a, logp, adv, ret = ppo_inputs(14)
    old_v = values[s]
    base, info = ppo_loss(ac, s, a, logp, old_v, adv, ret, entropy_coef=0.0)
    bonus, _ = ppo_loss(ac, s, a, logp, old_v, adv, ret, entropy_coef=0.5)
    assert float(info["entropy"]) > 0.0
    np.testing.assert_allclose(bonus, base - 0.5 * info["entropy"], **TOL)


def test_ppo_loss_jit_and_vmap_over_datasets():
    K = 2
    ac, theta, values, s, a, logp, adv, ret = ppo_inputs(15)
    rng = np.random.default_rng(15)
    stack = lambda x: np.stack([x, x[::-1]])  # noqa: E731 - two datasets of the same shape
    s2, a2, adv2, ret2 = stack(s), stack(a), stack(adv), stack(ret)
    old_logp = stack(logp) + rng.normal(scale=0.3, size=(K, T, N)).astype(np.float32)
    old_v = rng.normal(size=(K, T, N)).astype(np.float32)

    def loss(ac, *data):
        return ppo_loss(ac, *data, entropy_coef=0.05)

    data = (s2, a2, old_logp, old_v, adv2, ret2)
    batched_loss, batched_info = eqx.filter_jit(jax.vmap(loss, in_axes=(None,) + (0,) * 6))(
        ac, *data
    )
    assert batched_loss.shape == (K,)
    for i in range(K):
        one = [x[i] for x in data]
        exp_loss, exp_info = ref_ppo(theta, values, *one, 0.2, 0.2, 0.5, 0.05)
        np.testing.assert_allclose(batched_loss[i], exp_loss, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(batched_info["approx_kl"][i], exp_info["approx_kl"], 1e-4, 1e-6)
        np.testing.assert_allclose(eqx.filter_jit(loss)(ac, *one)[0], exp_loss, 1e-5, 1e-5)


# --------------------------------------------------------------------------------------------
# Array cores: float64 references, one per core


def ref_pg(logp, adv, mask=None):
    return -np_mean(np.ravel(logp).astype(np.float64) * np.ravel(adv), mask)


def ref_entropy_loss(ent, mask=None):
    return -np_mean(ent, mask)


def ref_ppo_clip(log_ratio, adv, eps, mask=None):
    ratio = np.exp(np.ravel(log_ratio).astype(np.float64))
    return -np_mean(ref_surrogate(ratio, np.ravel(adv), eps), mask)


def ref_ppo_diagnostics(log_ratio, eps, mask=None):
    lr = np.ravel(log_ratio).astype(np.float64)
    ratio = np.exp(lr)
    return {
        "approx_kl": np_mean((ratio - 1.0) - lr, mask),
        "clip_fraction": np_mean(np.abs(ratio - 1.0) > eps, mask),
    }


def ref_value_loss(v, g, v_old=None, eps=None, mask=None):
    v, g = np.ravel(v).astype(np.float64), np.ravel(g)
    if v_old is None:
        return np_mean(0.5 * (v - g) ** 2, mask)
    return np_mean(ref_clipped_value(v, np.ravel(v_old), g, eps), mask)


def core_data(seed, shape=(T, N)):
    """Random core inputs: log π, advantages/returns, log-ratios, entropies, values, mask."""
    rng = np.random.default_rng(seed)
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    d = dict(
        logp=f32(np.log(rng.uniform(0.05, 1.0, size=shape))),
        adv=f32(rng.normal(size=shape)),
        log_ratio=f32(rng.normal(scale=0.3, size=shape)),
        ent=f32(rng.uniform(0.0, 2.0, size=shape)),
        v=f32(rng.normal(size=shape)),
        v_old=f32(rng.normal(size=shape)),
        g=f32(rng.normal(size=shape)),
    )
    mask = rng.uniform(size=shape) < 0.6
    mask.flat[0], mask.flat[-1] = True, False
    return d, mask


# (name, core call on the data dict, float64 reference on the data dict); each returns a dict
CORES = [
    (
        "policy_gradient_loss",
        lambda d, m: {"loss": policy_gradient_loss(d["logp"], d["adv"], mask=m)},
        lambda d, m: {"loss": ref_pg(d["logp"], d["adv"], m)},
    ),
    (
        "entropy_loss",
        lambda d, m: {"loss": entropy_loss(d["ent"], mask=m)},
        lambda d, m: {"loss": ref_entropy_loss(d["ent"], m)},
    ),
    (
        "ppo_clip_loss",
        lambda d, m: {"loss": ppo_clip_loss(d["log_ratio"], d["adv"], 0.2, mask=m)},
        lambda d, m: {"loss": ref_ppo_clip(d["log_ratio"], d["adv"], 0.2, m)},
    ),
    (
        "ppo_diagnostics",
        lambda d, m: ppo_diagnostics(d["log_ratio"], 0.2, mask=m),
        lambda d, m: ref_ppo_diagnostics(d["log_ratio"], 0.2, m),
    ),
    (
        "value_loss",
        lambda d, m: {"loss": value_loss(d["v"], d["g"], mask=m)},
        lambda d, m: {"loss": ref_value_loss(d["v"], d["g"], mask=m)},
    ),
    (
        "value_loss_clipped",
        lambda d, m: {
            "loss": value_loss(d["v"], d["g"], old_values=d["v_old"], clip_eps=0.3, mask=m)
        },
        lambda d, m: {"loss": ref_value_loss(d["v"], d["g"], d["v_old"], 0.3, m)},
    ),
]
CORE_IDS = [c[0] for c in CORES]


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("name, core, ref", CORES, ids=CORE_IDS)
def test_core_matches_numpy(name, core, ref, use_mask):
    d, mask = core_data(20)
    mask = mask if use_mask else None
    got, expected = core(d, mask), ref(d, mask)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].shape == () and got[key].dtype == jnp.float32
        np.testing.assert_allclose(got[key], value, **TOL, err_msg=key)
    if name == "ppo_diagnostics":  # the check is not vacuous
        assert 0.0 < expected["clip_fraction"] < 1.0 and expected["approx_kl"] > 1e-3


@pytest.mark.parametrize("name, core, ref", CORES, ids=CORE_IDS)
def test_core_masked_out_nan_does_not_leak(name, core, ref):
    d, mask = core_data(21)
    bad = {k: v.copy() for k, v in d.items()}
    invalid = np.flatnonzero(~mask.ravel())
    for v in bad.values():  # NaN / inf in masked-out entries of every input
        v.flat[invalid[0]] = np.nan
        v.flat[invalid[-1]] = np.inf
    bad = {k: jnp.asarray(v) for k, v in bad.items()}
    got, expected = core(bad, mask), ref(d, mask)
    for key, value in expected.items():
        assert np.isfinite(float(got[key])), key
        np.testing.assert_allclose(got[key], value, **TOL, err_msg=key)
    # ... whereas without the mask the NaN does show up
    assert not all(np.isfinite(float(x)) for x in core(bad, None).values())


@pytest.mark.parametrize("name, core, ref", CORES, ids=CORE_IDS)
def test_core_jit_and_vmap(name, core, ref):
    K = 3
    d, mask = core_data(22, shape=(K, T * N))
    jitted = jax.jit(core)(d, mask)
    for key, value in ref({k: v[0] for k, v in d.items()}, mask[0]).items():
        np.testing.assert_allclose(
            jax.jit(core)({k: v[0] for k, v in d.items()}, mask[0])[key], value, **TOL
        )
    batched = jax.jit(jax.vmap(core))(d, mask)
    for i in range(K):
        expected = ref({k: v[i] for k, v in d.items()}, mask[i])
        for key, value in expected.items():
            assert batched[key].shape == (K,)
            np.testing.assert_allclose(batched[key][i], value, **TOL, err_msg=key)
    for key, value in ref(d, mask).items():  # jit over the whole [K, B] batch
        np.testing.assert_allclose(jitted[key], value, **TOL, err_msg=key)


def test_cores_accept_traced_clip_eps():
    d, mask = core_data(23)
    eps = jnp.float32(0.1)
    got = jax.jit(lambda e: ppo_clip_loss(d["log_ratio"], d["adv"], e, mask=mask))(eps)
    np.testing.assert_allclose(got, ref_ppo_clip(d["log_ratio"], d["adv"], 0.1, mask), **TOL)
    got = jax.jit(lambda e: ppo_diagnostics(d["log_ratio"], e, mask=mask))(eps)
    exp = ref_ppo_diagnostics(d["log_ratio"], 0.1, mask)
    np.testing.assert_allclose(got["clip_fraction"], exp["clip_fraction"], **TOL)
    got = jax.jit(lambda e: value_loss(d["v"], d["g"], old_values=d["v_old"], clip_eps=e))(eps)
    np.testing.assert_allclose(got, ref_value_loss(d["v"], d["g"], d["v_old"], 0.1), **TOL)


def test_cores_hand_computed():
    log2 = np.log(2.0)
    # −mean[log ½·1, log ¼·(−1)] = −(−log 2 + 2 log 2)/2 = −log 2 / 2
    got = policy_gradient_loss(jnp.log(jnp.array([0.5, 0.25])), jnp.array([1.0, -1.0]))
    np.testing.assert_allclose(got, -0.5 * log2, **TOL)
    # masked: only the first entry: −(−log 2 · 1)
    got = policy_gradient_loss(
        jnp.log(jnp.array([0.5, 0.25])), jnp.array([1.0, -1.0]), mask=jnp.array([True, False])
    )
    np.testing.assert_allclose(got, log2, **TOL)
    np.testing.assert_allclose(entropy_loss(jnp.array([1.0, 3.0])), -2.0, **TOL)
    np.testing.assert_allclose(entropy_loss(jnp.array([1.0, 3.0]), mask=jnp.array([0, 1])), -3.0)
    # ρ = 1.5, A = 1 → clipped 1.2; ρ = 0.5, A = −1 → clipped −0.8; mean 0.2
    log_ratio = jnp.log(jnp.array([1.5, 0.5, 1.1, 1.0]))
    adv = jnp.array([1.0, -1.0, 2.0, 3.0])
    got = ppo_clip_loss(log_ratio[:2], adv[:2], 0.2)
    np.testing.assert_allclose(got, -0.2, **TOL)
    # 1.2, −0.8, 2.2, 3.0 → mean 1.4
    np.testing.assert_allclose(ppo_clip_loss(log_ratio, adv, 0.2), -1.4, **TOL)
    diag = ppo_diagnostics(log_ratio, 0.2)
    assert float(diag["clip_fraction"]) == 0.5  # 1.5 and 0.5 are outside [0.8, 1.2]
    # strictly outside: with ε = 0 a ratio of exactly 1 is not clipped
    zero = ppo_diagnostics(jnp.array([0.0, 0.0, 0.1]), 0.0)
    assert float(zero["clip_fraction"]) == pytest.approx(1 / 3)
    assert float(zero["approx_kl"]) == pytest.approx((np.exp(0.1) - 1 - 0.1) / 3, rel=1e-5)
    kl = [(r - 1) - np.log(r) for r in (1.5, 0.5, 1.1, 1.0)]
    np.testing.assert_allclose(diag["approx_kl"], np.mean(kl), **TOL)
    diag = ppo_diagnostics(log_ratio, 0.2, mask=jnp.array([False, True, True, False]))
    assert float(diag["clip_fraction"]) == 0.5
    np.testing.assert_allclose(diag["approx_kl"], (kl[1] + kl[2]) / 2, **TOL)
    np.testing.assert_allclose(value_loss(jnp.array([1.0, 1.0]), jnp.array([2.0, 1.0])), 0.25)
    # the clipped_value_loss hand case: [1.62, 0.5, 0.405, 0.125]
    v, g = jnp.array([1.0, 1.0, 0.1, -1.0]), jnp.array([2.0, 0.0, 1.0, -0.5])
    got = value_loss(v, g, old_values=jnp.zeros(4), clip_eps=0.2)
    np.testing.assert_allclose(got, np.mean([1.62, 0.5, 0.405, 0.125]), **TOL)
    got = value_loss(v, g, old_values=jnp.zeros(4), clip_eps=0.2, mask=jnp.array([1, 0, 0, 1]))
    np.testing.assert_allclose(got, (1.62 + 0.125) / 2, **TOL)


def test_value_loss_needs_both_old_values_and_clip_eps():
    v = jnp.zeros(3)
    with pytest.raises(ValueError, match="clip_eps"):
        value_loss(v, v, old_values=v)
    with pytest.raises(ValueError, match="old_values"):
        value_loss(v, v, clip_eps=0.2)


@pytest.mark.parametrize("use_mask", [False, True])
def test_core_gradients_and_no_gradient_into_targets(use_mask):
    d, mask = core_data(24)
    m = mask if use_mask else None
    w = np.ones(mask.shape) if m is None else mask.astype(np.float64)
    n = w.sum()
    logp, adv, lr, ent = (jnp.asarray(d[k]) for k in ("logp", "adv", "log_ratio", "ent"))
    v, v_old, g = (jnp.asarray(d[k]) for k in ("v", "v_old", "g"))

    d_logp, d_adv = jax.grad(lambda x, y: policy_gradient_loss(x, y, mask=m), (0, 1))(logp, adv)
    np.testing.assert_array_equal(d_adv, 0.0)
    np.testing.assert_allclose(d_logp, -d["adv"] * w / n, **TOL)

    np.testing.assert_allclose(jax.grad(lambda x: entropy_loss(x, mask=m))(ent), -w / n, **TOL)

    d_lr, d_adv = jax.grad(lambda x, y: ppo_clip_loss(x, y, 0.2, mask=m), (0, 1))(lr, adv)
    np.testing.assert_array_equal(d_adv, 0.0)
    ratio = np.exp(d["log_ratio"].astype(np.float64))
    # unclipped side active ⇔ ρA ≤ clip(ρ)A: gradient −A·ρ/n, else 0
    active = ratio * d["adv"] <= np.clip(ratio, 0.8, 1.2) * d["adv"]
    np.testing.assert_allclose(d_lr, -(active * d["adv"] * ratio) * w / n, **TOL)
    assert 0 < active.sum() < active.size

    d_lr = jax.grad(lambda x: sum(ppo_diagnostics(x, 0.2, mask=m).values()))(lr)
    np.testing.assert_array_equal(d_lr, 0.0)

    d_v, d_g = jax.grad(lambda x, y: value_loss(x, y, mask=m), (0, 1))(v, g)
    np.testing.assert_array_equal(d_g, 0.0)
    np.testing.assert_allclose(d_v, (d["v"] - d["g"]) * w / n, **TOL)

    def clipped(x, y, z):
        return value_loss(x, y, old_values=z, clip_eps=0.3, mask=m)

    d_v, d_g, d_old = jax.grad(clipped, (0, 1, 2))(v, g, v_old)
    np.testing.assert_array_equal(d_g, 0.0)
    np.testing.assert_array_equal(d_old, 0.0)
    # the larger of the two squared errors carries the gradient (V − G), the clipped one only
    # inside the clip range
    vv, oo, gg = (d[k].astype(np.float64) for k in ("v", "v_old", "g"))
    vc = oo + np.clip(vv - oo, -0.3, 0.3)
    inside = np.abs(vv - oo) < 0.3
    grad = np.where((vv - gg) ** 2 >= (vc - gg) ** 2, vv - gg, inside * (vc - gg))
    np.testing.assert_allclose(d_v, grad * w / n, **TOL)


# --------------------------------------------------------------------------------------------
# The wrappers are compositions of the cores (bitwise, on the same network outputs)


def network_outputs(module, s):
    out = jax.vmap(jax.vmap(module))(jnp.asarray(s))
    return out if isinstance(out, tuple) else (out, None)


@pytest.mark.parametrize("use_mask", [False, True])
def test_reinforce_is_composition_of_cores(use_mask):
    theta, _, s, a, g, b, mask = make_data(30)
    m = mask if use_mask else None
    policy = TablePolicy(jnp.asarray(theta))

    def composed(policy):
        dist, _ = network_outputs(policy, s)
        loss = policy_gradient_loss(dist.log_prob(a), g - b, mask=m)
        return loss + 0.3 * entropy_loss(dist.entropy(), mask=m)

    def wrapper(policy):
        return reinforce_loss(policy, s, a, g, mask=m, baseline=b, entropy_coef=0.3)

    np.testing.assert_array_equal(wrapper(policy), composed(policy))
    np.testing.assert_array_equal(
        eqx.filter_grad(wrapper)(policy).logits, eqx.filter_grad(composed)(policy).logits
    )
    np.testing.assert_allclose(wrapper(policy), ref_reinforce(theta, s, a, g, m, b, 0.3), **TOL)


@pytest.mark.parametrize("use_mask", [False, True])
def test_a2c_is_composition_of_cores(use_mask):
    theta, values, s, a, adv, ret, mask = make_data(31)
    m = mask if use_mask else None
    ac = TableActorCritic(jnp.asarray(theta), jnp.asarray(values))
    loss, info = a2c_loss(ac, s, a, adv, ret, value_coef=0.7, entropy_coef=0.05, mask=m)
    dist, v = network_outputs(ac, s)
    parts = {
        "policy_loss": policy_gradient_loss(dist.log_prob(a), adv, mask=m),
        "value_loss": value_loss(v, ret, mask=m),
        "entropy": -entropy_loss(dist.entropy(), mask=m),
    }
    assert set(info) == set(parts)
    for key, value in parts.items():
        np.testing.assert_array_equal(info[key], value, err_msg=key)
    expected = parts["policy_loss"] + 0.7 * parts["value_loss"] - 0.05 * parts["entropy"]
    np.testing.assert_array_equal(loss, expected)
    np.testing.assert_allclose(loss, ref_a2c(theta, values, s, a, adv, ret, 0.7, 0.05, m)[0], **TOL)


def ppo_case(seed):
    ac, theta, values, s, a, logp, adv, ret = ppo_inputs(seed)
    rng = np.random.default_rng(seed)
    old_logp = (logp + rng.normal(scale=0.3, size=logp.shape)).astype(np.float32)
    old_v = (values[s] + rng.normal(scale=0.5, size=s.shape)).astype(np.float32)
    mask = rng.uniform(size=s.shape) < 0.6
    mask.flat[0], mask.flat[-1] = True, False
    return ac, theta, values, s, a, old_logp, old_v, adv, ret, mask


@pytest.mark.parametrize("value_clip_eps", [None, 0.2])
@pytest.mark.parametrize("use_mask", [False, True])
def test_ppo_is_composition_of_cores(use_mask, value_clip_eps):
    ac, _, _, s, a, old_logp, old_v, adv, ret, mask = ppo_case(32)
    m = mask if use_mask else None
    kw = dict(clip_eps=0.2, value_clip_eps=value_clip_eps, value_coef=0.7, entropy_coef=0.05)

    def wrapper(ac):
        return ppo_loss(ac, s, a, old_logp, old_v, adv, ret, mask=m, **kw)

    def composed(ac):
        dist, v = network_outputs(ac, s)
        log_ratio = dist.log_prob(a) - old_logp
        if value_clip_eps is None:
            v_loss = value_loss(v, ret, mask=m)
        else:
            v_loss = value_loss(v, ret, old_values=old_v, clip_eps=value_clip_eps, mask=m)
        info = {
            "policy_loss": ppo_clip_loss(log_ratio, adv, 0.2, mask=m),
            "value_loss": v_loss,
            "entropy": -entropy_loss(dist.entropy(), mask=m),
            **ppo_diagnostics(log_ratio, 0.2, mask=m),
        }
        loss = info["policy_loss"] + 0.7 * info["value_loss"] - 0.05 * info["entropy"]
        return loss, info

    (loss, info), grad = eqx.filter_value_and_grad(wrapper, has_aux=True)(ac)
    (exp_loss, exp_info), exp_grad = eqx.filter_value_and_grad(composed, has_aux=True)(ac)
    np.testing.assert_array_equal(loss, exp_loss)
    assert set(info) == set(exp_info)
    names = ["policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"]
    assert list(wrapper(ac)[1]) == names  # (value_and_grad sorts the aux dict's keys)
    for key, value in exp_info.items():
        np.testing.assert_array_equal(info[key], value, err_msg=key)
    np.testing.assert_array_equal(grad.logits, exp_grad.logits)
    np.testing.assert_array_equal(grad.values, exp_grad.values)
    assert np.abs(np.asarray(grad.values)).max() > 1e-3  # the check is not vacuous


@pytest.mark.parametrize("value_clip_eps", [None, 0.2])
def test_ppo_mask_equals_loss_on_valid_rows_only(value_clip_eps):
    ac, _, _, s, a, old_logp, old_v, adv, ret, mask = ppo_case(33)
    kw = dict(clip_eps=0.2, value_clip_eps=value_clip_eps, value_coef=0.7, entropy_coef=0.05)
    valid = lambda x: np.asarray(x)[mask]  # noqa: E731 - [T, N] → [n_valid]
    sub_loss, sub_info = ppo_loss(
        ac, valid(s), valid(a), valid(old_logp), valid(old_v), valid(adv), valid(ret), **kw
    )
    # NaN / inf in masked-out targets must not leak either
    bad = [x.copy() for x in (old_logp, old_v, adv, ret)]
    for x in bad:
        x[~mask] = np.nan
        x.flat[-1] = np.inf
    for data in ((old_logp, old_v, adv, ret), bad):
        loss, info = ppo_loss(ac, s, a, *data, mask=mask, **kw)
        np.testing.assert_allclose(loss, sub_loss, rtol=1e-6, atol=1e-6)
        assert set(info) == set(sub_info)
        for key, value in sub_info.items():
            np.testing.assert_allclose(info[key], value, rtol=1e-6, atol=1e-6, err_msg=key)
    assert 0.0 < float(sub_info["clip_fraction"]) < 1.0
    # the mask matters: the unmasked loss differs
    full, _ = ppo_loss(ac, s, a, old_logp, old_v, adv, ret, **kw)
    assert abs(float(full) - float(sub_loss)) > 1e-4
    # an all-true mask is the unmasked loss
    ones, _ = ppo_loss(ac, s, a, old_logp, old_v, adv, ret, mask=np.ones(s.shape, bool), **kw)
    np.testing.assert_allclose(ones, full, rtol=1e-6, atol=1e-6)
