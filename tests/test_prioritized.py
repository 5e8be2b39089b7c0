"""Tests for purerl/prioritized.py: the sum-tree against NumPy, proportional sampling
frequencies (chi-square), importance weights by hand, priority updates, jit and vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from purerl import prioritized as per
from purerl.types import Transition


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


def filled_tree(values):
    tree = per.tree_init(len(values))
    return per.tree_set(tree, jnp.arange(len(values)), jnp.asarray(values, jnp.float32))


def assert_tree_consistent(tree, values):
    """Leaves hold ``values`` (zeros past capacity) and every inner node sums its children."""
    nodes = np.asarray(tree.nodes)
    leaves = nodes[tree.num_leaves :]
    np.testing.assert_array_equal(leaves[: len(values)], np.asarray(values, np.float32))
    np.testing.assert_array_equal(leaves[len(values) :], 0.0)
    for j in range(1, tree.num_leaves):
        assert nodes[j] == np.float32(nodes[2 * j] + nodes[2 * j + 1]), j


def ref_find(values, targets):
    """NumPy prefix-sum search: the i with cumsum[i-1] <= t < cumsum[i]."""
    return np.searchsorted(np.cumsum(values), targets, side="right")


# ------------------------------------------------------------------------------ sum-tree


@pytest.mark.parametrize("capacity", [1, 5, 8, 100])
def test_sum_tree_totals_and_nodes_match_numpy(capacity):
    rng = np.random.default_rng(capacity)
    values = np.zeros(capacity, np.float32)
    tree = per.tree_init(capacity)
    assert tree.num_leaves >= capacity and tree.num_leaves & (tree.num_leaves - 1) == 0
    for _ in range(4):  # several partial updates, as a buffer sees them
        idx = rng.choice(capacity, size=min(capacity, 7), replace=False)
        new = rng.integers(0, 20, size=idx.shape).astype(np.float32)  # exact in float32
        values[idx] = new
        tree = per.tree_set(tree, jnp.asarray(idx), jnp.asarray(new))
        assert_tree_consistent(tree, values)
        assert float(per.tree_total(tree)) == values.sum()
        np.testing.assert_array_equal(per.tree_get(tree, jnp.arange(capacity)), values)


def test_prefix_sum_search_matches_numpy_including_boundaries_and_zeros():
    values = np.array([3, 0, 1, 0, 0, 4, 2, 0, 5], np.float32)  # integer: exact sums
    tree = filled_tree(values)
    targets = np.arange(0.0, values.sum(), 0.5, dtype=np.float32)  # every boundary included
    found = np.asarray(per.tree_find(tree, jnp.asarray(targets)))
    np.testing.assert_array_equal(found, ref_find(values, targets))
    assert np.all(values[found] > 0)


def test_prefix_sum_search_random_values_matches_numpy():
    rng = np.random.default_rng(1)
    values = rng.exponential(size=37).astype(np.float32)
    values[rng.choice(37, 10, replace=False)] = 0.0
    tree = filled_tree(values)
    targets = rng.uniform(0, float(per.tree_total(tree)), size=2_000).astype(np.float32)
    found = np.asarray(per.tree_find(tree, jnp.asarray(targets)))
    expected = ref_find(values.astype(np.float64), targets.astype(np.float64))
    # float32 tree sums vs float64 cumsum may disagree only for targets within rounding of
    # a boundary; with 2,000 random targets, allow none to be further than one item away
    assert np.mean(found == expected) > 0.995
    assert np.all(np.abs(found - expected) <= 1)
    assert np.all(values[found] > 0)


def test_search_at_or_past_the_total_never_returns_a_zero_leaf():
    """Float rounding can push u · total to (or over) the total: the walk must still end on
    the last positive leaf, never on the zero-priority leaves after it."""
    values = np.array([0, 2, 0, 1, 0, 0, 0], np.float32)
    tree = filled_tree(values)
    total = float(per.tree_total(tree))
    targets = jnp.asarray([total, total * (1 + 1e-6), total + 5.0, np.nextafter(total, 0)])
    np.testing.assert_array_equal(per.tree_find(tree, targets), [3, 3, 3, 3])


def test_repeated_indices_last_occurrence_wins_like_numpy():
    values = np.array([1, 1, 1, 1, 1], np.float32)
    idx = np.array([3, 1, 3, 0, 3, 1])
    new = np.array([10, 20, 30, 40, 50, 60], np.float32)
    expected = values.copy()
    expected[idx] = new  # NumPy: the last write of each index wins
    tree = per.tree_set(filled_tree(values), jnp.asarray(idx), jnp.asarray(new))
    assert_tree_consistent(tree, expected)
    np.testing.assert_array_equal(expected, [40, 60, 1, 50, 1])


def test_masked_items_neither_write_nor_shadow_earlier_duplicates():
    tree = filled_tree(np.ones(4, np.float32))
    idx = jnp.asarray([2, 2, 0, 1])
    new = jnp.asarray([7.0, 9.0, 5.0, 6.0])
    mask = jnp.asarray([True, False, False, True])
    tree = per.tree_set(tree, idx, new, mask)
    assert_tree_consistent(tree, [1, 6, 7, 1])  # index 2: the unmasked 7 wins over masked 9


def test_sum_tree_under_jit_and_vmap():
    rng = np.random.default_rng(3)
    vals = rng.integers(0, 9, size=(3, 6)).astype(np.float32)
    targets = rng.uniform(0, 1, size=(3, 11)).astype(np.float32) * vals.sum(1, keepdims=True)

    def run(v, t):
        tree = per.tree_set(per.tree_init(6), jnp.arange(6), v)
        return per.tree_total(tree), per.tree_find(tree, t)

    totals, found = jax.jit(jax.vmap(run))(jnp.asarray(vals), jnp.asarray(targets))
    for i in range(3):
        total, f = run(jnp.asarray(vals[i]), jnp.asarray(targets[i]))
        assert float(totals[i]) == float(total) == vals[i].sum()
        np.testing.assert_array_equal(found[i], f)
        np.testing.assert_array_equal(found[i], ref_find(vals[i], targets[i]))


# ------------------------------------------------------------------------------ buffer


def buffer_with_priorities(priorities):
    """A buffer holding items 1..n whose priorities are set directly (α = 1, ε → 0)."""
    n = len(priorities)
    buffer = per.add(per.init(EXAMPLE, n), make_items(np.arange(1, n + 1)))
    p = jnp.asarray(priorities, jnp.float32)
    return per.update_priorities(buffer, jnp.arange(n), p, alpha=1.0, eps=0.0)


def test_sampling_frequencies_follow_priorities_chi_square():
    """50,000 draws (fixed key) from 8 items, three with priority 0: the zero ones are never
    drawn and the counts of the others pass a chi-square test against N·p_i/Σp (α = 1e-3:
    a correct sampler fails this with probability 0.1%; a sampler that is off by a few
    percent on one item fails it almost surely at this sample size)."""
    priorities = np.array([1.0, 0.0, 2.0, 0.5, 0.0, 4.0, 0.0, 2.5])
    buffer = buffer_with_priorities(priorities)
    sample = jax.jit(lambda k: per.sample(k, buffer, 1_000, beta=0.5)[1])
    idx = np.concatenate(
        [np.asarray(sample(k)) for k in jax.random.split(jax.random.PRNGKey(0), 50)]
    )
    counts = np.bincount(idx, minlength=8)
    assert counts[priorities == 0].sum() == 0
    positive = priorities > 0
    expected = idx.size * priorities[positive] / priorities.sum()
    chi2 = float(np.sum((counts[positive] - expected) ** 2 / expected))
    assert chi2 < stats.chi2.ppf(0.999, df=positive.sum() - 1), (counts, expected)


def test_importance_weights_match_hand_computation():
    priorities = np.array([1.0, 3.0, 0.0, 4.0])  # total 8, N = 4 stored items
    buffer = buffer_with_priorities(priorities)
    beta = 0.6
    items, idx, weights = per.sample(jax.random.PRNGKey(1), buffer, 64, beta=beta)
    idx = np.asarray(idx)
    w = (4 * priorities[idx] / 8.0) ** -beta
    np.testing.assert_allclose(weights, w / w.max(), rtol=1e-5)
    np.testing.assert_array_equal(items.action, idx + 1)  # items and indices stay paired
    # by hand: item 0 (P = 1/8) has the largest raw weight (4/8)^-0.6, so item 1 (P = 3/8)
    # gets (12/8)^-0.6 / (4/8)^-0.6 = 3^-0.6 and item 3 (P = 4/8) gets 4^-0.6
    assert 0 in idx and 1 in idx and 3 in idx and 2 not in idx
    np.testing.assert_allclose(weights[idx == 1], 3.0**-0.6, rtol=1e-5)
    np.testing.assert_allclose(weights[idx == 3], 4.0**-0.6, rtol=1e-5)
    np.testing.assert_allclose(weights[idx == 0], 1.0, rtol=1e-6)
    _, _, unweighted = per.sample(jax.random.PRNGKey(1), buffer, 64, beta=0.0)
    np.testing.assert_array_equal(unweighted, 1.0)  # β = 0: no correction


def test_priority_update_formula_max_priority_and_new_items():
    buffer = per.add(per.init(EXAMPLE, 6), make_items([1, 2, 3]))
    np.testing.assert_array_equal(per.tree_get(buffer.tree, jnp.arange(6)), [1, 1, 1, 0, 0, 0])
    td = jnp.asarray([-2.0, 0.5])
    buffer = per.update_priorities(buffer, jnp.asarray([0, 2]), td, alpha=0.7, eps=0.01)
    expected = (np.abs([-2.0, 0.5]) + 0.01) ** 0.7
    got = np.asarray(per.tree_get(buffer.tree, jnp.arange(6)))
    np.testing.assert_allclose(got[[0, 2]], expected, rtol=1e-6)
    assert got[1] == 1.0
    np.testing.assert_allclose(buffer.max_priority, expected.max(), rtol=1e-6)
    buffer = per.add(buffer, make_items([4]))  # a new item gets the largest priority so far
    np.testing.assert_allclose(per.tree_get(buffer.tree, jnp.asarray([3])), expected.max())


def test_priority_update_ignores_masked_items_and_unwritten_slots():
    buffer = per.add(per.init(EXAMPLE, 6), make_items([1, 2]))
    before = np.asarray(buffer.tree.nodes)
    masked = per.update_priorities(
        buffer, jnp.asarray([0, 1]), jnp.asarray([5.0, 5.0]), alpha=1.0, mask=False
    )
    np.testing.assert_array_equal(masked.tree.nodes, before)
    assert float(masked.max_priority) == 1.0
    empty_slot = per.update_priorities(buffer, jnp.asarray([4]), jnp.asarray([5.0]), alpha=1.0)
    np.testing.assert_array_equal(empty_slot.tree.nodes, before)


def test_wrap_around_overwrites_priorities_and_samples_only_stored_items():
    buffer = per.init(EXAMPLE, 5)
    buffer = per.update_priorities(  # nothing stored yet: ignored
        buffer, jnp.arange(5), jnp.full(5, 3.0), alpha=1.0
    )
    for start in range(1, 14, 3):  # items 1..15 into 5 slots: 11..15 remain
        buffer = per.add(buffer, make_items(np.arange(start, start + 3)))
    assert int(buffer.size) == 5
    items, idx, _ = per.sample(jax.random.PRNGKey(0), buffer, 500, beta=0.4)
    np.testing.assert_array_equal(items.obs[:, 0], np.asarray(items.action, np.float32))
    assert set(np.asarray(items.action).tolist()) == {11, 12, 13, 14, 15}


def test_conditional_add_leaves_the_buffer_unchanged():
    buffer = per.add(per.init(EXAMPLE, 4), make_items([1]))
    same = per.add(buffer, make_items([7, 8]), jnp.asarray(False))
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(buffer), strict=True):
        np.testing.assert_array_equal(a, b)
    grown = per.add(buffer, make_items([7, 8]), jnp.asarray(True))
    assert int(grown.size) == 3


def test_buffer_under_jit_and_vmap_equals_one_by_one():
    def run(key, p):
        buffer = per.add(per.init(EXAMPLE, 8), make_items(np.arange(1, 7)))
        buffer = per.update_priorities(buffer, jnp.arange(6), p, alpha=0.6)
        return per.sample(key, buffer, 16, beta=0.5)

    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    ps = jnp.asarray(np.random.default_rng(0).uniform(0, 2, size=(3, 6)), jnp.float32)
    batched = jax.jit(jax.vmap(run))(keys, ps)
    for i in range(3):
        single = run(keys[i], ps[i])
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-6)
