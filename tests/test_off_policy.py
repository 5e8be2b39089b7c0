"""Tests for purerl/off_policy.py (SAC and TD3 loss pieces) against float64 NumPy loops written
from the docstring maths, hand-computed cases, exact gradients (including the zero gradients
that ``stop_gradient`` promises), optax steps on ``log α``, and sample statistics of TD3's
target-policy smoothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from purerl.off_policy import (
    clipped_double_q_target,
    critic_loss,
    default_target_entropy,
    deterministic_actor_loss,
    sac_actor_loss,
    soft_q_target,
    td3_target_action,
    temperature_loss,
)

T, B = 5, 4
SHAPES = [(), (B,), (T, B)]  # one transition, a batch, a time-major batch
TOL = dict(rtol=1e-5, atol=1e-5)
N_DRAWS = 50_000


def make_data(seed, shape, k):
    rng = np.random.default_rng(seed)

    def f32(*s, scale=1.0):
        return (scale * rng.normal(size=s)).astype(np.float32)

    discount = np.where(rng.uniform(size=shape) < 0.3, 0.0, 0.9).astype(np.float32)
    return dict(
        r=f32(*shape),
        discount=discount,
        q_t=f32(*shape, k, scale=3.0),
        log_prob_t=f32(*shape),
        q_tm1=f32(*shape, k, scale=3.0),
        target=f32(*shape, scale=3.0),
        log_prob=f32(*shape),
        q=f32(*shape, k, scale=3.0),
    )


# --------------------------------------------------------------------------------------------
# NumPy references: float64 loops over the flattened batch


def _flat(*xs):
    """Flatten the leading (batch) axes, those of the first argument, to one axis of rows."""
    return [np.asarray(x, np.float64).reshape(-1, *np.shape(x)[len(np.shape(xs[0])) :]) for x in xs]


def ref_soft_q_target(r, d, q_t, logp_t, alpha):
    rr, dd, qq, ll = _flat(r, d, q_t, logp_t)
    out = [rr[i] + dd[i] * (min(qq[i]) - alpha * ll[i]) for i in range(len(rr))]
    return np.reshape(out, np.shape(r))


def ref_clipped_double_q_target(r, d, q_t):
    rr, dd, qq = _flat(r, d, q_t)
    return np.reshape([rr[i] + dd[i] * min(qq[i]) for i in range(len(rr))], np.shape(r))


def ref_critic_loss(q_tm1, target):
    yy, qq = _flat(target, q_tm1)
    per_item = [sum(0.5 * (qk - yy[i]) ** 2 for qk in qq[i]) for i in range(len(yy))]
    return np.mean(per_item)


def ref_sac_actor_loss(log_prob, q, alpha):
    ll, qq = _flat(log_prob, q)
    return np.mean([alpha * ll[i] - min(qq[i]) for i in range(len(ll))])


def ref_temperature_loss(log_alpha, log_prob, target_entropy):
    (ll,) = _flat(log_prob)
    return np.mean([-log_alpha * (lp + target_entropy) for lp in ll])


# --------------------------------------------------------------------------------------------
# Against the references


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [1, 2])
def test_targets_match_numpy(shape, k):
    x = make_data(0, shape, k)
    y = soft_q_target(x["r"], x["discount"], x["q_t"], x["log_prob_t"], 0.3)
    assert y.shape == shape
    ref = ref_soft_q_target(x["r"], x["discount"], x["q_t"], x["log_prob_t"], 0.3)
    np.testing.assert_allclose(y, ref, **TOL)
    y = clipped_double_q_target(x["r"], x["discount"], x["q_t"])
    assert y.shape == shape
    ref = ref_clipped_double_q_target(x["r"], x["discount"], x["q_t"])
    np.testing.assert_allclose(y, ref, **TOL)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("k", [1, 2])
def test_losses_match_numpy(shape, k):
    x = make_data(1, shape, k)
    got = critic_loss(x["q_tm1"], x["target"])
    assert got.shape == ()
    np.testing.assert_allclose(got, ref_critic_loss(x["q_tm1"], x["target"]), **TOL)
    got = sac_actor_loss(x["log_prob"], x["q"], 0.3)
    np.testing.assert_allclose(got, ref_sac_actor_loss(x["log_prob"], x["q"], 0.3), **TOL)
    got = temperature_loss(-0.7, x["log_prob"], -2.0)
    np.testing.assert_allclose(got, ref_temperature_loss(-0.7, x["log_prob"], -2.0), **TOL)
    got = deterministic_actor_loss(x["q"][..., 0])
    np.testing.assert_allclose(got, -np.mean(x["q"][..., 0], dtype=np.float64), **TOL)


@pytest.mark.parametrize("k", [1, 2])
def test_jit_and_vmap(k):
    """Per-transition calls vmapped over [T, B] under jit equal the loop; the batched losses
    vmapped over T are the per-row losses (whose mean is the loss of the whole [T, B])."""
    x = make_data(2, (T, B), k)
    per_item = jax.jit(jax.vmap(jax.vmap(soft_q_target, (0, 0, 0, 0, None)), (0, 0, 0, 0, None)))
    y = per_item(x["r"], x["discount"], x["q_t"], x["log_prob_t"], 0.3)
    ref = ref_soft_q_target(x["r"], x["discount"], x["q_t"], x["log_prob_t"], 0.3)
    np.testing.assert_allclose(y, ref, **TOL)
    y = jax.jit(jax.vmap(jax.vmap(clipped_double_q_target)))(x["r"], x["discount"], x["q_t"])
    ref = ref_clipped_double_q_target(x["r"], x["discount"], x["q_t"])
    np.testing.assert_allclose(y, ref, **TOL)

    rows = range(T)
    got = jax.jit(jax.vmap(critic_loss))(x["q_tm1"], x["target"])
    ref = [ref_critic_loss(x["q_tm1"][t], x["target"][t]) for t in rows]
    np.testing.assert_allclose(got, ref, **TOL)
    np.testing.assert_allclose(got.mean(), critic_loss(x["q_tm1"], x["target"]), **TOL)
    got = jax.jit(jax.vmap(sac_actor_loss, (0, 0, None)))(x["log_prob"], x["q"], 0.3)
    ref = [ref_sac_actor_loss(x["log_prob"][t], x["q"][t], 0.3) for t in rows]
    np.testing.assert_allclose(got, ref, **TOL)
    got = jax.jit(jax.vmap(temperature_loss, (None, 0, None)))(-0.7, x["log_prob"], -2.0)
    ref = [ref_temperature_loss(-0.7, x["log_prob"][t], -2.0) for t in rows]
    np.testing.assert_allclose(got, ref, **TOL)
    got = jax.jit(jax.vmap(deterministic_actor_loss))(x["q"][..., 0])
    np.testing.assert_allclose(got, -x["q"][..., 0].mean(-1), **TOL)


def test_hyperparameters_can_be_traced_and_vmapped():
    """α and the target entropy may be pytree leaves (a sweep over them in one compile)."""
    x = make_data(3, (B,), 2)
    alphas = jnp.array([0.0, 0.1, 1.0])
    y = jax.jit(jax.vmap(soft_q_target, (None, None, None, None, 0)))(
        x["r"], x["discount"], x["q_t"], x["log_prob_t"], alphas
    )
    for i, alpha in enumerate([0.0, 0.1, 1.0]):
        ref = ref_soft_q_target(x["r"], x["discount"], x["q_t"], x["log_prob_t"], alpha)
        np.testing.assert_allclose(y[i], ref, **TOL)
    # α = 0: the soft target is TD3's clipped double-Q target
    np.testing.assert_allclose(y[0], clipped_double_q_target(x["r"], x["discount"], x["q_t"]))
    entropies = jnp.array([-3.0, 0.5])
    got = jax.vmap(temperature_loss, (None, None, 0))(0.4, x["log_prob"], entropies)
    ref = [ref_temperature_loss(0.4, x["log_prob"], h) for h in [-3.0, 0.5]]
    np.testing.assert_allclose(got, ref, **TOL)


# --------------------------------------------------------------------------------------------
# Hand-computed cases


def test_soft_q_target_hand_computed():
    r = jnp.array([1.0, -1.0, 2.0])
    d = jnp.array([0.5, 0.9, 0.0])
    q_t = jnp.array([[4.0, 3.0], [-2.0, 1.0], [100.0, 100.0]])
    logp_t = jnp.array([-1.0, 2.0, 5.0])
    # α = 0.2:  1 + .5·(min(4, 3) − .2·(−1)) = 1 + .5·3.2 = 2.6
    #          −1 + .9·(min(−2, 1) − .2·2)   = −1 + .9·(−2.4) = −3.16
    #           2 + 0·(anything)             = 2
    y = soft_q_target(r, d, q_t, logp_t, 0.2)
    np.testing.assert_allclose(y, [2.6, -3.16, 2.0], rtol=1e-6)


def test_clipped_double_q_target_hand_computed_and_ddpg():
    r = jnp.array([1.0, -1.0])
    d = jnp.array([0.5, 0.9])
    q_t = jnp.array([[4.0, 3.0], [-2.0, 1.0]])
    # 1 + .5·3 = 2.5;  −1 + .9·(−2) = −2.8
    np.testing.assert_allclose(clipped_double_q_target(r, d, q_t), [2.5, -2.8], rtol=1e-6)
    # K = 1 is DDPG's target: 1 + .5·4 = 3;  −1 + .9·(−2) = −2.8
    np.testing.assert_allclose(clipped_double_q_target(r, d, q_t[:, :1]), [3.0, -2.8], rtol=1e-6)


def test_zero_discount_target_is_reward_exactly():
    x = make_data(4, (T, B), 2)
    d = np.zeros((T, B), np.float32)
    q_t = x["q_t"] * 1e6  # any bootstrap leaking in would show
    y = soft_q_target(x["r"], d, q_t, x["log_prob_t"] * 1e6, 0.5)
    np.testing.assert_array_equal(y, x["r"])
    np.testing.assert_array_equal(clipped_double_q_target(x["r"], d, q_t), x["r"])


def test_critic_loss_hand_computed():
    q_tm1 = jnp.array([[1.0, 3.0], [0.0, -2.0]])
    target = jnp.array([2.0, 1.0])
    # row 0: ½(1−2)² + ½(3−2)² = 1;  row 1: ½(0−1)² + ½(−2−1)² = .5 + 4.5 = 5;  mean = 3
    np.testing.assert_allclose(critic_loss(q_tm1, target), 3.0, rtol=1e-6)
    # one critic, one transition: ½(4 − 1)² = 4.5
    np.testing.assert_allclose(critic_loss(jnp.array([4.0]), jnp.array(1.0)), 4.5, rtol=1e-6)


def test_sac_actor_loss_hand_computed():
    log_prob = jnp.array([-1.0, 2.0])
    q = jnp.array([[4.0, 3.0], [0.0, 1.0]])
    # α = .5: (.5·(−1) − 3 + .5·2 − 0) / 2 = (−3.5 + 1) / 2 = −1.25
    np.testing.assert_allclose(sac_actor_loss(log_prob, q, 0.5), -1.25, rtol=1e-6)


def test_temperature_loss_hand_computed():
    # log α = log 2, log π = [1, 3], H̄ = −1: −log 2 · mean(0, 2) = −log 2
    got = temperature_loss(jnp.log(2.0), jnp.array([1.0, 3.0]), -1.0)
    np.testing.assert_allclose(got, -np.log(2.0), rtol=1e-6)


def test_default_target_entropy():
    assert default_target_entropy(1) == -1.0
    assert default_target_entropy(6) == -6.0
    assert isinstance(default_target_entropy(3), float)


def test_deterministic_actor_loss_hand_computed():
    np.testing.assert_allclose(deterministic_actor_loss(jnp.array([1.0, 3.0, -7.0])), 1.0)
    np.testing.assert_allclose(deterministic_actor_loss(jnp.array([[1.0], [3.0]]).T), -2.0)


# --------------------------------------------------------------------------------------------
# Gradients


def test_targets_pass_no_gradient():
    x = make_data(5, (T, B), 2)
    args = tuple(jnp.asarray(x[n]) for n in ("r", "discount", "q_t", "log_prob_t")) + (0.3,)
    grads = jax.grad(lambda *a: soft_q_target(*a).sum(), argnums=(0, 1, 2, 3, 4))(*args)
    for g, a in zip(grads, args, strict=True):
        np.testing.assert_array_equal(g, np.zeros_like(a))
    args = args[:3]
    grads = jax.grad(lambda *a: clipped_double_q_target(*a).sum(), argnums=(0, 1, 2))(*args)
    for g, a in zip(grads, args, strict=True):
        np.testing.assert_array_equal(g, np.zeros_like(a))


@pytest.mark.parametrize("k", [1, 2])
def test_critic_loss_gradient(k):
    x = make_data(6, (T, B), k)
    g_q, g_y = jax.grad(critic_loss, argnums=(0, 1))(x["q_tm1"], x["target"])
    expected = (x["q_tm1"] - x["target"][..., None]) / (T * B)  # d/dq of mean Σ_k ½(q − y)²
    np.testing.assert_allclose(g_q, expected, **TOL)
    np.testing.assert_array_equal(g_y, np.zeros_like(x["target"]))


def test_sac_actor_loss_gradient():
    x = make_data(7, (T, B), 2)
    alpha = 0.3
    g_logp, g_q, g_alpha = jax.grad(sac_actor_loss, argnums=(0, 1, 2))(x["log_prob"], x["q"], alpha)
    n = T * B
    np.testing.assert_allclose(g_logp, np.full((T, B), alpha / n), **TOL)
    # only the smaller critic gets −1/n
    argmin = x["q"].argmin(-1)
    np.testing.assert_allclose(g_q, -np.eye(2)[argmin] / n, **TOL)
    assert (g_q[np.eye(2, dtype=bool)[1 - argmin]] == 0).all()
    assert float(g_alpha) == 0.0


def test_temperature_loss_gradient():
    x = make_data(8, (T, B), 1)
    grads = jax.grad(temperature_loss, argnums=(0, 1, 2))(-0.7, x["log_prob"], -2.0)
    np.testing.assert_allclose(grads[0], -np.mean(x["log_prob"] - 2.0, dtype=np.float64), **TOL)
    np.testing.assert_array_equal(grads[1], np.zeros_like(x["log_prob"]))
    assert float(grads[2]) == 0.0


def test_deterministic_actor_loss_gradient():
    q = jnp.asarray(np.random.default_rng(9).normal(size=(T, B)), jnp.float32)
    grad = jax.grad(deterministic_actor_loss)(q)
    np.testing.assert_allclose(grad, np.full((T, B), -1 / (T * B)), **TOL)


@pytest.mark.parametrize("entropy, direction", [(-3.0, 1), (1.0, -1)])
def test_temperature_moves_alpha_towards_target_entropy(entropy, direction):
    """Entropy −log π below the target H̄ = −2 raises α; above it lowers α."""
    target_entropy = default_target_entropy(2)
    log_prob = jnp.full((B,), -entropy)
    opt = optax.sgd(0.1)
    log_alpha = jnp.asarray(0.0)
    opt_state = opt.init(log_alpha)
    alphas = [1.0]
    for _ in range(5):
        g = jax.grad(temperature_loss)(log_alpha, log_prob, target_entropy)
        updates, opt_state = opt.update(g, opt_state)
        log_alpha = optax.apply_updates(log_alpha, updates)
        alphas.append(float(jnp.exp(log_alpha)))
    assert (direction * np.diff(alphas) > 0).all()
    # the step is lr·(H̄ − H) in log α: 5 steps of .1·(−2 − entropy)
    np.testing.assert_allclose(np.log(alphas[-1]), 0.5 * (target_entropy - entropy), rtol=1e-5)


# --------------------------------------------------------------------------------------------
# td3_target_action


def test_td3_noise_zero_returns_input_exactly(key):
    a = jnp.asarray(np.random.default_rng(10).uniform(-1, 1, size=(T, B, 3)), jnp.float32)
    a = a.at[0, 0].set(jnp.array([-1.0, 1.0, 0.0]))
    out = td3_target_action(key, a, noise_std=0.0, noise_clip=0.5)
    np.testing.assert_array_equal(out, a)


def test_td3_output_in_box_and_noise_clipped(key):
    # interior actions and c < distance to the bounds: the final clip never acts, so the
    # noise itself is visible and must lie in [−c, c], hitting ±c often when σ ≫ c
    a = jnp.zeros((N_DRAWS, 2))
    noise = np.asarray(td3_target_action(key, a, noise_std=1.0, noise_clip=0.3))
    assert np.abs(noise).max() <= 0.3
    # P(|σε| > c) = P(|Z| > .3) = .764
    np.testing.assert_allclose(np.mean(np.abs(noise) == np.float32(0.3)), 0.764, atol=0.01)
    np.testing.assert_allclose(noise.mean(0), 0.0, atol=0.01)
    # near the bound: output in [a − c, 1], and P(out = 1) = P(.2Z ≥ .1) = P(Z ≥ .5) = .3085
    a = jnp.full((N_DRAWS, 2), 0.9)
    out = np.asarray(td3_target_action(key, a, noise_std=0.2, noise_clip=0.5))
    assert out.min() >= 0.4 - 1e-6 and out.max() <= 1.0
    np.testing.assert_allclose(np.mean(out == 1.0), 0.3085, atol=0.01)
    # huge noise on random actions: always in [−1, 1]
    a = jnp.asarray(np.random.default_rng(11).uniform(-1, 1, size=(1000, 3)), jnp.float32)
    out = np.asarray(td3_target_action(key, a, noise_std=10.0, noise_clip=10.0))
    assert out.min() == -1.0 and out.max() == 1.0


def test_td3_noise_std_and_independence(key):
    """With a large clip the noise is N(0, σ²), drawn independently per entry."""
    a = jnp.zeros((N_DRAWS, 2))
    noise = np.asarray(td3_target_action(key, a, noise_std=0.1, noise_clip=10.0), np.float64)
    # the std of a sample std over 50 000 draws is ≈ .3% of σ: 3% is ≫ 4 sigma
    np.testing.assert_allclose(noise.std(0), 0.1, rtol=0.03)
    np.testing.assert_allclose(np.corrcoef(noise.T)[0, 1], 0.0, atol=0.02)


def test_td3_target_action_keys_jit_and_vmap(key):
    a = jnp.asarray(np.random.default_rng(12).uniform(-1, 1, size=(B, 3)), jnp.float32)
    out = td3_target_action(key, a, noise_std=0.2, noise_clip=0.5)
    assert out.shape == a.shape and out.dtype == jnp.float32
    np.testing.assert_array_equal(td3_target_action(key, a, noise_std=0.2, noise_clip=0.5), out)
    other = td3_target_action(jax.random.PRNGKey(1), a, noise_std=0.2, noise_clip=0.5)
    assert (np.asarray(other) != np.asarray(out)).any()
    # jit with traced hyperparameters; vmap over keys
    jitted = jax.jit(lambda k, x, s, c: td3_target_action(k, x, noise_std=s, noise_clip=c))
    np.testing.assert_allclose(jitted(key, a, 0.2, 0.5), out, **TOL)
    np.testing.assert_array_equal(jitted(key, a, 0.0, 0.5), a)
    keys = jax.random.split(key, 3)
    many = jax.vmap(lambda k: td3_target_action(k, a, noise_std=0.2, noise_clip=0.5))(keys)
    assert many.shape == (3, B, 3)
    for i in range(3):
        single = td3_target_action(keys[i], a, noise_std=0.2, noise_clip=0.5)
        np.testing.assert_allclose(many[i], single, **TOL)
    assert (np.asarray(many[0]) != np.asarray(many[1])).any()
