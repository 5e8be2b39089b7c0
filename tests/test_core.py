"""The algorithm contract (purerl/algorithms/core.py), checked for EVERY registered algorithm —
including a toy one registered from this file, so a new algorithm is covered by adding it to
the registry, and gets the CLI, sweeps, checkpoints and plots with no change to purerl.

Each algorithm's ``quick_config()`` keeps these runs to a second or two."""

import dataclasses
import logging

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float
from resume_check import check_interrupted_resume_is_bit_exact

import purerl
from purerl.algorithms import core
from purerl.algorithms.common import finished_episode_stats, require
from purerl.envs import VecEnv

# ------------------------------------------------------------------ a toy algorithm


class ToyConfig(eqx.Module):
    """A gradient bandit (Sutton & Barto, 2018, §2.8): softmax preferences over actions."""

    env_id: str = eqx.field(static=True, default="ActionReward-probe")
    total_steps: int = eqx.field(static=True, default=400)
    num_envs: int = eqx.field(static=True, default=4)
    eval_every: int = eqx.field(static=True, default=200)
    eval_envs: int = eqx.field(static=True, default=2)
    learning_rate: float | Float[Array, ""] = 0.1

    def __check_init__(self):
        require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        for name in ("total_steps", "eval_every"):  # dividing them is the contract's job
            require(getattr(self, name) > 0, name, f"must be > 0, got {getattr(self, name)}")


class ToyState(eqx.Module):
    config: ToyConfig
    env: VecEnv
    env_state: object
    preferences: Float[Array, " A"]
    key: jax.Array
    iteration: jax.Array

    @property
    def env_steps(self):
        return self.iteration * self.config.num_envs


def toy_init(key, config, *, network=None):
    env = VecEnv.make(config.env_id, num_envs=config.num_envs)
    key, env_key = jax.random.split(key)
    prefs = jnp.zeros((env.num_actions,), jnp.float32)
    return ToyState(config, env, env.reset(env_key), prefs, key, jnp.zeros((), jnp.int32))


def toy_step(state):
    c = state.config
    key, act_key, env_key = jax.random.split(state.key, 3)
    action = jax.random.categorical(act_key, state.preferences, shape=(c.num_envs,))
    env_state, ts = state.env.step(env_key, state.env_state, action)
    probs = jax.nn.softmax(state.preferences)[None, :]
    one_hot = jax.nn.one_hot(action, probs.shape[-1])
    grad = jnp.mean(ts.reward[:, None] * (one_hot - probs), axis=0)
    prefs = state.preferences + c.learning_rate * grad
    state = ToyState(c, state.env, env_state, prefs, key, state.iteration + 1)
    return state, {"reward": jnp.mean(ts.reward), **finished_episode_stats(ts)}


def _toy_greedy_act(prefs, key, obs, carry, first):
    return jnp.full((obs.shape[0],), jnp.argmax(prefs), jnp.int32), carry, {}


TOY = core.register(
    core.Algorithm(
        name="toy-bandit",
        Config=ToyConfig,
        init=toy_init,
        step=toy_step,
        greedy_policy=lambda state: core.Policy(state.preferences, _toy_greedy_act),
        iteration_steps=lambda c: c.num_envs,
        quick_config=ToyConfig,
    ),
    replace=True,
)

NAMES = core.registered()
assert {"dqn", "pqn", "ppo", "a2c", "reinforce", "tabular", "toy-bandit"} <= set(NAMES)


def _train(name, config, key=0, seeds=None, **kw):
    algo = core.get(name)
    train = algo.make_train(config, **kw)
    if seeds is None:
        return jax.jit(train)(jax.random.PRNGKey(key))
    return jax.jit(jax.vmap(train))(jax.random.split(jax.random.PRNGKey(key), seeds))


def _arrays(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_array))]


def _training_metrics(metrics):
    return {k: np.asarray(v) for k, v in metrics.items() if not k.startswith("eval_")}


# ------------------------------------------------------------------ the contract


@pytest.mark.parametrize("name", NAMES)
def test_record_is_complete(name):
    algo = core.get(name)
    config = algo.quick_config()
    assert isinstance(config, algo.Config)
    for field in ("env_id", "total_steps", "eval_every", "eval_envs"):
        assert hasattr(config, field), field
    num_periods, period = algo.schedule(config)
    assert num_periods * period * algo.iteration_steps(config) == config.total_steps


@pytest.mark.parametrize("name", NAMES)
def test_bad_config_raises_before_compile(name, monkeypatch):
    algo = core.get(name)
    good = algo.quick_config()
    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before checking"))
    with pytest.raises(ValueError, match="^total_steps:"):
        algo.make_train(dataclasses.replace(good, total_steps=0))
    with pytest.raises(ValueError, match="^eval_every:"):
        algo.make_train(dataclasses.replace(good, eval_every=-1))
    typo = dataclasses.replace(good, env_id=good.env_id[:-1])
    with pytest.raises(ValueError, match=good.env_id):  # the close name is suggested
        algo.make_train(typo)
    with pytest.raises(ValueError, match="^env"):
        purerl.run(name, config=typo, progress=False)
    with pytest.raises(ValueError, match="^config:"):
        core.check(algo, object())


@pytest.mark.parametrize("name", NAMES)
def test_same_key_same_bits_other_key_differs(name):
    config = core.get(name).quick_config()
    s1, m1 = _train(name, config, key=3)
    s2, m2 = _train(name, config, key=3)
    for a, b in zip(_arrays((s1, m1)), _arrays((s2, m2)), strict=True):
        np.testing.assert_array_equal(a, b)
    s3, _ = _train(name, config, key=4)
    assert any(not np.array_equal(a, b) for a, b in zip(_arrays(s1), _arrays(s3), strict=True)), (
        "another key gave the same final state"
    )


@pytest.mark.parametrize("name", NAMES)
def test_vmap_equals_one_by_one(name):
    config = core.get(name).quick_config()
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    train = core.get(name).make_train(config)
    _, batched = jax.jit(jax.vmap(train))(keys)
    exact = {"eval_env_steps", "env_steps", "episode_count"}
    if VecEnv.make(config.env_id, num_envs=1).is_discrete:
        exact.add("eval_return")  # argmax actions absorb rounding; continuous ones carry it
    for i in range(2):
        _, alone = jax.jit(train)(keys[i])
        for k, v in alone.items():
            got = np.asarray(batched[k][i])
            if k in exact:
                np.testing.assert_array_equal(got, v, err_msg=k)
            else:  # batched matmuls may round the last float32 bit differently
                np.testing.assert_allclose(got, v, rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("name", NAMES)
def test_evaluation_does_not_change_training(name):
    """Training metrics and the final state are bit for bit the same with evaluation on, off,
    or over another number of evaluation envs: evaluation keys have their own stream."""
    config = core.get(name).quick_config()
    s_on, m_on = _train(name, config, key=1)
    s_off, m_off = _train(name, config, key=1, evaluate=False)
    s_wide, m_wide = _train(name, dataclasses.replace(config, eval_envs=5), key=1)
    assert "eval_return" in m_on and "eval_return" not in m_off
    on = _training_metrics(m_on)
    for other, state in ((m_off, s_off), (m_wide, s_wide)):
        assert _training_metrics(other).keys() == on.keys()
        for k, v in _training_metrics(other).items():
            np.testing.assert_array_equal(v, on[k], err_msg=k)
        for a, b in zip(_arrays(state.key), _arrays(s_on.key), strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_any_positive_budget_is_fitted_to_whole_iterations(name):
    """``fit_budget`` turns any positive ``total_steps`` / ``eval_every`` into whole iterations
    in equal periods, never fewer steps than asked and less than one period more; a budget that
    already divides is kept; ``make_train`` on an unfitted one names the field."""
    algo = core.get(name)
    config = algo.quick_config()
    assert core.fit_budget(algo, config) is config
    size = algo.iteration_steps(config)
    for total, every in ((config.total_steps + 1, config.eval_every + 1), (1, 10**9), (7, 3)):
        odd = dataclasses.replace(config, total_steps=total, eval_every=every)
        fitted = core.fit_budget(algo, odd)
        periods, per_period = algo.schedule(fitted)  # divides: no ValueError
        assert periods * per_period * size == fitted.total_steps
        assert total <= fitted.total_steps < total + fitted.eval_every
        assert fitted.eval_every % size == 0
    with pytest.raises(ValueError, match="^(total_steps|eval_every):"):
        algo.make_train(dataclasses.replace(config, total_steps=config.total_steps + 1))


def test_run_takes_a_budget_as_typed_and_says_what_it_runs(capsys):
    config = core.get("reinforce").quick_config()
    asked = config.total_steps + 100
    result = purerl.run("reinforce", config.env_id, steps=asked, progress=False)
    err = capsys.readouterr().err
    assert f"for total_steps={asked:,}" in err
    assert result.config.total_steps >= asked
    assert int(result.metrics["eval_env_steps"][0, 0, -1]) == result.config.total_steps


def test_evaluation_key_depends_on_env_steps_not_cadence():
    """Evaluating at the same env step gives the same return whatever ``eval_every`` is."""
    config = core.get("dqn").quick_config()
    _, m200 = _train("dqn", config, key=2)
    _, m400 = _train("dqn", dataclasses.replace(config, eval_every=400), key=2)
    np.testing.assert_array_equal(m200["eval_return"][-1], m400["eval_return"][-1])
    np.testing.assert_array_equal(m200["eval_env_steps"][-1], m400["eval_env_steps"][-1])


def _count_compiles(fn):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    jax.config.update("jax_log_compiles", True)
    try:
        result = fn()
    finally:
        jax.config.update("jax_log_compiles", False)
        logger.removeHandler(handler)
    messages = [r.getMessage() for r in records if "Finished XLA compilation" in r.getMessage()]
    return result, messages


@pytest.mark.parametrize("name", NAMES)
def test_two_point_sweep_compiles_once(name):
    config = core.get(name).quick_config()
    field = purerl.experiment.sweepable_fields(config)[0]
    value = float(getattr(config, field))
    sweep = {field: [value, 0.5 * value]}
    result, compiles = _count_compiles(
        lambda: purerl.run(name, config=config, seeds=2, sweep=sweep, progress=False)
    )
    assert sum("jit(train_chunk)" in m for m in compiles) == 1, compiles
    assert result.metrics["eval_return"].shape[:2] == (2, 2)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_then_resume_is_bit_exact(name, tmp_path):
    check_interrupted_resume_is_bit_exact(name, core.get(name).quick_config(), tmp_path)


# ------------------------------------------------------------------ the toy gets everything


def test_toy_algorithm_learns_its_bandit():
    """ActionReward-probe pays +1 for action 1 and −1 for action 0: the greedy return is +1
    on every seed once the preferences point the right way (chance of all 4 seeds right by
    luck: 1/16)."""
    _, metrics = _train("toy-bandit", ToyConfig(), seeds=4)
    np.testing.assert_array_equal(metrics["eval_return"][:, -1], 1.0)


def test_toy_algorithm_gets_cli_sweeps_checkpoints_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from purerl.cli import main

    out = tmp_path / "toy"
    argv = ["train", "toy-bandit", "--seeds", "2", "--out", str(out), "--no-progress"]
    code = main([*argv, "--sweep", "learning_rate=0.1,0.5"])
    assert code in (0, None)
    assert (out / "checkpoint.npz").exists() and (out / "summary.json").exists()
    run = purerl.experiment.load_run(out)
    assert run["metrics"]["eval_return"].shape == (2, 2, 2)
    assert main(["plot", str(out), "--out", str(tmp_path / "plots")]) in (0, None)
    assert (tmp_path / "plots" / "learning_curves.png").stat().st_size > 10_000


# ------------------------------------------------------------------ bring your own network


class TinyQ(eqx.Module):
    """A Q-network written outside purerl: one observation → Q-values."""

    mlp: eqx.nn.MLP

    def __init__(self, key, obs_shape, action_spec):
        size = int(np.prod(obs_shape))
        self.mlp = eqx.nn.MLP(size, action_spec.size, 32, 2, activation=jax.nn.tanh, key=key)

    def __call__(self, obs):
        return self.mlp(obs.reshape(-1))


class TinyActorCritic(eqx.Module):
    """An actor-critic written outside purerl: one observation → (Categorical, value)."""

    policy: eqx.nn.MLP
    value: eqx.nn.MLP

    def __init__(self, key, obs_shape, action_spec):
        size = int(np.prod(obs_shape))
        k1, k2 = jax.random.split(key)
        self.policy = eqx.nn.MLP(size, action_spec.size, 32, 1, key=k1)
        self.value = eqx.nn.MLP(size, "scalar", 32, 1, key=k2)

    def __call__(self, obs):
        x = obs.reshape(-1)
        return purerl.Categorical(logits=self.policy(x)), self.value(x)


@pytest.mark.slow
def test_own_network_trains_dqn_on_a_probe():
    """ObsActionReward-probe: +1 for the action matching the observation's sign, −1 else;
    greedy return 1 on all 2 × 8 evaluation episodes (chance: 2^-16)."""
    from purerl.algorithms import dqn

    config = dqn.Config(
        env_id="ObsActionReward-probe",
        total_steps=3_000,
        num_envs=4,
        eval_every=3_000,
        eval_envs=8,
        buffer_size=1_000,
        batch_size=64,
        learning_starts=64,
        updates_per_iteration=1,
        learning_rate=3e-3,
    )
    state, metrics = _train("dqn", config, seeds=2, network=TinyQ)
    assert isinstance(state.network.module, TinyQ)  # activations kept static by a wrapper
    np.testing.assert_array_equal(metrics["eval_return"][:, -1], 1.0)


@pytest.mark.slow
def test_own_network_trains_ppo_on_a_probe():
    """The same probe for PPO with a user actor-critic (chance: 2^-16)."""
    from purerl.algorithms import ppo

    config = ppo.Config(
        env_id="ObsActionReward-probe",
        total_steps=25_600,
        num_envs=16,
        num_steps=8,
        eval_every=12_800,
        eval_envs=8,
        learning_rate=3e-3,
        entropy_coef=0.0,
        num_minibatches=2,
        update_epochs=2,
    )
    state, metrics = _train("ppo", config, seeds=2, network=TinyActorCritic)
    assert isinstance(state.network.module, TinyActorCritic)
    np.testing.assert_array_equal(metrics["eval_return"][:, -1], 1.0)


def test_a_network_instance_is_used_as_given():
    from purerl.algorithms import dqn

    config = dqn.ALGORITHM.quick_config()
    net = TinyQ(jax.random.PRNGKey(5), (1,), purerl.envs.ActionSpec(True, 2))
    state = dqn.init(jax.random.PRNGKey(0), config, network=net)
    assert isinstance(state.network, core.UserNetwork)
    for a, b in zip(_arrays(state.network.module), _arrays(net), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_network_and_tabular_network_are_refused():
    from purerl.algorithms import dqn, tabular

    with pytest.raises(ValueError, match="^network:"):
        dqn.init(jax.random.PRNGKey(0), dqn.ALGORITHM.quick_config(), network=42)
    with pytest.raises(ValueError, match="^network:"):
        tabular.init(jax.random.PRNGKey(0), tabular.Config(), network=TinyQ)


# ------------------------------------------------------------------ registry


def test_registry_refuses_a_taken_name_and_suggests_close_ones():
    with pytest.raises(ValueError, match="already registered"):
        core.register(TOY._replace(step=lambda s: (s, {})))
    with pytest.raises(ValueError, match="Did you mean 'dqn'"):
        core.get("dqm")
    assert core.get(TOY) is TOY
