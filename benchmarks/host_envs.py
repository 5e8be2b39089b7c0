"""Host (Gymnasium) environments through the actor–learner loop: LunarLander-v3 side by side
with Stable-Baselines3, and actor scaling.

Parts (``--parts``, default all three), every cell a fresh process:

- ``dqn``, ``ppo``: purerl (4 seeds vmapped in one process: one learner batch, 4 × num_envs
  host envs) and then Stable-Baselines3 (``sb3_lunarlander.py`` in its own venv, one process
  per seed, seeds 0–3 one after the other), same budget and hyperparameters: rl-baselines3-zoo's
  LunarLander-v2 entries (v3 is the same task with bug fixes), ``hyperparams/dqn.yml`` at
  commit ce95481b041fe5314c1b2f1a53940d169b9253fc and ``hyperparams/ppo.yml`` at commit
  208b6fdf3a9aa24de44b2e068c6e5f6a07d97fcc of github.com/DLR-RM/rl-baselines3-zoo:

  * DQN: zoo budget 100k env steps, cut to 50k per seed (SB3 DQN runs ~185 env steps/s on this
    machine: 100k × 4 seeds would take ~36 min for SB3 alone). SB3 steps 1 env and trains every
    4 env steps with ``gradient_steps=-1`` (one gradient step per env step collected); purerl
    steps 4 envs together and takes 4 gradient steps per iteration: the same ratio of gradient
    steps (batch 128) to env steps. The target net is copied every 250 env steps in SB3 and
    every 62 iterations × 4 envs = 248 env steps in purerl. ``learning_starts``: the zoo's 0
    is impossible for purerl (learning needs a full batch), so both libraries use 1,000.
  * PPO: zoo budget 1M env steps, cut to 196,608 per seed (12 iterations of 16 envs × 1024
    steps) for time. Batch 64 = 16,384 / 256 minibatches, 4 epochs, λ 0.98, γ 0.999,
    entropy 0.01, lr 3e-4 constant, clip 0.2, no value clipping (SB3's defaults), 64-64 tanh.

  Evaluation, both libraries: the mean undiscounted return of 8 greedy episodes per seed, DQN
  every 5,000 env steps, PPO every 16,384. LunarLander counts as solved at 200.

- ``backends``: purerl only, the PPO scaling cell below with 1 actor on three env backends:
  Gymnasium in this process, Gymnasium with one subprocess per env, and EnvPool
  (``envpool:LunarLander-v3``; its cell runs under ``--envpool-python``, a python with
  ``purerl[envpool]``).
- ``scaling``: purerl only. PPO (the config above with num_envs 16, num_steps 128, 1 seed,
  65,536 env steps) for actors ∈ {1, 2, 4} × async_envs ∈ {False, True}; DQN (config above,
  4 envs, 1 seed, 20,000 env steps) with 1 and 2 actors. Every cell runs ``--repeats`` times
  (default 3), round robin; the row shows the run with the median env steps/s and keeps all.
  ``summary["host"]`` says where the learner's time went: ``wait_seconds`` (waiting for
  actors' rollouts) against ``learn_seconds`` (learning); wait ≈ 0 means learner-bound.

Throughput is given two ways for both libraries: over the whole training time (purerl:
``train_seconds``, which includes its greedy evaluations and the first-call jit of the act and
learn steps; SB3: ``wall_seconds + eval_seconds``) and excluding evaluation (purerl:
``train_seconds - host.eval_seconds``; SB3: ``wall_seconds``, what ``sb3_lunarlander.py``
reports). Process wall and CPU seconds (user + system, children included) are measured by
this script around every cell, and so is ``others_cpu_s``: the CPU seconds the rest of the
machine used meanwhile (``/proc/stat``), which flags a cell slowed by other work on a shared
machine.

    python benchmarks/host_envs.py                       # everything (~45 min on 2 cores)
    python benchmarks/host_envs.py --parts scaling
    python benchmarks/host_envs.py --parts dqn --sb3-python /work/venvs/sb3/bin/python

Results: ``results/host_envs.json`` (rows of a part that is rerun replace the old ones) and
``results/host_envs.png``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_common import machine, save_rows

HERE = Path(__file__).resolve().parent
ENV = "gymnasium:LunarLander-v3"
SOLVED = 200.0
SEEDS = 4
EVAL_EPISODES = 8
SB3_PYTHON = "/work/venvs/sb3/bin/python"

# rl-baselines3-zoo hyperparams/dqn.yml LunarLander-v2 in purerl's names (see the docstring)
DQN = dict(
    num_envs=4,
    updates_per_iteration=4,
    batch_size=128,
    buffer_size=50_000,
    learning_starts=1_000,
    learning_rate=6.3e-4,
    gamma=0.99,
    tau=1.0,
    n_step=1,  # the zoo's 1-step targets, not purerl's default 5-step targets
    target_update_period=62,
    exploration_fraction=0.12,
    epsilon_start=1.0,
    epsilon_end=0.1,
    hidden_sizes=(256, 256),
    activation="relu",
    dueling=False,
    double=False,
    loss="huber",
    max_grad_norm=10.0,
    eval_every=5_000,
    eval_envs=EVAL_EPISODES,
)
# rl-baselines3-zoo hyperparams/ppo.yml LunarLander-v2 + SB3's PPO defaults, in purerl's names
PPO = dict(
    num_envs=16,
    num_steps=1024,
    num_minibatches=256,
    update_epochs=4,
    lambda_=0.98,
    gamma=0.999,
    entropy_coef=0.01,
    learning_rate=3e-4,
    anneal_lr=False,
    clip_value=False,
    clip_eps=0.2,
    value_coef=0.5,
    max_grad_norm=0.5,
    normalize_advantages=True,
    hidden_sizes=(64, 64),
    activation="tanh",
    eval_every=16_384,
    eval_envs=EVAL_EPISODES,
)
BUDGET = {"dqn": 50_000, "ppo": 196_608}
ZOO_BUDGET = {"dqn": 100_000, "ppo": 1_000_000}
ZOO_SOURCE = {
    "dqn": "rl-baselines3-zoo hyperparams/dqn.yml (LunarLander-v2) @ ce95481b",
    "ppo": "rl-baselines3-zoo hyperparams/ppo.yml (LunarLander-v2) @ 208b6fdf",
}
SB3_ARGS = {
    "dqn": ["--learning-starts", "1000"],
    "ppo": ["--n-envs", "16", "--n-steps", "1024"],
}

SCALING_PPO = {**PPO, "num_steps": 128, "eval_every": 32_768}
SCALING_DQN = {**DQN, "eval_every": 10_000}
SCALING_STEPS = {"ppo": 65_536, "dqn": 20_000}
SCALING_CELLS = [("ppo", a, s) for a in (1, 2, 4) for s in (False, True)] + [
    ("dqn", a, False) for a in (1, 2)
]
# the same PPO work (1 actor) on LunarLander-v3 stepped by Gymnasium in this process, by
# Gymnasium in one subprocess per env, and by EnvPool (its C++ threads; run by the python of
# --envpool-python, which has purerl[envpool])
BACKEND_CELLS = [
    ("ppo", 1, False, "gymnasium"),
    ("ppo", 1, True, "gymnasium"),
    ("ppo", 1, False, "envpool"),
]
ENVPOOL_PYTHON = "/work/venvs/envpool/bin/python"


# ------------------------------------------------------------------ cells (fresh processes)


def run_cell(spec: dict) -> dict:
    """One purerl run in this (fresh) process; what the parent records."""
    import numpy as np

    import purerl

    env = ENV if spec.get("backend", "gymnasium") == "gymnasium" else "envpool:LunarLander-v3"
    r = purerl.run(
        spec["algo"],
        env,
        seeds=spec["seeds"],
        steps=spec["steps"],
        overrides=spec["overrides"],
        progress=False,
        actors=spec["actors"],
        async_envs=spec["async_envs"],
        max_staleness=1,
        out=None,
        compile_cache=False,  # cold compiles: every cell pays the same
    )
    s = r.summary
    evals = np.asarray(r.metrics["eval_return"])[0]  # [seeds, evaluations]
    steps = np.asarray(r.metrics["eval_env_steps"])[0]
    per_seed = int(s["env_steps_per_seed"])
    total = per_seed * spec["seeds"]
    train_s, eval_s = s["train_seconds"], s["host"]["eval_seconds"]
    return {
        "env_steps_per_seed": per_seed,
        "compile_s": s["compile_seconds"],
        "train_s": train_s,
        "eval_s": eval_s,
        "steps_per_s": total / train_s,
        "steps_per_s_excl_eval": total / (train_s - eval_s),
        "summary_env_steps_per_second": s["env_steps_per_second"],
        "host": s["host"],
        "final_return_per_seed": [float(x) for x in s["final_return_per_seed"]],
        "final_return_mean": float(s["final_return_mean"]),
        "eval_steps": steps[0].tolist(),
        "eval_curve": evals.tolist(),
        "diverged": s["diverged"],
    }


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, ``/proc/stat``)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def timed(cmd: list[str], env: dict | None = None) -> tuple[str, dict]:
    """Run ``cmd``: ``(stdout, timing)`` with its wall seconds, the CPU seconds of it and its
    children, and the CPU seconds the rest of the machine used meanwhile (other processes:
    on a shared machine, what may have slowed the cell); on failure its stderr is printed and
    the error raised."""
    before, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after, busy = resource.getrusage(resource.RUSAGE_CHILDREN), busy_seconds() - busy
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    timing = {
        "process_wall_s": wall,
        "process_cpu_s": cpu,
        "others_cpu_s": max(busy - cpu, 0.0),
        "loadavg_after": os.getloadavg()[0],
    }
    return proc.stdout, timing


def purerl_cell(spec: dict, python: str = sys.executable) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    out, timing = timed([python, __file__, "--cell", json.dumps(spec)], env)
    return {**json.loads(out.strip().splitlines()[-1]), **timing}


def sb3_cells(python: str, algo: str) -> list[dict]:
    runs = []
    for seed in range(SEEDS):
        cmd = [python, str(HERE / "sb3_lunarlander.py"), "--algo", algo, "--seed", str(seed)]
        cmd += ["--steps", str(BUDGET[algo]), "--eval-every", str(eval_every(algo))]
        cmd += ["--eval-episodes", str(EVAL_EPISODES), *SB3_ARGS[algo]]
        out, timing = timed(cmd)
        run = {**json.loads(out.strip().splitlines()[-1]), **timing}
        runs.append(run)
        print(
            f"  sb3 {algo} seed {seed}: {run['env_steps_per_second']:,.0f} env steps/s, "
            f"final {run['eval_returns'][-1]:.1f}, process {run['process_wall_s']:.0f} s, "
            f"others' CPU {run['others_cpu_s']:.0f} s",
            flush=True,
        )
    return runs


def eval_every(algo: str) -> int:
    return (DQN if algo == "dqn" else PPO)["eval_every"]


# ------------------------------------------------------------------ parts


def lunar_rows(algo: str, sb3_python: str) -> list[dict]:
    """purerl (4 seeds, one process), then SB3 (4 processes): two rows."""
    overrides = DQN if algo == "dqn" else PPO
    spec = dict(
        algo=algo,
        seeds=SEEDS,
        steps=BUDGET[algo],
        overrides=overrides,
        actors=1,
        async_envs=False,
    )
    common = {
        "part": "lunar",
        "algo": algo,
        "env": "LunarLander-v3",
        "seeds": SEEDS,
        "budget_per_seed": BUDGET[algo],
        "zoo_budget_per_seed": ZOO_BUDGET[algo],
        "zoo_source": ZOO_SOURCE[algo],
        "eval_episodes": EVAL_EPISODES,
        "date": datetime.date.today().isoformat(),
    }
    p = purerl_cell(spec)
    total = p["env_steps_per_seed"] * SEEDS
    purerl_row = {
        **common,
        "library": "purerl",
        "config": overrides,
        "actors": 1,
        "async_envs": False,
        "max_staleness": 1,
        **p,
        "wall_s": p["compile_s"] + p["train_s"],
        "total_env_steps": total,
    }
    print(
        f"  purerl {algo}: {p['steps_per_s']:,.0f} env steps/s, final "
        f"{p['final_return_mean']:.1f}, process {p['process_wall_s']:.0f} s, others' CPU "
        f"{p['others_cpu_s']:.0f} s",
        flush=True,
    )
    runs = sb3_cells(sb3_python, algo)
    total = sum(r["total_steps"] for r in runs)
    wall = sum(r["wall_seconds"] for r in runs)
    evals = sum(r["eval_seconds"] for r in runs)
    finals = [r["eval_returns"][-1] for r in runs]
    sb3_row = {
        **common,
        "library": "sb3",
        "config": runs[0]["hyperparameters"],
        "env_steps_per_seed": runs[0]["total_steps"],
        "total_env_steps": total,
        "wall_s": wall,
        "eval_s": evals,
        "steps_per_s": total / (wall + evals),
        "steps_per_s_excl_eval": total / wall,
        "process_wall_s": sum(r["process_wall_s"] for r in runs),
        "process_cpu_s": sum(r["process_cpu_s"] for r in runs),
        "others_cpu_s": sum(r["others_cpu_s"] for r in runs),
        "final_return_per_seed": finals,
        "final_return_mean": sum(finals) / len(finals),
        "eval_steps": runs[0]["eval_steps"],
        "eval_steps_per_seed": [r["eval_steps"] for r in runs],
        "eval_curve": [r["eval_returns"] for r in runs],
        "versions": runs[0]["versions"],
        "per_seed": [
            {
                k: r[k]
                for k in ("seed", "wall_seconds", "eval_seconds", "process_wall_s", "others_cpu_s")
            }
            for r in runs
        ],
    }
    for key in ("steps_per_s", "steps_per_s_excl_eval"):
        ratio = purerl_row[key] / sb3_row[key]
        purerl_row[f"ratio_vs_sb3_{key}"] = sb3_row[f"ratio_vs_sb3_{key}"] = ratio
    return [purerl_row, sb3_row]


def scaling_rows(
    repeats: int, part: str = "scaling", envpool_python: str = ENVPOOL_PYTHON
) -> list[dict]:
    """Every cell of ``part`` (``SCALING_CELLS`` or ``BACKEND_CELLS``) ``repeats`` times,
    round robin (so drift on the shared machine hits every cell alike); a row per cell holds
    every run and, at the top, the run with the median env steps/s (excl. eval)."""
    cells = SCALING_CELLS if part == "scaling" else BACKEND_CELLS
    cells = [(*c, "gymnasium")[:4] for c in cells]
    runs: dict[tuple, list[dict]] = {cell: [] for cell in cells}
    for rep in range(repeats):
        for algo, actors, async_envs, backend in cells:
            spec = dict(
                algo=algo,
                seeds=1,
                steps=SCALING_STEPS[algo],
                overrides=SCALING_PPO if algo == "ppo" else SCALING_DQN,
                actors=actors,
                async_envs=async_envs,
                backend=backend,
            )
            python = envpool_python if backend == "envpool" else sys.executable
            p = purerl_cell(spec, python)
            runs[(algo, actors, async_envs, backend)].append(p)
            h = p["host"]
            print(
                f"  {part} {algo} {backend} actors={actors} async={async_envs} "
                f"(run {rep + 1}/{repeats}): "
                f"{p['steps_per_s']:,.0f} env steps/s (excl. eval "
                f"{p['steps_per_s_excl_eval']:,.0f}); wait {h['wait_seconds']:.1f} s, learn "
                f"{h['learn_seconds']:.1f} s; others' CPU {p['others_cpu_s']:.0f} s",
                flush=True,
            )
    rows = []
    for (algo, actors, async_envs, backend), done in runs.items():
        ranked = sorted(done, key=lambda p: p["steps_per_s_excl_eval"])
        median = ranked[(len(ranked) - 1) // 2]
        rows.append(
            {
                "part": part,
                "library": "purerl",
                "backend": backend,
                "algo": algo,
                "seeds": 1,
                "actors": actors,
                "async_envs": async_envs,
                "max_staleness": 1,
                "config": SCALING_PPO if algo == "ppo" else SCALING_DQN,
                "date": datetime.date.today().isoformat(),
                "repeats": len(done),
                **median,
                "runs": [
                    {k: v for k, v in p.items() if k not in ("eval_curve", "eval_steps")}
                    for p in done
                ],
            }
        )
    return rows


# ------------------------------------------------------------------ report


def versions(sb3_python: str) -> dict:
    import gymnasium
    import jax
    import numpy

    import purerl

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return "?"

    dirty = bool(git("status", "--porcelain", "--", "purerl"))
    out = {
        "python": sys.version.split()[0],
        "purerl": getattr(purerl, "__version__", "?"),
        "purerl_git": git("rev-parse", "--short", "HEAD") + (" + uncommitted" if dirty else ""),
        "jax": jax.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": numpy.__version__,
    }
    probe = (
        "import json, platform, stable_baselines3, torch, gymnasium; print(json.dumps({"
        "'python': platform.python_version(), 'stable_baselines3': stable_baselines3.__version__,"
        " 'torch': torch.__version__, 'gymnasium': gymnasium.__version__}))"
    )
    try:
        sb3 = json.loads(
            subprocess.run(
                [sb3_python, "-c", probe], capture_output=True, text=True, check=True
            ).stdout
        )
    except (OSError, subprocess.CalledProcessError, json.JSONDecodeError):
        sb3 = {"error": f"could not run {sb3_python}"}
    out["sb3_venv"] = {**sb3, "torch_threads": 1}
    return out


def lunar_table(rows: list[dict]) -> str:
    lines = [
        "| algorithm | library | env steps per seed | final greedy return per seed | mean "
        "| wall s (compile + train / SB3 Σ learn) | process wall s | process CPU s "
        "| others' CPU s | env steps/s (incl. eval) | env steps/s (excl. eval) "
        "| purerl / SB3 (incl. / excl.) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        finals = ", ".join(f"{x:.0f}" for x in r["final_return_per_seed"])
        if r["library"] == "purerl":
            wall = f"{r['compile_s']:.1f} + {r['train_s']:.1f} = {r['wall_s']:.1f}"
        else:
            wall = f"{r['wall_s'] + r['eval_s']:.1f} ({r['wall_s']:.1f} excl. eval)"
        ratio = (
            f"{r['ratio_vs_sb3_steps_per_s']:.2f}× / {r['ratio_vs_sb3_steps_per_s_excl_eval']:.2f}×"
            if "ratio_vs_sb3_steps_per_s" in r
            else "–"
        )
        lines.append(
            f"| {r['algo']} | {r['library']} | {r['env_steps_per_seed']:,} | {finals} "
            f"| {r['final_return_mean']:.1f} | {wall} | {r['process_wall_s']:.0f} "
            f"| {r['process_cpu_s']:.0f} | {r['others_cpu_s']:.0f} | {r['steps_per_s']:,.0f} "
            f"| {r['steps_per_s_excl_eval']:,.0f} | {ratio} |"
        )
    return "\n".join(lines)


def curve_table(rows: list[dict]) -> str:
    lines = []
    for algo in ("dqn", "ppo"):
        sel = [r for r in rows if r["algo"] == algo]
        if not sel:
            continue
        steps = sel[0]["eval_steps"]
        lines += [
            f"{algo.upper()}: mean greedy return over {SEEDS} seeds (min – max) at env steps "
            "per seed",
            "",
            "| env steps | " + " | ".join(r["library"] for r in sel) + " |",
            "|---:|" + "---:|" * len(sel),
        ]
        for i, step in enumerate(steps):
            cells = []
            for r in sel:
                col = [c[i] for c in r["eval_curve"]]
                cells.append(f"{sum(col) / len(col):.1f} ({min(col):.0f} – {max(col):.0f})")
            lines.append(f"| {step:,} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def scaling_table(rows: list[dict]) -> str:
    lines = [
        "| algorithm | env backend | actors | async envs | env steps | compile s | train s "
        "| eval s | env steps/s (incl. eval) | env steps/s (excl. eval; range) | learner wait s "
        "| learner learn s | staleness mean / max | process CPU s / wall s "
        "| others' CPU s (each run) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        h = r["host"]
        every = sorted(p["steps_per_s_excl_eval"] for p in r.get("runs", [r]))
        spread = f"{every[0]:,.0f} – {every[-1]:,.0f}, {len(every)} runs"
        others = "/".join(f"{p['others_cpu_s']:.0f}" for p in r.get("runs", [r]))
        lines.append(
            f"| {r['algo']} | {r.get('backend', 'gymnasium')} | {r['actors']} | {r['async_envs']} "
            f"| {r['env_steps_per_seed']:,} "
            f"| {r['compile_s']:.1f} | {r['train_s']:.1f} | {r['eval_s']:.1f} "
            f"| {r['steps_per_s']:,.0f} | {r['steps_per_s_excl_eval']:,.0f} ({spread}) "
            f"| {h['wait_seconds']:.1f} | {h['learn_seconds']:.1f} "
            f"| {h['staleness_mean']:.2f} / {h['staleness_max']} "
            f"| {r['process_cpu_s']:.0f} / {r['process_wall_s']:.0f} | {others} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    colors = {"purerl": "tab:blue", "sb3": "tab:orange"}
    for ax, algo in zip(axes[:, 0], ("dqn", "ppo"), strict=True):
        for r in (r for r in rows if r["part"] == "lunar" and r["algo"] == algo):
            curves = np.asarray(r["eval_curve"])
            steps = np.asarray(r["eval_steps"])
            c = colors[r["library"]]
            for curve in curves:
                ax.plot(steps, curve, color=c, lw=0.6, alpha=0.45)
            label = "Stable-Baselines3" if r["library"] == "sb3" else "purerl"
            ax.plot(
                steps,
                curves.mean(0),
                color=c,
                lw=2,
                label=f"{label} (mean of {len(curves)})",
                marker="o",
                ms=3,
            )
            ax.fill_between(steps, curves.min(0), curves.max(0), color=c, alpha=0.12)
        ax.axhline(SOLVED, color="grey", ls=":", label="solved (200)")
        ax.set(
            xlabel="env steps per seed",
            ylabel="greedy return (8 episodes)",
            title=f"{algo.upper()} on LunarLander-v3: seeds thin, min–max band",
        )
        ax.legend(fontsize=8, loc="lower right")
    for ax, algo in zip(axes[:, 1], ("ppo", "dqn"), strict=True):
        sel = [r for r in rows if r["part"] == "scaling" and r["algo"] == algo]
        if not sel:
            ax.set_axis_off()
            continue
        labels = [
            f"{r['actors']} actor{'s' * (r['actors'] > 1)}\n"
            + ("async" if r["async_envs"] else "sync")
            for r in sel
        ]
        x = np.arange(len(sel))
        ax.bar(x - 0.2, [r["steps_per_s"] for r in sel], 0.4, label="incl. eval", color="tab:gray")
        ax.bar(
            x + 0.2,
            [r["steps_per_s_excl_eval"] for r in sel],
            0.4,
            label="excl. eval (median; bar: range of runs)",
            color="tab:green",
        )
        every = [sorted(q["steps_per_s_excl_eval"] for q in r.get("runs", [r])) for r in sel]
        med = [r["steps_per_s_excl_eval"] for r in sel]
        ax.errorbar(
            x + 0.2,
            med,
            yerr=[
                [m - e[0] for m, e in zip(med, every, strict=True)],
                [e[-1] - m for m, e in zip(med, every, strict=True)],
            ],
            fmt="none",
            ecolor="black",
            capsize=3,
        )
        for xi, r in zip(x, sel, strict=True):
            h = r["host"]
            ax.annotate(
                f"wait {h['wait_seconds']:.0f} s\nlearn {h['learn_seconds']:.0f} s",
                (xi, max(q["steps_per_s_excl_eval"] for q in r.get("runs", [r]))),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.set_xticks(x, labels, fontsize=8)
        top = max(q["steps_per_s_excl_eval"] for r in sel for q in r.get("runs", [r]))
        ax.set_ylim(0, top * 1.5)
        steps = SCALING_STEPS[algo]
        ax.set(
            ylabel="env steps/s",
            title=f"{algo.upper()} actor scaling (1 seed, {steps:,} steps, learner wait/learn)",
        )
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--parts",
        nargs="+",
        default=["dqn", "ppo", "scaling", "backends"],
        choices=["dqn", "ppo", "scaling", "backends"],
    )
    p.add_argument("--sb3-python", default=SB3_PYTHON)
    p.add_argument(
        "--envpool-python",
        default=ENVPOOL_PYTHON,
        help="a python with purerl[envpool] installed, for the backends part",
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="runs of every scaling cell (median shown) [3]"
    )
    p.add_argument("--json", type=Path, default=HERE / "results" / "host_envs.json")
    p.add_argument("--cell", default=None, help=argparse.SUPPRESS)
    p.add_argument("--smoke", action="store_true", help="tiny budgets, to check the script")
    args = p.parse_args()
    if args.cell is not None:
        print(json.dumps(run_cell(json.loads(args.cell))))
        return
    if args.smoke:
        BUDGET.update(dqn=2_000, ppo=16_384)
        DQN["eval_every"], SCALING_DQN["eval_every"] = 1_000, 1_000
        SCALING_PPO["eval_every"] = 4_096
        SCALING_STEPS.update(ppo=4_096, dqn=2_000)
    print(machine(), flush=True)
    rows = []
    for algo in ("dqn", "ppo"):
        if algo in args.parts:
            print(f"LunarLander-v3 {algo}: purerl, then SB3 ×{SEEDS}", flush=True)
            rows += lunar_rows(algo, args.sb3_python)
    if "scaling" in args.parts:
        print("actor scaling", flush=True)
        rows += scaling_rows(args.repeats)
    if "backends" in args.parts:
        print("env backends: Gymnasium sync / async, EnvPool", flush=True)
        rows += scaling_rows(args.repeats, "backends", args.envpool_python)
    order = {"lunar": 0, "scaling": 1, "backends": 2}
    rows = save_rows(
        args.json,
        rows,
        key=lambda r: (
            r["part"],
            r["library"],
            r["algo"],
            r.get("actors"),
            r.get("async_envs"),
            r.get("backend", "gymnasium"),
        ),
        sort=lambda r: (
            order[r["part"]],
            r["algo"],
            r["library"],
            r.get("backend", "gymnasium"),
            r.get("actors") or 0,
            bool(r.get("async_envs")),
        ),
    )
    # save_rows writes {"machine", "rows"}; add the date and the versions of this write
    data = json.loads(args.json.read_text())
    data = {
        "machine": data["machine"],
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "versions": versions(args.sb3_python),
        "command": "python benchmarks/host_envs.py " + " ".join(sys.argv[1:]),
        "rows": data["rows"],
    }
    args.json.write_text(json.dumps(data, indent=1))
    plot(rows, args.json.with_suffix(".png"))
    lunar = [r for r in rows if r["part"] == "lunar"]
    scaling = [r for r in rows if r["part"] == "scaling"]
    backends = [r for r in rows if r["part"] == "backends"]
    if lunar:
        print(lunar_table(lunar))
        print()
        print(curve_table(lunar))
    if scaling:
        print(scaling_table(scaling))
    if backends:
        print()
        print(scaling_table(backends))


if __name__ == "__main__":
    main()
