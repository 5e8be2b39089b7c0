"""Tests for the pixel networks in purerl/networks.py (MinAtar CNN, Nature-DQN CNN), the
torso choice from the observation shape, and LayerNorm in MLPs and Q-networks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.networks import MLP, MinAtarCNN, NatureCNN, QNetwork, torso_for

rng = np.random.default_rng(0)


def ref_conv_valid(x_hwc, weight, bias, stride):
    """Plain NumPy 'VALID' convolution: x [H, W, C], weight [O, C, k, k] -> [H', W', O]."""
    out_c, _, k, _ = weight.shape
    h = (x_hwc.shape[0] - k) // stride + 1
    w = (x_hwc.shape[1] - k) // stride + 1
    out = np.zeros((h, w, out_c))
    for i in range(h):
        for j in range(w):
            patch = x_hwc[i * stride : i * stride + k, j * stride : j * stride + k, :]  # k k C
            out[i, j] = np.einsum("klc,ockl->o", patch, weight) + bias
    return out


def test_minatar_cnn_matches_numpy_reference(key):
    """Young & Tian (2019): conv 16 × 3×3 stride 1 → ReLU → fc 128 → ReLU."""
    torso = MinAtarCNN((10, 10, 4), key=key)
    conv = torso.convs[0]
    assert conv.weight.shape == (16, 4, 3, 3)
    assert torso.linear.weight.shape == (128, 8 * 8 * 16) and torso.out_features == 128
    obs = (rng.uniform(size=(10, 10, 4)) < 0.3).astype(np.float32)  # MinAtar: 0/1 channels
    h = np.maximum(
        ref_conv_valid(obs, np.asarray(conv.weight), np.asarray(conv.bias)[:, 0, 0], 1), 0
    )
    flat = np.transpose(h, (2, 0, 1)).ravel()  # the torso flattens channels-first
    lin = torso.linear
    expected = np.maximum(np.asarray(lin.weight) @ flat + np.asarray(lin.bias), 0)
    np.testing.assert_allclose(torso(jnp.asarray(obs)), expected, rtol=1e-4, atol=1e-5)


def test_nature_cnn_shapes_and_pixel_scaling(key):
    """Mnih et al. (2015): 84×84×4 → 20×20×32 → 9×9×64 → 7×7×64 → 512; uint8 pixels / 255."""
    torso = NatureCNN((84, 84, 4), key=key)
    assert [c.weight.shape for c in torso.convs] == [
        (32, 4, 8, 8),
        (64, 32, 4, 4),
        (64, 64, 3, 3),
    ]
    assert [c.stride for c in torso.convs] == [(4, 4), (2, 2), (1, 1)]
    assert torso.linear.weight.shape == (512, 7 * 7 * 64)
    frames = rng.integers(0, 256, size=(84, 84, 4)).astype(np.uint8)
    out = torso(jnp.asarray(frames))
    assert out.shape == (512,) and np.all(np.asarray(out) >= 0)
    x = jnp.transpose(jnp.asarray(frames, jnp.float32) / 255.0, (2, 0, 1))
    for conv in torso.convs:  # Equinox's own convolution as the reference (strides 4, 2, 1)
        x = jax.nn.relu(conv(x))
    expected = jax.nn.relu(torso.linear(jnp.ravel(x)))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
    unscaled = NatureCNN((84, 84, 4), input_scale=1.0, key=key)
    np.testing.assert_allclose(
        out, unscaled(jnp.asarray(frames, jnp.float32) / 255.0), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "shape, network, expected",
    [
        ((4,), "auto", "mlp"),
        ((10, 10, 4), "auto", "minatar_cnn"),
        ((84, 84, 4), "auto", "nature_cnn"),
        ((2, 2, 1), "auto", "mlp"),  # too small for any convolution
        ((10, 10, 4), "mlp", "mlp"),
        ((84, 84, 4), "minatar_cnn", "minatar_cnn"),
    ],
)
def test_torso_for(shape, network, expected):
    assert torso_for(shape, network) == expected


@pytest.mark.parametrize(
    "shape, network",
    [((4,), "minatar_cnn"), ((10, 10, 4), "nature_cnn"), ((10, 10), "minatar_cnn"), ((4,), "x")],
)
def test_torso_for_refuses_what_cannot_work(shape, network):
    with pytest.raises(ValueError, match="^network:"):
        torso_for(shape, network)


@pytest.mark.parametrize("dueling", [False, True])
def test_cnn_q_network_under_jit_and_vmap(key, dueling):
    net = QNetwork((10, 10, 6), 4, dueling=dueling, torso="auto", key=key)
    obs = jnp.asarray(rng.uniform(size=(5, 10, 10, 6)) < 0.2, jnp.float32)
    q = jax.jit(jax.vmap(net))(obs)
    assert q.shape == (5, 4) and np.isfinite(np.asarray(q)).all()
    np.testing.assert_allclose(q[2], net(obs[2]), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="^obs:"):
        net(obs)  # a batch needs vmap
    keys = jax.random.split(key, 3)  # vmapped init (one network per seed) works
    nets = jax.vmap(lambda k: QNetwork((10, 10, 6), 4, torso="minatar_cnn", key=k))(keys)
    assert nets.torso.convs[0].weight.shape == (3, 16, 6, 3, 3)


def test_mlp_layer_norm_normalises_every_hidden_pre_activation(key):
    mlp = MLP(3, 2, (8, 8), "relu", layer_norm=True, key=key)
    assert len(mlp.norms) == 2
    x = jnp.asarray(rng.normal(size=3), jnp.float32)
    h = x
    for layer in mlp.layers[:-1]:
        z = np.asarray(layer(h))
        z = (z - z.mean()) / np.sqrt(z.var() + 1e-5)  # LayerNorm at init: weight 1, bias 0
        h = jnp.maximum(z, 0.0)
    np.testing.assert_allclose(mlp(x), mlp.layers[-1](h), rtol=1e-5, atol=1e-5)


def test_layer_norm_q_network_and_cnn_channel_norm(key):
    net = QNetwork((4,), 2, hidden_sizes=(16, 16), layer_norm=True, key=key)
    assert len(net.torso.norms) == 2  # both hidden layers (the torso's output is activated)
    cnn = QNetwork((10, 10, 4), 3, torso="minatar_cnn", layer_norm=True, key=key)
    torso = cnn.torso
    assert [n.shape for n in torso.norms] == [(16,), (128,)]
    obs = jnp.asarray(rng.uniform(size=(10, 10, 4)) < 0.3, jnp.float32)
    z = np.asarray(torso.convs[0](jnp.transpose(obs, (2, 0, 1))))  # [16, 8, 8]
    normed = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)  # over the channels of each pixel
    h = np.maximum(normed, 0).ravel()
    f = np.asarray(torso.linear(jnp.asarray(h)))
    f = np.maximum((f - f.mean()) / np.sqrt(f.var() + 1e-5), 0)
    np.testing.assert_allclose(torso(obs), f, rtol=1e-4, atol=1e-4)
