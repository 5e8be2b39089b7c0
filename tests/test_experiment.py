"""purerl.run and the purerl command: files written, table printed, bad input refused."""

import csv
import json

import numpy as np
import pytest

import purerl
from purerl.cli import main

TINY = {
    "eval_every": "200",
    "learning_starts": "32",
    "batch_size": "32",
    "buffer_size": "500",
    "num_envs": "4",
    "eval_envs": "2",
    "hidden_sizes": "16",
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "probe"
    result = purerl.run(
        "dqn", "ConstantReward-probe", seeds=3, steps=400, overrides=TINY, out=out, progress=False
    )
    return result, out


def test_run_returns_metrics_per_seed(finished_run):
    result, _ = finished_run
    assert result.metrics["eval_return"].shape == (3, 2)
    assert result.metrics["loss"].shape == (3, 100)  # 400 steps / 4 envs
    assert result.summary["final_return_per_seed"] == [1.0, 1.0, 1.0]  # one step, reward 1
    assert result.state.iteration.tolist() == [100, 100, 100]


def test_run_writes_config_metrics_and_summary(finished_run):
    result, out = finished_run
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "dqn" and config["config"]["env_id"] == "ConstantReward-probe"
    assert config["config"]["hidden_sizes"] == [16]
    npz = np.load(out / "metrics.npz")
    np.testing.assert_array_equal(npz["loss"], result.metrics["loss"])
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 3 * 100 and {r["seed"] for r in rows} == {"0", "1", "2"}
    evals = list(csv.DictReader((out / "eval.csv").open()))
    assert [float(r["eval_env_steps"]) for r in evals[:2]] == [200.0, 400.0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_return_mean"] == pytest.approx(1.0)


def test_a_seed_gives_the_same_run_alone_or_among_others(finished_run):
    result, _ = finished_run
    alone = purerl.run(
        "dqn",
        "ConstantReward-probe",
        seeds=1,
        seed_offset=2,
        steps=400,
        overrides=TINY,
        progress=False,
    )
    np.testing.assert_allclose(alone.metrics["loss"][0], result.metrics["loss"][2], rtol=1e-5)


def test_existing_out_is_not_overwritten_without_permission(finished_run):
    _, out = finished_run
    before = (out / "summary.json").read_text()
    with pytest.raises(ValueError, match="^out:"):
        purerl.run("dqn", "ConstantReward-probe", steps=400, overrides=TINY, out=out)
    assert (out / "summary.json").read_text() == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(algorithm="dqm"), r"algorithm: .*'dqn'"),
        (dict(env="CartPol-v1"), r"env: .*'CartPole-v1'"),
        (dict(overrides={"learning_rat": "1e-3"}), r"learning_rat: .*'learning_rate'"),
        (dict(overrides={"double": "maybe"}), r"double: expected true/false"),
        (dict(overrides={"batch_size": "lots"}), r"batch_size: cannot read"),
        (dict(steps=-5), r"total_steps: must be > 0"),
        (dict(seeds=0), r"seeds: must be >= 1"),
    ],
)
def test_bad_input_raises_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        purerl.run(**{"algorithm": "dqn", **kwargs}, progress=False)


def test_cli_trains_prints_a_table_and_shows_progress(tmp_path, capsys):
    out = tmp_path / "cli"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    code = main(
        [
            "train",
            "dqn",
            "--env",
            "ConstantReward-probe",
            "--seeds",
            "2",
            "--steps",
            "400",
            "--out",
            str(out),
            *sets,
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "mean" in captured.out and "± 0.0" in captured.out
    assert "400/400" in captured.err  # the progress bar reached the end
    assert (out / "metrics.npz").exists()


def test_cli_reports_bad_input_without_a_traceback(capsys):
    code = main(["train", "dqn", "--env", "CartPol-v1"])
    assert code == 2
    assert "Did you mean 'CartPole-v1'" in capsys.readouterr().err


def test_every_public_name_has_a_docstring():
    missing = [n for n in purerl.__all__ if not (getattr(purerl, n).__doc__ or "").strip()]
    assert missing == []


SHARDED = """
import json, sys
import numpy as np, jax
import purerl
tiny = json.loads(sys.argv[1])
assert len(jax.devices()) == 4
kw = dict(seeds=4, steps=400, overrides=tiny, progress=False)
sharded = purerl.run("dqn", "ObsReward-probe", devices=jax.devices(), **kw)
assert len(sharded.state.iteration.sharding.device_set) == 4
single = purerl.run("dqn", "ObsReward-probe", devices=jax.devices()[:1], **kw)
assert len(single.state.iteration.sharding.device_set) == 1
# Batched matmuls round differently from unbatched ones (last float32 bit), so losses are
# compared to 1e-5; what the agents did (returns, counts, evaluations) must match exactly.
for k in single.metrics:
    if k in ("loss", "q_mean"):
        np.testing.assert_allclose(
            sharded.metrics[k], single.metrics[k], rtol=1e-5, atol=1e-6, err_msg=k
        )
    else:
        np.testing.assert_array_equal(sharded.metrics[k], single.metrics[k], err_msg=k)
print("SAME")
"""


def test_seeds_sharded_over_4_host_devices_equal_the_unsharded_run():
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
    }
    done = subprocess.run(
        [sys.executable, "-c", SHARDED, json.dumps(TINY)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SAME" in done.stdout


@pytest.mark.parametrize("algorithm", ["reinforce", "a2c", "ppo"])
def test_cli_trains_the_policy_gradient_algorithms(algorithm, tmp_path, capsys):
    sets = [
        "--set",
        "num_envs=2",
        "--set",
        "num_steps=8",
        "--set",
        "eval_every=64",
        "--set",
        "eval_envs=2",
        "--set",
        "hidden_sizes=8",
    ]
    if algorithm == "ppo":
        sets += ["--set", "num_minibatches=2"]
    code = main(
        [
            "train",
            algorithm,
            "--env",
            "ContinuousTarget-probe",
            "--steps",
            "128",
            "--seeds",
            "2",
            "--out",
            str(tmp_path / algorithm),
            "--no-progress",
            *sets,
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert f"{algorithm} on ContinuousTarget-probe" in capsys.readouterr().out
    assert (tmp_path / algorithm / "summary.json").exists()
