"""Tests for purerl/algorithms/rollout.py: ``collect`` on probe environments (shapes, episode
boundaries, true final observations, episode metrics, determinism) and ``Rollout.discount``."""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.algorithms.core import Policy
from purerl.algorithms.rollout import Rollout, collect
from purerl.envs import VecEnv

T, N = 12, 3  # one shape for every rollout: each new one compiles the scan again
GAMMA = 0.9


def _zero_act(params, key, obs, carry, first):
    n = obs.shape[0]
    return jnp.zeros((n,), jnp.int32), carry, {"value": jnp.zeros((n,), jnp.float32)}


def _random_act(params, key, obs, carry, first):
    action = jax.random.randint(key, (obs.shape[0],), 0, 2).astype(jnp.int32)
    return action, carry, {"obs_seen": obs[:, 0], "key": key}


zero_act = Policy(None, _zero_act)
random_act = Policy(None, _random_act)


@functools.cache
def make_env(env_id):
    return VecEnv.make(env_id, num_envs=N)  # one instance per id: jit caches on it


collect_jit = eqx.filter_jit(collect)  # the env object, act and T are static


def run(env_id, act=zero_act, seed=0):
    env = make_env(env_id)
    reset_key, key = jax.random.split(jax.random.PRNGKey(seed))
    new_state, rollout, metrics = collect_jit(key, env, env.reset(reset_key), act, T)
    return env, new_state, jax.tree.map(np.asarray, rollout), jax.tree.map(np.asarray, metrics)


@pytest.fixture(scope="module")
def time_limit():
    return run("TimeLimit-probe")


@pytest.fixture(scope="module")
def two_step():
    return run("TwoStep-probe")


def test_collect_shapes_are_time_major(time_limit):
    _, state, ro, metrics = time_limit
    assert isinstance(ro, Rollout)
    assert ro.obs.shape == (T, N, 1) and ro.next_obs.shape == (T, N, 1)
    assert ro.action.shape == (T, N) and ro.action.dtype == np.int32
    for x in (ro.reward, ro.terminated, ro.truncated, ro.done):
        assert x.shape == (T, N)
    assert ro.terminated.dtype == np.bool_ and ro.truncated.dtype == np.bool_
    assert set(ro.extras) == {"value"} and ro.extras["value"].shape == (T, N)
    assert state.obs.shape == (N, 1)
    assert {k: v.shape for k, v in metrics.items()} == {
        "episode_return": (),
        "episode_length": (),
        "episode_count": (),
    }


def test_collect_time_limit_truncates_every_five_steps(time_limit):
    _, state, ro, _ = time_limit
    cut = (np.arange(T) + 1) % 5 == 0  # steps 4 and 9
    np.testing.assert_array_equal(ro.truncated, np.broadcast_to(cut[:, None], (T, N)))
    assert not ro.terminated.any()
    np.testing.assert_array_equal(ro.done, ro.truncated)
    np.testing.assert_array_equal(ro.reward, 1.0)
    # the running episode carries over: 12 steps = 5 + 5 + 2
    np.testing.assert_array_equal(state.episode_length, T % 5)
    np.testing.assert_array_equal(state.episode_return, float(T % 5))


def test_collect_episode_metrics(time_limit):
    _, _, _, metrics = time_limit
    assert int(metrics["episode_count"]) == 2 * N  # two finished episodes per env
    assert float(metrics["episode_return"]) == 5.0
    assert float(metrics["episode_length"]) == 5.0


def test_collect_next_obs_is_true_final_obs(two_step):
    # TwoStep: obs 0 then 1, ends after 2 steps: the reset obs (0) follows the final one (1)
    _, _, ro, metrics = two_step
    first = np.arange(T) % 2 == 0
    np.testing.assert_array_equal(
        ro.obs[..., 0], np.broadcast_to(np.where(first, 0.0, 1.0)[:, None], (T, N))
    )
    np.testing.assert_array_equal(ro.next_obs[..., 0], 1.0)
    np.testing.assert_array_equal(ro.terminated, np.broadcast_to(~first[:, None], (T, N)))
    # where no episode ended, next_obs is the next step's obs; where one ended, it is not
    cont = ~ro.done[:-1]
    np.testing.assert_array_equal(ro.next_obs[:-1][cont], ro.obs[1:][cont])
    assert (ro.next_obs[:-1][ro.done[:-1]] != ro.obs[1:][ro.done[:-1]]).all()
    assert int(metrics["episode_count"]) == (T // 2) * N
    assert float(metrics["episode_return"]) == 1.0 and float(metrics["episode_length"]) == 2.0


def test_discount_truncation_keeps_gamma(time_limit):
    _, _, ro, _ = time_limit
    np.testing.assert_allclose(ro.discount(GAMMA), GAMMA, rtol=1e-6)


def test_discount_termination_is_zero(two_step):
    _, _, ro, _ = two_step
    expected = np.where(ro.terminated, 0.0, GAMMA)
    assert (expected == 0).any() and (expected > 0).any()
    np.testing.assert_allclose(ro.discount(GAMMA), expected, rtol=1e-6)


def test_discount_constant_reward_probe_terminates_every_step():
    _, _, ro, metrics = run("ConstantReward-probe")
    assert ro.terminated.all() and not ro.truncated.any()
    np.testing.assert_array_equal(ro.discount(GAMMA), 0.0)
    np.testing.assert_array_equal(ro.reward, 1.0)
    assert int(metrics["episode_count"]) == T * N and float(metrics["episode_return"]) == 1.0
    # γ may be traced (e.g. a swept hyperparameter)
    d = jax.jit(lambda r, g: r.discount(g))(ro, 0.5)
    np.testing.assert_array_equal(d, 0.0)


def test_collect_same_key_same_rollout_other_key_differs():
    # random signs and random actions: everything in the rollout depends on the key
    _, _, a, _ = run("ObsActionReward-probe", random_act, seed=1)
    _, _, b, _ = run("ObsActionReward-probe", random_act, seed=1)
    _, _, c, _ = run("ObsActionReward-probe", random_act, seed=2)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert (a.obs != c.obs).any() and (a.action != c.action).any()
    # extras are recorded per step: the act function saw exactly the stored obs
    np.testing.assert_array_equal(a.extras["obs_seen"], a.obs[..., 0])
    assert len({tuple(k) for k in a.extras["key"]}) == T  # a fresh action key every step
    np.testing.assert_array_equal(a.reward, np.where(a.action == (a.obs[..., 0] > 0), 1.0, -1.0))


def test_collect_eager_matches_jit(time_limit):
    env, _, ro, metrics = time_limit
    reset_key, key = jax.random.split(jax.random.PRNGKey(0))
    _, ro_eager, metrics_eager = collect(key, env, env.reset(reset_key), zero_act, T)
    jitted, eager = jax.tree.leaves((ro, metrics)), jax.tree.leaves((ro_eager, metrics_eager))
    for x, y in zip(jitted, eager, strict=True):
        np.testing.assert_array_equal(x, np.asarray(y))


def test_minibatch_epochs_visit_every_item_once_per_epoch():
    from purerl.algorithms.rollout import flatten_steps, minibatch_epochs

    batch = flatten_steps({"x": jnp.arange(24.0).reshape(4, 6), "y": -jnp.arange(24).reshape(4, 6)})
    assert batch["x"].shape == (24,)

    def update(count, mb):
        assert mb["x"].shape == (6,)
        return count + 1, {"seen": mb["x"], "y": mb["y"]}

    count, info = jax.jit(
        lambda k: minibatch_epochs(update, 0, k, batch, epochs=3, num_minibatches=4)
    )(jax.random.PRNGKey(0))
    assert int(count) == 12 and info["seen"].shape == (3, 4, 6)
    np.testing.assert_array_equal(info["y"], -np.asarray(info["seen"], np.int32))  # paired
    for epoch in np.asarray(info["seen"]):
        np.testing.assert_array_equal(np.sort(epoch.ravel()), np.arange(24.0))
    assert not np.array_equal(info["seen"][0], info["seen"][1])  # reshuffled every epoch


def test_sequences_keep_time_order_and_minibatches_cover_every_step_once():
    """Per-env sequences: inside each, time runs in order for ONE env; minibatching over
    sequences (axis=1) never shuffles time and covers every (t, env) once per epoch."""
    from purerl.algorithms.rollout import minibatch_epochs, sequences

    t_steps, n_envs, length = 8, 3, 4
    t_idx, n_idx = np.meshgrid(np.arange(t_steps), np.arange(n_envs), indexing="ij")
    batch = sequences({"t": jnp.asarray(t_idx), "n": jnp.asarray(n_idx)}, length)
    assert batch["t"].shape == (length, t_steps // length * n_envs)
    t_seq, n_seq = np.asarray(batch["t"]), np.asarray(batch["n"])
    assert (np.diff(t_seq, axis=0) == 1).all()  # consecutive steps
    assert (n_seq == n_seq[:1]).all()  # one env per sequence

    def update(count, mb):
        assert mb["t"].shape == (length, 2)
        return count + 1, {"t": mb["t"], "n": mb["n"]}

    _, info = jax.jit(
        lambda k: minibatch_epochs(update, 0, k, batch, epochs=2, num_minibatches=3, axis=1)
    )(jax.random.PRNGKey(1))
    for epoch in range(2):
        t = np.asarray(info["t"][epoch])  # [minibatches, L, S/M]
        assert (np.diff(t, axis=1) == 1).all()
        n = np.asarray(info["n"][epoch])
        pairs = set(zip(t.ravel(), n.ravel(), strict=True))
        assert len(pairs) == t_steps * n_envs  # every step exactly once
    with pytest.raises(ValueError, match="^sequence_length:"):
        sequences(batch, 3)


def test_collect_marks_episode_starts_and_threads_the_carry(time_limit):
    """``first`` is true at t = 0 and right after every end; a counting carry comes back as
    the number of steps taken, and the policy saw ``first`` (resetting its count there)."""
    env = make_env("TimeLimit-probe")

    def counting_act(params, key, obs, carry, first):
        carry = jnp.where(first, 0, carry) + 1
        return jnp.zeros((obs.shape[0],), jnp.int32), carry, {"count": carry}

    reset_key, key = jax.random.split(jax.random.PRNGKey(0))
    policy = Policy(None, counting_act)
    carry0 = jnp.zeros((N,), jnp.int32)
    _, ro, _ = collect_jit(key, env, env.reset(reset_key), policy, T, carry0)
    first, done = np.asarray(ro.first), np.asarray(ro.done)
    assert first[0].all()
    np.testing.assert_array_equal(first[1:], done[:-1])
    np.testing.assert_array_equal(np.asarray(ro.carry), 0)
    np.testing.assert_array_equal(np.asarray(ro.final_carry), np.asarray(ro.extras["count"][-1]))
    assert np.asarray(ro.extras["count"]).max() == 5  # TimeLimit-probe: 5-step episodes


def test_episode_metrics_summed_in_the_loop_equal_the_stacked_timesteps():
    """``collect`` sums episode totals in its carry; they equal ``finished_episode_stats`` of
    every step's timestep, stacked."""
    from purerl.algorithms.common import finished_episode_stats

    env = make_env("TwoStep-probe")
    key = jax.random.PRNGKey(3)
    _, _, metrics = collect_jit(key, env, env.reset(jax.random.PRNGKey(4)), random_act, T)

    def one_step(state, k):  # collect's loop, stacking the timesteps instead
        act_key, env_key = jax.random.split(k)
        action, _, _ = _random_act(None, act_key, state.obs, None, None)
        return env.step(env_key, state, action)

    _, ts = jax.lax.scan(one_step, env.reset(jax.random.PRNGKey(4)), jax.random.split(key, T))
    expected = finished_episode_stats(ts)
    assert int(expected["episode_count"]) > 0
    for name, value in expected.items():
        np.testing.assert_allclose(np.asarray(metrics[name]), np.asarray(value), rtol=1e-6)


def test_ppo_acts_with_the_policy_tower_and_learns_from_the_same_values():
    """A separate critic tower is not run while acting (no ``value`` in the rollout); the
    learner's batched pass (``rollout_values``) gives the values acting on the whole network
    would have stored."""
    from purerl.algorithms import actor_critic as ac
    from purerl.algorithms import ppo
    from purerl.algorithms.rollout import collect_from

    config = ppo.quick_config()
    state = ppo.init(jax.random.PRNGKey(0), config)
    assert not state.network.shared_torso
    _, rollout, _ = collect_from(state, ac.sampling_policy(state), config.num_steps)
    assert "value" not in rollout.extras and "log_prob" in rollout.extras
    acted = jax.vmap(jax.vmap(state.network))(rollout.obs)[1]  # [T, N] values, per step
    np.testing.assert_allclose(
        np.asarray(ac.rollout_values(state.network, rollout)), np.asarray(acted), rtol=1e-5,
        atol=1e-6,
    )  # fmt: skip
    # a shared torso still stores its value while acting, and rollout_values returns it
    shared = ppo.init(jax.random.PRNGKey(0), dataclasses.replace(config, shared_torso=True))
    _, rollout, _ = collect_from(shared, ac.sampling_policy(shared), config.num_steps)
    stored = rollout.extras["value"]
    assert ac.rollout_values(shared.network, rollout) is stored
