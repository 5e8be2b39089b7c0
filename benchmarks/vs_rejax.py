"""purerl vs rejax 0.1.3 on CartPole-v1, side by side in one run (issues #11 and #12).

Two parts, both on rejax's own CartPole configs (rejax ``configs/gymnax/cartpole.yaml``):

- ``speed``: PPO (5 envs × 100 steps, 5 epochs × 5 minibatches, tanh 64-64, lr 7.5e-4, no
  annealing) and DQN (10 envs, buffer 50k, fill 5k, 5 updates of batch 100 per iteration,
  dueling 64-64 swish, double, Polyak 0.02, lr 1e-3, ε 1 → 0.05 over half the run) at 1 and 8
  seeds on one XLA device, evaluation (8 episodes) only at the start and the end. Each cell
  is a fresh process and the two libraries alternate, ``--repeats`` times, so machine drift
  hits both alike; the ratio per row is the figure. Compile seconds are a cold compile
  (purerl's persistent cache is not used by ``jax.jit`` here).
- ``learning``: DQN, 32 seeds each, 100k env steps, 16 evaluation episodes every 10k steps
  (purerl's greedy; rejax's act, which is ε-greedy with ε = 0.005): rejax on its config and
  purerl on the same config. Final distribution (IQM with a bootstrap 95% CI, share of seeds
  ≥ 475) and curves. (purerl's own defaults at 64 seeds: ``benchmarks/defaults.py``.)

rejax needs ``gymnax==0.0.9`` and so its own venv; its cells run there and import nothing of
purerl:

    python -m venv /tmp/rejax-venv && /tmp/rejax-venv/bin/pip install rejax==0.1.3 gymnax==0.0.9
    python benchmarks/vs_rejax.py --parts speed learning --rejax-python /tmp/rejax-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_common import in_fresh_process, rejax_cell, save_rows, sharded_keys, time_train

HERE = Path(__file__).resolve().parent
SOLVED = 475.0

# rejax configs/gymnax/cartpole.yaml (rejax 0.1.3), in rejax's names
REJAX_CONFIG = {
    "ppo": dict(
        agent_kwargs={"activation": "tanh"}, num_envs=5, num_steps=100, num_epochs=5,
        num_minibatches=5, learning_rate=0.00075, max_grad_norm=0.5, gamma=0.99,
        gae_lambda=0.95, clip_eps=0.2, ent_coef=0.01, vf_coef=0.5,
    ),
    "dqn": dict(
        agent="DuelingQNetwork", agent_kwargs={"activation": "swish"}, num_envs=10,
        buffer_size=50_000, fill_buffer=5_000, batch_size=100, max_grad_norm=10,
        learning_rate=0.001, num_epochs=5, polyak=0.98, eps_start=1, eps_end=0.05,
        exploration_fraction=0.5, gamma=0.99, ddqn=True, normalize_observations=False,
    ),
}  # fmt: skip

# The same settings in purerl's names. rejax clips gradients elementwise (``optax.clip``),
# purerl by global norm: the one setting that has no exact counterpart (see RESULTS.md).
PURERL_CONFIG = {
    "ppo": dict(
        activation="tanh", hidden_sizes=(64, 64), num_envs=5, num_steps=100, update_epochs=5,
        num_minibatches=5, learning_rate=0.00075, max_grad_norm=0.5, gamma=0.99, lambda_=0.95,
        clip_eps=0.2, entropy_coef=0.01, value_coef=0.5, anneal_lr=False,
    ),
    "dqn": dict(
        dueling=True, activation="swish", hidden_sizes=(64, 64), num_envs=10,
        buffer_size=50_000, learning_starts=5_000, batch_size=100, max_grad_norm=10.0,
        learning_rate=0.001, updates_per_iteration=5, tau=0.02, epsilon_start=1.0,
        epsilon_end=0.05, exploration_fraction=0.5, gamma=0.99, double=True, loss="squared",
        anneal_lr=False, n_step=1,
    ),
}  # fmt: skip

SPEED_CELLS = [("ppo", 1, 100_000), ("ppo", 8, 100_000), ("ppo", 8, 500_000),
               ("dqn", 1, 100_000), ("dqn", 8, 100_000)]  # fmt: skip
LEARNING = dict(algo="dqn", seeds=32, steps=100_000, every=10_000, episodes=16)


def purerl_cell(algo: str, seeds: int, steps: int, every: int, episodes: int):
    import numpy as np

    from purerl.algorithms import ALGORITHMS

    module = ALGORITHMS[algo]
    config = module.Config(
        total_steps=steps, eval_every=every, eval_envs=episodes, **PURERL_CONFIG[algo]
    )
    keys, sharding = sharded_keys(seeds)
    metrics, compile_s, train_s = time_train(module.make_train(config), keys, sharding)
    # purerl evaluates at the end of each period; rejax also before training (step 0)
    return {
        "compile_s": compile_s,
        "train_s": train_s,
        "eval_curve": np.asarray(metrics["eval_return"]).tolist(),
        "eval_steps": np.asarray(metrics["eval_env_steps"])[0].tolist(),
    }


def cell(library: str, python: str, algo, seeds, steps, every, episodes) -> dict:
    """One fresh process of ``library`` ("rejax", or "purerl" on rejax's config); returns the
    row with throughput and final-return statistics."""
    import numpy as np

    from purerl import stats

    if library == "rejax":
        raw = rejax_cell(python, "CartPole-v1", algo, REJAX_CONFIG[algo], seeds, steps, every,
                         episodes)  # fmt: skip
    else:
        args = [algo, *map(str, (seeds, steps, every, episodes))]
        raw = in_fresh_process(__file__, args, devices=1)
    curves = np.asarray(raw["eval_curve"])
    row = {"library": library, "algo": algo, "seeds": seeds, "steps": steps, **raw}
    row["steps_per_s"] = seeds * steps / raw["train_s"]
    row["final"] = stats.summarize(curves[:, -1])
    row["solved_share"] = float(np.mean(curves[:, -1] >= SOLVED))
    return row


def speed_table(rows: list[dict]) -> str:
    lines = [
        "| algorithm | seeds | steps | repeat | rejax compile s | purerl compile s "
        "| rejax env steps/s | purerl env steps/s | purerl / rejax |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pairs = {}
    for r in rows:
        pairs.setdefault((r["algo"], r["seeds"], r["steps"], r["repeat"]), {})[r["library"]] = r
    for (algo, seeds, steps, rep), p in sorted(pairs.items()):
        if {"rejax", "purerl"} <= p.keys():
            x, y = p["rejax"], p["purerl"]
            lines.append(
                f"| {algo} | {seeds} | {steps:,} | {rep} | {x['compile_s']:.1f} "
                f"| {y['compile_s']:.1f} | {x['steps_per_s']:,.0f} | {y['steps_per_s']:,.0f} "
                f"| {y['steps_per_s'] / x['steps_per_s']:.2f} |"
            )
    return "\n".join(lines)


def learning_table(rows: list[dict]) -> str:
    lines = [
        "| library / config | seeds | final IQM [95% CI] | mean ± std | seeds ≥ 475 "
        "| final returns (sorted) |",
        "|---|---:|---|---|---:|---|",
    ]
    for r in rows:
        f, last = r["final"], sorted(round(c[-1]) for c in r["eval_curve"])
        lines.append(
            f"| {r['library']} | {r['seeds']} | {f['iqm']:.0f} [{f['iqm_ci_low']:.0f}, "
            f"{f['iqm_ci_high']:.0f}] | {f['mean']:.0f} ± {f['std']:.0f} "
            f"| {r['solved_share']:.0%} | {', '.join(map(str, last))} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    """DQN learning curves (mean and interquartile band over seeds) of the learning part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for r in rows:
        c = np.asarray(r["eval_curve"])
        ax.plot(r["eval_steps"], c.mean(0), label=f"{r['library']} (mean)")
        ax.fill_between(r["eval_steps"], *np.percentile(c, [25, 75], axis=0), alpha=0.2)
    ax.axhline(SOLVED, color="grey", ls=":", label="475")
    ax.set(xlabel="env steps per seed", ylabel="evaluation return",
           title=f"DQN, CartPole-v1, rejax's config, {rows[0]['seeds']} seeds each")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--parts", nargs="+", default=["speed", "learning"],
                   choices=["speed", "learning"])  # fmt: skip
    p.add_argument("--repeats", type=int, default=2, help="alternating pairs per speed cell")
    p.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=["ppo", "dqn"],
                   help="speed cells of these algorithms only")  # fmt: skip
    p.add_argument("--rejax-python", default="/tmp/rejax-venv/bin/python")
    p.add_argument("--cell", nargs=5, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=HERE / "results" / "vs_rejax.json")
    args = p.parse_args()
    if args.cell is not None:
        algo, *numbers = args.cell
        print(json.dumps(purerl_cell(algo, *map(int, numbers))))
        return
    if not Path(args.rejax_python).exists():
        sys.exit(f"no rejax venv at {args.rejax_python}: see this script's docstring")
    rows = []
    if "speed" in args.parts:
        for algo, seeds, steps in (c for c in SPEED_CELLS if c[0] in args.algos):
            for rep in range(args.repeats):
                for library in ("rejax", "purerl") if rep % 2 == 0 else ("purerl", "rejax"):
                    row = cell(library, args.rejax_python, algo, seeds, steps, steps, 8)
                    rows.append({**row, "part": "speed", "repeat": rep})
                print(speed_table(rows).splitlines()[-1], flush=True)
    if "learning" in args.parts:
        L = LEARNING
        for library in ("rejax", "purerl"):
            row = cell(library, args.rejax_python, L["algo"], L["seeds"], L["steps"],
                       L["every"], L["episodes"])  # fmt: skip
            rows.append({**row, "part": "learning", "repeat": 0})
            print(learning_table(rows[-1:]).splitlines()[-1], flush=True)
    rows = save_rows(
        args.json,
        rows,
        key=lambda r: (r["part"], r["library"], r["algo"], r["seeds"], r["steps"], r["repeat"]),
    )
    learning = [r for r in rows if r["part"] == "learning"]
    if learning:
        plot(learning, args.json.with_suffix(".png"))
        print(learning_table(learning))
    speed = [r for r in rows if r["part"] == "speed"]
    if speed:
        print(speed_table(speed))


if __name__ == "__main__":
    main()
