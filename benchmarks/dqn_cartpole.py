"""DQN on CartPole-v1: compile time, train time, env steps/s and final greedy return
for 1, 8 and 64 vmapped seeds, each cell timed in fresh processes.

    python benchmarks/dqn_cartpole.py                 # full table into benchmarks/RESULTS.md
    python benchmarks/dqn_cartpole.py --seeds 1 8 --repeats 1 --steps 50000   # quicker

The work per seed matches the reference point of issue #2 (10 envs, 100k steps, 5 gradient
steps of batch 100 per iteration, 64-64 dueling MLP with swish, double DQN, Polyak τ=0.02,
buffer 50k): these are purerl's DQN defaults.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_common import in_fresh_process, machine, save_rows, sharded_keys, time_train

HERE = Path(__file__).resolve().parent


def run_cell(seeds: int, steps: int) -> dict:
    import numpy as np

    from purerl.algorithms import dqn

    config = dqn.Config(env_id="CartPole-v1", total_steps=steps)
    keys, sharding = sharded_keys(seeds)  # all host devices dividing the seed count
    metrics, compile_s, train_s = time_train(dqn.make_train(config), keys, sharding)
    evals = np.asarray(metrics["eval_return"])
    return {
        "seeds": seeds,
        "devices": len(sharding.device_set),
        "steps": steps,
        "compile_s": compile_s,
        "train_s": train_s,
        "steps_per_s": seeds * steps / train_s,
        "final_return_mean": float(evals[:, -1].mean()),
        "final_return_std": float(evals[:, -1].std()),
        "eval_curve_mean": evals.mean(0).tolist(),
        "eval_curve": evals.tolist(),
        "eval_steps": np.asarray(metrics["eval_env_steps"])[0].tolist(),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| seeds | CPU devices | runs | compile s | train s | env steps/s (total) "
        "| env steps/s per seed "
        "| final greedy return (mean ± std over seeds) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seeds']} | {r['devices']} | {r['runs']} "
            f"| {r['compile_s']:.1f} | {r['train_s']:.1f} "
            f"| {r['steps_per_s']:,.0f} | {r['steps_per_s'] / r['seeds']:,.0f} "
            f"| {r['final_return_mean']:.1f} ± {r['final_return_std']:.1f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        curves = np.asarray(r["eval_curve"])
        mean = curves.mean(0)
        half = 1.96 * curves.std(0, ddof=1) / np.sqrt(len(curves)) if len(curves) > 1 else 0 * mean
        ax.plot(r["eval_steps"], mean, label=f"{r['seeds']} seeds, {r['devices']} device(s)")
        ax.fill_between(r["eval_steps"], mean - half, mean + half, alpha=0.2)
    ax.axhline(22, color="grey", ls=":", label="random policy (~22)")
    ax.set(
        xlabel="env steps per seed",
        ylabel="greedy return (mean, 95% CI)",
        title="purerl DQN on CartPole-v1",
        ylim=(0, 520),
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per cell (timings)")
    p.add_argument(
        "--devices",
        type=int,
        nargs="+",
        default=[1, 2],
        help="XLA host device counts to try (seeds are sharded over them)",
    )
    p.add_argument("--taskset", default=None, help="pin to these cores, e.g. 0")
    p.add_argument("--cell", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=HERE / "results" / "dqn_cartpole.json")
    args = p.parse_args()
    if args.cell is not None:
        print(json.dumps(run_cell(args.cell, args.steps)))
        return
    rows = []
    cells = [(s, d) for s in args.seeds for d in args.devices if d == 1 or s % d == 0]
    for seeds, devices in cells:
        runs = [
            in_fresh_process(
                __file__, [str(seeds), "--steps", str(args.steps)], devices, args.taskset
            )
            for _ in range(args.repeats)
        ]
        best = min(runs, key=lambda r: r["train_s"])  # least-disturbed timing
        median = sorted(runs, key=lambda r: r["train_s"])[len(runs) // 2]
        rows.append({**median, "runs": len(runs), "best_train_s": best["train_s"]})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    cell = lambda r: (r["seeds"], r["devices"])  # noqa: E731
    rows = save_rows(args.json, rows, key=cell, sort=cell)
    plot(rows, args.json.with_suffix(".png"))
    print(f"machine: {machine()}\n{table(rows)}")


if __name__ == "__main__":
    main()
