"""L0: small records shared by every layer (all `eqx.Module`s, hence pytrees)."""

from __future__ import annotations

import equinox as eqx
from jaxtyping import Array, ArrayLike, Bool, Float, Int, PRNGKeyArray

__all__ = ["Array", "PRNGKeyArray", "Transition", "Timestep"]

Scalar = Float[Array, ""]


class Transition(eqx.Module):
    """One step of experience, ``(s, a, r, discount, s')``.

    ``discount`` is the continuation factor ``1 - terminated`` (times ``γ^(n-1)`` for an n-step
    transition); the TD target multiplies it by ``γ``. A time-limit truncation keeps
    ``discount = 1`` so the target bootstraps from ``next_obs``, which is always the true
    observation that followed ``obs`` (never the first observation of the next episode).

    Fields may carry any leading batch shape: ``[]`` for one step, ``[B]`` for a batch.

    Example:
        >>> t = Transition(obs=o, action=a, reward=r, discount=1.0 - terminated, next_obs=o2)
    """

    obs: ArrayLike
    action: ArrayLike
    reward: Float[ArrayLike, "..."]
    discount: Float[ArrayLike, "..."]
    next_obs: ArrayLike


class Timestep(eqx.Module):
    """What a vectorised environment step returns (shapes lead with ``[num_envs]``).

    Attributes:
        obs: observation to act on next (already the reset observation where an episode ended).
        reward: reward of the step just taken.
        terminated: the episode reached a terminal state (no bootstrap).
        truncated: the episode was cut by a time limit (bootstrap from ``final_obs``).
        final_obs: the true observation that followed the action, before any auto-reset.
        episode_return: undiscounted return of the episode that just ended (valid where ``done``).
        episode_length: length of the episode that just ended (valid where ``done``).
    """

    obs: Array
    reward: Float[Array, "*batch"]
    terminated: Bool[Array, "*batch"]
    truncated: Bool[Array, "*batch"]
    final_obs: Array
    episode_return: Float[Array, "*batch"]
    episode_length: Int[Array, "*batch"]

    @property
    def done(self) -> Bool[Array, "*batch"]:
        """``terminated | truncated``: an episode ended at this step."""
        return self.terminated | self.truncated
