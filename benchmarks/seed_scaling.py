"""Seed scaling of DQN and PPO on CartPole-v1, and the cost of purerl's chunked driving.

For every algorithm and number of seeds (1, 4, 16, 64, 256) one fresh process measures:

- ``monolithic``: ``jax.jit(jax.vmap(make_train(config)))(keys)`` — the whole run as one
  compiled call, no progress, nothing written;
- ``chunked``: ``purerl.run(...)`` — the same computation driven one evaluation period per
  compiled call, with the progress bar, metrics pulled to the host after every chunk and
  checkpoints of the whole state (replay buffer included) at purerl's default cadence: at most
  one a minute of training, and one at the end (``checkpoints`` in the output counts them).

Both shard the seeds over every XLA host device (one per core). Training time excludes
compilation; the overhead is ``chunked / monolithic − 1``.

    python benchmarks/seed_scaling.py                        # everything -> results/seed_scaling.*
    python benchmarks/seed_scaling.py --algos ppo --seeds 1 4 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench_common import in_fresh_process, machine, sharded_keys, time_train

HERE = Path(__file__).resolve().parent

# Per-seed budgets kept small enough that 256 seeds fit in minutes on 2 CPU cores; the
# evaluation period (= one chunk) gives 10 chunks per run.
CELLS = {
    "dqn": dict(total_steps=10_000, eval_every=1_000, n_step=1),  # as measured (issue #6)
    "ppo": dict(total_steps=102_400, eval_every=10_240),
}


def run_cell(algo: str, seeds: int, mode: str) -> dict:
    import jax
    import numpy as np

    import purerl
    from purerl.algorithms import ALGORITHMS

    module = ALGORITHMS[algo]
    config = module.Config(env_id="CartPole-v1", **CELLS[algo])
    if mode == "chunked":
        written = _count_checkpoints()
        with tempfile.TemporaryDirectory() as out, open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)  # the progress bar is drawn, into /dev/null
            result = purerl.run(
                algo, config=config, seeds=seeds, out=Path(out) / "run", devices="all"
            )
            checkpoint_mb = (Path(out) / "run" / "checkpoint.npz").stat().st_size / 2**20
        s = result.summary
        compile_s, train_s = s["compile_seconds"], s["train_seconds"]
        final = result.metrics["eval_return"][0, :, -1]
        extra = {"checkpoint_mb": checkpoint_mb, "checkpoints": len(written)}
    else:
        # the keys purerl.run gives seeds 0..seeds-1, so both modes train the same agents
        keys, sharding = sharded_keys(seeds, per_seed=True)
        metrics, compile_s, train_s = time_train(module.make_train(config), keys, sharding)
        final = np.asarray(metrics["eval_return"])[:, -1]
        extra = {}
    return {
        "algo": algo,
        "seeds": seeds,
        "mode": mode,
        "devices": len(jax.devices()),
        "steps_per_seed": config.total_steps,
        "chunks": config.total_steps // config.eval_every,
        "compile_s": compile_s,
        "train_s": train_s,
        "steps_per_s": seeds * config.total_steps / train_s,
        "final_return_mean": float(np.mean(final)),
        **extra,
    }


def _count_checkpoints() -> list[int]:
    """The ``chunks_done`` of every checkpoint the run hands to its writer, as it goes."""
    from purerl import checkpoint

    written, submit = [], checkpoint.AsyncSaver.submit

    def counted(self, path, state, extra, meta):
        written.append(meta["chunks_done"])
        submit(self, path, state, extra, meta)

    checkpoint.AsyncSaver.submit = counted
    return written


def _table(rows: list[dict]) -> str:
    lines = [
        "| algo | seeds | monolithic train s | chunked train s | overhead | env steps/s "
        "(chunked) | compile s | checkpoint MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['algo']} | {r['seeds']} | {r['mono_s']:.2f} | {r['chunked_s']:.2f} | "
            f"{100 * r['overhead']:+.1f}% | {r['chunked_sps']:,.0f} | {r['compile_s']:.1f} | "
            f"{r['checkpoint_mb']:.1f} |"
        )
    return "\n".join(lines)


def _plot(rows: list[dict], file: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for algo in sorted({r["algo"] for r in rows}):
        mine = [r for r in rows if r["algo"] == algo]
        seeds = [r["seeds"] for r in mine]
        ax1.plot(seeds, [r["chunked_sps"] for r in mine], "o-", label=f"{algo} (purerl.run)")
        ax1.plot(seeds, [r["mono_sps"] for r in mine], "x--", label=f"{algo} (one call)")
        ax2.plot(seeds, [100 * r["overhead"] for r in mine], "o-", label=algo)
    ax1.set(xscale="log", yscale="log", xlabel="seeds (vmapped)", ylabel="env steps / s")
    ax1.set_title("CartPole-v1 throughput")
    ax2.axhline(5, color="gray", linestyle=":", label="5% target")
    ax2.set(xscale="log", xlabel="seeds", ylabel="chunked vs monolithic, %")
    ax2.set_title("overhead of progress + checkpoints")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(machine(), fontsize="small")
    fig.tight_layout()
    fig.savefig(file, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", nargs=3, metavar=("ALGO", "SEEDS", "MODE"))
    parser.add_argument("--algos", nargs="+", default=["dqn", "ppo"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 4, 16, 64, 256])
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per cell")
    parser.add_argument("--devices", type=int, default=os.cpu_count())
    parser.add_argument("--out", default=str(HERE / "results" / "seed_scaling"))
    args = parser.parse_args()
    if args.cell:
        algo, seeds, mode = args.cell
        print(json.dumps(run_cell(algo, int(seeds), mode)))
        return
    rows, raw = [], []
    for algo in args.algos:
        for seeds in args.seeds:
            # large cells take minutes each: one repeat there
            repeats = args.repeats if seeds <= 4 else 1
            cells = {m: [] for m in ("monolithic", "chunked")}
            for _ in range(repeats):
                for mode in cells:  # interleaved, so drifts hit both alike
                    cell = in_fresh_process(__file__, [algo, str(seeds), mode], args.devices)
                    cells[mode].append(cell)
                    raw.append(cell)
                    print(json.dumps(cell), flush=True)
            mono = min(c["train_s"] for c in cells["monolithic"])
            chunked = min(c["train_s"] for c in cells["chunked"])
            steps = seeds * CELLS[algo]["total_steps"]
            rows.append(
                {
                    "algo": algo,
                    "seeds": seeds,
                    "mono_s": mono,
                    "chunked_s": chunked,
                    "overhead": chunked / mono - 1,
                    "mono_sps": steps / mono,
                    "chunked_sps": steps / chunked,
                    "compile_s": min(c["compile_s"] for c in cells["chunked"]),
                    "checkpoint_mb": cells["chunked"][0]["checkpoint_mb"],
                    "checkpoints": cells["chunked"][0]["checkpoints"],
                    "repeats": repeats,
                }
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    info = {"machine": machine(), "devices": args.devices, "cells": CELLS}
    out.with_suffix(".json").write_text(json.dumps({**info, "rows": rows, "raw": raw}, indent=2))
    _plot(rows, out.with_suffix(".png"))
    print(f"\n{info['machine']}, {args.devices} host devices; best of repeats\n")
    print(_table(rows))


if __name__ == "__main__":
    main()
