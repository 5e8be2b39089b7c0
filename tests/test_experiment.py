"""purerl.run and the purerl command: files written, table printed, bad input refused."""

import csv
import json

import numpy as np
import pytest
from resume_check import TINY

import purerl
from purerl.cli import main


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "probe"
    result = purerl.run(
        "dqn", "ConstantReward-probe", seeds=3, steps=400, overrides=TINY, out=out, progress=False
    )
    return result, out


def test_run_returns_metrics_per_config_and_seed(finished_run):
    result, _ = finished_run
    assert result.metrics["eval_return"].shape == (1, 3, 2)  # [configs, seeds, evaluations]
    assert result.metrics["loss"].shape == (1, 3, 100)  # 400 steps / 4 envs
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
    assert {r["config"] for r in rows} == {"0"}
    first = [r for r in rows if r["seed"] == "1"][:2]
    assert [int(r["iteration"]) for r in first] == [0, 1]
    assert float(first[1]["loss"]) == pytest.approx(float(npz["loss"][0, 1, 1]), rel=1e-5)
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
    np.testing.assert_allclose(alone.metrics["loss"][0, 0], result.metrics["loss"][0, 2], rtol=1e-5)


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
    assert "800/800" in captured.err  # the progress bar reached the end (2 runs × 400 steps)
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
# 2 learning rates × 4 seeds = 8 runs over 4 devices
kw = dict(seeds=4, steps=400, overrides=tiny, sweep={"learning_rate": [3e-3, 1e-3]}, progress=False)
sharded = purerl.run("dqn", "ObsReward-probe", devices="all", **kw)
assert len(sharded.state.iteration.sharding.device_set) == 4
single = purerl.run("dqn", "ObsReward-probe", devices=1, **kw)
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


def test_configs_and_seeds_sharded_over_4_host_devices_equal_the_unsharded_run():
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
    sets += ["--sweep", "learning_rate=1e-3,3e-4"]  # every algorithm's leaves can be swept
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
    text = capsys.readouterr().out
    assert f"{algorithm} on ContinuousTarget-probe" in text
    assert "learning_rate=0.001:" in text and "learning_rate=0.0003:" in text
    assert (tmp_path / algorithm / "summary.json").exists()


# ---------------------------------------------------------------- sweeps


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    """3 learning rates × 4 seeds, with the compilations counted (jax_log_compiles)."""
    import logging

    import jax

    out = tmp_path_factory.mktemp("runs") / "sweep"
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    jax.config.update("jax_log_compiles", True)
    try:
        result = purerl.run(
            "dqn",
            "ObsReward-probe",
            seeds=4,
            steps=400,
            overrides=TINY,
            sweep={"learning_rate": [3e-3, 1e-3, 3e-4]},
            out=out,
            progress=False,
        )
    finally:
        jax.config.update("jax_log_compiles", False)
        logger.removeHandler(handler)
    compiles = [r.getMessage() for r in records if "Finished XLA compilation" in r.getMessage()]
    return result, out, compiles


def test_a_sweep_of_3_learning_rates_x_4_seeds_compiles_once(sweep_run):
    result, _, compiles = sweep_run
    assert sum("jit(train_chunk)" in m for m in compiles) == 1, compiles
    assert sum("jit(init_batch)" in m for m in compiles) == 1, compiles
    assert result.metrics["loss"].shape == (3, 4, 100)
    assert [p["learning_rate"] for p in result.points] == [3e-3, 1e-3, 3e-4]
    # the swept leaf reached the training state of each run
    lr = np.asarray(result.state.config.learning_rate).reshape(3, 4)
    np.testing.assert_allclose(lr, np.array([[3e-3], [1e-3], [3e-4]]).repeat(4, 1), rtol=1e-6)


def test_each_sweep_cell_equals_the_same_config_run_alone(sweep_run):
    result, _, _ = sweep_run
    alone = purerl.run(
        "dqn",
        "ObsReward-probe",
        seeds=4,
        steps=400,
        overrides={**TINY, "learning_rate": 1e-3},
        progress=False,
    )
    # Batched matmuls of different batch sizes round differently in the last float32 bit, so
    # losses are compared to 1e-5; what the agents did (returns, counts, evaluations) is exact.
    for k, v in alone.metrics.items():
        if k in ("loss", "q_mean"):
            np.testing.assert_allclose(result.metrics[k][1], v[0], rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(result.metrics[k][1], v[0], err_msg=k)
    # and the learning rates matter: the cells are not copies of one another
    assert not np.allclose(result.metrics["loss"][0], result.metrics["loss"][2])


def test_sweep_results_on_disk_have_one_row_per_config_seed_iteration(sweep_run):
    _, out, _ = sweep_run
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 3 * 4 * 100
    assert {(r["config"], r["learning_rate"]) for r in rows} == {
        ("0", "0.003"),
        ("1", "0.001"),
        ("2", "0.0003"),
    }
    summary = json.loads((out / "summary.json").read_text())
    assert [c["point"]["learning_rate"] for c in summary["per_config"]] == [3e-3, 1e-3, 3e-4]
    assert all(c["iqm_ci_low"] <= c["iqm"] <= c["iqm_ci_high"] for c in summary["per_config"])
    config = json.loads((out / "config.json").read_text())
    assert config["sweep"] == {"learning_rate": [3e-3, 1e-3, 3e-4]} and config["seeds"] == 4


@pytest.mark.parametrize(
    "sweep, message",
    [
        ({"batch_size": [32, 64]}, r"sweep: 'batch_size' cannot be swept.*learning_rate"),
        ({"learning_rat": [1e-3]}, r"learning_rat: .*'learning_rate'"),
        ({"gamma": [0.9, 1.5]}, r"gamma: must be in \(0, 1\]"),
        ({"gamma": []}, r"sweep: 'gamma' needs a non-empty list"),
        ({"gamma": ["high"]}, r"sweep: 'gamma' values must be numbers"),
    ],
)
def test_bad_sweeps_are_refused_before_compiling(sweep, message, monkeypatch):
    import jax

    monkeypatch.setattr(jax, "jit", lambda *a, **k: pytest.fail("compiled before checking"))
    with pytest.raises(ValueError, match=message):
        purerl.run("dqn", "CartPole-v1", sweep=sweep, progress=False)


def test_cli_sweep_and_compare(sweep_run, tmp_path, capsys):
    _, out, _ = sweep_run
    assert main(["compare", str(out)]) == 0
    text = capsys.readouterr().out
    assert "learning_rate=0.003" in text and "learning_rate=0.0003" in text
    assert "P(> row 1)" in text and "IQM" in text


# ---------------------------------------------------------------- plots


def test_purerl_plot_draws_one_curve_per_sweep_value(sweep_run, tmp_path, capsys):
    import matplotlib.image

    from purerl import plotting

    _, out, _ = sweep_run
    assert main(["plot", str(out), "--out", str(tmp_path)]) == 0
    png = tmp_path / "learning_curves.png"
    assert png.stat().st_size > 10_000 and (tmp_path / "learning_curves.svg").exists()
    pixels = matplotlib.image.imread(png)
    assert pixels.std() > 0.05  # not a blank canvas
    assert (tmp_path / "final_performance.png").stat().st_size > 5_000
    fig = plotting.learning_curves([out])
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 3
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == sorted(
        ["learning_rate=0.003", "learning_rate=0.001", "learning_rate=0.0003"]
    )


# ---------------------------------------------------------------- checkpoints and resume

KILL_ARGS = [
    "dqn",
    "--env",
    "ObsReward-probe",
    "--seeds",
    "2",
    "--steps",
    "40000",
    *[a for k, v in TINY.items() for a in ("--set", f"{k}={v}")],  # 200 chunks of 200 steps
    "--no-progress",
    "--devices",  # as many as the uninterrupted run in this process has
    "1",
]


def test_a_run_killed_hard_and_resumed_is_bitwise_the_uninterrupted_run(tmp_path):
    """SIGKILL `purerl train` right after its first checkpoints, resume with --resume, and
    compare every array of the final state and every metric with a run never interrupted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "purerl.cli", "train", *KILL_ARGS, "--out", str(killed)]
    cmd += ["--checkpoint-every", "1"]  # checkpoints early, not after a minute (the default)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (killed / "checkpoint.npz").exists() and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with np.load(killed / "checkpoint.npz") as data:
        done = json.loads(str(data["meta.json"]))["chunks_done"]
    assert 0 < done < 200, "the kill should land mid-training"
    assert not (killed / "summary.json").exists()

    assert main(["train", "--resume", str(killed)]) == 0
    whole = tmp_path / "whole"
    assert main(["train", *KILL_ARGS, "--out", str(whole)]) == 0
    for name in ("checkpoint.npz", "metrics.npz"):
        with np.load(killed / name) as a, np.load(whole / name) as b:
            assert a.files == b.files
            for k in a.files:
                if k != "meta.json":
                    np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}:{k}")
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["resumed_at_chunk"] == done
    assert list(killed.glob(".*.tmp")) == []


def test_resuming_into_a_folder_with_another_config_is_refused(finished_run):
    _, out = finished_run
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=r"(?s)resume: .*different run.*config.learning_rate"):
        purerl.experiment.resume(out, overrides={"learning_rate": "0.1"}, progress=False)
    with pytest.raises(ValueError, match=r"(?s)resume: .*seeds: folder has 3, asked 5"):
        purerl.experiment.resume(out, seeds=5, progress=False)
    with pytest.raises(ValueError, match=r"resume: .* holds a dqn run, not ppo"):
        purerl.experiment.resume(out, algorithm="ppo", progress=False)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert before == after


def test_checkpoints_come_by_time_by_default_or_every_k_chunks():
    from purerl.experiment.driver import RunSettings, _checkpoint_due

    assert RunSettings().checkpoint_every is None and RunSettings().checkpoint_seconds == 60.0

    def due(every, seconds, since):  # the chunks (1-based, of 10) that end with a checkpoint
        return [i + 1 for i in range(10) if _checkpoint_due(i, 10, every, seconds, since)]

    assert due(None, 60.0, 59.9) == [10]  # less than a minute since the last: only the end
    assert due(None, 60.0, 60.0) == list(range(1, 11))
    assert due(None, float("inf"), 1e9) == [10]
    assert due(3, 60.0, 0.0) == [3, 6, 9, 10]  # an explicit count ignores the clock
    assert due(1, 60.0, 0.0) == list(range(1, 11))
    assert due(0, 0.0, 1e9) == []


@pytest.mark.parametrize(
    "kwargs, written",
    [
        (dict(checkpoint_seconds=3600.0), [5]),
        (dict(checkpoint_seconds=0.0), [1, 2, 3, 4, 5]),
        (dict(checkpoint_every=2), [2, 4, 5]),
    ],
)
def test_a_run_writes_checkpoints_at_its_cadence(kwargs, written, tmp_path, monkeypatch):
    from purerl import checkpoint

    submitted = []
    real = checkpoint.AsyncSaver.submit

    def submit(self, path, state, extra, meta):
        submitted.append(meta["chunks_done"])
        real(self, path, state, extra, meta)

    monkeypatch.setattr(checkpoint.AsyncSaver, "submit", submit)
    out = tmp_path / "r"
    kw = dict(seeds=2, steps=1000, overrides=TINY, out=out, progress=False)
    purerl.run("dqn", "ConstantReward-probe", **kw, **kwargs)  # 5 chunks
    assert submitted == written
    with np.load(out / "checkpoint.npz") as data:
        assert json.loads(str(data["meta.json"]))["chunks_done"] == 5


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_resuming_a_finished_run_changes_nothing_but_rewrites_results(finished_run):
    result, out = finished_run
    again = purerl.experiment.resume(out, progress=False)
    np.testing.assert_array_equal(again.metrics["loss"], result.metrics["loss"])
    assert again.summary["resumed_at_chunk"] == again.summary["chunks"]


# ---------------------------------------------------------------- logging sinks


def _events(folder):
    """(tag, step, value) of every scalar in the TensorBoard event files under ``folder``."""
    import struct

    from tensorboardX.proto import event_pb2

    out = []
    for file in sorted(folder.rglob("events.out.tfevents.*")):
        data = file.read_bytes()
        i = 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + length])
            i += 12 + length + 4
            for v in event.summary.value:
                out.append(
                    (str(file.parent.relative_to(folder)), v.tag, event.step, v.simple_value)
                )
    return out


def test_tensorboard_sink_logs_per_seed_and_aggregate(tmp_path):
    from purerl.sinks import TensorBoardSink

    out = tmp_path / "tb"
    result = purerl.run(
        "dqn",
        "ObsReward-probe",
        seeds=2,
        steps=400,
        overrides=TINY,
        out=out,
        progress=False,
        sinks=[TensorBoardSink()],
    )
    events = _events(out / "tensorboard")
    final = result.metrics["eval_return"][0, :, -1]
    seed1 = [v for run, tag, step, v in events if run == "config0/seed_1" and tag == "eval_return"]
    assert seed1[-1] == pytest.approx(final[1])
    agg = [
        (step, v)
        for run, tag, step, v in events
        if run == "config0/aggregate" and tag == "eval_return/mean"
    ]
    assert [s for s, _ in agg] == [200, 400]
    assert agg[-1][1] == pytest.approx(final.mean(), rel=1e-6)


def test_wandb_sink_logs_between_chunks_through_the_wandb_api(monkeypatch):
    import sys
    import types

    from purerl.sinks import WandbSink

    calls = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: (
        calls.append(("init", kw))
        or types.SimpleNamespace(finish=lambda: calls.append(("finish", None)))
    )
    fake.log = lambda data: calls.append(("log", data))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    purerl.run(
        "dqn",
        "ObsReward-probe",
        seeds=2,
        steps=400,
        overrides=TINY,
        sweep={"gamma": [0.9, 0.99]},
        progress=False,
        sinks=[WandbSink(mode="offline")],
    )
    kinds = [c[0] for c in calls]
    assert kinds[0] == "init" and kinds[-1] == "finish"
    assert calls[0][1]["mode"] == "offline" and calls[0][1]["config"]["seeds"] == 2
    logs = [c[1] for c in calls if c[0] == "log"]
    assert len(logs) == 2 * 2  # 2 chunks × 2 configs
    assert "gamma=0.9/eval_return/iqm" in logs[0] and "env_steps" in logs[0]


def test_cli_devices_on_a_cpu_needs_no_xla_flags(tmp_path):
    """`purerl train --devices 2` on a CPU shards over 2 host devices without the user setting
    XLA_FLAGS (JAX has started by the time the flag is parsed: the command restarts itself)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    args = ["train", "reinforce", "--env", "ObsActionReward-probe", "--steps", "128"]
    args += ["--set", "num_envs=2", "--set", "num_steps=8", "--set", "eval_every=64"]
    args += ["--seeds", "2", "--devices", "2", "--no-progress", "--out", str(tmp_path / "r")]
    done = subprocess.run(
        [sys.executable, "-m", "purerl.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["num_devices"] == 2


def test_purerl_train_picks_its_host_devices_from_the_cores_and_the_batch():
    from purerl.cli import _host_devices

    cpu = dict(platform="cpu", environ={}, cores=4)
    assert _host_devices("auto", batch=8, **cpu) == 4  # one per core
    assert _host_devices("auto", batch=6, **cpu) == 3  # the most that divide the batch
    assert _host_devices("auto", batch=7, **cpu) == 1  # none divides: no restart
    assert _host_devices("auto", batch=1, **cpu) == 1
    assert _host_devices("auto", **cpu) == 4  # a resume with no record
    assert _host_devices("auto", recorded=2, **cpu) == 2  # a resume: as many as the run used
    assert _host_devices("1", batch=8, **cpu) == 1
    assert _host_devices("8", batch=8, **cpu) == 8
    assert _host_devices("all", batch=1, **cpu) == 4
    assert _host_devices("abc", batch=8, **cpu) == 1  # purerl.run names the problem
    # JAX runs on an accelerator: auto leaves it alone
    assert _host_devices("auto", batch=8, platform="gpu", environ={}, cores=4) == 1
    # the user already chose a host device count: kept, whatever --devices says
    for environ in (
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
        {"JAX_NUM_CPU_DEVICES": "2"},
    ):
        assert _host_devices("auto", batch=8, platform="cpu", environ=environ, cores=4) == 1
        assert _host_devices("4", batch=8, platform="cpu", environ=environ, cores=4) == 1


def test_purerl_train_shards_over_every_core_by_default_and_resumes_on_as_many(tmp_path):
    """No --devices: the command restarts itself with one host device per core (2 divide the
    2 seeds), records the count, and a resume on another count is refused."""
    import os
    import subprocess
    import sys

    import jax

    from purerl.cli import _cores

    if _cores() < 2:
        pytest.skip("needs 2 CPU cores")
    drop = ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")
    env = {**{k: v for k, v in os.environ.items() if k not in drop}, "JAX_PLATFORMS": "cpu"}
    out = tmp_path / "r"
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    args = ["train", "dqn", "--env", "ConstantReward-probe", "--steps", "400", "--seeds", "2"]
    done = subprocess.run(
        [sys.executable, "-m", "purerl.cli", *args, *sets, "--no-progress", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "env steps/s on 2 devices" in done.stdout
    assert json.loads((out / "summary.json").read_text())["num_devices"] == 2
    assert json.loads((out / "config.json").read_text())["num_devices"] == 2

    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=r"^devices: .* sharded over 2 device\(s\); .* use 1"):
        purerl.experiment.resume(out, devices=1, progress=False)
    if len(jax.devices()) < 2:  # by default a resume asks for as many as the run used
        with pytest.raises(ValueError, match=r"^devices: .* trained on 2 devices"):
            purerl.experiment.resume(out, progress=False)
    assert before == {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}


def test_a_misspelt_env_id_is_reported_before_other_bad_fields(capsys):
    """A typo in --env is the error the user sees first (with the close id), even when another
    field is wrong too: that one is reported with it, on its own line after it."""
    args = ["train", "dqn", "--env", "CartPol-v1", "--set", "gamma=2.0", "--no-progress"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    env, gamma = err.removeprefix("purerl: error: ").splitlines()
    assert env.startswith("env: unknown environment id 'CartPol-v1'") and "'CartPole-v1'" in env
    assert gamma.startswith("gamma: must be in (0, 1]")
    assert main(["train", "dqn", "--set", "gamma=2.0", "--no-progress"]) == 2  # gamma is bad
    assert "gamma:" in capsys.readouterr().err


CACHED = """
import json, sys
import jax
import purerl
tiny = json.loads(sys.argv[1])
result = purerl.run("dqn", "ObsReward-probe", seeds=2, steps=400, overrides=tiny, progress=False)
print(json.dumps({"dir": jax.config.jax_compilation_cache_dir,
                  "compile": result.summary["compile_seconds"]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["folder", "off"])
def test_run_keeps_compiled_programs_on_disk_unless_told_not_to(setting, tmp_path):
    """``purerl.run`` turns JAX's persistent cache on (``$PURERL_COMPILE_CACHE`` names the
    folder; ``0`` turns it off): the training program lands in the folder, and a second process
    running the same config finds it there (the cache's entries do not change)."""
    import os
    import subprocess
    import sys

    folder = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # conftest's shared test cache
    env["PURERL_COMPILE_CACHE"] = str(folder) if setting == "folder" else "0"
    # JAX stores only programs slower to compile than this (1 s by default): a fast machine
    # might compile the tiny program quicker
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    cmd = [sys.executable, "-c", CACHED, json.dumps(TINY)]

    def once():
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        return json.loads(out.strip().splitlines()[-1])

    first = once()
    if setting == "off":
        assert first["dir"] is None and not folder.exists()
        return
    assert first["dir"] == str(folder)
    entries = sorted(p.name for p in folder.iterdir())
    assert any("train_chunk" in name for name in entries), entries
    second = once()
    assert second["dir"] == str(folder)
    assert sorted(p.name for p in folder.iterdir()) == entries  # loaded, not compiled anew


def test_compile_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    from purerl.experiment import compile_cache_dir

    monkeypatch.setenv("PURERL_COMPILE_CACHE", str(tmp_path / "here"))
    assert compile_cache_dir() == tmp_path / "here"
    for off in ("0", "off", "False", "no"):
        monkeypatch.setenv("PURERL_COMPILE_CACHE", off)
        assert compile_cache_dir() is None
    monkeypatch.delenv("PURERL_COMPILE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache_dir() == tmp_path / "xdg" / "purerl" / "jax"


def test_an_env_with_its_own_defaults_starts_from_them_and_says_so(monkeypatch, capsys):
    """PPO on Pendulum-v1 starts from ``ppo.ENV_DEFAULTS`` (rejax's Pendulum config), not from
    the CartPole-tuned ``Config()``; the fields a user sets win over them; the run names, in one
    line, the env settings it uses; other envs start from ``Config()``."""
    import jax

    from purerl.algorithms import core, ppo
    from purerl.experiment import config_to_dict, make_config

    pendulum = ppo.ENV_DEFAULTS["Pendulum-v1"]
    config = make_config("ppo", "Pendulum-v1", overrides={"num_envs": "20"})
    assert config.num_envs == 20  # the user's field
    assert config.num_steps == pendulum["num_steps"] and float(config.gamma) == pendulum["gamma"]
    by_override = make_config("ppo", overrides={"env_id": "Pendulum-v1"})
    assert by_override.num_envs == pendulum["num_envs"]
    assert core.default_config("ppo", "Pendulum-v1").total_steps == pendulum["total_steps"]
    cartpole = config_to_dict(make_config("ppo", "CartPole-v1"))
    assert cartpole == config_to_dict(ppo.Config())
    assert config_to_dict(make_config("dqn", "Pendulum-v1")) == config_to_dict(
        core.get("dqn").Config(env_id="Pendulum-v1")
    )  # no env defaults: Config() (DQN then refuses the env when it runs)

    class Compiling(Exception):
        pass

    def no_compile(*args, **kwargs):
        raise Compiling

    monkeypatch.setattr(jax, "jit", no_compile)  # stop where the run would start compiling
    small = {"num_envs": 2, "num_steps": 8, "update_epochs": 1, "num_minibatches": 1}
    with pytest.raises(Compiling):
        purerl.run("ppo", "Pendulum-v1", steps=64, overrides=small, progress=False)
    [line] = [x for x in capsys.readouterr().err.splitlines() if "its settings for" in x]
    assert "ppo on Pendulum-v1 uses its settings for that env" in line
    assert "gamma=0.995" in line and "activation='swish'" in line
    assert "num_envs" not in line and "total_steps" not in line  # the user's own fields


def test_every_algorithm_s_env_defaults_are_valid_configs_for_known_envs():
    from purerl.algorithms import ALGORITHMS, core
    from purerl.envs import check_env_id

    for name, algorithm in ALGORITHMS.items():
        for env_id, fields in algorithm.env_defaults.items():
            check_env_id(env_id)
            config = core.default_config(name, env_id)  # Config's own checks run here
            core.check(algorithm, config)  # and the env-dependent ones
            assert {k: getattr(config, k) for k in fields} == dict(fields), (name, env_id)
