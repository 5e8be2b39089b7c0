"""Tests for purerl/preferences.py: hand-computed numbers, float64 NumPy loops written from the
docstring maths, ``jit`` and ``vmap``, the stop-gradient of the KL-penalised rewards, and the
best-of-n KL against the exact best-of-n distribution and Monte-Carlo samples."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.preferences import (
    adaptive_kl_coefficient,
    best_of_n_kl,
    bradley_terry_loss,
    kl_penalized_rewards,
    preference_accuracy,
    sequence_kl,
    token_kl,
    token_log_probs,
)

TOL = dict(rtol=1e-5, atol=1e-6)
SHAPES = [(5,), (3, 5), (2, 3, 5)]  # leading shape [*B, T] of token-level arrays
V = 4  # vocabulary of the random logits


# --------------------------------------------------------------------------------------------
# References (float64 loops)


def np_log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    m = np.max(z)
    return z - m - np.log(np.sum(np.exp(z - m)))


def ref_bt_loss(rc, rr, mask=None):
    rc, rr = np.ravel(rc).astype(np.float64), np.ravel(rr).astype(np.float64)
    m = np.ones(rc.shape, bool) if mask is None else np.ravel(mask)
    total, count = 0.0, 0
    for c, r, valid in zip(rc, rr, m, strict=True):
        if valid:
            total -= np_log_sigmoid(c - r)
            count += 1
    return total / max(count, 1)


def ref_bt_grad(rc, rr, mask=None):
    """d loss / d r_chosen = −(1 − σ(Δ)) / B on valid pairs (and minus that for r_rejected)."""
    rc, rr = np.asarray(rc, np.float64), np.asarray(rr, np.float64)
    m = np.ones(rc.shape, bool) if mask is None else np.asarray(mask)
    n = max(int(m.sum()), 1)
    grad = np.zeros(rc.shape)
    for i in np.ndindex(rc.shape):
        if m[i]:
            grad[i] = -(1.0 - 1.0 / (1.0 + np.exp(-(rc[i] - rr[i])))) / n
    return grad, -grad


def ref_accuracy(rc, rr):
    score = 0.0
    for c, r in zip(np.ravel(rc), np.ravel(rr), strict=True):
        score += 1.0 if c > r else 0.5 if c == r else 0.0
    return score / np.size(rc)


def ref_token_log_probs(logits, tokens):
    out = np.zeros(np.shape(tokens))
    for i in np.ndindex(np.shape(tokens)):
        out[i] = np_log_softmax(logits[i])[tokens[i]]
    return out


def ref_token_kl(logits, ref_logits):
    out = np.zeros(np.shape(logits)[:-1])
    for i in np.ndindex(out.shape):
        log_p, log_q = np_log_softmax(logits[i]), np_log_softmax(ref_logits[i])
        for lp, lq in zip(log_p, log_q, strict=True):
            if np.exp(lp) > 0:  # 0 · log 0 = 0
                out[i] += np.exp(lp) * (lp - lq)
    return out


def ref_sequence_kl(log_probs, ref_log_probs, mask=None):
    log_probs = np.asarray(log_probs, np.float64)
    m = np.ones(log_probs.shape, bool) if mask is None else np.asarray(mask)
    out = np.zeros(log_probs.shape[:-1])
    for i in np.ndindex(out.shape):
        for t in range(log_probs.shape[-1]):
            if m[i][t]:
                out[i] += log_probs[i][t] - ref_log_probs[i][t]
    return out


def ref_kl_rewards(scores, log_probs, ref_log_probs, beta):
    log_probs = np.asarray(log_probs, np.float64)
    out = np.zeros(log_probs.shape)
    for i in np.ndindex(log_probs.shape[:-1]):
        for t in range(log_probs.shape[-1]):
            out[i][t] = -beta * (log_probs[i][t] - ref_log_probs[i][t])
        out[i][-1] += np.asarray(scores)[i]
    return out


def ref_adaptive(beta, kl, target, gain=0.1, max_error=0.2):
    error = min(max(kl / target - 1.0, -max_error), max_error)
    return beta * (1.0 + gain * error)


def exact_best_of_n(p, r, n):
    """P(best of n i.i.d. draws from p is x_i) = F(r_i)^n − F(r_i−)^n, F the CDF of the reward
    (rewards distinct)."""
    q = np.zeros(len(p))
    for i in range(len(p)):
        at_most = sum(p[j] for j in range(len(p)) if r[j] <= r[i])
        below = sum(p[j] for j in range(len(p)) if r[j] < r[i])
        q[i] = at_most**n - below**n
    return q


def np_kl(q, p):
    return float(sum(qi * np.log(qi / pi) for qi, pi in zip(q, p, strict=True) if qi > 0))


def random_token_data(seed, shape):
    rng = np.random.default_rng(seed)
    logits = (2.0 * rng.normal(size=(*shape, V))).astype(np.float32)
    ref_logits = (2.0 * rng.normal(size=(*shape, V))).astype(np.float32)
    tokens = rng.integers(0, V, size=shape).astype(np.int32)
    return logits, ref_logits, tokens


# --------------------------------------------------------------------------------------------
# bradley_terry_loss


def test_bradley_terry_hand_computed():
    # docstring example: −log σ(1)
    np.testing.assert_allclose(bradley_terry_loss(jnp.array([1.0]), jnp.array([0.0])), 0.31326166)
    # margins 1, 0, 3: mean of log(1 + e^{−Δ}) = (0.3132617 + 0.6931472 + 0.0485874) / 3
    rc, rr = jnp.array([1.0, 0.0, 2.0]), jnp.array([0.0, 0.0, -1.0])
    expected = (0.31326169 + 0.69314718 + 0.04858735) / 3
    got = bradley_terry_loss(rc, rr)
    assert got.shape == ()
    np.testing.assert_allclose(got, expected, **TOL)
    # a pair ordered the wrong way costs more than the same pair ordered the right way
    assert float(bradley_terry_loss(rr, rc)) > float(got)


@pytest.mark.parametrize("shape", [(7,), (3, 4)])
@pytest.mark.parametrize("use_mask", [False, True])
def test_bradley_terry_matches_numpy_and_gradient(shape, use_mask):
    rng = np.random.default_rng(1)
    rc = (2 * rng.normal(size=shape)).astype(np.float32)
    rr = (2 * rng.normal(size=shape)).astype(np.float32)
    mask = rng.uniform(size=shape) < 0.6
    mask.flat[0], mask.flat[-1] = True, False
    mask = mask if use_mask else None
    np.testing.assert_allclose(
        bradley_terry_loss(rc, rr, mask=mask), ref_bt_loss(rc, rr, mask), **TOL
    )
    d_rc, d_rr = jax.grad(lambda c, r: bradley_terry_loss(c, r, mask=mask), argnums=(0, 1))(
        jnp.asarray(rc), jnp.asarray(rr)
    )
    exp_rc, exp_rr = ref_bt_grad(rc, rr, mask)
    np.testing.assert_allclose(d_rc, exp_rc, **TOL)
    np.testing.assert_allclose(d_rr, exp_rr, **TOL)
    assert np.abs(exp_rc).max() > 1e-2  # the check is not vacuous


def test_bradley_terry_gradient_hand_formula():
    # Δ = 0: −(1 − ½)/2 = −0.25; Δ = log 3: σ = 3/4, −(1/4)/2 = −0.125
    rc, rr = jnp.array([0.0, math.log(3.0)]), jnp.array([0.0, 0.0])
    d_rc, d_rr = jax.grad(bradley_terry_loss, argnums=(0, 1))(rc, rr)
    np.testing.assert_allclose(d_rc, [-0.25, -0.125], **TOL)
    np.testing.assert_allclose(d_rr, [0.25, 0.125], **TOL)


def test_bradley_terry_invariant_to_a_constant():
    rng = np.random.default_rng(2)
    rc, rr = rng.normal(size=(2, 10)).astype(np.float32)
    base = bradley_terry_loss(rc, rr)
    for c in (-5.0, 0.5, 100.0):
        np.testing.assert_allclose(bradley_terry_loss(rc + c, rr + c), base, rtol=1e-4)
    # ... but not to a constant added to one side only
    assert abs(float(bradley_terry_loss(rc + 1.0, rr)) - float(base)) > 1e-2


def test_bradley_terry_mask():
    rc = jnp.array([1.0, 2.0, -3.0, jnp.nan])
    rr = jnp.array([0.0, 2.0, 5.0, 0.0])
    mask = jnp.array([True, True, False, False])
    # only pairs 0 and 1: (−log σ(1) − log σ(0)) / 2; the NaN and the bad pair do not leak in
    got = bradley_terry_loss(rc, rr, mask=mask)
    np.testing.assert_allclose(got, (0.31326169 + 0.69314718) / 2, **TOL)
    np.testing.assert_allclose(got, bradley_terry_loss(rc[:2], rr[:2]), **TOL)
    finite = rc.at[3].set(7.0)
    d_rc = jax.grad(lambda c: bradley_terry_loss(c, rr, mask=mask))(finite)
    np.testing.assert_allclose(d_rc, [-(1 - 0.7310586) / 2, -0.25, 0.0, 0.0], **TOL)
    # no valid pair: 0, not NaN
    assert float(bradley_terry_loss(rc, rr, mask=jnp.zeros(4, bool))) == 0.0


def test_bradley_terry_jit_and_vmap():
    rng = np.random.default_rng(3)
    rc, rr = rng.normal(size=(2, 4, 6)).astype(np.float32)
    mask = rng.uniform(size=(4, 6)) < 0.7
    mask[:, 0] = True
    jitted = jax.jit(lambda c, r, m: bradley_terry_loss(c, r, mask=m))(rc, rr, mask)
    np.testing.assert_allclose(jitted, ref_bt_loss(rc, rr, mask), **TOL)
    batched = jax.jit(jax.vmap(lambda c, r, m: bradley_terry_loss(c, r, mask=m)))(rc, rr, mask)
    assert batched.shape == (4,)
    refs = [ref_bt_loss(rc[i], rr[i], mask[i]) for i in range(4)]
    np.testing.assert_allclose(batched, refs, **TOL)


# --------------------------------------------------------------------------------------------
# preference_accuracy


def test_preference_accuracy_hand_computed_ties_count_half():
    rc = jnp.array([1.0, 0.0, 2.0, 3.0])
    rr = jnp.array([0.0, 1.0, 2.0, 3.0])
    # win, loss, tie, tie: (1 + 0 + ½ + ½) / 4
    np.testing.assert_allclose(preference_accuracy(rc, rr), 0.5, **TOL)
    np.testing.assert_allclose(preference_accuracy(rc[:3], rr[:3]), 1.5 / 3, **TOL)
    np.testing.assert_allclose(preference_accuracy(rc[2:], rr[2:]), 0.5, **TOL)
    np.testing.assert_allclose(preference_accuracy(rc[:1], rr[:1]), 1.0, **TOL)
    np.testing.assert_allclose(preference_accuracy(rc[1:2], rr[1:2]), 0.0, **TOL)


def test_preference_accuracy_matches_numpy_jit_vmap():
    rng = np.random.default_rng(4)
    # integers so that ties happen
    rc, rr = rng.integers(0, 3, size=(2, 5, 9)).astype(np.float32)
    assert np.any(rc == rr) and np.any(rc > rr) and np.any(rc < rr)
    np.testing.assert_allclose(preference_accuracy(rc, rr), ref_accuracy(rc, rr), **TOL)
    np.testing.assert_allclose(jax.jit(preference_accuracy)(rc, rr), ref_accuracy(rc, rr), **TOL)
    batched = jax.jit(jax.vmap(preference_accuracy))(rc, rr)
    np.testing.assert_allclose(batched, [ref_accuracy(rc[i], rr[i]) for i in range(5)], **TOL)


# --------------------------------------------------------------------------------------------
# token_log_probs, token_kl, sequence_kl


def test_token_log_probs_hand_computed():
    got = token_log_probs(jnp.log(jnp.array([[0.25, 0.75]])), jnp.array([1]))
    np.testing.assert_allclose(got, [math.log(0.75)], **TOL)
    # unnormalised logits: log_softmax([0, log 3])[0] = log ¼; a batch axis
    logits = jnp.array([[[0.0, math.log(3.0)], [2.0, 2.0]]])
    got = token_log_probs(logits, jnp.array([[0, 1]]))
    assert got.shape == (1, 2)
    np.testing.assert_allclose(got, [[math.log(0.25), math.log(0.5)]], **TOL)


@pytest.mark.parametrize("shape", SHAPES)
def test_token_log_probs_matches_numpy(shape):
    logits, _, tokens = random_token_data(5, shape)
    got = token_log_probs(logits, tokens)
    assert got.shape == shape
    np.testing.assert_allclose(got, ref_token_log_probs(logits, tokens), **TOL)
    np.testing.assert_allclose(
        jax.jit(token_log_probs)(logits, tokens), ref_token_log_probs(logits, tokens), **TOL
    )


def test_token_log_probs_vmap():
    logits, _, tokens = random_token_data(6, (4, 5))
    batched = jax.jit(jax.vmap(token_log_probs))(logits, tokens)
    np.testing.assert_allclose(batched, ref_token_log_probs(logits, tokens), **TOL)


def test_token_kl_hand_computed():
    # π = (½, ½), π_ref = (¼, ¾): ½ log 2 + ½ log(2/3)
    got = token_kl(jnp.zeros((1, 2)), jnp.log(jnp.array([[0.25, 0.75]])))
    np.testing.assert_allclose(got, [0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)], **TOL)


@pytest.mark.parametrize("shape", SHAPES)
def test_token_kl_matches_numpy_nonnegative(shape):
    logits, ref_logits, _ = random_token_data(7, shape)
    got = token_kl(logits, ref_logits)
    assert got.shape == shape
    expected = ref_token_kl(logits, ref_logits)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(got) >= -1e-6)
    assert expected.min() > 1e-3  # distinct distributions: strictly positive
    np.testing.assert_allclose(
        jax.jit(token_kl)(logits, ref_logits), expected, rtol=1e-5, atol=1e-5
    )


def test_token_kl_vmap():
    logits, ref_logits, _ = random_token_data(8, (3, 4))
    batched = jax.jit(jax.vmap(token_kl))(logits, ref_logits)
    np.testing.assert_allclose(batched, ref_token_kl(logits, ref_logits), rtol=1e-5, atol=1e-5)


def test_token_kl_zero_for_identical_logits():
    logits, _, _ = random_token_data(9, (3, 5))
    np.testing.assert_allclose(token_kl(logits, logits), 0.0, atol=1e-6)
    # softmax is shift invariant: logits + c is the same distribution
    np.testing.assert_allclose(token_kl(logits, logits + 3.0), 0.0, atol=1e-5)


def test_token_kl_finite_with_minus_inf_policy_logits():
    """A token the policy never emits adds nothing (0 · log 0 = 0), whatever π_ref says."""
    logits = jnp.array([[0.0, -jnp.inf, math.log(3.0)], [-jnp.inf, 0.0, -jnp.inf]])
    ref_logits = jnp.array([[0.0, 5.0, 0.0], [0.0, 0.0, 0.0]])
    got = token_kl(logits, ref_logits)
    assert np.all(np.isfinite(got))
    # row 0: π = (¼, 0, ¾), π_ref = (e⁰, e⁵, e⁰)/Z; row 1: π = δ₁, π_ref uniform: log 3
    z = 2.0 + math.exp(5.0)
    row0 = 0.25 * math.log(0.25 * z) + 0.75 * math.log(0.75 * z)
    np.testing.assert_allclose(got, [row0, math.log(3.0)], rtol=1e-5)
    # identical masked logits: −inf − (−inf) would be NaN without the 0 · log 0 convention
    np.testing.assert_allclose(token_kl(logits, logits), 0.0, atol=1e-6)


def test_token_kl_gradient_finite_with_minus_inf_policy_logits():
    logits = jnp.array([[0.0, -jnp.inf, 1.0]])
    grad = jax.grad(lambda x: token_kl(x, jnp.zeros((1, 3))).sum())(logits)
    assert np.all(np.isfinite(grad[:, [0, 2]]))


def test_sequence_kl_hand_computed_and_mask():
    lp = jnp.array([[-1.0, -2.0, -0.5], [-0.1, -0.2, -0.3]])
    ref = jnp.array([[-1.5, -1.0, -0.5], [-0.3, -0.2, -5.0]])
    np.testing.assert_allclose(sequence_kl(lp, ref), [0.5 - 1.0 + 0.0, 0.2 + 0.0 + 4.7], **TOL)
    mask = jnp.array([[True, False, True], [True, True, False]])
    np.testing.assert_allclose(sequence_kl(lp, ref, mask=mask), [0.5, 0.2], **TOL)
    # a NaN in a masked-out position does not leak
    nan_lp = lp.at[1, 2].set(jnp.nan)
    np.testing.assert_allclose(sequence_kl(nan_lp, ref, mask=mask), [0.5, 0.2], **TOL)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("use_mask", [False, True])
def test_sequence_kl_matches_numpy_jit_vmap(shape, use_mask):
    rng = np.random.default_rng(10)
    lp, ref = (-rng.exponential(size=(2, *shape))).astype(np.float32)
    mask = (rng.uniform(size=shape) < 0.6) if use_mask else None
    expected = ref_sequence_kl(lp, ref, mask)
    got = sequence_kl(lp, ref, mask=mask)
    assert got.shape == shape[:-1]
    np.testing.assert_allclose(got, expected, **TOL)
    jitted = jax.jit(lambda a, b, m: sequence_kl(a, b, mask=m))(lp, ref, mask)
    np.testing.assert_allclose(jitted, expected, **TOL)
    if len(shape) > 1:
        in_axes = (0, 0, None if mask is None else 0)
        batched = jax.vmap(lambda a, b, m: sequence_kl(a, b, mask=m), in_axes=in_axes)(
            lp, ref, mask
        )
        np.testing.assert_allclose(batched, expected, **TOL)


def test_sequence_kl_of_exact_token_kl_is_unbiased():
    """Σ_t of the sampled log-ratios, averaged over sequences sampled from π, is KL(π ‖ π_ref)
    for a one-step sequence: the mean of the k1 estimator vs token_kl (5 standard errors)."""
    logits = jnp.array([0.5, -1.0, 1.5, 0.0])
    ref_logits = jnp.array([0.0, 0.0, -1.0, 1.0])
    n = 20000
    tokens = jax.random.categorical(jax.random.PRNGKey(0), logits, shape=(n, 1))
    lp = token_log_probs(jnp.broadcast_to(logits, (n, 1, 4)), tokens)
    ref_lp = token_log_probs(jnp.broadcast_to(ref_logits, (n, 1, 4)), tokens)
    estimates = np.asarray(sequence_kl(lp, ref_lp))
    se = estimates.std() / np.sqrt(n)
    exact = float(token_kl(logits[None], ref_logits[None])[0])
    assert abs(estimates.mean() - exact) < 5 * se
    assert exact > 20 * se  # the check is not vacuous


# --------------------------------------------------------------------------------------------
# kl_penalized_rewards


def test_kl_penalized_rewards_hand_computed():
    got = kl_penalized_rewards(
        jnp.array(1.0), jnp.array([-1.0, -1.0]), jnp.array([-2.0, -1.0]), 0.5
    )
    np.testing.assert_allclose(got, [-0.5, 1.0], **TOL)
    scores = jnp.array([2.0, -1.0])
    lp = jnp.array([[-1.0, -2.0, -0.5], [-3.0, -1.0, -1.0]])
    ref = jnp.array([[-1.5, -1.0, -0.5], [-2.0, -2.0, -1.0]])
    # log-ratios [[0.5, −1, 0], [−1, 1, 0]], times −0.1, scores on the last token
    expected = [[-0.05, 0.1, 2.0], [0.1, -0.1, -1.0]]
    np.testing.assert_allclose(kl_penalized_rewards(scores, lp, ref, 0.1), expected, **TOL)


@pytest.mark.parametrize("shape", SHAPES)
def test_kl_penalized_rewards_matches_numpy_and_sum_identity(shape):
    rng = np.random.default_rng(11)
    lp, ref = (-rng.exponential(size=(2, *shape))).astype(np.float32)
    scores = rng.normal(size=shape[:-1]).astype(np.float32)
    beta = 0.3
    got = kl_penalized_rewards(scores, lp, ref, beta)
    assert got.shape == shape
    np.testing.assert_allclose(got, ref_kl_rewards(scores, lp, ref, beta), **TOL)
    # Σ_t r_t = score − β Σ_t (log π − log π_ref)
    total = np.asarray(got, np.float64).sum(-1)
    identity = scores - beta * (lp.astype(np.float64) - ref).sum(-1)
    np.testing.assert_allclose(total, identity, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        total, scores - beta * np.asarray(sequence_kl(lp, ref)), rtol=1e-5, atol=1e-5
    )


def test_kl_penalized_rewards_jit_and_vmap_over_beta():
    rng = np.random.default_rng(12)
    lp, ref = (-rng.exponential(size=(2, 3, 6))).astype(np.float32)
    scores = rng.normal(size=3).astype(np.float32)
    betas = np.array([0.0, 0.1, 1.0], np.float32)
    jitted = jax.jit(kl_penalized_rewards)(scores, lp, ref, jnp.float32(0.1))  # traced β
    np.testing.assert_allclose(jitted, ref_kl_rewards(scores, lp, ref, 0.1), **TOL)
    batched = jax.jit(jax.vmap(kl_penalized_rewards))(scores, lp, ref, betas)
    refs = [ref_kl_rewards(scores[i], lp[i], ref[i], float(betas[i])) for i in range(3)]
    np.testing.assert_allclose(batched, np.stack(refs), **TOL)


def test_kl_penalized_rewards_no_gradient_into_log_probs():
    rng = np.random.default_rng(13)
    lp, ref = (-rng.exponential(size=(2, 4, 5))).astype(np.float32)
    weights = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    scores = jnp.zeros(4)

    def objective(lp, ref):
        return jnp.sum(weights * kl_penalized_rewards(scores, lp, ref, 0.7))

    d_lp, d_ref = jax.grad(objective, argnums=(0, 1))(jnp.asarray(lp), jnp.asarray(ref))
    np.testing.assert_array_equal(d_lp, 0.0)
    np.testing.assert_array_equal(d_ref, 0.0)
    # the value does depend on them: the zero gradient is the stop_gradient, not a constant
    assert float(objective(lp, ref)) != pytest.approx(float(objective(lp + 1.0, ref)))


# --------------------------------------------------------------------------------------------
# adaptive_kl_coefficient


def test_adaptive_kl_hand_computed():
    # above target, clipped: e = clip(12/6 − 1, ±0.2) = 0.2, β·(1 + 0.1·0.2)
    np.testing.assert_allclose(adaptive_kl_coefficient(0.1, 12.0, 6.0), 0.102, **TOL)
    # above target, inside the clip: e = 0.1
    np.testing.assert_allclose(adaptive_kl_coefficient(0.1, 6.6, 6.0), 0.101, **TOL)
    # below target: e = −0.1, and clipped at −0.2 for KL = 0
    np.testing.assert_allclose(adaptive_kl_coefficient(0.1, 5.4, 6.0), 0.099, **TOL)
    np.testing.assert_allclose(adaptive_kl_coefficient(0.1, 0.0, 6.0), 0.098, **TOL)
    # at target: unchanged, exactly
    assert float(adaptive_kl_coefficient(0.25, 6.0, 6.0)) == 0.25
    # gain and max_error: e = clip(99, ±0.5) = 0.5, β·(1 + 0.5·0.5)
    got = adaptive_kl_coefficient(2.0, 100.0, 1.0, gain=0.5, max_error=0.5)
    np.testing.assert_allclose(got, 2.5, **TOL)
    got = adaptive_kl_coefficient(2.0, 0.5, 1.0, gain=0.5, max_error=0.5)
    np.testing.assert_allclose(got, 2.0 * (1 - 0.25), **TOL)


def test_adaptive_kl_matches_numpy_jit_vmap():
    kls = np.array([0.0, 1.0, 4.0, 5.9, 6.0, 6.1, 7.0, 30.0, 1e6], np.float32)
    expected = [ref_adaptive(0.2, float(k), 6.0, 0.3, 0.25) for k in kls]
    fn = jax.jit(lambda b, k, t: adaptive_kl_coefficient(b, k, t, gain=0.3, max_error=0.25))
    looped = [fn(jnp.float32(0.2), k, jnp.float32(6.0)) for k in kls]
    np.testing.assert_allclose(looped, expected, **TOL)
    batched = jax.vmap(fn, in_axes=(None, 0, None))(jnp.float32(0.2), kls, jnp.float32(6.0))
    np.testing.assert_allclose(batched, expected, **TOL)
    # rises above the target, falls below it, monotone in the KL, bounded by the clip
    assert np.all(np.diff(np.asarray(batched)) >= 0)
    assert float(batched[0]) == pytest.approx(0.2 * (1 - 0.3 * 0.25))
    assert float(batched[-1]) == pytest.approx(0.2 * (1 + 0.3 * 0.25))


# --------------------------------------------------------------------------------------------
# best_of_n_kl


def test_best_of_n_kl_hand_computed_jit_vmap():
    assert float(best_of_n_kl(1)) == 0.0
    for n in (2, 3, 4, 16, 1000):
        np.testing.assert_allclose(best_of_n_kl(n), math.log(n) - (n - 1) / n, **TOL)
    np.testing.assert_allclose(best_of_n_kl(2), 0.19314718, **TOL)
    ns = jnp.array([1, 2, 4, 8, 64], jnp.int32)
    expected = [math.log(n) - (n - 1) / n for n in [1, 2, 4, 8, 64]]
    np.testing.assert_allclose(jax.jit(jax.vmap(best_of_n_kl))(ns), expected, **TOL)
    np.testing.assert_allclose(jax.jit(best_of_n_kl)(jnp.int32(8)), expected[3], **TOL)
    assert np.all(np.diff(expected) > 0)  # grows with n


@pytest.mark.parametrize("n", [2, 4, 16])
def test_best_of_n_kl_continuous_rewards_monte_carlo(n):
    """Continuous rewards: the best of n has density n F^{n−1} f, so the KL is
    E[log n + (n − 1) log U_max] with U_max the largest of n uniforms: a sample mean within
    5 standard errors of the formula."""
    rng = np.random.default_rng(n)
    u_max = rng.uniform(size=(100_000, n)).max(axis=1)
    log_ratio = np.log(n) + (n - 1) * np.log(u_max)
    se = log_ratio.std() / np.sqrt(len(log_ratio))
    assert abs(log_ratio.mean() - float(best_of_n_kl(n))) < 5 * se


@pytest.mark.parametrize("n", [2, 4, 16])
def test_best_of_n_kl_is_the_limit_of_a_fine_categorical(n):
    """Many equally likely outcomes with distinct rewards (continuous-like): the exact KL of
    the best-of-n distribution tends to log n − (n − 1)/n from below."""
    m = 20_000
    ranks = np.arange(1, m + 1)
    q = (ranks / m) ** n - ((ranks - 1) / m) ** n  # exact_best_of_n for p uniform, r = rank
    kl = float(np.sum(q * np.log(q * m)))
    formula = float(best_of_n_kl(n))
    assert kl <= formula + 1e-6
    assert formula - kl < 2e-3


def test_best_of_n_kl_bounds_a_small_categorical_monte_carlo():
    """A small categorical with distinct rewards: best-of-n sampled in NumPy matches the exact
    distribution P(best = x_i) = F(r_i)^n − F(r_i−)^n, whose KL to p is 0 for n = 1 and at most
    log n − (n − 1)/n (equality only for continuous rewards: ties between draws of the same
    outcome make it smaller)."""
    p = np.array([0.1, 0.2, 0.3, 0.4])
    r = np.array([3.0, 1.0, 4.0, 2.0])
    rng = np.random.default_rng(14)
    np.testing.assert_allclose(exact_best_of_n(p, r, 1), p)
    assert np_kl(exact_best_of_n(p, r, 1), p) == pytest.approx(0.0, abs=1e-12)
    for n in (2, 4, 8):
        q = exact_best_of_n(p, r, n)
        np.testing.assert_allclose(q.sum(), 1.0)
        draws = rng.choice(len(p), size=(50_000, n), p=p)
        best = draws[np.arange(len(draws)), np.argmax(r[draws], axis=1)]
        freq = np.bincount(best, minlength=len(p)) / len(best)
        # each frequency within 5 binomial standard errors (plus a floor for q ≈ 0)
        se = np.sqrt(q * (1 - q) / len(best))
        assert np.all(np.abs(freq - q) < 5 * se + 1e-4), (n, freq, q)
        # Monte-Carlo KL: the mean log-ratio of the sampled outcomes, against the exact one
        log_ratio = np.log(q[best] / p[best])
        mc_se = log_ratio.std() / np.sqrt(len(best))
        exact = np_kl(q, p)
        assert abs(log_ratio.mean() - exact) < 5 * mc_se + 1e-6
        assert 0.0 < exact < float(best_of_n_kl(n))
