"""Tests for purerl/networks.py: MLP and QNetwork (plain and dueling)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.networks import ACTIVATIONS, MLP, QNetwork

# Few distinct layer shapes across the suite: each new shape compiles the PRNG (~0.3 s on CPU).
A = 3
rng = np.random.default_rng(0)


@pytest.mark.parametrize("obs_shape", [(4,), (10, 10, 3)])
@pytest.mark.parametrize("dueling", [False, True])
def test_qnetwork_output_shapes(key, obs_shape, dueling):
    net = QNetwork(obs_shape, A, hidden_sizes=(8,), dueling=dueling, key=key)
    obs = jnp.asarray(rng.normal(size=(5, *obs_shape)), jnp.float32)
    q = net(obs[0])
    assert q.shape == (A,) and q.dtype == jnp.float32
    batched = jax.vmap(net)(obs)
    assert batched.shape == (5, A)
    np.testing.assert_allclose(batched[0], q, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(np.asarray(batched)))
    # the input is flattened: the first layer sees prod(obs_shape) features
    assert net.torso.layers[0].weight.shape == (8, int(np.prod(obs_shape)))
    assert net.num_actions == A


def test_qnetwork_is_plain_mlp_without_dueling(key):
    net = QNetwork((4,), A, hidden_sizes=(8, 8), activation="tanh", key=key)
    assert net.value_head is None
    assert [layer.weight.shape for layer in net.torso.layers] == [(8, 4), (8, 8)]
    x = jnp.asarray(rng.normal(size=4), jnp.float32)
    h = x
    for layer in net.torso.layers:
        h = jnp.tanh(layer.weight @ h + layer.bias)
    expected = net.head.weight @ h + net.head.bias
    np.testing.assert_allclose(net(x), expected, rtol=1e-5, atol=1e-6)


def test_dueling_mean_advantage_identity(key):
    net = QNetwork((4,), A, hidden_sizes=(8, 8), dueling=True, key=key)
    assert net.value_head is not None
    obs = jnp.asarray(rng.normal(size=(7, 4)), jnp.float32)
    q = jax.vmap(net)(obs)
    # rebuild V(s) and A(s, ·) from the heads, independently of __call__
    h = jax.vmap(lambda o: jax.nn.relu(net.torso(o)))(obs)
    value = jax.vmap(net.value_head)(h)[:, 0]
    advantage = jax.vmap(net.head)(h)
    # mean_a Q(s, a) = V(s)  and  Q - mean Q = A - mean A
    np.testing.assert_allclose(q.mean(axis=1), value, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        q - q.mean(axis=1, keepdims=True),
        advantage - advantage.mean(axis=1, keepdims=True),
        rtol=1e-5,
        atol=1e-5,
    )
    # the value is not trivially equal to the mean advantage
    assert not np.allclose(value, advantage.mean(axis=1), atol=1e-3)


def test_different_keys_different_params_same_key_same_params():
    a = QNetwork((4,), A, hidden_sizes=(8,), key=jax.random.PRNGKey(0))
    b = QNetwork((4,), A, hidden_sizes=(8,), key=jax.random.PRNGKey(1))
    c = QNetwork((4,), A, hidden_sizes=(8,), key=jax.random.PRNGKey(0))
    la, lb, lc = (jax.tree.leaves(eqx.filter(n, eqx.is_array)) for n in (a, b, c))
    assert len(la) == len(lb) > 0
    assert all(not np.array_equal(x, y) for x, y in zip(la, lb, strict=True) if x.size > 1)
    for x, y in zip(la, lc, strict=True):
        np.testing.assert_array_equal(x, y)
    obs = jnp.ones(4)
    assert not np.allclose(a(obs), b(obs))


def test_unknown_activation_raises(key):
    with pytest.raises(ValueError, match="activation"):
        QNetwork((4,), 2, activation="sigmoidish", key=key)
    with pytest.raises(ValueError, match="activation"):
        MLP(4, 2, activation="nope", key=key)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_every_activation_builds(key, name):
    net = QNetwork((4,), A, hidden_sizes=(8,), activation=name, key=key)
    x = jnp.asarray(rng.normal(size=4), jnp.float32)
    h = ACTIVATIONS[name](net.torso.layers[0].weight @ x + net.torso.layers[0].bias)
    np.testing.assert_allclose(net(x), net.head.weight @ h + net.head.bias, rtol=1e-5, atol=1e-6)


def test_bad_sizes_raise(key):
    with pytest.raises(ValueError, match="hidden_sizes"):
        QNetwork((4,), 2, hidden_sizes=(), key=key)
    with pytest.raises(ValueError, match="num_actions"):
        QNetwork((4,), 0, key=key)


def test_qnetwork_rejects_a_batch_of_observations(key):
    net = QNetwork((4,), A, hidden_sizes=(8,), key=key)
    with pytest.raises(ValueError, match="obs"):
        net(jnp.ones((5, 4)))


def test_mlp_shapes(key):
    mlp = MLP(4, A, hidden_sizes=(8, 8), key=key)
    assert [layer.weight.shape for layer in mlp.layers] == [(8, 4), (8, 8), (A, 8)]
    assert mlp(jnp.ones((2, 2))).shape == (A,)  # the input is flattened
    np.testing.assert_allclose(mlp(jnp.ones((2, 2))), mlp(jnp.ones(4)))


def test_mlp_matches_numpy_forward_vmapped(key):
    """MLP computes each layer as ``x @ Wᵀ + b`` (a layout that batches without transposes):
    its output, one by one and vmapped, equals a NumPy forward pass through its layers."""
    mlp = MLP(4, A, hidden_sizes=(8, 8), activation="tanh", key=key)
    xs = rng.normal(size=(5, 4)).astype(np.float32)

    def numpy_forward(x):
        for i, layer in enumerate(mlp.layers):
            x = x @ np.asarray(layer.weight).T + np.asarray(layer.bias)
            x = np.tanh(x) if i < len(mlp.layers) - 1 else x
        return x

    expected = np.stack([numpy_forward(x) for x in xs])
    np.testing.assert_allclose(jax.vmap(mlp)(xs), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mlp(xs[0]), expected[0], rtol=1e-5, atol=1e-6)
    first, second, last = mlp.layers  # equinox's own Linear.__call__, composed by hand
    by_layers = last(jnp.tanh(second(jnp.tanh(first(xs[0])))))
    np.testing.assert_allclose(mlp(xs[0]), by_layers, rtol=1e-5, atol=1e-6)
