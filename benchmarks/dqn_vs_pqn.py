"""DQN vs PQN: wall time to a target return, and env steps/s, for 1, 8 and 64 vmapped seeds
on CartPole-v1 and Breakout-MinAtar. Each cell runs in a fresh process.

A cell compiles three functions (vmapped ``init``, one evaluation period of ``step``s, and the
greedy ``evaluate``), then trains period by period and stops as soon as the interquartile mean
over seeds of the greedy return reaches the target, or at the preset's step budget. "Time to
target" adds up the training periods only (compile and evaluation times are reported apart);
env steps/s counts every seed's steps over those periods.

    python benchmarks/dqn_vs_pqn.py                      # --preset cpu: a reduced CPU budget
    python benchmarks/dqn_vs_pqn.py --preset gpu         # budgets where PQN's speed shows
    python benchmarks/dqn_vs_pqn.py --envs CartPole-v1 --seeds 1 8 --algos pqn

Anchors (issue #4): the PQN paper (Gallici et al., 2024) reports CartPole solved in seconds
on one GPU and "up to 50× faster than DQN"; rejax reports that vmapping 50 DQN agents on
Breakout-MinAtar gives only a 1.0–1.7× per-agent speed-up.

Configurations: DQN on CartPole = ``dqn.Config()`` defaults (the issue #2 reference point);
PQN on CartPole = the authors' published CartPole settings (purejaxql) with DQN's 2 × 64
network instead of 2 × 256 and lr 5e-4 (the CI-tested setting). On Breakout-MinAtar, DQN uses
the ablation's settings (benchmarks/ablation_minatar.py, replay + target network) and PQN the
authors' MinAtar settings (purejaxql ``pqn_minatar.yaml``: 128 envs × 32 steps, 2 epochs × 32
minibatches, lr 5e-4, λ 0.65, LayerNorm MinAtar CNN, no reward scaling). The ``cpu`` preset
gives Breakout only a short budget: there it measures throughput and its scaling with seeds,
not learning.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ablation_minatar import SETTINGS as DQN_MINATAR
from bench_common import in_fresh_process, machine, sharded_keys

HERE = Path(__file__).resolve().parent
TARGET = {"CartPole-v1": 475.0, "Breakout-MinAtar": 5.0}  # greedy return, IQM over seeds
PQN_CARTPOLE = dict(hidden_sizes=(64, 64), learning_rate=5e-4)
PQN_MINATAR = dict(
    num_envs=128,
    num_steps=32,
    update_epochs=2,
    num_minibatches=32,
    learning_rate=5e-4,
    lambda_=0.65,
    reward_scale=1.0,
    epsilon_end=0.05,
    exploration_fraction=0.1,
    network="minatar_cnn",
    eval_envs=16,
)
# (algo, env) -> (max env steps per seed, eval_every, config overrides); buffers ≤ the budget
PRESETS = {
    "cpu": {
        ("dqn", "CartPole-v1"): (100_000, 10_000, {}),
        ("pqn", "CartPole-v1"): (102_400, 10_240, PQN_CARTPOLE),
        ("dqn", "Breakout-MinAtar"): (10_000, 5_000, {**DQN_MINATAR, "buffer_size": 10_000}),
        ("pqn", "Breakout-MinAtar"): (8_192, 4_096, PQN_MINATAR),
    },
    "smoke": {  # seconds per cell: checks the script end to end, measures nothing
        ("dqn", "CartPole-v1"): (4_000, 2_000, {"learning_starts": 500}),
        ("pqn", "CartPole-v1"): (4_096, 2_048, PQN_CARTPOLE),
        ("dqn", "Breakout-MinAtar"): (
            2_000,
            1_000,
            {**DQN_MINATAR, "buffer_size": 2_000, "learning_starts": 500},
        ),
        ("pqn", "Breakout-MinAtar"): (4_096, 4_096, PQN_MINATAR),
    },
    "gpu": {
        ("dqn", "CartPole-v1"): (200_000, 10_000, {}),
        ("pqn", "CartPole-v1"): (204_800, 10_240, PQN_CARTPOLE),
        ("dqn", "Breakout-MinAtar"): (1_000_000, 50_000, DQN_MINATAR),
        ("pqn", "Breakout-MinAtar"): (4_915_200, 196_608, PQN_MINATAR),
    },
}


def make_config(algo: str, env: str, preset: str):
    from purerl.algorithms import ALGORITHMS

    steps, eval_every, overrides = PRESETS[preset][(algo, env)]
    overrides = dict(overrides)
    if algo == "dqn":
        overrides["buffer_size"] = min(overrides.get("buffer_size", 50_000), steps)
    return ALGORITHMS[algo].Config(
        env_id=env, total_steps=steps, eval_every=eval_every, **overrides
    )


def _compiled(module, config, keys, sharding):
    """Compiled vmapped ``init``, one period of ``step``, and ``evaluate``; compile seconds."""
    import jax

    _, period = module.schedule(config)

    def steps(state):
        return jax.lax.scan(lambda s, _: module.step(s), state, None, length=period)

    t0 = time.perf_counter()
    from purerl.algorithms import core

    def init_one(k):
        return core.init(module, k, config)  # (agent, evaluation key)

    def evaluate_one(s):
        return s, module.evaluate(s.agent, s.eval_key)

    def chunk_one(s):
        agent, metrics = steps(s.agent)
        return core.TrainState(agent, s.eval_key), metrics

    init = jax.jit(jax.vmap(init_one), out_shardings=sharding)
    init = init.lower(keys).compile()
    state = init(keys)
    chunk = jax.jit(jax.vmap(chunk_one), donate_argnums=0).lower(state).compile()
    evaluate = jax.jit(jax.vmap(evaluate_one)).lower(state).compile()
    return init, chunk, evaluate, time.perf_counter() - t0


def run_cell(algo: str, env: str, seeds: int, preset: str, target: float) -> dict:
    import jax
    import numpy as np

    from purerl.algorithms import ALGORITHMS
    from purerl.stats import iqm

    module = ALGORITHMS[algo]
    config = make_config(algo, env, preset)
    module.make_train(config)  # every check, before compiling
    num_periods, _ = module.schedule(config)
    keys, sharding = sharded_keys(seeds)
    init, chunk, evaluate, compile_s = _compiled(module, config, keys, sharding)
    state = init(keys)
    train_s = eval_s = 0.0
    curve, times, hit = [], [], None
    for p in range(num_periods):
        t0 = time.perf_counter()
        state, _ = chunk(state)
        jax.block_until_ready(state)
        train_s += time.perf_counter() - t0
        t1 = time.perf_counter()
        state, ev = evaluate(state)
        returns = np.asarray(ev["eval_return"])
        eval_s += time.perf_counter() - t1
        curve.append(returns.tolist())
        times.append(train_s)
        if iqm(returns) >= target:
            hit = p
            break
    steps_done = len(curve) * config.eval_every
    return {
        "algo": algo,
        "env": env,
        "seeds": seeds,
        "devices": len(sharding.device_set),
        "preset": preset,
        "max_steps": config.total_steps,
        "target": target,
        "compile_s": compile_s,
        "train_s": train_s,
        "eval_s": eval_s,
        "steps_per_seed": steps_done,
        "steps_per_s": seeds * steps_done / train_s,
        "seconds_to_target": times[hit] if hit is not None else None,
        "steps_to_target": (hit + 1) * config.eval_every if hit is not None else None,
        "eval_curve": curve,  # [evaluations, seeds]
        "eval_seconds": times,
        "eval_steps": [(i + 1) * config.eval_every for i in range(len(curve))],
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| env | algorithm | seeds | CPU devices | compile s | env steps/s (total) "
        "| vs 1 seed | time to target (env steps) | final greedy IQM |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    from purerl.stats import iqm

    for r in rows:
        one = next(
            (q for q in rows if (q["algo"], q["env"], q["seeds"]) == (r["algo"], r["env"], 1)),
            None,
        )
        scale = f"{r['steps_per_s'] / one['steps_per_s']:.1f}×" if one else "—"
        hit = (
            f"{r['seconds_to_target']:.1f} s ({r['steps_to_target']:,})"
            if r["seconds_to_target"] is not None
            else f"not reached in {r['steps_per_seed']:,}"
        )
        lines.append(
            f"| {r['env']} | {r['algo']} | {r['seeds']} | {r['devices']} | {r['compile_s']:.1f} "
            f"| {r['steps_per_s']:,.0f} | {scale} | {hit} (≥ {r['target']:g}) "
            f"| {float(iqm(r['eval_curve'][-1])):.1f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from purerl.stats import iqm

    envs = [e for e in TARGET if any(r["env"] == e for r in rows)]
    fig, axes = plt.subplots(2, len(envs), figsize=(6 * len(envs), 8), squeeze=False)
    for col, env in enumerate(envs):
        ax = axes[0, col]
        for r in (r for r in rows if r["env"] == env):
            curve = iqm(np.asarray(r["eval_curve"], np.float64), axis=-1)
            ax.plot(r["eval_seconds"], curve, marker=".", label=f"{r['algo']}, {r['seeds']} seeds")
        target = next(r["target"] for r in rows if r["env"] == env)
        ax.axhline(target, color="grey", ls=":", label=f"target {target:g}")
        ax.set(xlabel="training wall time, s", ylabel="greedy return (IQM over seeds)", title=env)
        ax.legend(fontsize=8)
        ax = axes[1, col]
        for algo in ("dqn", "pqn"):
            cells = sorted(
                (r for r in rows if r["env"] == env and r["algo"] == algo), key=lambda r: r["seeds"]
            )
            if cells:
                ax.plot(
                    [r["seeds"] for r in cells],
                    [r["steps_per_s"] for r in cells],
                    marker="o",
                    label=algo,
                )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="vmapped seeds",
            ylabel="env steps/s (all seeds)",
            title=f"{env}: throughput",
        )
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=list(PRESETS), default="cpu")
    p.add_argument("--envs", nargs="+", default=list(TARGET), choices=list(TARGET))
    p.add_argument("--algos", nargs="+", default=["dqn", "pqn"], choices=["dqn", "pqn"])
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 8, 64])
    p.add_argument("--devices", type=int, default=2, help="XLA host devices (seeds sharded)")
    p.add_argument(
        "--target",
        nargs=2,
        action="append",
        default=[],
        metavar=("ENV", "RETURN"),
        help="override a target return, e.g. --target CartPole-v1 400",
    )
    p.add_argument("--cell", nargs=5, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", type=Path, default=HERE / "results" / "dqn_vs_pqn.json")
    args = p.parse_args()
    if args.cell is not None:
        algo, env, seeds, preset, target = args.cell
        print(json.dumps(run_cell(algo, env, int(seeds), preset, float(target))))
        return
    targets = {**TARGET, **{env: float(v) for env, v in args.target}}
    rows = []
    for env in args.envs:
        for algo in args.algos:
            for seeds in args.seeds:
                devices = args.devices if seeds % args.devices == 0 else 1
                cell = [algo, env, str(seeds), args.preset, str(targets[env])]
                rows.append(in_fresh_process(__file__, cell, devices))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    plot(rows, args.json.with_suffix(".png"))
    print(f"\nmachine: {machine()}; preset {args.preset}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
