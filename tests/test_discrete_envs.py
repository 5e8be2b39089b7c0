"""``purerl.envs.tabular_states``: the documented observation → table-row map of every supported
environment, checked against the environment's own state, and refusals for the others."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl import envs


def rollout_states(env, params, steps=30, seed=0):
    """(observation, env state) pairs along a random-action trajectory (auto-reset included)."""
    key = jax.random.PRNGKey(seed)
    obs, state = env.reset(key, params)
    pairs = [(obs, state)]
    for _ in range(steps):
        key, action_key, step_key = jax.random.split(key, 3)
        action = jax.random.randint(action_key, (), 0, env.num_actions)
        obs, state, *_ = env.step(step_key, state, action, params)
        pairs.append((obs, state))
    return pairs


def test_course_environments_are_listed():
    assert {"RobotInRoom-v0", "Inventory-v0"} <= set(envs.registered())


def test_robot_in_room_uses_its_cell():
    env, params = envs.make("RobotInRoom-v0")
    n, index = envs.tabular_states(env, params)
    assert n == 12
    for obs, state in rollout_states(env, params):
        assert int(index(obs)) == int(state.cell)


def test_frozen_lake_observation_is_the_index():
    env, params = envs.make("FrozenLake-misc")
    n, index = envs.tabular_states(env, params)
    assert n == 16
    for obs, state in rollout_states(env, params):
        assert int(index(obs)) == int(state.position)


def test_deep_sea_one_hot_maps_to_row_and_column():
    env, params = envs.make("DeepSea-bsuite")
    n, index = envs.tabular_states(env, params)
    assert n == env.size**2 == 64
    for obs, state in rollout_states(env, params):
        assert int(index(obs)) == env.size * int(state.row) + int(state.column)


def test_four_rooms_index_includes_position_and_goal():
    env, params = envs.make("FourRooms-misc")
    params = params.replace(resample_goal_pos=True, resample_init_pos=True)
    n, index = envs.tabular_states(env, params)
    assert n == 169 * 169
    seen = set()
    for obs, state in rollout_states(env, params, steps=60):
        y, x = (int(v) for v in state.pos)
        gy, gx = (int(v) for v in state.goal)
        assert int(index(obs)) == 13 * y + x + 169 * (13 * gy + gx)
        seen.add(int(index(obs)))
    assert len(seen) > 1


def test_index_is_jit_and_vmap_friendly():
    env, params = envs.make("DeepSea-bsuite")
    _, index = envs.tabular_states(env, params)
    obs = jnp.stack([o for o, _ in rollout_states(env, params, steps=5)])
    np.testing.assert_array_equal(jax.jit(jax.vmap(index))(obs), [index(o) for o in obs])


@pytest.mark.parametrize(
    "env_id, kwargs",
    [("CartPole-v1", {}), ("FourRooms-misc", {"use_visual_obs": True}), ("Inventory-v0", {})],
)
def test_other_environments_are_refused_naming_env_id(env_id, kwargs):
    env, params = envs.make(env_id, **kwargs)
    with pytest.raises(ValueError, match="^env_id: "):
        envs.tabular_states(env, params)
