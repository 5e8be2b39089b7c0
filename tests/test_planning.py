"""Dynamic programming on a known model: Bellman backups, policy evaluation, value iteration,
checked against exact NumPy linear algebra and brute force over every deterministic policy."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purerl.planning import bellman_q, policy_evaluation, value_iteration


def random_mdp(seed=0, S=4, A=3):
    """A random MDP whose last state is terminal (absorbing, reward 0)."""
    rng = np.random.default_rng(seed)
    P = rng.random((S, A, S)) ** 3
    P /= P.sum(-1, keepdims=True)
    R = rng.normal(size=(S, A))
    terminal = np.zeros(S, bool)
    terminal[-1] = True
    P[-1] = 0.0
    P[-1, :, -1] = 1.0
    R[-1] = 0.0
    return P.astype(np.float32), R.astype(np.float32), terminal


def exact_values(P, R, terminal, probs, gamma):
    """Solve ``V = R_π + γ P_π V`` on the non-terminal states (V = 0 on terminal ones)."""
    live = ~terminal
    R_pi = np.sum(probs * R, axis=-1)[live]
    P_pi = np.einsum("sa,sat->st", probs, P)[np.ix_(live, live)]
    V = np.zeros(len(terminal))
    V[live] = np.linalg.solve(np.eye(live.sum()) - gamma * P_pi, R_pi)
    return V


def test_bellman_q_matches_a_loop():
    P, R, _ = random_mdp()
    V = np.arange(4, dtype=np.float32)
    expected = np.zeros_like(R)
    for s, a in itertools.product(range(4), range(3)):
        expected[s, a] = R[s, a] + 0.9 * sum(P[s, a, t] * V[t] for t in range(4))
    np.testing.assert_allclose(bellman_q(P, R, V, gamma=0.9), expected, rtol=1e-5, atol=1e-6)


def test_reward_per_next_state_is_averaged_under_P():
    P, R, _ = random_mdp()
    R3 = np.broadcast_to(R[..., None], P.shape) + np.random.default_rng(1).normal(size=P.shape)
    R3 = R3.astype(np.float32)
    V = np.ones(4, np.float32)
    np.testing.assert_allclose(
        bellman_q(P, R3, V, gamma=0.5), bellman_q(P, (P * R3).sum(-1), V, gamma=0.5), rtol=1e-5
    )


@pytest.mark.parametrize("stochastic", [False, True])
def test_policy_evaluation_solves_the_linear_system(stochastic):
    P, R, terminal = random_mdp()
    if stochastic:
        probs = np.random.default_rng(2).dirichlet(np.ones(3), size=4).astype(np.float32)
        policy = probs
    else:
        policy = np.array([2, 0, 1, 0])
        probs = np.eye(3, dtype=np.float32)[policy]
    V = policy_evaluation(P, R, terminal, policy, gamma=0.9, tol=1e-7)
    np.testing.assert_allclose(V, exact_values(P, R, terminal, probs, 0.9), atol=1e-4)
    assert V[-1] == 0.0


def test_value_iteration_beats_every_deterministic_policy():
    """V* is the best of all 3^3 deterministic policies (brute force) in every state, and the
    greedy policy of Q* attains it."""
    P, R, terminal = random_mdp()
    V, Q = value_iteration(P, R, terminal, gamma=0.9, tol=1e-7)
    best = np.full(4, -np.inf)
    for policy in itertools.product(range(3), repeat=3):
        probs = np.eye(3)[list(policy) + [0]]
        best = np.maximum(best, exact_values(P, R, terminal, probs, 0.9))
    np.testing.assert_allclose(V, best, atol=1e-4)
    greedy_probs = np.eye(3)[np.asarray(Q).argmax(-1)]
    np.testing.assert_allclose(exact_values(P, R, terminal, greedy_probs, 0.9), best, atol=1e-4)
    np.testing.assert_allclose(np.max(Q, -1)[:-1], V[:-1], atol=1e-5)


def test_value_iteration_vmaps_over_gamma_and_jits():
    P, R, terminal = random_mdp()
    gammas = jnp.array([0.5, 0.9, 0.99])
    V, _ = jax.jit(jax.vmap(lambda g: value_iteration(P, R, terminal, gamma=g)))(gammas)
    for i, g in enumerate([0.5, 0.9, 0.99]):
        # float32 values near 100 after ~1000 sweeps: compare relatively, a few ulps apart
        np.testing.assert_allclose(V[i], value_iteration(P, R, terminal, gamma=g)[0], rtol=2e-6)
