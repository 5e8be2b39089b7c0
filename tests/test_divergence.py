"""Divergence caught per run (purerl/algorithms/core.py ``run_periods``, the driver, the CLI):
a run whose loss or parameters go non-finite is flagged with the env step where it happened,
frozen at its last finite state, reported in the progress bar, the table, ``summary.json`` and
the exit status — while the other runs of its vmapped batch go on untouched.

The poison is a learning rate of 1e30 (configs refuse NaN): DQN's first update blows up."""

import contextlib
import dataclasses
import io
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxtyping import Array, Float, Int

import purerl
from purerl.algorithms import core
from purerl.cli import main
from purerl.experiment import load_run

DQN = core.get("dqn")
POISON = 1e30
# learning starts at env step 220, inside the second of three evaluation periods of 200 steps
CONFIG = dataclasses.replace(DQN.quick_config(), total_steps=600, learning_starts=220)
PERIODS, PERIOD = DQN.schedule(CONFIG)


def _floats(tree):
    return [np.asarray(x) for x in jax.tree.leaves(eqx.filter(tree, eqx.is_inexact_array))]


def _finite(tree) -> bool:
    return all(np.isfinite(x).all() for x in _floats(tree))


def _learned(agent):
    return eqx.tree_at(lambda a: a.config, agent, None)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _first_non_finite(config, key):
    """Reference, step by step on the host without the guard: ``(env steps before the first
    iteration whose metrics or parameters are not finite, iterations before it)``."""
    agent = core.init(DQN, key, config).agent
    step = jax.jit(DQN.step)
    for i in range(PERIODS * PERIOD):
        new, metrics = step(agent)
        if not (_finite(metrics) and _finite(DQN.greedy_policy(new).params)):
            return int(agent.env_steps), i
        agent = new
    return -1, None


@pytest.fixture(scope="module")
def poisoned_batch():
    """A vmapped batch of two runs on the same key: [healthy, learning_rate=1e30]."""
    key = jax.random.PRNGKey(3)
    configs = [CONFIG, dataclasses.replace(CONFIG, learning_rate=POISON)]
    states = jax.vmap(lambda c: core.init(DQN, key, c))(_stack(configs))
    run = jax.jit(jax.vmap(lambda s: core.run_periods(DQN, s, PERIODS, PERIOD)))
    final, metrics = run(states)
    return key, configs, final, jax.tree.map(np.asarray, metrics)


def test_the_poisoned_run_is_flagged_at_its_first_non_finite_step(poisoned_batch):
    key, configs, final, metrics = poisoned_batch
    expected, iteration = _first_non_finite(configs[1], key)
    assert 200 < expected < 400 and expected == iteration * CONFIG.num_envs  # period 1
    np.testing.assert_array_equal(final.diverged_at, [-1, expected])
    # float metrics are NaN from the diverging iteration on, finite before; ints keep counting
    loss = metrics["loss"][1]
    assert np.isfinite(loss[:iteration]).all() and np.isnan(loss[iteration:]).all()
    assert np.isfinite(metrics["loss"][0]).all()
    np.testing.assert_array_equal(metrics["env_steps"][1], metrics["env_steps"][0])
    np.testing.assert_array_equal(metrics["eval_env_steps"][1], [200, 400, 600])


def test_the_poisoned_run_is_frozen_at_its_last_finite_period(poisoned_batch):
    key, configs, final, metrics = poisoned_batch
    frozen = jax.tree.map(lambda x: x[1], final)
    assert _finite(_learned(frozen.agent))  # so its checkpoint is finite too
    # rolled back to the start of the period it diverged in, and held there
    start = core.init(DQN, key, configs[1]).agent
    start, _ = jax.jit(lambda a: jax.lax.scan(lambda s, _: DQN.step(s), a, None, length=PERIOD))(
        start
    )
    assert int(frozen.agent.env_steps) == 200 and int(frozen.frozen_steps) == 400
    for a, b in zip(_floats(frozen.agent.network), _floats(start.network), strict=True):
        np.testing.assert_array_equal(a, b)
    # its evaluations after that are the frozen state's: the same greedy return each time
    assert metrics["eval_return"][1][1] == metrics["eval_return"][1][2]


def test_the_healthy_run_is_untouched_by_its_poisoned_neighbour(poisoned_batch):
    key, configs, final, metrics = poisoned_batch
    # the same healthy config next to another healthy one: bit for bit the same run
    other = [CONFIG, dataclasses.replace(CONFIG, learning_rate=3e-4)]
    states = jax.vmap(lambda c: core.init(DQN, key, c))(_stack(other))
    run = jax.jit(jax.vmap(lambda s: core.run_periods(DQN, s, PERIODS, PERIOD)))
    final2, metrics2 = run(states)
    for k, v in metrics.items():
        np.testing.assert_array_equal(v[0], np.asarray(metrics2[k][0]), err_msg=k)
    for a, b in zip(_floats(final.agent), _floats(final2.agent), strict=True):
        np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("name", ["dqn", "reinforce"])
def test_a_healthy_run_is_bit_for_bit_the_unguarded_scan(name):
    """The guard only reads a healthy run: same final state, same metrics as scanning the
    algorithm's ``step`` directly."""
    algo = core.get(name)
    config = algo.quick_config()
    periods, period = algo.schedule(config)
    state = core.init(algo, jax.random.PRNGKey(1), config)

    def plain(agent):
        agent, metrics = jax.lax.scan(
            lambda a, _: algo.step(a), agent, None, length=periods * period
        )
        return agent, metrics

    guarded, g_metrics = jax.jit(
        lambda s: core.run_periods(algo, s, periods, period, evaluate=False)
    )(state)
    agent, metrics = jax.jit(plain)(state.agent)
    assert int(guarded.diverged_at) == -1 and int(guarded.frozen_steps) == 0
    assert g_metrics.keys() == metrics.keys()
    for k, v in metrics.items():
        np.testing.assert_array_equal(np.asarray(g_metrics[k]), np.asarray(v), err_msg=k)
    for a, b in zip(_floats(guarded.agent), _floats(agent), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", core.registered())
def test_no_registered_algorithm_is_flagged_on_its_quick_config(name):
    algo = core.get(name)
    _, metrics = jax.jit(algo.make_train(algo.quick_config()))(jax.random.PRNGKey(0))
    assert int(metrics["diverged_at"]) == -1


# --------------------------------------------- what only the whole-state check at period end sees


class _AuxConfig(eqx.Module):
    growth: float | Float[Array, ""] = 1.0


class _AuxState(eqx.Module):
    """Finite parameters and loss, and a moment that overflows when ``growth`` is huge."""

    config: _AuxConfig
    params: Float[Array, " 2"]
    moment: Float[Array, ""]
    iteration: Int[Array, ""]

    @property
    def env_steps(self):
        return self.iteration * 4


def _aux_step(s: _AuxState):
    new = _AuxState(s.config, s.params + 1.0, s.moment * s.config.growth, s.iteration + 1)
    return new, {"loss": jnp.sum(s.params), "env_steps": new.env_steps}


AUX = core.Algorithm(
    name="aux-overflow",
    Config=_AuxConfig,
    init=lambda key, c, network=None: _AuxState(
        c, jnp.zeros(2), jnp.ones(()), jnp.zeros((), jnp.int32)
    ),
    step=_aux_step,
    greedy_policy=lambda s: core.Policy(s.params, lambda *a: (None, None, {})),
    iteration_steps=lambda c: 4,
    quick_config=_AuxConfig,
)


def test_a_non_finite_state_outside_parameters_and_metrics_rolls_back_at_period_end():
    """1e10**4 overflows float32 in the 4th iteration, inside the second period of 3
    iterations: flagged at that period's start (12 env steps) and rolled back there."""
    configs = _stack([_AuxConfig(1.0), _AuxConfig(1e10)])
    states = jax.vmap(lambda c: core.init(AUX, jax.random.PRNGKey(0), c))(configs)
    run = jax.jit(jax.vmap(lambda s: core.run_periods(AUX, s, 3, 3, evaluate=False)))
    final, metrics = run(states)
    np.testing.assert_array_equal(final.diverged_at, [-1, 12])
    np.testing.assert_array_equal(final.agent.iteration, [9, 3])
    np.testing.assert_array_equal(final.agent.params[1], [3.0, 3.0])
    assert np.isfinite(np.asarray(final.agent.moment)).all()
    np.testing.assert_array_equal(final.frozen_steps, [0, 24])
    np.testing.assert_array_equal(metrics["env_steps"][1], metrics["env_steps"][0])
    assert np.isnan(np.asarray(metrics["loss"][1][6:])).all()  # the frozen period


# ------------------------------------------------------------------ driver and CLI

TINY = {
    "eval_every": "200",
    "learning_starts": "32",
    "batch_size": "16",
    "buffer_size": "200",
    "num_envs": "4",
    "eval_envs": "2",
    "hidden_sizes": "16",
}
SETS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
COMMON = ["train", "dqn", "--env", "ObsActionReward-probe", "--steps", "400", "--seeds", "2"]


@pytest.fixture(scope="module")
def partial(tmp_path_factory):
    out = tmp_path_factory.mktemp("divergence") / "partial"
    err = io.StringIO()  # capsys is per test: capture the module-wide run by hand
    with contextlib.redirect_stderr(err):
        code = main([*COMMON, *SETS, "--sweep", f"learning_rate={POISON},1e-3", "--out", str(out)])
    return code, err.getvalue(), out


def test_partial_divergence_warns_names_the_runs_and_exits_0(partial):
    code, err, out = partial
    assert code == 0
    assert "purerl: warning: 2 of 4 runs diverged" in err
    assert "learning_rate=1e+30 seed 0 at env step 28" in err
    assert "learning_rate=1e+30 seed 1 at env step 28" in err
    assert "diverged=2/4" in err  # the progress bar


def test_summary_json_lists_the_diverged_runs(partial):
    _, _, out = partial
    summary = json.loads((out / "summary.json").read_text())
    assert summary["diverged"] == [
        {
            "config": 0,
            "point": {"learning_rate": POISON},
            "seed": s,
            "seed_index": s,
            "env_step": 28,
        }
        for s in (0, 1)
    ]
    assert [c["diverged_at_per_seed"] for c in summary["per_config"]] == [[28, 28], [-1, -1]]


def test_the_healthy_config_of_the_cli_run_equals_it_run_alone(partial):
    _, _, out = partial
    swept = load_run(out)["metrics"]
    alone = purerl.run(
        "dqn",
        "ObsActionReward-probe",
        seeds=2,
        steps=400,
        overrides={**TINY, "learning_rate": 1e-3},
        progress=False,
    )
    assert alone.summary["diverged"] == []
    for k, v in alone.metrics.items():
        np.testing.assert_array_equal(swept[k][1], v[0], err_msg=k)
    assert np.isnan(swept["loss"][0]).any() and np.isfinite(swept["loss"][1]).all()


def test_cli_exits_1_when_every_run_diverges(tmp_path, capsys):
    out = tmp_path / "all"
    code = main([*COMMON, *SETS, "--set", f"learning_rate={POISON}", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert "purerl: error: every run diverged" in captured.err
    assert "seed 0 at env step 28; seed 1 at env step 28" in captured.err
    assert "DIVERGED at env step 28" in captured.out  # the table marks each run
    result = json.loads((out / "summary.json").read_text())
    assert len(result["diverged"]) == 2
