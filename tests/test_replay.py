"""Tests for purerl/replay.py: a uniform circular buffer of Transitions as a pytree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl import replay
from purerl.types import Transition

OBS = 2
# One sample size throughout: each new size compiles the PRNG again (~1 s on CPU).
N_SAMPLES = 20_000
CAPACITY = 7  # one capacity throughout, for the same reason


def make_items(ids):
    """Transitions identified by id (ids start at 1 so empty, zeroed slots are told apart):
    obs = [id, -id], action = id, reward = id / 2, next_obs = obs + 1000."""
    ids = np.asarray(ids)
    obs = np.stack([ids, -ids], axis=-1).astype(np.float32)
    return Transition(
        obs=jnp.asarray(obs),
        action=jnp.asarray(ids, jnp.int32),
        reward=jnp.asarray(ids / 2, jnp.float32),
        discount=jnp.ones(ids.shape, jnp.float32),
        next_obs=jnp.asarray(obs + 1000.0),
    )


def make_item(i):
    return jax.tree.map(lambda x: x[0], make_items([i]))


EXAMPLE = make_item(0)


def assert_consistent(items, allowed_ids=None):
    """Every row is a whole added transition (fields paired, next_obs kept with its obs)."""
    ids = np.asarray(items.action)
    np.testing.assert_array_equal(items.obs[:, 0], ids)
    np.testing.assert_array_equal(items.obs[:, 1], -ids)
    np.testing.assert_array_equal(items.reward, ids / 2)
    np.testing.assert_array_equal(items.next_obs, np.asarray(items.obs) + 1000.0)
    if allowed_ids is not None:
        assert set(ids.tolist()) <= set(allowed_ids)


def stored_ids(buffer):
    return np.asarray(buffer.data.action)


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------------------------


def test_init_shapes_and_dtypes():
    example = Transition(
        obs=jnp.zeros((3, 4), jnp.uint8),
        action=jnp.int32(0),
        reward=jnp.float32(0.0),
        discount=jnp.float32(1.0),
        next_obs=jnp.zeros((3, 4), jnp.uint8),
    )
    buffer = replay.init(example, capacity=5)
    assert buffer.capacity == 5 and isinstance(buffer.capacity, int)
    assert buffer.data.obs.shape == (5, 3, 4) and buffer.data.obs.dtype == jnp.uint8
    assert buffer.data.next_obs.shape == (5, 3, 4) and buffer.data.next_obs.dtype == jnp.uint8
    assert buffer.data.action.shape == (5,) and buffer.data.action.dtype == jnp.int32
    assert buffer.data.reward.shape == (5,) and buffer.data.reward.dtype == jnp.float32
    assert int(buffer.position) == 0 and int(buffer.size) == 0
    assert buffer.position.shape == () and buffer.size.shape == ()
    assert not bool(replay.can_sample(buffer, 1))


@pytest.mark.parametrize("capacity", [0, -3])
def test_init_rejects_bad_capacity(capacity):
    with pytest.raises(ValueError, match="capacity"):
        replay.init(EXAMPLE, capacity)


def test_add_single_and_batch():
    buffer = replay.init(EXAMPLE, capacity=CAPACITY)
    buffer = replay.add(buffer, make_item(1))
    assert int(buffer.size) == 1 and int(buffer.position) == 1
    np.testing.assert_array_equal(stored_ids(buffer), [1, 0, 0, 0, 0, 0, 0])
    buffer = replay.add(buffer, make_items([2, 3, 4]))
    assert int(buffer.size) == 4 and int(buffer.position) == 4
    np.testing.assert_array_equal(stored_ids(buffer), [1, 2, 3, 4, 0, 0, 0])
    buffer = replay.add_batch(buffer, make_items([5]))
    np.testing.assert_array_equal(stored_ids(buffer), [1, 2, 3, 4, 5, 0, 0])
    assert int(buffer.size) == 5 and int(buffer.position) == 5
    assert_consistent(jax.tree.map(lambda x: x[:5], buffer.data))
    # the unfilled slots are untouched zeros
    assert all(np.all(np.asarray(x[5:]) == 0) for x in jax.tree.leaves(buffer.data))


def test_fill_past_wrap_around_keeps_latest_capacity_items():
    buffer = replay.init(EXAMPLE, CAPACITY)
    model: list[int | None] = [None] * CAPACITY  # a plain circular buffer as reference
    position, next_id = 0, 1
    for n in [3, 1, 3, 1, 3, 1, 3, 1, 3, 1]:  # 20 items in batches of 3 and singles
        ids = list(range(next_id, next_id + n))
        next_id += n
        buffer = replay.add(buffer, make_items(ids) if n > 1 else make_item(ids[0]))
        for i in ids:
            model[position] = i
            position = (position + 1) % CAPACITY
        filled = [m for m in model if m is not None]
        assert int(buffer.position) == position
        assert int(buffer.size) == len(filled)
        assert buffer.data.obs.shape == (CAPACITY, OBS)
        np.testing.assert_array_equal(stored_ids(buffer), [m or 0 for m in model])
    assert next_id - 1 == 20
    assert int(buffer.size) == CAPACITY and int(buffer.position) == 20 % CAPACITY
    assert sorted(stored_ids(buffer).tolist()) == list(range(14, 21))
    assert_consistent(buffer.data, allowed_ids=range(14, 21))


def test_batch_equal_to_capacity_overwrites_everything():
    buffer = replay.init(EXAMPLE, capacity=CAPACITY)
    buffer = replay.add(buffer, make_items([1, 2, 3]))
    buffer = replay.add(buffer, make_items(range(4, 11)))
    np.testing.assert_array_equal(stored_ids(buffer), [8, 9, 10, 4, 5, 6, 7])
    assert int(buffer.position) == 3 and int(buffer.size) == CAPACITY


def test_batch_larger_than_capacity_raises():
    buffer = replay.init(EXAMPLE, capacity=3)
    with pytest.raises(ValueError, match="capacity"):
        replay.add(buffer, make_items([1, 2, 3, 4]))
    with pytest.raises(ValueError, match="capacity"):
        replay.add_batch(buffer, make_items([1, 2, 3, 4]))


def test_wrong_ranks_raise():
    buffer = replay.init(EXAMPLE, capacity=5)
    two_batch_axes = jax.tree.map(lambda x: x[None], make_items([1, 2]))
    with pytest.raises(ValueError):
        replay.add(buffer, two_batch_axes)
    wrong_trailing = make_item(1)
    wrong_trailing = Transition(jnp.zeros(5), wrong_trailing.action, 0.0, 1.0, jnp.zeros(5))
    with pytest.raises(ValueError, match="obs"):
        replay.add(buffer, wrong_trailing)
    mixed = make_item(1)
    mixed = Transition(mixed.obs[None], mixed.action, mixed.reward, mixed.discount, mixed.obs)
    with pytest.raises(ValueError):
        replay.add(buffer, mixed)


@pytest.fixture(scope="module")
def three_of_seven():
    return replay.add(replay.init(EXAMPLE, capacity=CAPACITY), make_items([1, 2, 3]))


def test_samples_are_added_items_and_only_from_filled_slots(key, three_of_seven):
    batch = replay.sample(key, three_of_seven, N_SAMPLES)
    assert batch.obs.shape == (N_SAMPLES, OBS) and batch.action.shape == (N_SAMPLES,)
    assert batch.action.dtype == jnp.int32
    assert_consistent(batch, allowed_ids=[1, 2, 3])


def test_sampling_is_uniform_over_filled_slots(three_of_seven):
    # 3 of 7 slots filled, 20 000 draws: each frequency ≈ 1/3 with std 0.0033; tolerance 0.015.
    batch = replay.sample(jax.random.PRNGKey(11), three_of_seven, N_SAMPLES)
    freq = np.bincount(np.asarray(batch.action), minlength=CAPACITY + 1) / N_SAMPLES
    np.testing.assert_allclose(freq[1:4], 1 / 3, atol=0.015)
    np.testing.assert_array_equal(freq[[0, 4, 5, 6, 7]], 0.0)


def test_samples_after_wrap_are_latest_items(key):
    buffer = replay.init(EXAMPLE, capacity=CAPACITY)
    for start in range(1, 13, 3):
        buffer = replay.add(buffer, make_items(range(start, start + 3)))
    batch = replay.sample(key, buffer, N_SAMPLES)
    assert_consistent(batch, allowed_ids=range(6, 13))
    # all 7 stored items come up, near-uniformly (std 0.0025; tolerance 0.015)
    freq = np.bincount(np.asarray(batch.action), minlength=13)[6:] / N_SAMPLES
    np.testing.assert_allclose(freq, 1 / 7, atol=0.015)


def test_can_sample():
    buffer = replay.init(EXAMPLE, capacity=CAPACITY)
    assert not bool(replay.can_sample(buffer, 1))
    buffer = replay.add(buffer, make_items([1, 2, 3]))
    assert bool(replay.can_sample(buffer, 3)) and not bool(replay.can_sample(buffer, 4))
    buffer = replay.add(buffer, make_items(range(4, 11)))
    assert bool(replay.can_sample(buffer, 7)) and not bool(replay.can_sample(buffer, 8))
    assert bool(jax.jit(replay.can_sample, static_argnums=1)(buffer, 7))


def _fill_and_sample(key, buffer, items_a, items_b):
    buffer = replay.add(buffer, items_a)
    buffer = replay.add(buffer, items_b)
    return buffer, replay.sample(key, buffer, N_SAMPLES)


def test_eager_equals_jit(key):
    buffer = replay.init(EXAMPLE, capacity=CAPACITY)
    items_a, items_b = make_items([1, 2, 3]), make_items(range(4, 11))
    eager = _fill_and_sample(key, buffer, items_a, items_b)
    jitted = jax.jit(_fill_and_sample)(key, buffer, items_a, items_b)
    assert_trees_equal(eager, jitted)
    assert int(jitted[0].position) == 3 and int(jitted[0].size) == CAPACITY
    assert_consistent(jitted[1], allowed_ids=range(4, 11))


def test_same_key_same_sample_different_keys_differ(key):
    buffer = replay.add(replay.init(EXAMPLE, capacity=CAPACITY), make_items(range(1, 8)))
    first = replay.sample(key, buffer, N_SAMPLES)
    assert_trees_equal(first, replay.sample(key, buffer, N_SAMPLES))
    other = replay.sample(jax.random.PRNGKey(1), buffer, N_SAMPLES)
    assert np.mean(np.asarray(other.action) != np.asarray(first.action)) > 0.5


def test_vmapped_buffers_are_independent(key):
    # 3 buffers, one per seed, each fed different data; a vmapped run equals each run alone.
    n_seeds = 3
    buffers = jax.tree.map(lambda x: jnp.stack([x] * n_seeds), replay.init(EXAMPLE, CAPACITY))
    first = [make_items(range(20 * s + 1, 20 * s + 4)) for s in range(n_seeds)]  # 3 items each
    second = [make_items(range(20 * s + 4, 20 * s + 11)) for s in range(n_seeds)]  # 7 each
    stack = lambda trees: jax.tree.map(lambda *xs: jnp.stack(xs), *trees)  # noqa: E731
    keys = jax.random.split(key, n_seeds)
    v_buffers, v_samples = jax.jit(jax.vmap(_fill_and_sample))(
        keys, buffers, stack(first), stack(second)
    )
    for s in range(n_seeds):
        alone = _fill_and_sample(keys[s], replay.init(EXAMPLE, CAPACITY), first[s], second[s])
        mine = jax.tree.map(lambda x, s=s: x[s], (v_buffers, v_samples))
        assert_trees_equal(mine, alone)
        assert_consistent(mine[1], allowed_ids=range(20 * s + 4, 20 * s + 11))
