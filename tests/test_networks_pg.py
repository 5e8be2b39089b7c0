"""Tests for the policy-gradient networks of purerl/networks.py: ``orthogonal_linear``,
``PolicyNetwork``, ``ValueNetwork`` and ``ActorCritic`` (separate or shared torso)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.networks import ActorCritic, PolicyNetwork, ValueNetwork, orthogonal_linear
from purerl.policies import Categorical, DiagGaussian

# Few distinct layer shapes across the file: each new shape compiles the PRNG (~0.3 s on CPU).
OBS = (4,)
A = 3
HIDDEN = (8, 8)
rng = np.random.default_rng(0)
OBS_BATCH = jnp.asarray(rng.normal(size=(5, *OBS)), jnp.float32)


def gram(w):
    """``W Wᵀ`` or ``Wᵀ W``, whichever is the smaller square."""
    w = np.asarray(w, np.float64)
    return w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w


# --------------------------------------------------------------------------------------------
# orthogonal_linear


@pytest.mark.parametrize("shape", [(4, 8), (8, 8), (8, 3)])  # (in, out) of the MLP layers
@pytest.mark.parametrize("scale", [1.0, 2.0**0.5, 0.01])
def test_orthogonal_linear_is_scaled_orthogonal_with_zero_bias(key, shape, scale):
    in_size, out_size = shape
    layer = orthogonal_linear(in_size, out_size, scale, key=key)
    assert layer.weight.shape == (out_size, in_size) and layer.bias.shape == (out_size,)
    k = min(shape)
    np.testing.assert_allclose(gram(layer.weight), scale**2 * np.eye(k), atol=1e-5 * max(scale, 1))
    np.testing.assert_array_equal(layer.bias, 0.0)
    x = jnp.asarray(rng.normal(size=in_size), jnp.float32)
    np.testing.assert_allclose(layer(x), layer.weight @ x, rtol=1e-5, atol=1e-6)


def test_orthogonal_linear_depends_on_key(key):
    a = orthogonal_linear(8, 8, 1.0, key=key)
    b = orthogonal_linear(8, 8, 1.0, key=jax.random.PRNGKey(1))
    c = orthogonal_linear(8, 8, 1.0, key=key)
    assert not np.allclose(a.weight, b.weight)
    np.testing.assert_array_equal(a.weight, c.weight)


# --------------------------------------------------------------------------------------------
# PolicyNetwork


def test_policy_network_discrete(key):
    pi = PolicyNetwork(OBS, A, hidden_sizes=HIDDEN, key=key)
    dist = pi(OBS_BATCH[0])
    assert isinstance(dist, Categorical) and dist.logits.shape == (A,)
    assert pi.log_std is None and not pi.continuous
    batched = jax.vmap(pi)(OBS_BATCH)
    assert isinstance(batched, Categorical) and batched.logits.shape == (5, A)
    np.testing.assert_allclose(batched.logits[0], dist.logits, rtol=1e-5, atol=1e-7)
    assert jax.vmap(lambda d: d.sample(jax.random.PRNGKey(0)))(batched).shape == (5,)


def test_policy_network_continuous(key):
    pi = PolicyNetwork(OBS, A, continuous=True, hidden_sizes=HIDDEN, log_std_init=-0.5, key=key)
    dist = pi(OBS_BATCH[0])
    assert isinstance(dist, DiagGaussian)
    assert dist.mean.shape == (A,) and dist.log_std.shape == (A,)
    np.testing.assert_array_equal(dist.log_std, -0.5)
    batched = jax.vmap(pi)(OBS_BATCH)
    assert batched.mean.shape == (5, A) and batched.log_std.shape == (5, A)
    assert batched.log_prob(batched.mean).shape == (5,)
    # log_std is a learned parameter: it gets a gradient
    grad = eqx.filter_grad(lambda p: jnp.sum(jax.vmap(p)(OBS_BATCH).entropy()))(pi)
    np.testing.assert_allclose(grad.log_std, 5.0, rtol=1e-6)


def test_policy_network_orthogonal_init_and_near_uniform_head(key):
    pi = PolicyNetwork(OBS, A, hidden_sizes=HIDDEN, key=key)
    layers = pi.net.layers
    assert [layer.weight.shape for layer in layers] == [(8, 4), (8, 8), (A, 8)]
    for layer, scale in zip(layers, [2.0**0.5, 2.0**0.5, 0.01], strict=True):
        k = min(layer.weight.shape)
        np.testing.assert_allclose(gram(layer.weight), scale**2 * np.eye(k), rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(layer.bias, 0.0)
    # head gain 0.01: |logit| ≤ 0.01·‖tanh(h)‖ ≤ 0.01·√8, so π(·|s) is close to uniform
    obs = jnp.asarray(rng.normal(scale=3.0, size=(50, *OBS)), jnp.float32)
    probs = jax.nn.softmax(jax.vmap(pi)(obs).logits, axis=-1)
    np.testing.assert_allclose(probs, 1.0 / A, atol=0.02)
    assert np.abs(np.asarray(jax.vmap(pi)(obs).logits)).max() <= 0.01 * 8**0.5 + 1e-6


def test_policy_network_flattens_multi_dim_obs(key):
    pi = PolicyNetwork((2, 2), A, hidden_sizes=HIDDEN, key=key)  # flattens to OBS's size
    assert pi.net.layers[0].weight.shape == (8, 4)
    logits = pi(OBS_BATCH[0].reshape(2, 2)).logits
    flat = PolicyNetwork(OBS, A, hidden_sizes=HIDDEN, key=key)
    np.testing.assert_allclose(logits, flat(OBS_BATCH[0]).logits, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------
# ValueNetwork


def test_value_network_scalar_output(key):
    vf = ValueNetwork(OBS, hidden_sizes=HIDDEN, key=key)
    v = vf(OBS_BATCH[0])
    assert v.shape == () and v.dtype == jnp.float32
    assert jax.vmap(vf)(OBS_BATCH).shape == (5,)
    head = vf.net.layers[-1]
    assert head.weight.shape == (1, 8)
    np.testing.assert_allclose(np.sum(np.square(head.weight)), 1.0, rtol=1e-5)  # gain 1


# --------------------------------------------------------------------------------------------
# ActorCritic


@pytest.mark.parametrize("shared_torso", [False, True])
@pytest.mark.parametrize("continuous", [False, True])
def test_actor_critic_shapes(key, shared_torso, continuous):
    ac = ActorCritic(
        OBS, A, continuous=continuous, hidden_sizes=HIDDEN, shared_torso=shared_torso, key=key
    )
    dist, value = ac(OBS_BATCH[0])
    assert value.shape == ()
    assert isinstance(dist, DiagGaussian if continuous else Categorical)
    dists, values = jax.vmap(ac)(OBS_BATCH)
    assert values.shape == (5,)
    out = dists.mean if continuous else dists.logits
    assert out.shape == (5, A)
    np.testing.assert_allclose(values[0], value, rtol=1e-5, atol=1e-6)
    assert isinstance(ac.value, eqx.nn.Linear if shared_torso else ValueNetwork)


def test_actor_critic_shared_torso_policy_matches_policy_network(key):
    # the shared forward pass must compute the same policy as the PolicyNetwork it holds
    ac = ActorCritic(OBS, A, hidden_sizes=HIDDEN, shared_torso=True, key=key)
    dists, _ = jax.vmap(ac)(OBS_BATCH)
    np.testing.assert_allclose(dists.logits, jax.vmap(ac.policy)(OBS_BATCH).logits, 1e-5, 1e-7)


def torso_grad_of_value(ac):
    grad = eqx.filter_grad(lambda m: jnp.sum(jax.vmap(m)(OBS_BATCH)[1]))(ac)
    return [np.asarray(layer.weight) for layer in grad.policy.net.layers]


def test_actor_critic_shared_torso_value_depends_on_torso(key):
    ac = ActorCritic(OBS, A, hidden_sizes=HIDDEN, shared_torso=True, key=key)
    torso_grads = torso_grad_of_value(ac)
    for g in torso_grads[:-1]:  # every hidden layer of the policy MLP feeds the value
        assert np.abs(g).max() > 1e-4
    np.testing.assert_array_equal(torso_grads[-1], 0.0)  # the policy head does not


def test_actor_critic_separate_value_ignores_policy_params(key):
    ac = ActorCritic(OBS, A, hidden_sizes=HIDDEN, shared_torso=False, key=key)
    for g in torso_grad_of_value(ac):
        np.testing.assert_array_equal(g, 0.0)


# --------------------------------------------------------------------------------------------
# Observation shape checks


@pytest.mark.parametrize(
    "build",
    [
        lambda k: PolicyNetwork(OBS, A, hidden_sizes=HIDDEN, key=k),
        lambda k: PolicyNetwork(OBS, A, continuous=True, hidden_sizes=HIDDEN, key=k),
        lambda k: ValueNetwork(OBS, hidden_sizes=HIDDEN, key=k),
        lambda k: ActorCritic(OBS, A, hidden_sizes=HIDDEN, key=k),
        lambda k: ActorCritic(OBS, A, hidden_sizes=HIDDEN, shared_torso=True, key=k),
    ],
    ids=["policy", "gaussian-policy", "value", "actor-critic", "shared-actor-critic"],
)
def test_wrong_obs_shape_raises(key, build):
    net = build(key)
    # a batch, a wrong size, a scalar, and the right size in the wrong shape
    for bad in (OBS_BATCH, jnp.ones((5,)), jnp.ones(()), jnp.ones((2, 2))):
        with pytest.raises(ValueError, match=r"^obs:"):
            net(bad)


def test_orthogonal_init_uses_no_lapack_qr_so_vmapped_init_cannot_deadlock():
    """jax.nn.initializers.orthogonal lowers to LAPACK's batched QR, which deadlocked the
    2-core CPU when init was vmapped over seeds; purerl's initialiser is plain XLA ops."""
    from purerl.networks import ActorCritic, orthogonal_matrix

    def init(key):
        return ActorCritic((4,), 2, key=key)

    keys = jax.random.split(jax.random.PRNGKey(0), 8)
    hlo = jax.jit(jax.vmap(init)).lower(keys).as_text()
    assert "geqrf" not in hlo and "lapack" not in hlo  # jax's orthogonal init lowers to geqrf
    w = np.asarray(orthogonal_matrix(jax.random.PRNGKey(1), 8, 8, 1.0))
    np.testing.assert_allclose(w @ w.T, np.eye(8), atol=1e-5)
