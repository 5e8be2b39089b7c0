"""L2: proportional prioritized replay (Schaul et al., 2016) on a sum-tree, as pytrees.

Item ``i`` is sampled with probability ``P(i) = p_i / Σ_k p_k``, where ``p_i = (|δ_i| + ε)^α``
is set from its latest TD error ``δ_i`` (new items get the largest priority seen so far, so
each is likely to be replayed at least once). The bias of non-uniform sampling is corrected
by importance-sampling weights ``w_i = (N · P(i))^(−β) / max_j w_j`` (max over the sampled
batch), with β annealed towards 1 over training by the caller. ``α = 0`` is uniform replay.

The priorities live in a **sum-tree**: a complete binary tree stored in one array, each node
holding the sum of its two children, so the total is the root, changing a priority touches
one leaf-to-root path (``log₂ capacity`` nodes), and finding the item whose cumulative
priority interval holds a value walks one root-to-leaf path. Both are written for a whole
batch at once with static loops over the tree depth, so everything works eagerly, under
``jit``, and under ``vmap`` (one buffer per seed). Items are stored in a uniform
``replay.ReplayBuffer``; this module only adds the priorities.

Example:
    >>> buffer = prioritized.init(example_transition, capacity=50_000)
    >>> buffer = prioritized.add(buffer, transitions)
    >>> batch, idx, weights = prioritized.sample(key, buffer, 64, beta=0.4)
    >>> q_net, opt_state, info = td_update(..., batch, weights=weights, ...)
    >>> buffer = prioritized.update_priorities(buffer, idx, info["td_error"], alpha=0.6)
"""

from __future__ import annotations

from functools import partial
from typing import Generic, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, Real

from purerl import replay

__all__ = [
    "SumTree",
    "tree_init",
    "tree_total",
    "tree_get",
    "tree_set",
    "tree_find",
    "PrioritizedBuffer",
    "init",
    "add",
    "add_where",
    "sample",
    "update_priorities",
    "can_sample",
]

Item = TypeVar("Item")


# ------------------------------------------------------------------------------ sum-tree


class SumTree(eqx.Module):
    """Sum-tree over ``capacity`` non-negative values.

    ``nodes`` has ``2L`` entries, ``L`` the smallest power of two ``≥ capacity``: node 1 is
    the root, node ``j`` has children ``2j`` and ``2j + 1``, leaf ``i`` is node ``L + i``
    (leaves ``≥ capacity`` stay 0; entry 0 is unused). Every inner node equals the float32
    sum of its two children.
    """

    nodes: Float[Array, " two_l"]
    capacity: int = eqx.field(static=True)

    @property
    def num_leaves(self) -> int:
        """``L``, the number of leaf slots (a power of two)."""
        return self.nodes.shape[-1] // 2

    @property
    def depth(self) -> int:
        """Levels below the root: ``log₂ L``."""
        return self.num_leaves.bit_length() - 1


def tree_init(capacity: int) -> SumTree:
    """A sum-tree of ``capacity`` zeros."""
    if int(capacity) < 1:
        raise ValueError(f"capacity must be >= 1, got capacity={capacity}")
    num_leaves = 1 << (int(capacity) - 1).bit_length()
    return SumTree(nodes=jnp.zeros((2 * num_leaves,), jnp.float32), capacity=int(capacity))


def tree_total(tree: SumTree) -> Float[Array, ""]:
    """``Σ_i value_i`` (the root)."""
    return tree.nodes[1]


def tree_get(tree: SumTree, idx: Int[ArrayLike, " B"]) -> Float[Array, " B"]:
    """The values at leaves ``idx``."""
    return tree.nodes[tree.num_leaves + jnp.asarray(idx, jnp.int32)]


def tree_set(
    tree: SumTree,
    idx: Int[ArrayLike, " B"],
    values: Float[ArrayLike, " B"] | Float[ArrayLike, ""],
    mask: Bool[ArrayLike, " B"] | None = None,
) -> SumTree:
    """Set leaves ``idx`` to ``values`` and recompute their ancestors.

    Repeated indices: **the last occurrence wins**, as in NumPy's ``a[idx] = values``
    (XLA's scatter leaves the winner unspecified, so earlier duplicates are dropped
    explicitly). Items where ``mask`` is ``False`` are ignored altogether (they neither
    write nor shadow an earlier duplicate). Indices must be in ``[0, capacity)``.

    Cost: one scatter per tree level, ``O(B · log capacity)``, plus an ``O(B²)`` duplicate test.
    """
    idx = jnp.asarray(idx, jnp.int32).reshape(-1)
    values = jnp.broadcast_to(jnp.asarray(values, jnp.float32), idx.shape)
    live = jnp.ones(idx.shape, bool) if mask is None else jnp.broadcast_to(mask, idx.shape)
    order = jnp.arange(idx.shape[0])
    later_twin = (idx[:, None] == idx[None, :]) & (order[:, None] < order[None, :]) & live[None, :]
    write = live & ~jnp.any(later_twin, axis=1)
    node = tree.num_leaves + idx
    dropped = jnp.full_like(node, tree.nodes.shape[0])  # out of range: mode="drop" skips it
    nodes = tree.nodes.at[jnp.where(write, node, dropped)].set(values, mode="drop")
    for _ in range(tree.depth):  # leaf-to-root, one level at a time
        node = node // 2
        nodes = nodes.at[node].set(nodes[2 * node] + nodes[2 * node + 1])
    return SumTree(nodes=nodes, capacity=tree.capacity)


def tree_find(tree: SumTree, targets: Float[ArrayLike, " B"]) -> Int[Array, " B"]:
    """Prefix-sum search: for each target ``t ∈ [0, total)``, the leaf ``i`` with
    ``Σ_{k<i} value_k ≤ t < Σ_{k≤i} value_k``.

    Walks from the root: go right (subtracting the left sum) when ``t ≥ left``, else left.
    Float rounding can leave ``t`` at or past the total; the walk then never enters a
    subtree whose sum is 0, so the leaf found always has a positive value (when the total
    is positive) and a zero-priority item is never returned.
    """
    t = jnp.asarray(targets, jnp.float32)
    node = jnp.ones(t.shape, jnp.int32)
    for _ in range(tree.depth):
        left = tree.nodes[2 * node]
        right = tree.nodes[2 * node + 1]
        go_right = (t >= left) & (right > 0)
        t = jnp.where(go_right, t - left, t)
        node = 2 * node + go_right.astype(jnp.int32)
    return node - tree.num_leaves


# ------------------------------------------------------------------------------ buffer


class PrioritizedBuffer(eqx.Module, Generic[Item]):
    """Prioritized buffer state: the items (a uniform ``replay.ReplayBuffer``), the
    sum-tree of their priorities ``p_i = (|δ_i| + ε)^α``, and the largest priority so far.

    Slots not yet written have priority 0, so they are never sampled.
    """

    storage: replay.ReplayBuffer[Item]
    tree: SumTree
    max_priority: Float[Array, ""]

    @property
    def capacity(self) -> int:
        """Number of slots (a Python int, fixed at ``init``)."""
        return self.storage.capacity

    @property
    def size(self) -> Int[Array, ""]:
        """Number of items stored."""
        return self.storage.size


def init(example: Item, capacity: int) -> PrioritizedBuffer[Item]:
    """Empty prioritized buffer for ``capacity`` items shaped like ``example`` (one item)."""
    storage = replay.init(example, capacity)
    return PrioritizedBuffer(storage, tree_init(capacity), jnp.ones((), jnp.float32))


@jax.jit
def add(
    buffer: PrioritizedBuffer[Item], items: Item, valid: Bool[ArrayLike, ""] | None = None
) -> PrioritizedBuffer[Item]:
    """Store a batch ``[B, ...]`` (or one item) with the largest priority seen so far.

    ``valid`` as in ``replay.add_batch``: where ``False`` nothing changes.
    """
    if not replay._is_batched(buffer.storage, items):
        items = jax.tree.map(lambda x: jnp.asarray(x)[None], items)
    n = int(jax.tree.leaves(items)[0].shape[0])
    idx = replay.slots_written(buffer.storage, n)
    storage = replay.add_batch(buffer.storage, items, valid)
    mask = None if valid is None else jnp.broadcast_to(valid, (n,))
    tree = tree_set(buffer.tree, idx, buffer.max_priority, mask)
    return PrioritizedBuffer(storage, tree, buffer.max_priority)


@jax.jit
def add_where(
    buffer: PrioritizedBuffer[Item], items: Item, mask: Bool[ArrayLike, " B"]
) -> PrioritizedBuffer[Item]:
    """Store the rows of a batch ``[B, ...]`` where ``mask`` is ``True`` (packed in order, as
    ``replay.add_where``), each with the largest priority seen so far; other rows are not stored.

    Example:
        >>> buffer = prioritized.add_where(buffer, transitions, jnp.array([True, False, True]))
    """
    n = int(jax.tree.leaves(items)[0].shape[0])
    slots, keep = replay.slots_where(buffer.storage, mask, n)
    storage = replay.add_where(buffer.storage, items, keep)
    tree = tree_set(buffer.tree, slots, buffer.max_priority, keep)
    return PrioritizedBuffer(storage, tree, buffer.max_priority)


def can_sample(buffer: PrioritizedBuffer, batch_size: int) -> Bool[Array, ""]:
    """Whether at least ``batch_size`` items were stored."""
    return buffer.size >= batch_size


@partial(jax.jit, static_argnames="batch_size")
def sample(
    key: PRNGKeyArray,
    buffer: PrioritizedBuffer[Item],
    batch_size: int,
    *,
    beta: Real[ArrayLike, ""],
) -> tuple[Item, Int[Array, " B"], Float[Array, " B"]]:
    """``batch_size`` items drawn independently with ``P(i) = p_i / Σ_k p_k``, their slot
    indices, and their importance-sampling weights.

    ``w_i = (N · P(i))^(−β) / max_{j ∈ batch} w_j`` with ``N`` the number of stored items
    (Schaul et al., 2016, Alg. 1; normalising by the batch maximum keeps every weight in
    ``(0, 1]`` so updates are only ever scaled down). ``β = 1`` fully corrects the sampling
    bias, ``β = 0`` ignores it. An empty buffer returns slot 0; guard with ``can_sample``.

    Returns:
        ``(items, indices [B], weights [B])``.

    Reference: Schaul, Quan, Antonoglou & Silver (2016), "Prioritized Experience Replay".
    """
    total = tree_total(buffer.tree)
    targets = jax.random.uniform(key, (int(batch_size),)) * total
    idx = tree_find(buffer.tree, targets)
    probs = tree_get(buffer.tree, idx) / jnp.maximum(total, 1e-30)
    n = jnp.maximum(buffer.size, 1).astype(jnp.float32)
    weights = (n * jnp.maximum(probs, 1e-30)) ** (-jnp.asarray(beta, jnp.float32))
    weights = weights / jnp.max(weights)
    items = jax.tree.map(lambda store: store[idx], buffer.storage.data)
    return items, idx, weights


@jax.jit
def update_priorities(
    buffer: PrioritizedBuffer[Item],
    indices: Int[ArrayLike, " B"],
    td_errors: Float[ArrayLike, " B"],
    *,
    alpha: Real[ArrayLike, ""],
    eps: Real[ArrayLike, ""] = 1e-6,
    mask: Bool[ArrayLike, "..."] | None = None,
) -> PrioritizedBuffer[Item]:
    """Set the priorities of sampled items from their TD errors: ``p_i = (|δ_i| + ε)^α``.

    Repeated indices (an item sampled twice in one batch): the last occurrence wins, as in
    NumPy's ``p[indices] = new``; in DQN both copies have the same TD error anyway. Items where
    ``mask`` (broadcast to ``[B]``; e.g. "learning has started") is ``False`` keep their
    priority. Indices of slots never written are ignored, so a priority update can never make
    an empty slot sampleable.
    """
    indices = jnp.asarray(indices, jnp.int32)
    priority = (jnp.abs(td_errors) + eps) ** alpha
    live = indices < buffer.size
    if mask is not None:
        live = live & jnp.broadcast_to(mask, indices.shape)
    tree = tree_set(buffer.tree, indices, priority, live)
    top = jnp.max(jnp.where(live, priority, 0.0))
    return PrioritizedBuffer(buffer.storage, tree, jnp.maximum(buffer.max_priority, top))
