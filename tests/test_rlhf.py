"""RLHF in miniature (``purerl.algorithms.rlhf``): the token-level PPO loss is ``ppo``'s, bad
input is refused before compile, and the whole pipeline (pretrain → preferences → reward model
→ PPO on a KL leash) does what RLHF promises on a tiny budget: a reward model far above chance,
a hidden-rule score that rises while the KL stays bounded, a larger KL without the leash."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl import policy_gradient
from purerl.algorithms import ppo, rlhf
from purerl.envs import text
from purerl.language import CausalTransformer

# A small pipeline that still learns: 300 pretraining steps, 1,024 pairs (256 held out),
# 40 PPO iterations of 32 responses.
SMALL = rlhf.Config(
    pretrain_steps=300,
    num_pairs=1024,
    heldout_pairs=256,
    reward_steps=300,
    num_envs=32,
    total_steps=32 * 16 * 40,
    eval_every=32 * 16 * 20,
    eval_envs=256,
)


def _train_betas(config: rlhf.Config, betas, key):
    """``make_train`` vmapped over β (a float leaf of the config): one compile."""

    def one(beta):
        return rlhf.make_train(dataclasses.replace(config, beta=beta))(key)

    return jax.jit(jax.vmap(one))(jnp.asarray(betas, jnp.float32))


@pytest.fixture(scope="module")
def pipeline():
    """β ∈ {0, 0.1} from the same seed: same pretraining, preferences and reward model."""
    return _train_betas(SMALL, [0.0, 0.1], jax.random.PRNGKey(0))


# ------------------------------------------------------------------ the loss is ppo's


def test_token_loss_is_ppo_objective_the_function_ppo_calls(monkeypatch):
    """``token_ppo_loss`` and ``ppo``'s minibatch loss go through the same
    ``policy_gradient.ppo_objective``: replace it and both see the replacement."""
    calls = []
    real = policy_gradient.ppo_objective

    def spy(*args, **kwargs):
        calls.append(kwargs["clip_eps"])
        return real(*args, **kwargs)

    monkeypatch.setattr(rlhf, "ppo_objective", spy)
    monkeypatch.setattr(ppo, "ppo_objective", spy)
    assert rlhf.ppo_objective is ppo.ppo_objective  # the same object in both modules

    c = rlhf.quick_config()
    lm = CausalTransformer(c.vocab_size, c.length + 1, width=16, depth=1, key=jax.random.key(0))
    tokens = rlhf.generate(lm, jax.random.key(1), 4, c.length)
    log_probs, _, values = jax.vmap(rlhf.score_tokens, (None, 0))(lm, tokens)
    adv = jax.random.normal(jax.random.key(2), log_probs.shape)
    batch = {
        "tokens": tokens,
        "log_prob": log_probs + 0.1,
        "value": values,
        "advantages": adv,
        "returns": values + 1.0,
    }
    loss, info = rlhf.token_ppo_loss(lm, batch, c)
    assert calls == [c.clip_eps]

    # the same numbers as calling the objective by hand on the token arrays
    whitened = (adv - adv.mean()) / (adv.std() + 1e-8)
    logits = jax.vmap(lambda t: lm(t)[0][:-1])(tokens)
    entropies = -jnp.sum(jax.nn.softmax(logits) * jax.nn.log_softmax(logits), axis=-1)
    expected, _ = real(
        log_probs - batch["log_prob"],
        whitened,
        values,
        batch["returns"],
        entropies,
        clip_eps=c.clip_eps,
        value_coef=c.value_coef,
        entropy_coef=c.entropy_coef,
        old_values=values,
        value_clip_eps=c.clip_eps,
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    assert set(info) >= {"policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"}


def test_ppo_objective_equals_the_terms_it_combines():
    key = jax.random.key(3)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    log_ratio = 0.3 * jax.random.normal(k1, (5, 7))
    adv = jax.random.normal(k2, (5, 7))
    values, returns = jax.random.normal(k3, (2, 5, 7))
    entropies = jax.random.uniform(k4, (5, 7))
    loss, info = policy_gradient.ppo_objective(
        log_ratio,
        adv,
        values,
        returns,
        entropies,
        clip_eps=0.2,
        value_coef=0.5,
        entropy_coef=0.01,
    )
    ratio = np.exp(np.asarray(log_ratio))
    surrogate = np.minimum(ratio * adv, np.clip(ratio, 0.8, 1.2) * adv)
    expected = (
        -surrogate.mean()
        + 0.5 * np.mean(0.5 * (np.asarray(values) - returns) ** 2)
        - 0.01 * np.mean(entropies)
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(info["entropy"], np.mean(entropies), rtol=1e-6)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "field, value",
    [
        ("beta", -0.1),
        ("length", 0),
        ("length", -3),
        ("vocab_size", 3),
        ("heads", 3),  # does not divide width=32
        ("heldout_pairs", 4096),
        ("num_minibatches", 5),  # does not divide num_envs=64
        ("kl_controller", "pid"),
        ("kl_target", 0.0),
        ("rater_temperature", 0.0),
        ("gamma", 1.5),
        ("beta", float("nan")),
    ],
)
def test_bad_config_names_its_field(field, value):
    with pytest.raises(ValueError, match=field):
        rlhf.Config(**{field: value})


def test_wrong_env_is_refused_before_compile():
    from purerl.algorithms import core

    with pytest.raises(ValueError, match="env_id"):
        core.check(rlhf.ALGORITHM, rlhf.Config(env_id="CartPole-v1"))


def test_vocabulary_mismatch_is_refused_before_compile():
    c = rlhf.quick_config()
    key = jax.random.key(0)
    other = CausalTransformer(c.vocab_size + 3, c.length + 1, width=16, depth=1, key=key)
    short = CausalTransformer(c.vocab_size, c.length, width=16, depth=1, key=key)
    with pytest.raises(ValueError, match="network: .*vocab_size=15"):
        rlhf.init(key, c, network=other)
    with pytest.raises(ValueError, match="network: max_len"):
        rlhf.init(key, c, network=short)
    lm = CausalTransformer(c.vocab_size, c.length + 1, width=16, depth=1, key=key)
    pairs = rlhf.Preferences(*jnp.zeros((2, c.num_pairs, c.length + 1), jnp.int32))
    with pytest.raises(ValueError, match="network: .*vocab_size=15"):
        rlhf.fit_reward_model(key, c, lm, pairs, reward_model=other)


# ---------------------------------------------- β control, best-of-n (determinism and vmap over
# seeds: the conformance tests of tests/test_core.py, run for every registered algorithm)


def test_adaptive_controller_moves_beta_towards_the_target():
    """KL starts at 0, far below a target of 5 nats: β falls by ``gain × 0.2`` (the clipped
    error) at each of the first iterations; a fixed β stays put."""
    c = dataclasses.replace(
        rlhf.quick_config(), kl_controller="adaptive", kl_target=5.0, beta=0.2, kl_gain=0.1
    )
    _, m = jax.jit(rlhf.make_train(c))(jax.random.key(0))
    np.testing.assert_allclose(m["beta"][0], 0.2 * (1 - 0.1 * 0.2), rtol=1e-6)
    assert np.all(np.diff(np.asarray(m["beta"])) < 0)
    _, fixed = jax.jit(rlhf.make_train(rlhf.quick_config()))(jax.random.key(0))
    np.testing.assert_allclose(fixed["beta"], rlhf.quick_config().beta, rtol=1e-6)


def test_best_of_n_keeps_the_reward_models_favourite():
    c = rlhf.quick_config()
    key = jax.random.key(0)
    lm = CausalTransformer(c.vocab_size, c.length + 1, width=16, depth=1, key=key)
    rm = CausalTransformer(c.vocab_size, c.length + 1, width=16, depth=1, key=jax.random.key(1))
    picked = rlhf.best_of_n(jax.random.key(2), lm, rm, 4, 3, c.length)
    pool = rlhf.generate(lm, jax.random.key(2), 12, c.length).reshape(3, 4, -1)
    scores = jax.vmap(jax.vmap(lambda t: rm(t)[1][-1]))(pool)
    np.testing.assert_array_equal(picked, pool[np.arange(3), np.argmax(scores, axis=1)])
    one = rlhf.best_of_n(jax.random.key(2), lm, rm, 1, 12, c.length)
    np.testing.assert_array_equal(one, pool.reshape(12, -1))


# ------------------------------------------------------------------ the pipeline learns


@pytest.mark.slow
def test_reward_model_orders_held_out_pairs_far_above_chance(pipeline):
    """Held-out pairs whose hidden scores differ: the reward model orders ≥ 80% as the hidden
    rule does (chance 0.5; 256 held-out pairs, of which ~100 differ, so a coin-flipping model
    reaches 80% with probability < 1e-9)."""
    _, m = pipeline
    agreement = np.asarray(m["reward_agreement"])[:, -1]
    accuracy = np.asarray(m["reward_accuracy"])[:, -1]
    assert np.all(agreement >= 0.8), agreement
    # against the raters' own noisy labels (ties are coin flips): still above chance
    assert np.all(accuracy >= 0.6), accuracy


@pytest.mark.slow
def test_ppo_raises_the_hidden_score_on_a_kl_leash(pipeline):
    """With β = 0.1 the hidden score of samples rises by ≥ 0.1 over the pretrained model's
    (≈ 0.04; the best grammatical text scores 0.31) while the KL to the reference stays
    ≤ 15 nats per sequence; without the leash (β = 0) the KL is larger."""
    _, m = pipeline
    start = np.asarray(m["hidden_score"])[:, 0]  # the pretrained model's samples
    final_eval = np.asarray(m["eval_return"])[:, -1]  # 256 fresh samples, hidden rule
    final_kl = np.asarray(m["kl"])[:, -5:].mean(axis=1)
    leashed, free = 1, 0
    assert final_eval[leashed] >= start[leashed] + 0.1, (start, final_eval)
    assert final_kl[leashed] <= 15.0, final_kl
    assert final_kl[free] > final_kl[leashed], final_kl
    # the reward model's score rose in both runs (it is what PPO maximises)
    reward = np.asarray(m["reward"])
    assert np.all(reward[:, -5:].mean(axis=1) > reward[:, 0] + 1.0), reward[:, [0, -1]]


@pytest.mark.slow
def test_samples_stay_grammatical_on_the_leash(pipeline):
    state, _ = pipeline
    task = rlhf.task_of(SMALL)
    leashed = jax.tree.map(lambda x: x[1] if eqx.is_array(x) else x, state.policy)
    tokens = rlhf.generate(leashed, jax.random.key(5), 512, SMALL.length)
    bad = ~task.allowed[tokens[:, :-1], tokens[:, 1:]]
    assert float(jnp.mean(bad)) < 0.02  # under one ungrammatical pair in 50
    assert float(jnp.mean(text.hidden_score(task, tokens))) > 0.14
