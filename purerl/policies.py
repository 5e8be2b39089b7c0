"""L1: action selection: greedy and ε-greedy on Q-values, exploration schedules, the
categorical, diagonal-Gaussian and tanh-squashed Gaussian policy distributions (sample,
log-prob, entropy), and the map between ``[-1, 1]`` actions and an environment's box."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

__all__ = [
    "greedy",
    "epsilon_greedy",
    "linear_schedule",
    "Categorical",
    "DiagGaussian",
    "TanhGaussian",
    "clip_action",
    "scale_action",
    "unscale_action",
]


def greedy(q_values: Float[ArrayLike, "... n_actions"]) -> Int[Array, "..."]:
    """Index of the largest Q-value (first one on ties): ``argmax_a Q(s, a)``."""
    return jnp.argmax(q_values, axis=-1).astype(jnp.int32)


@jax.jit
def epsilon_greedy(
    key: PRNGKeyArray,
    q_values: Float[ArrayLike, "... n_actions"],
    epsilon: Real[ArrayLike, ""],
) -> Int[Array, "..."]:
    """With probability ε a uniformly random action, otherwise the greedy one.

    Each leading index (e.g. each of N parallel envs) draws independently. The random action
    can coincide with the greedy one, so the greedy action has probability ``1 − ε + ε/|A|``.

    Args:
        key: PRNG key.
        q_values: ``[..., n_actions]``.
        epsilon: exploration probability in ``[0, 1]`` (may be traced, e.g. from a schedule).

    Returns:
        Integer actions of shape ``q_values.shape[:-1]``.

    Example:
        >>> a = epsilon_greedy(key, q_net(obs), 0.1)

    Reference: Sutton & Barto (2018), §2.2; Mnih et al. (2015), "Human-level control...".
    """
    explore_key, action_key = jax.random.split(key)
    batch_shape = q_values.shape[:-1]
    explore = jax.random.uniform(explore_key, batch_shape) < epsilon
    random_actions = jax.random.randint(action_key, batch_shape, 0, q_values.shape[-1])
    return jnp.where(explore, random_actions, greedy(q_values)).astype(jnp.int32)


def linear_schedule(
    start: Real[ArrayLike, ""],
    end: Real[ArrayLike, ""],
    duration: Real[ArrayLike, ""],
    count: Real[ArrayLike, ""],
) -> Float[Array, ""]:
    """Linear interpolation from ``start`` to ``end`` over ``duration`` counts, then ``end``.

    ``value(c) = start + (end − start) · min(c / duration, 1)``; ``duration ≤ 0`` gives ``end``.

    Example:
        >>> eps = linear_schedule(1.0, 0.05, 50_000, env_steps)
    """
    duration = jnp.asarray(duration, dtype=jnp.float32)
    safe = jnp.where(duration > 0, duration, 1.0)  # no 0/0 in the branch thrown away
    frac = jnp.where(duration > 0, jnp.asarray(count, jnp.float32) / safe, 1.0)
    frac = jnp.clip(frac, 0.0, 1.0)
    return jnp.asarray(start, jnp.float32) + (jnp.asarray(end, jnp.float32) - start) * frac


class Categorical(eqx.Module):
    """Categorical distribution over ``n`` actions from unnormalised ``logits [..., n]``.

    Example:
        >>> dist = Categorical(logits)
        >>> a = dist.sample(key); logp = dist.log_prob(a); h = dist.entropy()
    """

    logits: Float[Array, "... n"]

    def sample(self, key: PRNGKeyArray) -> Int[Array, "..."]:
        """One action per leading index, ``P(a) = softmax(logits)[a]``."""
        return jax.random.categorical(key, self.logits, axis=-1).astype(jnp.int32)

    def log_prob(self, action: Int[ArrayLike, "..."]) -> Float[Array, "..."]:
        """``log softmax(logits)[action]``."""
        logp = jax.nn.log_softmax(self.logits, axis=-1)
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self) -> Float[Array, "..."]:
        """``−Σ_a p(a) log p(a)``, with ``0 · log 0 = 0``: an action masked out with a logit
        of ``−inf`` (an illegal move) adds nothing, where ``0 · (−inf)`` would be NaN."""
        logp = jax.nn.log_softmax(self.logits, axis=-1)
        p = jnp.exp(logp)
        return -jnp.sum(p * jnp.where(p > 0, logp, 0.0), axis=-1)

    def mode(self) -> Int[Array, "..."]:
        """The most likely action (greedy evaluation)."""
        return greedy(self.logits)


class DiagGaussian(eqx.Module):
    """Diagonal Gaussian over ``d``-dimensional actions: ``N(mean, diag(exp(log_std))²)``.

    Samples are unbounded; ``clip_action`` maps them into an environment's box when stepping,
    while the log-probability stays that of the unclipped sample (as in PPO's reference
    implementations: Schulman et al., 2017; Huang et al., 2022, "37 implementation details").
    """

    mean: Float[Array, "... d"]
    log_std: Float[Array, "... d"]

    def sample(self, key: PRNGKeyArray) -> Float[Array, "... d"]:
        """``mean + std · ε``, ``ε ~ N(0, I)``."""
        noise = jax.random.normal(key, jnp.shape(self.mean))
        return self.mean + jnp.exp(self._log_std()) * noise

    def log_prob(self, action: Float[ArrayLike, "... d"]) -> Float[Array, "..."]:
        """``Σ_i [−½((a_i − μ_i)/σ_i)² − log σ_i − ½ log 2π]``."""
        log_std = self._log_std()
        z = (action - self.mean) * jnp.exp(-log_std)
        return jnp.sum(-0.5 * jnp.square(z) - log_std - _HALF_LOG_2PI, axis=-1)

    def entropy(self) -> Float[Array, "..."]:
        """``Σ_i [log σ_i + ½(1 + log 2π)]``."""
        return jnp.sum(self._log_std() + 0.5 + _HALF_LOG_2PI, axis=-1)

    def _log_std(self) -> Float[Array, "... d"]:
        # one log-std vector may serve a whole batch of means
        return jnp.broadcast_to(self.log_std, jnp.shape(self.mean))

    def mode(self) -> Float[Array, "... d"]:
        """The mean action (greedy evaluation)."""
        return self.mean


_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))


def clip_action(
    action: Float[ArrayLike, "... d"], low: ArrayLike, high: ArrayLike
) -> Float[Array, "... d"]:
    """Clip a continuous action into the box ``[low, high]`` (bounds broadcast over leading
    batch axes) before it reaches the environment."""
    shape = jnp.shape(action)
    return jnp.clip(action, jnp.broadcast_to(low, shape), jnp.broadcast_to(high, shape))


def _log1m_tanh_sq(u: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """``log(1 − tanh(u)²) = 2·(log 2 − u − softplus(−2u))``, finite for every ``u``
    (the naive form is ``log 0`` once ``tanh`` rounds to ±1)."""
    return 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))


class TanhGaussian(eqx.Module):
    """``a = tanh(u)``, ``u ~ N(mean, diag(exp(log_std))²)``: actions in ``(−1, 1)^d``
    (SAC's squashed Gaussian; Haarnoja et al., 2018, appendix C).

    ``log π(a) = log N(u; μ, σ) − Σ_i log(1 − tanh(u_i)²)`` (change of variables).
    ``sample_and_log_prob`` computes it from the pre-squash ``u`` (exact and finite);
    ``log_prob(a)`` inverts ``a`` with ``arctanh`` after clipping it just inside ``(−1, 1)``.
    Map the actions to an environment's box with ``scale_action``.
    """

    mean: Float[Array, "... d"]
    log_std: Float[Array, "... d"]

    def _base(self) -> DiagGaussian:
        return DiagGaussian(self.mean, self.log_std)

    def sample_and_log_prob(self, key: PRNGKeyArray) -> tuple[Float[Array, "... d"], Array]:
        """A reparameterised sample ``tanh(μ + σ·ε)`` and its log-probability (gradients
        flow to ``mean`` and ``log_std`` through both)."""
        u = self._base().sample(key)
        log_prob = self._base().log_prob(u) - jnp.sum(_log1m_tanh_sq(u), axis=-1)
        return jnp.tanh(u), log_prob

    def sample(self, key: PRNGKeyArray) -> Float[Array, "... d"]:
        """``tanh(μ + σ·ε)``, ``ε ~ N(0, I)``."""
        return jnp.tanh(self._base().sample(key))

    def log_prob(self, action: Float[ArrayLike, "... d"]) -> Float[Array, "..."]:
        """``log π(a)`` for actions in ``(−1, 1)`` (clipped to ``±(1 − 1e-6)`` first)."""
        a = jnp.clip(action, -1.0 + 1e-6, 1.0 - 1e-6)
        u = jnp.arctanh(a)
        return self._base().log_prob(u) - jnp.sum(_log1m_tanh_sq(u), axis=-1)

    def mode(self) -> Float[Array, "... d"]:
        """``tanh(mean)``: the deterministic action (greedy evaluation)."""
        return jnp.tanh(self.mean)


def scale_action(
    action: Float[ArrayLike, "... d"], low: ArrayLike, high: ArrayLike
) -> Float[Array, "... d"]:
    """Map an action in ``[−1, 1]`` to the box ``[low, high]``:
    ``low + (a + 1)·(high − low)/2`` (the one place squashed actors meet env bounds)."""
    action = jnp.asarray(action)
    low, high = _box_like(action, low, high)
    return low + (action + 1.0) * 0.5 * (high - low)


def unscale_action(
    action: Float[ArrayLike, "... d"], low: ArrayLike, high: ArrayLike
) -> Float[Array, "... d"]:
    """Inverse of ``scale_action``: an action in ``[low, high]`` back to ``[−1, 1]``."""
    action = jnp.asarray(action)
    low, high = _box_like(action, low, high)
    return 2.0 * (action - low) / (high - low) - 1.0


def _box_like(action: Array, low: ArrayLike, high: ArrayLike) -> tuple[Array, Array]:
    # bounds [d] over actions [N, d]: explicit, so rank promotion "raise" accepts it
    shape = jnp.shape(action)
    return jnp.broadcast_to(low, shape), jnp.broadcast_to(high, shape)
