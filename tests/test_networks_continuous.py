"""Tests for the continuous-control networks of purerl/networks.py: ``QCritic``,
``CriticEnsemble``, ``DeterministicActor`` and ``SquashedGaussianActor``."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.networks import CriticEnsemble, DeterministicActor, QCritic, SquashedGaussianActor
from purerl.policies import TanhGaussian

# Few distinct layer shapes across the file: each new shape compiles the PRNG (~0.3 s on CPU).
OBS = (4,)
D = 2
HIDDEN = (8, 8)
B = 5
rng = np.random.default_rng(0)
OBS_BATCH = jnp.asarray(rng.normal(size=(B, *OBS)), jnp.float32)
ACT_BATCH = jnp.asarray(rng.uniform(-1, 1, size=(B, D)), jnp.float32)

BUILDERS = {
    "critic": lambda key, **kw: QCritic(OBS, D, HIDDEN, key=key, **kw),
    "ensemble": lambda key, **kw: CriticEnsemble(OBS, D, 3, HIDDEN, key=key, **kw),
    "deterministic": lambda key, **kw: DeterministicActor(OBS, D, HIDDEN, key=key, **kw),
    "squashed": lambda key, **kw: SquashedGaussianActor(OBS, D, HIDDEN, key=key, **kw),
}


def params(module):
    return jax.tree.leaves(eqx.filter(module, eqx.is_array))


def critic_slice(ensemble: CriticEnsemble, k: int) -> QCritic:
    return jax.tree.map(lambda x: x[k], ensemble.critics)


# --------------------------------------------------------------------------------------------
# shapes and dtypes


@pytest.mark.parametrize("obs_shape", [(3,), (2, 3), (4, 4, 2)])
@pytest.mark.parametrize("action_dim", [1, 3])
def test_output_shapes_and_dtypes(key, obs_shape, action_dim):
    obs = jnp.asarray(rng.normal(size=(B, *obs_shape)), jnp.float32)
    act = jnp.asarray(rng.uniform(-1, 1, size=(B, action_dim)), jnp.float32)
    q = QCritic(obs_shape, action_dim, HIDDEN, key=key)
    ens = CriticEnsemble(obs_shape, action_dim, 2, HIDDEN, key=key)
    mu = DeterministicActor(obs_shape, action_dim, HIDDEN, key=key)
    pi = SquashedGaussianActor(obs_shape, action_dim, HIDDEN, key=key)
    flat = int(np.prod(obs_shape))
    assert q.net.layers[0].weight.shape == (8, flat + action_dim)
    assert q(obs[0], act[0]).shape == () and q(obs[0], act[0]).dtype == jnp.float32
    assert jax.vmap(q)(obs, act).shape == (B,)
    assert ens(obs[0], act[0]).shape == (2,) and ens(obs[0], act[0]).dtype == jnp.float32
    assert jax.vmap(ens)(obs, act).shape == (B, 2)
    assert mu(obs[0]).shape == (action_dim,) and mu(obs[0]).dtype == jnp.float32
    assert jax.vmap(mu)(obs).shape == (B, action_dim)
    dist = pi(obs[0])
    assert isinstance(dist, TanhGaussian)
    assert dist.mean.shape == dist.log_std.shape == (action_dim,)
    assert dist.mean.dtype == dist.log_std.dtype == jnp.float32
    batched = jax.vmap(pi)(obs)
    assert batched.mean.shape == batched.log_std.shape == (B, action_dim)


def test_qcritic_is_mlp_on_concatenated_obs_and_action(key):
    q = QCritic((2, 2), D, HIDDEN, activation="tanh", key=key)
    obs = jnp.asarray(rng.normal(size=(2, 2)), jnp.float32)
    act = ACT_BATCH[0]
    h = jnp.concatenate([obs.ravel(), act])
    for layer in q.net.layers[:-1]:
        h = jnp.tanh(layer.weight @ h + layer.bias)
    expected = q.net.layers[-1].weight @ h + q.net.layers[-1].bias
    np.testing.assert_allclose(q(obs, act), expected[0], rtol=1e-5, atol=1e-6)
    # the action matters
    assert not np.isclose(q(obs, act), q(obs, -act))


@pytest.mark.parametrize("build", sorted(BUILDERS))
def test_wrong_obs_shape_raises(key, build):
    net = BUILDERS[build](key)
    args = (ACT_BATCH[0],) if build in ("critic", "ensemble") else ()
    with pytest.raises(ValueError, match=r"^obs:"):
        net(jnp.zeros((5,)), *args)


@pytest.mark.parametrize("build", ["critic", "ensemble"])
def test_wrong_action_shape_raises(key, build):
    net = BUILDERS[build](key)
    with pytest.raises(ValueError, match=r"^action:"):
        net(OBS_BATCH[0], jnp.zeros((D + 1,)))


# --------------------------------------------------------------------------------------------
# CriticEnsemble


def test_ensemble_params_are_stacked_not_copied(key):
    ens = BUILDERS["ensemble"](key)
    assert ens.num_critics == 3 and isinstance(ens.critics, QCritic)
    leaves = params(ens)
    assert leaves and all(leaf.shape[0] == 3 for leaf in leaves)
    assert len(leaves) == len(params(QCritic(OBS, D, HIDDEN, key=key)))


def test_ensemble_critics_differ(key):
    ens = BUILDERS["ensemble"](key)
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        for leaf in params(ens):
            assert not np.allclose(leaf[a], leaf[b])
    q = jax.vmap(ens)(OBS_BATCH, ACT_BATCH)
    assert not np.allclose(q[:, 0], q[:, 1]) and not np.allclose(q[:, 1], q[:, 2])


def test_ensemble_member_is_qcritic_of_split_key(key):
    ens = BUILDERS["ensemble"](key)
    for k, sub in enumerate(jax.random.split(key, 3)):
        standalone = QCritic(OBS, D, HIDDEN, key=sub)
        for a, b in zip(params(critic_slice(ens, k)), params(standalone), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_ensemble_equals_its_sliced_critics_under_jit_and_vmap(key):
    ens = BUILDERS["ensemble"](key)
    batched = eqx.filter_jit(lambda m, o, a: jax.vmap(m)(o, a))(ens, OBS_BATCH, ACT_BATCH)
    assert batched.shape == (B, 3)
    for k in range(3):
        critic = critic_slice(ens, k)
        expected = jax.vmap(critic)(OBS_BATCH, ACT_BATCH)
        np.testing.assert_allclose(batched[:, k], expected, rtol=1e-5, atol=1e-6)
        single = eqx.filter_jit(lambda c, o, a: c(o, a))(critic, OBS_BATCH[0], ACT_BATCH[0])
        np.testing.assert_allclose(single, expected[0], rtol=1e-5, atol=1e-6)


def test_ensemble_gradient_reaches_every_critic(key):
    ens = BUILDERS["ensemble"](key)

    def total(model):
        return jnp.sum(jax.vmap(model)(OBS_BATCH, ACT_BATCH))

    grads = eqx.filter_grad(total)(ens)
    leaves = params(grads)
    assert len(leaves) == len(params(ens))
    for leaf in leaves:
        assert np.all(np.isfinite(leaf))
        for k in range(3):
            assert np.any(leaf[k] != 0.0), "a critic's parameters get no gradient"


@pytest.mark.parametrize("num_critics", [0, -1])
def test_ensemble_needs_one_critic(key, num_critics):
    with pytest.raises(ValueError, match="num_critics"):
        CriticEnsemble(OBS, D, num_critics, HIDDEN, key=key)


def test_single_critic_ensemble(key):
    ens = CriticEnsemble(OBS, D, 1, HIDDEN, key=key)
    assert ens(OBS_BATCH[0], ACT_BATCH[0]).shape == (1,)


# --------------------------------------------------------------------------------------------
# actors


def test_deterministic_actor_is_tanh_bounded(key):
    mu = BUILDERS["deterministic"](key)
    for scale in (1.0, 1e6):
        out = jax.vmap(mu)(scale * OBS_BATCH)
        assert np.all(np.abs(out) <= 1.0) and np.all(np.isfinite(out))
    out = jax.vmap(mu)(OBS_BATCH)
    np.testing.assert_allclose(out, jnp.tanh(jax.vmap(mu.net)(OBS_BATCH)), rtol=1e-6)
    assert np.all(np.abs(out) < 1.0) and not np.allclose(out[0], out[1])


def set_log_std_bias(pi: SquashedGaussianActor, value: float) -> SquashedGaussianActor:
    """``pi`` with the raw log-std head's bias at ``value`` (its pre-tanh input → value)."""
    bias = pi.net.layers[-1].bias.at[D:].set(value)
    return eqx.tree_at(lambda m: m.net.layers[-1].bias, pi, bias)


@pytest.mark.parametrize("bounds", [(-5.0, 2.0), (-20.0, -1.0)])
def test_squashed_actor_log_std_within_bounds(key, bounds):
    low, high = bounds
    pi = BUILDERS["squashed"](key, log_std_min=low, log_std_max=high)
    assert (pi.log_std_min, pi.log_std_max) == (low, high)
    assert all(leaf.shape != () for leaf in params(pi))  # the bounds are static, not parameters
    for scale in (1.0, 1e3, 1e8):
        log_std = jax.vmap(pi)(scale * OBS_BATCH).log_std
        assert np.all(log_std >= low) and np.all(log_std <= high)
    # the bounds are the limits of the smooth map: reached for huge pre-activations
    np.testing.assert_allclose(set_log_std_bias(pi, 1e6)(OBS_BATCH[0]).log_std, high)
    np.testing.assert_allclose(set_log_std_bias(pi, -1e6)(OBS_BATCH[0]).log_std, low)
    mid = set_log_std_bias(pi, 0.0)
    mid = eqx.tree_at(
        lambda m: m.net.layers[-1].weight, mid, jnp.zeros_like(mid.net.layers[-1].weight)
    )
    np.testing.assert_allclose(mid(OBS_BATCH[0]).log_std, 0.5 * (low + high), rtol=1e-6)


def test_squashed_actor_sample_and_log_prob_finite_and_differentiable(key):
    pi = BUILDERS["squashed"](key)
    keys = jax.random.split(jax.random.PRNGKey(1), B)

    def objective(model, obs):
        dist = jax.vmap(model)(obs)
        action, log_prob = jax.vmap(lambda d, k: d.sample_and_log_prob(k))(dist, keys)
        return jnp.mean(log_prob - jnp.sum(action, axis=-1)), (action, log_prob)

    for scale in (1.0, 1e4):
        grad_fn = eqx.filter_jit(eqx.filter_value_and_grad(objective, has_aux=True))
        (_, (action, log_prob)), grads = grad_fn(pi, scale * OBS_BATCH)
        assert action.shape == (B, D) and log_prob.shape == (B,)
        assert np.all(np.isfinite(action)) and np.all(np.isfinite(log_prob))
        assert np.all(np.abs(action) <= 1.0)
        for leaf in params(grads):
            assert np.all(np.isfinite(leaf))
    # at ordinary inputs every parameter tensor gets a gradient
    (_, _), grads = eqx.filter_value_and_grad(objective, has_aux=True)(pi, OBS_BATCH)
    assert all(np.any(leaf != 0.0) for leaf in params(grads))


@pytest.mark.parametrize("bounds", [(2.0, 2.0), (1.0, -1.0)])
def test_squashed_actor_rejects_empty_log_std_range(key, bounds):
    with pytest.raises(ValueError, match="log_std_min"):
        BUILDERS["squashed"](key, log_std_min=bounds[0], log_std_max=bounds[1])


# --------------------------------------------------------------------------------------------
# construction


@pytest.mark.parametrize("build", sorted(BUILDERS))
def test_same_key_same_params_other_key_other_params(key, build):
    a, b = BUILDERS[build](key), BUILDERS[build](key)
    c = BUILDERS[build](jax.random.PRNGKey(1))
    for x, y, z in zip(params(a), params(b), params(c), strict=True):
        np.testing.assert_array_equal(x, y)
        assert not np.allclose(x, z)


@pytest.mark.parametrize("build", sorted(BUILDERS))
def test_unknown_activation_raises(key, build):
    with pytest.raises(ValueError, match="activation"):
        BUILDERS[build](key, activation="sigmoidish")


@pytest.mark.parametrize("build", ["critic", "deterministic", "squashed"])
def test_action_dim_must_be_positive(key, build):
    make = {"critic": QCritic, "deterministic": DeterministicActor}.get(
        build, SquashedGaussianActor
    )
    with pytest.raises(ValueError, match="action_dim"):
        make(OBS, 0, HIDDEN, key=key)


@pytest.mark.parametrize("build", ["deterministic", "squashed"])
def test_tanh_activation_used(key, build):
    relu, tanh = BUILDERS[build](key), BUILDERS[build](key, activation="tanh")
    out_relu, out_tanh = relu(OBS_BATCH[0]), tanh(OBS_BATCH[0])
    first = out_relu if build == "deterministic" else out_relu.mean
    second = out_tanh if build == "deterministic" else out_tanh.mean
    assert not np.allclose(first, second)
