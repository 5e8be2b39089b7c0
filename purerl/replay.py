"""L2: a uniform circular replay buffer as a pytree, with pure ``init / add / sample``.

The buffer stores whole ``Transition``s, ``next_obs`` included, so a sample never pairs the last
step of one episode with the first step of the next. Sizes are fixed by ``init``; every
function works eagerly, under ``jit``, and under ``vmap`` (one independent buffer per seed).

``add`` and ``sample`` are jit-compiled (a no-op inside an outer ``jit``), so a plain Python
loop calling them stays fast.

Example:
    >>> buffer = replay.init(example_transition, capacity=50_000)
    >>> buffer = replay.add(buffer, transitions)           # one item or a batch [B, ...]
    >>> if replay.can_sample(buffer, 64):
    ...     batch = replay.sample(key, buffer, 64)
"""

from __future__ import annotations

from functools import partial
from typing import Any, Generic, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Int, PRNGKeyArray

__all__ = ["ReplayBuffer", "init", "add", "add_batch", "sample", "can_sample"]

Item = TypeVar("Item")


class ReplayBuffer(eqx.Module, Generic[Item]):
    """Buffer state: ``data`` (each leaf ``[capacity, ...]``), write ``position`` and ``size``.

    Slots ``[0, size)`` hold valid items; ``position`` is the next slot written, wrapping to 0
    once ``capacity`` items were added (the oldest item is overwritten first).
    """

    data: Any
    position: Int[Array, ""]
    size: Int[Array, ""]

    @property
    def capacity(self) -> int:
        """Number of slots (a Python int, fixed at ``init``)."""
        return int(jax.tree.leaves(self.data)[0].shape[0])


def init(example: Item, capacity: int) -> ReplayBuffer[Item]:
    """Empty buffer for ``capacity`` items shaped like ``example`` (one item, no batch axis).

    Raises:
        ValueError: if ``capacity < 1``.
    """
    if int(capacity) < 1:
        raise ValueError(f"capacity must be >= 1, got capacity={capacity}")
    data = jax.tree.map(
        lambda x: jnp.zeros((int(capacity), *jnp.shape(x)), jnp.asarray(x).dtype), example
    )
    zero = jnp.zeros((), jnp.int32)
    return ReplayBuffer(data=data, position=zero, size=zero)


def _is_batched(buffer: ReplayBuffer, item: Any) -> bool:
    """Whether ``item`` is a batch; ``ValueError`` naming the field whose shape fits no slot."""
    slots = jax.tree_util.tree_flatten_with_path(buffer.data)[0]
    leaves = jax.tree.leaves(item)
    if len(leaves) != len(slots):
        raise ValueError(f"item has {len(leaves)} leaves, the buffer stores {len(slots)}")
    batched = set()
    for (path, slot), leaf in zip(slots, leaves, strict=True):
        shape, slot_shape = tuple(jnp.shape(leaf)), tuple(slot.shape[1:])
        if shape == slot_shape:
            batched.add(False)
        elif shape[1:] == slot_shape and len(shape) == len(slot_shape) + 1:
            batched.add(True)
        else:
            name = jax.tree_util.keystr(path).lstrip(".") or "item"
            raise ValueError(
                f"{name}: shape {shape} fits neither one item {slot_shape} "
                f"nor a batch [B, *{slot_shape}]"
            )
    if len(batched) > 1:
        raise ValueError("item mixes batched and unbatched fields")
    return batched.pop()


@jax.jit
def add(buffer: ReplayBuffer[Item], item: Item) -> ReplayBuffer[Item]:
    """Write one item, or a batch with a leading axis (told apart by the leaves' ranks)."""
    if _is_batched(buffer, item):
        return add_batch(buffer, item)
    batch = jax.tree.map(lambda x: jnp.asarray(x)[None], item)
    return add_batch(buffer, batch)


@jax.jit
def add_batch(buffer: ReplayBuffer[Item], items: Item) -> ReplayBuffer[Item]:
    """Write ``B`` items (leaves ``[B, ...]``) into the next ``B`` slots, wrapping around.

    Raises:
        ValueError: if ``B`` exceeds the capacity (items would overwrite each other).
    """
    n = int(jax.tree.leaves(items)[0].shape[0])
    if n > buffer.capacity:
        raise ValueError(
            f"cannot add a batch of {n} items to a buffer of capacity {buffer.capacity}"
        )
    idx = (buffer.position + jnp.arange(n, dtype=jnp.int32)) % buffer.capacity
    data = jax.tree.map(
        lambda store, x: store.at[idx].set(jnp.asarray(x, store.dtype)), buffer.data, items
    )
    return ReplayBuffer(
        data=data,
        position=(buffer.position + n) % buffer.capacity,
        size=jnp.minimum(buffer.size + n, buffer.capacity),
    )


def can_sample(buffer: ReplayBuffer, batch_size: int) -> Bool[Array, ""]:
    """Whether at least ``batch_size`` items were stored."""
    return buffer.size >= batch_size


@partial(jax.jit, static_argnames="batch_size")
def sample(key: PRNGKeyArray, buffer: ReplayBuffer[Item], batch_size: int) -> Item:
    """``batch_size`` items drawn uniformly, with replacement, from the filled slots.

    An empty buffer returns copies of slot 0 (zeros); guard with ``can_sample``.
    """
    idx = jax.random.randint(key, (int(batch_size),), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda store: store[idx], buffer.data)
