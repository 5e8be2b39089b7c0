"""The DQN lecture's ablation: experience replay × target network, on MinAtar.

Mnih et al. (2015, Nature, Extended Data Table 3) trained DQN with and without replay and
with and without a target network on five Atari games. This script runs the same four cells
of purerl's one DQN (``dqn.Config(replay=..., target_network=...)``) on gymnax's MinAtar
Breakout and Space Invaders (Young & Tian, 2019), every cell's seeds vmapped in one compile
and sharded over the CPU cores, each cell in a fresh process. Scores are the greedy returns of
the last evaluation; the table gives their interquartile mean over seeds with a 95%
stratified-bootstrap interval (``purerl.stats``; Agarwal et al., 2021).

    python benchmarks/ablation_minatar.py                    # the reduced CPU budget below
    python benchmarks/ablation_minatar.py --steps 1000000    # a GPU-sized budget
    python benchmarks/ablation_minatar.py --steps 8000 --seeds 2 --json /tmp/smoke.json

Settings after the MinAtar paper's DQN (Young & Tian, 2019: its CNN, batch 32, replay 100k,
hard target copy every 1,000 env steps, Huber loss, γ = 0.99, lr 2.5e-4, plain max targets,
no dueling), except: 8 envs stepped together with 1 update per iteration (8 samples per env
step, Atari DQN's replay ratio, where MinAtar used 32), Adam instead of RMSProp, learning from
5,000 steps, ε 1 → 0.05 over the first 10% of the run. "No replay" trains every update on the
latest 32 transitions (the last 4 steps of the 8 envs); "no target" bootstraps from the
online network (under stop_gradient).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_common import in_fresh_process, machine, sharded_keys, time_train

HERE = Path(__file__).resolve().parent
GAMES = ["Breakout-MinAtar", "SpaceInvaders-MinAtar"]
# mean return of the uniformly random policy (gymnax 1.0.1, 512 envs × 2,000 steps, measured)
RANDOM = {"Breakout-MinAtar": 0.41, "SpaceInvaders-MinAtar": 4.0}
CELLS = {  # name: (replay, target_network)
    "replay + target": (True, True),
    "replay, no target": (True, False),
    "no replay, target": (False, True),
    "no replay, no target": (False, False),
}
NUM_ENVS = 8
SETTINGS = dict(
    num_envs=NUM_ENVS,
    buffer_size=100_000,
    batch_size=32,
    learning_starts=5_000,
    updates_per_iteration=1,
    target_update_period=1_000 // NUM_ENVS,
    tau=1.0,
    double=False,
    dueling=False,
    loss="huber",
    network="minatar_cnn",
    activation="relu",
    learning_rate=2.5e-4,
    gamma=0.99,
    epsilon_start=1.0,
    epsilon_end=0.05,
    exploration_fraction=0.1,
    eval_envs=16,
    n_step=1,  # the lecture's (and Nature DQN's) 1-step targets, not purerl's default 5
)


def make_config(game: str, cell: str, steps: int, evals: int):
    from purerl.algorithms import dqn

    replay, target = CELLS[cell]
    eval_every = steps // evals
    return dqn.Config(
        env_id=game,
        total_steps=eval_every * evals,
        eval_every=eval_every,
        replay=replay,
        target_network=target,
        **SETTINGS,
    )


def run_cell(game: str, cell: str, seeds: int, steps: int, evals: int) -> dict:
    import numpy as np

    from purerl.algorithms import dqn

    config = make_config(game, cell, steps, evals)
    keys, sharding = sharded_keys(seeds)
    metrics, compile_s, train_s = time_train(dqn.make_train(config), keys, sharding)
    evals_ = np.asarray(metrics["eval_return"])
    return {
        "game": game,
        "cell": cell,
        "replay": config.replay,
        "target_network": config.target_network,
        "seeds": seeds,
        "devices": len(sharding.device_set),
        "steps": config.total_steps,
        "compile_s": compile_s,
        "train_s": train_s,
        "steps_per_s": seeds * config.total_steps / train_s,
        "scores": evals_[:, -1].tolist(),
        "eval_curve": evals_.tolist(),
        "eval_steps": np.asarray(metrics["eval_env_steps"])[0].tolist(),
    }


def summarize(rows: list[dict]) -> None:
    """Add the IQM of the final scores over seeds and its 95% bootstrap interval."""
    import numpy as np

    from purerl.stats import bootstrap_ci, iqm

    for r in rows:
        scores = np.asarray(r["scores"], np.float64)
        low, high = bootstrap_ci(scores, iqm, confidence=0.95, key=0)
        r.update(iqm=float(iqm(scores)), ci_low=float(low), ci_high=float(high))


def table(rows: list[dict]) -> str:
    games = [g for g in GAMES if any(r["game"] == g for r in rows)]
    lines = [
        "| replay | target network | " + " | ".join(games) + " |",
        "|---|---|" + "---:|" * len(games),
    ]
    for cell, (replay, target) in CELLS.items():
        cells = []
        for game in games:
            r = next((r for r in rows if r["game"] == game and r["cell"] == cell), None)
            cells.append(
                "—" if r is None else f"{r['iqm']:.1f} [{r['ci_low']:.1f}, {r['ci_high']:.1f}]"
            )
        yes = {True: "yes", False: "no"}
        lines.append(f"| {yes[replay]} | {yes[target]} | " + " | ".join(cells) + " |")
    lines.append(
        "| uniform random policy | | " + " | ".join(f"{RANDOM[g]:g}" for g in games) + " |"
    )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from purerl.stats import bootstrap_ci, iqm

    games = [g for g in GAMES if any(r["game"] == g for r in rows)]
    fig, axes = plt.subplots(1, len(games), figsize=(6 * len(games), 4), squeeze=False)
    for ax, game in zip(axes[0], games, strict=True):
        for r in (r for r in rows if r["game"] == game):
            curves = np.asarray(r["eval_curve"], np.float64).T  # [evals, seeds]
            low, high = bootstrap_ci(curves, iqm, key=0)
            ax.plot(r["eval_steps"], iqm(curves), label=r["cell"])
            ax.fill_between(r["eval_steps"], low, high, alpha=0.2)
        ax.axhline(RANDOM[game], color="grey", ls=":", label="uniform random policy")
        ax.set(
            xlabel="env steps per seed",
            ylabel="greedy return (IQM over seeds, 95% CI)",
            title=f"DQN ablation, {game}",
        )
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--games", nargs="+", default=GAMES)
    p.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    p.add_argument("--seeds", type=int, default=6, help="seeds per cell, vmapped (≥ 5)")
    p.add_argument("--steps", type=int, default=100_000, help="env steps per seed")
    p.add_argument("--evals", type=int, default=10, help="greedy evaluations per run")
    p.add_argument("--devices", type=int, default=2, help="XLA host devices (seeds sharded)")
    p.add_argument("--cell", nargs=5, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=HERE / "results" / "ablation_minatar.json")
    args = p.parse_args()
    if args.cell is not None:
        game, cell, seeds, steps, evals = args.cell
        print(json.dumps(run_cell(game, cell, int(seeds), int(steps), int(evals))))
        return
    rows = []
    for game in args.games:
        for cell in args.cells:
            devices = args.devices if args.seeds % args.devices == 0 else 1
            cell_args = [game, cell, str(args.seeds), str(args.steps), str(args.evals)]
            rows.append(in_fresh_process(__file__, cell_args, devices))
            r = rows[-1]
            print(
                f"{game} | {cell}: scores {r['scores']} | compile {r['compile_s']:.0f} s, "
                f"train {r['train_s']:.0f} s, {r['steps_per_s']:,.0f} env steps/s",
                flush=True,
            )
    summarize(rows)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    budget = {"steps_per_seed": args.steps, "seeds": args.seeds, "settings": SETTINGS}
    args.json.write_text(
        json.dumps({"machine": machine(), "budget": budget, "rows": rows}, indent=1)
    )
    plot(rows, args.json.with_suffix(".png"))
    print(f"\nmachine: {machine()}; {args.steps:,} env steps per seed, {args.seeds} seeds\n")
    print(table(rows))


if __name__ == "__main__":
    main()
