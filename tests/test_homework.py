"""The homework path: a plain Python loop (nothing jitted by hand) built from the pieces."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from purerl import QNetwork, Transition, epsilon_greedy, replay, td_update
from purerl.envs import VecEnv, to_transition


@pytest.mark.slow
def test_plain_python_loop_learns_a_probe():
    """ObsActionReward-probe: Q*(obs=-1) = [+1, -1], Q*(obs=+1) = [-1, +1]. A net that has not
    learned sits near 0 and picks at random, so |Q - Q*| < 0.15 on all four is a sharp test."""
    key = jax.random.PRNGKey(0)
    env = VecEnv.make("ObsActionReward-probe", num_envs=8)
    key, net_key, reset_key = jax.random.split(key, 3)
    q_net = QNetwork(env.obs_shape, env.num_actions, hidden_sizes=(32,), key=net_key)
    target_net = q_net
    optimizer = optax.adam(3e-3)
    opt_state = optimizer.init(eqx.filter(q_net, eqx.is_inexact_array))
    state = env.reset(reset_key)
    example = Transition(
        obs=state.obs[0],
        action=jnp.int32(0),
        reward=jnp.float32(0.0),
        discount=jnp.float32(1.0),
        next_obs=state.obs[0],
    )
    buffer = replay.init(example, capacity=1_000)
    losses = []
    for i in range(200):
        key, act_key, step_key, sample_key = jax.random.split(key, 4)
        action = epsilon_greedy(act_key, jax.vmap(q_net)(state.obs), 0.5)
        next_state, ts = env.step(step_key, state, action)
        buffer = replay.add(buffer, to_transition(state.obs, action, ts))
        state = next_state
        if replay.can_sample(buffer, 64):
            batch = replay.sample(sample_key, buffer, 64)
            q_net, opt_state, info = td_update(
                q_net, target_net, opt_state, batch, optimizer=optimizer, gamma=0.9
            )
            losses.append(float(info["loss"]))
        if i % 20 == 0:
            target_net = q_net
    q = np.asarray(jax.vmap(q_net)(jnp.array([[-1.0], [1.0]])))
    np.testing.assert_allclose(q, [[1.0, -1.0], [-1.0, 1.0]], atol=0.15)
    assert np.mean(losses[-20:]) < 0.1 * np.mean(losses[:20])
