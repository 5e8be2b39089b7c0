"""Tests for purerl/envs/text.py: the random grammar (a stochastic matrix with the documented
structure, fixed by its seed), the corpus against the grammar's Markov chain, the hidden score
on hand-made sequences and a NumPy loop, the best grammatical score against brute force, the
noisy raters' Bradley–Terry frequencies, and ``TextPreference-v0`` stepped through ``VecEnv``."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.envs import VecEnv, registered
from purerl.envs.text import (
    TextEnv,
    best_grammatical_score,
    hidden_score,
    make_task,
    rate,
    sample_corpus,
)
from purerl.language import BOS

DEFAULT = make_task()  # vocab_size 12, length 16, successors 3, liked_probability 0.15

# compiled once per shape (eager calls compile every primitive for every new shape)
score = jax.jit(hidden_score)
rate_jit = jax.jit(rate)
corpus_of = jax.jit(sample_corpus, static_argnums=2)


def np_hidden_score(transitions, liked, length, tokens):
    """(number of ★ − number of transitions of probability 0) / length, over tokens[1:]."""
    tokens = np.asarray(tokens)
    out = np.zeros(tokens.shape[:-1])
    for i in np.ndindex(out.shape):
        seq = tokens[i]
        good = sum(1 for y in seq[1:] if y == liked)
        bad = sum(1 for a, b in zip(seq[:-1], seq[1:], strict=True) if transitions[a, b] == 0)
        out[i] = (good - bad) / length
    return out


def grammatical_with_liked(task):
    """A grammatical word sequence of ``task.length`` words with a ★ as its second word,
    built from the grammar: a word ★ may follow, ★, then the likeliest successor each step."""
    t = np.asarray(task.transitions)
    words = [int(np.flatnonzero(t[:, task.liked])[0]), task.liked]
    while len(words) < task.length:
        words.append(int(np.argmax(t[words[-1]])))
    return np.array([BOS, *words[: task.length]], np.int32)


# --------------------------------------------------------------------------------------------
# make_task


@pytest.mark.parametrize(
    "kwargs",
    [{}, dict(vocab_size=5, successors=1), dict(vocab_size=5, successors=2), dict(seed=3)],
)
def test_make_task_grammar_structure(kwargs):
    task = make_task(**kwargs)
    t = np.asarray(task.transitions, np.float64)
    v = kwargs.get("vocab_size", 12)
    successors = kwargs.get("successors", 3)
    assert t.shape == (v, v) and task.vocab_size == v and task.liked == v - 1
    assert task.length == 16
    np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(t >= 0)
    np.testing.assert_array_equal(t[:, BOS], 0.0)  # BOS never follows anything
    assert t[task.liked, task.liked] == 0.0  # ★ never follows itself
    # the first word is uniform over the plain words: never BOS, never ★
    np.testing.assert_allclose(t[BOS, 1 : v - 1], 1.0 / (v - 2), rtol=1e-6)
    assert t[BOS, task.liked] == 0.0
    # ★ follows exactly two words, each with probability liked_probability
    np.testing.assert_allclose(np.sort(t[:, task.liked])[-2:], 0.15, rtol=1e-6)
    assert np.count_nonzero(t[:, task.liked]) == 2
    followed_by_liked = t[:, task.liked] > 0
    n_next = np.count_nonzero(t[1:], axis=1)
    np.testing.assert_array_equal(n_next, successors + followed_by_liked[1:])
    np.testing.assert_array_equal(np.asarray(task.allowed), t > 0)


def test_make_task_seed_fixes_the_grammar():
    np.testing.assert_array_equal(make_task(seed=7).transitions, make_task(seed=7).transitions)
    assert not np.array_equal(make_task(seed=7).transitions, make_task(seed=8).transitions)
    # the length is a size, not part of the grammar
    np.testing.assert_array_equal(make_task(length=3).transitions, DEFAULT.transitions)
    task = make_task(liked_probability=0.4, seed=2)
    np.testing.assert_allclose(np.sort(np.asarray(task.transitions)[:, task.liked])[-2:], 0.4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(vocab_size=4), "^vocab_size/length"),
        (dict(length=0), "^vocab_size/length"),
        (dict(successors=0), "^successors"),
        (dict(vocab_size=6, successors=5), "^successors"),
        (dict(vocab_size=6, successors=4), "^successors"),
        (dict(liked_probability=0.0), "^liked_probability"),
        (dict(liked_probability=1.0), "^liked_probability"),
        (dict(liked_probability=-0.1), "^liked_probability"),
    ],
)
def test_make_task_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_task(**kwargs)


@pytest.mark.parametrize("vocab_size", [5, 12])
def test_make_task_accepts_the_documented_largest_successors(vocab_size):
    task = make_task(vocab_size=vocab_size, successors=vocab_size - 3)
    np.testing.assert_allclose(np.asarray(task.transitions).sum(axis=1), 1.0, atol=1e-6)


# --------------------------------------------------------------------------------------------
# sample_corpus


def test_sample_corpus_follows_the_grammar():
    """Every transition is allowed, and the empirical transition frequencies (first word
    included, as the row of BOS) are within 5 binomial standard errors (+0.002) of the grammar:
    400 to 6600 transitions leave each row, so a wrong row would miss by far more; chance
    fails one of the ~45 entries with probability ≈ 45 · 6e-7."""
    n = 2000
    corpus = np.asarray(corpus_of(DEFAULT, jax.random.PRNGKey(0), n))
    t = np.asarray(DEFAULT.transitions, np.float64)
    assert corpus.shape == (n, DEFAULT.length + 1)
    np.testing.assert_array_equal(corpus[:, 0], BOS)
    assert np.all(t[corpus[:, :-1], corpus[:, 1:]] > 0)
    # first words ≈ transitions[BOS]
    first = np.bincount(corpus[:, 1], minlength=DEFAULT.vocab_size) / n
    se = np.sqrt(t[BOS] * (1 - t[BOS]) / n)
    assert np.all(np.abs(first - t[BOS]) <= 5 * se + 2e-3), first
    # every row of the chain
    counts = np.zeros_like(t)
    np.add.at(counts, (corpus[:, :-1], corpus[:, 1:]), 1)
    for a in range(1, DEFAULT.vocab_size):
        visits = counts[a].sum()
        assert visits > 200
        se = np.sqrt(t[a] * (1 - t[a]) / visits)
        assert np.all(np.abs(counts[a] / visits - t[a]) <= 5 * se + 2e-3), (a, counts[a] / visits)


def test_sample_corpus_same_key_same_corpus():
    a = corpus_of(DEFAULT, jax.random.PRNGKey(1), 5)
    np.testing.assert_array_equal(a, corpus_of(DEFAULT, jax.random.PRNGKey(1), 5))
    assert not np.array_equal(a, corpus_of(DEFAULT, jax.random.PRNGKey(2), 5))
    assert jnp.issubdtype(a.dtype, jnp.integer)


# --------------------------------------------------------------------------------------------
# hidden_score


def test_hidden_score_hand_computed():
    task = make_task(length=3)  # the default grammar, three words
    allowed = np.asarray(task.allowed)
    liked = task.liked
    assert liked == 11 and allowed[BOS, 1] and allowed[1, liked] and not allowed[liked, liked]
    assert allowed[1, 6] and allowed[6, 5]
    cases = [
        ([BOS, 1, liked, liked], (2 - 1) / 3),  # two ★, one forbidden ★ → ★
        ([BOS, 1, 6, 5], 0.0),  # grammatical, no ★
        ([BOS, 1, liked, 8], 1 / 3),  # grammatical, one ★ (★ → 8 allowed)
        ([BOS, liked, 8, 10], (1 - 1) / 3),  # BOS → ★ is forbidden
        ([BOS, BOS, BOS, BOS], -1.0),  # nothing is followed by BOS
    ]
    assert allowed[liked, 8] and allowed[8, 10]
    for tokens, expected in cases:
        got = hidden_score(task, jnp.array(tokens))
        assert got.shape == () and got.dtype == jnp.float32
        assert float(got) == pytest.approx(expected, abs=1e-6), tokens
    batch = hidden_score(task, jnp.array([c[0] for c in cases]))
    np.testing.assert_allclose(batch, [c[1] for c in cases], atol=1e-6)


def test_hidden_score_all_liked_is_zero():
    tokens = jnp.array([BOS] + [DEFAULT.liked] * DEFAULT.length)
    # 16 ★, and 16 forbidden transitions: BOS → ★ and ★ → ★ fifteen times
    assert float(score(DEFAULT, tokens)) == 0.0


def test_hidden_score_matches_numpy_jit_vmap():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, DEFAULT.vocab_size, size=(3, 5, DEFAULT.length + 1))
    tokens[..., 0] = BOS
    corpus = np.asarray(corpus_of(DEFAULT, jax.random.PRNGKey(3), 20))
    t = np.asarray(DEFAULT.transitions)
    expected = np_hidden_score(t, DEFAULT.liked, DEFAULT.length, tokens)
    np.testing.assert_allclose(hidden_score(DEFAULT, tokens), expected, atol=1e-6)  # eager
    np.testing.assert_allclose(score(DEFAULT, tokens), expected, atol=1e-6)
    vmapped = jax.jit(jax.vmap(hidden_score, in_axes=(None, 0)))(DEFAULT, tokens)
    np.testing.assert_allclose(vmapped, expected, atol=1e-6)
    corpus_scores = score(DEFAULT, corpus)
    np.testing.assert_allclose(
        corpus_scores, np_hidden_score(t, DEFAULT.liked, DEFAULT.length, corpus), atol=1e-6
    )
    # random text is ungrammatical, corpus text never is
    assert np.all(expected < 0)
    assert np.all(np.asarray(corpus_scores) >= 0)


# --------------------------------------------------------------------------------------------
# best_grammatical_score


def brute_force_best(task):
    allowed = np.asarray(task.allowed)
    words = np.array(list(itertools.product(range(task.vocab_size), repeat=task.length)))
    seqs = np.concatenate([np.full((len(words), 1), BOS), words], axis=1)
    grammatical = np.all(allowed[seqs[:, :-1], seqs[:, 1:]], axis=1)
    scores = np.asarray(score(task, jnp.asarray(seqs)))
    return float(scores[grammatical].max())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("successors", [1, 2])
def test_best_grammatical_score_matches_brute_force(seed, successors):
    task = make_task(vocab_size=5, length=4, successors=successors, seed=seed)
    got = best_grammatical_score(task)
    assert isinstance(got, float)
    assert got == pytest.approx(brute_force_best(task), abs=1e-6)
    assert got >= 0.25  # ★ is reachable: BOS → a word ★ follows → ★


def test_best_grammatical_score_default_task():
    best = best_grammatical_score(DEFAULT)
    # ★ never follows ★: at most every other word
    assert 0 < best <= 0.5
    assert best * DEFAULT.length == pytest.approx(round(best * DEFAULT.length))
    # a grammatical sequence built by hand reaches at least its score
    seq = grammatical_with_liked(DEFAULT)
    assert np.all(np.asarray(DEFAULT.allowed)[seq[:-1], seq[1:]])
    assert float(score(DEFAULT, seq)) <= best + 1e-6


# --------------------------------------------------------------------------------------------
# rate


def test_rate_prefers_a_much_better_sequence():
    n = 1000
    good = np.tile(grammatical_with_liked(DEFAULT), (n, 1))  # score ≥ 1/16
    bad = np.full((n, DEFAULT.length + 1), BOS)  # score −1: margin ≥ 1.06 / 0.05 > 21
    key = jax.random.PRNGKey(0)
    assert np.all(np.asarray(rate_jit(DEFAULT, key, good, bad)))
    assert not np.any(np.asarray(rate_jit(DEFAULT, key, bad, good)))
    out = rate_jit(DEFAULT, key, good[0], bad[0])
    assert out.shape == () and out.dtype == jnp.bool_ and bool(out)


def test_rate_bradley_terry_frequencies():
    """Identical sequences: a coin flip; sequences one forbidden transition apart (score gap
    1/16): P(prefer the better) = σ(1.25) = 0.777 at τ = 0.05. N = 4000 each, so 5 binomial
    standard errors are ≤ 0.04; chance fails either with probability ≈ 1e-6."""
    n = 4000
    corpus = np.asarray(corpus_of(DEFAULT, jax.random.PRNGKey(4), n))
    same = np.asarray(rate_jit(DEFAULT, jax.random.PRNGKey(5), corpus, corpus))
    assert same.shape == (n,)
    assert abs(same.mean() - 0.5) <= 5 * np.sqrt(0.25 / n)
    # one forbidden transition more: the last word becomes BOS (unless it was a ★)
    corpus = corpus[corpus[:, -1] != DEFAULT.liked]
    m = len(corpus)
    worse = corpus.copy()
    worse[:, -1] = BOS
    gap = np.asarray(score(DEFAULT, corpus) - score(DEFAULT, worse))
    np.testing.assert_allclose(gap, 1 / DEFAULT.length, atol=1e-6)
    p = 1 / (1 + np.exp(-1.25))
    se = np.sqrt(p * (1 - p) / m)
    wins = np.asarray(rate_jit(DEFAULT, jax.random.PRNGKey(6), corpus, worse)).mean()
    assert abs(wins - p) <= 5 * se, wins
    losses = np.asarray(rate_jit(DEFAULT, jax.random.PRNGKey(7), worse, corpus)).mean()
    assert abs(losses - (1 - p)) <= 5 * se, losses
    # a colder rater is surer: σ(2.5) = 0.924
    p_cold = 1 / (1 + np.exp(-2.5))
    cold = np.asarray(rate_jit(DEFAULT, jax.random.PRNGKey(8), corpus, worse, temperature=0.025))
    assert abs(cold.mean() - p_cold) <= 5 * np.sqrt(p_cold * (1 - p_cold) / m)


# --------------------------------------------------------------------------------------------
# TextEnv through VecEnv


TINY = make_task(vocab_size=6, length=4, successors=2)


def episode_actions(task):
    """Three sequences of words: grammatical with a ★, ungrammatical with ★s and BOS, random."""
    first = grammatical_with_liked(task)[1:]
    second = np.array([task.liked, task.liked, BOS, 3])
    third = np.random.default_rng(0).integers(0, task.vocab_size, size=task.length)
    return np.stack([first, second, third]).astype(np.int32)


def test_text_env_is_registered():
    assert "TextPreference-v0" in registered()
    env = VecEnv.make("TextPreference-v0", num_envs=2)
    assert isinstance(env.env, TextEnv) and env.env.name == "TextPreference-v0"
    np.testing.assert_array_equal(env.env.task.transitions, DEFAULT.transitions)  # default
    assert env.obs_shape == (DEFAULT.length + 2,) and env.num_actions == DEFAULT.vocab_size


def test_text_env_episode_through_vecenv():
    env = VecEnv.make("TextPreference-v0", num_envs=3, task=TINY)
    assert env.obs_shape == (TINY.length + 2,) and env.num_actions == TINY.vocab_size
    actions = episode_actions(TINY)
    fresh = np.array([BOS] * (TINY.length + 1) + [0], np.float32)
    state = env.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(state.obs, np.tile(fresh, (3, 1)))
    step = jax.jit(env.step)
    written = np.full((3, TINY.length + 1), BOS)
    for t in range(TINY.length):
        state, ts = step(jax.random.PRNGKey(t), state, jnp.asarray(actions[:, t]))
        written[:, t + 1] = actions[:, t]
        last = t == TINY.length - 1
        np.testing.assert_array_equal(ts.terminated, last)
        np.testing.assert_array_equal(ts.truncated, False)
        expected_obs = np.concatenate([written, np.full((3, 1), t + 1)], axis=1)
        np.testing.assert_array_equal(ts.final_obs, expected_obs)
        assert ts.obs.dtype == jnp.float32
        if not last:
            np.testing.assert_array_equal(ts.reward, 0.0)
            np.testing.assert_array_equal(ts.obs, expected_obs)
    # the end: the hidden score of the written sequence, then a fresh episode
    expected = np_hidden_score(np.asarray(TINY.transitions), TINY.liked, TINY.length, written)
    np.testing.assert_allclose(ts.reward, expected, atol=1e-6)
    np.testing.assert_allclose(ts.reward, score(TINY, written), atol=1e-6)
    assert expected[0] > 0 and expected[1] < 0  # the three episodes differ
    np.testing.assert_allclose(ts.episode_return, expected, atol=1e-6)
    np.testing.assert_array_equal(ts.episode_length, TINY.length)
    np.testing.assert_array_equal(ts.obs, np.tile(fresh, (3, 1)))
    np.testing.assert_array_equal(state.obs, np.tile(fresh, (3, 1)))
    np.testing.assert_array_equal(state.episode_length, 0)
    # the next episode starts from scratch
    state, ts = step(jax.random.PRNGKey(9), state, jnp.asarray(actions[:, 0]))
    assert not np.any(np.asarray(ts.terminated))
    np.testing.assert_array_equal(ts.obs[:, 1], actions[:, 0])
    np.testing.assert_array_equal(ts.obs[:, 2:-1], BOS)
    np.testing.assert_array_equal(ts.obs[:, -1], 1)


def test_text_env_observations_lie_in_the_observation_space():
    env = VecEnv.make("TextPreference-v0", num_envs=1)
    space = env.env.observation_space(env.params)
    state = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    for t in range(DEFAULT.length):
        state, ts = step(jax.random.PRNGKey(t), state, jnp.array([1]))
        assert bool(space.contains(ts.final_obs[0])), (t, ts.final_obs[0])
