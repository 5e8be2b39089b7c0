"""Tabular updates (``purerl.value.tabular_*``) and the tabular agents
(``purerl.algorithms.tabular``): hand-computed updates, a NumPy loop reference, config
checks, determinism, vmap == one by one, and learning on RobotInRoom and gymnax's
discrete-state environments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import purerl
from purerl import envs, tabular_sarsa_update, tabular_td_update, tabular_update
from purerl.algorithms import tabular
from purerl.planning import value_iteration

# ---------------------------------------------------------------- the pieces


def test_td_update_hand_computed():
    """Q[0, 1] = 1, r = 1, discount = 0.9, max Q[2] = 5, α = 0.5:
    target = 1 + 0.9·5 = 5.5, Q[0, 1] ← 1 + 0.5·(5.5 − 1) = 3.25; nothing else moves."""
    Q = jnp.arange(8.0).reshape(4, 2)
    new = tabular_td_update(Q, 0, 1, 1.0, 0.9, 2, alpha=0.5)
    expected = np.arange(8.0).reshape(4, 2)
    expected[0, 1] = 3.25
    np.testing.assert_allclose(new, expected)


def test_terminal_transitions_do_not_bootstrap():
    """discount = γ(1 − terminated) = 0: target = r = 1 whatever Q[s'] holds (here 100),
    Q[0, 0] ← 0 + 0.5·(1 − 0) = 0.5. A truncation (discount γ) does bootstrap from Q[s']."""
    Q = jnp.zeros((3, 2)).at[2].set(100.0)
    assert float(tabular_td_update(Q, 0, 0, 1.0, 0.0, 2, alpha=0.5)[0, 0]) == 0.5
    assert float(tabular_td_update(Q, 0, 0, 1.0, 0.9, 2, alpha=0.5)[0, 0]) == 45.5


def test_sarsa_update_uses_the_next_action():
    """Q[2] = [1, 7]: Q-learning bootstraps from max = 7, SARSA from Q[2, a'] = 1 for a' = 0:
    Q[0, 1] ← 0 + 0.1·(0.5 + 0.9·1) = 0.14."""
    Q = jnp.zeros((3, 2)).at[2].set(jnp.array([1.0, 7.0]))
    new = tabular_sarsa_update(Q, 0, 1, 0.5, 0.9, 2, 0, alpha=0.1)
    assert float(new[0, 1]) == pytest.approx(0.14)
    assert float(tabular_td_update(Q, 0, 1, 0.5, 0.9, 2, alpha=0.1)[0, 1]) == pytest.approx(0.68)


def test_batch_averages_errors_of_a_shared_pair_and_respects_the_mask():
    """Two entries for (0, 0) with targets 2 and 4 (errors 2 and 4) move Q[0, 0] by α·3;
    (1, 1) gets its own error; the masked entry is ignored."""
    Q = jnp.zeros((2, 2))
    s, a = jnp.array([0, 0, 1, 1]), jnp.array([0, 0, 1, 0])
    target = jnp.array([2.0, 4.0, 1.0, 50.0])
    mask = jnp.array([True, True, True, False])
    new = tabular_update(Q, s, a, target, alpha=0.5, mask=mask)
    np.testing.assert_allclose(new, [[1.5, 0.0], [0.0, 0.5]])


def numpy_q_learning(Q, transitions, alpha, gamma):
    """The textbook loop, one transition at a time."""
    Q = np.array(Q, np.float64)
    for s, a, r, terminated, s2 in transitions:
        target = r + gamma * (1 - terminated) * Q[s2].max()
        Q[s, a] += alpha * (target - Q[s, a])
    return Q


def test_matches_a_numpy_loop_under_jit_and_vmap():
    """A sequence of single-transition updates (jitted scan) equals the NumPy loop; vmapping
    over independent tables equals doing them one by one."""
    rng = np.random.default_rng(0)
    T, S, A = 200, 5, 3
    s, a, s2 = rng.integers(0, S, T), rng.integers(0, A, T), rng.integers(0, S, T)
    r, term = rng.normal(size=T).astype(np.float32), rng.random(T) < 0.2
    Q0 = rng.normal(size=(2, S, A)).astype(np.float32)

    @jax.jit
    def run(Q):
        def body(Q, x):
            si, ai, ri, ti, s2i = x
            return tabular_td_update(Q, si, ai, ri, 0.9 * (1.0 - ti), s2i, alpha=0.3), None

        return jax.lax.scan(body, Q, (s, a, r, term.astype(np.float32), s2))[0]

    batched = jax.vmap(run)(Q0)
    for i in range(2):
        expected = numpy_q_learning(Q0[i], zip(s, a, r, term, s2, strict=True), 0.3, 0.9)
        np.testing.assert_allclose(batched[i], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(run(Q0[i]), batched[i], rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- the agent vs a NumPy loop


def record(method, steps=300):
    """Run the agent (one env, deterministic room, 6-step time limit, constant α and ε) step
    by step and record the (cell, action) it acts on at every step, and the final table."""
    config = tabular.Config(
        method=method,
        env_kwargs={"intended_prob": 1.0, "max_steps_in_episode": 6},
        num_envs=1,
        total_steps=1_000,
        eval_every=1_000,
        gamma=0.9,
        alpha=0.5,
        epsilon_start=0.5,
        epsilon_end=0.5,
    )
    state = tabular.init(jax.random.PRNGKey(3), config)
    _, index = tabular.state_index(state.env)
    step = jax.jit(tabular.step)
    cells, actions = [], []
    for _ in range(steps):
        cells.append(int(index(state.env_state.obs)[0]))
        actions.append(int(state.action[0]))
        state, _ = step(state)
    return np.array(cells), np.array(actions), np.asarray(state.Q), state.env.params


def replay_episodes(cells, actions, params):
    """Split the recorded steps into episodes of (s, a, r, s', terminated), with the room's
    deterministic dynamics recomputed from its model; the last one may be unfinished."""
    env, _ = envs.make("RobotInRoom-v0")
    P, R, terminal = (np.asarray(x) for x in env.transition_model(params))
    episodes, current = [], []
    for s, a in zip(cells, actions, strict=True):
        s_next = int(P[s, a].argmax())
        current.append((s, a, float(R[s, a]), s_next, bool(terminal[s_next])))
        if current[-1][4] or len(current) == params.max_steps_in_episode:
            episodes.append(current)
            current = []
    # consistency: every episode starts where the agent really was
    starts = np.cumsum([0] + [len(e) for e in episodes])[:-1]
    assert all(cells[i] == e[0][0] for i, e in zip(starts, episodes, strict=True))
    return episodes + [current]


def test_q_learning_agent_equals_the_textbook_loop():
    """One env: the agent's table after 300 steps equals textbook Q-learning applied to the
    same transitions (truncations after 6 steps bootstrap, exits do not)."""
    cells, actions, Q_agent, params = record("q_learning")
    episodes = replay_episodes(cells, actions, params)
    endings = {episode[-1][4] for episode in episodes[:-1]}
    assert endings == {True, False}  # both exits and time-limit truncations happened
    Q = np.zeros((12, 4))
    for episode in episodes:
        for s, a, r, s_next, terminated in episode:
            Q[s, a] += 0.5 * (r + 0.9 * (1 - terminated) * Q[s_next].max() - Q[s, a])
    np.testing.assert_allclose(Q_agent, Q, rtol=1e-5, atol=1e-6)


def test_monte_carlo_agent_equals_a_numpy_reference():
    """One env: at each episode end, G_t = r_t + γ G_{t+1} backwards from 0 (exit) or from
    γ·V(s_final) with V the ε-greedy value (truncation); the returns of repeated visits to
    one (s, a) are averaged into a single step of size α."""
    cells, actions, Q_agent, params = record("mc")
    Q = np.zeros((12, 4))
    for episode in replay_episodes(cells, actions, params)[:-1]:  # MC waits for the end
        s_final, terminated = episode[-1][3], episode[-1][4]
        g = 0.0 if terminated else 0.5 * Q[s_final].max() + 0.5 * Q[s_final].mean()
        targets = {}
        for s, a, r, _, _ in reversed(episode):
            g = r + 0.9 * g
            targets.setdefault((s, a), []).append(g)
        old = Q.copy()
        for (s, a), gs in targets.items():
            Q[s, a] += 0.5 * np.mean([g - old[s, a] for g in gs])
    np.testing.assert_allclose(Q_agent, Q, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- config checks


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(method="td_lambda"), "method"),
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=1.5), "alpha"),
        (dict(alpha_end=0.0), "alpha_end"),
        (dict(gamma=0.0), "gamma"),
        (dict(epsilon_end=-0.1), "epsilon_end"),
        (dict(num_envs=0), "num_envs"),
    ],
)
def test_bad_config_raises_naming_the_field(change, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        tabular.Config(**change)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "Catch-bsuite"])
def test_envs_without_a_finite_state_index_are_refused(env_id):
    """Continuous observations (CartPole), continuous actions (Pendulum) and an image-like
    observation with no known index (Catch) fail before anything compiles."""
    with pytest.raises(ValueError, match="^env"):
        tabular.make_train(tabular.Config(env_id=env_id))


def test_unknown_env_suggests_close_names():
    with pytest.raises(ValueError, match="RobotInRoom-v0"):
        tabular.make_train(tabular.Config(env_id="RobotInRoom-v1"))


def test_env_kwargs_accept_a_dict_and_reach_the_env():
    config = tabular.Config(env_kwargs={"step_reward": -2.0, "intended_prob": 1.0})
    assert config.env_kwargs == (("intended_prob", 1.0), ("step_reward", -2.0))
    env = tabular.make_env(config, config.num_envs)
    assert env.params.step_reward == -2.0


# ---------------------------------------------------------------- determinism, vmap

TINY = dict(total_steps=400, eval_every=200, num_envs=2, eval_envs=2, alpha=0.5)


@pytest.mark.slow
def test_vmapped_run_equals_runs_one_by_one_and_is_deterministic():
    """Monte Carlo, the method with the most state (episode buffers); the TD methods share
    everything else (acting, env, table update), and Q-learning is checked step by step
    against the textbook loop above."""
    config = tabular.Config(method="mc", **TINY)
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    train = tabular.make_train(config)
    state_v, metrics_v = jax.jit(jax.vmap(train))(keys)
    single = jax.jit(train)
    for i in range(2):
        state, metrics = single(keys[i])
        np.testing.assert_array_equal(state.Q, state_v.Q[i])
        for k in metrics:
            if k == "epsilon":  # a schedule: XLA may round it 1 ulp differently under vmap
                np.testing.assert_allclose(metrics[k], metrics_v[k][i], rtol=1e-6, err_msg=k)
            else:  # what the agent did agrees exactly
                np.testing.assert_array_equal(metrics[k], metrics_v[k][i], err_msg=k)
    again, _ = single(keys[0])
    np.testing.assert_array_equal(again.Q, state_v.Q[0])
    assert not np.array_equal(state_v.Q[0], state_v.Q[1])  # different seeds differ
    assert np.any(np.asarray(state_v.Q) != 0.0)


# ---------------------------------------------------------------- learning

CLEAR_MARGIN = 0.03


@pytest.mark.slow
def test_q_learning_recovers_value_iteration_policy():
    """RobotInRoom, step reward −0.04, γ = 1 (the book's setting). Value iteration gives Q*;
    in a cell where the best action beats the second best by more than 0.03, every one of 16
    vmapped Q-learning seeds (50k steps, α 0.1 → 0.01, ε 1 → 0.1) must pick the same action.

    Six of the nine cells clear that margin: (1, 1), (2, 1), (1, 2), (1, 3), (2, 3), (3, 3)
    (gaps 0.034–0.041). The other three — (3, 1), (4, 1), (3, 2), the cells next to the −1
    exit — have gaps of 0.018–0.019, below the noise of a 50k-step table. Measured when
    written: 32 of 32 seeds pass at 20k steps already; a uniformly random table passes a
    given cell with probability 1/4.
    """
    env, params = envs.make("RobotInRoom-v0")
    _, Q_star = value_iteration(*env.transition_model(params), gamma=1.0, tol=1e-7)
    Q_star = np.asarray(Q_star)
    top2 = np.sort(Q_star, axis=-1)[:, -2:]
    cells = [s for s in range(12) if s not in (5, 7, 11) and top2[s, 1] - top2[s, 0] > 0.03]
    assert len(cells) == 6
    config = tabular.Config(
        env_id="RobotInRoom-v0",
        total_steps=50_000,
        eval_every=50_000,
        num_envs=4,
        gamma=1.0,
        alpha=0.1,
        decay_alpha=True,
    )
    keys = jax.random.split(jax.random.PRNGKey(0), 16)
    state, metrics = jax.jit(jax.vmap(tabular.make_train(config)))(keys)
    chosen = np.asarray(state.Q).argmax(-1)[:, cells]
    np.testing.assert_array_equal(chosen, np.broadcast_to(Q_star.argmax(-1)[cells], chosen.shape))
    # The greedy policy's return from the start, 0.705 at best (random: −1.59).
    assert metrics["eval_return"][:, -1].mean() > 0.5


@pytest.mark.slow
def test_monte_carlo_learns_the_room():
    """8 seeds, 50k steps, γ = 1: the median over seeds of the final greedy return (8
    episodes each) exceeds 0.5 — optimal is 0.705, the uniformly random policy's expected
    return −1.59. The median, because with γ = 1 a noisy table can make a greedy policy bump
    into a wall until the time limit (return −4) in an odd seed. Measured when written, over
    four sets of 8 seeds: medians 0.68–0.73 (means 0.55–0.64)."""
    config = tabular.Config(
        method="mc",
        total_steps=50_000,
        eval_every=10_000,
        num_envs=4,
        gamma=1.0,
        alpha=0.1,
        decay_alpha=True,
    )
    keys = jax.random.split(jax.random.PRNGKey(1), 8)
    _, metrics = jax.jit(jax.vmap(tabular.make_train(config)))(keys)
    assert np.median(metrics["eval_return"][:, -1]) > 0.5


@pytest.mark.slow
def test_sarsa_learns_the_room_through_purerl_run():
    """``purerl.run("tabular", ...)`` drives the agent like every other algorithm
    (experiment.py calls init / step / evaluate / schedule), seeds vmapped. SARSA, 8 seeds,
    50k steps, γ = 1: median final greedy return > 0.5 (optimal 0.705, random −1.59; measured
    when written over four sets of 8 seeds: medians 0.72–0.74)."""
    result = purerl.run(
        "tabular",
        "RobotInRoom-v0",
        seeds=8,
        steps=50_000,
        overrides={"method": "sarsa", "gamma": 1.0, "decay_alpha": True, "eval_every": 10_000},
        progress=False,
    )
    assert result.algorithm == "tabular"
    assert result.metrics["eval_return"].shape[-2:] == (8, 5)  # [(configs,) seeds, evals]
    assert result.state.Q.shape[-3:] == (8, 12, 4)
    assert np.median(result.metrics["eval_return"][..., -1]) > 0.5


GYMNAX = [
    # env, kwargs, config changes, steps, minimum final greedy return of every seed
    ("FrozenLake-misc", {"is_slippery": False}, {}, 20_000, 1.0),
    ("DeepSea-bsuite", {}, {"q_init": 1.0}, 20_000, 0.99),
    ("FourRooms-misc", {}, {}, 2_000, None),
]


@pytest.mark.slow
@pytest.mark.parametrize("env_id, kwargs, change, steps, minimum", GYMNAX)
def test_gymnax_discrete_envs_run_jitted(env_id, kwargs, change, steps, minimum):
    """Each discrete-state gymnax env trains jitted over 4 vmapped Q-learning seeds with a
    finite table of the documented size.

    * deterministic 4×4 FrozenLake: every seed's greedy policy reaches the goal (return 1; a
      uniformly random policy reaches it in 1.4% of episodes);
    * DeepSea (size 8) with an optimistic table (``q_init = 1``, which makes untried actions
      look good): every seed finds the treasure, return 0.99 (= 1 − the 0.01 cost of moving
      right), where random actions find it with probability 2⁻⁸;
    * FourRooms (169² table rows, 500-step episodes): only that it runs (its sparse goal needs
      far more steps than a unit test should take).
    """
    config = tabular.Config(
        env_id=env_id, env_kwargs=kwargs, total_steps=steps, eval_every=steps, **change
    )
    env, params = envs.make(env_id, **kwargs)
    n_states, _ = envs.tabular_states(env, params)
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    state, metrics = jax.jit(jax.vmap(tabular.make_train(config)))(keys)
    assert state.Q.shape == (4, n_states, env.num_actions)
    assert np.all(np.isfinite(state.Q))
    if minimum is not None:
        assert metrics["eval_return"][:, -1].min() >= minimum - 1e-4
