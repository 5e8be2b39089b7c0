"""Recurrent agents (issue #13): the cores reset their carry at episode starts, rollouts are
cut into whole per-env sequences, recurrent PPO and rPQN remember what a feed-forward agent
cannot, and everything the contract promises (determinism, vmap, checkpoint/resume) holds with
carries in the state."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from resume_check import check_interrupted_resume_is_bit_exact

from purerl.algorithms import a2c, ppo, pqn
from purerl.algorithms import actor_critic as ac
from purerl.algorithms.rollout import collect, minibatch_epochs, sequences
from purerl.envs import VecEnv
from purerl.recurrent import (
    RecurrentActorCritic,
    RecurrentCore,
    RecurrentQNetwork,
    initial_carry,
    is_recurrent,
    unroll,
)

KINDS = ("gru", "lstm")


def _arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


# ------------------------------------------------------------------ the core


def _python_loop(core_, xs, firsts):
    """The reference: a plain loop that starts a fresh carry at every episode start."""
    carry, outs = core_.initial_carry(), []
    for x, first in zip(np.asarray(xs), np.asarray(firsts), strict=True):
        if first:
            carry = core_.initial_carry()
        carry = core_.cell(jnp.asarray(x), carry)
        outs.append(np.asarray(carry if core_.kind == "gru" else carry[0]))
    return np.stack(outs)


@pytest.mark.parametrize("kind", KINDS)
def test_core_scan_resets_like_a_python_loop(kind):
    """A reset in the middle of the sequence (t = 4) and one at t = 0, from a carry that is not
    the initial one: the scan equals the loop, eagerly, under jit and under vmap."""
    key_core, key_x, key_c = jax.random.split(jax.random.PRNGKey(0), 3)
    core_ = RecurrentCore(kind, 3, 8, key=key_core)
    xs = jax.random.normal(key_x, (7, 3))
    firsts = jnp.array([True, False, False, False, True, False, False])
    stale = jax.tree.map(lambda z: z + 5.0, core_.initial_carry())  # must be wiped at t = 0
    want = _python_loop(core_, xs, firsts)
    _, eager = core_.scan(stale, xs, firsts)
    _, jitted = eqx.filter_jit(lambda c, x, f: core_.scan(c, x, f))(stale, xs, firsts)
    np.testing.assert_allclose(eager, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jitted, want, rtol=1e-5, atol=1e-6)
    # without the reset at t = 4 the outputs after it differ: the test can fail
    _, leaky = core_.scan(stale, xs, firsts.at[4].set(False))
    assert not np.allclose(np.asarray(leaky)[4:], want[4:], atol=1e-3)
    # vmap over 3 sequences with different reset points == each alone
    batch_x = jax.random.normal(key_c, (3, 7, 3))
    batch_f = jnp.zeros((3, 7), bool).at[:, 0].set(True).at[1, 2].set(True).at[2, 5].set(True)
    starts = jax.tree.map(lambda z: jnp.stack([z] * 3), stale)
    _, outs = jax.vmap(core_.scan)(starts, batch_x, batch_f)
    for i in range(3):
        np.testing.assert_allclose(
            outs[i], _python_loop(core_, batch_x[i], batch_f[i]), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("kind", KINDS)
def test_unroll_of_a_recurrent_network_equals_step_by_step_acting(kind):
    """``unroll`` over [T, B] (what a loss does) == calling the network one step at a time over
    the batch (what acting does), resets included."""
    net = RecurrentQNetwork(
        (2,), 3, hidden_sizes=(16,), core=kind, core_size=8, key=jax.random.PRNGKey(1)
    )
    obs = jax.random.normal(jax.random.PRNGKey(2), (6, 4, 2))
    first = jax.random.bernoulli(jax.random.PRNGKey(3), 0.3, (6, 4)).at[0].set(True)
    carry0 = initial_carry(net, 4)
    final, q = unroll(net, carry0, obs, first)
    carry, steps = carry0, []
    for t in range(6):
        carry, q_t = jax.vmap(net)(carry, obs[t], first[t])
        steps.append(q_t)
    np.testing.assert_allclose(q, jnp.stack(steps), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(carry), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_networks_are_recurrent_and_feed_forward_ones_are_not():
    key = jax.random.PRNGKey(0)
    assert is_recurrent(RecurrentActorCritic((2,), 2, key=key))
    assert is_recurrent(RecurrentQNetwork((2,), 2, key=key))
    assert not is_recurrent(eqx.nn.MLP(2, 2, 8, 1, key=key))
    carry = initial_carry(RecurrentActorCritic((2,), 2, core="lstm", core_size=5, key=key), 3)
    assert [x.shape for x in carry] == [(3, 5), (3, 5)]
    assert initial_carry(eqx.nn.MLP(2, 2, 8, 1, key=key), 3) is None


# ------------------------------------------------------------------ sequences


def test_sequence_minibatches_keep_time_order_and_cover_every_step_once():
    """Cut a [T=8, N=3] rollout of step ids into sequences of 4, run 2 epochs of 3 minibatches:
    every minibatch holds whole sequences in time order, each epoch sees every step once."""
    t, n, length = 8, 3, 4
    ids = jnp.arange(t * n).reshape(t, n)  # id = time * n + env
    batch = sequences({"id": ids}, length)
    assert batch["id"].shape == (length, t * n // length)

    def update(carry, mb):
        return carry, {"id": mb["id"]}

    _, info = minibatch_epochs(
        update, None, jax.random.PRNGKey(0), batch, epochs=2, num_minibatches=3, axis=1
    )
    seen = np.asarray(info["id"])  # [epochs, minibatches, L, S / minibatches]
    for epoch in seen:
        assert sorted(epoch.ravel().tolist()) == list(range(t * n))
        for mb in epoch:
            for col in mb.T:  # one sequence: one env, consecutive times
                env, times = col % n, col // n
                assert len(set(env.tolist())) == 1
                np.testing.assert_array_equal(np.diff(times), 1)
    assert not np.array_equal(seen[0], seen[1]), "epochs should reshuffle the sequences"


# ------------------------------------------------------------------ environments


def test_memory_probe_rewards_only_the_remembered_cue():
    env = VecEnv.make("MemoryProbe-v0?memory_length=3", num_envs=2)
    state = env.reset(jax.random.PRNGKey(0))
    cue = np.asarray(state.obs[:, 0])
    assert set(cue.tolist()) == {-1.0, 1.0}, "seed 0 gives one cue of each sign"
    right = jnp.asarray(cue > 0, jnp.int32)
    returns = []
    for t in range(4):
        assert np.asarray(state.obs[:, 1]).tolist() == [float(t == 3)] * 2  # query flag
        if t > 0:
            assert np.all(np.asarray(state.obs[:, 0]) == 0.0), "the cue shows at t = 0 only"
        action = right.at[1].set(1 - right[1])  # env 0 answers right, env 1 wrong
        state, ts = env.step(jax.random.PRNGKey(t), state, action)
        returns.append(np.asarray(ts.reward))
        assert np.asarray(ts.terminated).tolist() == [t == 3] * 2
    assert np.sum(returns, axis=0).tolist() == [1.0, 0.0]


def test_masked_cartpole_is_cartpole_without_the_velocities():
    full = VecEnv.make("CartPole-v1", num_envs=4)
    masked = VecEnv.make("CartPole-masked-v1", num_envs=4)
    assert masked.obs_shape == (2,)
    s_full, s_masked = full.reset(jax.random.PRNGKey(0)), masked.reset(jax.random.PRNGKey(0))
    for t in range(60):
        k = jax.random.PRNGKey(100 + t)
        action = jax.random.bernoulli(k, 0.5, (4,)).astype(jnp.int32)
        s_full, ts_full = full.step(k, s_full, action)
        s_masked, ts_masked = masked.step(k, s_masked, action)
        np.testing.assert_array_equal(ts_masked.obs, ts_full.obs[:, jnp.array([0, 2])])
        np.testing.assert_array_equal(ts_masked.reward, ts_full.reward)
        np.testing.assert_array_equal(ts_masked.terminated, ts_full.terminated)
        np.testing.assert_array_equal(ts_masked.truncated, ts_full.truncated)


def test_env_id_parameters_reach_the_env_and_bad_ones_are_named():
    assert VecEnv.make("MemoryChain-bsuite?memory_length=12").params.memory_length == 12
    with pytest.raises(ValueError, match="no parameter colour"):
        VecEnv.make("MemoryChain-bsuite?colour=3")
    with pytest.raises(ValueError, match="finite number"):
        VecEnv.make("MemoryProbe-v0?memory_length=nan")
    with pytest.raises(ValueError, match="Did you mean 'MemoryProbe-v0'"):
        VecEnv.make("MemoryProbe-v1?memory_length=3")


# ------------------------------------------------------------------ the algorithms


def _quick(algorithm, **kw):
    base = dict(
        env_id="MemoryProbe-v0",
        num_envs=4,
        num_steps=16,
        num_minibatches=2,
        hidden_sizes=(16,),
        core_size=16,
        total_steps=256,
        eval_every=128,
        eval_envs=4,
    )
    return algorithm.Config(**{**base, **kw})


RECURRENT = [
    pytest.param(ppo, dict(recurrent="gru", sequence_length=8), id="ppo-gru"),
    pytest.param(pqn, dict(recurrent="lstm", sequence_length=8, update_epochs=2), id="pqn-lstm"),
]


@pytest.mark.parametrize("module,kw", RECURRENT)
def test_same_key_same_bits_and_vmap_equals_one_by_one(module, kw):
    config = _quick(module, **kw)
    train = module.make_train(config)
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    batched = jax.jit(jax.vmap(train))
    s_batch, m_batch = batched(keys)
    s_again, _ = batched(keys)
    for a, b in zip(_arrays(s_batch), _arrays(s_again), strict=True):
        np.testing.assert_array_equal(a, b)
    assert s_batch.carry is not None
    one = jax.jit(train)
    for i in range(2):
        s_one, m_one = one(keys[i])
        np.testing.assert_array_equal(m_batch["eval_return"][i], m_one["eval_return"])
        np.testing.assert_array_equal(m_batch["env_steps"][i], m_one["env_steps"])
        for a, b in zip(_arrays(s_batch.carry), _arrays(s_one.carry), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("module,kw", RECURRENT)
def test_checkpoint_then_resume_is_bit_exact_with_carries(module, kw, tmp_path):
    config = _quick(module, **kw)
    resumed = check_interrupted_resume_is_bit_exact(module.ALGORITHM.name, config, tmp_path)
    assert resumed.state.carry is not None


def test_recurrent_bootstrap_values_are_the_next_steps_values():
    """GAE's ``V(next_obs)`` of a recurrent agent, computed with the carry after each step,
    equals the value the agent computed when it acted at the next step (where no episode
    started in between): the loss and the acting see the same history."""
    config = _quick(ppo, recurrent="gru", num_steps=12)
    state = ppo.init(jax.random.PRNGKey(0), config)
    state, rollout, _ = ac.collect_rollout(state)
    nxt = np.asarray(ac.next_values(state.network, rollout))
    acted = np.asarray(rollout.extras["value"])
    same = ~np.asarray(rollout.done)[:-1]  # step t + 1 continues the episode of step t
    assert same.sum() > 20
    np.testing.assert_allclose(nxt[:-1][same], acted[1:][same], rtol=1e-5, atol=1e-6)


def _success(module, config, seeds=2):
    train = jax.jit(jax.vmap(module.make_train(config)))
    _, metrics = train(jax.random.split(jax.random.PRNGKey(0), seeds))
    return np.asarray(metrics["eval_return"])[:, -1]


# The memory probe's return is the success of the one answer (0 or 1). A policy that does not
# remember answers the query observation [0, 1] the same way whatever the cue: its expected
# success is exactly 0.5, and over 2 seeds × 64 evaluation episodes a binomial mean of 128
# draws lies in 0.5 ± 0.2 with probability > 0.99999. A recurrent agent must pass 0.9: no
# memoryless policy can (it would need 115 of 128 fair coin flips, p < 1e-19).
MEMORY = 6  # the cue 6 steps back


def test_recurrent_ppo_remembers_and_feed_forward_ppo_cannot():
    common = dict(
        env_id=f"MemoryProbe-v0?memory_length={MEMORY}",
        total_steps=32_768,
        eval_every=16_384,
        eval_envs=64,
        num_envs=8,
        num_steps=64,
        num_minibatches=4,
    )
    recurrent = _success(ppo, ppo.Config(**common, recurrent="gru", sequence_length=16))
    feed_forward = _success(ppo, ppo.Config(**common))
    assert np.all(recurrent >= 0.9), recurrent
    assert abs(feed_forward.mean() - 0.5) <= 0.2, feed_forward


def test_recurrent_pqn_remembers():
    config = pqn.Config(
        env_id=f"MemoryProbe-v0?memory_length={MEMORY}",
        total_steps=16_384,
        eval_every=8192,
        eval_envs=64,
        num_envs=16,
        num_steps=32,
        num_minibatches=4,
        hidden_sizes=(64,),
        core_size=64,
        learning_rate=1e-3,
        reward_scale=1.0,
        recurrent="gru",
    )
    assert np.all(_success(pqn, config) >= 0.9)


# ------------------------------------------------------------------ bad input


def test_bad_recurrent_configs_raise_before_compile():
    with pytest.raises(ValueError, match="^sequence_length: must divide the rollout"):
        ppo.Config(recurrent="gru", num_steps=128, sequence_length=48)
    with pytest.raises(ValueError, match="^recurrent: must be 'none' or one of"):
        pqn.Config(recurrent="transformer")
    with pytest.raises(ValueError, match="^num_minibatches: must divide the number of sequences"):
        ppo.Config(recurrent="lstm", num_envs=4, num_steps=128, num_minibatches=8)
    with pytest.raises(ValueError, match="^core_size"):
        ppo.Config(recurrent="gru", core_size=0)
    with pytest.raises(ValueError, match="recurrent: unknown core"):
        RecurrentCore("rnn", 2, 4, key=jax.random.PRNGKey(0))


def _recurrent_factory(key, obs_shape, spec):
    return RecurrentActorCritic(obs_shape, spec.size, hidden_sizes=(8,), core_size=4, key=key)


def test_a_recurrent_network_on_a_feed_forward_path_is_refused():
    """Refused where the network is built (``init``, traced before anything compiles)."""
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="^network: RecurrentActorCritic is recurrent"):
        a2c.init(key, a2c.Config(env_id="MemoryProbe-v0"), network=_recurrent_factory)
    with pytest.raises(ValueError, match="^network: RecurrentActorCritic is recurrent"):
        ppo.init(key, ppo.Config(env_id="MemoryProbe-v0"), network=_recurrent_factory)
    mlp = eqx.nn.MLP(2, 2, 8, 1, key=key)
    with pytest.raises(ValueError, match="^network: the config asks for a recurrent agent"):
        pqn.init(key, pqn.Config(env_id="MemoryProbe-v0", recurrent="gru"), network=mlp)


def test_a_users_recurrent_network_is_used():
    config = _quick(ppo, recurrent="gru", sequence_length=8)
    state = ppo.init(jax.random.PRNGKey(0), config, network=_recurrent_factory)
    state, metrics = eqx.filter_jit(ppo.step)(state)
    assert np.isfinite(metrics["loss"])
    assert state.network.core.hidden_size == 4
    assert state.carry.shape == (4, 4)


def test_collect_threads_the_carry_and_records_episode_starts():
    """The rollout's ``first`` flags are where the carry was reset, and the final carry of
    one rollout is where the next one starts (the state keeps it)."""
    config = _quick(ppo, recurrent="gru", num_steps=8)
    state = ppo.init(jax.random.PRNGKey(0), config)
    new_state, rollout, _ = ac.collect_rollout(state)
    np.testing.assert_array_equal(rollout.first[0], True)  # fresh envs start episodes
    np.testing.assert_array_equal(rollout.first[1:], np.asarray(rollout.done)[:-1])
    for a, b in zip(
        jax.tree.leaves(new_state.carry), jax.tree.leaves(rollout.final_carry), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    policy = ac.sampling_policy(state)
    _, again, _ = collect(
        jax.random.PRNGKey(1), state.env, state.env_state, policy, 8, carry=state.carry
    )
    assert again.extras["carry"].shape == (8, 4, 16)
