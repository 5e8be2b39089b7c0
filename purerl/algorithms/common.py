"""L3 helpers shared by every algorithm's own code: config checks, the iteration schedule,
episode metrics. (The contract, the training loop and evaluation live in ``core``.)"""

from __future__ import annotations

import dataclasses
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from purerl.networks import ACTIVATIONS
from purerl.types import Timestep

__all__ = [
    "QUICK_ROLLOUT",
    "INT32_MAX",
    "require",
    "check_numbers",
    "check_shared_fields",
    "is_concrete",
    "iteration_schedule",
    "finished_episode_stats",
    "episode_totals",
    "episode_means",
    "keep_if",
    "learning_ready",
]


# Tiny rollout-based runs on a probe env (each algorithm's ``quick_config``; conformance tests).
QUICK_ROLLOUT = dict(
    env_id="ObsActionReward-probe",
    total_steps=512,
    eval_every=256,
    num_envs=4,
    num_steps=16,
    hidden_sizes=(16,),
    eval_envs=2,
)


def is_concrete(x: Any) -> bool:
    """Whether ``x`` holds values (not a tracer), so a config check can look at it."""
    return not isinstance(x, jax.core.Tracer)


# Sizes, step counts and counters are int32 on the device (``env_steps``, buffer indices).
INT32_MAX = 2**31 - 1


def require(ok: Any, field: str, message: str) -> None:
    """Raise ``ValueError("field: message")`` unless ``ok`` (an array: all of it) holds.

    Traced values (a config inside ``vmap``) are skipped: they were checked when built.
    """
    if not is_concrete(ok):
        return
    if not bool(np.all(np.asarray(ok))):
        raise ValueError(f"{field}: {message}")


def _is_finite_number(v: Any) -> bool:
    if isinstance(v, bool | str | bytes):
        return False
    try:
        return bool(np.all(np.isfinite(np.asarray(v, np.float64))))
    except (TypeError, ValueError):
        return False


def check_numbers(c: Any) -> None:
    """Every number of config ``c`` is usable: float fields (the leaves) are finite numbers —
    NaN compares false with everything, so a range check alone would not name it — and integer
    fields (and tuples of them, e.g. ``hidden_sizes``) fit in int32."""
    for f in dataclasses.fields(c):
        v = getattr(c, f.name)
        if v is None or not is_concrete(v) or isinstance(v, bool | str):
            continue  # None: an optional field left to its documented default
        if f.metadata.get("static", False):
            ints = [x for x in (v if isinstance(v, tuple) else (v,)) if isinstance(x, int)]
            small = all(abs(x) <= INT32_MAX for x in ints if not isinstance(x, bool))
            require(small, f.name, f"must be at most 2**31 - 1 (int32 on the device), got {v}")
        else:
            require(_is_finite_number(v), f.name, f"must be a finite number, got {v!r}")


def require_positive(c: Any, names: tuple[str, ...]) -> None:
    """``ValueError("name: must be > 0, got ...")`` for the first of ``names`` that is not."""
    for name in names:
        require(getattr(c, name) > 0, name, f"must be > 0, got {getattr(c, name)}")


def require_one_of(c: Any, name: str, options: Any) -> None:
    """``ValueError("name: must be one of [...], got ...")`` unless ``c.name`` is an option."""
    value = getattr(c, name)
    require(value in options, name, f"must be one of {list(options)}, got {value!r}")


def check_shared_fields(c: Any, positive: tuple[str, ...]) -> None:
    """Checks every algorithm's config needs: numbers finite and within int32
    (``check_numbers``), the named integer fields > 0, the network sizes and activation
    exist, γ ∈ (0, 1], learning rate and gradient-norm bound > 0."""
    check_numbers(c)
    require_positive(c, positive)
    require(
        len(c.hidden_sizes) > 0 and all(h > 0 for h in c.hidden_sizes),
        "hidden_sizes",
        f"must be a non-empty tuple of positive sizes, got {c.hidden_sizes}",
    )
    require_one_of(c, "activation", sorted(ACTIVATIONS))
    require((c.gamma > 0) & (c.gamma <= 1), "gamma", f"must be in (0, 1], got {c.gamma}")
    require(c.learning_rate > 0, "learning_rate", f"must be > 0, got {c.learning_rate}")
    require(c.max_grad_norm > 0, "max_grad_norm", f"must be > 0, got {c.max_grad_norm}")


def iteration_schedule(
    total_steps: int, steps_per_iteration: int, eval_every: int
) -> tuple[int, int]:
    """``(num_periods, iterations_per_period)`` for a run of ``total_steps`` env steps.

    One iteration takes ``steps_per_iteration`` env steps; an evaluation closes every period of
    ``eval_every`` env steps. Uneven sizes are refused
    rather than silently cut.
    """
    require(total_steps > 0, "total_steps", f"must be > 0, got {total_steps}")
    require(
        total_steps <= INT32_MAX,
        "total_steps",
        f"must be at most 2**31 - 1 (int32 on the device), got {total_steps} (whole "
        f"iterations of {steps_per_iteration} env steps)",
    )
    require(eval_every > 0, "eval_every", f"must be > 0, got {eval_every}")
    require(
        eval_every % steps_per_iteration == 0,
        "eval_every",
        f"must be a multiple of the env steps per iteration ({steps_per_iteration}), "
        f"got {eval_every} (core.fit_budget rounds it)",
    )
    require(
        total_steps % eval_every == 0,
        "total_steps",
        f"must be a multiple of eval_every={eval_every}, got {total_steps} "
        "(core.fit_budget rounds it; purerl.run and purerl train do it for you)",
    )
    return total_steps // eval_every, eval_every // steps_per_iteration


def episode_totals(ts: Timestep) -> tuple[Array, Array, Array]:
    """``(Σ return, Σ length, count)`` of the episodes that ended in ``ts`` (any leading
    axes). Totals add up across steps, so a rollout can keep them in its loop's carry instead
    of stacking every step's episode counters."""
    done = ts.done
    return (
        jnp.sum(jnp.where(done, ts.episode_return, 0.0)),
        jnp.sum(jnp.where(done, ts.episode_length, 0)),
        jnp.sum(done),
    )


def episode_means(totals: tuple[Array, Array, Array]) -> dict[str, Array]:
    """``finished_episode_stats`` from ``episode_totals`` (summed over any number of steps)."""
    total_return, total_length, count = totals
    safe = jnp.maximum(count, 1)
    return {
        "episode_return": total_return / safe,
        "episode_length": total_length / safe,
        "episode_count": count,
    }


def finished_episode_stats(ts: Timestep) -> dict[str, Array]:
    """Mean return and length of the episodes that ended at this step, with a validity count.

    ``episode_return`` is 0 where ``episode_count == 0``: read it through that mask, never as
    a real zero return.
    """
    return episode_means(episode_totals(ts))


def keep_if(ready: Any, new: Any, old: Any) -> Any:
    """``new`` where ``ready`` holds, else ``old`` (array leaves selected, the rest from
    ``new``). Off-policy learners update unconditionally and keep the result only once
    learning has started: a ``lax.cond`` would copy the replay buffer into its branches, and
    under ``vmap`` it becomes a select anyway."""
    new_arrays, static = eqx.partition(new, eqx.is_array)
    old_arrays = eqx.filter(old, eqx.is_array)
    chosen = jax.tree.map(lambda n, o: jnp.where(ready, n, o), new_arrays, old_arrays)
    return eqx.combine(chosen, static)


def learning_ready(c: Any, buffer: Any, env_steps: Array) -> Array:
    """Learning starts after ``c.learning_starts`` env steps, once a batch of
    ``c.batch_size`` can be drawn (without replay: once the FIFO of the latest ``batch_size``
    transitions is full). ``buffer`` is any buffer state with a ``size``."""
    return (env_steps >= c.learning_starts) & (buffer.size >= c.batch_size)
