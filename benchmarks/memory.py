"""Memory (issue #13): recurrent PPO where the observation is not the state.

Three parts, each cell a fresh process (seeds vmapped, sharded over the XLA host devices):

- ``masked``: PPO on CartPole-masked-v1 (position and angle only) with a GRU vs feed-forward,
  and feed-forward PPO on the full CartPole-v1 as the ceiling; final greedy IQM with 95%
  bootstrap CI, share of seeds ≥ 475, learning curves.
- ``chain``: bsuite's MemoryChain (the context bit shown at the first step only, asked for
  ``memory_length`` steps later; return +1 right / −1 wrong, 0 for chance) with growing
  memory lengths: the largest length each agent solves (IQM of the final greedy return ≥ 0.8,
  i.e. ≥ 90% right answers).
- ``speed``: the throughput cost of recurrence, env steps/s of GRU vs feed-forward PPO on the
  same work (CartPole-masked-v1, same rollout and update sizes), 1 and 16 seeds.

    python benchmarks/memory.py                       # everything, into results/memory.json
    python benchmarks/memory.py --parts chain --seeds 4

PPO settings: purerl's PPO defaults (PureJaxRL's CartPole settings, Lu et al., 2022: 4 envs ×
128 steps, 4 epochs × 4 minibatches, lr 2.5e-4 annealed, γ 0.99, λ 0.95), the recurrent
agent with PureJaxRL's ``ppo_rnn`` shape (a GRU after the torso, here purerl's default of 64
units; sequences = the whole 128-step rollout of one env: 4 minibatches of one sequence each).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_common import in_fresh_process, save_rows, sharded_keys, time_train

HERE = Path(__file__).resolve().parent

MASKED = {  # variant: (env, recurrent core)
    "feed-forward, full obs": ("CartPole-v1", "none"),
    "feed-forward, masked": ("CartPole-masked-v1", "none"),
    "GRU, masked": ("CartPole-masked-v1", "gru"),
}
MASKED_STEPS, MASKED_EVAL = 512_000, 25_600  # 1000 iterations of 4 envs × 128 steps
CHAIN_LENGTHS = (5, 10, 20, 30, 50, 80)
CHAIN_STEPS, CHAIN_EVAL = 204_800, 20_480
SPEED_STEPS = 102_400


def _config(env: str, core: str, steps: int, every: int):
    from purerl.algorithms import ppo

    return ppo.Config(
        env_id=env,
        total_steps=steps,
        eval_every=every,
        eval_envs=32,
        recurrent=core,
        entropy_coef=0.01,
    )


def run_cell(part: str, variant: str, seeds: int) -> dict:
    import numpy as np

    from purerl import stats
    from purerl.algorithms import ppo

    if part == "masked":
        env, core = MASKED[variant]
        config = _config(env, core, MASKED_STEPS, MASKED_EVAL)
    elif part == "chain":
        core, length = variant.split(":")
        env = f"MemoryChain-bsuite?memory_length={length}"
        config = _config(env, core, CHAIN_STEPS, CHAIN_EVAL)
    else:
        env, core = "CartPole-masked-v1", variant
        config = _config(env, core, SPEED_STEPS, SPEED_STEPS)
    keys, sharding = sharded_keys(seeds)
    metrics, compile_s, train_s = time_train(ppo.make_train(config), keys, sharding)
    evals = np.asarray(metrics["eval_return"])
    final = evals[:, -1]
    return {
        "part": part,
        "variant": variant,
        "env": env,
        "recurrent": core,
        "seeds": seeds,
        "devices": len(sharding.device_set),
        "steps": config.total_steps,
        "compile_s": compile_s,
        "train_s": train_s,
        "steps_per_s": seeds * config.total_steps / train_s,
        "final": final.tolist(),
        "summary": stats.summarize(final),
        "share_475": float(np.mean(final >= 475.0)),
        "eval_curve": evals.tolist(),
        "eval_steps": np.asarray(metrics["eval_env_steps"])[0].tolist(),
    }


def _ci(r: dict) -> str:
    s = r["summary"]
    return f"{s['iqm']:.2f} [{s['iqm_ci_low']:.2f}, {s['iqm_ci_high']:.2f}]"


def tables(rows: list[dict]) -> str:
    out = []
    masked = [r for r in rows if r["part"] == "masked"]
    if masked:
        out += [
            "| PPO agent | env | seeds | final greedy IQM [95% CI] | mean ± std | seeds ≥ 475 "
            "| train s | env steps/s |",
            "|---|---|---:|---|---|---:|---:|---:|",
        ]
        for r in masked:
            s = r["summary"]
            out.append(
                f"| {r['variant']} | {r['env']} | {r['seeds']} | {_ci(r)} | {s['mean']:.1f} ± "
                f"{s['std']:.1f} | {r['share_475']:.0%} | {r['train_s']:.0f} "
                f"| {r['steps_per_s']:,.0f} |"
            )
        out.append("")
    chain = [r for r in rows if r["part"] == "chain"]
    if chain:
        out += [
            "| memory length | feed-forward IQM [95% CI] | GRU IQM [95% CI] |",
            "|---:|---|---|",
        ]
        by = {(r["recurrent"], int(r["variant"].split(":")[1])): r for r in chain}
        for length in sorted({k[1] for k in by}):
            cells = [_ci(by[(c, length)]) if (c, length) in by else "—" for c in ("none", "gru")]
            out.append(f"| {length} | {cells[0]} | {cells[1]} |")
        for core in ("none", "gru"):
            solved = [n for (c, n), r in by.items() if c == core and r["summary"]["iqm"] >= 0.8]
            name = "feed-forward" if core == "none" else "GRU"
            out.append(f"\nLargest length solved (IQM ≥ 0.8), {name}: {max(solved, default=None)}")
        out.append("")
    speed = [r for r in rows if r["part"] == "speed"]
    if speed:
        out += [
            "| PPO agent | seeds | compile s | train s | env steps/s | GRU cost |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        ff = {r["seeds"]: r["steps_per_s"] for r in speed if r["recurrent"] == "none"}
        for r in speed:
            cost = (
                f"{ff[r['seeds']] / r['steps_per_s']:.2f}× slower"
                if r["recurrent"] != "none" and r["seeds"] in ff
                else ""
            )
            out.append(
                f"| {'GRU' if r['recurrent'] != 'none' else 'feed-forward'} | {r['seeds']} "
                f"| {r['compile_s']:.1f} | {r['train_s']:.1f} | {r['steps_per_s']:,.0f} | {cost} |"
            )
    return "\n".join(out)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for r in (r for r in rows if r["part"] == "masked"):
        curves = np.asarray(r["eval_curve"])
        lo, hi = np.percentile(curves, [25, 75], axis=0)
        axes[0].plot(r["eval_steps"], curves.mean(0), label=f"{r['variant']} ({r['seeds']})")
        axes[0].fill_between(r["eval_steps"], lo, hi, alpha=0.2)
    axes[0].axhline(475, color="grey", ls=":")
    axes[0].set(
        xlabel="env steps per seed",
        ylabel="greedy return (mean, IQR band)",
        title="PPO on CartPole with the velocities hidden",
    )
    axes[0].legend()
    chain = [r for r in rows if r["part"] == "chain"]
    for core, name in (("none", "feed-forward"), ("gru", "GRU")):
        pts = sorted(
            (int(r["variant"].split(":")[1]), r["summary"]) for r in chain if r["recurrent"] == core
        )
        if pts:
            x = [p[0] for p in pts]
            y = np.array([[p[1]["iqm"], p[1]["iqm_ci_low"], p[1]["iqm_ci_high"]] for p in pts])
            axes[1].plot(x, y[:, 0], "o-", label=name)
            axes[1].set_xticks(x)
            axes[1].fill_between(x, y[:, 1], y[:, 2], alpha=0.2)
    axes[1].axhline(0.8, color="grey", ls=":", label="solved (0.8)")
    axes[1].set(
        xlabel="memory length",
        ylabel="final greedy return IQM (95% CI)",
        title="MemoryChain-bsuite",
    )
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--parts", nargs="+", default=["speed", "chain", "masked"])
    p.add_argument("--seeds", type=int, default=16, help="seeds per masked-CartPole cell")
    p.add_argument("--chain-seeds", type=int, default=8, help="seeds per MemoryChain cell")
    p.add_argument("--lengths", type=int, nargs="+", default=list(CHAIN_LENGTHS))
    p.add_argument("--devices", type=int, default=2, help="XLA host devices (seeds sharded)")
    p.add_argument("--cell", nargs=3, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=HERE / "results" / "memory.json")
    args = p.parse_args()
    if args.cell is not None:
        part, variant, seeds = args.cell
        print(json.dumps(run_cell(part, variant, int(seeds))))
        return
    cells = []
    if "speed" in args.parts:  # alternating fresh processes, same work
        cells += [("speed", core, s) for s in (1, 16) for core in ("none", "gru")]
    if "chain" in args.parts:
        cells += [
            ("chain", f"{c}:{n}", args.chain_seeds) for n in args.lengths for c in ("none", "gru")
        ]
    if "masked" in args.parts:
        cells += [("masked", v, args.seeds) for v in MASKED]
    rows = []
    for part, variant, seeds in cells:
        devices = args.devices if seeds % args.devices == 0 else 1
        rows.append(in_fresh_process(__file__, [part, variant, str(seeds)], devices))
        r = rows[-1]
        print(f"{part} {variant} {seeds}: {_ci(r)} {r['steps_per_s']:,.0f} steps/s", flush=True)
    rows = save_rows(args.json, rows, key=lambda r: (r["part"], r["variant"], r["seeds"]))
    plot(rows, args.json.with_suffix(".png"))
    print(tables(rows))


if __name__ == "__main__":
    main()
