"""SAC and TD3 on Pendulum-v1, purerl vs rejax 0.1.3, side by side in one run (issue #14).

Both libraries train with rejax's published Pendulum configs (rejax ``configs/gymnax/
pendulum.yaml``: one env, buffer 10k, 10k steps, 64-64 swish MLPs; SAC: batch 256, lr 1e-2,
fill 256, Polyak 0.02; TD3: batch 100, lr 1e-3, fill 1000, Polyak 0.05, grad-norm 100,
exploration noise 0.3, policy delay 2), which are purerl's defaults. Evaluation is the same
work for both: 8 greedy episodes every 1,000 env steps (rejax's own default is 128 episodes
every 100 steps, which would make it spend most of its time evaluating). Each cell is a fresh
process; the cells of one (algorithm, seeds) row run back to back, rejax between purerl on one
XLA device and purerl on both cores (seeds sharded over two host devices, what ``purerl train``
does by default), so machine drift hits all of them alike. The ratio per row is the figure.

rejax needs ``gymnax==0.0.9`` and so its own venv; its cells run there and import nothing of
purerl:

    python -m venv /tmp/rejax-venv && /tmp/rejax-venv/bin/pip install rejax==0.1.3 gymnax==0.0.9
    python benchmarks/off_policy.py                         # 1, 8, 64 seeds, SAC and TD3
    python benchmarks/off_policy.py --algos td3 --seeds 8 --rejax-python /path/to/python
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_common import in_fresh_process, rejax_cell, save_rows, sharded_keys, time_train

HERE = Path(__file__).resolve().parent
ENV = "Pendulum-v1"
TOTAL_STEPS = 10_000
EVAL_EVERY = 1_000
EVAL_EPISODES = 8
TARGET = -200.0  # random ≈ -1200; a solved swing-up holds ≈ -150

# rejax configs/gymnax/pendulum.yaml (rejax 0.1.3); purerl's Config defaults are the same
# settings under purerl's names, so the purerl cell passes only the shared budget.
REJAX_CONFIG = {
    "sac": dict(
        agent_kwargs={"activation": "swish"},
        num_envs=1,
        buffer_size=10_000,
        fill_buffer=256,
        batch_size=256,
        learning_rate=0.01,
        num_epochs=1,
        gamma=0.99,
        polyak=0.98,
        target_entropy_ratio=None,
        normalize_observations=True,
    ),
    "td3": dict(
        actor_kwargs={"activation": "swish"},
        critic_kwargs={"activation": "swish"},
        num_envs=1,
        buffer_size=10_000,
        fill_buffer=1000,
        batch_size=100,
        learning_rate=0.001,
        num_epochs=1,
        gamma=0.99,
        polyak=0.95,
        max_grad_norm=100,
        exploration_noise=0.3,
        target_noise=0.2,
        target_noise_clip=0.5,
        policy_delay=2,
        normalize_observations=True,
    ),
}


def _summary(row: dict) -> dict:
    """Add throughput, time to ``TARGET`` (training time spread evenly over the run's env
    steps) and final-return statistics to a cell's raw curve and timings."""
    import numpy as np

    from purerl import stats

    curves = np.asarray(row["eval_curve"])
    steps = np.asarray(row["eval_steps"])
    mean = curves.mean(0)
    hit = np.flatnonzero(mean >= TARGET)
    row["steps_per_s"] = row["seeds"] * row["steps"] / row["train_s"]
    row["steps_to_target"] = int(steps[hit[0]]) if hit.size else None
    row["seconds_to_target"] = (
        float(row["train_s"] * steps[hit[0]] / row["steps"]) if hit.size else None
    )
    row["final"] = stats.summarize(curves[:, -1])
    return row


def purerl_cell(algo: str, seeds: int, steps: int) -> dict:
    import numpy as np

    from purerl.algorithms import ALGORITHMS

    module = ALGORITHMS[algo]
    config = module.Config(
        env_id=ENV, total_steps=steps, eval_every=EVAL_EVERY, eval_envs=EVAL_EPISODES
    )
    keys, sharding = sharded_keys(seeds)
    metrics, compile_s, train_s = time_train(module.make_train(config), keys, sharding)
    return {
        "library": "purerl",
        "algo": algo,
        "seeds": seeds,
        "steps": steps,
        "devices": len(sharding.device_set),
        "compile_s": compile_s,
        "train_s": train_s,
        "eval_curve": np.asarray(metrics["eval_return"]).tolist(),
        "eval_steps": np.asarray(metrics["eval_env_steps"])[0].tolist(),
    }


def rejax_row(python: str, algo: str, seeds: int, steps: int) -> dict:
    row = rejax_cell(python, ENV, algo, REJAX_CONFIG[algo], seeds, steps, EVAL_EVERY,
                     EVAL_EPISODES)  # fmt: skip
    return {"library": "rejax 0.1.3", "algo": algo, "seeds": seeds, "steps": steps, "devices": 1,
            **row}  # fmt: skip


def _fmt_hit(r: dict) -> str:
    if r["seconds_to_target"] is None:
        return "not reached"
    return f"{r['seconds_to_target']:.1f} s ({r['steps_to_target']:,})"


def table(rows: list[dict]) -> str:
    """Markdown table; ``× rejax`` is env steps/s over rejax's in the same row group."""
    rejax = {(r["algo"], r["seeds"]): r for r in rows if r["library"].startswith("rejax")}
    lines = [
        "| algorithm | seeds | library | XLA devices | compile s | train s | env steps/s "
        "| × rejax | time to mean ≥ −200 (steps) | final IQM [95% CI] | final mean ± std |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows:
        ref = rejax.get((r["algo"], r["seeds"]))
        ratio = f"{r['steps_per_s'] / ref['steps_per_s']:.2f}" if ref else "–"
        f = r["final"]
        lines.append(
            f"| {r['algo']} | {r['seeds']} | {r['library']} | {r['devices']} "
            f"| {r['compile_s']:.1f} | {r['train_s']:.1f} | {r['steps_per_s']:,.0f} | {ratio} "
            f"| {_fmt_hit(r)} | {f['iqm']:.0f} [{f['iqm_ci_low']:.0f}, {f['iqm_ci_high']:.0f}] "
            f"| {f['mean']:.0f} ± {f['std']:.0f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """Learning curves (mean, IQR band) at the largest seed count, and env steps/s vs seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    algos = sorted({r["algo"] for r in rows})
    fig, axes = plt.subplots(1, len(algos) + 1, figsize=(5.5 * (len(algos) + 1), 4))
    label = lambda r: f"{r['library']} ({r['devices']} dev)"  # noqa: E731
    for ax, algo in zip(axes[:-1], algos, strict=True):
        most = max(r["seeds"] for r in rows if r["algo"] == algo)
        for r in (r for r in rows if r["algo"] == algo and r["seeds"] == most):
            if r["library"] == "purerl" and r["devices"] > 1:
                continue  # same curves as one device (same keys, same computation)
            c = np.asarray(r["eval_curve"])
            ax.plot(r["eval_steps"], c.mean(0), label=label(r))
            ax.fill_between(r["eval_steps"], *np.percentile(c, [25, 75], axis=0), alpha=0.2)
        ax.axhline(TARGET, color="grey", ls=":", label=f"target {TARGET:g}")
        ax.set(xlabel="env steps per seed", ylabel="greedy return", title=f"{algo}, {most} seeds")
        ax.legend()
    ax = axes[-1]
    for key in sorted({(r["algo"], r["library"], r["devices"]) for r in rows}):
        sel = sorted((r for r in rows if (r["algo"], r["library"], r["devices"]) == key),
                     key=lambda r: r["seeds"])  # fmt: skip
        ax.plot([r["seeds"] for r in sel], [r["steps_per_s"] for r in sel], "o-",
                label=f"{key[0]} {label(sel[0])}")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="vmapped seeds", ylabel="env steps/s (all seeds)")
    ax.set_title("throughput")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--algos", nargs="+", default=["sac", "td3"], choices=["sac", "td3"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--rejax-python", default="/tmp/rejax-venv/bin/python")
    p.add_argument("--steps", type=int, default=TOTAL_STEPS, help="env steps per seed")
    p.add_argument("--cell", nargs=3, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=HERE / "results" / "off_policy.json")
    args = p.parse_args()
    if args.cell is not None:
        algo, seeds, steps = args.cell
        print(json.dumps(purerl_cell(algo, int(seeds), int(steps))))
        return
    if not Path(args.rejax_python).exists():
        sys.exit(f"no rejax venv at {args.rejax_python}: see this script's docstring")
    rows = []
    for seeds in args.seeds:
        for algo in args.algos:
            for devices in (1, "rejax", 2) if seeds % 2 == 0 else (1, "rejax"):
                if devices == "rejax":
                    row = rejax_row(args.rejax_python, algo, seeds, args.steps)
                else:
                    row = in_fresh_process(__file__, [algo, str(seeds), str(args.steps)], devices)
                rows.append(_summary(row))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    rows = save_rows(
        args.json,
        rows,
        key=lambda r: (r["library"], r["algo"], r["seeds"], r["devices"]),
        sort=lambda r: (r["algo"], r["seeds"], r["library"] != "purerl", r["devices"]),
    )
    plot(rows, args.json.with_suffix(".png"))
    print(table(rows))


if __name__ == "__main__":
    main()
