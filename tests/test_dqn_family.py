"""The DQN family: n-step windows against NumPy loops (unit and inside DQN), config checks for
the new switches, each variant on a probe environment, the MinAtar CNN under jit and vmap."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_dqn import PROBE as DQN_PROBE

from purerl import replay
from purerl.algorithms import dqn
from purerl.envs import VecEnv
from purerl.networks import ConvTorso
from purerl.returns import n_step_targets
from purerl.types import Transition

GAMMA = 0.9


# ------------------------------------------------------------------------------ references


def ref_n_step_stream(r, terminated, truncated, next_obs, n, gamma):
    """n-step transitions of every step with a full window, by walking forward from it:
    add γ^k r_{t+k} until the window holds n steps or an episode ends at t+k; then
    discount = γ^k (1 − terminated_{t+k}) and next_obs = next_obs_{t+k}. [T − n + 1, N]."""
    T, N = r.shape
    rewards = np.zeros((T - n + 1, N))
    discounts = np.zeros((T - n + 1, N))
    nexts = np.zeros((T - n + 1, N, *next_obs.shape[2:]))
    for t in range(T - n + 1):
        for e in range(N):
            total, k = 0.0, 0
            while True:
                total += gamma**k * r[t + k, e]
                if terminated[t + k, e] or truncated[t + k, e] or k == n - 1:
                    break
                k += 1
            rewards[t, e] = total
            discounts[t, e] = gamma**k * (1.0 - terminated[t + k, e])
            nexts[t, e] = next_obs[t + k, e]
    return rewards, discounts, nexts


def random_stream(seed, T=40, N=3):
    """Random rewards, terminations and truncations (15% each), observations numbered so a
    wrong pairing shows: obs = id, next_obs = id + 1000."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=(T, N))
    terminated, truncated = u < 0.15, (u >= 0.15) & (u < 0.3)
    assert terminated.any() and truncated.any()
    ids = np.arange(T * N, dtype=np.float32).reshape(T, N, 1)
    items = Transition(
        obs=jnp.asarray(ids),
        action=jnp.asarray(rng.integers(0, 3, (T, N)), jnp.int32),
        reward=jnp.asarray(rng.normal(size=(T, N)), jnp.float32),
        discount=jnp.asarray(1.0 - terminated, jnp.float32),
        next_obs=jnp.asarray(ids + 1000.0),
    )
    return items, terminated, truncated


def push_all(items, done, n, gamma):
    """Push a [T, N] stream through a jitted window; outputs of the full-window pushes."""
    window = replay.window_init(jax.tree.map(lambda x: x[0], items), n)
    push = jax.jit(replay.window_push)
    outs, ready = [], []
    for t in range(done.shape[0]):
        window, out, ok = push(window, jax.tree.map(lambda x, t=t: x[t], items), done[t], gamma)
        outs.append(out)
        ready.append(bool(ok))
    return jax.tree.map(lambda *x: np.stack(x), *outs), np.asarray(ready)


# ------------------------------------------------------------------------------ n-step window


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_window_matches_numpy_loop_with_mid_window_termination_and_truncation(n):
    items, terminated, truncated = random_stream(n)
    out, ready = push_all(items, jnp.asarray(terminated | truncated), n, GAMMA)
    np.testing.assert_array_equal(ready, np.arange(len(ready)) >= n - 1)
    full = jax.tree.map(lambda x: x[n - 1 :], out)  # push t + n − 1 emits step t
    r, d, nxt = ref_n_step_stream(
        np.asarray(items.reward), terminated, truncated, np.asarray(items.next_obs), n, GAMMA
    )
    np.testing.assert_allclose(full.reward, r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full.discount, d, rtol=1e-6)
    np.testing.assert_array_equal(full.next_obs, nxt)
    # each step comes out exactly once, with its own obs and action
    np.testing.assert_array_equal(full.obs, np.asarray(items.obs)[: len(r)])
    np.testing.assert_array_equal(full.action, np.asarray(items.action)[: len(r)])


def test_window_targets_equal_returns_n_step_targets():
    """r + γ·discount·v(next_obs) of each windowed transition is the n-step target of
    returns.n_step_targets over the same stream (truncation bootstraps, termination not)."""
    n = 4
    items, terminated, truncated = random_stream(7)
    done = terminated | truncated
    out, _ = push_all(items, jnp.asarray(done), n, GAMMA)
    full = jax.tree.map(lambda x: x[n - 1 :], out)

    def value(obs):  # any function of the observation
        return np.sin(np.asarray(obs)[..., 0])

    windowed = full.reward + GAMMA * full.discount * value(full.next_obs)
    targets = n_step_targets(
        items.reward,
        GAMMA * items.discount,
        jnp.asarray(value(items.next_obs), jnp.float32),
        n,
        done_t=jnp.asarray(done),
    )
    np.testing.assert_allclose(windowed, np.asarray(targets)[: len(windowed)], rtol=1e-5, atol=1e-5)


def test_n_step_transition_hand_computed():
    """Window of 3: reward 1, 2 (truncated here), 4. Cut after step 1: R = 1 + γ·2,
    discount γ (bootstrap from step 1's final obs); with a termination instead, discount 0."""
    items = Transition(
        obs=jnp.asarray([[10.0], [11.0], [12.0]]),
        action=jnp.asarray([0, 1, 2]),
        reward=jnp.asarray([1.0, 2.0, 4.0]),
        discount=jnp.asarray([1.0, 1.0, 1.0]),
        next_obs=jnp.asarray([[11.0], [99.0], [13.0]]),
    )
    done = jnp.asarray([False, True, False])
    out = replay.n_step_transition(items, done, 0.5)
    np.testing.assert_allclose(out.reward, 1 + 0.5 * 2)
    np.testing.assert_allclose(out.discount, 0.5)
    np.testing.assert_array_equal(out.next_obs, [99.0])
    terminal = eqx.tree_at(lambda t: t.discount, items, jnp.asarray([1.0, 0.0, 1.0]))
    assert float(replay.n_step_transition(terminal, done, 0.5).discount) == 0.0
    uncut = replay.n_step_transition(items, jnp.zeros(3, bool), 0.5)
    np.testing.assert_allclose(uncut.reward, 1 + 0.5 * 2 + 0.25 * 4)
    np.testing.assert_allclose(uncut.discount, 0.25)
    np.testing.assert_array_equal(uncut.next_obs, [13.0])


def test_window_under_vmap_equals_one_by_one():
    items, terminated, truncated = random_stream(3, T=8, N=2)
    done = jnp.asarray(terminated | truncated)
    stacked = jax.tree.map(lambda x: jnp.stack([x, x[::-1]]), items)  # two different streams
    dones = jnp.stack([done, done[::-1]])

    def run(items, done):
        window = replay.window_init(jax.tree.map(lambda x: x[0], items), 3)

        def body(w, xs):
            w, out, _ = replay.window_push(w, xs[0], xs[1], GAMMA)
            return w, out

        return jax.lax.scan(body, window, (items, done))[1]

    batched = jax.jit(jax.vmap(run))(stacked, dones)
    for i in range(2):
        single = run(jax.tree.map(lambda x, i=i: x[i], stacked), dones[i])
        for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(single), strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-6)


def test_conditional_add_batch():
    example = jax.tree.map(lambda x: x[0, 0], random_stream(0)[0])
    items = jax.tree.map(lambda x: x[0], random_stream(0)[0])
    buffer = replay.add_batch(replay.init(example, 8), items)
    same = replay.add_batch(buffer, items, jnp.asarray(False))
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(buffer), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(replay.add_batch(buffer, items, jnp.asarray(True)).size) == 6


# ------------------------------------------------------------------------------ inside DQN


@pytest.mark.parametrize("env_id", ["TimeLimit-probe", "TwoStep-probe"])
def test_dqn_stores_n_step_transitions_of_the_env_stream(env_id):
    """After K iterations the buffer holds, in order, the n-step transitions of steps
    0..K−n of every env, equal to the NumPy reference over the env's own stream (TimeLimit:
    truncation every 5 steps; TwoStep: termination every 2, reward at the second step)."""
    n, k, num_envs = 3, 12, 2
    config = dqn.Config(
        env_id=env_id,
        n_step=n,
        num_envs=num_envs,
        buffer_size=64,
        batch_size=4,
        total_steps=64,
        eval_every=64,
        learning_starts=10**6,
        gamma=GAMMA,
    )
    state = dqn.init(jax.random.PRNGKey(0), config)
    step = jax.jit(dqn.step)
    for _ in range(k):
        state, _ = step(state)
    env = VecEnv.make(env_id, num_envs=num_envs)  # these probes are deterministic
    env_state, rec = env.reset(jax.random.PRNGKey(1)), []
    for _ in range(k):
        env_state, ts = env.step(jax.random.PRNGKey(2), env_state, jnp.zeros(num_envs, jnp.int32))
        rec.append((ts.reward, ts.terminated, ts.truncated, ts.final_obs))
    r, term, trunc, final = (np.stack(x) for x in zip(*rec, strict=True))
    assert (term | trunc).any()
    ref_r, ref_d, ref_next = ref_n_step_stream(r, term, trunc, final, n, GAMMA)
    stored = (k - n + 1) * num_envs
    assert int(state.buffer.size) == stored
    data = jax.tree.map(
        lambda x: np.asarray(x[:stored]).reshape(k - n + 1, num_envs, *x.shape[1:]),
        state.buffer.data,
    )
    np.testing.assert_allclose(data.reward, ref_r, rtol=1e-6)
    np.testing.assert_allclose(data.discount, ref_d, rtol=1e-6)
    np.testing.assert_array_equal(data.next_obs, ref_next)


# ------------------------------------------------------------------------------ config checks


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(n_step=0), "n_step"),
        (dict(n_step=200, num_envs=10, buffer_size=1_000), "n_step"),
        (dict(n_step=20, replay=False, batch_size=100), "n_step"),
        (dict(per_alpha=-0.1), "per_alpha"),
        (dict(per_beta_start=-0.5), "per_beta_start"),
        (dict(per_beta_start=1.5), "per_beta_start"),
        (dict(per_eps=0.0), "per_eps"),
        (dict(prioritized=True, replay=False), "prioritized"),
        (dict(replay=False, batch_size=8), "num_envs"),
        (dict(network="resnet"), "network"),
        (dict(epsilon_start=-0.1), "epsilon_start"),
    ],
)
def test_bad_extension_config_raises_naming_the_field(change, field):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        dqn.Config(**change)


@pytest.mark.parametrize("network", ["minatar_cnn", "nature_cnn"])
def test_cnn_on_flat_observations_raises_before_compile(monkeypatch, network):
    calls = []
    monkeypatch.setattr(jax, "jit", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match="^network:"):
        dqn.make_train(dqn.Config(network=network))
    with pytest.raises(ValueError, match="^n_step:"):
        dqn.make_train(dataclasses.replace(dqn.Config(), n_step=10**4))
    assert calls == []


# ------------------------------------------------------------------------------ probes
# Each variant must get the probe's known Q-values. TwoStep-probe with γ = 0.5: Q(0) = 0.5,
# Q(1) = 1; a target that ignores the discount (or the n-step γ^k) gives Q(0) = 1, one that
# does not bootstrap gives 0, both far outside the ±0.1 tolerance. TimeLimit-probe, γ = 0.9:
# Q = 1/(1 − γ) = 10; treating truncation as termination gives ~2.6 (tolerance ±5%).

PROBE = {**DQN_PROBE, "gamma": 0.5}  # the probe settings of test_dqn.py, γ = 0.5


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def train_probe(env_id, seeds=2, **kw):
    """Train vmapped seeds; a second call with the same keys must give the same bits."""
    config = dqn.Config(env_id=env_id, **{**PROBE, **kw})
    keys = jax.random.split(jax.random.PRNGKey(42), seeds)
    train = jax.jit(jax.vmap(dqn.make_train(config)))
    state, metrics = train(keys)
    again = train(keys)
    for a, b in zip(_leaves((state, metrics)), _leaves(again), strict=True):
        np.testing.assert_array_equal(a, b)
    return state, metrics


def q_values(state, obs):
    obs = jnp.asarray(obs, jnp.float32).reshape(-1, 1)
    return np.asarray(jax.vmap(lambda net: jax.vmap(net)(obs))(state.network))


# Double DQN (the default, double=True) is checked on the same probes by tests/test_dqn.py.
TWO_STEP_VARIANTS = {
    "max": dict(double=False),
    "n_step": dict(n_step=3),
    "prioritized": dict(prioritized=True),
    "prioritized_n_step": dict(prioritized=True, n_step=3),
    "no_target": dict(target_network=False),
    "no_replay": dict(replay=False),
    "squared_periodic": dict(loss="squared", tau=1.0, target_update_period=25),
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(TWO_STEP_VARIANTS))
def test_variant_learns_two_step_probe(variant):
    state, _ = train_probe("TwoStep-probe", **TWO_STEP_VARIANTS[variant])
    q = q_values(state, [0.0, 1.0])[..., 0]
    np.testing.assert_allclose(q, np.broadcast_to([0.5, 1.0], q.shape), atol=0.1)


@pytest.mark.slow
def test_dueling_learns_observation_and_action_probe():
    state, _ = train_probe("ObsActionReward-probe", dueling=True, hidden_sizes=(32, 32))
    q = q_values(state, [-1.0, 1.0])
    np.testing.assert_allclose(q, np.broadcast_to([[1.0, -1.0], [-1.0, 1.0]], q.shape), atol=0.15)


@pytest.mark.slow
def test_n_step_truncation_inside_the_window_bootstraps():
    state, _ = train_probe(
        "TimeLimit-probe", n_step=3, gamma=0.9, total_steps=6_000, eval_every=6_000
    )
    np.testing.assert_allclose(q_values(state, [0.0]), 10.0, rtol=0.05)


# ------------------------------------------------------------------------------ MinAtar CNN


@pytest.mark.slow
def test_minatar_cnn_dqn_runs_a_jitted_vmapped_step_on_breakout():
    config = dqn.Config(
        env_id="Breakout-MinAtar",
        num_envs=4,
        buffer_size=256,
        batch_size=32,
        learning_starts=32,
        updates_per_iteration=1,
        total_steps=4_000,
        eval_every=4_000,
        activation="relu",
    )
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    state = jax.jit(jax.vmap(lambda k: dqn.init(k, config)))(keys)
    assert isinstance(state.network.torso, ConvTorso)
    assert state.network.torso.convs[0].weight.shape == (2, 16, 4, 3, 3)  # [seeds, out, in, 3, 3]
    assert state.buffer.data.obs.shape == (2, 256, 10, 10, 4)
    before = np.asarray(state.network.head.weight)

    def steps(s):
        return jax.lax.scan(lambda c, _: dqn.step(c), s, None, length=iterations)

    # enough iterations that learning has begun by the last one: the n-step window holds back
    # (n_step - 1) x num_envs transitions before a full batch (>= learning_starts) is stored
    held_back = (config.n_step - 1) * config.num_envs
    iterations = -(-(config.batch_size + held_back) // config.num_envs) + 1
    state, metrics = jax.jit(jax.vmap(steps))(state)
    assert np.asarray(metrics["learning"])[:, -1].all()
    assert np.isfinite(np.asarray(metrics["loss"])).all()
    assert not np.allclose(np.asarray(state.network.head.weight), before)
    q = jax.vmap(lambda net, o: jax.vmap(net)(o))(state.network, state.env_state.obs)
    assert q.shape == (2, 4, 3) and np.isfinite(np.asarray(q)).all()


@pytest.mark.slow
def test_combined_switches_vmap_equals_one_by_one():
    """3-step targets, no target network, squared loss together: vmapped seeds equal seeds
    run one by one (actions, returns and evaluations exactly; losses to 1e-5).

    Not with prioritized replay: there the runs agree only until float rounding of batched
    matmuls moves a priority across a sampling boundary, after which the batches differ (same
    keys still give the same bits: ``train_probe`` checks that for every variant)."""
    config = dqn.Config(
        total_steps=2_000,
        eval_every=1_000,
        learning_starts=200,
        eval_envs=2,
        buffer_size=2_000,
        batch_size=32,
        updates_per_iteration=1,
        hidden_sizes=(16,),
        n_step=3,
        target_network=False,
        loss="squared",
    )
    keys = jax.random.split(jax.random.PRNGKey(11), 2)
    _, vm = jax.jit(jax.vmap(dqn.make_train(config)))(keys)
    one = jax.jit(dqn.make_train(config))
    for i in range(2):
        _, m = one(keys[i])
        for k in m:
            if k in ("loss", "q_mean", "epsilon"):  # ε: a schedule, may differ by 1 ulp
                np.testing.assert_allclose(vm[k][i], m[k], rtol=1e-5, atol=1e-6, err_msg=k)
            else:
                np.testing.assert_array_equal(vm[k][i], m[k], err_msg=k)
