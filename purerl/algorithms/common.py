"""L3 helpers shared by every algorithm: config checks, the period loop, greedy evaluation,
episode metrics. Written once here so no algorithm file copies another."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, PRNGKeyArray

from purerl.envs import VecEnv
from purerl.networks import ACTIVATIONS
from purerl.types import Timestep

__all__ = [
    "require",
    "check_shared_fields",
    "is_concrete",
    "iteration_schedule",
    "run_periods",
    "greedy_episode_returns",
    "finished_episode_stats",
]

S = TypeVar("S")


def is_concrete(x: Any) -> bool:
    """Whether ``x`` holds values (not a tracer), so a config check can look at it."""
    return not isinstance(x, jax.core.Tracer)


def require(ok: Any, field: str, message: str) -> None:
    """Raise ``ValueError("field: message")`` unless ``ok`` (an array: all of it) holds.

    Traced values (a config inside ``vmap``) are skipped: they were checked when built.
    """
    if not is_concrete(ok):
        return
    if not bool(np.all(np.asarray(ok))):
        raise ValueError(f"{field}: {message}")


def check_shared_fields(c: Any, positive: tuple[str, ...]) -> None:
    """Checks every algorithm's config needs: the named integer fields are > 0, the network
    sizes and activation exist, γ ∈ (0, 1], learning rate and gradient-norm bound > 0."""
    for name in positive:
        require(getattr(c, name) > 0, name, f"must be > 0, got {getattr(c, name)}")
    require(
        len(c.hidden_sizes) > 0 and all(h > 0 for h in c.hidden_sizes),
        "hidden_sizes",
        f"must be a non-empty tuple of positive sizes, got {c.hidden_sizes}",
    )
    require(
        c.activation in ACTIVATIONS,
        "activation",
        f"must be one of {sorted(ACTIVATIONS)}, got {c.activation!r}",
    )
    require((c.gamma > 0) & (c.gamma <= 1), "gamma", f"must be in (0, 1], got {c.gamma}")
    require(c.learning_rate > 0, "learning_rate", f"must be > 0, got {c.learning_rate}")
    require(c.max_grad_norm > 0, "max_grad_norm", f"must be > 0, got {c.max_grad_norm}")


def iteration_schedule(
    total_steps: int, steps_per_iteration: int, eval_every: int, per_iteration: str = "num_envs"
) -> tuple[int, int]:
    """``(num_periods, iterations_per_period)`` for a run of ``total_steps`` env steps.

    One iteration takes ``steps_per_iteration`` env steps (named ``per_iteration`` in errors);
    an evaluation closes every period of ``eval_every`` env steps. Uneven sizes are refused
    rather than silently cut.
    """
    require(total_steps > 0, "total_steps", f"must be > 0, got {total_steps}")
    require(eval_every > 0, "eval_every", f"must be > 0, got {eval_every}")
    require(
        eval_every % steps_per_iteration == 0,
        "eval_every",
        f"must be a multiple of the env steps per iteration ({per_iteration} = "
        f"{steps_per_iteration}), got {eval_every}",
    )
    require(
        total_steps % eval_every == 0,
        "total_steps",
        f"must be a multiple of eval_every={eval_every}, got {total_steps} "
        f"(try {max(1, round(total_steps / eval_every)) * eval_every})",
    )
    return total_steps // eval_every, eval_every // steps_per_iteration


def run_periods(
    step: Callable[[S], tuple[S, dict[str, Array]]],
    evaluate: Callable[[S], tuple[S, dict[str, Array]]],
    state: S,
    num_periods: int,
    period: int,
) -> tuple[S, dict[str, Array]]:
    """``num_periods`` × (``period`` iterations of ``step``, then ``evaluate``), as nested scans.

    Evaluation sits between scans rather than behind a ``lax.cond``: under ``vmap`` a cond
    becomes a select and would run the evaluation every iteration.

    Returns:
        Final state and metrics: per-iteration keys ``[num_periods · period]`` and
        per-evaluation keys ``[num_periods]``.
    """

    def one_period(s, _):
        s, metrics = jax.lax.scan(lambda c, _: step(c), s, None, length=period)
        s, evals = evaluate(s)
        return s, (metrics, evals)

    state, (metrics, evals) = jax.lax.scan(one_period, state, None, length=num_periods)
    metrics = jax.tree.map(lambda x: x.reshape(num_periods * period, *x.shape[2:]), metrics)
    return state, {**metrics, **evals}


def greedy_episode_returns(key: PRNGKeyArray, env: VecEnv, act: Callable[[Array], Array]) -> Array:
    """Undiscounted return of the first episode in each of ``env.num_envs`` fresh copies.

    ``act`` maps a batch of observations to actions (e.g. greedy on Q-values). Runs until
    every copy has finished one episode (gymnax time limits bound the loop).
    """
    reset_key, key = jax.random.split(key)
    env_state = env.reset(reset_key)
    n = env.num_envs

    def cond(carry):
        return ~jnp.all(carry[3])

    def body(carry):
        key, env_state, returns, finished = carry
        key, step_key = jax.random.split(key)
        env_state, ts = env.step(step_key, env_state, act(env_state.obs))
        returns = jnp.where(finished, returns, ts.episode_return)
        return key, env_state, returns, finished | ts.done

    init = (key, env_state, jnp.zeros((n,), jnp.float32), jnp.zeros((n,), bool))
    _, _, returns, _ = jax.lax.while_loop(cond, body, init)
    return returns


def finished_episode_stats(ts: Timestep) -> dict[str, Array]:
    """Mean return and length of the episodes that ended at this step, with a validity count.

    ``episode_return`` is 0 where ``episode_count == 0``: read it through that mask, never as
    a real zero return.
    """
    done = ts.done
    count = jnp.sum(done)
    safe = jnp.maximum(count, 1)
    return {
        "episode_return": jnp.sum(jnp.where(done, ts.episode_return, 0.0)) / safe,
        "episode_length": jnp.sum(jnp.where(done, ts.episode_length, 0)) / safe,
        "episode_count": count,
    }
