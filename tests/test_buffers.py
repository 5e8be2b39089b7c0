"""Tests for purerl/buffers.py: one contract for the uniform, prioritized and FIFO kinds,
bitwise equality with the replay / prioritized functions they wrap, FIFO keeps the latest
items, PER updates shift sampling, jit and vmap, and ``make``'s errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl import buffers, replay
from purerl import prioritized as per
from purerl.types import Transition

CAPACITY, BATCH = 8, 4


def make_items(ids):
    """Transitions identified by id: obs = [id, -id], action = id, next_obs = obs + 1000."""
    ids = np.asarray(ids)
    obs = np.stack([ids, -ids], axis=-1).astype(np.float32)
    return Transition(
        obs=jnp.asarray(obs),
        action=jnp.asarray(ids, jnp.int32),
        reward=jnp.asarray(ids / 2, jnp.float32),
        discount=jnp.ones(ids.shape, jnp.float32),
        next_obs=jnp.asarray(obs + 1000.0),
    )


EXAMPLE = jax.tree.map(lambda x: x[0], make_items([0]))


def build(kind, capacity=CAPACITY, batch_size=BATCH, **kwargs):
    return buffers.make(kind, capacity=capacity, batch_size=batch_size, **kwargs)


def held(kind, capacity=CAPACITY, batch_size=BATCH):
    """Number of items a buffer of this kind keeps."""
    return batch_size if kind == "fifo" else capacity


def storage(state):
    return state.storage if isinstance(state, per.PrioritizedBuffer) else state


def stored_ids(state):
    """Ids of the items in the filled slots."""
    s = storage(state)
    return set(np.asarray(s.data.action[: int(s.size)]).tolist())


def assert_items_well_formed(batch):
    """Every item is one ``make_items`` built (no torn or zero rows from empty slots)."""
    ids = np.asarray(batch.action)
    obs = np.stack([ids, -ids], axis=-1).astype(np.float32)
    np.testing.assert_array_equal(batch.obs, obs)
    np.testing.assert_array_equal(batch.next_obs, obs + 1000.0)
    np.testing.assert_array_equal(batch.reward, (ids / 2).astype(np.float32))
    np.testing.assert_array_equal(batch.discount, 1.0)


def assert_trees_equal(a, b):
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert jnp.shape(x) == jnp.shape(y) and jnp.asarray(x).dtype == jnp.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def filled(kind, num_items, chunk=3, **kwargs):
    """A buffer of ``kind`` after adding ids ``1..num_items`` in batches of ``chunk``."""
    buf = build(kind, **kwargs)
    state = buf.init(EXAMPLE)
    for start in range(1, num_items + 1, chunk):
        state = buf.add(state, make_items(np.arange(start, min(start + chunk, num_items + 1))))
    return buf, state


# ------------------------------------------------------------------------------ contract


@pytest.mark.parametrize("kind", buffers.KINDS)
def test_contract_init_add_past_wraparound_sample(kind):
    buf = build(kind)
    state = buf.init(EXAMPLE)
    assert int(buf.size(state)) == 0 and not bool(buf.can_sample(state))
    keep = held(kind)
    added = []
    for step, start in enumerate(range(1, 3 * CAPACITY, 3)):  # 24 items: wraps around
        ids = list(range(start, start + 3))
        state = buf.add(state, make_items(ids))
        added += ids
        assert int(buf.size(state)) == min(len(added), keep)
        assert bool(buf.can_sample(state)) == (len(added) >= BATCH)
        if len(added) < BATCH:
            continue
        latest = set(added[-keep:])
        assert stored_ids(state) == latest
        sample = buf.sample(jax.random.PRNGKey(step), state, beta=0.5)
        assert isinstance(sample, buffers.Sample)
        assert sample.batch.obs.shape == (BATCH, 2) and sample.batch.action.shape == (BATCH,)
        assert_items_well_formed(sample.batch)
        assert set(np.asarray(sample.batch.action).tolist()) <= latest
        assert sample.weights.shape == (BATCH,) and sample.weights.dtype == jnp.float32
        if kind == "prioritized":
            assert np.all((np.asarray(sample.weights) > 0) & (np.asarray(sample.weights) <= 1))
        else:
            np.testing.assert_array_equal(sample.weights, 1.0)
        idx = np.asarray(sample.indices)
        assert sample.indices.shape == (BATCH,)
        assert np.all((idx >= 0) & (idx < int(buf.size(state))))
        assert_trees_equal(jax.tree.map(lambda x, i=idx: x[i], storage(state).data), sample.batch)


@pytest.mark.parametrize("kind", buffers.KINDS)
def test_one_item_is_added_like_a_batch_of_one(kind):
    buf = build(kind)
    one = buf.add(buf.init(EXAMPLE), jax.tree.map(lambda x: x[0], make_items([7])))
    batch = buf.add(buf.init(EXAMPLE), make_items([7]))
    assert int(buf.size(one)) == 1
    assert_trees_equal(one, batch)


@pytest.mark.parametrize("kind", buffers.KINDS)
def test_valid_scalar_false_stores_nothing(kind):
    buf, state = filled(kind, 5)
    after = buf.add(state, make_items([50, 51]), jnp.asarray(False))
    assert_trees_equal(after, state)
    after = buf.add(state, make_items([50, 51]), jnp.asarray(True))
    assert int(buf.size(after)) == min(7, held(kind)) and {50, 51} <= stored_ids(after)


@pytest.mark.parametrize("kind", buffers.KINDS)
def test_valid_row_mask_drops_rows_and_packs_the_rest(kind):
    buf, state = filled(kind, 7)  # position near the end: the packed write wraps around
    mask = jnp.array([True, False, True])
    after = buf.add(state, make_items([50, 51, 52]), mask)
    assert int(buf.size(after)) == min(9, held(kind))
    ids = stored_ids(after)
    assert {50, 52} <= ids and 51 not in ids
    # the kept rows sit in the next two slots, in order
    s0, s1 = storage(state), storage(after)
    slots = (int(s0.position) + np.arange(2)) % s0.capacity
    np.testing.assert_array_equal(s1.data.action[slots], [50, 52])
    assert int(s1.position) == (int(s0.position) + 2) % s0.capacity
    for seed in range(5):
        batch = buf.sample(jax.random.PRNGKey(seed), after).batch
        assert 51 not in np.asarray(batch.action).tolist()
    # nothing kept: unchanged; everything kept: the plain add
    assert_trees_equal(buf.add(state, make_items([50, 51, 52]), jnp.zeros(3, bool)), state)
    all_kept = buf.add(state, make_items([50, 51, 52]), jnp.ones(3, bool))
    assert_trees_equal(all_kept, buf.add(state, make_items([50, 51, 52])))


@pytest.mark.parametrize("kind", buffers.KINDS)
def test_valid_of_the_wrong_shape_is_an_error(kind):
    buf = build(kind)
    with pytest.raises(ValueError, match="buffer: valid"):
        buf.add(buf.init(EXAMPLE), make_items([1, 2, 3]), jnp.ones(2, bool))


@pytest.mark.parametrize("kind", buffers.KINDS)
def test_a_batch_larger_than_the_buffer_is_an_error(kind):
    buf = build(kind)
    too_many = make_items(np.arange(held(kind) + 1))
    with pytest.raises(ValueError, match="capacity"):
        buf.add(buf.init(EXAMPLE), too_many)
    with pytest.raises(ValueError, match="capacity"):
        buf.add(buf.init(EXAMPLE), too_many, jnp.ones(held(kind) + 1, bool))


@pytest.mark.parametrize("kind", buffers.KINDS)
def test_update_is_identity_except_for_per(kind):
    buf, state = filled(kind, 10)
    sample = buf.sample(jax.random.PRNGKey(0), state)
    td = jnp.arange(BATCH, dtype=jnp.float32) + 3.0
    assert_trees_equal(buf.update(state, sample.indices, td, jnp.asarray(False)), state)
    updated = buf.update(state, sample.indices, td, True)
    if kind == "prioritized":
        assert not np.array_equal(updated.tree.nodes, state.tree.nodes)
    else:
        assert_trees_equal(updated, state)


# ------------------------------------------------------------------------------ bitwise


@pytest.mark.parametrize("num_items", [0, 3, 13])
def test_uniform_draws_exactly_what_replay_sample_draws(num_items):
    buf, state = filled("uniform", num_items)
    for seed in range(4):
        key = jax.random.PRNGKey(seed)
        sample = buf.sample(key, state)
        assert_trees_equal(sample.batch, replay.sample(key, state, BATCH))
        # replay.sample's own draw is unchanged by the sample_indices refactor
        idx = jax.random.randint(key, (BATCH,), 0, jnp.maximum(state.size, 1))
        assert_trees_equal(sample.indices, idx)
        assert_trees_equal(replay.sample_indices(key, state, BATCH), idx)
        assert_trees_equal(
            replay.sample(key, state, BATCH), jax.tree.map(lambda x, i=idx: x[i], state.data)
        )
        assert_trees_equal(sample.weights, jnp.ones(BATCH, jnp.float32))


def test_uniform_add_is_replay_add_batch():
    buf = build("uniform")
    state = ref = replay.init(EXAMPLE, CAPACITY)
    for start, valid in [(1, None), (4, jnp.asarray(False)), (7, True), (10, jnp.asarray(True))]:
        items = make_items(np.arange(start, start + 3))
        state = buf.add(state, items, valid)
        ref = replay.add_batch(ref, items, valid)
        assert_trees_equal(state, ref)
    assert_trees_equal(buf.init(EXAMPLE), replay.init(EXAMPLE, CAPACITY))


def test_prioritized_is_the_prioritized_module_bitwise():
    alpha, eps = 0.7, 1e-3
    buf = build("prioritized", alpha=alpha, eps=eps)
    state = ref = per.init(EXAMPLE, CAPACITY)
    assert_trees_equal(buf.init(EXAMPLE), ref)
    for step, (start, valid) in enumerate([(1, None), (4, False), (7, True), (10, None)]):
        items = make_items(np.arange(start, start + 3))
        state = buf.add(state, items, None if valid is None else jnp.asarray(valid))
        ref = per.add(ref, items, None if valid is None else jnp.asarray(valid))
        assert_trees_equal(state, ref)
        key = jax.random.PRNGKey(step)
        sample = buf.sample(key, state, beta=0.4)
        assert_trees_equal(tuple(sample), per.sample(key, ref, BATCH, beta=0.4))
        td = jax.random.normal(jax.random.PRNGKey(100 + step), (BATCH,))
        mask = jnp.asarray(step % 2 == 0)
        state = buf.update(state, sample.indices, td, mask)
        ref = per.update_priorities(ref, sample.indices, td, alpha=alpha, eps=eps, mask=mask)
        assert_trees_equal(state, ref)
    key = jax.random.PRNGKey(9)
    assert_trees_equal(tuple(buf.sample(key, state)), per.sample(key, ref, BATCH, beta=1.0))


def test_prioritized_row_mask_all_true_is_prioritized_add():
    buf, state = filled("prioritized", 7)
    state = buf.update(state, jnp.arange(4), jnp.array([5.0, 0.1, 2.0, 9.0]), True)
    items = make_items([40, 41, 42])
    assert_trees_equal(buf.add(state, items, jnp.ones(3, bool)), per.add(state, items))
    kept = buf.add(state, items, jnp.array([False, True, True]))
    # the two kept rows get the largest priority so far, in the next two slots
    slots = (int(state.storage.position) + np.arange(2)) % CAPACITY
    np.testing.assert_array_equal(per.tree_get(kept.tree, slots), [state.max_priority] * 2)
    np.testing.assert_array_equal(kept.storage.data.action[slots], [41, 42])
    total = np.asarray(per.tree_get(kept.tree, jnp.arange(CAPACITY))).sum(dtype=np.float32)
    np.testing.assert_allclose(per.tree_total(kept.tree), total, rtol=1e-6)


def test_fifo_samples_its_storage_exactly_as_stored():
    buf = buffers.fifo(BATCH)
    state = ref = replay.init(EXAMPLE, BATCH)
    for start in range(1, 20, 3):
        items = make_items(np.arange(start, start + 3))
        state, ref = buf.add(state, items), replay.add_batch(ref, items)
        assert_trees_equal(state, ref)
        sample = buf.sample(jax.random.PRNGKey(start), state)
        assert_trees_equal(sample.batch, ref.data)
        assert_trees_equal(sample.indices, jnp.arange(BATCH, dtype=jnp.int32))
        assert_trees_equal(sample.weights, jnp.ones(BATCH, jnp.float32))


def test_fifo_keeps_exactly_the_latest_batch_size_items():
    buf = buffers.fifo(5)
    state = buf.init(EXAMPLE)
    added = []
    for n in [2, 1, 3, 4, 5, 2, 3]:
        ids = list(range(len(added) + 1, len(added) + n + 1))
        state = buf.add(state, make_items(ids))
        added += ids
        assert bool(buf.can_sample(state)) == (len(added) >= 5)
        if len(added) >= 5:
            batch = buf.sample(jax.random.PRNGKey(0), state).batch
            assert sorted(np.asarray(batch.action).tolist()) == added[-5:]


# ------------------------------------------------------------------------------ PER updates


def test_per_update_moves_sampling_toward_large_td_errors():
    buf, state = filled("prioritized", CAPACITY, chunk=CAPACITY, alpha=1.0, batch_size=BATCH)
    draws = 4096

    def frequencies(state):
        keys = jax.random.split(jax.random.PRNGKey(3), draws // BATCH)
        idx = jax.vmap(lambda k: buf.sample(k, state).indices)(keys).reshape(-1)
        return np.bincount(np.asarray(idx), minlength=CAPACITY) / draws

    before = frequencies(state)
    np.testing.assert_allclose(before, 1 / CAPACITY, atol=0.03)  # all at max priority
    td = jnp.where(jnp.arange(CAPACITY) == 5, 10.0, 0.5)  # item in slot 5 is surprising
    state = buf.update(state, jnp.arange(CAPACITY), td, True)
    after = frequencies(state)
    expected = np.asarray(td) / float(jnp.sum(td))  # α = 1: P ∝ |δ| + ε
    np.testing.assert_allclose(after, expected, atol=0.03)
    assert after[5] > 0.6 > before[5]
    # a masked-off update changes nothing
    np.testing.assert_array_equal(frequencies(buf.update(state, jnp.arange(8), -td, False)), after)


# ------------------------------------------------------------------------------ jit / vmap


def episode(kind, key, offset, alpha=0.6, eps=1e-6):
    """init, adds past wrap-around (one with a row mask), sample, update, sample again."""
    buf = build(kind, alpha=alpha, eps=eps)
    state = buf.init(EXAMPLE)
    for i, start in enumerate(range(1, 13, 3)):
        items = make_items(np.arange(start, start + 3))
        items = jax.tree.map(lambda x: x + jnp.asarray(offset, x.dtype), items)
        valid = jnp.array([True, i % 2 == 0, True]) if i == 2 else None
        state = buf.add(state, items, valid)
    k1, k2 = jax.random.split(key)
    first = buf.sample(k1, state, beta=0.5)
    state = buf.update(state, first.indices, first.batch.reward - 2.0, buf.can_sample(state))
    return state, first, buf.sample(k2, state, beta=0.5), buf.size(state), buf.can_sample(state)


@pytest.mark.parametrize("kind", buffers.KINDS)
def test_jit_matches_eager(kind):
    key = jax.random.PRNGKey(1)
    eager = episode(kind, key, 0)
    jitted = jax.jit(lambda k: episode(kind, k, 0))(key)
    assert_trees_equal(eager, jitted)


@pytest.mark.parametrize("kind", buffers.KINDS)
def test_vmap_of_three_buffers_equals_three_runs(kind):
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    offsets = jnp.array([0, 100, 200])
    alphas = jnp.array([0.3, 0.6, 1.0])
    epss = jnp.array([1e-6, 1e-3, 1e-2])
    batched = jax.jit(jax.vmap(lambda k, o, a, e: episode(kind, k, o, a, e)))(
        keys, offsets, alphas, epss
    )
    for i in range(3):
        single = jax.jit(lambda k, o, a, e: episode(kind, k, o, a, e))(
            keys[i], offsets[i], alphas[i], epss[i]
        )
        assert_trees_equal(jax.tree.map(lambda x, i=i: x[i], batched), single)
    if kind == "prioritized":  # the traced α really reached the priorities
        assert not np.array_equal(batched[0].tree.nodes[0], batched[0].tree.nodes[2])


# ------------------------------------------------------------------------------ make


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"kind": "lifo", "capacity": 8, "batch_size": 4}, "kind"),
        ({"kind": "uniform", "capacity": 0, "batch_size": 4}, "capacity"),
        ({"kind": "prioritized", "capacity": -3, "batch_size": 4}, "capacity"),
        ({"kind": "uniform", "capacity": 8, "batch_size": 0}, "batch_size"),
        ({"kind": "fifo", "capacity": 8, "batch_size": 0}, "batch_size"),
        ({"kind": "prioritized", "capacity": 8, "batch_size": 9}, "batch_size"),
        ({"kind": "fifo", "capacity": 8, "batch_size": 9}, "batch_size"),
    ],
)
def test_make_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"^buffer: {field}\b"):
        buffers.make(**kwargs)


@pytest.mark.parametrize("kind", buffers.KINDS)
def test_make_builds_the_named_kind(kind):
    made = build(kind, capacity=16, batch_size=4, alpha=0.5, eps=1e-2)
    direct = {
        "uniform": lambda: buffers.uniform(16, 4),
        "prioritized": lambda: buffers.prioritized(16, 4, alpha=0.5, eps=1e-2),
        "fifo": lambda: buffers.fifo(4),
    }[kind]()
    states = []
    for buf in (made, direct):
        state = buf.add(buf.init(EXAMPLE), make_items(np.arange(1, 5)))
        sample = buf.sample(jax.random.PRNGKey(0), state, beta=0.3)
        states.append((buf.update(state, sample.indices, sample.batch.reward, True), sample))
    assert_trees_equal(states[0], states[1])
    assert storage(states[0][0]).capacity == held(kind, 16, 4)
