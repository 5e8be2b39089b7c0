"""L4: the ``purerl`` command — ``train``, ``plot``, ``compare``, ``envs``."""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from purerl.algorithms import ALGORITHMS

__all__ = ["main"]


def _parse_sets(items: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set: expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        if not key.strip():
            raise ValueError(f"--set: expected key=value, got {item!r} (no key)")
        overrides[key.strip()] = value.strip()
    return overrides


def _parse_sweep(items: Sequence[str]) -> dict[str, list[float]] | None:
    sweep: dict[str, list[float]] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--sweep: expected key=v1,v2,..., got {item!r}")
        key, values = item.split("=", 1)
        if not key.strip():
            raise ValueError(f"--sweep: expected key=v1,v2,..., got {item!r} (no key)")
        try:
            sweep[key.strip()] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError:
            raise ValueError(
                f"--sweep: {key.strip()!r} values must be numbers, got {values!r}"
            ) from None
    return sweep or None


def _add_train(sub) -> None:
    train = sub.add_parser(
        "train",
        help="train an algorithm on a gymnax env over seeds × a hyperparameter grid",
        description="Train ALGORITHM over --seeds vmapped seeds (× every --sweep point, in one "
        "compile) with a progress bar; prints the final greedy return per config and writes "
        "config, metrics, summary and checkpoints to --out. Resume an interrupted run with "
        "--resume DIR.",
    )
    train.add_argument(
        "algorithm", nargs="?", default=None, help=f"one of {', '.join(sorted(ALGORITHMS))}"
    )
    train.add_argument(
        "--env",
        default=None,
        help="environment id (default: the config's; CartPole-v1, Pendulum-v1 for sac and td3). "
        "Some algorithms have their own settings for an env (ppo on Pendulum-v1: rejax's "
        "config), used unless you --set those fields",
    )
    train.add_argument(
        "--seeds", type=int, default=None, help="seeds per config, vmapped (default 1)"
    )
    train.add_argument("--seed-offset", type=int, default=None, help="first seed (default 0)")
    train.add_argument(
        "--steps",
        type=int,
        default=None,
        help="env steps per run, any positive number: rounded up to whole iterations "
        "(default: the config's)",
    )
    train.add_argument("--out", default=None, help="results folder (default runs/ALGO_ENV_TIME)")
    train.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    train.add_argument(
        "--resume", metavar="DIR", default=None, help="continue the run in DIR from its checkpoint"
    )
    train.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set learning_rate=3e-4 (repeatable)",
    )
    train.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="grid over a float field, e.g. --sweep learning_rate=1e-3,3e-4 (repeatable: the "
        "Cartesian product); every point × seed trains in one compile",
    )
    train.add_argument(
        "--devices",
        default="auto",
        help="shard runs over N devices, or 'all' (on a CPU: N host devices, one per core); "
        "default 'auto': on a CPU one host device per core, else every accelerator (either "
        "way the most that divide configs × seeds; a resume: as many as the run used)",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="K",
        help="checkpoint every K evaluation periods and at the end (0: never); default: by "
        "time, see --checkpoint-seconds",
    )
    train.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="without --checkpoint-every: checkpoint at most once every S seconds of training, "
        "and at the end (default 60)",
    )
    train.add_argument(
        "--tensorboard", action="store_true", help="log to OUT/tensorboard (needs tensorboardX)"
    )
    train.add_argument("--wandb", action="store_true", help="log to Weights & Biases")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.add_argument(
        "--actors",
        type=int,
        default=1,
        metavar="N",
        help="host envs (gymnasium:ID, atari:GAME) only: actor threads stepping the envs "
        "while the learner learns; each steps num_envs / N envs of every run (default 1)",
    )
    train.add_argument(
        "--async-envs",
        action="store_true",
        help="host envs only: every env copy in its own subprocess (parallel env stepping)",
    )
    train.add_argument(
        "--max-staleness",
        type=int,
        default=1,
        metavar="K",
        help="host envs only: learner updates a rollout's parameters may lag behind "
        "(0: synchronous, exactly on-policy; default 1: actors collect one rollout ahead)",
    )
    train.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not keep compiled programs on disk (default: kept in ~/.cache/purerl/jax, or "
        "$PURERL_COMPILE_CACHE, so the same config runs again without compiling; "
        "PURERL_COMPILE_CACHE=0 also turns it off)",
    )


def _add_reports(sub) -> None:
    plot = sub.add_parser(
        "plot",
        help="plot learning curves and final performance of finished runs",
        description="Learning curves (IQM over seeds with a 95%% bootstrap band, one line per "
        "run × sweep point) and a final-performance interval plot, as PNG and SVG.",
    )
    plot.add_argument("runs", nargs="+", metavar="RUN_DIR", help="results folders")
    plot.add_argument("--out", default=None, help="folder for the figures (default: first run)")
    plot.add_argument("--metric", default="eval_return", help="metric (default eval_return)")
    plot.add_argument(
        "--statistic", default="iqm", choices=["iqm", "mean", "median"], help="over seeds"
    )
    compare = sub.add_parser(
        "compare",
        help="table of final performance across runs",
        description="Final performance per run × sweep point: IQM with 95%% bootstrap CI, "
        "mean ± std, median, and the probability of improving on the first row.",
    )
    compare.add_argument("runs", nargs="+", metavar="RUN_DIR", help="results folders")
    compare.add_argument("--metric", default="eval_return", help="metric (default eval_return)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="purerl", description="Deep RL as pure JAX functions.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_reports(sub)
    sub.add_parser("envs", help="list the environment ids purerl can make")
    return parser


def _cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _host_devices(
    devices: str,
    *,
    platform: str,
    environ: Mapping[str, str],
    cores: int,
    batch: int | None = None,
    recorded: int | None = None,
) -> int:
    """How many CPU host devices ``purerl train`` starts JAX with (1: leave JAX as it is).

    Args:
        devices: the ``--devices`` value: ``auto`` (default), ``all`` or a number.
        platform: the platform JAX started on (``cpu``, ``gpu``, ...).
        environ: the environment; a host device count set in it (``XLA_FLAGS``,
            ``JAX_NUM_CPU_DEVICES``) is the user's choice and is kept.
        cores: CPU cores available.
        batch: configs × seeds of a new run (``None``: a resume).
        recorded: the device count a resumed run's folder records.

    Returns:
        ``auto`` on a CPU: the most host devices up to ``cores`` that divide ``batch``, or, on a
        resume, the ``recorded`` count (bit-exact resumes need it); on an accelerator: 1.
        ``all``: ``cores``; a number: that number (harmless on an accelerator: the host devices
        go unused).
    """
    flags = environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" in flags or "JAX_NUM_CPU_DEVICES" in environ:
        return 1
    if devices == "all":
        return cores
    if devices.isdigit():
        return int(devices)
    if devices != "auto" or platform != "cpu":
        return 1  # a bad value: purerl.run names the problem, with any other
    if batch is None:
        return recorded or cores
    return max(n for n in range(1, cores + 1) if batch % n == 0) if batch >= 1 else 1


def _batch(args) -> int | None:
    """configs × seeds of the run ``args`` ask for; ``None`` for a resume."""
    if args.resume is not None:
        return None
    points = [len(values) for values in (_parse_sweep(args.sweep) or {}).values()]
    return (1 if args.seeds is None else args.seeds) * math.prod(points)


def _recorded_devices(folder: str | None) -> int | None:
    """The device count recorded in ``folder/config.json`` (``None`` if it cannot be read:
    the resume itself then says what is wrong)."""
    if folder is None:
        return None
    try:
        n = json.loads((Path(folder) / "config.json").read_text())["num_devices"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return n if type(n) is int and n >= 1 else None


def _force_host_devices(args, argv: Sequence[str] | None) -> None:
    """On a CPU, JAX shows one device unless told before it starts (``_host_devices`` says
    how many ``purerl train`` wants).

    JAX has started by now (importing gymnax creates arrays, so the platform is known without
    starting anything more), so when more host devices are wanted the command restarts itself
    once with ``XLA_FLAGS`` set (only from the command line: ``argv is None``; a
    ``main([...])`` call from Python uses the devices JAX has, and an explicit count it lacks
    gets the ``devices`` error of ``purerl.run``).
    """
    if argv is not None:  # from Python the env var would only leak into subprocesses
        return
    from purerl.envs.host import is_host_id

    if is_host_id(str(args.env or "")):
        return  # a host env: one learner device, the cores step the envs
    import jax

    n = _host_devices(
        args.devices,
        platform=jax.default_backend(),
        environ=os.environ,
        cores=_cores(),
        batch=_batch(args),
        recorded=_recorded_devices(args.resume),
    )
    if n > 1:
        flag = f"--xla_force_host_platform_device_count={n}"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-m", "purerl.cli", *sys.argv[1:]])


def _num(x: float) -> str:
    """A score for a table: one decimal from 10 up and for round values (CartPole's 500.0,
    1.0), else three significant digits (a hidden score of 0.281 is not "0.3")."""
    return f"{x:.1f}" if abs(x) >= 10 or x == round(x, 1) else f"{x:.3g}"


def _print_summary(result) -> None:
    from purerl.sinks import config_label

    s = result.summary
    print(f"\n{result.algorithm} on {result.config.env_id}: final greedy return")
    if s["configs"] == 1:
        print(f"{'seed':>6}  {'return':>10}")
        at = s["per_config"][0]["diverged_at_per_seed"]
        for i, r in enumerate(s["final_return_per_seed"]):
            note = f"  DIVERGED at env step {at[i]:,} (frozen)" if at[i] >= 0 else ""
            print(f"{i:>6}  {_num(r):>10}{note}")
    for c, row in enumerate(s["per_config"]):
        name = config_label(row["point"], c) if s["configs"] > 1 else "all seeds"
        diverged = sum(a >= 0 for a in row["diverged_at_per_seed"])
        print(
            f"{name}: mean {_num(row['mean'])} ± {_num(row['std'])} (std), median "
            f"{_num(row['median'])}, IQM {_num(row['iqm'])} [{_num(row['iqm_ci_low'])}, "
            f"{_num(row['iqm_ci_high'])}] (95% CI, {row['seeds']} seeds"
            + (f", {diverged} DIVERGED)" if diverged else ")")
        )
    print(
        f"compile {s['compile_seconds']:.1f} s, train {s['train_seconds']:.1f} s, "
        f"{s['env_steps_per_second']:,.0f} env steps/s on {s['num_devices']} "
        f"device{'s' * (s['num_devices'] != 1)}"
    )
    if result.out is not None:
        print(f"results written to {result.out}")


def _sinks(args) -> list:
    from purerl import sinks

    out = []
    if args.tensorboard:
        out.append(sinks.TensorBoardSink())
    if args.wandb:
        out.append(sinks.WandbSink())
    return out


def _train(args) -> int:
    from purerl import experiment

    common = dict(
        checkpoint_every=args.checkpoint_every,
        checkpoint_seconds=args.checkpoint_seconds,
        progress=not args.no_progress,
        compile_cache=not args.no_compile_cache,
        devices=None if args.devices == "auto" else args.devices,
        sinks=_sinks(args),
        actors=args.actors,
        async_envs=args.async_envs,
        max_staleness=args.max_staleness,
    )
    if args.resume is not None:
        if args.out is not None or args.overwrite:
            raise ValueError("--resume: the run folder is DIR; drop --out/--overwrite")
        result = experiment.resume(
            args.resume,
            algorithm=args.algorithm,
            env=args.env,
            steps=args.steps,
            seeds=args.seeds,
            seed_offset=args.seed_offset,
            overrides=_parse_sets(args.sets),
            sweep=_parse_sweep(args.sweep),
            **common,
        )
    else:
        if args.algorithm is None:
            raise ValueError("algorithm: name one, e.g. `purerl train dqn` (or --resume DIR)")
        out = args.out
        if out is None:
            # an env id may carry params (``ID?name=value``): keep the folder name plain
            env_name = re.sub(r"[^A-Za-z0-9._-]+", "_", args.env or "default")
            out = f"runs/{args.algorithm}_{env_name}_{time.strftime('%Y%m%d-%H%M%S')}"
        result = experiment.run(
            args.algorithm,
            args.env,
            seeds=1 if args.seeds is None else args.seeds,
            steps=args.steps,
            overrides=_parse_sets(args.sets),
            sweep=_parse_sweep(args.sweep),
            seed_offset=args.seed_offset or 0,
            out=out,
            overwrite=args.overwrite,
            **common,
        )
    _print_summary(result)
    return _divergence_status(result)


def _divergence_status(result) -> int:
    """Exit status of a finished ``train``: 1 when every run diverged, else 0; names the
    diverged runs (config, seed, env step) on stderr."""
    from purerl.sinks import config_label

    runs, s = result.summary["diverged"], result.summary
    if not runs:
        return 0
    total = s["configs"] * s["seeds"]
    names = [
        f"{config_label(d['point'], d['config']) + ' ' if s['configs'] > 1 else ''}seed "
        f"{d['seed']} at env step {d['env_step']:,}"
        for d in runs
    ]
    listed = "; ".join(names[:10]) + (f"; and {len(names) - 10} more" if len(names) > 10 else "")
    why = "loss or parameters went non-finite; frozen at their last finite state"
    if len(runs) == total:
        print(f"purerl: error: every run diverged ({why}): {listed}", file=sys.stderr)
        return 1
    warning = f"purerl: warning: {len(runs)} of {total} runs diverged ({why}): {listed}"
    print(warning, file=sys.stderr)
    return 0


def _compare(args) -> int:
    from purerl.experiment.results import compare
    from purerl.sinks import config_label

    rows = compare(args.runs, args.metric)
    print(f"final {args.metric} over seeds (IQM with 95% stratified-bootstrap CI)")
    header = f"{'run':<40} {'seeds':>5} {'IQM [95% CI]':>24} {'mean ± std':>18} {'median':>8}"
    print(header + f" {'P(> row 1) [95% CI]':>22}")
    for row in rows:
        name = row["run"] if not row["point"] else f"{row['run']} {config_label(row['point'], 0)}"
        ci = f"{_num(row['iqm'])} [{_num(row['iqm_ci_low'])}, {_num(row['iqm_ci_high'])}]"
        spread = f"{_num(row['mean'])} ± {_num(row['std'])}"
        lo, hi = row["p_improve_ci_low"], row["p_improve_ci_high"]
        p = f"{row['p_improve']:.2f} [{lo:.2f}, {hi:.2f}]"
        cells = f"{row['seeds']:>5} {ci:>24} {spread:>18} {_num(row['median']):>8} {p:>22}"
        print(f"{name[-40:]:<40} {cells}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``purerl`` command; returns the exit status (2 for bad input: the
    error, one line per problem, on stderr — never a traceback)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # argparse printed the usage and the error (or --help)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        if args.command == "envs":
            from purerl.envs import registered

            print("\n".join(registered()))
            return 0
        if args.command == "train":
            _force_host_devices(args, argv)
            return _train(args)
        if args.command == "plot":
            from purerl.plotting import plot_runs

            for file in plot_runs(args.runs, args.out, args.metric, args.statistic):
                print(f"wrote {file}")
            return 0
        return _compare(args)
    except ValueError as error:
        print(f"purerl: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("purerl: interrupted (the finished evaluation periods are written)", file=sys.stderr)
        return 130
    except RuntimeError as error:  # jax.errors.JaxRuntimeError, or an actor of a host env
        from purerl.experiment.actor_learner import ActorLearnerError

        if isinstance(error, ActorLearnerError):  # the actor's traceback is in the message
            print(f"purerl: error: {error}", file=sys.stderr)
            return 1
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        # what a step makes and drops (a rollout, a minibatch) is not in the checked estimate
        first = str(error).splitlines()[0]
        print(
            f"purerl: error: memory: the run does not fit on the device ({first}); lower "
            "num_envs, num_steps, batch_size, the network sizes or the number of seeds",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
