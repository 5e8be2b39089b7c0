"""L3: the one rollout helper: ``T`` steps of ``N`` vectorised envs under a ``core.Policy``
(with its recurrent carry and episode-start flags), returned time-major, plus the episode
metrics of that stretch. Every on-policy algorithm (REINFORCE, A2C, PPO, PQN) collects its data
through ``collect``; ``collect_and_learn`` builds an algorithm's ``step`` from its two halves
(``behaviour_policy``, ``learn``), and ``learn_from`` runs the learner half alone on a rollout
collected elsewhere (the actor–learner loop of host environments); ``minibatch_epochs`` runs
shuffled minibatch passes over a flattened rollout (``flatten_steps``) or over per-env
sequences cut from it (``sequences``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, PRNGKeyArray, Real

from purerl.algorithms.common import episode_means, episode_totals, require
from purerl.algorithms.core import Policy
from purerl.envs import VecEnv, VecEnvState
from purerl.recurrent import CORES
from purerl.types import Transition

__all__ = [
    "Rollout",
    "collect",
    "begin",
    "collect_from",
    "collect_and_learn",
    "learn_from",
    "flatten_steps",
    "sequences",
    "minibatch_epochs",
    "recurrent_core",
    "update_batch",
    "sequence_length",
    "check_recurrent_fields",
]


class Rollout(eqx.Module):
    """Time-major batch ``[T, N, ...]``. ``next_obs`` is the true observation after each step
    (the final one where an episode ended), so values for bootstrapping come from it.
    ``first[t, n]`` marks the first step of an episode; ``carry`` is the policy's recurrent
    state before step 0 and ``final_carry`` after step ``T − 1`` (``None`` for feed-forward
    policies), so a recurrent loss can re-run its core over the rollout."""

    # NumPy leaves too (e.g. ``jax.tree.map(np.asarray, rollout)``): ``done`` and ``discount``
    # are then NumPy arrays
    obs: ArrayLike
    action: ArrayLike
    reward: Float[ArrayLike, "T N"]
    terminated: Bool[ArrayLike, "T N"]
    truncated: Bool[ArrayLike, "T N"]
    next_obs: ArrayLike
    extras: dict[str, Any]
    first: Bool[ArrayLike, "T N"] | None = None
    carry: Any = None
    final_carry: Any = None

    @property
    def done(self) -> Bool[ArrayLike, "T N"]:
        """An episode ended at this step (terminated or truncated)."""
        return self.terminated | self.truncated

    def discount(self, gamma: Real[ArrayLike, ""]) -> Float[ArrayLike, "T N"]:
        """``γ · (1 − terminated)``: truncation keeps the bootstrap, termination drops it."""
        return gamma * (1.0 - self.terminated.astype(jnp.float32))

    def transitions(self, action: ArrayLike | None = None) -> Transition:
        """The ``[T, N]`` ``Transition``s (discount ``1 − terminated``, ``next_obs`` the true
        final observation), storing ``action`` instead of ``self.action`` when given."""
        return Transition(
            obs=self.obs,
            action=self.action if action is None else action,
            reward=self.reward,
            discount=1.0 - jnp.asarray(self.terminated, jnp.float32),
            next_obs=self.next_obs,
        )


def collect(
    key: PRNGKeyArray,
    env: VecEnv,
    env_state: VecEnvState,
    policy: Policy,
    num_steps: int,
    carry: Any = None,
) -> tuple[VecEnvState, Rollout, dict[str, Array]]:
    """Run ``policy`` for ``num_steps`` steps in every env (auto-reset included).

    ``policy.act(params, key, obs, carry, first)`` picks the actions; ``carry`` is its
    recurrent state at the start (``None`` for feed-forward policies) and comes back as
    ``rollout.final_carry``.

    Returns:
        ``(env_state, rollout, metrics)``; metrics are the mean return / length of the episodes
        that ended inside the rollout and their count (``episode_return`` means nothing where
        ``episode_count == 0``).
    """

    def one_step(c, k):
        state, carry, totals = c
        act_key, env_key = jax.random.split(k)
        first = state.first
        action, carry, extras = policy.act(policy.params, act_key, state.obs, carry, first)
        new_state, ts = env.step(env_key, state, action)
        record = (state.obs, action, ts.reward, ts.terminated, ts.truncated, ts.final_obs)
        # episode metrics summed in the carry: fewer per-step outputs than stacking counters
        totals = jax.tree.map(jnp.add, totals, episode_totals(ts))
        return (new_state, carry, totals), (record, first, extras)

    keys = jax.random.split(key, num_steps)
    zeros = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))
    (env_state, final_carry, totals), (record, first, extras) = jax.lax.scan(
        one_step, (env_state, carry, zeros), keys
    )
    rollout = Rollout(*record, extras, first=first, carry=carry, final_carry=final_carry)
    return env_state, rollout, episode_means(totals)


def begin(state: Any) -> tuple[Any, PRNGKeyArray]:
    """Split an iteration's key once: ``(state with the key the learner goes on with, the
    rollout's key)``. The compiled loop and the actor–learner loop both start an iteration
    here, so given the same rollout their learners draw the same numbers."""
    key, rollout_key = jax.random.split(state.key)
    return eqx.tree_at(lambda s: s.key, state, key), rollout_key


Learn = Callable[[Any, Rollout, dict[str, Array]], tuple[Any, dict[str, Array]]]


def collect_from(
    state: Any, policy: Policy, num_steps: int
) -> tuple[Any, Rollout, dict[str, Array]]:
    """``num_steps`` steps of every env of ``state.env`` under ``policy`` (``collect``) with
    the iteration's rollout key (``begin``); the state comes back with its env state, key and
    (for recurrent agents) ``carry`` advanced. ``state`` has ``env``, ``env_state``, ``key``
    and optionally ``carry`` (the policy's carry in each env)."""
    state, rollout_key = begin(state)
    has_carry = hasattr(state, "carry")
    env_state, rollout, episodes = collect(
        rollout_key,
        state.env,
        state.env_state,
        policy,
        num_steps,
        carry=state.carry if has_carry else None,
    )
    state = eqx.tree_at(lambda s: s.env_state, state, env_state)
    if has_carry:
        none = lambda x: x is None  # noqa: E731 (a feed-forward agent's carry)
        state = eqx.tree_at(lambda s: s.carry, state, rollout.final_carry, is_leaf=none)
    return state, rollout, episodes


def collect_and_learn(
    behaviour_policy: Callable[[Any], Policy],
    learn: Learn,
    rollout_length: Callable[[Any], int],
) -> Callable[[Any], tuple[Any, dict[str, Array]]]:
    """An algorithm's ``step`` from its halves: ``rollout_length(config)`` steps of every env
    under ``behaviour_policy(state)`` (``collect_from``), then ``learn(state, rollout,
    episodes)``."""

    def step(state: Any) -> tuple[Any, dict[str, Array]]:
        policy = behaviour_policy(state)
        state, rollout, episodes = collect_from(state, policy, rollout_length(state.config))
        return learn(state, rollout, episodes)

    return step


def learn_from(
    learn: Learn, state: Any, rollout: Rollout, episodes: dict[str, Array]
) -> tuple[Any, dict[str, Array]]:
    """The learner half of ``collect_and_learn``'s step on a rollout collected elsewhere (by
    host actors): the same key split, then ``learn``. Given the rollout the compiled step
    collected, this returns what that step returns."""
    state, _ = begin(state)
    return learn(state, rollout, episodes)


def flatten_steps(tree: Any) -> Any:
    """Merge the leading ``[T, N]`` axes of every leaf into one batch axis ``[T·N]``."""
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), tree)


def sequences(tree: Any, length: int) -> Any:
    """Cut time-major leaves ``[T, N, ...]`` into ``N · T / length`` per-env sequences,
    ``[length, N · T / length, ...]`` (time order kept inside each; sequence ``j`` is env
    ``j mod N``, time chunk ``j // N``). Minibatch them with ``minibatch_epochs(..., axis=1)``.

    Raises:
        ValueError: ``length`` does not divide ``T``.
    """
    steps = jax.tree.leaves(tree)[0].shape[0]
    if length < 1 or steps % length:
        raise ValueError(f"sequence_length: must divide the rollout length {steps}, got {length}")

    def cut(x):
        chunks = x.reshape(steps // length, length, *x.shape[1:])  # [C, L, N, ...]
        chunks = jnp.swapaxes(chunks, 0, 1)  # [L, C, N, ...]
        return chunks.reshape(length, -1, *x.shape[2:])

    return jax.tree.map(cut, tree)


def minibatch_epochs(
    update: Callable[[Any, Any], tuple[Any, dict[str, Array]]],
    carry: Any,
    key: PRNGKeyArray,
    batch: Any,
    *,
    epochs: int,
    num_minibatches: int,
    axis: int = 0,
) -> tuple[Any, dict[str, Array]]:
    """``epochs`` passes over ``batch``, each in ``num_minibatches`` freshly shuffled
    minibatches: ``carry, info = update(carry, minibatch)`` for each.

    ``axis=0``: leaves ``[B, ...]``, minibatches of ``B / num_minibatches`` items (steps).
    ``axis=1``: leaves ``[L, S, ...]`` (``sequences``), minibatches of whole sequences
    ``[L, S / num_minibatches, ...]``: time order is never shuffled.

    Returns:
        The final carry and the ``info`` dicts stacked ``[epochs, num_minibatches]``.
    """
    size = jax.tree.leaves(batch)[0].shape[axis]

    def take(idx):
        return jax.tree.map(lambda x: jnp.take(x, idx, axis=axis), batch)

    def epoch(carry, k):
        order = jax.random.permutation(k, size).reshape(num_minibatches, -1)
        return jax.lax.scan(lambda c, idx: update(c, take(idx)), carry, order)

    return jax.lax.scan(epoch, carry, jax.random.split(key, epochs))


def recurrent_core(c: Any) -> str:
    """The recurrent core a config asks for (``"none"``: feed-forward). Only configs with a
    ``recurrent`` field (PPO's, PQN's) have a recurrent path."""
    return getattr(c, "recurrent", "none")


def check_recurrent_fields(c: Any) -> None:
    """Environment-free checks of the recurrent fields (``recurrent``, ``core_size``,
    ``sequence_length``) of a config that has them."""
    require(
        c.recurrent in ("none", *CORES),
        "recurrent",
        f"must be 'none' or one of {list(CORES)}, got {c.recurrent!r}",
    )
    require(c.core_size > 0, "core_size", f"must be > 0, got {c.core_size}")
    if c.num_steps <= 0 or c.num_envs <= 0 or c.num_minibatches <= 0:
        return  # the shared checks name those fields
    length = sequence_length(c)
    require(
        length > 0 and c.num_steps % length == 0,
        "sequence_length",
        f"must divide the rollout num_steps = {c.num_steps} (0: the whole rollout), "
        f"got {c.sequence_length}",
    )
    if c.recurrent != "none":
        sequences = c.num_envs * c.num_steps // length
        require(
            sequences % c.num_minibatches == 0,
            "num_minibatches",
            f"must divide the number of sequences num_envs × num_steps / sequence_length = "
            f"{sequences} (a recurrent minibatch is whole sequences), got {c.num_minibatches}",
        )


def sequence_length(c: Any) -> int:
    """Length of the per-env sequences a recurrent loss re-runs its core over
    (``sequence_length``, 0 meaning the whole rollout ``num_steps``)."""
    return c.sequence_length or c.num_steps


def update_batch(data: dict[str, Any], rollout: Rollout, config: Any) -> tuple[Any, int]:
    """What ``minibatch_epochs`` runs over, and along which axis: the rollout's ``[T, N]``
    ``data`` flattened to steps (axis 0), or, for a recurrent config, cut into per-env
    sequences of ``sequence_length`` steps that carry their ``first`` flags and the carry
    they started from (axis 1, so minibatches are whole sequences)."""
    if recurrent_core(config) == "none":
        return flatten_steps(data), 0
    data = {**data, "first": rollout.first, "carry": rollout.extras["carry"]}
    return sequences(data, sequence_length(config)), 1
