"""Tests for purerl/language.py: the causal transformer's shapes, causality, validation and
pytree, ``score_tokens`` and ``sequence_reward`` against the raw outputs (NumPy log-softmax),
and ``sample`` (determinism, BOS, greedy decoding at low temperature, frequencies of the first
token against the model's softmax)."""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.language import BOS, CausalTransformer, sample, score_tokens, sequence_reward

V, L, D = 6, 8, 16  # vocabulary, max_len, width of the test model

# Everything runs compiled: eager equinox calls compile every primitive for every new shape,
# which costs seconds per test on a CPU.
run = eqx.filter_jit(lambda lm, tokens: lm(tokens))
run_batch = eqx.filter_jit(lambda lm, tokens: jax.vmap(lm)(tokens))
draw = eqx.filter_jit(sample)


@functools.cache
def make_lm(seed=0, depth=1, heads=2, scale=1.0):
    lm = CausalTransformer(V, L, width=D, depth=depth, heads=heads, key=jax.random.PRNGKey(seed))
    return eqx.tree_at(lambda m: m.lm_head.weight, lm, scale * lm.lm_head.weight)


def peaked_lm(seed=0):
    """A model whose next-token distributions are far from uniform (a scaled output layer), so
    frequency checks can tell one distribution from another."""
    return make_lm(seed, scale=4.0)


def random_tokens(seed, shape):
    tokens = np.random.default_rng(seed).integers(0, V, size=shape).astype(np.int32)
    tokens[..., 0] = BOS
    return tokens


def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


# --------------------------------------------------------------------------------------------
# CausalTransformer


@pytest.mark.parametrize("length", [1, 5, L])
def test_output_shapes(length):
    lm = make_lm()
    logits, values = run(lm, random_tokens(0, length))
    assert logits.shape == (length, V) and values.shape == (length,)
    assert logits.dtype == jnp.float32 and values.dtype == jnp.float32
    assert eqx.filter_eval_shape(lm.features, random_tokens(0, length)).shape == (length, D)
    assert np.all(np.isfinite(logits)) and np.all(np.isfinite(values))
    batched_logits, batched_values = run_batch(lm, random_tokens(1, (3, length)))
    assert batched_logits.shape == (3, length, V) and batched_values.shape == (3, length)


def test_depth_and_heads_are_used():
    lm = make_lm(depth=2, heads=4)
    assert len(lm.blocks) == 2 and all(b.heads == 4 for b in lm.blocks)
    assert len(make_lm(depth=0).blocks) == 0
    logits, _ = run(make_lm(depth=0), random_tokens(0, 4))
    assert logits.shape == (4, V)


def test_causal_later_tokens_do_not_change_earlier_outputs():
    lm = make_lm(depth=2)
    tokens = random_tokens(2, L)
    logits, values = run(lm, tokens)
    rng = np.random.default_rng(3)
    for t in range(L - 1):
        changed = tokens.copy()
        # every token after t replaced by a different one
        changed[t + 1 :] = (tokens[t + 1 :] + rng.integers(1, V, size=L - t - 1)) % V
        logits2, values2 = run(lm, changed)
        np.testing.assert_allclose(logits2[: t + 1], logits[: t + 1], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(values2[: t + 1], values[: t + 1], rtol=1e-6, atol=1e-6)
        # not vacuous: the changed position itself does see the change
        assert np.abs(np.asarray(logits2[t + 1] - logits[t + 1])).max() > 1e-4


def test_prefix_gives_the_same_outputs():
    """Position t sees tokens 0..t only: the model run on the prefix gives the same outputs."""
    lm = make_lm(depth=2)
    tokens = random_tokens(4, L)
    logits, values = run(lm, tokens)
    for t in (2, L - 1):
        prefix_logits, prefix_values = run(lm, tokens[:t])
        np.testing.assert_allclose(prefix_logits, logits[:t], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(prefix_values, values[:t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(heads=3), "^heads"),  # 3 does not divide 16
        (dict(heads=0), "^heads"),
        (dict(depth=-1), "^heads"),
        (dict(width=0), "^width"),
        (dict(vocab_size=0), "^vocab_size"),
        (dict(max_len=0), "^max_len"),
    ],
)
def test_bad_sizes_raise(kwargs, match):
    args = dict(vocab_size=V, max_len=L, width=D, depth=1, heads=2) | kwargs
    with pytest.raises(ValueError, match=match):
        CausalTransformer(**args, key=jax.random.PRNGKey(0))


def test_pytree_leaves_are_arrays_and_go_through_scan():
    lm = make_lm()
    leaves = jax.tree.leaves(lm)
    assert leaves and all(isinstance(x, jax.Array) for x in leaves)
    assert lm.vocab_size == V and lm.max_len == L  # static fields, not leaves
    assert not any(isinstance(x, int) for x in leaves)
    batch = jnp.asarray(random_tokens(5, (3, L)))

    def loss(lm, tokens):
        return -jnp.sum(score_tokens(lm, tokens)[0])

    def sgd_step(lm, tokens):
        grads = jax.grad(loss)(lm, tokens)
        return jax.tree.map(lambda p, g: p - 0.1 * g, lm, grads), loss(lm, tokens)

    scanned, losses = jax.jit(lambda lm: jax.lax.scan(sgd_step, lm, batch))(lm)
    assert type(scanned) is CausalTransformer and scanned.vocab_size == V
    looped, jit_step = lm, eqx.filter_jit(sgd_step)
    for i in range(3):
        looped, step_loss = jit_step(looped, batch[i])
        np.testing.assert_allclose(losses[i], step_loss, rtol=1e-4)
    for a, b in zip(jax.tree.leaves(scanned), jax.tree.leaves(looped), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(scanned.lm_head.weight, lm.lm_head.weight)  # it did update


# --------------------------------------------------------------------------------------------
# score_tokens and sequence_reward


@pytest.mark.parametrize("length", [2, 5, L])
def test_score_tokens_is_shifted_log_softmax(length):
    lm = make_lm()
    tokens = random_tokens(6, length)
    log_probs, logits, values = eqx.filter_jit(score_tokens)(lm, tokens)
    full_logits, full_values = run(lm, tokens)
    assert log_probs.shape == (length - 1,) and logits.shape == (length - 1, V)
    assert values.shape == (length - 1,)
    np.testing.assert_array_equal(logits, full_logits[:-1])
    np.testing.assert_array_equal(values, full_values[:-1])
    log_p = np_log_softmax(np.asarray(full_logits))
    expected = [log_p[t, tokens[t + 1]] for t in range(length - 1)]
    np.testing.assert_allclose(log_probs, expected, rtol=1e-5, atol=1e-6)


def test_score_tokens_jit_vmap():
    lm = make_lm()
    tokens = random_tokens(7, (4, 5))
    batched = eqx.filter_jit(jax.vmap(score_tokens, in_axes=(None, 0)))(lm, tokens)
    for i in range(4):
        single = eqx.filter_jit(score_tokens)(lm, tokens[i])
        for got, want in zip(batched, single, strict=True):
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)


def test_sequence_reward_is_the_last_value():
    lm = make_lm()
    tokens = random_tokens(8, (3, 6))
    reward = eqx.filter_jit(sequence_reward)
    rewards = eqx.filter_jit(jax.vmap(sequence_reward, in_axes=(None, 0)))(lm, tokens)
    assert rewards.shape == (3,)
    for i in range(3):
        value = reward(lm, tokens[i])
        assert value.shape == ()
        np.testing.assert_allclose(value, run(lm, tokens[i])[1][-1], rtol=1e-6)
        np.testing.assert_allclose(rewards[i], value, rtol=1e-5, atol=1e-6)
    # the last position attends to every token: changing the first word changes the reward
    changed = tokens[0].copy()
    changed[1] = (changed[1] + 1) % V
    assert abs(float(reward(lm, changed)) - float(rewards[0])) > 1e-5


# --------------------------------------------------------------------------------------------
# sample


def test_sample_shape_range_bos_and_determinism():
    lm = make_lm()
    seqs = [draw(lm, jax.random.PRNGKey(i), L - 1) for i in range(6)]
    for seq in seqs:
        assert seq.shape == (L,) and jnp.issubdtype(seq.dtype, jnp.integer)
        assert int(seq[0]) == BOS
        assert np.all((np.asarray(seq) >= 0) & (np.asarray(seq) < V))
    np.testing.assert_array_equal(draw(lm, jax.random.PRNGKey(0), L - 1), seqs[0])
    np.testing.assert_array_equal(sample(lm, jax.random.PRNGKey(0), L - 1), seqs[0])  # eager
    assert len({tuple(np.asarray(s).tolist()) for s in seqs}) > 1  # different keys differ
    assert not np.array_equal(seqs[0], seqs[1])
    short = draw(lm, jax.random.PRNGKey(0), 1)
    assert short.shape == (2,) and int(short[0]) == BOS


def test_sample_other_bos():
    seq = draw(make_lm(), jax.random.PRNGKey(0), 3, bos=2)
    assert seq.shape == (4,) and int(seq[0]) == 2


@pytest.mark.parametrize("length", [0, -1, L, L + 3])
def test_sample_bad_length_raises(length):
    with pytest.raises(ValueError, match="^length"):
        sample(make_lm(), jax.random.PRNGKey(0), length)


def greedy_decode(lm, length, bos=BOS):
    """Argmax decoding, one token at a time. The model runs on a fixed buffer (one compile):
    by causality, position t's output does not depend on the unwritten positions after it."""
    tokens = np.full(length + 1, bos, np.int32)
    for t in range(length):
        logits, _ = run(lm, tokens)
        tokens[t + 1] = int(np.argmax(np.asarray(logits[t])))
    return tokens


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_at_low_temperature_is_greedy(seed):
    lm = make_lm(seed)
    greedy = greedy_decode(lm, L - 1)
    for k in range(3):
        got = draw(lm, jax.random.PRNGKey(k), L - 1, temperature=1e-6)
        np.testing.assert_array_equal(got, greedy)
    # not vacuous: at temperature 1 the sequences are not all the greedy one
    hot = [draw(lm, jax.random.PRNGKey(k), L - 1) for k in range(4)]
    assert any(not np.array_equal(h, greedy) for h in hot)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_first_token_frequencies_match_softmax(temperature):
    """The first sampled token is drawn from softmax(logits at position 0 / temperature).

    Each empirical frequency of N = 4000 samples is within 5 binomial standard errors
    sqrt(p(1 − p)/N) (≤ 0.04) of its probability; by the normal approximation one category
    fails with probability ≈ 6e-7, so chance fails the test (V = 6 categories) less than once
    in 10^5 seeds. The model is peaked, so a draw from a different position or temperature
    would miss by far more than the tolerance."""
    lm = peaked_lm()
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(11), n)
    draws = eqx.filter_jit(jax.vmap(lambda k: sample(lm, k, 1, temperature=temperature)))(keys)
    assert draws.shape == (n, 2) and np.all(np.asarray(draws[:, 0]) == BOS)
    freq = np.bincount(np.asarray(draws[:, 1]), minlength=V) / n
    logits = np.asarray(run(lm, np.array([BOS], np.int32))[0][0], np.float64)
    p = np.exp(np_log_softmax(logits / temperature))
    se = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= 5 * se + 1e-9), (freq, p)
    # the check can fail: the distribution is far from uniform, and from the other temperature
    other = np.exp(np_log_softmax(logits / (3.0 - temperature)))
    assert np.max(np.abs(p - 1 / V)) > 10 * se.max()
    assert np.max(np.abs(p - other)) > 10 * se.max()


def test_later_tokens_follow_the_conditional_softmax():
    """The second sampled token, among sequences whose first token is the most common one,
    is drawn from softmax(logits at position 1 of [BOS, y_1]) (5 binomial standard errors)."""
    lm = peaked_lm(seed=3)
    n = 4000
    keys = jax.random.split(jax.random.PRNGKey(12), n)
    draws = np.asarray(eqx.filter_jit(jax.vmap(lambda k: sample(lm, k, 2)))(keys))
    first = np.bincount(draws[:, 1], minlength=V).argmax()
    second = draws[draws[:, 1] == first, 2]
    m = len(second)
    assert m > 500
    freq = np.bincount(second, minlength=V) / m
    p = np.exp(np_log_softmax(np.asarray(run(lm, np.array([BOS, first], np.int32))[0][1])))
    se = np.sqrt(p * (1 - p) / m)
    assert np.all(np.abs(freq - p) <= 5 * se + 1e-9), (freq, p)
