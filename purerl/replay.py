"""L2: a uniform circular replay buffer as a pytree, with pure ``init / add / sample``.

The buffer stores whole ``Transition``s, ``next_obs`` included, so a sample never pairs the last
step of one episode with the first step of the next. Sizes are fixed by ``init``; every
function works eagerly, under ``jit``, and under ``vmap`` (one independent buffer per seed).

``add`` and ``sample`` are jit-compiled (a no-op inside an outer ``jit``), so a plain Python
loop calling them stays fast.

For n-step targets, ``window_push`` keeps the last ``n`` steps of every env and hands back
the n-step transition of the oldest one (reward sum, ``γ^(m−1)·(1 − terminated)`` discount,
true final observation), the window cut at episode ends; that transition goes into any buffer
like a one-step one. Prioritized replay lives in ``purerl.prioritized``.

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
from jaxtyping import Array, ArrayLike, Bool, Int, PRNGKeyArray, Real

from purerl.types import Transition

__all__ = [
    "ReplayBuffer",
    "init",
    "add",
    "add_batch",
    "add_where",
    "sample",
    "sample_indices",
    "can_sample",
    "slots_written",
    "slots_where",
    "NStepWindow",
    "window_init",
    "window_push",
    "n_step_transition",
]

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
def add_batch(
    buffer: ReplayBuffer[Item], items: Item, valid: Bool[ArrayLike, ""] | None = None
) -> ReplayBuffer[Item]:
    """Write ``B`` items (leaves ``[B, ...]``) into the next ``B`` slots, wrapping around.

    ``valid`` (a boolean scalar, may be traced) makes the write conditional: where it is
    ``False`` the buffer comes back unchanged, at the cost of reading the ``B`` slots, not of
    copying the buffer (n-step windows that are not full yet use this).

    Raises:
        ValueError: if ``B`` exceeds the capacity (items would overwrite each other).
    """
    n = int(jax.tree.leaves(items)[0].shape[0])
    if n > buffer.capacity:
        raise ValueError(
            f"cannot add a batch of {n} items to a buffer of capacity {buffer.capacity}"
        )
    idx = slots_written(buffer, n)
    if valid is None:
        count = n
        data = jax.tree.map(
            lambda store, x: store.at[idx].set(jnp.asarray(x, store.dtype)), buffer.data, items
        )
    else:
        valid = jnp.asarray(valid, bool)
        count = jnp.where(valid, n, 0)
        data = jax.tree.map(
            lambda store, x: store.at[idx].set(
                jnp.where(valid, jnp.asarray(x, store.dtype), store[idx])
            ),
            buffer.data,
            items,
        )
    return ReplayBuffer(
        data=data,
        position=(buffer.position + count) % buffer.capacity,
        size=jnp.minimum(buffer.size + count, buffer.capacity),
    )


@jax.jit
def add_where(
    buffer: ReplayBuffer[Item], items: Item, mask: Bool[ArrayLike, " B"]
) -> ReplayBuffer[Item]:
    """Write the rows of ``items`` (leaves ``[B, ...]``) where ``mask`` is ``True``, packed in
    order into the next ``Σ mask`` slots; rows where it is ``False`` are not stored at all.

    With an all-``True`` mask this stores exactly what ``add_batch(buffer, items)`` stores.

    Args:
        buffer: the buffer to write into.
        items: a batch, leaves ``[B, ...]``.
        mask: ``[B]`` booleans (may be traced): which rows to keep.

    Returns:
        The buffer with ``position`` and ``size`` advanced by ``Σ mask``.

    Example:
        >>> buffer = replay.add_where(buffer, transitions, mask=jnp.array([True, False, True]))

    Raises:
        ValueError: if ``B`` exceeds the capacity.
    """
    n = int(jax.tree.leaves(items)[0].shape[0])
    if n > buffer.capacity:
        raise ValueError(
            f"cannot add a batch of {n} items to a buffer of capacity {buffer.capacity}"
        )
    slots, keep = slots_where(buffer, mask, n)
    target = jnp.where(keep, slots, buffer.capacity)  # out of range: mode="drop" skips it
    data = jax.tree.map(
        lambda store, x: store.at[target].set(jnp.asarray(x, store.dtype), mode="drop"),
        buffer.data,
        items,
    )
    count = jnp.sum(keep, dtype=jnp.int32)
    return ReplayBuffer(
        data=data,
        position=(buffer.position + count) % buffer.capacity,
        size=jnp.minimum(buffer.size + count, buffer.capacity),
    )


def slots_where(
    buffer: ReplayBuffer, mask: Bool[ArrayLike, " n"], n: int
) -> tuple[Int[Array, " n"], Bool[Array, " n"]]:
    """``(slots, keep)`` for ``add_where``: kept row ``i`` goes to slot ``(position + r_i) %
    capacity``, ``r_i`` the number of kept rows before it; ``keep`` is ``mask`` as ``[n]``
    booleans. Slots of dropped rows are in range but meaningless."""
    keep = jnp.broadcast_to(jnp.asarray(mask, bool), (n,))
    rank = jnp.cumsum(keep.astype(jnp.int32)) - 1
    return (buffer.position + rank) % buffer.capacity, keep


def slots_written(buffer: ReplayBuffer, n: int) -> Int[Array, " n"]:
    """The slots the next ``add_batch`` of ``n`` items writes: ``(position + i) % capacity``."""
    return (buffer.position + jnp.arange(n, dtype=jnp.int32)) % buffer.capacity


def can_sample(buffer: ReplayBuffer, batch_size: int) -> Bool[Array, ""]:
    """Whether at least ``batch_size`` items were stored."""
    return buffer.size >= batch_size


@partial(jax.jit, static_argnames="batch_size")
def sample(key: PRNGKeyArray, buffer: ReplayBuffer[Item], batch_size: int) -> Item:
    """``batch_size`` items drawn uniformly, with replacement, from the filled slots.

    An empty buffer returns copies of slot 0 (zeros); guard with ``can_sample``.
    """
    idx = sample_indices(key, buffer, batch_size)
    return jax.tree.map(lambda store: store[idx], buffer.data)


@partial(jax.jit, static_argnames="batch_size")
def sample_indices(key: PRNGKeyArray, buffer: ReplayBuffer, batch_size: int) -> Int[Array, " B"]:
    """The slots ``sample`` draws: ``batch_size`` uniform integers in ``[0, max(size, 1))``.

    Example:
        >>> idx = replay.sample_indices(key, buffer, 64)   # replay.sample gathers these slots
    """
    return jax.random.randint(key, (int(batch_size),), 0, jnp.maximum(buffer.size, 1))


# ------------------------------------------------------------------------------ n-step windows


class NStepWindow(eqx.Module):
    """The last ``n`` one-step transitions of each of ``N`` envs, oldest first.

    ``items`` has leaves ``[n, N, ...]`` (one-step ``Transition``s, ``discount = 1 −
    terminated``), ``done [n, N]`` marks steps where an episode ended (terminated or
    truncated), ``count`` is the number of steps pushed so far (it stops at ``n``).
    """

    items: Any
    done: Bool[Array, "n N"]
    count: Int[Array, ""]


def window_init(example: Transition, n: int) -> NStepWindow:
    """Empty window of ``n`` steps for batches shaped like ``example`` (leaves ``[N, ...]``).

    Raises:
        ValueError: if ``n < 1``.
    """
    if int(n) < 1:
        raise ValueError(f"n_step: must be >= 1, got {n}")
    items = jax.tree.map(
        lambda x: jnp.zeros((int(n), *jnp.shape(x)), jnp.asarray(x).dtype), example
    )
    done = jnp.zeros((int(n), *jnp.shape(example.reward)), bool)
    return NStepWindow(items=items, done=done, count=jnp.zeros((), jnp.int32))


def n_step_transition(
    items: Transition, done: Bool[ArrayLike, "n ..."], gamma: Real[ArrayLike, ""]
) -> Transition:
    """Fold ``n`` consecutive one-step transitions (time on axis 0) into the n-step
    transition of the first one.

    With ``m`` the window length, cut just after the first episode end (``m = n`` if none):

    ``reward = Σ_{k<m} γ^k r_k``, ``discount = γ^(m−1)·(1 − terminated_{m−1})``,
    ``next_obs = next_obs_{m−1}``; ``obs`` and ``action`` are those of step 0.

    The TD target multiplies ``discount`` by γ once more, so it bootstraps with ``γ^m``: a
    termination inside the window drops the bootstrap, a truncation bootstraps from the true
    final observation, and steps of the next episode never enter the sum. ``n = 1`` returns
    the transition unchanged.

    Args:
        items: one-step ``Transition``s with leaves ``[n, ...]``, ``discount = 1 − terminated``.
        done: ``[n, ...]``: an episode ended at that step.
        gamma: discount factor γ (may be traced).

    Reference: Sutton & Barto (2018), §7.1; Hessel et al. (2018), "Rainbow".
    """
    n, batch = done.shape[0], done.shape[1:]
    ended = jnp.asarray(done, bool)
    # alive_k = Π_{j<k} (1 − done_j): step k still belongs to the first step's episode
    before = jnp.concatenate([jnp.zeros((1, *batch), bool), ended[:-1]], axis=0)
    alive = jnp.cumprod(~before, axis=0).astype(jnp.float32)
    powers = jnp.asarray(gamma, jnp.float32) ** jnp.arange(n, dtype=jnp.float32)
    powers = powers.reshape((n,) + (1,) * len(batch))
    last = jnp.sum(alive, axis=0).astype(jnp.int32) - 1  # m − 1

    def at_last(x: Array) -> Array:
        index = last.reshape((1, *batch) + (1,) * (x.ndim - 1 - len(batch)))
        return jnp.take_along_axis(x, index, axis=0)[0]

    first = jax.tree.map(lambda x: x[0], items)
    return Transition(
        obs=first.obs,
        action=first.action,
        reward=jnp.sum(alive * powers * items.reward, axis=0),
        discount=jnp.asarray(gamma, jnp.float32) ** last * at_last(items.discount),
        next_obs=at_last(items.next_obs),
    )


def window_push(
    window: NStepWindow,
    items: Transition,
    done: Bool[ArrayLike, " N"],
    gamma: Real[ArrayLike, ""],
) -> tuple[NStepWindow, Transition, Bool[Array, ""]]:
    """Append one step of every env and return the n-step transition of the oldest step.

    Every step comes out exactly once, ``n − 1`` steps after it was pushed (by then its
    whole window is known); the first ``n − 1`` pushes return placeholders, which is what
    the returned ``ready`` says: pass it as ``add_batch(..., valid=ready)``.

    Example:
        >>> window = replay.window_init(one_step_batch, n=3)
        >>> window, items, ready = replay.window_push(window, to_transition(obs, a, ts),
        ...                                           ts.done, gamma)
        >>> buffer = replay.add_batch(buffer, items, valid=ready)

    Returns:
        ``(window, n_step_items [N, ...], ready)``.
    """
    n = window.done.shape[0]

    def shift(old: Array, new: Array) -> Array:
        return jnp.concatenate([old[1:], jnp.asarray(new, old.dtype)[None]], axis=0)

    new_items = jax.tree.map(shift, window.items, items)
    new_done = shift(window.done, jnp.asarray(done, bool))
    count = jnp.minimum(window.count + 1, n)
    window = NStepWindow(items=new_items, done=new_done, count=count)
    return window, n_step_transition(new_items, new_done, gamma), count >= n
