"""RLHF in miniature: pretrain a small causal transformer, fit a reward model to preferences,
then fine-tune the language model with PPO against the reward model on a KL leash.

The pipeline of Ziegler et al. (2019) and Ouyang et al. (2022), at a size that trains on a
laptop CPU in a minute, on the tiny language of ``purerl.envs.text`` (a random grammar; hidden
raters who like a rare word and dislike ungrammatical text):

1. **pretrain** (``pretrain``): next-token cross-entropy on sequences of the grammar;
2. **preferences** (``collect_preferences``): pairs of samples of the pretrained model, the
   preferred one picked by the hidden raters (noisy Bradley–Terry, ``envs.text.rate``);
3. **reward model** (``fit_reward_model``): the pretrained transformer with a fresh scalar head
   at the last token, trained on the Bradley–Terry loss; its scores are then normalised to mean
   0 and standard deviation 1 on the pretrained model's samples (Ziegler et al. 2019, §2.2;
   ``from_models`` builds the PPO stage's state from models trained already);
4. **PPO** (``step``): sample ``num_envs`` responses from the policy, score them with the
   reward model, and spread ``r(x, y) − β·log(π(y)/π_ref(y))`` over the tokens
   (``preferences.kl_penalized_rewards``); GAE over tokens (``returns.gae``, γ = 1), then the
   clipped surrogate and value loss of ``ppo`` (the same ``policy_gradient.ppo_objective``)
   in minibatch epochs (``rollout.minibatch_epochs``). ``kl_controller="adaptive"`` moves β
   towards ``kl_target`` (``preferences.adaptive_kl_coefficient``).

Steps 1–3 run in ``init``; ``step`` is one PPO iteration, so RLHF is an algorithm on the contract:
``purerl train rlhf --seeds 8 --sweep beta=0,0.05,0.2`` sweeps β over seeds in one compile, with
the usual results folder, curves and plots. Evaluation samples ``eval_envs`` responses in the
``TextPreference-v0`` environment, whose reward is the hidden raters' score: ``eval_return``
is the hidden score of the current policy (the reward model never sees it). The metrics of each
iteration include the reward model's score (``reward``), the KL to the reference per sequence
(``kl``, exact over the vocabulary along the sampled prefixes), β, and the reward model's
held-out accuracy (``reward_accuracy``).

``total_steps`` and ``eval_every`` count generated tokens (``num_envs × length`` per iteration).

Example:
    >>> config = rlhf.Config(beta=0.05)
    >>> state, metrics = jax.jit(rlhf.make_train(config))(jax.random.PRNGKey(0))
    >>> metrics["eval_return"], metrics["kl"][-1]   # hidden score per evaluation; final KL
"""

from __future__ import annotations

from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray, Real

from purerl.algorithms.actor_critic import apply_gradients, minibatch_update
from purerl.algorithms.common import check_numbers, require, require_one_of, require_positive
from purerl.algorithms.core import Algorithm, Policy, build_network, register
from purerl.algorithms.rollout import minibatch_epochs
from purerl.envs import VecEnv, text
from purerl.language import CausalTransformer, sample, score_tokens, sequence_reward
from purerl.policies import Categorical
from purerl.policy_gradient import ppo_objective
from purerl.preferences import (
    adaptive_kl_coefficient,
    bradley_terry_loss,
    kl_penalized_rewards,
    preference_accuracy,
    token_kl,
)
from purerl.returns import gae

__all__ = [
    "Config",
    "State",
    "Preferences",
    "init",
    "from_models",
    "step",
    "pretrain",
    "collect_preferences",
    "fit_reward_model",
    "generate",
    "best_of_n",
    "token_ppo_loss",
    "check_models",
    "task_of",
    "ALGORITHM",
    "make_train",
    "schedule",
]

KL_CONTROLLERS = ("fixed", "adaptive")
POSITIVE = (
    "total_steps",
    "eval_every",
    "eval_envs",
    "num_envs",
    "vocab_size",
    "length",
    "width",
    "heads",
    "pretrain_steps",
    "pretrain_batch",
    "num_pairs",
    "heldout_pairs",
    "reward_steps",
    "reward_batch",
    "update_epochs",
    "num_minibatches",
)


class Config(eqx.Module):
    """RLHF hyperparameters, each ``field [default]: meaning``.

    The task and the models:

    - ``env_id`` ["TextPreference-v0"]: the language with hidden raters (``envs.text``).
    - ``vocab_size`` [12], ``length`` [16]: tokens (BOS included) and response length.
    - ``width`` [32], ``depth`` [2], ``heads`` [2]: the causal transformer (policy, reference
      and reward model share the architecture).

    The stages before PPO (all in ``init``):

    - ``pretrain_steps`` [500], ``pretrain_batch`` [64], ``pretrain_learning_rate`` [3e-3]:
      next-token cross-entropy on fresh corpus batches (Adam).
    - ``num_pairs`` [2,048], ``heldout_pairs`` [512], ``rater_temperature`` [0.05]: preference
      pairs sampled from the pretrained model, those held out to measure the reward model, and
      the raters' noise ``τ`` (``P(a ≻ b) = σ((score(a) − score(b))/τ)``).
    - ``reward_steps`` [500], ``reward_batch`` [64], ``reward_learning_rate`` [1e-3]: the
      reward model's Bradley–Terry training (Adam).

    PPO on tokens:

    - ``total_steps`` [102,400], ``eval_every`` [10,240]: generated tokens (``num_envs ×
      length`` = 1,024 per iteration: 100 iterations, an evaluation every 10).
    - ``num_envs`` [64]: responses sampled per iteration; ``eval_envs`` [256]: per evaluation.
    - ``learning_rate`` [3e-4], ``max_grad_norm`` [1.0], ``update_epochs`` [4],
      ``num_minibatches`` [4], ``clip_eps`` [0.2], ``value_coef`` [0.5],
      ``entropy_coef`` [0.0], ``gamma`` [1.0], ``lambda_`` [0.95]: PPO over the tokens of the
      responses (Ziegler et al. 2019 use γ = 1, λ = 0.95, 4 epochs, clip 0.2).
    - ``beta`` [0.05]: the KL coefficient β (Stiennon et al. 2020's value; the starting
      value with the adaptive controller); 0 removes the leash. On this task
      (``python benchmarks/rlhf.py``, 8 seeds) β = 0.01 reaches a higher hidden score at twice
      the KL, and β = 0 is hacked: the reward model's score keeps rising as the hidden one falls.
    - ``kl_controller`` ["fixed"], ``kl_target`` [2.0], ``kl_gain`` [0.1]: ``"adaptive"`` moves
      β after each iteration towards a per-sequence KL of ``kl_target`` (Ziegler et al. 2019,
      §2.2, ``K_β = 0.1``).
    """

    env_id: str = eqx.field(static=True, default="TextPreference-v0")
    total_steps: int = eqx.field(static=True, default=102_400)
    eval_every: int = eqx.field(static=True, default=10_240)
    eval_envs: int = eqx.field(static=True, default=256)
    num_envs: int = eqx.field(static=True, default=64)
    vocab_size: int = eqx.field(static=True, default=12)
    length: int = eqx.field(static=True, default=16)
    width: int = eqx.field(static=True, default=32)
    depth: int = eqx.field(static=True, default=2)
    heads: int = eqx.field(static=True, default=2)
    pretrain_steps: int = eqx.field(static=True, default=500)
    pretrain_batch: int = eqx.field(static=True, default=64)
    num_pairs: int = eqx.field(static=True, default=2_048)
    heldout_pairs: int = eqx.field(static=True, default=512)
    reward_steps: int = eqx.field(static=True, default=500)
    reward_batch: int = eqx.field(static=True, default=64)
    update_epochs: int = eqx.field(static=True, default=4)
    num_minibatches: int = eqx.field(static=True, default=4)
    kl_controller: str = eqx.field(static=True, default="fixed")
    pretrain_learning_rate: Real[ArrayLike, ""] = 3e-3
    reward_learning_rate: Real[ArrayLike, ""] = 1e-3
    rater_temperature: Real[ArrayLike, ""] = 0.05
    learning_rate: Real[ArrayLike, ""] = 3e-4
    max_grad_norm: Real[ArrayLike, ""] = 1.0
    clip_eps: Real[ArrayLike, ""] = 0.2
    value_coef: Real[ArrayLike, ""] = 0.5
    entropy_coef: Real[ArrayLike, ""] = 0.0
    gamma: Real[ArrayLike, ""] = 1.0
    lambda_: Real[ArrayLike, ""] = 0.95
    beta: Real[ArrayLike, ""] = 0.05
    kl_target: Real[ArrayLike, ""] = 2.0
    kl_gain: Real[ArrayLike, ""] = 0.1

    def __check_init__(self):
        check_numbers(self)
        require_positive(self, POSITIVE)
        require(self.depth >= 0, "depth", f"must be >= 0, got {self.depth}")
        require(self.width % self.heads == 0, "heads", f"must divide width={self.width}")
        require(self.vocab_size >= 5, "vocab_size", f"must be >= 5, got {self.vocab_size}")
        require_one_of(self, "kl_controller", KL_CONTROLLERS)
        require(
            self.heldout_pairs < self.num_pairs,
            "heldout_pairs",
            f"must be < num_pairs={self.num_pairs}, got {self.heldout_pairs}",
        )
        require(
            self.num_envs % self.num_minibatches == 0,
            "num_minibatches",
            f"must divide num_envs={self.num_envs}, got {self.num_minibatches}",
        )
        for name in ("beta", "entropy_coef", "value_coef"):
            require(getattr(self, name) >= 0, name, f"must be >= 0, got {getattr(self, name)}")
        require_positive(
            self,
            (
                "pretrain_learning_rate",
                "reward_learning_rate",
                "rater_temperature",
                "learning_rate",
                "max_grad_norm",
                "clip_eps",
                "kl_target",
                "kl_gain",
            ),
        )
        for name in ("gamma", "lambda_"):
            v = getattr(self, name)
            require((v >= 0) & (v <= 1), name, f"must be in [0, 1], got {v}")


class Preferences(NamedTuple):
    """Preference pairs: ``chosen[i]`` was preferred to ``rejected[i]`` (``[P, length + 1]``)."""

    chosen: Int[Array, "P T"]
    rejected: Int[Array, "P T"]


class State(eqx.Module):
    """RLHF's state: the policy (with its value head), the frozen reference and reward model,
    the reward normalisation, the optimizer state, β, and what the early stages measured."""

    policy: CausalTransformer
    reference: CausalTransformer
    reward_model: CausalTransformer
    reward_mean: Float[Array, ""]
    reward_std: Float[Array, ""]
    opt_state: Any
    beta: Float[Array, ""]
    key: PRNGKeyArray
    iteration: Int[Array, ""]
    diagnostics: dict[str, Array]
    config: Config

    @property
    def env_steps(self) -> Int[Array, ""]:
        """Tokens generated by PPO so far (``num_envs × length`` per iteration)."""
        return self.iteration * _iteration_steps(self.config)


def task_of(config: Config) -> text.TextTask:
    """The language and hidden raters of ``config`` (``vocab_size``, ``length``)."""
    return text.make_task(vocab_size=config.vocab_size, length=config.length)


def _iteration_steps(config: Config) -> int:
    return config.num_envs * config.length


def make_env(config: Config, num_envs: int) -> VecEnv:
    """``TextPreference-v0`` on the config's task: where evaluation samples responses."""
    return VecEnv.make(config.env_id, num_envs=num_envs, task=task_of(config))


def check(config: Config) -> None:
    """The env is the text task (the only one with hidden raters)."""
    require(
        config.env_id == "TextPreference-v0",
        "env_id",
        f"rlhf trains language models on 'TextPreference-v0', got {config.env_id!r}",
    )


def check_models(config: Config, *models: Any) -> None:
    """Every model reads the task's tokens: ``vocab_size`` equal to the config's and room for
    a whole sequence (``max_len ≥ length + 1``).

    Raises:
        ValueError: ``network: ...`` naming the mismatch (a reward model and a policy over
            different vocabularies cannot be paired).
    """
    for model in models:
        module = getattr(model, "module", model)  # a UserNetwork wraps the user's module
        vocab, max_len = getattr(module, "vocab_size", None), getattr(module, "max_len", None)
        require(
            vocab == config.vocab_size,
            "network",
            f"{type(module).__name__} has vocab_size={vocab}, the task has {config.vocab_size}",
        )
        require(
            max_len is not None and max_len >= config.length + 1,
            "network",
            f"max_len={max_len} is shorter than a sequence ({config.length + 1} tokens)",
        )


def generate(
    lm: CausalTransformer, key: PRNGKeyArray, num: int, length: int
) -> Int[Array, "num T"]:
    """``num`` responses ``[BOS, y_1 .. y_length]`` sampled from ``lm`` (one key each)."""
    return jax.vmap(lambda k: sample(lm, k, length))(jax.random.split(key, num))


def _lm_loss(lm: CausalTransformer, tokens: Int[Array, "B T"]) -> Float[Array, ""]:
    return -jnp.mean(jax.vmap(score_tokens, (None, 0))(lm, tokens)[0])


def _adam_steps(model, key, steps, loss, learning_rate):
    """``steps`` Adam steps on ``loss(model, key)`` (a fresh key each step): the model and
    the losses."""
    optimizer = optax.adam(learning_rate)

    def update(carry, k):
        model, opt_state = carry
        value, grads = eqx.filter_value_and_grad(loss)(model, k)
        model, opt_state = apply_gradients(model, opt_state, grads, optimizer)
        return (model, opt_state), value

    opt_state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))
    (model, _), losses = jax.lax.scan(update, (model, opt_state), jax.random.split(key, steps))
    return model, losses


def pretrain(
    key: PRNGKeyArray, config: Config, lm: CausalTransformer
) -> tuple[CausalTransformer, Float[Array, " steps"]]:
    """Stage 1: ``pretrain_steps`` Adam steps of next-token cross-entropy, each on a fresh
    batch of the grammar's corpus. Returns the model and the loss of each step (nats/token;
    the grammar's own entropy rate is the floor)."""
    task = task_of(config)

    def loss(lm, k):
        return _lm_loss(lm, text.sample_corpus(task, k, config.pretrain_batch))

    return _adam_steps(lm, key, config.pretrain_steps, loss, config.pretrain_learning_rate)


def collect_preferences(key: PRNGKeyArray, config: Config, lm: CausalTransformer) -> Preferences:
    """Stage 2: ``num_pairs`` pairs of responses sampled from ``lm``, ordered by the hidden
    raters (``envs.text.rate``, noise ``rater_temperature``)."""
    task = task_of(config)
    sample_key, rate_key = jax.random.split(key)
    a, b = generate(lm, sample_key, 2 * config.num_pairs, config.length).reshape(
        2, config.num_pairs, -1
    )
    a_wins = text.rate(task, rate_key, a, b, temperature=config.rater_temperature)[:, None]
    return Preferences(jnp.where(a_wins, a, b), jnp.where(a_wins, b, a))


def _rewards(rm: CausalTransformer, tokens: Int[Array, "B T"]) -> Float[Array, " B"]:
    return jax.vmap(sequence_reward, (None, 0))(rm, tokens)


def fit_reward_model(
    key: PRNGKeyArray,
    config: Config,
    lm: CausalTransformer,
    preferences: Preferences,
    *,
    reward_model: CausalTransformer | None = None,
) -> tuple[CausalTransformer, dict[str, Array]]:
    """Stage 3: the reward model (``lm`` with a fresh scalar head, or ``reward_model``)
    trained with the Bradley–Terry loss on all pairs but the first ``heldout_pairs``.

    Returns:
        ``(reward_model, info)``: ``reward_loss`` per step, ``reward_accuracy`` (held-out
        pairs ordered as the raters did; chance 0.5, and the raters' own noise caps it) and
        ``reward_agreement`` (held-out pairs whose hidden scores differ, ordered as the hidden
        rule orders them).

    Raises:
        ValueError: a reward model whose vocabulary is not the task's.
    """
    head_key, key = jax.random.split(key)
    if reward_model is None:
        head = eqx.nn.Linear(lm.value_head.in_features, 1, key=head_key)
        reward_model = eqx.tree_at(lambda m: m.value_head, lm, head)
    check_models(config, lm, reward_model)
    held = jax.tree.map(lambda x: x[: config.heldout_pairs], preferences)
    train = jax.tree.map(lambda x: x[config.heldout_pairs :], preferences)

    def loss(rm, k):
        idx = jax.random.randint(k, (config.reward_batch,), 0, train.chosen.shape[0])
        return bradley_terry_loss(
            _rewards(rm, train.chosen[idx]), _rewards(rm, train.rejected[idx])
        )

    rm, losses = _adam_steps(
        reward_model, key, config.reward_steps, loss, config.reward_learning_rate
    )
    r_chosen, r_rejected = _rewards(rm, held.chosen), _rewards(rm, held.rejected)
    task = task_of(config)
    s_chosen, s_rejected = (
        text.hidden_score(task, held.chosen),
        text.hidden_score(task, held.rejected),
    )
    differ = s_chosen != s_rejected
    agrees = (r_chosen > r_rejected) == (s_chosen > s_rejected)
    agreement = jnp.sum(differ & agrees) / jnp.maximum(jnp.sum(differ), 1)
    info = {
        "reward_loss": losses,
        "reward_accuracy": preference_accuracy(r_chosen, r_rejected),
        "reward_agreement": agreement,
    }
    return rm, info


def best_of_n(
    key: PRNGKeyArray,
    lm: CausalTransformer,
    reward_model: CausalTransformer,
    n: int,
    num: int,
    length: int,
) -> Int[Array, "num T"]:
    """The baseline RLHF must beat: for each of ``num`` responses, sample ``n`` from ``lm`` and
    keep the one the reward model scores highest (its KL to ``lm`` is at most
    ``preferences.best_of_n_kl(n)``)."""
    tokens = generate(lm, key, num * n, length)
    scores = _rewards(reward_model, tokens).reshape(num, n)
    best = jnp.argmax(scores, axis=1)
    return tokens.reshape(num, n, -1)[jnp.arange(num), best]


def _optimizer(c: Config) -> optax.GradientTransformation:
    return optax.chain(optax.clip_by_global_norm(c.max_grad_norm), optax.adam(c.learning_rate))


def _default_lm(config: Config, key: PRNGKeyArray) -> CausalTransformer:
    return CausalTransformer(
        config.vocab_size,
        config.length + 1,
        width=config.width,
        depth=config.depth,
        heads=config.heads,
        key=key,
    )


def init(key: PRNGKeyArray, config: Config, *, network: Any = None) -> State:
    """Stages 1–3: pretrain the language model (``network``: a ``CausalTransformer`` of the
    task's vocabulary, or a factory; default from ``width/depth/heads``), collect preferences,
    fit and normalise the reward model; the policy and the frozen reference start as the
    pretrained model."""
    net_key, pre_key, pref_key, rm_key, key = jax.random.split(key, 5)
    lm = build_network(network, net_key, make_env(config, 1), lambda k: _default_lm(config, k))
    check_models(config, lm)
    lm, pretrain_losses = pretrain(pre_key, config, lm)
    preferences = collect_preferences(pref_key, config, lm)
    rm, info = fit_reward_model(rm_key, config, lm, preferences)
    diagnostics = {
        "pretrain_loss": jnp.mean(pretrain_losses[-10:]),
        "reward_accuracy": info["reward_accuracy"],
        "reward_agreement": info["reward_agreement"],
    }
    return from_models(key, config, lm, rm, preferences, diagnostics=diagnostics)


def from_models(
    key: PRNGKeyArray,
    config: Config,
    lm: CausalTransformer,
    reward_model: CausalTransformer,
    preferences: Preferences,
    *,
    diagnostics: dict[str, Array] | None = None,
) -> State:
    """The PPO stage's state from models trained already: the policy and the frozen reference
    start as ``lm``; the reward model's scores are normalised to mean 0, standard deviation 1
    over the responses of ``preferences`` (samples of ``lm``). ``diagnostics`` (default:
    NaN-free zeros) are reported with every iteration's metrics.

    Raises:
        ValueError: a model whose vocabulary is not the task's.
    """
    check_models(config, lm, reward_model)
    responses = jnp.concatenate([preferences.chosen, preferences.rejected])
    scores = _rewards(reward_model, responses)
    if diagnostics is None:
        zero = jnp.zeros((), jnp.float32)
        diagnostics = dict.fromkeys(("pretrain_loss", "reward_accuracy", "reward_agreement"), zero)
    opt_state = _optimizer(config).init(eqx.filter(lm, eqx.is_inexact_array))
    beta = jnp.asarray(config.beta, jnp.float32)
    return State(
        lm, lm, reward_model, jnp.mean(scores), jnp.std(scores) + 1e-6, opt_state, beta, key,
        jnp.int32(0), diagnostics, config,
    )  # fmt: skip


def _rollout(state: State, key: PRNGKeyArray) -> tuple[dict[str, Array], dict[str, Array]]:
    """Responses of the policy, their rewards (score − β·log-ratio per token), GAE and the
    statistics of the batch."""
    c = state.config
    tokens = generate(state.policy, key, c.num_envs, c.length)
    log_probs, logits, values = jax.vmap(score_tokens, (None, 0))(state.policy, tokens)
    ref_log_probs, ref_logits, _ = jax.vmap(score_tokens, (None, 0))(state.reference, tokens)
    score = (_rewards(state.reward_model, tokens) - state.reward_mean) / state.reward_std
    rewards = kl_penalized_rewards(score, log_probs, ref_log_probs, state.beta)
    # the response ends after its last token: no bootstrap there, γ between tokens
    discount = jnp.full_like(rewards, c.gamma).at[:, -1].set(0.0)
    next_values = jnp.concatenate([values[:, 1:], jnp.zeros_like(values[:, :1])], axis=1)
    advantages = gae(rewards.T, discount.T, values.T, next_values.T, c.lambda_).T
    batch = {
        "tokens": tokens,
        "log_prob": log_probs,
        "value": values,
        "advantages": advantages,
        "returns": advantages + values,
    }
    stats = {
        "reward": jnp.mean(score),
        "kl": jnp.mean(jnp.sum(token_kl(logits, ref_logits), axis=-1)),
        "kl_sampled": jnp.mean(jnp.sum(log_probs - ref_log_probs, axis=-1)),
        "hidden_score": jnp.mean(text.hidden_score(task_of(c), tokens)),
    }
    return batch, stats


def token_ppo_loss(
    policy: CausalTransformer, batch: dict[str, Array], config: Config
) -> tuple[Float[Array, ""], dict[str, Array]]:
    """PPO on token-level actions: every generated token is an action, the prefix its state;
    ``policy_gradient.ppo_objective`` (the loss of ``ppo``) over ``[B, length]`` with the
    advantages whitened over the minibatch and the value loss clipped around the old values."""
    log_probs, logits, values = jax.vmap(score_tokens, (None, 0))(policy, batch["tokens"])
    adv = batch["advantages"]
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return ppo_objective(
        log_probs - jax.lax.stop_gradient(batch["log_prob"]),
        adv,
        values,
        batch["returns"],
        Categorical(logits).entropy(),
        clip_eps=config.clip_eps,
        value_coef=config.value_coef,
        entropy_coef=config.entropy_coef,
        old_values=batch["value"],
        value_clip_eps=config.clip_eps,
    )


def step(state: State) -> tuple[State, dict[str, Array]]:
    """One PPO iteration: sample ``num_envs`` responses, reward them, minibatch epochs of
    clipped updates; with the adaptive controller, move β towards ``kl_target``."""
    c = state.config
    key, rollout_key, epoch_key = jax.random.split(state.key, 3)
    batch, stats = _rollout(state, rollout_key)
    (policy, opt_state), info = minibatch_epochs(
        minibatch_update(token_ppo_loss, _optimizer(c), c),
        (state.policy, state.opt_state),
        epoch_key,
        batch,
        epochs=c.update_epochs,
        num_minibatches=c.num_minibatches,
    )
    beta = state.beta
    if c.kl_controller == "adaptive":
        beta = adaptive_kl_coefficient(beta, stats["kl"], c.kl_target, gain=c.kl_gain)
    state = eqx.tree_at(
        lambda s: (s.policy, s.opt_state, s.beta, s.key, s.iteration),
        state,
        (policy, opt_state, beta, key, state.iteration + 1),
    )
    metrics = {**jax.tree.map(jnp.mean, info), **stats, **state.diagnostics}
    return state, {**metrics, "beta": state.beta, "env_steps": state.env_steps}


def greedy_policy(state: State) -> Policy:
    """How the policy is evaluated: it SAMPLES the next token (a language model is judged by
    its samples), from observations ``[tokens, position]`` of ``TextPreference-v0``."""

    def act(lm, key, obs, carry, first):
        tokens = obs[:, :-1].astype(jnp.int32)
        position = obs[:, -1].astype(jnp.int32)
        logits = jax.vmap(lambda tok, t: lm(tok)[0][t])(tokens, position)
        return Categorical(logits).sample(key), carry, {}

    return Policy(state.policy, act)


def quick_config() -> Config:
    """An RLHF run that goes through every stage in seconds (conformance tests). ``depth=0``
    (embeddings and heads only: a bigram model, which the grammar's Markov chain needs, and
    half the compile time of one block)."""
    return Config(
        total_steps=2 * 8 * 16,
        eval_every=8 * 16,
        eval_envs=8,
        num_envs=8,
        width=16,
        depth=0,
        pretrain_steps=20,
        pretrain_batch=16,
        num_pairs=64,
        heldout_pairs=16,
        reward_steps=10,
        reward_batch=16,
        update_epochs=2,
        num_minibatches=2,
    )


ALGORITHM = register(
    Algorithm(
        name="rlhf",
        Config=Config,
        init=init,
        step=step,
        greedy_policy=greedy_policy,
        iteration_steps=_iteration_steps,
        quick_config=quick_config,
        check=check,
        make_env=make_env,
    )
)
make_train = ALGORITHM.make_train
schedule = ALGORITHM.schedule
