"""Tests for purerl/envs/brax_env.py: Brax environments behind purerl's gymnax 1.x interface,
with termination and truncation kept apart. Needs the optional extra (``pip install
'purerl[brax]'``); skipped without it (CI). The missing-brax path is tested in
``test_brax_missing.py``, which always runs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("brax")

from purerl.envs import VecEnv, brax_env, check_env_id, make, registered, to_transition  # noqa: E402

ENV_ID = "brax:inverted_pendulum"
RESET_HIGH = 0.01  # inverted_pendulum resets q and qd uniformly in [-0.01, 0.01]
FALL_ANGLE = 0.2  # it terminates when |hinge angle| (obs[1]) exceeds this


@pytest.fixture(scope="module")
def pendulum():
    return make(ENV_ID)


def _rollout(env, params, action, steps, key):
    """``steps`` jitted steps from a reset with a constant ``action``: stacked step outputs."""

    def body(state, k):
        obs, state, reward, terminated, truncated, info = env.step(k, state, action, params)
        return state, (obs, reward, terminated, truncated, info["final_observation"])

    obs0, state = env.reset(key, params)
    keys = jax.random.split(jax.random.fold_in(key, 1), steps)
    return obs0, jax.jit(lambda s: jax.lax.scan(body, s, keys)[1])(state)


def test_make_builds_a_box_env(pendulum):
    env, params = pendulum
    assert isinstance(env, brax_env.BraxEnv)
    assert env.name == ENV_ID and env.backend == brax_env.DEFAULT_BACKEND
    assert params.max_steps_in_episode == 1000
    assert env.observation_space(params).shape == (4,)
    space = env.action_space(params)
    assert space.shape == (1,) and float(space.low) == -1.0 and float(space.high) == 1.0
    # the same id twice is the same static value under jit
    assert make(ENV_ID)[0] == env and hash(make(ENV_ID)[0]) == hash(env)
    assert make(ENV_ID, backend="generalized")[0] != env


def test_registry_and_ids():
    ids = registered()
    assert {ENV_ID, "brax:ant", "CartPole-v1"} <= set(ids)
    assert "brax:fast" not in ids  # Brax's test double, not a physics env
    with pytest.raises(ValueError, match="brax:ant"):
        make("brax:antt")
    with pytest.raises(ValueError, match="max_steps_in_episode"):
        check_env_id("brax:inverted_pendulum?max_steps=5")
    env, params = make("brax:inverted_pendulum?max_steps_in_episode=500")
    assert params.max_steps_in_episode == 500
    with pytest.raises(ValueError, match="backend"):
        make(ENV_ID, backend="bullet")


def test_reset_and_step_shapes_and_dtypes(pendulum, key):
    env, params = pendulum
    obs, state = env.reset(key, params)
    assert obs.shape == (4,) and obs.dtype == jnp.float32
    assert np.all(np.abs(np.asarray(obs)) <= RESET_HIGH)
    obs, state, reward, terminated, truncated, info = jax.jit(env.step)(
        key, state, jnp.zeros(1), params
    )
    assert obs.shape == (4,) and obs.dtype == jnp.float32
    assert reward.shape == () and reward.dtype == jnp.float32 and float(reward) == 1.0
    assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    assert not bool(terminated) and not bool(truncated)
    assert info["final_observation"].shape == (4,)
    np.testing.assert_array_equal(info["final_observation"], obs)  # no reset: the same
    assert int(state.time) == 1


def test_time_limit_truncates_and_keeps_the_final_observation(key):
    limit = 3
    env, params = make(f"{ENV_ID}?max_steps_in_episode={limit}")
    _, long_params = make(ENV_ID)
    still = jnp.zeros(1)  # a near-upright pendulum does not fall in a few steps
    _, (obs, _, terminated, truncated, final) = _rollout(env, params, still, limit + 1, key)
    _, (free_obs, *_) = _rollout(env, long_params, still, limit, key)
    assert not np.any(terminated)
    np.testing.assert_array_equal(truncated, [False, False, True, False])
    # the final observation is the pre-reset one: where the episode would have gone on
    np.testing.assert_allclose(final[limit - 1], free_obs[limit - 1], rtol=1e-6, atol=1e-7)
    # ... while obs is already the first of a fresh episode (and the counter restarted)
    assert not np.allclose(obs[limit - 1], final[limit - 1])
    assert np.all(np.abs(obs[limit - 1]) <= RESET_HIGH)
    np.testing.assert_array_equal(obs[limit], final[limit])  # no reset on the next step


def test_falling_terminates_not_truncates(pendulum, key):
    env, params = pendulum
    push = jnp.ones(1)  # full force one way: the pole falls
    _, (obs, _, terminated, truncated, final) = _rollout(env, params, push, 200, key)
    terminated, truncated = np.asarray(terminated), np.asarray(truncated)
    assert terminated.any() and not truncated.any()
    first = int(np.argmax(terminated))
    assert abs(float(final[first][1])) > FALL_ANGLE  # the last obs: fallen
    assert np.all(np.abs(np.asarray(obs[first])) <= RESET_HIGH)  # obs: a fresh episode


def test_vec_env_jit_vmap_and_transitions(key):
    env = VecEnv.make(f"{ENV_ID}?max_steps_in_episode=20", num_envs=4)
    assert env.obs_shape == (4,) and env.action_dim == 1 and not env.is_discrete
    low, high = env.action_bounds
    np.testing.assert_array_equal(low, [-1.0])
    np.testing.assert_array_equal(high, [1.0])

    def body(state, k):
        act_key, step_key = jax.random.split(k)
        action = jax.random.uniform(act_key, (4, 1), minval=-2.0, maxval=2.0)  # clipped
        new, ts = env.step(step_key, state, action)
        tr = to_transition(state.obs, action, ts)
        return new, (ts.terminated, ts.truncated, ts.episode_length, tr.discount, tr.reward)

    state = env.reset(key)
    assert state.obs.shape == (4, 4)
    run = jax.jit(lambda s: jax.lax.scan(body, s, jax.random.split(key, 60)))
    state, (terminated, truncated, length, discount, reward) = run(state)
    terminated, truncated = np.asarray(terminated), np.asarray(truncated)
    assert terminated.shape == (60, 4) and reward.dtype == jnp.float32
    assert not np.any(terminated & truncated)
    assert terminated.any()  # random pushes topple the pendulum
    np.testing.assert_array_equal(np.asarray(length)[truncated], 20)
    np.testing.assert_array_equal(np.asarray(discount), 1.0 - terminated)  # truncation bootstraps


def test_cli_trains_sac_on_brax(tmp_path, capsys):
    from purerl.cli import main

    out = tmp_path / "run"
    code = main(
        [
            "train",
            "sac",
            "--env",
            f"{ENV_ID}?max_steps_in_episode=50",
            "--steps",
            "300",
            "--seeds",
            "2",
            "--set",
            "learning_starts=64",
            "--set",
            "batch_size=32",
            "--set",
            "hidden_sizes=16",
            "--set",
            "eval_every=150",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code in (0, None)
    assert (out / "summary.json").exists()
    printed = capsys.readouterr().out
    assert "sac" in printed and "brax:inverted_pendulum" in printed
