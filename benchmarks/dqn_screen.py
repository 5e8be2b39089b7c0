"""Screen one DQN float hyperparameter over many seeds in one compile (issue #11).

A float field of ``dqn.Config`` is a traced leaf, so ``purerl.run``'s ``sweep`` trains every
(value, seed) pair in one compiled program (sharded over the host devices). Seeds are
``PRNGKey(0) … PRNGKey(S−1)`` (the keys ``purerl.run`` gives seeds 0…S−1). For each value:
the share of seeds at ≥ 475 and the mean greedy return at every evaluation, and the worst
final return. A cheap first pass before ``benchmarks/defaults.py`` measures a candidate at 64
seeds.

    python benchmarks/dqn_screen.py tau 0.02,0.01,0.005
    python benchmarks/dqn_screen.py learning_rate 0.00025,0.001 --set tau=0.05
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _value(text: str) -> int | float | str:
    """``--set`` values as typed: ``n_step=3`` is an int, ``tau=0.05`` a float, else a str."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("field", help="a float field of dqn.Config (e.g. tau, learning_rate)")
    p.add_argument("values", help="comma-separated values")
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="other fields for every run (ints, floats or strings)")  # fmt: skip
    p.add_argument("--json", type=Path, default=HERE / "results" / "dqn_screen.jsonl")
    args = p.parse_args()

    import numpy as np

    import purerl

    extra = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    values = [float(v) for v in args.values.split(",")]
    # purerl.run's sweep: every (value, seed) pair is one row of one vmapped, compiled batch
    start = time.perf_counter()
    result = purerl.run(
        "dqn", "CartPole-v1", seeds=args.seeds, steps=args.steps, overrides=extra,
        sweep={args.field: values},
    )  # fmt: skip
    returns = np.asarray(result.metrics["eval_return"], np.float64)  # [values, seeds, evals]
    metrics = result.metrics
    seconds = time.perf_counter() - start  # wall time, compile included
    with args.json.open("a") as f:
        for value, r in zip(values, returns, strict=True):
            row = {
                "field": args.field,
                "value": value,
                "set": extra,
                "seeds": args.seeds,
                "steps": args.steps,
                "eval_steps": np.asarray(metrics["eval_env_steps"])[0, 0].tolist(),
                "share_at_475": (r >= 475).mean(0).round(3).tolist(),
                "mean": r.mean(0).round(1).tolist(),
                "final": r[:, -1].round(1).tolist(),
                "worst_final": float(r[:, -1].min()),
                "wall_seconds_all_values": round(seconds, 1),
            }
            f.write(json.dumps(row) + "\n")
            print(
                f"{args.field}={value:g} {extra or ''}: final share ≥475 "
                f"{row['share_at_475'][-1]:.0%}, mean {row['mean'][-1]:.0f}, "
                f"worst {row['worst_final']:.0f}; share by evaluation {row['share_at_475']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
