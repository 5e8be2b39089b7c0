"""Tests for purerl/envs: make, VecEnv (auto-reset, episode statistics, termination vs
truncation), to_transition, and the probe environments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.cartpole import EnvState

from purerl.envs import VecEnv, VecEnvState, make, registered, to_transition
from purerl.networks import QNetwork
from purerl.value import q_learning_td_error, td_loss

GAMMA = 0.9
RESET_HIGH = 0.05  # CartPole resets every state variable uniformly in [-0.05, 0.05]


@pytest.fixture(scope="module")
def cartpole():
    return VecEnv.make("CartPole-v1", num_envs=3)


# --------------------------------------------------------------------------------------------
# make


def test_make_unknown_id_suggests_close_names():
    with pytest.raises(ValueError, match="CartPole-v1") as info:
        make("CartPole-v2")
    assert "CartPole-v2" in str(info.value)
    with pytest.raises(ValueError, match="unknown"):
        VecEnv.make("Cartpole-v1", num_envs=2)
    with pytest.raises(ValueError, match="ConstantReward-probe"):
        make("ConstantReward-prob")


def test_make_known_ids():
    assert {"CartPole-v1", "TimeLimit-probe", "TwoStep-probe"} <= set(registered())
    env, params = make("CartPole-v1")
    assert env.name == "CartPole-v1" and params.max_steps_in_episode == 500
    env, params = make("TimeLimit-probe")
    assert params.max_steps_in_episode == 5
    with pytest.raises(ValueError, match="num_envs"):
        VecEnv.make("CartPole-v1", num_envs=0)


# --------------------------------------------------------------------------------------------
# VecEnv on CartPole


def test_reset_and_step_shapes(cartpole, key):
    assert cartpole.num_envs == 3 and cartpole.obs_shape == (4,)
    assert cartpole.num_actions == 2 and cartpole.is_discrete
    state = cartpole.reset(key)
    assert isinstance(state, VecEnvState)
    assert state.obs.shape == (3, 4)
    assert np.all(np.abs(np.asarray(state.obs)) <= RESET_HIGH)
    assert len(np.unique(np.asarray(state.obs)[:, 0])) == 3  # one key per env
    np.testing.assert_array_equal(state.episode_return, np.zeros(3))
    np.testing.assert_array_equal(state.episode_length, np.zeros(3))
    new_state, ts = cartpole.step(key, state, jnp.array([0, 1, 0]))
    assert ts.obs.shape == (3, 4) and ts.final_obs.shape == (3, 4)
    for field, dtype in [
        ("reward", jnp.float32),
        ("terminated", jnp.bool_),
        ("truncated", jnp.bool_),
        ("episode_return", jnp.float32),
        ("episode_length", jnp.int32),
    ]:
        value = getattr(ts, field)
        assert value.shape == (3,) and value.dtype == dtype, field
    assert ts.done.shape == (3,)
    np.testing.assert_array_equal(new_state.obs, ts.obs)
    np.testing.assert_array_equal(ts.episode_length, np.ones(3))


N_STEPS = 150


@pytest.fixture(scope="module")
def random_rollout(cartpole):
    @jax.jit
    def run(key):
        state = cartpole.reset(key)

        def body(state, key):
            k_act, k_step = jax.random.split(key)
            action = jax.random.randint(k_act, (cartpole.num_envs,), 0, 2)
            new_state, ts = cartpole.step(k_step, state, action)
            return new_state, (state, action, ts, new_state)

        return jax.lax.scan(body, state, jax.random.split(key, N_STEPS))[1]

    return jax.tree.map(np.asarray, run(jax.random.PRNGKey(3)))


def test_episode_statistics_match_manual_accumulation(random_rollout):
    _, _, ts, new_state = random_rollout
    ret, length = np.zeros(3), np.zeros(3, int)
    finished = 0
    for t in range(N_STEPS):
        ret += ts.reward[t]
        length += 1
        done = ts.terminated[t] | ts.truncated[t]
        np.testing.assert_allclose(ts.episode_return[t][done], ret[done], rtol=1e-6)
        np.testing.assert_array_equal(ts.episode_length[t][done], length[done])
        finished += int(done.sum())
        ret[done], length[done] = 0.0, 0
        # the running statistics carried in the state restart after an episode ends
        np.testing.assert_allclose(new_state.episode_return[t], ret, rtol=1e-6)
        np.testing.assert_array_equal(new_state.episode_length[t], length)
    assert finished >= 6  # random CartPole episodes last ~20 steps


def test_auto_reset_keeps_final_obs(random_rollout, cartpole):
    state, _, ts, new_state = random_rollout
    done = ts.terminated | ts.truncated
    assert done.any() and (~done).any()
    # Where an episode went on, the next observation is the stepped one.
    np.testing.assert_array_equal(ts.obs[~done], ts.final_obs[~done])
    # Where it ended, obs is a fresh reset observation, final_obs the true last one.
    assert np.all(np.abs(ts.obs[done]) <= RESET_HIGH)
    assert np.all(np.any(ts.obs[done] != ts.final_obs[done], axis=-1))
    np.testing.assert_array_equal(new_state.env_state.time[done], 0)
    # Random CartPole episodes end by termination: the final obs is past a threshold.
    final = ts.final_obs[ts.terminated]
    out = (np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > 12 * 2 * np.pi / 360)
    assert ts.terminated.any() and np.all(out)
    # final_obs is one CartPole step (env.step_env, deterministic) from the acting state.
    t, i = np.argwhere(done)[0]
    one_state = jax.tree.map(lambda x: x[t, i], state.env_state)
    obs, *_ = cartpole.env.step_env(
        jax.random.PRNGKey(0), one_state, random_rollout[1][t, i], cartpole.params
    )
    np.testing.assert_allclose(ts.final_obs[t, i], obs, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Truncation vs termination on hand-built CartPole states


def _hand_built_state(env):
    # env 0: balanced at time 499 -> the 500-step limit truncates.
    # env 1: theta crosses the 12° threshold -> terminates.
    # env 2: x crosses 2.4 at time 499 -> both at once: a termination (no bootstrap), never
    #        reported as truncated.
    env_state = EnvState(
        x=jnp.array([0.0, 0.0, 2.39]),
        x_dot=jnp.array([0.0, 0.0, 1.0]),
        theta=jnp.array([0.0, 0.2, 0.0]),
        theta_dot=jnp.array([0.0, 2.0, 0.0]),
        time=jnp.array([499, 10, 499]),
    )
    obs = jax.vmap(env.env.get_obs)(env_state)
    length = jnp.array([499, 10, 499], jnp.int32)
    return VecEnvState(env_state, obs, length.astype(jnp.float32), length)


@pytest.fixture(scope="module")
def cut_step(cartpole):
    env = cartpole
    state = _hand_built_state(env)
    action = jnp.array([1, 1, 1], jnp.int32)
    new_state, ts = env.step(jax.random.PRNGKey(7), state, action)
    true_next = jax.vmap(env.env.step_env, in_axes=(None, 0, 0, None))(
        jax.random.PRNGKey(0), state.env_state, action, env.params
    )
    return env, state, action, new_state, ts, true_next


def test_truncation_and_termination_flags(cut_step):
    _, _, _, new_state, ts, true_next = cut_step
    np.testing.assert_array_equal(ts.truncated, [True, False, False])
    np.testing.assert_array_equal(ts.terminated, [False, True, True])
    np.testing.assert_array_equal(ts.terminated, true_next[3])  # gymnax's own verdict
    np.testing.assert_array_equal(ts.reward, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(ts.episode_return, [500.0, 11.0, 500.0])
    np.testing.assert_array_equal(ts.episode_length, [500, 11, 500])
    np.testing.assert_array_equal(new_state.episode_return, np.zeros(3))
    np.testing.assert_array_equal(new_state.episode_length, np.zeros(3))
    np.testing.assert_array_equal(new_state.env_state.time, np.zeros(3))


def test_final_obs_is_true_next_obs_not_reset_obs(cut_step):
    _, _, _, new_state, ts, true_next = cut_step
    np.testing.assert_allclose(ts.final_obs, true_next[0], rtol=1e-6, atol=1e-7)
    assert np.all(np.any(np.asarray(ts.final_obs) != np.asarray(ts.obs), axis=-1))
    assert np.all(np.abs(np.asarray(ts.obs)) <= RESET_HIGH)
    np.testing.assert_array_equal(new_state.obs, ts.obs)
    # the truncated env's final observation is still balanced, not a reset one
    assert abs(float(ts.final_obs[0, 1])) > RESET_HIGH


def test_truncation_bootstraps_termination_does_not(cut_step):
    _, state, action, _, ts, _ = cut_step
    tr = to_transition(state.obs, action, ts)
    np.testing.assert_array_equal(tr.discount, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(tr.next_obs, ts.final_obs)
    np.testing.assert_array_equal(tr.obs, state.obs)
    np.testing.assert_array_equal(tr.action, action)
    np.testing.assert_array_equal(tr.reward, ts.reward)

    q_net = QNetwork((4,), 2, hidden_sizes=(8,), key=jax.random.PRNGKey(1))
    q_tm1 = jax.vmap(q_net)(tr.obs)
    q_final = np.asarray(jax.vmap(q_net)(ts.final_obs))
    q_reset = np.asarray(jax.vmap(q_net)(ts.obs))
    taken = q_tm1[jnp.arange(3), action]
    td = np.asarray(q_learning_td_error(q_tm1, tr.action, tr.reward, GAMMA * tr.discount, q_final))
    target = td + np.asarray(taken)
    # truncated: target = r + γ max_a Q(final_obs, a), not Q of the reset observation
    np.testing.assert_allclose(target[0], 1.0 + GAMMA * q_final[0].max(), rtol=1e-5)
    assert abs((1.0 + GAMMA * q_reset[0].max()) - target[0]) > 1e-4
    # terminated: target = r exactly
    np.testing.assert_array_equal(td[1:], np.asarray(tr.reward - taken)[1:])
    # td_loss (as DQN calls it) gives the same TD errors
    _, aux = td_loss(q_net, q_net, tr, gamma=GAMMA)
    np.testing.assert_allclose(aux["td_error"], td, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Probe environments


def probe_rollout(env_id, actions, seed=0):
    """obs acted on and Timesteps of len(actions) steps of VecEnv(env_id, num_envs=actions[1])."""
    env = VecEnv.make(env_id, num_envs=actions.shape[1])

    @jax.jit
    def run(key, actions):
        def body(state, xs):
            k, a = xs
            new_state, ts = env.step(k, state, a)
            return new_state, (state.obs, ts)

        keys = jax.random.split(key, actions.shape[0])
        return jax.lax.scan(body, env.reset(key), (keys, actions))[1]

    obs, ts = run(jax.random.PRNGKey(seed), jnp.asarray(actions, jnp.int32))
    return np.asarray(obs)[..., 0], jax.tree.map(np.asarray, ts)


T, N = 8, 4


def test_constant_reward_probe():
    obs, ts = probe_rollout("ConstantReward-probe", np.zeros((T, N)))
    np.testing.assert_array_equal(obs, 0.0)
    np.testing.assert_array_equal(ts.reward, 1.0)
    assert ts.terminated.all() and not ts.truncated.any()
    np.testing.assert_array_equal(ts.episode_length, 1)


def test_obs_reward_probe():
    obs, ts = probe_rollout("ObsReward-probe", np.zeros((T, N)))
    assert set(np.unique(obs)) == {-1.0, 1.0}
    np.testing.assert_array_equal(ts.reward, obs)
    assert ts.terminated.all() and not ts.truncated.any()


def test_two_step_probe():
    obs, ts = probe_rollout("TwoStep-probe", np.zeros((T, N)))
    first = np.arange(T) % 2 == 0
    np.testing.assert_array_equal(obs[first], 0.0)
    np.testing.assert_array_equal(obs[~first], 1.0)
    np.testing.assert_array_equal(ts.reward[first], 0.0)
    np.testing.assert_array_equal(ts.reward[~first], 1.0)
    np.testing.assert_array_equal(ts.terminated, np.broadcast_to(~first[:, None], (T, N)))
    assert not ts.truncated.any()
    np.testing.assert_array_equal(ts.final_obs[..., 0], 1.0)  # obs after either step is 1
    np.testing.assert_array_equal(ts.episode_return[~first], 1.0)
    np.testing.assert_array_equal(ts.episode_length[~first], 2)


def test_action_reward_probe():
    actions = np.random.default_rng(0).integers(0, 2, size=(T, N))
    obs, ts = probe_rollout("ActionReward-probe", actions)
    np.testing.assert_array_equal(obs, 0.0)
    np.testing.assert_array_equal(ts.reward, np.where(actions == 1, 1.0, -1.0))
    assert ts.terminated.all() and not ts.truncated.any()


def test_obs_action_reward_probe():
    actions = np.random.default_rng(1).integers(0, 2, size=(T, N))
    obs, ts = probe_rollout("ObsActionReward-probe", actions)
    assert set(np.unique(obs)) == {-1.0, 1.0}
    right = actions == (obs > 0)
    assert right.any() and (~right).any()
    np.testing.assert_array_equal(ts.reward, np.where(right, 1.0, -1.0))
    assert ts.terminated.all() and not ts.truncated.any()


def test_time_limit_probe_truncates_at_five_and_never_terminates():
    steps = 12
    obs, ts = probe_rollout("TimeLimit-probe", np.zeros((steps, N)))
    np.testing.assert_array_equal(ts.reward, 1.0)
    assert not ts.terminated.any()
    cut = (np.arange(steps) + 1) % 5 == 0  # steps 5 and 10
    np.testing.assert_array_equal(ts.truncated, np.broadcast_to(cut[:, None], (steps, N)))
    np.testing.assert_array_equal(ts.episode_return[cut], 5.0)
    np.testing.assert_array_equal(ts.episode_length[cut], 5)
    np.testing.assert_array_equal(
        ts.episode_length[~cut],
        np.broadcast_to((np.arange(steps)[~cut] % 5 + 1)[:, None], (int((~cut).sum()), N)),
    )
    # truncation keeps discount 1: the target bootstraps
    tr = to_transition(jnp.zeros((N, 1)), jnp.zeros(N, jnp.int32), jax.tree.map(lambda x: x[4], ts))
    np.testing.assert_array_equal(tr.discount, 1.0)
