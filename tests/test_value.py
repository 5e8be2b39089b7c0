"""Tests for purerl/value.py: TD errors, losses, td_loss/td_update and target updates."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from purerl.networks import QNetwork
from purerl.types import Transition
from purerl.value import (
    double_q_learning_td_error,
    huber_loss,
    periodic_update,
    polyak_update,
    q_learning_td_error,
    squared_loss,
    td_loss,
    td_update,
)

B, A, OBS = 6, 3, 4
GAMMA = 0.9

# --------------------------------------------------------------------------------------------
# NumPy references


def ref_q_learning(q_tm1, a_tm1, r_t, d_t, q_t):
    out = np.zeros(len(r_t))
    for i in range(len(r_t)):
        out[i] = r_t[i] + d_t[i] * np.max(q_t[i]) - q_tm1[i, a_tm1[i]]
    return out


def ref_double_q_learning(q_tm1, a_tm1, r_t, d_t, q_t_value, q_t_selector):
    out = np.zeros(len(r_t))
    for i in range(len(r_t)):
        best = int(np.argmax(q_t_selector[i]))
        out[i] = r_t[i] + d_t[i] * q_t_value[i, best] - q_tm1[i, a_tm1[i]]
    return out


def ref_huber(x, delta=1.0):
    x = np.asarray(x, np.float64)
    return np.where(np.abs(x) <= delta, 0.5 * x**2, delta * (np.abs(x) - 0.5 * delta))


def random_td_inputs(seed, batch=B):
    rng = np.random.default_rng(seed)
    q_tm1 = rng.normal(size=(batch, A)).astype(np.float32)
    a_tm1 = rng.integers(0, A, size=batch).astype(np.int32)
    r_t = rng.normal(size=batch).astype(np.float32)
    d_t = np.where(rng.uniform(size=batch) < 0.3, 0.0, GAMMA).astype(np.float32)
    q_t = rng.normal(size=(batch, A)).astype(np.float32)
    q_sel = rng.normal(size=(batch, A)).astype(np.float32)
    return q_tm1, a_tm1, r_t, d_t, q_t, q_sel


# --------------------------------------------------------------------------------------------
# TD errors


def test_q_learning_td_error_hand_computed():
    q_tm1 = jnp.array([[1.0, 2.0], [0.5, -1.0]])
    a_tm1 = jnp.array([1, 0])
    r_t = jnp.array([1.0, -1.0])
    d_t = jnp.array([0.5, 0.0])
    q_t = jnp.array([[3.0, 4.0], [100.0, 7.0]])
    # 1 + .5*4 - 2 = 1;  -1 + 0*100 - .5 = -1.5
    td = q_learning_td_error(q_tm1, a_tm1, r_t, d_t, q_t)
    np.testing.assert_allclose(td, [1.0, -1.5], rtol=1e-6)


def test_double_q_learning_td_error_hand_computed():
    q_tm1 = jnp.array([[1.0, 2.0], [0.5, -1.0]])
    a_tm1 = jnp.array([1, 0])
    r_t = jnp.array([1.0, -1.0])
    d_t = jnp.array([0.5, 0.5])
    q_t_value = jnp.array([[3.0, 4.0], [10.0, 6.0]])
    q_t_selector = jnp.array([[9.0, 0.0], [0.0, 9.0]])  # selects 0 then 1 (not the value argmax)
    # 1 + .5*3 - 2 = .5;  -1 + .5*6 - .5 = 1.5
    td = double_q_learning_td_error(q_tm1, a_tm1, r_t, d_t, q_t_value, q_t_selector)
    np.testing.assert_allclose(td, [0.5, 1.5], rtol=1e-6)


def test_td_errors_single_transition():
    td = q_learning_td_error(jnp.array([1.0, 2.0]), jnp.array(0), 1.0, 0.5, jnp.array([2.0, 6.0]))
    assert td.shape == ()
    np.testing.assert_allclose(td, 3.0)
    dtd = double_q_learning_td_error(
        jnp.array([1.0, 2.0]), jnp.array(0), 1.0, 0.5, jnp.array([2.0, 6.0]), jnp.array([1.0, 0.0])
    )
    np.testing.assert_allclose(dtd, 1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_td_errors_match_loops(seed):
    q_tm1, a_tm1, r_t, d_t, q_t, q_sel = random_td_inputs(seed, batch=32)
    td = q_learning_td_error(q_tm1, a_tm1, r_t, d_t, q_t)
    np.testing.assert_allclose(td, ref_q_learning(q_tm1, a_tm1, r_t, d_t, q_t), 1e-5, 1e-5)
    dtd = double_q_learning_td_error(q_tm1, a_tm1, r_t, d_t, q_t, q_sel)
    ref = ref_double_q_learning(q_tm1, a_tm1, r_t, d_t, q_t, q_sel)
    np.testing.assert_allclose(dtd, ref, 1e-5, 1e-5)


def test_td_errors_jit_and_vmap():
    q_tm1, a_tm1, r_t, d_t, q_t, q_sel = random_td_inputs(2, batch=8)
    # vmap over the batch of single transitions, under jit, equals the loop reference.
    q_fn = jax.jit(jax.vmap(q_learning_td_error))
    dq_fn = jax.jit(jax.vmap(double_q_learning_td_error))
    np.testing.assert_allclose(
        q_fn(q_tm1, a_tm1, r_t, d_t, q_t), ref_q_learning(q_tm1, a_tm1, r_t, d_t, q_t), 1e-5, 1e-5
    )
    ref = ref_double_q_learning(q_tm1, a_tm1, r_t, d_t, q_t, q_sel)
    np.testing.assert_allclose(dq_fn(q_tm1, a_tm1, r_t, d_t, q_t, q_sel), ref, 1e-5, 1e-5)


def test_zero_discount_target_is_reward_exactly():
    q_tm1, a_tm1, r_t, _, q_t, q_sel = random_td_inputs(3)
    d_t = np.zeros_like(r_t)
    q_t = q_t * 1e6  # any bootstrap leaking in would show
    taken = q_tm1[np.arange(B), a_tm1]
    expected = r_t - taken  # float32, the same two operations: target == r exactly
    np.testing.assert_array_equal(q_learning_td_error(q_tm1, a_tm1, r_t, d_t, q_t), expected)
    dtd = double_q_learning_td_error(q_tm1, a_tm1, r_t, d_t, q_t, q_sel)
    np.testing.assert_array_equal(dtd, expected)


def test_td_errors_stop_gradient_through_target():
    q_tm1, a_tm1, r_t, d_t, q_t, q_sel = random_td_inputs(4)
    g_tm1, g_t = jax.grad(lambda a, b: q_learning_td_error(a, a_tm1, r_t, d_t, b).sum(), (0, 1))(
        q_tm1, q_t
    )
    np.testing.assert_array_equal(g_t, np.zeros_like(q_t))
    np.testing.assert_array_equal(g_tm1, -np.eye(A, dtype=np.float32)[a_tm1])
    grads = jax.grad(
        lambda a, b, c: double_q_learning_td_error(a, a_tm1, r_t, d_t, b, c).sum(), (0, 1, 2)
    )(q_tm1, q_t, q_sel)
    np.testing.assert_array_equal(grads[0], -np.eye(A, dtype=np.float32)[a_tm1])
    np.testing.assert_array_equal(grads[1], np.zeros_like(q_t))
    np.testing.assert_array_equal(grads[2], np.zeros_like(q_sel))


# --------------------------------------------------------------------------------------------
# Losses


def test_squared_loss_hand_values():
    np.testing.assert_allclose(squared_loss(jnp.array([0.0, 2.0, -3.0])), [0.0, 2.0, 4.5])


def test_huber_loss_hand_values():
    x = jnp.array([0.0, 0.5, -0.5, 2.0, -3.0])
    np.testing.assert_allclose(huber_loss(x), [0.0, 0.125, 0.125, 1.5, 2.5], rtol=1e-6)
    # delta = 2: quadratic up to |x| = 2, then 2*(|x| - 1)
    np.testing.assert_allclose(huber_loss(x, 2.0), [0.0, 0.125, 0.125, 2.0, 4.0], rtol=1e-6)
    xs = np.linspace(-4, 4, 37).astype(np.float32)
    np.testing.assert_allclose(huber_loss(xs, 1.5), ref_huber(xs, 1.5), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("delta", [1.0, 0.7])
def test_huber_gradient_is_clipped_td_error(delta):
    x = jnp.array([-5.0, -1.2, -0.3, 0.0, 0.4, 0.69, 2.5, 10.0])
    grad = jax.vmap(jax.grad(lambda e: huber_loss(e, delta)))(x)
    np.testing.assert_allclose(grad, np.clip(np.asarray(x), -delta, delta), rtol=1e-6)
    grad_sq = jax.vmap(jax.grad(squared_loss))(x)
    np.testing.assert_allclose(grad_sq, x, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# td_loss / td_update on a tiny QNetwork


@pytest.fixture(scope="module")
def nets():
    k1, k2 = jax.random.split(jax.random.PRNGKey(42))
    q_net = QNetwork((OBS,), A, hidden_sizes=(8,), key=k1)
    target_net = QNetwork((OBS,), A, hidden_sizes=(8,), key=k2)
    return q_net, target_net


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(7)
    return Transition(
        obs=jnp.asarray(rng.normal(size=(B, OBS)), jnp.float32),
        action=jnp.asarray(rng.integers(0, A, size=B), jnp.int32),
        reward=jnp.asarray(rng.normal(size=B), jnp.float32),
        discount=jnp.asarray([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(B, OBS)), jnp.float32),
    )


def manual_td_errors(q_net, target_net, batch, double=False):
    """TD errors written from scratch, target under stop_gradient."""
    rows = jnp.arange(B)
    q = jax.vmap(q_net)(batch.obs)
    q_next = jax.lax.stop_gradient(jax.vmap(target_net)(batch.next_obs))
    if double:
        boot = q_next[rows, jnp.argmax(jax.vmap(q_net)(batch.next_obs), axis=1)]
    else:
        boot = jnp.max(q_next, axis=1)
    target = jax.lax.stop_gradient(batch.reward + GAMMA * batch.discount * boot)
    return target - q[rows, batch.action]


def manual_loss(q_net, target_net, batch, double=False):
    td = manual_td_errors(q_net, target_net, batch, double)
    per_item = jnp.where(jnp.abs(td) <= 1.0, 0.5 * td**2, jnp.abs(td) - 0.5)
    return jnp.mean(per_item)


@pytest.mark.parametrize("double", [False, True])
def test_td_loss_matches_manual(nets, batch, double):
    q_net, target_net = nets
    loss, aux = td_loss(q_net, target_net, batch, gamma=GAMMA, double=double)
    manual = manual_td_errors(q_net, target_net, batch, double)
    np.testing.assert_allclose(aux["td_error"], manual, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, manual_loss(q_net, target_net, batch, double), rtol=1e-5)
    taken = jnp.stack([q_net(batch.obs[i])[batch.action[i]] for i in range(B)])
    np.testing.assert_allclose(aux["q_mean"], jnp.mean(taken), rtol=1e-5, atol=1e-6)
    sq, aux_sq = td_loss(q_net, target_net, batch, gamma=GAMMA, double=double, loss="squared")
    np.testing.assert_allclose(sq, jnp.mean(0.5 * aux_sq["td_error"] ** 2), rtol=1e-6)


def test_td_loss_terminal_transition_target_is_reward(nets, batch):
    q_net, target_net = nets
    _, aux = td_loss(q_net, target_net, batch, gamma=GAMMA)
    taken = jax.vmap(q_net)(batch.obs)[jnp.arange(B), batch.action]
    terminal = np.asarray(batch.discount) == 0
    np.testing.assert_array_equal(
        np.asarray(aux["td_error"])[terminal], np.asarray(batch.reward - taken)[terminal]
    )


def test_td_loss_weights_scale_per_item_loss(nets, batch):
    q_net, target_net = nets
    plain, aux = td_loss(q_net, target_net, batch, gamma=GAMMA)
    per_item = huber_loss(aux["td_error"])
    w = jnp.array([0.0, 1.0, 2.0, 0.5, 3.0, 1.0])
    weighted, _ = td_loss(q_net, target_net, batch, gamma=GAMMA, weights=w)
    np.testing.assert_allclose(weighted, jnp.mean(w * per_item), rtol=1e-6)
    ones, _ = td_loss(q_net, target_net, batch, gamma=GAMMA, weights=jnp.ones(B))
    np.testing.assert_allclose(ones, plain, rtol=1e-6)
    # A one-hot weight (times B) isolates one item's loss.
    only_2, _ = td_loss(q_net, target_net, batch, gamma=GAMMA, weights=B * jnp.eye(B)[2])
    np.testing.assert_allclose(only_2, per_item[2], rtol=1e-5)


@pytest.mark.parametrize("double", [False, True])
def test_no_gradient_flows_through_target_net(nets, batch, double):
    q_net, target_net = nets

    def loss_wrt_target(target, online):
        return td_loss(online, target, batch, gamma=GAMMA, double=double)[0]

    grads = eqx.filter_grad(loss_wrt_target)(target_net, q_net)
    leaves = jax.tree.leaves(grads)
    assert leaves and all(np.all(np.asarray(g) == 0) for g in leaves)


@pytest.mark.parametrize("double", [False, True])
def test_target_net_is_q_net_gradient_equals_stop_gradient_copy(nets, batch, double):
    q_net, _ = nets

    def same_net(q):
        return td_loss(q, q, batch, gamma=GAMMA, double=double)[0]

    def frozen_copy(q):
        frozen = jax.tree.map(jax.lax.stop_gradient, q)
        return td_loss(q, frozen, batch, gamma=GAMMA, double=double)[0]

    g_same = eqx.filter_grad(same_net)(q_net)
    g_frozen = eqx.filter_grad(frozen_copy)(q_net)
    for a, b in zip(jax.tree.leaves(g_same), jax.tree.leaves(g_frozen), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(g_same))


@pytest.mark.parametrize("double", [False, True])
def test_td_update_is_one_manual_sgd_step(nets, batch, double):
    q_net, target_net = nets
    lr = 0.1
    optimizer = optax.sgd(lr)
    opt_state = optimizer.init(eqx.filter(q_net, eqx.is_inexact_array))
    new_net, _, info = td_update(
        q_net, target_net, opt_state, batch, optimizer=optimizer, gamma=GAMMA, double=double
    )
    manual_grads = eqx.filter_grad(manual_loss)(q_net, target_net, batch, double)
    expected = jax.tree.map(lambda p, g: p - lr * g, q_net, manual_grads)
    for got, want in zip(jax.tree.leaves(new_net), jax.tree.leaves(expected), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info["loss"], manual_loss(q_net, target_net, batch, double), 1e-6)
    norm = np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(manual_grads)))
    np.testing.assert_allclose(info["grad_norm"], norm, rtol=1e-5)
    assert info["td_error"].shape == (B,)
    # The target network is untouched, and the loss on the fixed batch went down.
    after, _ = td_loss(new_net, target_net, batch, gamma=GAMMA, double=double)
    assert after < info["loss"]


def test_td_update_repeated_steps_reduce_loss_under_jit(nets, batch):
    q_net, target_net = nets
    optimizer = optax.sgd(0.05)
    opt_state = optimizer.init(eqx.filter(q_net, eqx.is_inexact_array))
    step = eqx.filter_jit(
        lambda q, s: td_update(q, target_net, s, batch, optimizer=optimizer, gamma=GAMMA)
    )
    losses = []
    for _ in range(20):
        q_net, opt_state, info = step(q_net, opt_state)
        losses.append(float(info["loss"]))
    assert losses[-1] < 0.5 * losses[0]


# --------------------------------------------------------------------------------------------
# Target-network updates


def _assert_trees(a, b, exact=True):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) > 0
    for x, y in zip(la, lb, strict=True):
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_polyak_update(nets):
    q_net, target_net = nets
    _assert_trees(polyak_update(target_net, q_net, 1.0), q_net)
    _assert_trees(polyak_update(target_net, q_net, 0.0), target_net)
    mixed = polyak_update(target_net, q_net, 0.3)
    expected = jax.tree.map(
        lambda t, o: 0.7 * np.asarray(t, np.float64) + 0.3 * np.asarray(o, np.float64),
        target_net,
        q_net,
    )
    _assert_trees(mixed, expected, exact=False)
    assert type(mixed) is QNetwork and mixed.num_actions == A
    # tau may be traced
    traced = eqx.filter_jit(polyak_update)(target_net, q_net, jnp.float32(0.3))
    _assert_trees(traced, expected, exact=False)


def test_periodic_update_eager(nets):
    q_net, target_net = nets
    for step in range(7):
        out = periodic_update(target_net, q_net, step, period=3)
        _assert_trees(out, q_net if step % 3 == 0 else target_net)
    soft = periodic_update(target_net, q_net, 6, period=3, tau=0.3)
    _assert_trees(soft, polyak_update(target_net, q_net, 0.3), exact=False)


def test_periodic_update_traced_step(nets):
    q_net, target_net = nets
    fn = eqx.filter_jit(lambda t, o, s: periodic_update(t, o, s, 4, tau=0.5))
    half = polyak_update(target_net, q_net, 0.5)
    for step in [0, 1, 3, 4, 5, 8]:
        out = fn(target_net, q_net, jnp.int32(step))
        _assert_trees(out, half if step % 4 == 0 else target_net, exact=step % 4 != 0)


def test_periodic_update_refuses_a_non_positive_period():
    net = QNetwork((4,), 2, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="^period:"):
        periodic_update(net, net, 0, 0)
