"""running_stats: batch updates equal the statistics of all data at once (NumPy)."""

import jax
import jax.numpy as jnp
import numpy as np

from purerl import running_stats


def test_batched_updates_match_numpy_mean_and_variance():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (5, 17, 1, 40)]
    stats = running_stats.init((4,))
    for b in batches:
        stats = running_stats.update(stats, jnp.asarray(b))
    data = np.concatenate(batches)
    # the initial pseudo-count of 1e-4 (mean 0, var 1) shifts results by ~1e-5 at most
    np.testing.assert_allclose(stats.mean, data.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats.var, data.var(0), rtol=1e-4, atol=1e-4)
    assert float(stats.count) == np.float32(len(data) + 1e-4)


def test_normalize_standardises_and_clips_under_jit_and_vmap():
    stats = running_stats.RunningStats(
        jnp.array([1.0, -2.0]), jnp.array([4.0, 0.25]), jnp.array(9.0)
    )
    obs = jnp.array([[3.0, -2.0], [1.0, 100.0]])
    expected = np.array([[1.0, 0.0], [0.0, 10.0]])  # (3-1)/2 = 1; (100+2)/0.5 clipped to 10
    np.testing.assert_allclose(jax.jit(running_stats.normalize)(stats, obs), expected, rtol=1e-6)
    per_row = jax.vmap(running_stats.normalize, in_axes=(None, 0))(stats, obs)
    np.testing.assert_allclose(per_row, expected, rtol=1e-6)


def test_ppo_with_observation_normalisation_runs_and_tracks_the_observations():
    from purerl.algorithms import ppo

    config = ppo.Config(
        env_id="CartPole-v1",
        total_steps=5_120,
        eval_every=2_560,
        normalize_observations=True,
        eval_envs=2,
    )
    state, metrics = jax.jit(ppo.make_train(config))(jax.random.PRNGKey(0))
    assert float(state.obs_stats.count) >= 5_120  # every collected observation was folded in
    assert np.all(np.asarray(state.obs_stats.var) > 0)
    assert np.all(np.isfinite(np.asarray(metrics["loss"])))
