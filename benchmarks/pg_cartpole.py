"""REINFORCE, A2C and PPO on CartPole-v1 (and PPO on Pendulum-v1): compile time, train time,
env steps/s, wall time to a mean greedy return, and learning curves, for 1, 8 and 64 vmapped
seeds. Each cell runs in a fresh process; seeds are sharded over the XLA host devices.

    python benchmarks/pg_cartpole.py                      # everything, into results/pg.json
    python benchmarks/pg_cartpole.py --algos ppo --seeds 1 8 --repeats 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_common import in_fresh_process, save_rows, sharded_keys, time_train

HERE = Path(__file__).resolve().parent

# Budgets per seed and evaluation spacing; targets: 475 on CartPole (the "solved" line of
# CartPole-v1), -250 on Pendulum (random ≈ -1200, gymnax PPO checkpoints ≈ -130).
CELLS = {
    ("reinforce", "CartPole-v1"): dict(total_steps=500_000, eval_every=25_000),
    ("a2c", "CartPole-v1"): dict(total_steps=500_000, eval_every=20_000),
    ("ppo", "CartPole-v1"): dict(total_steps=501_760, eval_every=10_240),
    # Pendulum: PPO's own settings for it (ppo.ENV_DEFAULTS, rejax's published gymnax config)
    ("ppo", "Pendulum-v1"): {},
}
TARGET = {"CartPole-v1": 475.0, "Pendulum-v1": -250.0}


def run_cell(algo: str, env: str, seeds: int) -> dict:
    import numpy as np

    from purerl.algorithms import ALGORITHMS
    from purerl.experiment import make_config

    module = ALGORITHMS[algo]
    config = make_config(algo, env, overrides=CELLS[(algo, env)])  # env_defaults, then these
    keys, sharding = sharded_keys(seeds)
    metrics, compile_s, train_s = time_train(module.make_train(config), keys, sharding)
    evals = np.asarray(metrics["eval_return"])
    steps = np.asarray(metrics["eval_env_steps"])[0]
    mean = evals.mean(0)
    hit = np.flatnonzero(mean >= TARGET[env])
    # wall time to target: training time is spread evenly over the run's env steps
    to_target = float(train_s * steps[hit[0]] / config.total_steps) if hit.size else None
    return {
        "algo": algo,
        "env": env,
        "seeds": seeds,
        "devices": len(sharding.device_set),
        "steps": config.total_steps,
        "compile_s": compile_s,
        "train_s": train_s,
        "steps_per_s": seeds * config.total_steps / train_s,
        "target": TARGET[env],
        "steps_to_target": int(steps[hit[0]]) if hit.size else None,
        "seconds_to_target": to_target,
        "final_return_mean": float(evals[:, -1].mean()),
        "final_return_std": float(evals[:, -1].std()),
        "eval_curve": evals.tolist(),
        "eval_steps": steps.tolist(),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| algorithm | env | seeds | CPU devices | compile s | train s | env steps/s (total) "
        "| time to target (steps) | final greedy return (mean ± std) |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        hit = (
            f"{r['seconds_to_target']:.1f} s ({r['steps_to_target']:,})"
            if r["seconds_to_target"] is not None
            else "not reached"
        )
        lines.append(
            f"| {r['algo']} | {r['env']} | {r['seeds']} | {r['devices']} | {r['compile_s']:.1f} "
            f"| {r['train_s']:.1f} | {r['steps_per_s']:,.0f} | {hit} (≥ {r['target']:g}) "
            f"| {r['final_return_mean']:.1f} ± {r['final_return_std']:.1f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    envs = sorted({r["env"] for r in rows})
    fig, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs, strict=True):
        for r in (
            r
            for r in rows
            if r["env"] == env
            and r["seeds"]
            == max(q["seeds"] for q in rows if q["env"] == env and q["algo"] == r["algo"])
        ):
            curves = np.asarray(r["eval_curve"])
            mean, lo, hi = curves.mean(0), *np.percentile(curves, [25, 75], axis=0)
            ax.plot(r["eval_steps"], mean, label=f"{r['algo']} ({r['seeds']} seeds)")
            ax.fill_between(r["eval_steps"], lo, hi, alpha=0.2)
        ax.axhline(TARGET[env], color="grey", ls=":", label=f"target {TARGET[env]:g}")
        ax.set(xlabel="env steps per seed", ylabel="greedy return (mean, IQR band)", title=env)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--algos", nargs="+", default=["reinforce", "a2c", "ppo"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--devices", type=int, default=1, help="XLA host devices (seeds sharded)")
    p.add_argument("--pendulum-seeds", type=int, nargs="*", default=[8])
    p.add_argument("--cell", nargs=3, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=HERE / "results" / "pg.json")
    args = p.parse_args()
    if args.cell is not None:
        algo, env, seeds = args.cell
        print(json.dumps(run_cell(algo, env, int(seeds))))
        return
    cells = [(a, "CartPole-v1", s) for a in args.algos for s in args.seeds]
    if "ppo" in args.algos:
        cells += [("ppo", "Pendulum-v1", s) for s in args.pendulum_seeds]
    rows = []
    for algo, env, seeds in cells:
        devices = args.devices if seeds % args.devices == 0 else 1
        rows.append(in_fresh_process(__file__, [algo, env, str(seeds)], devices))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    rows = save_rows(args.json, rows, key=lambda r: (r["algo"], r["env"], r["seeds"]))
    plot(rows, args.json.with_suffix(".png"))
    print(table(rows))


if __name__ == "__main__":
    main()
