"""L2: one interface for every replay buffer, optax-style: a buffer kind is a record of pure
functions, so an algorithm never branches on the kind.

A ``Buffer`` holds six functions that share one signature across kinds::

    state = buf.init(example)                    # one item, no batch axis -> empty state
    state = buf.add(state, items, valid)         # items [n, ...]; valid None, scalar or [n]
    sample = buf.sample(key, state, beta=beta)   # Sample(batch [B, ...], indices [B], weights [B])
    state = buf.update(state, sample.indices, td_errors, mask)  # new priorities (PER only)
    buf.can_sample(state), buf.size(state)

Three kinds are built here: ``uniform`` (uniform replay, ``purerl.replay``), ``prioritized``
(proportional PER on a sum-tree, ``purerl.prioritized``), and ``fifo`` ("no replay": the
latest ``batch_size`` transitions, used whole by every update). ``make(kind, ...)`` picks one
by name. The functions are thin wrappers: for the same key they draw exactly what the
underlying ``replay`` / ``prioritized`` functions draw, and the states stay the plain
``replay.ReplayBuffer`` / ``prioritized.PrioritizedBuffer`` pytrees, so they are vmappable
(one buffer per seed) and checkpointable. Every function works eagerly, under ``jit`` and
under ``vmap``.

The ``Buffer`` record itself is not a pytree of arrays: build it from the config inside the
function that uses it (``make_train``, ``step``), never carry it in the training state. When
``alpha`` / ``eps`` are traced (a vmapped config), build it inside that same trace.

``replay.init / add / sample`` and ``prioritized.init / add / sample / update_priorities``
stay as they are, for the homework and for readers who want to see one buffer on its own.

Example:
    >>> buf = buffers.make("prioritized", capacity=50_000, batch_size=64)
    >>> state = buf.init(example_transition)
    >>> state = buf.add(state, transitions)
    >>> batch, indices, weights = buf.sample(key, state, beta=0.4)
    >>> state = buf.update(state, indices, info["td_error"], ready)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray, Real

from purerl import prioritized as per
from purerl import replay

__all__ = ["Sample", "Buffer", "BufferState", "KINDS", "uniform", "prioritized", "fifo", "make"]

Item = Any
BufferState = replay.ReplayBuffer | per.PrioritizedBuffer
KINDS = ("uniform", "prioritized", "fifo")


class Sample(NamedTuple):
    """What every buffer's ``sample`` returns.

    Attributes:
        batch: the sampled items, a pytree with leaves ``[B, ...]``.
        indices: ``[B]`` slots the items came from (``batch = data[indices]``).
        weights: ``[B]`` importance-sampling weights; all ones for uniform and FIFO.
    """

    batch: Item
    indices: Int[Array, " B"]
    weights: Float[Array, " B"]


class Buffer(NamedTuple):
    """A buffer kind as a record of pure functions (see the module docstring).

    Attributes:
        init: ``init(example) -> state``: empty buffer for items shaped like ``example``.
        add: ``add(state, items, valid=None) -> state``: store a batch ``[n, ...]`` (one
            item is also accepted). ``valid`` is ``None`` (store all), a boolean scalar
            (store all or nothing) or ``[n]`` booleans (rows where ``False`` are not stored,
            the kept rows packed in order). May be traced.
        sample: ``sample(key, state, *, beta=1.0) -> Sample``; ``beta`` is used by PER only.
        update: ``update(state, indices, td_errors, mask=None) -> state``: new priorities
            ``(|δ| + ε)^α`` where ``mask`` holds (PER); the identity for uniform and FIFO.
        can_sample: ``can_sample(state) -> bool[]``: enough items for one batch.
        size: ``size(state) -> int32[]``: number of items stored.
    """

    init: Callable[[Item], BufferState]
    add: Callable[..., BufferState]
    sample: Callable[..., Sample]
    update: Callable[..., BufferState]
    can_sample: Callable[[BufferState], Bool[Array, ""]]
    size: Callable[[BufferState], Int[Array, ""]]


# ------------------------------------------------------------------------------ shared pieces


def _check_sizes(capacity: int, batch_size: int) -> None:
    """``ValueError`` naming the first bad size."""
    if int(batch_size) < 1:
        raise ValueError(f"buffer: batch_size must be >= 1, got batch_size={batch_size}")
    if int(capacity) < 1:
        raise ValueError(f"buffer: capacity must be >= 1, got capacity={capacity}")
    if int(batch_size) > int(capacity):
        raise ValueError(
            f"buffer: batch_size={batch_size} is larger than the capacity capacity={capacity}"
        )


def _storage(state: BufferState) -> replay.ReplayBuffer:
    return state.storage if isinstance(state, per.PrioritizedBuffer) else state


def _as_batch(state: BufferState, items: Item) -> Item:
    """``items`` with a leading batch axis (one item gets ``[1, ...]``)."""
    if replay._is_batched(_storage(state), items):
        return items
    return jax.tree.map(lambda x: jnp.asarray(x)[None], items)


def _add_with(
    add_batch: Callable[..., BufferState], add_where: Callable[..., BufferState]
) -> Callable[..., BufferState]:
    """``add`` that sends ``valid=None`` / scalar to ``add_batch`` and ``[n]`` to ``add_where``."""

    def add(state: BufferState, items: Item, valid: Bool[ArrayLike, "..."] | None = None):
        items = _as_batch(state, items)
        if valid is None or jnp.ndim(valid) == 0:
            return add_batch(state, items, valid)
        n = int(jax.tree.leaves(items)[0].shape[0])
        if jnp.shape(valid) != (n,):
            raise ValueError(
                f"buffer: valid must be a scalar or one flag per item [{n}], "
                f"got shape {jnp.shape(valid)}"
            )
        return add_where(state, items, valid)

    return add


def _no_update(
    state: BufferState,
    indices: Int[ArrayLike, " B"],
    td_errors: Float[ArrayLike, " B"],
    mask: Bool[ArrayLike, "..."] | None = None,
) -> BufferState:
    del indices, td_errors, mask
    return state


def _size(state: BufferState) -> Int[Array, ""]:
    return state.size


@partial(jax.jit, static_argnames="batch_size")
def _uniform_sample(key: PRNGKeyArray, state: replay.ReplayBuffer, batch_size: int) -> Sample:
    idx = replay.sample_indices(key, state, batch_size)
    batch = jax.tree.map(lambda store: store[idx], state.data)
    return Sample(batch, idx, jnp.ones((batch_size,), jnp.float32))


# ------------------------------------------------------------------------------ kinds


def uniform(capacity: int, batch_size: int) -> Buffer:
    """Uniform replay: ``batch_size`` items drawn with replacement from the ``capacity``
    latest (``purerl.replay``).

    For the same key, ``sample`` draws exactly ``replay.sample(key, state, batch_size)``;
    ``add`` is ``replay.add_batch`` (``replay.add_where`` for a ``[n]`` mask); ``weights`` are
    ones and ``update`` is the identity.

    Args:
        capacity: number of slots; the oldest item is overwritten first.
        batch_size: items per ``sample``.

    Returns:
        The ``Buffer``; its states are ``replay.ReplayBuffer``s.

    Example:
        >>> buf = buffers.uniform(capacity=50_000, batch_size=64)
        >>> state = buf.add(buf.init(example_transition), transitions)
        >>> batch, indices, weights = buf.sample(key, state)

    Raises:
        ValueError: ``"buffer: ..."`` for a non-positive size or ``batch_size > capacity``.

    Reference: Lin (1992); Mnih et al. (2015), "Human-level control through deep RL".
    """
    _check_sizes(capacity, batch_size)
    capacity, batch_size = int(capacity), int(batch_size)

    def init(example: Item) -> replay.ReplayBuffer:
        return replay.init(example, capacity)

    def sample(key: PRNGKeyArray, state: replay.ReplayBuffer, *, beta: Any = 1.0) -> Sample:
        del beta
        return _uniform_sample(key, state, batch_size)

    def can_sample(state: replay.ReplayBuffer) -> Bool[Array, ""]:
        return replay.can_sample(state, batch_size)

    add = _add_with(replay.add_batch, replay.add_where)
    return Buffer(init, add, sample, _no_update, can_sample, _size)


def prioritized(
    capacity: int,
    batch_size: int,
    *,
    alpha: Real[ArrayLike, ""] = 0.6,
    eps: Real[ArrayLike, ""] = 1e-6,
) -> Buffer:
    """Proportional prioritized replay: item ``i`` is drawn with ``P(i) ∝ (|δ_i| + ε)^α``,
    with importance weights ``(N · P(i))^(−β) / max w`` (``purerl.prioritized``).

    ``sample(key, state, beta=β)`` returns exactly ``prioritized.sample(key, state,
    batch_size, beta=β)``; ``add`` is ``prioritized.add`` (``prioritized.add_where`` for a
    ``[n]`` mask); ``update(state, idx, td, mask)`` is ``prioritized.update_priorities(state,
    idx, td, alpha=alpha, eps=eps, mask=mask)``.

    Args:
        capacity: number of slots.
        batch_size: items per ``sample``.
        alpha: priority exponent α (0 = uniform); may be a traced scalar.
        eps: ε added to ``|δ|`` so no item gets priority 0; may be a traced scalar.

    Returns:
        The ``Buffer``; its states are ``prioritized.PrioritizedBuffer``s.

    Example:
        >>> buf = buffers.prioritized(50_000, 64, alpha=0.6, eps=1e-6)
        >>> batch, indices, weights = buf.sample(key, state, beta=0.4)
        >>> state = buf.update(state, indices, info["td_error"], ready)

    Raises:
        ValueError: ``"buffer: ..."`` for a non-positive size or ``batch_size > capacity``.

    Reference: Schaul, Quan, Antonoglou & Silver (2016), "Prioritized Experience Replay".
    """
    _check_sizes(capacity, batch_size)
    capacity, batch_size = int(capacity), int(batch_size)

    def init(example: Item) -> per.PrioritizedBuffer:
        return per.init(example, capacity)

    def sample(key: PRNGKeyArray, state: per.PrioritizedBuffer, *, beta: Any = 1.0) -> Sample:
        return Sample(*per.sample(key, state, batch_size, beta=beta))

    def update(
        state: per.PrioritizedBuffer,
        indices: Int[ArrayLike, " B"],
        td_errors: Float[ArrayLike, " B"],
        mask: Bool[ArrayLike, "..."] | None = None,
    ) -> per.PrioritizedBuffer:
        return per.update_priorities(state, indices, td_errors, alpha=alpha, eps=eps, mask=mask)

    def can_sample(state: per.PrioritizedBuffer) -> Bool[Array, ""]:
        return per.can_sample(state, batch_size)

    add = _add_with(per.add, per.add_where)
    return Buffer(init, add, sample, update, can_sample, _size)


def fifo(batch_size: int) -> Buffer:
    """No replay: keep the latest ``batch_size`` items and use them all in every update.

    The state is a ``replay.ReplayBuffer`` of capacity ``batch_size``; ``sample`` ignores
    the key and returns its ``data`` exactly as stored (slot order, which is circular, not
    chronological), ``indices = arange(batch_size)`` and unit weights. ``can_sample`` holds
    once it is full; ``update`` is the identity.

    Args:
        batch_size: items kept, and items per ``sample``.

    Returns:
        The ``Buffer``.

    Example:
        >>> buf = buffers.fifo(batch_size=32)   # the Nature-DQN ablation "without replay"
        >>> batch = buf.sample(key, state).batch   # the 32 latest transitions

    Raises:
        ValueError: ``"buffer: ..."`` if ``batch_size < 1``.
    """
    _check_sizes(batch_size, batch_size)
    batch_size = int(batch_size)

    def init(example: Item) -> replay.ReplayBuffer:
        return replay.init(example, batch_size)

    def sample(key: PRNGKeyArray, state: replay.ReplayBuffer, *, beta: Any = 1.0) -> Sample:
        del key, beta
        indices = jnp.arange(batch_size, dtype=jnp.int32)
        return Sample(state.data, indices, jnp.ones((batch_size,), jnp.float32))

    def can_sample(state: replay.ReplayBuffer) -> Bool[Array, ""]:
        return replay.can_sample(state, batch_size)

    add = _add_with(replay.add_batch, replay.add_where)
    return Buffer(init, add, sample, _no_update, can_sample, _size)


def make(
    kind: str,
    *,
    capacity: int,
    batch_size: int,
    alpha: Real[ArrayLike, ""] = 0.6,
    eps: Real[ArrayLike, ""] = 1e-6,
) -> Buffer:
    """The buffer of kind ``"uniform"``, ``"prioritized"`` or ``"fifo"``.

    Sizes are checked for every kind, so one config is valid or not whatever its kind; the
    FIFO holds ``batch_size`` items and does not use ``capacity`` beyond that check.
    ``alpha`` and ``eps`` are used by ``"prioritized"`` only.

    Args:
        kind: one of ``KINDS``.
        capacity: slots of a replay buffer.
        batch_size: items per ``sample``.
        alpha: PER priority exponent (may be traced).
        eps: PER priority offset (may be traced).

    Returns:
        The ``Buffer``.

    Example:
        >>> kind = "fifo" if not c.replay else "prioritized" if c.prioritized else "uniform"
        >>> buf = buffers.make(kind, capacity=c.buffer_size, batch_size=c.batch_size,
        ...                    alpha=c.per_alpha, eps=c.per_eps)

    Raises:
        ValueError: ``"buffer: ..."`` naming the field: an unknown ``kind``, a non-positive
            ``capacity`` or ``batch_size``, or ``batch_size > capacity``.
    """
    if kind not in KINDS:
        raise ValueError(f"buffer: kind must be one of {KINDS}, got kind={kind!r}")
    _check_sizes(capacity, batch_size)
    if kind == "uniform":
        return uniform(capacity, batch_size)
    if kind == "prioritized":
        return prioritized(capacity, batch_size, alpha=alpha, eps=eps)
    return fifo(batch_size)
