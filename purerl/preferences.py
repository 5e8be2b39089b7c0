"""L1: the maths of learning from preferences (RLHF): the Bradley–Terry loss of a reward model,
per-token log-probabilities and the KL to a reference model, the KL-penalised reward
``r(x, y) − β·KL`` spread over tokens, and the adaptive KL coefficient.

Arrays in, arrays out, no networks: a language model's logits ``[T, V]`` (or ``[*B, T, V]``)
and token ids ``[T]`` are inputs, so every function here is checked against plain NumPy and
called eagerly from a homework loop or inside ``jit``.

References: Christiano et al. (2017), "Deep reinforcement learning from human preferences";
Ziegler et al. (2019), "Fine-Tuning Language Models from Human Preferences";
Stiennon et al. (2020), "Learning to summarize from human feedback";
Ouyang et al. (2022), "Training language models to follow instructions with human feedback".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

from purerl.policies import Categorical
from purerl.policy_gradient import masked_mean

__all__ = [
    "bradley_terry_loss",
    "preference_accuracy",
    "token_log_probs",
    "token_kl",
    "sequence_kl",
    "kl_penalized_rewards",
    "adaptive_kl_coefficient",
    "best_of_n_kl",
]


def bradley_terry_loss(
    r_chosen: Float[ArrayLike, "*B"],
    r_rejected: Float[ArrayLike, "*B"],
    *,
    mask: Bool[ArrayLike, "*B"] | None = None,
) -> Float[Array, ""]:
    """Negative log-likelihood of preferences under the Bradley–Terry model.

    ``L = −mean[ log σ(r_chosen − r_rejected) ]``, since ``P(chosen ≻ rejected) = σ(r_c − r_r)``

    Its gradient with respect to ``r_chosen`` is ``−(1 − σ(r_c − r_r)) / B``: a pair the model
    already orders confidently contributes little. Only reward differences matter: adding a
    constant to every reward leaves the loss unchanged.

    Args:
        r_chosen: rewards of the preferred responses, shape ``[*B]``.
        r_rejected: rewards of the other responses, shape ``[*B]``.
        mask: valid pairs (default: all).

    Example:
        >>> bradley_terry_loss(jnp.array([1.0]), jnp.array([0.0]))   # −log σ(1)
        Array(0.31326166, dtype=float32)

    Reference: Bradley & Terry (1952); Christiano et al. (2017), eq. 1; Ouyang et al. (2022),
    eq. 1.
    """
    margin = jnp.asarray(r_chosen) - jnp.asarray(r_rejected)
    return masked_mean(-jax.nn.log_sigmoid(margin), mask)


def preference_accuracy(
    r_chosen: Float[ArrayLike, "*B"], r_rejected: Float[ArrayLike, "*B"]
) -> Float[Array, ""]:
    """Fraction of pairs the rewards order as the raters did (``r_chosen > r_rejected``); a tie
    counts half. Chance is 0.5."""
    r_chosen, r_rejected = jnp.asarray(r_chosen), jnp.asarray(r_rejected)
    wins = (r_chosen > r_rejected).astype(jnp.float32)
    ties = (r_chosen == r_rejected).astype(jnp.float32)
    return jnp.mean(wins + 0.5 * ties)


def token_log_probs(
    logits: Float[ArrayLike, "*B T V"], tokens: Int[ArrayLike, "*B T"]
) -> Float[Array, "*B T"]:
    """``log π(y_t | y_<t)`` of each token: ``log_softmax(logits)[t, tokens[t]]``.

    ``logits[t]`` must be the model's prediction *for* ``tokens[t]`` (shift a causal model's
    output by one position first: its output at ``t`` predicts the token at ``t + 1``).

    Example:
        >>> token_log_probs(jnp.log(jnp.array([[0.25, 0.75]])), jnp.array([1]))
        Array([-0.28768206], dtype=float32)
    """
    return Categorical(jnp.asarray(logits)).log_prob(jnp.asarray(tokens))


def token_kl(
    logits: Float[ArrayLike, "*B T V"], ref_logits: Float[ArrayLike, "*B T V"]
) -> Float[Array, "*B T"]:
    """Exact per-position KL of the next-token distributions, ``KL(π(·|y_<t) ‖ π_ref(·|y_<t))``
    ``= Σ_v π(v) (log π(v) − log π_ref(v))``, shape ``[*B, T]``.

    Summed over the positions of a sequence sampled from ``π``, it is an unbiased estimate of
    the sequence-level ``KL(π ‖ π_ref)`` with lower variance than the sampled log-ratios.
    """
    log_p = jax.nn.log_softmax(jnp.asarray(logits), axis=-1)
    log_q = jax.nn.log_softmax(jnp.asarray(ref_logits), axis=-1)
    p = jnp.exp(log_p)
    # 0·log 0 = 0: a token the policy never emits adds nothing, whatever π_ref says of it.
    # The mask sits inside the product so that no 0·(−inf) reaches the gradient either.
    return jnp.sum(p * jnp.where(p > 0, log_p - log_q, 0.0), axis=-1)


def sequence_kl(
    log_probs: Float[ArrayLike, "*B T"],
    ref_log_probs: Float[ArrayLike, "*B T"],
    *,
    mask: Bool[ArrayLike, "*B T"] | None = None,
) -> Float[Array, "*B"]:
    """Sampled estimate of ``KL(π ‖ π_ref)`` for each sequence:
    ``Σ_t (log π(y_t) − log π_ref(y_t))`` over its valid tokens (the ``k1`` estimator;
    unbiased when ``y ~ π``, but any one sequence can come out negative)."""
    diff = jnp.asarray(log_probs) - jnp.asarray(ref_log_probs)
    if mask is not None:
        diff = jnp.where(jnp.asarray(mask, bool), diff, 0.0)
    return jnp.sum(diff, axis=-1)


def kl_penalized_rewards(
    scores: Float[ArrayLike, "*B"],
    log_probs: Float[ArrayLike, "*B T"],
    ref_log_probs: Float[ArrayLike, "*B T"],
    beta: Real[ArrayLike, ""],
) -> Float[Array, "*B T"]:
    """Per-token rewards of RLHF: ``r_t = −β·(log π(y_t) − log π_ref(y_t))``, plus the reward
    model's score ``r(x, y)`` at the last token.

    Their undiscounted sum is ``r(x, y) − β·log(π(y|x)/π_ref(y|x))``, whose expectation under
    ``π`` is ``E[r] − β·KL(π ‖ π_ref)``: the objective of Ziegler et al. (2019), eq. 2. The
    log-probabilities are of the sampled tokens, constants of the rollout (``stop_gradient``).

    Example:
        >>> kl_penalized_rewards(jnp.array(1.0), jnp.array([-1.0, -1.0]),
        ...                      jnp.array([-2.0, -1.0]), 0.5)
        Array([-0.5,  1. ], dtype=float32)
    """
    log_ratio = jax.lax.stop_gradient(jnp.asarray(log_probs) - jnp.asarray(ref_log_probs))
    rewards = -beta * log_ratio
    return rewards.at[..., -1].add(jnp.asarray(scores, rewards.dtype))


def adaptive_kl_coefficient(
    beta: Real[ArrayLike, ""],
    kl: Real[ArrayLike, ""],
    target: Real[ArrayLike, ""],
    *,
    gain: Real[ArrayLike, ""] = 0.1,
    max_error: Real[ArrayLike, ""] = 0.2,
) -> Float[Array, ""]:
    """One step of the adaptive KL controller: raise ``β`` when the measured KL is above its
    target, lower it when below.

    ``e = clip(KL / KL_target − 1, −max_error, max_error)``, ``β ← β·(1 + gain·e)``

    Args:
        beta: the current coefficient ``β ≥ 0``.
        kl: the KL measured on the last batch (per sequence).
        target: the KL to hold, ``KL_target > 0``.
        gain: ``K_β``, the proportional gain (0.1 in the paper).
        max_error: clip of the proportional error (0.2 in the paper).

    Example:
        >>> adaptive_kl_coefficient(0.1, 12.0, 6.0)     # e = clip(1, ±0.2) = 0.2
        Array(0.102, dtype=float32, weak_type=True)

    Reference: Ziegler et al. (2019), §2.2 (``β_{t+1} = β_t(1 + K_β e_t)``, ``K_β = 0.1``).
    """
    error = jnp.clip(jnp.asarray(kl) / target - 1.0, -max_error, max_error)
    return beta * (1.0 + gain * error)


def best_of_n_kl(n: Int[ArrayLike, ""]) -> Float[Array, ""]:
    """KL of best-of-``n`` sampling to the sampling model: ``log n − (n − 1)/n`` (exact when
    the ``n`` rewards have no ties). Best-of-1 is the model itself, KL 0.

    Reference: Stiennon et al. (2020), appendix G.3; Hilton & Gao (2022), "Measuring
    Goodhart's law".
    """
    n = jnp.asarray(n, jnp.float32)
    return jnp.log(n) - (n - 1.0) / n
