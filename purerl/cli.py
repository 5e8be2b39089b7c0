"""L4: the ``purerl`` command."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from purerl.algorithms import ALGORITHMS

__all__ = ["main"]


def _parse_sets(items: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = value.strip()
    return overrides


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="purerl", description="Deep RL as pure JAX functions.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser(
        "train",
        help="train an algorithm on a gymnax env over many seeds",
        description="Train ALGORITHM over --seeds vmapped seeds with a progress bar; prints the "
        "final greedy return per seed and writes config and metrics to --out.",
    )
    train.add_argument("algorithm", choices=sorted(ALGORITHMS), help="algorithm to train")
    train.add_argument(
        "--env", default=None, help="environment id (default: the config's, CartPole-v1)"
    )
    train.add_argument("--seeds", type=int, default=1, help="number of seeds, vmapped (default 1)")
    train.add_argument("--seed-offset", type=int, default=0, help="first seed (default 0)")
    train.add_argument(
        "--steps", type=int, default=None, help="env steps per seed (default: the config's)"
    )
    train.add_argument("--out", default=None, help="results folder (default runs/ALGO_ENV_TIME)")
    train.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    train.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set learning_rate=3e-4 (repeatable)",
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    envs = sub.add_parser("envs", help="list the environment ids purerl can make")
    envs.set_defaults(command="envs")
    return parser


def _print_table(result) -> None:
    s = result.summary
    print(f"\n{result.algorithm} on {result.config.env_id}: final greedy return per seed")
    print(f"{'seed':>6}  {'return':>10}")
    for i, r in enumerate(s["final_return_per_seed"]):
        print(f"{i:>6}  {r:>10.1f}")
    print(
        f"{'mean':>6}  {s['final_return_mean']:>10.1f} ± {s['final_return_std']:.1f}"
        " (std over seeds)"
    )
    print(
        f"compile {s['compile_seconds']:.1f} s, train {s['train_seconds']:.1f} s, "
        f"{s['env_steps_per_second']:,.0f} env steps/s"
    )
    if result.out is not None:
        print(f"results written to {result.out}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``purerl`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "envs":
        from purerl.envs import registered

        print("\n".join(registered()))
        return 0
    from purerl.experiment import run

    out = args.out
    if out is None:
        env_name = args.env or "default"
        out = f"runs/{args.algorithm}_{env_name}_{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        result = run(
            args.algorithm,
            args.env,
            seeds=args.seeds,
            steps=args.steps,
            overrides=_parse_sets(args.sets),
            seed_offset=args.seed_offset,
            out=out,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except ValueError as error:
        print(f"purerl: error: {error}", file=sys.stderr)
        return 2
    _print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
