"""L3: the one rollout helper: ``T`` steps of ``N`` vectorised envs under the current policy,
returned time-major, plus the episode metrics of that stretch. Every on-policy algorithm
(REINFORCE, A2C, PPO, PQN) collects its data through ``collect``; ``minibatch_epochs`` runs
shuffled minibatch passes over a flattened rollout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

from purerl.algorithms.common import finished_episode_stats
from purerl.envs import VecEnv, VecEnvState

__all__ = ["Rollout", "collect", "flatten_steps", "minibatch_epochs"]

# policy(key, obs [N, ...]) -> (action sent to the env, action stored, extras such as log-probs)
ActFn = Callable[[PRNGKeyArray, Array], tuple[Array, Array, dict[str, Array]]]


class Rollout(eqx.Module):
    """Time-major batch ``[T, N, ...]``. ``next_obs`` is the true observation after each step
    (the final one where an episode ended), so values for bootstrapping come from it."""

    obs: Array
    action: Array
    reward: Float[Array, "T N"]
    terminated: Bool[Array, "T N"]
    truncated: Bool[Array, "T N"]
    next_obs: Array
    extras: dict[str, Any]

    @property
    def done(self) -> Bool[Array, "T N"]:
        """An episode ended at this step (terminated or truncated)."""
        return self.terminated | self.truncated

    def discount(self, gamma: float | Float[Array, ""]) -> Float[Array, "T N"]:
        """``γ · (1 − terminated)``: truncation keeps the bootstrap, termination drops it."""
        return gamma * (1.0 - self.terminated.astype(jnp.float32))


def collect(
    key: PRNGKeyArray, env: VecEnv, env_state: VecEnvState, act: ActFn, num_steps: int
) -> tuple[VecEnvState, Rollout, dict[str, Array]]:
    """Run ``act`` for ``num_steps`` steps in every env (auto-reset included).

    Returns:
        ``(env_state, rollout, metrics)``; metrics are the mean return / length of the episodes
        that ended inside the rollout and their count (``episode_return`` means nothing where
        ``episode_count == 0``).
    """

    def one_step(state, k):
        act_key, env_key = jax.random.split(k)
        env_action, action, extras = act(act_key, state.obs)
        new_state, ts = env.step(env_key, state, env_action)
        record = (state.obs, action, ts.reward, ts.terminated, ts.truncated, ts.final_obs, extras)
        return new_state, (record, ts)

    keys = jax.random.split(key, num_steps)
    env_state, (record, ts) = jax.lax.scan(one_step, env_state, keys)
    return env_state, Rollout(*record), finished_episode_stats(ts)


def flatten_steps(tree: Any) -> Any:
    """Merge the leading ``[T, N]`` axes of every leaf into one batch axis ``[T·N]``."""
    return jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), tree)


def minibatch_epochs(
    update: Callable[[Any, Any], tuple[Any, dict[str, Array]]],
    carry: Any,
    key: PRNGKeyArray,
    batch: Any,
    *,
    epochs: int,
    num_minibatches: int,
) -> tuple[Any, dict[str, Array]]:
    """``epochs`` passes over ``batch`` (leaves ``[B, ...]``), each in ``num_minibatches``
    freshly shuffled minibatches of ``B / num_minibatches`` items:
    ``carry, info = update(carry, minibatch)`` for each.

    Returns:
        The final carry and the ``info`` dicts stacked ``[epochs, num_minibatches]``.
    """
    size = jax.tree.leaves(batch)[0].shape[0]

    def epoch(carry, k):
        order = jax.random.permutation(k, size).reshape(num_minibatches, -1)
        return jax.lax.scan(
            lambda c, idx: update(c, jax.tree.map(lambda x: x[idx], batch)), carry, order
        )

    return jax.lax.scan(epoch, carry, jax.random.split(key, epochs))
